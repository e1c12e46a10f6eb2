"""RTP and RTCP packets (RFC 3550), sequence/timestamp arithmetic, and SSRC/sequence continuity.

How it works: the fixed RTP header (§5.1) is one precompiled :class:`struct.Struct`; the relay's hot path
uses :data:`RTP_HEADER` directly (one ``unpack_from`` per packet) and :func:`parse_rtp` is the full,
validating parser for everything else. Sequence numbers (16 bit) and timestamps (32 bit) wrap around, so
they are only ever compared through :func:`seq_delta` / :func:`ts_delta` (serial-number arithmetic).
:class:`SsrcRewriter` keeps one outgoing stream (one SSRC, continuous seq/ts) while its sources change.
RTCP is minimal (§6.4): sender and receiver reports, for statistics; other packet types are skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import PacketError

RTP_VERSION = 2
#: V/P/X/CC, M/PT, sequence number, timestamp, SSRC (RFC 3550 §5.1)
RTP_HEADER = struct.Struct("!BBHII")
RTP_HEADER_SIZE = RTP_HEADER.size  # 12
_EXTENSION = struct.Struct("!HH")
_WORD = struct.Struct("!I")

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


def seq_delta(a: int, b: int) -> int:
    """``a - b`` for 16-bit sequence numbers, in ``[-32768, 32767]`` (positive: ``a`` is newer)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_newer(a: int, b: int) -> bool:
    """True if sequence number ``a`` comes after ``b`` (across the 65535 → 0 wrap)."""
    return seq_delta(a, b) > 0


def ts_delta(a: int, b: int) -> int:
    """``a - b`` for 32-bit RTP timestamps, in ``[-2**31, 2**31 - 1]``."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def ts_newer(a: int, b: int) -> bool:
    """True if timestamp ``a`` is later than ``b`` (across the 2**32 wrap)."""
    return ts_delta(a, b) > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1). ``payload`` excludes CSRCs, extension and padding."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension_profile: int | None = None  # §5.3.1: 16-bit profile id; None when X = 0
    extension: bytes = b""
    padding: int = 0  # number of padding octets, including the count octet itself
    payload_offset: int = RTP_HEADER_SIZE  # where ``payload`` starts in the packet as received/built

    @property
    def version(self) -> int:
        return RTP_VERSION

    @property
    def csrc_count(self) -> int:
        return len(self.csrcs)

    def serialize(self) -> bytes:
        return build_rtp(
            payload_type=self.payload_type,
            sequence=self.sequence,
            timestamp=self.timestamp,
            ssrc=self.ssrc,
            payload=self.payload,
            marker=self.marker,
            csrcs=self.csrcs,
            extension_profile=self.extension_profile,
            extension=self.extension,
            padding=self.padding,
        )


def rtp_payload_bounds(data: bytes) -> tuple[int, int]:
    """``(start, end)`` of the payload in a raw RTP packet (after CSRCs/extension, before padding)."""
    size = len(data)
    if size < RTP_HEADER_SIZE:
        raise PacketError(f"RTP packet too short ({size} octets)")
    b0 = data[0]
    if b0 >> 6 != RTP_VERSION:
        raise PacketError(f"RTP version {b0 >> 6}")
    start = RTP_HEADER_SIZE + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if size < start + 4:
            raise PacketError("RTP header extension truncated")
        start += 4 + 4 * _EXTENSION.unpack_from(data, start)[1]
    end = size
    if b0 & 0x20:
        end -= data[-1]
    if start > end or (b0 & 0x20 and data[-1] == 0):
        raise PacketError("RTP header, extension or padding longer than the packet")
    return start, end


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse and validate one RTP packet; raises :class:`PacketError` on anything malformed."""
    start, end = rtp_payload_bounds(data)
    b0, b1, sequence, timestamp, ssrc = RTP_HEADER.unpack_from(data)
    count = b0 & 0x0F
    csrcs = struct.unpack_from(f"!{count}I", data, RTP_HEADER_SIZE) if count else ()
    profile: int | None = None
    extension = b""
    if b0 & 0x10:
        at = RTP_HEADER_SIZE + 4 * count
        profile, words = _EXTENSION.unpack_from(data, at)
        extension = bytes(data[at + 4 : at + 4 + 4 * words])
    return RtpPacket(
        payload_type=b1 & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=bytes(data[start:end]),
        marker=bool(b1 & 0x80),
        csrcs=tuple(csrcs),
        extension_profile=profile,
        extension=extension,
        padding=len(data) - end,
        payload_offset=start,
    )


