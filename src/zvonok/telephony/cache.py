"""A bounded, expiring cache of look-up answers, for tables that outsiders can make us look up.

How it works
------------
Answers are kept in two least-recently-used tables (``OrderedDict``: a hit moves its key to the end,
a full table drops from the front):

* found values, at most ``max_entries``, each for ``ttl`` seconds;
* misses (the answer "there is no such thing"), at most ``max_misses``, each for ``negative_ttl``
  seconds.

The split is the point: a caller chooses the keys we look up (a dialed string, a username), so a scan
of made-up keys must neither grow memory without bound nor push out the real entries that serve
everyone else; it only churns the misses' own, smaller table. Nothing ever empties a table wholesale
on its own (a full cache that flushed itself would send every request to the database at once).

Time is a monotonic clock (``clock``): a wall-clock step must not expire or revive entries.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    def __init__(self, *, ttl: float, negative_ttl: float, max_entries: int, max_misses: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1 or max_misses < 1:
            raise ValueError("max_entries and max_misses must be at least 1")
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self.max_misses = max_misses
        self._clock = clock
        self._values: OrderedDict[K, tuple[float, V]] = OrderedDict()  # key -> (expires, value)
        self._misses: OrderedDict[K, float] = OrderedDict()  # key -> expires
        self.evicted = 0  # found values dropped to make room (not expiries): the table outgrew max_entries

    def get(self, key: K) -> tuple[bool, V | None]:
        """``(True, value)`` or ``(True, None)`` for a remembered miss; ``(False, None)`` when unknown."""
        now = self._clock()
        hit = self._values.get(key)
        if hit is not None:
            if hit[0] > now:
                self._values.move_to_end(key)
                return True, hit[1]
            del self._values[key]
        expires = self._misses.get(key)
        if expires is not None:
            if expires > now:
                self._misses.move_to_end(key)
                return True, None
            del self._misses[key]
        return False, None

    def get_or_stale(self, key: K) -> tuple[bool, V | None, bool]:
        """As :meth:`get`, but a found value past its ``ttl`` is still returned (and kept), flagged stale:
        ``(found, value, stale)``. For a caller that answers from the old value at once and has it looked
        up again meanwhile (a miss is never served stale)."""
        hit = self._values.get(key)
        if hit is not None and hit[0] <= self._clock():
            self._values.move_to_end(key)
            return True, hit[1], True
        found, value = self.get(key)
        return found, value, False

    def put(self, key: K, value: V | None, ttl: float | None = None) -> None:
        """Remember ``value`` (None: a miss) for ``ttl`` seconds (the table's own by default)."""
        now = self._clock()
        if value is None:
            self._values.pop(key, None)
            self._misses.pop(key, None)
            self._misses[key] = now + (self.negative_ttl if ttl is None else ttl)
            while len(self._misses) > self.max_misses:
                self._misses.popitem(last=False)
            return
        self._misses.pop(key, None)
        self._values.pop(key, None)
        self._values[key] = (now + (self.ttl if ttl is None else ttl), value)
        while len(self._values) > self.max_entries:
            self._values.popitem(last=False)
            self.evicted += 1

    def discard(self, key: K) -> None:
        self._values.pop(key, None)
        self._misses.pop(key, None)

    def discard_where(self, predicate: Callable[[K, V | None], bool]) -> list[V]:
        """Forget every entry (misses too, with value None) for which ``predicate(key, value)``; the
        found values forgotten."""
        dropped = [k for k, (_, v) in self._values.items() if predicate(k, v)]
        values = [self._values.pop(k)[1] for k in dropped]
        for k in [k for k in self._misses if predicate(k, None)]:
            del self._misses[k]
        return values

    def clear(self) -> None:
        self._values.clear()
        self._misses.clear()

    def __len__(self) -> int:
        return len(self._values) + len(self._misses)

    @property
    def misses(self) -> int:
        """Remembered misses (expired ones linger until looked up or pushed out)."""
        return len(self._misses)
