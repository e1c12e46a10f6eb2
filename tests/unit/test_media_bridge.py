"""Mixing bridges in the in-process engine over loopback UDP: three fake peers send 440/620/1000 Hz; each
receives the other two and not its own tone (FFT), a muted one is heard by nobody, DTMF is reported and
not mixed, and a leg leaving (or released) stops the mix for it."""

from __future__ import annotations

import asyncio

import pytest
from test_media_engine import HOST, FakePeer, Talker, decoded, make_engine, wait_until

from zvonok.media.dtmf import event_payloads
from zvonok.media.errors import MediaUsageError
from zvonok.media.events import DtmfReceived
from zvonok.media.g711 import Codec
from zvonok.media.interface import Endpoint, MediaEngine
from zvonok.media.rtp import build_rtp
from zvonok.media.tones import goertzel_power

TONES = (440.0, 620.0, 1000.0)
PRESENT = 1e6


async def talk(talkers: list[Talker], frames: int) -> None:
    """Send 20 ms frames from every talker, paced roughly in real time (the bridge mixes on its clock)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    for _ in range(frames):
        for talker in talkers:
            talker.send_frame()
        deadline += 0.02
        await asyncio.sleep(max(0.0, deadline - loop.time()))


def heard(peer: FakePeer, pt: int, codec: Codec, since: int) -> dict[float, float]:
    samples = decoded(peer.audio(pt)[since:], codec)
    return {f: goertzel_power(samples, f) for f in TONES}


async def test_three_parties_mixed_each_hears_the_others_then_one_muted() -> None:
    engine = make_engine()
    checked: MediaEngine = engine  # the Protocol's methods exist with these signatures (mypy)
    codecs = (Codec.PCMU, Codec.PCMA, Codec.PCMU)
    pts = (0, 8, 0)
    peers = [await FakePeer.open() for _ in range(3)]
    endpoints: list[Endpoint] = []
    try:
        for peer, codec, pt in zip(peers, codecs, pts, strict=True):
            endpoint = await engine.create_endpoint(7, "conf", [codec])
            await engine.set_remote(endpoint, HOST, peer.port, payload_type=pt, codec=codec, telephone_event_pt=101)
            await checked.mix_bridge("room-1", endpoint)
            endpoints.append(endpoint)
        digits: list[DtmfReceived] = []
        await engine.on_dtmf(endpoints[0], digits.append)
        talkers = [Talker(peer, endpoint, codec, pt, freq, ssrc=0x1000 + i)
                   for i, (peer, endpoint, codec, pt, freq) in enumerate(zip(peers, endpoints, codecs, pts, TONES,
                                                                            strict=True))]
        await talk(talkers, 50)
        await wait_until(lambda: all(len(p.audio(pt)) >= 40 for p, pt in zip(peers, pts, strict=True)))
        for i, (peer, codec, pt) in enumerate(zip(peers, codecs, pts, strict=True)):
            p = heard(peer, pt, codec, since=10)
            assert p[TONES[i]] < PRESENT / 100, (i, p)
            assert all(p[f] > PRESENT for j, f in enumerate(TONES) if j != i), (i, p)
        # one stream of ours per member: one SSRC, consecutive sequence numbers
        packets = peers[0].audio(0)
        assert len({p.ssrc for p in packets}) == 1
        # DTMF from a member is reported, and no telephone-event reaches the others
        for marker, payload in event_payloads("5", duration_ms=60):
            peers[0].send(build_rtp(payload_type=101, sequence=talkers[0].seq, timestamp=talkers[0].ts,
                                    ssrc=0x1000, payload=payload, marker=marker), endpoints[0])
            talkers[0].seq += 1
        await wait_until(lambda: [d.digit for d in digits] == ["5"])
        assert all(p.payload_type in (0, 8) for peer in peers for p in peer.packets)

        # the 1000 Hz party muted: heard by nobody, still hears the others
        await engine.set_matrix("room-1", endpoints[2], speaks=False)
        counts = [len(p.audio(pt)) for p, pt in zip(peers, pts, strict=True)]
        await talk(talkers, 50)
        await wait_until(lambda: all(len(p.audio(pt)) >= c + 40 for p, pt, c in zip(peers, pts, counts, strict=True)))
        for i in (0, 1):
            p = heard(peers[i], pts[i], codecs[i], since=counts[i] + 5)
            assert p[1000.0] < PRESENT / 100, (i, p)
            assert p[TONES[1 - i]] > PRESENT
        p = heard(peers[2], 0, Codec.PCMU, since=counts[2] + 5)
        assert p[440.0] > PRESENT and p[620.0] > PRESENT
        stats = engine.mix_stats("room-1")
        assert stats is not None and stats.members == 3 and stats.ticks > 50
        ticks_with_three = stats.ticks

        # leaving: the member gets nothing more; the last one out removes the bridge
        await engine.leave_bridge(endpoints[0])
        await asyncio.sleep(0.1)
        before = len(peers[0].audio(0))
        await talk(talkers[1:], 10)
        await asyncio.sleep(0.1)
        assert len(peers[0].audio(0)) == before
        stats = engine.mix_stats("room-1")
        assert stats is not None and stats.members == 2
        with pytest.raises(MediaUsageError):  # a leg that left the bridge has no row in its matrix
            await engine.set_matrix("room-1", endpoints[0], speaks=True)
        for endpoint in endpoints:
            await engine.release(endpoint)
        assert engine.mix_stats("room-1") is None
        totals = engine.mix_totals()  # a closed bridge's counters stay in the engine's totals (/metrics)
        assert totals.members == 0 and totals.ticks >= ticks_with_three > 50
    finally:
        for peer in peers:
            peer.close()
        await engine.close()
