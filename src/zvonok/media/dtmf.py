"""RFC 4733 telephone-events (DTMF over RTP): payload format, a receiver and a sender.

How it works (receiver): one key press is one *event*, identified by the RTP timestamp of its first packet
(§2.5.1.2: all packets of an event carry the same timestamp, the duration grows). The end of the event is
sent three times with the E bit (§2.5.1.4). :class:`DtmfReceiver` reports the event exactly once:

* at the first packet with E set for a timestamp not yet reported;
* or, if every end packet was lost, when a packet of a *newer* event arrives (the old one is reported with
  the longest duration seen), or when the owner calls :meth:`DtmfReceiver.flush` (stream stopped);
* packets for an already reported timestamp (redundant ends, duplicates) and packets older than the
  current event (reordered late ones) are ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import PacketError
from .rtp import ts_delta

_EVENT = struct.Struct("!BBH")

#: RFC 4733 §3.2 event codes of the DTMF digits
DIGITS = "0123456789*#ABCD"
FLASH = 16


def digit_code(digit: str) -> int:
    code = DIGITS.find(digit.upper())
    if len(digit) != 1 or code < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return code


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 §2.3): 4 octets."""

    event: int
    end: bool = False
    volume: int = 10  # attenuation in dBm0, 0..63 (power level -volume dBm0)
    duration: int = 0  # timestamp units since the event's start

    def serialize(self) -> bytes:
        if not (0 <= self.event < 256 and 0 <= self.volume < 64 and 0 <= self.duration < 65536):
            raise ValueError("telephone-event field out of range")
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @property
    def digit(self) -> str | None:
        return DIGITS[self.event] if self.event < len(DIGITS) else None


def parse_event(payload: bytes) -> TelephoneEvent:
    if len(payload) < 4:  # several events may be stacked (§2.5.1.5 redundancy); we read the first
        raise PacketError("telephone-event payload shorter than 4 octets")
    event, flags, duration = _EVENT.unpack_from(payload)
    return TelephoneEvent(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfEvent:
    """One key press as reported to the call engine."""

    digit: str  # "0"-"9", "*", "#", "A"-"D"; "!" for a hook flash
    duration: int  # timestamp units (1/8000 s for 8 kHz audio)
    clock_rate: int = 8000

    @property
    def duration_ms(self) -> int:
        return self.duration * 1000 // self.clock_rate


class DtmfReceiver:
    """Turns a telephone-event packet stream into one :class:`DtmfEvent` per key press (see module doc)."""

    __slots__ = ("clock_rate", "_current", "_duration", "_event", "_reported")

    def __init__(self, *, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self._current: int | None = None  # timestamp of the event in progress or last seen
        self._event = 0
        self._duration = 0
        self._reported = True  # nothing pending

    def receive(self, timestamp: int, payload: bytes) -> list[DtmfEvent]:
        """Feed one packet (its RTP timestamp and payload); returns the events it completes (0, 1 or 2)."""
        event = parse_event(payload)
        done: list[DtmfEvent] = []
        if self._current is not None and timestamp != self._current:
            if ts_delta(timestamp, self._current) < 0:
                return done  # a late packet of an earlier event
            pending = self.flush()  # a new event: the old one lost all its end packets
            if pending is not None:
                done.append(pending)
        if self._current != timestamp:
            self._current, self._event, self._duration, self._reported = timestamp, event.event, 0, False
        if self._reported:
            return done  # redundant end packets or duplicates of a reported event
        self._duration = max(self._duration, event.duration)
        if event.end:
            pending = self.flush()
            if pending is not None:
                done.append(pending)
        return done

    def flush(self) -> DtmfEvent | None:
        """Report the event in progress (if any) now, e.g. when the stream stops before its end packets."""
        if self._reported or self._current is None:
            return None
        self._reported = True
        digit = DIGITS[self._event] if self._event < len(DIGITS) else ("!" if self._event == FLASH else "?")
        return DtmfEvent(digit=digit, duration=self._duration, clock_rate=self.clock_rate)


def event_payloads(
    digit: str | int, *, duration_ms: int = 100, volume: int = 10, packet_ms: int = 20, clock_rate: int = 8000,
    end_repeats: int = 3,
) -> list[tuple[bool, bytes]]:
    """The packets of one key press as ``(marker, payload)``, one every ``packet_ms``.

    All of them carry the same RTP timestamp (the event's start) and consecutive sequence numbers; the
    first has the marker bit (§2.5.1.3); the last is the end packet, repeated ``end_repeats`` times with
    the final duration (§2.5.1.4). Durations longer than 65535 units are not produced (§2.5.1.3 would
    need segmentation, never useful for a key press). ``digit`` may be an event number (§3.2) instead.
    """
    code = digit if isinstance(digit, int) else digit_code(digit)
    step = packet_ms * clock_rate // 1000
    total = min(duration_ms * clock_rate // 1000, 0xFFFF)
    packets: list[tuple[bool, bytes]] = []
    duration = step
    while duration < total:
        packets.append((not packets, TelephoneEvent(event=code, volume=volume, duration=duration).serialize()))
        duration += step
    end = TelephoneEvent(event=code, end=True, volume=volume, duration=total).serialize()
    packets.append((not packets, end))
    packets.extend((False, end) for _ in range(end_repeats - 1))
    return packets
