"""Per-stream RTP statistics: counters, loss from sequence gaps (RFC 3550 A.1/A.3), interarrival jitter (A.8).

How it works: :meth:`StreamStats.received` runs once per inbound packet and does only integer/float
arithmetic. Sequence numbers are extended with a cycle count (A.1) so loss survives the 16-bit wrap;
``lost = expected - received`` (A.3), where a duplicate makes it smaller (it can go negative, as in the
RFC). A jump of more than ``MAX_DROPOUT`` is not believed until a second packet confirms the new sequence
(A.1's ``bad_seq`` rule: a restarted sender). A new SSRC (re-INVITE, transfer) starts a new sequence
space; the loss of the previous source is kept. Jitter is fed by audio packets only: telephone-event
packets repeat one timestamp and would look like jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_DROPOUT = 3000
MAX_MISORDER = 100
SEQ_MOD = 1 << 16


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaStats:
    """A snapshot of one endpoint's streams (what :meth:`MediaEngine.stats` returns)."""

    packets_received: int
    bytes_received: int  # RTP payload + header octets as received (UDP payload)
    packets_sent: int
    bytes_sent: int
    packets_lost: int  # RFC 3550 A.3 cumulative, all sources so far
    jitter_ms: float  # RFC 3550 A.8 interarrival jitter, current source
    last_received_at: float | None  # the engine's clock (loop.time()), None before the first packet
    remote: tuple[str, int] | None = None  # where we send to now (latched or SDP address)
    rtcp_reports: int = 0  # RTCP SR/RR received


class StreamStats:
    __slots__ = ("bad_seq", "base_seq", "bytes_received", "bytes_sent", "clock_rate", "cycles", "jitter",
                 "last_received_at", "last_transit", "lost_before", "max_seq", "packets_received",
                 "packets_sent", "rtcp_reports", "source_received", "ssrc")

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self.packets_received = 0
        self.bytes_received = 0
        self.packets_sent = 0
        self.bytes_sent = 0
        self.rtcp_reports = 0
        self.last_received_at: float | None = None
        self.ssrc: int | None = None
        self.lost_before = 0  # loss of earlier sources
        self.base_seq = 0
        self.max_seq = 0
        self.cycles = 0
        self.bad_seq = SEQ_MOD + 1
        self.source_received = 0
        self.jitter = 0.0  # timestamp units
        self.last_transit: float | None = None

    def received(self, ssrc: int, seq: int, timestamp: int, size: int, now: float, audio: bool = True) -> None:
        self.packets_received += 1
        self.bytes_received += size
        self.last_received_at = now
        if ssrc != self.ssrc:
            if self.ssrc is not None:
                self.lost_before += self._source_lost()
            self.ssrc = ssrc
            self._init_seq(seq)
            self.jitter = 0.0
            self.last_transit = None
        else:
            udelta = (seq - self.max_seq) & 0xFFFF
            if udelta < MAX_DROPOUT:
                if seq < self.max_seq:
                    self.cycles += SEQ_MOD
                self.max_seq = seq
            elif udelta <= SEQ_MOD - MAX_MISORDER:  # a big jump: believe it only when the next one follows
                if seq == self.bad_seq:
                    self.lost_before += self._source_lost()
                    self._init_seq(seq)
                else:
                    self.bad_seq = (seq + 1) & 0xFFFF
                    return
            # else: a duplicate or a reordered packet, counted as received (A.3 allows lost < 0)
        self.source_received += 1
        if audio:
            transit = now * self.clock_rate - timestamp
            if self.last_transit is not None:
                d = transit - self.last_transit
                if d < 0:
                    d = -d
                if d < 1 << 30:  # a 32-bit timestamp wrap is not jitter
                    self.jitter += (d - self.jitter) / 16.0
            self.last_transit = transit

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.cycles = 0
        self.bad_seq = SEQ_MOD + 1
        self.source_received = 0

    def _source_lost(self) -> int:
        expected = self.cycles + self.max_seq - self.base_seq + 1
        return expected - self.source_received

    @property
    def packets_lost(self) -> int:
        return self.lost_before + (self._source_lost() if self.ssrc is not None else 0)

    def sent(self, size: int) -> None:
        self.packets_sent += 1
        self.bytes_sent += size

    def snapshot(self, remote: tuple[str, int] | None = None) -> MediaStats:
        return MediaStats(
            packets_received=self.packets_received,
            bytes_received=self.bytes_received,
            packets_sent=self.packets_sent,
            bytes_sent=self.bytes_sent,
            packets_lost=self.packets_lost,
            jitter_ms=self.jitter * 1000.0 / self.clock_rate,
            last_received_at=self.last_received_at,
            remote=remote,
            rtcp_reports=self.rtcp_reports,
        )
