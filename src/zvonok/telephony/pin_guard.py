"""Brute-force protection for access-number PINs, keyed by caller ID, source address and target employee.

How it works
------------
A wrong PIN counts against every :class:`PinSource` of the call: its caller ID and, when the engine
passes one, the SIP source address; and against each employee whose PIN the entry was checked against
(:func:`employee_source`), since calls through a carrier come with whatever caller ID the attacker
chooses, rotated at will: only the target's count holds then.  A blocked employee's PIN is refused, even
when right, until the ban ends.  Every failure also counts toward a global alarm (:data:`ALL`):
``alarm_failures`` wrong PINs from all callers within ``window`` are reported once per ``window``, for a
distributed guess at many employees that no single counter sees.  Each kind has its own
:class:`~zvonok.telephony.throttle.FailureThrottle`
(the same sliding window and fixed ban as the registrar's digest throttle), so the limits can differ: an
office PBX behind one address carries many employees' typos, a caller ID is one person.
``max_failures`` wrong PINs within ``window`` seconds block the source for ``ban_time`` seconds; the
failure that does it is reported once by :meth:`PinGuard.record_failure`, so the engine logs, alerts and
publishes its event exactly once per ban.

Choices, and why:

* A correct PIN does **not** forget the failures.  Otherwise an attacker who knows one valid PIN (their
  own) could interleave it with guesses at other employees' PINs and never reach the limit.
* Calls without a caller ID share one ``anonymous`` key: withholding the number must not escape the
  count, and a brute force from withheld numbers then locks out withheld callers only.
* The source address should be passed only for calls from a SIP peer that is the caller itself (an office
  PBX, a softphone).  For calls that arrive over a carrier trunk the address is the carrier's gateway:
  keying on it would let one attacker lock every employee out of the access number.
* IPv6 addresses are keyed by their /64, the smallest block one subscriber is normally given.
* Caller IDs can be spoofed, so an attacker can get a victim's number blocked for ``ban_time``; bans are
  kept short (15 minutes by default) for that reason.  An employee blocked by wrong PINs aimed at them
  cannot call in at all until the ban ends, from any phone (anyone who knows the extension can cause
  that): the price of a count that rotating caller IDs cannot escape.

Pure and in-memory (time is the caller's ``now``); several nodes would share bans through a store with
the same three methods.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from zvonok.netaddr import address_key

from .throttle import FailureThrottle

__all__ = ["ALL", "ANONYMOUS", "PinGuard", "PinSource", "SourceKind", "employee_source", "pin_sources"]

ANONYMOUS = "anonymous"


class SourceKind(enum.StrEnum):
    CALLER_ID = "caller_id"
    ADDRESS = "address"
    EMPLOYEE = "employee"  # the target: the employee whose PIN was tried
    ALL = "all"  # every caller: the alarm rate


@dataclass(frozen=True, slots=True, kw_only=True)
class PinSource:
    """One key failures are counted under, e.g. ``PinSource(kind=CALLER_ID, value="+79161234567")``."""

    kind: SourceKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.value}"


def pin_sources(caller_id: str | None, address: str | None = None) -> tuple[PinSource, ...]:
    """The keys of a call: always its caller ID (``anonymous`` when absent), and its address if given."""
    cid = (caller_id or "").strip()
    if not cid or cid.lower() in (ANONYMOUS, "unknown", "restricted", "private"):
        cid = ANONYMOUS
    sources = [PinSource(kind=SourceKind.CALLER_ID, value=cid)]
    if address:
        sources.append(PinSource(kind=SourceKind.ADDRESS, value=address_key(address)))
    return tuple(sources)


def employee_source(employee_id: int) -> PinSource:
    """The key wrong PINs tried against ``employee_id`` are counted under."""
    return PinSource(kind=SourceKind.EMPLOYEE, value=str(employee_id))


ALL = PinSource(kind=SourceKind.ALL, value="all")


class PinGuard:
    """Blocks a caller ID after ``max_failures`` wrong PINs in ``window`` s, an address after
    ``address_max_failures``, an employee's PIN after ``employee_max_failures``; a block lasts
    ``ban_time`` s.  ``alarm_failures`` wrong PINs from everyone in ``window`` s raise the alarm."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        address_max_failures: int = 20,
        employee_max_failures: int = 10,
        alarm_failures: int = 100,
        window: float = 600.0,
        ban_time: float = 900.0,
        max_sources: int = 100_000,
    ) -> None:
        if min(max_failures, address_max_failures, employee_max_failures, alarm_failures) < 1:
            raise ValueError("max_failures must be at least 1")
        # FailureThrottle bans on the failure that *exceeds* its limit: N failures block at limit N - 1.
        self._throttles = {
            SourceKind.CALLER_ID: FailureThrottle(max_failures - 1, window, ban_time, max_sources),
            SourceKind.ADDRESS: FailureThrottle(address_max_failures - 1, window, ban_time, max_sources),
            SourceKind.EMPLOYEE: FailureThrottle(employee_max_failures - 1, window, ban_time, max_sources),
            # its "ban" only keeps a raised alarm quiet for a window; nothing is ever blocked by it
            SourceKind.ALL: FailureThrottle(alarm_failures - 1, window, window, 1),
        }

    def blocked_source(self, sources: Iterable[PinSource], now: float) -> PinSource | None:
        """The first of ``sources`` that is blocked at ``now``, or None."""
        for source in sources:
            if self._throttles[source.kind].is_blocked(source.value, now):
                return source
        return None

    def is_blocked(self, sources: Iterable[PinSource], now: float) -> bool:
        return self.blocked_source(sources, now) is not None

    def record_failure(self, sources: Iterable[PinSource], now: float) -> tuple[PinSource, ...]:
        """Count one wrong PIN against each source and toward the alarm; the sources this very failure
        blocked (usually none), :data:`ALL` last when it raised the alarm."""
        return tuple(source for source in (*sources, ALL)
                     if self._throttles[source.kind].record_failure(source.value, now))

    @property
    def banned_sources(self) -> int:
        """Bans held in memory (for metrics; expired ones linger until the next call prunes them)."""
        return sum(t.banned_sources for kind, t in self._throttles.items() if kind is not SourceKind.ALL)
