"""RTP/RTCP packets (RFC 3550), wrap-around arithmetic, and the SSRC/sequence continuity rewriter."""

from __future__ import annotations

import pytest

from zvonok.media.errors import PacketError
from zvonok.media.rtp import (
    RTP_HEADER,
    ReceiverReport,
    ReportBlock,
    RtpPacket,
    SenderReport,
    SsrcRewriter,
    build_rtp,
    parse_rtcp,
    parse_rtp,
    rtp_payload_bounds,
    seq_delta,
    seq_newer,
    ts_delta,
    ts_newer,
)

# a PCMU packet as a softphone sends it: V=2, M=1, PT=0, seq 0x1234, ts 0xdeadbeef, SSRC 0x01020304
CAPTURED = bytes.fromhex("80801234deadbeef01020304") + bytes([0xFF]) * 160


def test_parse_captured_packet() -> None:
    packet = parse_rtp(CAPTURED)
    assert (packet.version, packet.payload_type, packet.marker) == (2, 0, True)
    assert (packet.sequence, packet.timestamp, packet.ssrc) == (0x1234, 0xDEADBEEF, 0x01020304)
    assert packet.payload == bytes([0xFF]) * 160
    assert packet.payload_offset == 12 and packet.csrc_count == 0 and packet.padding == 0
    assert packet.serialize() == CAPTURED


def test_round_trip_with_csrc_extension_and_padding() -> None:
    packet = RtpPacket(payload_type=8, sequence=65535, timestamp=2**32 - 1, ssrc=7, payload=b"\xd5" * 80,
                       marker=False, csrcs=(1, 2), extension_profile=0xBEDE, extension=b"\x10\xaa\x00\x00",
                       padding=4)
    data = packet.serialize()
    assert len(data) == 12 + 8 + 4 + 4 + 80 + 4
    parsed = parse_rtp(data)
    assert parsed == RtpPacket(payload_type=8, sequence=65535, timestamp=2**32 - 1, ssrc=7, payload=b"\xd5" * 80,
                               csrcs=(1, 2), extension_profile=0xBEDE, extension=b"\x10\xaa\x00\x00", padding=4,
                               payload_offset=28)
    assert rtp_payload_bounds(data) == (28, 28 + 80)
    b0, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
    assert (b0 >> 6, b0 & 0x20, b0 & 0x10, b0 & 0x0F, b1, seq, ts, ssrc) == (2, 0x20, 0x10, 2, 8, 65535, 2**32 - 1, 7)


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x00",  # too short
        bytes.fromhex("40001234deadbeef01020304"),  # version 1
        bytes.fromhex("82001234deadbeef01020304") + b"\x00" * 4,  # 2 CSRCs announced, 1 present
        bytes.fromhex("90001234deadbeef01020304") + b"\xbe\xde",  # extension header truncated
        bytes.fromhex("a0001234deadbeef01020304") + b"\x00\x00\x00\x09",  # padding longer than payload
        bytes.fromhex("a0001234deadbeef01020304") + b"\x00",  # padding count 0
    ],
)
def test_malformed_packets_are_rejected(data: bytes) -> None:
    with pytest.raises(PacketError):
        parse_rtp(data)


def test_build_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError):
        build_rtp(payload_type=128, sequence=0, timestamp=0, ssrc=0, payload=b"")
    with pytest.raises(ValueError):
        build_rtp(payload_type=0, sequence=0, timestamp=0, ssrc=0, payload=b"", extension_profile=1, extension=b"x")


def test_sequence_wrap_around() -> None:
    assert seq_delta(0, 65535) == 1 and seq_newer(0, 65535)
    assert seq_delta(65535, 0) == -1 and not seq_newer(65535, 0)
    assert seq_delta(100, 100) == 0 and not seq_newer(100, 100)
    assert seq_delta(5, 65530) == 11
    assert seq_delta(32767, 0) == 32767 and seq_delta(32768, 0) == -32768


def test_timestamp_wrap_around() -> None:
    assert ts_delta(80, 2**32 - 80) == 160 and ts_newer(80, 2**32 - 80)
    assert ts_delta(2**32 - 80, 80) == -160 and not ts_newer(2**32 - 80, 80)
    assert ts_delta(2**31 - 1, 0) == 2**31 - 1 and ts_delta(2**31, 0) == -(2**31)


