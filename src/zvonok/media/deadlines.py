"""Many per-endpoint deadlines behind one event-loop timer.

Why: each endpoint with an RTP inactivity check used to hold its own ``loop.call_at`` handle (with uvloop
a ``TimerHandle``, a libuv timer and a copied context: about 1 KB per call up, issue 9). Here the
deadlines live in one heap of ``(when, key)`` tuples and one loop timer is armed for the earliest.

Entries are never removed early: re-arming a key pushes a new entry, and the owner decides when an entry
fires whether it is still the current one (``fire(key, when)`` compares ``when`` with what it expects).
A key that is gone (an endpoint released) costs one stale tuple until its time comes, not the endpoint.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

EARLY = 1e-3  # a loop timer may run this much before its time (clock resolution): the entry is due


class Deadlines:
    """A heap of ``(when, key)`` and one loop timer at its head; ``fire(key, when)`` for each due entry."""

    __slots__ = ("_armed_for", "_fire", "_handle", "_heap", "_loop")

    def __init__(self, fire: Callable[[str, float], None]) -> None:
        self._fire = fire
        self._heap: list[tuple[float, str]] = []
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, loop: asyncio.AbstractEventLoop, when: float, key: str) -> None:
        """Call ``fire(key, when)`` at ``when`` (loop time), unless :meth:`clear` comes first."""
        self._loop = loop
        heapq.heappush(self._heap, (when, key))
        if self._handle is None or when < self._armed_for:
            self._arm(when)

    def clear(self) -> None:
        """Forget every entry and stop the timer (the engine closes)."""
        self._heap.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, when: float) -> None:
        assert self._loop is not None
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(when, self._run)
        self._armed_for = when

    def _run(self) -> None:
        self._handle = None
        assert self._loop is not None
        now = self._loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now + EARLY:
            when, key = heapq.heappop(heap)
            self._fire(key, when)  # may push new entries (a re-armed check): they are later than now
        if heap and (self._handle is None or heap[0][0] < self._armed_for):
            self._arm(heap[0][0])  # an entry pushed by ``fire`` armed the timer: the head may be earlier
