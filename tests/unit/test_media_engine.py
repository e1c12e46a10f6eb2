"""The in-process media engine on loopback with real UDP sockets: two fake peers, relay, transcoding,
latching, recording, DTMF, playback, inactivity, port release and SRTP (asyncio and uvloop).

No timing assertions: every wait has a generous timeout and checks content, not speed.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvloop
from pylibsrtp import Error as SrtpError

from zvonok.media import g711
from zvonok.media.dtmf import event_payloads
from zvonok.media.engine import InProcessMediaEngine
from zvonok.media.errors import MediaUsageError
from zvonok.media.events import DtmfReceived, MediaTimeout, PlaybackFinished
from zvonok.media.g711 import Codec
from zvonok.media.interface import Endpoint, MediaEngine, Prompt, SrtpKeys, Tone
from zvonok.media.rtp import RtpPacket, build_rtp, parse_rtp, seq_delta
from zvonok.media.srtp import rx_session, tx_session
from zvonok.media.tones import dominant_frequency, sine
from zvonok.media.wav import WavWriter, read_wav

HOST = "127.0.0.1"
TIMEOUT = 10.0


class FakePeer(asyncio.DatagramProtocol):
    """A softphone's RTP socket, as far as the engine can tell."""

    def __init__(self) -> None:
        self.packets: list[RtpPacket] = []
        self.sources: set[tuple[str, int]] = set()
        self.transport: Any = None
        self.arrived = asyncio.Event()

    @classmethod
    async def open(cls) -> FakePeer:
        peer = cls()
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: peer, local_addr=(HOST, 0))
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.packets.append(parse_rtp(data))
        self.sources.add((addr[0], addr[1]))
        self.arrived.set()

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, endpoint: Endpoint) -> None:
        self.transport.sendto(data, (endpoint.local_address.host, endpoint.local_address.port))

    def close(self) -> None:
        self.transport.close()

    def audio(self, payload_type: int) -> list[RtpPacket]:
        return [p for p in self.packets if p.payload_type == payload_type]


async def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def make_engine() -> InProcessMediaEngine:
    base = random.randrange(30000, 60000, 2)  # tests may run in parallel: spread the ranges
    return InProcessMediaEngine(host=HOST, port_min=base, port_max=base + 199)


class Talker:
    """Sends a tone as 20 ms RTP packets from a fake peer to an endpoint."""

    def __init__(self, peer: FakePeer, endpoint: Endpoint, codec: Codec, pt: int, frequency: float,
                 ssrc: int, seq: int = 65500, ts: int = 2**32 - 3200) -> None:
        self.peer, self.endpoint, self.codec, self.pt = peer, endpoint, codec, pt
        self.tone = sine(frequency, amplitude=0.5)
        self.ssrc, self.seq, self.ts = ssrc, seq, ts  # both wrap during the test

    def send_frame(self) -> None:
        payload = g711.encode(self.codec, self.tone.read_frame())
        self.peer.send(build_rtp(payload_type=self.pt, sequence=self.seq, timestamp=self.ts, ssrc=self.ssrc,
                                 payload=payload), self.endpoint)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 160) & 0xFFFFFFFF

    def send_digit(self, digit: str, event_pt: int) -> None:
        for marker, payload in event_payloads(digit, duration_ms=60):
            self.peer.send(build_rtp(payload_type=event_pt, sequence=self.seq, timestamp=self.ts, ssrc=self.ssrc,
                                     payload=payload, marker=marker), self.endpoint)
            self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 480) & 0xFFFFFFFF


def decoded(packets: list[RtpPacket], codec: Codec) -> np.ndarray:
    return np.concatenate([g711.decode(codec, p.payload) for p in packets])


def voiced(channel: np.ndarray) -> np.ndarray:
    """The channel from its first to its last non-silent sample."""
    loud = np.flatnonzero(channel)
    return channel[loud[0] : loud[-1] + 1]


