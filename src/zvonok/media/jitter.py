"""A small jitter buffer: a ring of slots indexed by RTP sequence number (the aiortc shape).

How it works: :meth:`JitterBuffer.put` stores a packet's item in slot ``seq % capacity``; :meth:`pop`
hands items out strictly in sequence order, one per call (the caller's 20 ms clock), with None for a
sequence number that never arrived (the caller conceals it: silence or the previous frame). Packets older
than the next one to hand out are late and dropped; a packet more than ``capacity`` ahead means the buffer
overflowed (a long stall or a sender jump): the oldest slots are skipped so the newest fits. Sequence
numbers are compared with wrap-around (:func:`~zvonok.media.rtp.seq_delta`).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from .rtp import seq_delta

T = TypeVar("T")


class JitterBuffer(Generic[T]):
    def __init__(self, capacity: int = 64) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self.capacity = capacity
        self._slots: list[tuple[int, T] | None] = [None] * capacity
        self._next: int | None = None  # the sequence number pop() hands out next
        self._newest: int | None = None
        self.late = 0  # dropped because their turn had passed (or duplicates)
        self.skipped = 0  # sequence numbers given up because of an overflow

    def put(self, seq: int, item: T) -> bool:
        """Store one packet; False if it was late, a duplicate, or the buffer dropped it."""
        if self._next is None:
            self._next = self._newest = seq
        elif seq_delta(seq, self._next) < 0:
            self.late += 1
            return False
        ahead = seq_delta(seq, self._next)
        if ahead >= self.capacity:  # overflow: make room by skipping the oldest
            drop = ahead - self.capacity + 1
            self.skipped += drop
            if drop >= self.capacity:
                self._slots = [None] * self.capacity
            else:
                for i in range(drop):
                    self._slots[(self._next + i) % self.capacity] = None
            self._next = (self._next + drop) & 0xFFFF
        slot = seq % self.capacity
        existing = self._slots[slot]
        if existing is not None and existing[0] == seq:
            self.late += 1
            return False
        self._slots[slot] = (seq, item)
        assert self._newest is not None
        if seq_delta(seq, self._newest) > 0:
            self._newest = seq
        return True

    @property
    def depth(self) -> int:
        """How many sequence numbers (present or missing) lie between the next to hand out and the newest."""
        if self._next is None or self._newest is None:
            return 0
        return max(seq_delta(self._newest, self._next) + 1, 0)

    def pop(self) -> tuple[int, T | None] | None:
        """The next ``(seq, item)`` in order, item None when that packet is missing; None when empty."""
        if self._next is None or self.depth == 0:
            return None
        seq = self._next
        slot = seq % self.capacity
        entry = self._slots[slot]
        self._slots[slot] = None
        self._next = (seq + 1) & 0xFFFF
        if entry is not None and entry[0] == seq:
            return seq, entry[1]
        return seq, None
