"""The media engine's DTMF gate on loopback with real UDP sockets (``MediaEngine.gate_dtmf``): the keys of a
feature code typed on one leg never reach the bridged peer; keys that only began one are sent on as RFC 4733
events of the engine's own, in order, in the peer's one continuous stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest
import uvloop
from test_media_engine import FakePeer, Talker, make_engine, wait_until

from zvonok.media.dtmf import DIGITS, parse_event
from zvonok.media.events import DtmfReceived
from zvonok.media.g711 import Codec
from zvonok.media.rtp import RtpPacket, seq_delta, ts_delta

HOST = "127.0.0.1"
EVENT_A, EVENT_B = 101, 96  # each leg's negotiated telephone-event payload type


def events_of(packets: list[RtpPacket]) -> list[tuple[str, int, list[RtpPacket]]]:
    """The telephone events among packets, grouped by timestamp: (key, timestamp, its packets)."""
    groups: dict[int, list[RtpPacket]] = {}
    for packet in packets:
        if packet.payload_type == EVENT_B:
            groups.setdefault(packet.timestamp, []).append(packet)
    return [(DIGITS[parse_event(group[0].payload).event], ts, group) for ts, group in groups.items()]


def ended(packets: list[RtpPacket]) -> int:
    return sum(1 for p in packets if p.payload_type == EVENT_B and parse_event(p.payload).end)


@contextlib.contextmanager
def continuous_stream(packets: list[RtpPacket]) -> Iterator[None]:
    yield
    # one stream towards B: one SSRC, sequence numbers without a gap (audio and our events alike), and time
    # never going back
    assert len({p.ssrc for p in packets}) == 1
    assert all(seq_delta(b.sequence, a.sequence) == 1 for a, b in zip(packets, packets[1:], strict=False))
    assert all(ts_delta(b.timestamp, a.timestamp) >= 0 for a, b in zip(packets, packets[1:], strict=False))


async def gate_scenario() -> None:
    engine = make_engine()
    a = await engine.create_endpoint(1, "call-gate", [Codec.PCMU])
    b = await engine.create_endpoint(1, "call-gate", [Codec.PCMA])
    peer_a, peer_b = await FakePeer.open(), await FakePeer.open()
    talking = True

    async def talk(talker: Talker) -> None:
        while talking:
            talker.send_frame()
            await asyncio.sleep(0.02)

    try:
        await engine.set_remote(a, HOST, peer_a.port, payload_type=0, codec=Codec.PCMU, telephone_event_pt=EVENT_A)
        await engine.set_remote(b, HOST, peer_b.port, payload_type=8, codec=Codec.PCMA, telephone_event_pt=EVENT_B)
        keys: list[DtmfReceived] = []
        await engine.on_dtmf(a, keys.append)
        await engine.bridge(a, b)
        await engine.gate_dtmf(a, ("*3",), 0.5)
        talker = Talker(peer_a, a, Codec.PCMU, 0, 1000.0, ssrc=0xA1A1A1A1)
        task = asyncio.create_task(talk(talker))
        with continuous_stream(peer_b.packets):
            await wait_until(lambda: len(peer_b.audio(8)) >= 10)

            # the code: both keys reported to on_dtmf, neither reaches B; the audio goes on
            talker.send_digit("*", EVENT_A)
            talker.send_digit("3", EVENT_A)
            await wait_until(lambda: len(keys) == 2)
            assert [k.digit for k in keys] == ["*", "3"]
            heard = len(peer_b.audio(8))
            await wait_until(lambda: len(peer_b.audio(8)) >= heard + 25)
            assert not peer_b.audio(EVENT_B) and not peer_b.audio(EVENT_A)

            # "*5": no code; B gets "*" then "5", each one event of its own, after the audio so far
            talker.send_digit("*", EVENT_A)
            talker.send_digit("5", EVENT_A)
            await wait_until(lambda: ended(peer_b.packets) == 6)
            heard = len(peer_b.audio(8))
            await wait_until(lambda: len(peer_b.audio(8)) >= heard + 10)  # the relay resumed
            sent = events_of(peer_b.packets)
            assert [key for key, _, _ in sent] == ["*", "5"]
            for _key, _ts, group in sent:
                found = [parse_event(p.payload) for p in group]
                assert [p.marker for p in group] == [True] + [False] * (len(group) - 1)  # §2.5.1.3
                assert [e.end for e in found][-3:] == [True] * 3 and not any(e.end for e in found[:-3])  # §2.5.1.4
                assert len({e.duration for e in found[-3:]}) == 1 and found[-1].duration == 800  # 100 ms
                assert all(e.duration > 0 for e in found)
            assert ts_delta(sent[1][1], sent[0][1]) >= 800  # "5" starts after "*" ended
            assert [k.digit for k in keys] == ["*", "3", "*", "5"]

            # a lone "*": released after the timeout
            talker.send_digit("*", EVENT_A)
            await wait_until(lambda: ended(peer_b.packets) == 9)
            assert [key for key, _, _ in events_of(peer_b.packets)] == ["*", "5", "*"]

            # a key that begins no code is relayed as it came (its own three end packets, B's payload type)
            talker.send_digit("7", EVENT_A)
            await wait_until(lambda: ended(peer_b.packets) == 12)
            assert [key for key, _, _ in events_of(peer_b.packets)] == ["*", "5", "*", "7"]

            # without the gate: the code's keys are relayed again
            heard = len(peer_b.audio(8))
            await wait_until(lambda: len(peer_b.audio(8)) >= heard + 10)  # the relay resumed
            await engine.gate_dtmf(a, (), 0.5)
            talker.send_digit("*", EVENT_A)
            talker.send_digit("3", EVENT_A)
            await wait_until(lambda: ended(peer_b.packets) == 18)
            assert [key for key, _, _ in events_of(peer_b.packets)] == ["*", "5", "*", "7", "*", "3"]
            talking = False
            await task
    finally:
        talking = False
        peer_a.close()
        peer_b.close()
        await engine.close()


async def test_a_feature_code_is_not_relayed_and_keys_that_only_began_one_are_sent_on() -> None:
    await gate_scenario()


def test_the_gate_under_uvloop() -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(gate_scenario())


async def test_released_keys_are_dropped_when_the_peer_is_gone_or_a_prompt_plays() -> None:
    engine = make_engine()
    a = await engine.create_endpoint(1, "call-gate", [Codec.PCMU])
    b = await engine.create_endpoint(1, "call-gate", [Codec.PCMU])
    peer_a, peer_b = await FakePeer.open(), await FakePeer.open()
    try:
        await engine.set_remote(a, HOST, peer_a.port, payload_type=0, codec=Codec.PCMU, telephone_event_pt=EVENT_A)
        await engine.set_remote(b, HOST, peer_b.port, payload_type=0, codec=Codec.PCMU, telephone_event_pt=EVENT_B)
        keys: list[DtmfReceived] = []
        await engine.on_dtmf(a, keys.append)
        await engine.gate_dtmf(a, ("*3",), 0.2)
        talker = Talker(peer_a, a, Codec.PCMU, 0, 1000.0, ssrc=0xA1A1A1A1)
        talker.send_frame()
        talker.send_frame()
        talker.send_digit("*", EVENT_A)
        talker.send_digit("1", EVENT_A)  # released while A is bridged to nobody: dropped, not kept for later
        await wait_until(lambda: len(keys) == 2)
        await engine.bridge(a, b)
        talker.send_digit("2", EVENT_A)  # relayed as usual: the gate did not stay stuck
        await wait_until(lambda: ended(peer_b.packets) == 3)
        assert [key for key, _, _ in events_of(peer_b.packets)] == ["2"]
        gate = engine._legs[a.id].gate
        assert gate is not None and not gate.pending and gate.held == ""
    finally:
        peer_a.close()
        peer_b.close()
        await engine.close()


def test_gate_dtmf_refuses_a_bad_code() -> None:
    async def scenario() -> None:
        engine = make_engine()
        a = await engine.create_endpoint(1, "call-gate", [Codec.PCMU])
        try:
            with pytest.raises(ValueError):
                await engine.gate_dtmf(a, ("*x",), 1.0)
        finally:
            await engine.close()

    asyncio.run(scenario())