async def bridge_scenario(tmp_path: Path) -> None:
    engine = make_engine()
    a = await engine.create_endpoint(1, "call-1", [Codec.PCMU, Codec.PCMA])
    b = await engine.create_endpoint(1, "call-1", [Codec.PCMA])
    assert a.local_address.port % 2 == 0 and b.local_address.port % 2 == 0
    sdp_a, peer_a, peer_b = await FakePeer.open(), await FakePeer.open(), await FakePeer.open()
    try:
        # peer A's SDP names one port, but its RTP comes from another (NAT): we must latch to the source
        await engine.set_remote(a, HOST, sdp_a.port, payload_type=0, codec=Codec.PCMU, telephone_event_pt=101)
        await engine.set_remote(b, HOST, peer_b.port, payload_type=8, codec=Codec.PCMA, telephone_event_pt=96)
        digits: list[DtmfReceived] = []
        await engine.on_dtmf(a, digits.append)
        await engine.bridge(a, b)
        recording = await engine.record([a, b], tmp_path / "call.wav", stereo=True)

        talk_a = Talker(peer_a, a, Codec.PCMU, 0, 1000.0, ssrc=0xA1A1A1A1)
        talk_b = Talker(peer_b, b, Codec.PCMA, 8, 2000.0, ssrc=0xB2B2B2B2, seq=10, ts=5000)
        for i in range(60):
            talk_a.send_frame()
            talk_b.send_frame()
            if i == 30:
                talk_a.send_digit("7", 101)
                talk_a.send_digit("#", 101)
            await asyncio.sleep(0.02)
        await wait_until(lambda: len(peer_a.audio(0)) >= 50 and len(peer_b.audio(8)) >= 55)
        await wait_until(lambda: len(digits) >= 2)
        info = await engine.stop_record(recording)

        # each side hears the other's tone in its own codec
        heard_by_a = decoded(peer_a.audio(0), Codec.PCMU)
        heard_by_b = decoded(peer_b.audio(8), Codec.PCMA)
        assert abs(dominant_frequency(heard_by_a) - 2000.0) < 10.0
        assert abs(dominant_frequency(heard_by_b) - 1000.0) < 10.0
        # B's stream kept A's SSRC and continuous sequence numbers (wrapping past 65535)
        assert {p.ssrc for p in peer_b.packets} == {0xA1A1A1A1}
        seqs = [p.sequence for p in peer_b.packets]
        assert all(seq_delta(y, x) == 1 for x, y in zip(seqs, seqs[1:], strict=False))
        assert {p.sequence for p in peer_b.packets} >= {65535, 0}
        # latched: after the first packets, A's side goes to the source port, never to the SDP port again
        assert len(peer_a.audio(0)) >= 50 and len(sdp_a.packets) < 10
        assert peer_a.sources == {(HOST, a.local_address.port)}
        assert peer_b.sources == {(HOST, b.local_address.port)}
        # DTMF: one event per key press, passed through to B with B's telephone-event PT
        assert [(d.digit, d.tenant_id, d.call_id, d.endpoint_id) for d in digits] == [
            ("7", 1, "call-1", a.id), ("#", 1, "call-1", a.id)]
        assert len(peer_b.audio(96)) == 2 * 5 and not peer_b.audio(101)
        # the recording: complete on disk, 1 kHz (leg A) on the left, 2 kHz (leg B) on the right
        samples, rate = read_wav(info.path)
        assert rate == 8000 and samples.shape[1] == 2 and info.channels == 2
        assert samples.shape[0] == pytest.approx(info.seconds * 8000)
        assert info.seconds > 1.0
        left, right = samples[:, 0], samples[:, 1]
        assert abs(dominant_frequency(voiced(left)) - 1000.0) < 10.0
        assert abs(dominant_frequency(voiced(right)) - 2000.0) < 10.0

        stats_a = await engine.stats(a)
        assert stats_a.packets_received >= 60 and stats_a.packets_lost == 0
        assert stats_a.remote == (HOST, peer_a.port)
        assert (await engine.stats(b)).packets_sent >= 60

        ports = [a.local_address.port, b.local_address.port]
        await engine.release(a)
        await engine.release(b)
        for port in ports:  # both RTP and RTCP ports are free again
            for p in (port, port + 1):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.bind((HOST, p))
        with pytest.raises(MediaUsageError):
            await engine.stats(a)
    finally:
        for peer in (sdp_a, peer_a, peer_b):
            peer.close()
        await engine.close()


