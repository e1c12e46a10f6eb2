"""Brute-force throttle for authentication failures (the idea of Kamailio ``pike``/``htable`` bans and
fail2ban, in process).

How it works
------------
Each source (an opaque hashable key: an address from :func:`zvonok.netaddr.address_key`, which folds an IPv6 /64
into one, or an account) keeps the times of its recent failures in a deque of at most ``limit + 1``
entries, each failure with an optional tag (the account it was against).  A failure counts
for ``window`` seconds: the window is half-open, ``(now - window, now]``, so a failure exactly
``window`` seconds old no longer counts.  The failure that makes the count exceed ``limit`` bans the
source for ``ban_time`` seconds, ``[now, now + ban_time)``, and clears its history, so after the ban
it starts from zero.  Failures while banned are not counted and do not extend the ban (the caller is
expected to drop banned sources before doing any digest work).

Memory is bounded by two ordered tables, each of at most ``max_sources`` entries:

* failure histories in least-recently-failed order: entries whose last failure left the window are
  pruned from the front as time passes; when the table is full the oldest is dropped;
* bans in expiry order (``ban_time`` is fixed, so insertion order is expiry order): expired bans are
  pruned from the front; when the table is full the ban closest to expiry is dropped.

A success forgets the failures of its source with its tag only: a success from an address for one
account must not wipe out that address's guesses at other accounts (an attacker who knows one password
would interleave it with guesses at another and never reach the limit).

Every call does O(1) amortized work (a tagged success walks at most ``limit + 1`` entries).  Time is the caller's ``now`` (a monotonic clock), never read
here.  The pruning assumes ``now`` does not go backwards; if it does, pruning merely stops early.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable

__all__ = ["FailureThrottle"]


class FailureThrottle:
    """Bans a source after more than ``limit`` failures within ``window`` seconds."""

    def __init__(self, limit: int, window: float, ban_time: float, max_sources: int = 100_000) -> None:
        if limit < 0:
            raise ValueError("limit must not be negative")
        if window <= 0 or ban_time <= 0:
            raise ValueError("window and ban_time must be positive")
        if max_sources < 1:
            raise ValueError("max_sources must be at least 1")
        self.limit = limit
        self.window = window
        self.ban_time = ban_time
        self.max_sources = max_sources
        self._failures: OrderedDict[Hashable, deque[tuple[float, Hashable]]] = OrderedDict()  # (time, tag)
        self._bans: OrderedDict[Hashable, float] = OrderedDict()  # source -> banned until

    def is_blocked(self, source: Hashable, now: float) -> bool:
        self._prune_bans(now)
        until = self._bans.get(source)
        return until is not None and now < until

    def record_failure(self, source: Hashable, now: float, tag: Hashable = None) -> bool:
        """Count a failure (against ``tag``, e.g. an account); True exactly when it starts a new ban."""
        if self.is_blocked(source, now):
            return False
        self._prune_failures(now)
        times = self._failures.get(source)
        if times is None:
            if len(self._failures) >= self.max_sources:
                self._failures.popitem(last=False)
            times = self._failures[source] = deque(maxlen=self.limit + 1)
        else:
            self._failures.move_to_end(source)
            horizon = now - self.window
            while times and times[0][0] <= horizon:
                times.popleft()
        times.append((now, tag))
        if len(times) <= self.limit:
            return False
        del self._failures[source]
        self._bans.pop(source, None)  # an expired ban left behind if the clock stepped back
        if len(self._bans) >= self.max_sources:
            self._bans.popitem(last=False)
        self._bans[source] = now + self.ban_time
        return True

    def record_success(self, source: Hashable, tag: Hashable = None) -> None:
        """Forget the failures of ``source`` against ``tag`` (all of them when ``tag`` is None); an active
        ban stays."""
        if tag is None:
            self._failures.pop(source, None)
            return
        times = self._failures.get(source)
        if times is None:
            return
        kept = [entry for entry in times if entry[1] != tag]
        if not kept:
            del self._failures[source]
        elif len(kept) != len(times):
            times.clear()
            times.extend(kept)

    def _prune_bans(self, now: float) -> None:
        bans = self._bans
        while bans:
            source, until = next(iter(bans.items()))
            if until > now:
                return
            del bans[source]

    def _prune_failures(self, now: float) -> None:
        failures = self._failures
        horizon = now - self.window
        while failures:
            source, times = next(iter(failures.items()))
            if times and times[-1][0] > horizon:
                return
            del failures[source]

    @property
    def tracked_sources(self) -> int:
        """Sources with failures in memory (for metrics)."""
        return len(self._failures)

    @property
    def banned_sources(self) -> int:
        """Bans in memory; expired ones linger until the next call prunes them."""
        return len(self._bans)

    def blocked_until(self, source: Hashable, now: float) -> float | None:
        """When the ban of ``source`` ends (for a Retry-After), or None if it is not blocked."""
        return self._bans[source] if self.is_blocked(source, now) else None