def build_rtp(
    *,
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    marker: bool = False,
    csrcs: tuple[int, ...] = (),
    extension_profile: int | None = None,
    extension: bytes = b"",
    padding: int = 0,
) -> bytes:
    """Serialize an RTP packet. ``extension`` must be a whole number of 32-bit words (§5.3.1)."""
    if not 0 <= payload_type < 128 or len(csrcs) > 15 or len(extension) % 4 or not 0 <= padding < 256:
        raise ValueError("RTP field out of range")
    b0 = (RTP_VERSION << 6) | len(csrcs)
    if padding:
        b0 |= 0x20
    parts = [
        RTP_HEADER.pack(b0 | (0x10 if extension_profile is not None else 0),
                        payload_type | (0x80 if marker else 0),
                        sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)
    ]
    if csrcs:
        parts.append(struct.pack(f"!{len(csrcs)}I", *csrcs))
    if extension_profile is not None:
        parts.append(_EXTENSION.pack(extension_profile, len(extension) // 4))
        parts.append(extension)
    parts.append(payload)
    if padding:
        parts.append(bytes(padding - 1) + bytes((padding,)))
    return b"".join(parts)


class SsrcRewriter:
    """One outgoing RTP stream over changing sources: one SSRC, continuous sequence and timestamps.

    How it works: the first source passes through untouched (its SSRC becomes the output SSRC, offsets
    are zero, :attr:`identity` is True, so the relay can forward the datagram as is). When a packet with
    another input SSRC arrives (re-INVITE, transfer, a prompt played in between), the offsets are
    recalculated so that the next output sequence number is the last one + 1 and the output timestamp
    advances by the wall-clock time elapsed since the last output packet (at least one frame), as a
    receiver's jitter buffer expects from one talker. The new source's marker bit should be set by the
    caller (RFC 3551 §4.1: start of a talkspurt) — the relay passes it through.

    ``now`` is in seconds (any monotonic origin); ``clock_rate`` is the RTP clock (8000 for G.711).
    """

    __slots__ = ("clock_rate", "frame", "identity", "in_ssrc", "last_seq", "last_ts", "last_time",
                 "out_ssrc", "seq_offset", "ts_offset")

    def __init__(self, *, clock_rate: int = 8000, frame: int = 160, out_ssrc: int | None = None) -> None:
        self.clock_rate = clock_rate
        self.frame = frame  # minimal timestamp step at a switch (one 20 ms frame)
        self.in_ssrc: int | None = None
        self.out_ssrc: int | None = out_ssrc
        self.seq_offset = 0
        self.ts_offset = 0
        self.identity = False
        self.last_seq = 0
        self.last_ts = 0
        self.last_time: float | None = None

    def rewrite(self, ssrc: int, seq: int, ts: int, now: float) -> tuple[int, int]:
        """Map an input (ssrc, seq, ts) to the output (seq, ts); the output SSRC is :attr:`out_ssrc`."""
        if ssrc != self.in_ssrc:
            self._switch(ssrc, seq, ts, now)
        out_seq = (seq + self.seq_offset) & 0xFFFF
        out_ts = (ts + self.ts_offset) & 0xFFFFFFFF
        if seq_delta(out_seq, self.last_seq) > 0:  # a late/reordered packet must not move us back
            self.last_seq = out_seq
            self.last_ts = out_ts
            self.last_time = now
        return out_seq, out_ts

    def skip(self, ssrc: int, seq: int) -> None:
        """A packet of the current source is not sent on (a withheld key): later ones are numbered as if it
        had never been, so the receiver counts no loss. Only for the next packet in order; a reordered one
        leaves its gap (renumbering around it could repeat a sequence number already sent)."""
        if ssrc == self.in_ssrc and (seq + self.seq_offset) & 0xFFFF == (self.last_seq + 1) & 0xFFFF:
            self.seq_offset = (self.seq_offset - 1) & 0xFFFF
            self.identity = False

    def _switch(self, ssrc: int, seq: int, ts: int, now: float) -> None:
        self.in_ssrc = ssrc
        if self.last_time is None:  # the first source: pass through (or only replace the SSRC)
            if self.out_ssrc is None:
                self.out_ssrc = ssrc
            self.seq_offset = 0
            self.ts_offset = 0
            self.last_seq = (seq - 1) & 0xFFFF
            self.last_ts = ts
        else:
            elapsed = int(round((now - self.last_time) * self.clock_rate))
            self.seq_offset = (self.last_seq + 1 - seq) & 0xFFFF
            self.ts_offset = (self.last_ts + max(elapsed, self.frame) - ts) & 0xFFFFFFFF
        self.identity = self.out_ssrc == ssrc and self.seq_offset == 0 and self.ts_offset == 0


# --- RTCP (RFC 3550 §6.4) ----------------------------------------------------------------------------

RTCP_SR = 200
RTCP_RR = 201
_RTCP_HEADER = struct.Struct("!BBH")
_SR_INFO = struct.Struct("!IIIIII")  # sender SSRC, NTP msw, NTP lsw, RTP ts, packets, octets
_REPORT_BLOCK = struct.Struct("!IIIIII")  # SSRC, fraction|cumulative, ext. highest seq, jitter, LSR, DLSR


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBlock:
    """A reception report block (§6.4.1): what ``ssrc``'s receiver saw of it."""

    ssrc: int
    fraction_lost: int  # fixed point, lost/expected * 256 since the last report
    cumulative_lost: int  # signed 24 bit (duplicates can make it negative)
    highest_seq: int  # extended: cycles << 16 | max seq
    jitter: int  # in timestamp units
    last_sr: int = 0
    delay_since_last_sr: int = 0  # in 1/65536 s

    def _pack(self) -> bytes:
        return _REPORT_BLOCK.pack(
            self.ssrc, (self.fraction_lost & 0xFF) << 24 | (self.cumulative_lost & 0xFFFFFF),
            self.highest_seq & 0xFFFFFFFF, self.jitter, self.last_sr, self.delay_since_last_sr,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int  # 64-bit NTP format
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def serialize(self) -> bytes:
        body = _SR_INFO.pack(self.ssrc, self.ntp_timestamp >> 32, self.ntp_timestamp & 0xFFFFFFFF,
                             self.rtp_timestamp, self.packet_count, self.octet_count)
        return _rtcp(RTCP_SR, self.reports, body)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def serialize(self) -> bytes:
        return _rtcp(RTCP_RR, self.reports, _WORD.pack(self.ssrc))


RtcpReport = SenderReport | ReceiverReport


def _rtcp(packet_type: int, reports: tuple[ReportBlock, ...], body: bytes) -> bytes:
    if len(reports) > 31:
        raise ValueError("at most 31 report blocks per RTCP packet")
    blocks = b"".join(block._pack() for block in reports)
    words = (len(body) + len(blocks)) // 4  # length field: size in 32-bit words minus one (header counts)
    return _RTCP_HEADER.pack(0x80 | len(reports), packet_type, words) + body + blocks


def _blocks(data: bytes, at: int, count: int) -> tuple[ReportBlock, ...]:
    blocks = []
    for i in range(count):
        ssrc, lost, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, at + 24 * i)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        blocks.append(ReportBlock(ssrc=ssrc, fraction_lost=lost >> 24, cumulative_lost=cumulative,
                                  highest_seq=highest, jitter=jitter, last_sr=lsr, delay_since_last_sr=dlsr))
    return tuple(blocks)


def parse_rtcp(data: bytes) -> list[RtcpReport]:
    """The SR and RR packets of a (compound) RTCP datagram; SDES, BYE, APP and others are skipped."""
    reports: list[RtcpReport] = []
    at = 0
    while at < len(data):
        if len(data) - at < 4:
            raise PacketError("RTCP packet truncated")
        b0, packet_type, words = _RTCP_HEADER.unpack_from(data, at)
        if b0 >> 6 != RTP_VERSION:
            raise PacketError(f"RTCP version {b0 >> 6}")
        end = at + 4 * (words + 1)
        if end > len(data):
            raise PacketError("RTCP length beyond the datagram")
        count = b0 & 0x1F
        if packet_type == RTCP_SR:
            if end - at < 28 + 24 * count:
                raise PacketError("RTCP SR too short for its report blocks")
            ssrc, msw, lsw, rtp_ts, packets, octets = _SR_INFO.unpack_from(data, at + 4)
            reports.append(SenderReport(ssrc=ssrc, ntp_timestamp=msw << 32 | lsw, rtp_timestamp=rtp_ts,
                                        packet_count=packets, octet_count=octets,
                                        reports=_blocks(data, at + 28, count)))
        elif packet_type == RTCP_RR:
            if end - at < 8 + 24 * count:
                raise PacketError("RTCP RR too short for its report blocks")
            reports.append(ReceiverReport(ssrc=_WORD.unpack_from(data, at + 4)[0],
                                          reports=_blocks(data, at + 8, count)))
        at = end
    return reports