async def test_bridge_transcodes_latches_records_and_reports_dtmf(tmp_path: Path) -> None:
    await bridge_scenario(tmp_path)


def test_bridge_under_uvloop(tmp_path: Path) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(bridge_scenario(tmp_path))


async def test_the_engine_implements_the_protocol() -> None:
    engine: MediaEngine = make_engine()  # mypy checks the structural match
    endpoint = await engine.create_endpoint(3, "c", [Codec.PCMU])
    with pytest.raises(MediaUsageError):
        await engine.set_remote(endpoint, HOST, 4000, payload_type=8, codec=Codec.PCMA)
    with pytest.raises(MediaUsageError):
        await engine.bridge(endpoint, endpoint)
    await engine.release(endpoint)
    await engine.release(endpoint)  # idempotent


async def test_rtp_bleed_is_refused_but_nat_rebinding_follows_the_stream() -> None:
    engine = make_engine()
    a = await engine.create_endpoint(1, "c", [Codec.PCMU])
    b = await engine.create_endpoint(1, "c", [Codec.PCMU])
    peer_a, peer_b, attacker, rebound = [await FakePeer.open() for _ in range(4)]
    try:
        await engine.set_remote(a, HOST, peer_a.port, payload_type=0, codec=Codec.PCMU)
        await engine.set_remote(b, HOST, peer_b.port, payload_type=0, codec=Codec.PCMU)
        await engine.bridge(a, b)
        talk_a = Talker(peer_a, a, Codec.PCMU, 0, 1000.0, ssrc=1)
        talk_b = Talker(peer_b, b, Codec.PCMU, 0, 2000.0, ssrc=2)
        for _ in range(5):
            talk_a.send_frame()
            talk_b.send_frame()
            await asyncio.sleep(0.02)
        await wait_until(lambda: len(peer_a.packets) >= 5 and len(peer_b.packets) >= 5)
        # a blind attacker (its own SSRC and sequence) gets nothing and injects nothing
        evil = Talker(attacker, a, Codec.PCMU, 0, 3000.0, ssrc=666, seq=1)
        for _ in range(10):
            evil.send_frame()
            talk_b.send_frame()
            await asyncio.sleep(0.02)
        before = len(peer_a.packets)
        talk_b.send_frame()
        await wait_until(lambda: len(peer_a.packets) > before)
        assert not attacker.packets
        assert all(p.ssrc == 1 for p in peer_b.packets)
        # the real peer's NAT binding changes: same SSRC, the next sequence number, from a new port
        talk_a.peer = rebound
        talk_a.send_frame()
        talk_b.send_frame()
        await wait_until(lambda: len(rebound.packets) >= 1)
        assert (await engine.stats(a)).remote == (HOST, rebound.port)
    finally:
        for peer in (peer_a, peer_b, attacker, rebound):
            peer.close()
        await engine.close()


async def test_transfer_keeps_one_outgoing_stream() -> None:
    engine = make_engine()
    a, b, c = [await engine.create_endpoint(1, "c", [Codec.PCMU]) for _ in range(3)]
    peers = [await FakePeer.open() for _ in range(3)]
    try:
        for endpoint, peer in zip((a, b, c), peers, strict=True):
            await engine.set_remote(endpoint, HOST, peer.port, payload_type=0, codec=Codec.PCMU)
        await engine.bridge(a, b)
        talk_a = Talker(peers[0], a, Codec.PCMU, 0, 1000.0, ssrc=0xAAAA, seq=100, ts=0)
        talk_c = Talker(peers[2], c, Codec.PCMU, 0, 500.0, ssrc=0xCCCC, seq=40000, ts=123456789)
        for _ in range(5):
            talk_a.send_frame()
            await asyncio.sleep(0.02)
        await wait_until(lambda: len(peers[1].packets) >= 5)
        await engine.bridge(c, b)  # B is transferred from A to C
        for _ in range(5):
            talk_c.send_frame()
            await asyncio.sleep(0.02)
        await wait_until(lambda: len(peers[1].packets) >= 10)
        received = peers[1].packets
        assert {p.ssrc for p in received} == {0xAAAA}
        assert [p.sequence for p in received] == list(range(100, 110))
        timestamps = [p.timestamp for p in received]
        assert all(later > earlier for earlier, later in zip(timestamps, timestamps[1:], strict=False))
        assert g711.decode(Codec.PCMU, received[-1].payload).any()
    finally:
        for peer in peers:
            peer.close()
        await engine.close()


