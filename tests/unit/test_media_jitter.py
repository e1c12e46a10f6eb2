"""The jitter buffer: in-order output, gaps, late packets, overflow, wrap-around."""

from __future__ import annotations

from typing import TypeVar

import pytest

from zvonok.media.jitter import JitterBuffer

T = TypeVar("T")


def _drain(buffer: JitterBuffer[T]) -> list[tuple[int, T | None]]:
    out = []
    while (item := buffer.pop()) is not None:
        out.append(item)
    return out


def test_reordered_packets_come_out_in_order() -> None:
    buffer: JitterBuffer[str] = JitterBuffer(8)
    assert buffer.pop() is None
    for seq in (10, 12, 11, 13):
        assert buffer.put(seq, f"p{seq}")
    assert buffer.depth == 4
    assert _drain(buffer) == [(10, "p10"), (11, "p11"), (12, "p12"), (13, "p13")]
    assert buffer.depth == 0


def test_gaps_are_none_and_late_packets_dropped() -> None:
    buffer: JitterBuffer[str] = JitterBuffer(8)
    buffer.put(100, "a")
    buffer.put(103, "d")
    assert buffer.pop() == (100, "a")
    assert buffer.pop() == (101, None)
    assert not buffer.put(100, "late")
    assert buffer.put(102, "c")
    assert not buffer.put(102, "dup")
    assert _drain(buffer) == [(102, "c"), (103, "d")]
    assert buffer.late == 2


def test_wrap_around() -> None:
    buffer: JitterBuffer[int] = JitterBuffer(4)
    for seq in (65534, 0, 65535, 1):
        buffer.put(seq, seq)
    assert [item for _, item in _drain(buffer)] == [65534, 65535, 0, 1]


def test_overflow_skips_the_oldest() -> None:
    buffer: JitterBuffer[int] = JitterBuffer(4)
    for seq in range(0, 4):
        buffer.put(seq, seq)
    buffer.put(5, 5)  # 2 slots too far: 0 and 1 are given up
    assert buffer.skipped == 2
    assert _drain(buffer) == [(2, 2), (3, 3), (4, None), (5, 5)]
    buffer.put(1000, 1000)  # a jump: everything skipped
    assert _drain(buffer) == [(997, None), (998, None), (999, None), (1000, 1000)]
    with pytest.raises(ValueError):
        JitterBuffer(1)
