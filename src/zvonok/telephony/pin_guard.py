"""Brute-force protection for access-number PINs, keyed by caller ID and by source address.

How it works
------------
A wrong PIN counts against every :class:`PinSource` of the call: its caller ID and, when the engine
passes one, the SIP source address.  Each kind has its own :class:`~zvonok.telephony.throttle.FailureThrottle`
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
  kept short (15 minutes by default) for that reason, and a blocked employee can still call in from
  another phone.

Pure and in-memory (time is the caller's ``now``); several nodes would share bans through a store with
the same three methods.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from .throttle import FailureThrottle, address_key

__all__ = ["ANONYMOUS", "PinGuard", "PinSource", "SourceKind", "pin_sources"]

ANONYMOUS = "anonymous"


class SourceKind(enum.StrEnum):
    CALLER_ID = "caller_id"
    ADDRESS = "address"


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


class PinGuard:
    """Blocks a caller ID after ``max_failures`` wrong PINs in ``window`` s, an address after
    ``address_max_failures``; a block lasts ``ban_time`` s."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        address_max_failures: int = 20,
        window: float = 600.0,
        ban_time: float = 900.0,
        max_sources: int = 100_000,
    ) -> None:
        if max_failures < 1 or address_max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        # FailureThrottle bans on the failure that *exceeds* its limit: N failures block at limit N - 1.
        self._throttles = {
            SourceKind.CALLER_ID: FailureThrottle(max_failures - 1, window, ban_time, max_sources),
            SourceKind.ADDRESS: FailureThrottle(address_max_failures - 1, window, ban_time, max_sources),
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
        """Count one wrong PIN against each source; the sources this very failure blocked (usually none)."""
        return tuple(source for source in sources
                     if self._throttles[source.kind].record_failure(source.value, now))

    @property
    def banned_sources(self) -> int:
        """Bans held in memory (for metrics; expired ones linger until the next call prunes them)."""
        return sum(t.banned_sources for t in self._throttles.values())