async def test_play_tone_and_prompt(tmp_path: Path) -> None:
    engine = make_engine()
    endpoint = await engine.create_endpoint(2, "c", [Codec.PCMA])
    peer = await FakePeer.open()
    finished: list[PlaybackFinished] = []
    try:
        await engine.set_remote(endpoint, HOST, peer.port, payload_type=8, codec=Codec.PCMA)
        await engine.play(endpoint, Tone(frequencies=(425.0,)), on_finished=finished.append)
        await wait_until(lambda: len(peer.packets) >= 25)
        # a stalled loop (here 100 ms asleep) makes the next frames late, and they are counted
        late_before = engine.playback.late
        time.sleep(0.1)
        await wait_until(lambda: engine.playback.late > late_before)
        assert engine.playback.frames >= 25
        await engine.stop_play(endpoint)
        await wait_until(lambda: len(finished) == 1)
        assert finished[0].stopped and finished[0].tenant_id == 2
        tone = peer.packets[:25]
        assert tone[0].marker and not any(p.marker for p in tone[1:])
        assert abs(dominant_frequency(decoded(tone, Codec.PCMA)) - 425.0) < 5.0
        assert all((q.timestamp - p.timestamp) & 0xFFFFFFFF == 160 for p, q in zip(tone, tone[1:], strict=False))

        prompt = tmp_path / "prompt.wav"
        writer = WavWriter(prompt)
        writer.write(np.concatenate([sine(800.0).read_frame() for _ in range(10)]))
        writer.close()
        count = len(peer.packets)
        await engine.play(endpoint, Prompt(path=prompt), on_finished=finished.append)
        await wait_until(lambda: len(finished) == 2)
        assert not finished[1].stopped
        await wait_until(lambda: len(peer.packets) >= count + 10)
        played = peer.packets[count:]
        assert len(played) == 10 and {p.ssrc for p in played} == {tone[0].ssrc}  # one stream throughout
        assert abs(dominant_frequency(decoded(played, Codec.PCMA)) - 800.0) < 5.0
    finally:
        peer.close()
        await engine.close()


async def test_inactivity_fires_once_per_silence() -> None:
    engine = make_engine()
    endpoint = await engine.create_endpoint(1, "c", [Codec.PCMU])
    peer = await FakePeer.open()
    timeouts: list[MediaTimeout] = []
    try:
        await engine.set_remote(endpoint, HOST, peer.port, payload_type=0, codec=Codec.PCMU)
        await engine.on_inactivity(endpoint, 0.2, timeouts.append)
        await wait_until(lambda: len(timeouts) == 1)
        assert timeouts[0].endpoint_id == endpoint.id
        await asyncio.sleep(0.5)
        assert len(timeouts) == 1  # not repeated for the same silence
        # comfort noise (not relayed) still shows the peer is alive; then silence again
        peer.send(build_rtp(payload_type=13, sequence=1, timestamp=0, ssrc=9, payload=b"\x40"), endpoint)
        for _ in range(int(TIMEOUT / 0.01)):
            if (await engine.stats(endpoint)).last_received_at is not None:
                break
            await asyncio.sleep(0.01)
        assert (await engine.stats(endpoint)).packets_received == 0  # not counted as RTP media
        await wait_until(lambda: len(timeouts) == 2)
        await engine.on_inactivity(endpoint, 0.2, None)
    finally:
        peer.close()
        await engine.close()