def test_rewriter_passes_the_first_source_through() -> None:
    rewriter = SsrcRewriter()
    assert rewriter.rewrite(0xAAAA, 65535, 2**32 - 160, now=0.0) == (65535, 2**32 - 160)
    assert rewriter.identity and rewriter.out_ssrc == 0xAAAA
    assert rewriter.rewrite(0xAAAA, 0, 0, now=0.02) == (0, 0)
    assert rewriter.identity


def test_rewriter_keeps_one_stream_across_a_source_switch() -> None:
    rewriter = SsrcRewriter()
    for i in range(10):
        rewriter.rewrite(0xAAAA, 1000 + i, 50_000 + 160 * i, now=0.02 * i)
    # a transfer: a new source with unrelated seq/ts, 100 ms after the last packet
    out_seq, out_ts = rewriter.rewrite(0xBBBB, 7, 9_999_999, now=0.02 * 9 + 0.1)
    assert not rewriter.identity and rewriter.out_ssrc == 0xAAAA
    assert out_seq == 1010 and out_ts == 50_000 + 160 * 9 + 800
    assert rewriter.rewrite(0xBBBB, 8, 9_999_999 + 160, now=0.3) == (1011, out_ts + 160)
    # back to the first source: again continuous (at least one frame later)
    assert rewriter.rewrite(0xAAAA, 1010, 50_000 + 1600, now=0.3) == (1012, out_ts + 320)


def test_rewriter_with_a_fixed_output_ssrc_and_wrap() -> None:
    rewriter = SsrcRewriter(out_ssrc=0x1234)
    assert rewriter.rewrite(1, 65535, 2**32 - 160, now=0.0) == (65535, 2**32 - 160)
    assert not rewriter.identity  # the SSRC is replaced
    assert rewriter.rewrite(2, 500, 12345, now=0.001) == (0, 0)  # at least one 20 ms frame later


def test_rewriter_ignores_late_packets_for_continuity() -> None:
    rewriter = SsrcRewriter()
    rewriter.rewrite(1, 10, 1600, now=0.0)
    rewriter.rewrite(1, 11, 1760, now=0.02)
    assert rewriter.rewrite(1, 9, 1440, now=0.03) == (9, 1440)  # reordered: passed on unchanged
    assert rewriter.rewrite(2, 0, 0, now=0.04) == (12, 1760 + 160)


def test_rtcp_sender_and_receiver_report_round_trip() -> None:
    block = ReportBlock(ssrc=0x11, fraction_lost=25, cumulative_lost=-3, highest_seq=0x1_0005, jitter=40,
                        last_sr=0x12345678, delay_since_last_sr=65536)
    sr = SenderReport(ssrc=0x22, ntp_timestamp=0xE1234567_89ABCDEF, rtp_timestamp=160_000, packet_count=1000,
                      octet_count=160_000, reports=(block,))
    rr = ReceiverReport(ssrc=0x33, reports=(block, block))
    sdes = bytes.fromhex("81ca0003") + b"\x00\x00\x00\x22" + b"\x01\x02ab\x00\x00\x00\x00"  # CNAME "ab", skipped
    data = sr.serialize() + sdes + rr.serialize()
    assert len(sr.serialize()) == 28 + 24 and len(rr.serialize()) == 8 + 48
    assert parse_rtcp(data) == [sr, rr]
    assert parse_rtcp(ReceiverReport(ssrc=5).serialize()) == [ReceiverReport(ssrc=5)]


@pytest.mark.parametrize(
    "data",
    [b"\x80\xc9\x00", bytes.fromhex("80c90005") + b"\x00" * 4, bytes.fromhex("81c90001") + b"\x00" * 4,
     bytes.fromhex("40c90001") + b"\x00" * 4],
)
def test_malformed_rtcp_is_rejected(data: bytes) -> None:
    with pytest.raises(PacketError):
        parse_rtcp(data)


def test_rewriter_closes_the_gap_of_packets_not_sent_on() -> None:
    rewriter = SsrcRewriter()
    assert rewriter.rewrite(1, 65534, 0, now=0.0) == (65534, 0)
    rewriter.skip(1, 65535)  # a withheld key's packets
    rewriter.skip(1, 0)
    assert not rewriter.identity
    assert rewriter.rewrite(1, 1, 160, now=0.02) == (65535, 160)
    assert rewriter.rewrite(1, 2, 320, now=0.04) == (0, 320)
    rewriter.skip(1, 5)  # not the next one (3 and 4 are missing): its gap stays
    rewriter.skip(2, 3)  # not the current source
    assert rewriter.rewrite(1, 3, 480, now=0.06) == (1, 480)
