"""Employee PINs for access-number calling: the rule for choosing one, hashing, verifying, and how an
entered digit string is matched to an employee.

How a PIN is looked up (and why not by the PIN alone)
-----------------------------------------------------
A PIN is stored only as a salted slow hash, so it cannot be found by its value.  Two designs fix that;
we take the first:

1. **Extension + PIN (chosen).**  What the caller keys in is the employee's extension followed by the
   personal PIN, with nothing in between: extension 101 and PIN 4321 are entered as ``1014321#``.  The
   extension finds the employee, the PIN is verified against that one argon2 hash.  When the caller ID
   is registered to an employee, their bare PIN (``4321#``) is accepted as well.
2. Tenant-unique PINs found through a keyed HMAC index (HMAC-SHA256 with a server secret, unique per
   tenant).  Rejected: uniqueness means that choosing a PIN already taken must fail, which tells the
   employee a colleague's PIN; and a guess then succeeds if it matches *anyone's* PIN, so with 200
   employees on 4-digit PINs one guess in 50 opens the account of somebody.  With design 1 a guess is
   tried against one employee (at most a few, see below): one chance in 10 000 for a 4-digit PIN, and
   the :mod:`~zvonok.telephony.pin_guard` keeps the number of guesses small.

The extension is not a secret; it only names whose PIN is being tried.  No separator is used because
``*`` clears the entry in the access-number dialogue and ``#`` ends it.  Extensions of different
lengths make the split ambiguous: :func:`pin_entry_candidates` returns each plausible split (one per
extension length the tenant uses, plus the bare PIN for a caller identified by caller ID), at most
:data:`MAX_CANDIDATES`, and the engine verifies them in turn.  Each candidate costs one argon2
verification; an unknown extension is verified against a dummy hash so it takes the same time.

Hashing
-------
The same argon2id hasher (pwdlib's recommended parameters) as web passwords in
:mod:`zvonok.org.credentials`.  A 4–8 digit PIN has at most 10^8 values, so a stolen hash alone can be
brute-forced offline; an optional ``pepper`` (a server-side key kept outside the database) is mixed in
with HMAC-SHA256 before argon2 so that the database alone is not enough.  The pepper must stay the same
for as long as the hashes made with it live: changing it invalidates every PIN.

Both :func:`hash_pin` and :func:`verify_pin` spend ~0.1 s of CPU: on the event loop use the
``*_in_thread`` variants.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

# The hasher of web passwords and the dummy hash that evens out the time of unknown-user failures: one
# place decides the argon2 cost for every slow hash.
from .credentials import slow_hash, slow_verify

__all__ = [
    "MAX_CANDIDATES", "PIN_MAX_LENGTH", "PIN_MIN_LENGTH", "PinEntry", "PinProblem", "hash_pin",
    "hash_pin_in_thread", "pin_entry_candidates", "pin_problem", "valid_pin", "verify_pin",
    "verify_pin_in_thread",
]

PIN_MIN_LENGTH = 4
PIN_MAX_LENGTH = 8
MAX_CANDIDATES = 4  # argon2 verifications per entered string, at most


class PinProblem(enum.StrEnum):
    """Why a PIN is refused when it is set (the UI maps these to messages)."""

    FORMAT = "format"  # not 4–8 ASCII digits
    REPEATED = "repeated"  # a short group repeated: 0000, 1212, 123123, 12341234
    SEQUENCE = "sequence"  # a run up or down the keypad, wrapping 9→0: 1234, 9876, 7890, 8901
    PERSONAL = "personal"  # the end of the employee's own extension or phone number


def _format_ok(pin: str) -> bool:
    return PIN_MIN_LENGTH <= len(pin) <= PIN_MAX_LENGTH and pin.isascii() and pin.isdigit()


def _repeated(pin: str) -> bool:
    # Some period p no longer than half the PIN: pin[i] == pin[i - p] throughout.
    return any(pin[p:] == pin[:-p] for p in range(1, len(pin) // 2 + 1))


def _sequence(pin: str) -> bool:
    steps = {(int(b) - int(a)) % 10 for a, b in pairwise(pin)}
    return steps in ({1}, {9})


def pin_problem(pin: str, *, avoid: Iterable[str] = ()) -> PinProblem | None:
    """Why ``pin`` may not be chosen, or None.  ``avoid``: the employee's extension and phone numbers; a
    PIN equal to the last digits of any of them is refused (it is the first thing an attacker tries)."""
    if not _format_ok(pin):
        return PinProblem.FORMAT
    if _repeated(pin):
        return PinProblem.REPEATED
    if _sequence(pin):
        return PinProblem.SEQUENCE
    for number in avoid:
        digits = "".join(c for c in number if c.isascii() and c.isdigit())
        if len(digits) >= len(pin) and digits.endswith(pin):
            return PinProblem.PERSONAL
    return None


def valid_pin(pin: str, *, avoid: Iterable[str] = ()) -> bool:
    """True when ``pin`` may be chosen: 4–8 digits, not repetitive, not a run, not the caller's number."""
    return pin_problem(pin, avoid=avoid) is None