async def test_inactivity_checks_of_many_endpoints_share_one_timer() -> None:
    """Each endpoint's silence is reported on its own; a released one is never reported (issue 9: one
    engine timer instead of a loop timer per endpoint)."""
    engine = make_engine()
    quick, slow, gone = [await engine.create_endpoint(1, name, [Codec.PCMU]) for name in ("q", "s", "g")]
    reported: list[str] = []
    try:
        await engine.on_inactivity(quick, 0.1, lambda t: reported.append(t.call_id))
        await engine.on_inactivity(slow, 0.4, lambda t: reported.append(t.call_id))
        await engine.on_inactivity(gone, 0.2, lambda t: reported.append(t.call_id))
        await engine.release(gone)
        await wait_until(lambda: "s" in reported)
        assert reported[0] == "q" and "g" not in reported
        await asyncio.sleep(0.3)
        assert "g" not in reported
    finally:
        await engine.close()


async def test_ports_exhausted_and_reused() -> None:
    from zvonok.media.errors import PortsExhausted

    base = random.randrange(30000, 60000, 2)
    engine = InProcessMediaEngine(host=HOST, port_min=base, port_max=base + 3)
    try:
        first = await engine.create_endpoint(1, "c", [Codec.PCMU])
        second = await engine.create_endpoint(1, "c", [Codec.PCMU])
        with pytest.raises(PortsExhausted):
            await engine.create_endpoint(1, "c", [Codec.PCMU])
        await engine.release(first)
        third = await engine.create_endpoint(1, "c", [Codec.PCMU])
        assert third.local_address.port == first.local_address.port != second.local_address.port
    finally:
        await engine.close()


# --- SRTP: a leg whose peer speaks SRTP bridged to a plain RTP leg ---------------------------------------


