"""RFC 4733 telephone-events: payload format, sender packets, receiver (one event per key press)."""

from __future__ import annotations

import random

import pytest

from zvonok.media.dtmf import DtmfEvent, DtmfReceiver, TelephoneEvent, digit_code, event_payloads, parse_event
from zvonok.media.errors import PacketError


def test_payload_round_trip() -> None:
    event = TelephoneEvent(event=11, end=True, volume=10, duration=800)
    assert event.serialize() == bytes([11, 0x8A, 0x03, 0x20])
    assert parse_event(event.serialize()) == event
    assert event.digit == "#"
    assert parse_event(bytes([5, 0x3F, 0, 160]) + b"extra") == TelephoneEvent(event=5, volume=63, duration=160)
    with pytest.raises(PacketError):
        parse_event(b"\x01\x02")
    with pytest.raises(ValueError):
        TelephoneEvent(event=1, volume=64).serialize()


def test_digit_codes() -> None:
    assert [digit_code(d) for d in "09*#aD"] == [0, 9, 10, 11, 12, 15]
    with pytest.raises(ValueError):
        digit_code("x")


def test_sender_packets() -> None:
    packets = event_payloads("5", duration_ms=100)
    events = [parse_event(payload) for _, payload in packets]
    assert [marker for marker, _ in packets] == [True] + [False] * 6
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {5}


def _stream(digits: str, start_ts: int = 1000) -> list[tuple[int, bytes]]:
    """(timestamp, payload) of consecutive key presses, 100 ms each, 200 ms apart."""
    out = []
    for i, digit in enumerate(digits):
        ts = (start_ts + i * 1600) & 0xFFFFFFFF
        out += [(ts, payload) for _, payload in event_payloads(digit, duration_ms=100)]
    return out


def _receive(packets: list[tuple[int, bytes]]) -> list[DtmfEvent]:
    receiver = DtmfReceiver()
    events = [e for ts, payload in packets for e in receiver.receive(ts, payload)]
    pending = receiver.flush()
    return events + ([pending] if pending else [])


def test_one_event_per_key_press() -> None:
    assert _receive(_stream("123#")) == [DtmfEvent(digit=d, duration=800) for d in "123#"]
    assert DtmfEvent(digit="1", duration=800).duration_ms == 100


def test_duplicated_packets_and_timestamp_wrap() -> None:
    stream = _stream("9*", start_ts=2**32 - 800)
    doubled = [p for p in stream for _ in range(2)]
    assert [e.digit for e in _receive(doubled)] == ["9", "*"]


def test_lost_end_packets_are_reported_by_the_next_event_or_flush() -> None:
    stream = _stream("47")
    without_ends = [(ts, p) for ts, p in stream if not parse_event(p).end]
    events = _receive(without_ends)
    assert [(e.digit, e.duration) for e in events] == [("4", 640), ("7", 640)]


def test_same_digit_twice_is_two_presses() -> None:
    assert [e.digit for e in _receive(_stream("55"))] == ["5", "5"]


def test_late_packets_of_a_finished_event_are_ignored() -> None:
    stream = _stream("12")
    late = stream[:7] + stream[7:9] + [stream[2], stream[6]] + stream[9:]
    assert [e.digit for e in _receive(late)] == ["1", "2"]


def test_random_loss_and_duplication_never_duplicates_a_digit() -> None:
    rng = random.Random(4733)
    digits = "0123456789*#"
    for _ in range(50):
        stream = _stream(digits)
        noisy = []
        for packet in stream:
            if rng.random() < 0.2:
                continue  # lost
            noisy.append(packet)
            if rng.random() < 0.2:
                noisy.append(packet)  # duplicated
        events = _receive(noisy)
        received = "".join(e.digit for e in events)
        assert len(received) <= len(digits)
        # every digit whose packets were not all lost is reported exactly once, in order
        survivors = "".join(d for i, d in enumerate(digits) if any(ts == 1000 + i * 1600 for ts, _ in noisy))
        assert received == survivors