def _material(pin: str, pepper: bytes | None) -> str:
    if pepper is None:
        return pin
    return hmac.new(pepper, pin.encode("ascii"), hashlib.sha256).hexdigest()


def hash_pin(pin: str, *, pepper: bytes | None = None) -> str:
    """The argon2id hash to store.  Only the format is checked here: the choice rules of
    :func:`pin_problem` belong to the service that lets a person set a PIN."""
    if not _format_ok(pin):
        raise ValueError(f"a PIN is {PIN_MIN_LENGTH} to {PIN_MAX_LENGTH} digits")
    return slow_hash(_material(pin, pepper))


def verify_pin(pin: str, hashed: str | None, *, pepper: bytes | None = None) -> bool:
    """Check an entered PIN.  ``hashed=None`` (no such employee, or no PIN set) still costs one argon2
    verification, so the time does not tell whether the extension exists."""
    well_formed = _format_ok(pin)
    # A malformed entry is verified too (against the dummy): its failure must cost the same time.
    material = _material(pin, pepper) if well_formed else "-"
    ok = slow_verify(material, hashed if well_formed else None)
    return ok and well_formed and hashed is not None


async def hash_pin_in_thread(pin: str, *, pepper: bytes | None = None) -> str:
    return await asyncio.to_thread(hash_pin, pin, pepper=pepper)


async def verify_pin_in_thread(pin: str, hashed: str | None, *, pepper: bytes | None = None) -> bool:
    return await asyncio.to_thread(verify_pin, pin, hashed, pepper=pepper)


@dataclass(frozen=True, slots=True, kw_only=True)
class PinEntry:
    """One reading of an entered string: ``extension`` + ``pin``, or (``extension=None``) the bare PIN of
    the employee the caller ID belongs to."""

    extension: str | None
    pin: str


def pin_entry_candidates(
    entry: str, *, extension_lengths: Iterable[int], caller_known: bool = False
) -> tuple[PinEntry, ...]:
    """The readings of ``entry`` worth verifying, in order: the bare PIN first when ``caller_known`` (the
    caller ID belongs to an employee), then extension + PIN for each extension length of the tenant,
    shortest first.  At most :data:`MAX_CANDIDATES`; empty when nothing could be a PIN.

    >>> pin_entry_candidates("1014321", extension_lengths=[3])
    (PinEntry(extension='101', pin='4321'),)
    """
    if not (entry.isascii() and entry.isdigit()):
        return ()
    found: list[PinEntry] = []
    if caller_known and _format_ok(entry):
        found.append(PinEntry(extension=None, pin=entry))
    for length in sorted({n for n in extension_lengths if n >= 1}):
        if _format_ok(entry[length:]):
            found.append(PinEntry(extension=entry[:length], pin=entry[length:]))
    return tuple(found[:MAX_CANDIDATES])