class RawPeer(FakePeer):
    """Keeps the datagrams as they arrived (SRTP cannot be parsed as RTP payload)."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        self.raw.append(data)
        self.arrived.set()


async def srtp_scenario() -> None:
    engine = make_engine()
    ours, theirs = os.urandom(30), os.urandom(30)  # our a=crypto key, the SRTP phone's
    secure = await engine.create_endpoint(1, "c", [Codec.PCMU])
    plain = await engine.create_endpoint(1, "c", [Codec.PCMU])
    srtp_phone, plain_phone = await RawPeer.open(), await FakePeer.open()
    try:
        await engine.set_remote(secure, HOST, srtp_phone.port, payload_type=0, codec=Codec.PCMU,
                                srtp=SrtpKeys(local=ours, remote=theirs))
        await engine.set_remote(plain, HOST, plain_phone.port, payload_type=0, codec=Codec.PCMU)
        await engine.bridge(secure, plain)
        protect = tx_session(theirs).protect
        unprotect = rx_session(ours).unprotect
        tone_in, tone_out = sine(1000.0, amplitude=0.5), sine(440.0, amplitude=0.5)
        sent_plain: list[bytes] = []
        for seq in range(50):
            packet = build_rtp(payload_type=0, sequence=seq, timestamp=seq * 160, ssrc=0x5EC,
                               payload=g711.encode(Codec.PCMU, tone_in.read_frame()))
            srtp_phone.send(protect(packet), secure)
            out = build_rtp(payload_type=0, sequence=seq, timestamp=seq * 160, ssrc=0x9A1,
                            payload=g711.encode(Codec.PCMU, tone_out.read_frame()))
            sent_plain.append(out)
            plain_phone.send(out, plain)
            await asyncio.sleep(0.002)
        await wait_until(lambda: len(plain_phone.packets) >= 45 and len(srtp_phone.raw) >= 45)
        # the SRTP side decrypts to the plain side's audio, and none of it went out in the clear
        heard = np.concatenate([g711.decode(Codec.PCMU, parse_rtp(unprotect(d)).payload) for d in srtp_phone.raw])
        assert abs(dominant_frequency(heard) - 440.0) < 20
        payloads = {parse_rtp(p).payload for p in sent_plain}
        assert not any(d[12:12 + 160] in payloads for d in srtp_phone.raw)
        assert all(len(d) == 12 + 160 + 10 for d in srtp_phone.raw)  # the 80-bit auth tag
        got = np.concatenate([g711.decode(Codec.PCMU, p.payload) for p in plain_phone.packets])
        assert abs(dominant_frequency(got) - 1000.0) < 20
        # a packet protected with another key (a forger, or a wrong a=crypto) is dropped
        before = len(plain_phone.packets)
        forged = tx_session(os.urandom(30)).protect(build_rtp(payload_type=0, sequence=60, timestamp=9600,
                                                              ssrc=0x5EC, payload=b"\xff" * 160))
        srtp_phone.send(forged, secure)
        srtp_phone.send(protect(build_rtp(payload_type=0, sequence=61, timestamp=9760, ssrc=0x5EC,
                                          payload=b"\x7f" * 160)), secure)
        await wait_until(lambda: len(plain_phone.packets) > before)
        assert [p.payload for p in plain_phone.packets[before:]] == [b"\x7f" * 160]
        try:
            rx_session(ours).unprotect(srtp_phone.raw[0][:-10] + b"\x00" * 10)
        except SrtpError:
            pass
        else:
            raise AssertionError("a tampered packet must fail authentication")
        # back to plain RTP (a re-INVITE without crypto): sent in the clear again
        await engine.set_remote(secure, HOST, srtp_phone.port, payload_type=0, codec=Codec.PCMU)
        srtp_phone.raw.clear()
        plain_phone.send(sent_plain[0], plain)
        await wait_until(lambda: len(srtp_phone.raw) >= 1)
        assert parse_rtp(srtp_phone.raw[0]).payload == parse_rtp(sent_plain[0]).payload
    finally:
        srtp_phone.close()
        plain_phone.close()
        await engine.close()


async def test_srtp_leg_bridged_to_plain_leg() -> None:
    await srtp_scenario()


def test_srtp_leg_under_uvloop() -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(srtp_scenario())


class _Sink:
    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []

    def write(self, samples: np.ndarray) -> None:
        self.chunks.append(np.array(samples, dtype=np.int16))

    @property
    def samples(self) -> int:
        return sum(len(c) for c in self.chunks)


async def test_audio_tap_hands_on_a_continuous_stream_and_stops() -> None:
    """The fax terminal's ear: what the peer sends arrives as whole 20 ms frames (a lost packet does not
    stop the stream), and nothing once the tap is stopped."""
    engine = make_engine()
    endpoint = await engine.create_endpoint(1, "call-tap", [Codec.PCMA])
    peer = await FakePeer.open()
    try:
        await engine.set_remote(endpoint, HOST, peer.port, payload_type=8, codec=Codec.PCMA)
        sink = _Sink()
        tap = await engine.tap(endpoint, sink)
        talker = Talker(peer, endpoint, Codec.PCMA, 8, 1000.0, ssrc=0x1234)
        for index in range(50):
            if index == 20:  # one lost packet
                talker.seq = (talker.seq + 1) & 0xFFFF
                talker.ts = (talker.ts + 160) & 0xFFFFFFFF
            else:
                talker.send_frame()
            await asyncio.sleep(0.02)
        await wait_until(lambda: sink.samples >= 45 * 160)
        info = await engine.stop_record(tap)
        assert info.channels == 1 and info.seconds == sink.samples / 8000
        assert all(len(c) % 160 == 0 for c in sink.chunks)
        stream = np.concatenate(sink.chunks)
        assert abs(dominant_frequency(voiced(stream)[:4000]) - 1000.0) < 20
        after = sink.samples
        talker.send_frame()
        await asyncio.sleep(0.2)
        assert sink.samples == after
    finally:
        peer.close()
        await engine.release(endpoint)
        await engine.close()
