"""The RTP socket pool: released pairs parked and reused after a quiet quarantine, the port range kept,
SRTP legs parked back to plain, the pool bounded and closed at shutdown (asyncio and uvloop)."""

from __future__ import annotations

import asyncio
import os
import random
import socket

import numpy as np
import pytest
import uvloop
from test_media_engine import HOST, FakePeer, Talker, wait_until  # the same fake phone (rootdir sys.path)

from zvonok.media import g711
from zvonok.media.engine import InProcessMediaEngine
from zvonok.media.errors import PortsExhausted
from zvonok.media.g711 import Codec
from zvonok.media.interface import Endpoint, SrtpKeys
from zvonok.media.rtp import build_rtp
from zvonok.media.srtp import tx_session

QUARANTINE = 0.3


def pooled_engine(*, pairs: int = 100, pool: int = 16, quarantine: float = QUARANTINE) -> InProcessMediaEngine:
    base = random.randrange(30000, 60000, 2)
    return InProcessMediaEngine(host=HOST, port_min=base, port_max=base + 2 * pairs - 1, socket_pool=pool,
                                socket_quarantine=quarantine)


def bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


async def relays(engine: InProcessMediaEngine, a: Endpoint) -> int:
    """``a`` bridged to another endpoint carries RTP both ways (raises otherwise); that one's port."""
    b = await engine.create_endpoint(1, "check", [Codec.PCMU])
    peer_a, peer_b = await FakePeer.open(), await FakePeer.open()
    try:
        await engine.set_remote(a, HOST, peer_a.port, payload_type=0, codec=Codec.PCMU)
        await engine.set_remote(b, HOST, peer_b.port, payload_type=0, codec=Codec.PCMU)
        await engine.bridge(a, b)
        talk_a = Talker(peer_a, a, Codec.PCMU, 0, 1000.0, ssrc=11)
        talk_b = Talker(peer_b, b, Codec.PCMU, 0, 2000.0, ssrc=22)
        for _ in range(6):
            talk_a.send_frame()
            talk_b.send_frame()
            await asyncio.sleep(0.01)
        await wait_until(lambda: len(peer_a.packets) >= 3 and len(peer_b.packets) >= 3)
        assert {p.ssrc for p in peer_b.packets} == {11}  # the new leg's own stream, nothing stale
    finally:
        peer_a.close()
        peer_b.close()
        await engine.release(b)
    return b.local_address.port


async def reuse_after_quarantine() -> None:
    engine = pooled_engine()
    try:
        first = await engine.create_endpoint(1, "c1", [Codec.PCMU])
        port = first.local_address.port
        parked = {port, await relays(engine, first)}
        await engine.release(first)
        assert not any(bindable(p) or bindable(p + 1) for p in parked)  # parked, still ours
        # at once: a fresh port, not a pair just released (its old peer may still be sending)
        second = await engine.create_endpoint(1, "c2", [Codec.PCMU])
        assert second.local_address.port not in parked
        await asyncio.sleep(QUARANTINE + 0.1)
        third = await engine.create_endpoint(1, "c3", [Codec.PCMU])
        assert third.local_address.port in parked
        await relays(engine, third)
        assert engine.endpoint_count == 2
    finally:
        await engine.close()
    assert all(bindable(p) and bindable(p + 1) for p in parked)  # shutdown closed the parked sockets too


async def test_a_released_pair_is_reused_after_its_quarantine() -> None:
    await reuse_after_quarantine()


def test_a_released_pair_is_reused_after_its_quarantine_under_uvloop() -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(reuse_after_quarantine())


async def test_a_pair_still_receiving_is_not_reused() -> None:
    engine = pooled_engine()
    stray = await FakePeer.open()
    try:
        first = await engine.create_endpoint(1, "c1", [Codec.PCMU])
        port = first.local_address.port
        await engine.release(first)
        talker = Talker(stray, first, Codec.PCMU, 0, 440.0, ssrc=99)  # the last call's peer goes on
        for _ in range(int(2 * QUARANTINE / 0.02)):
            talker.send_frame()
            await asyncio.sleep(0.02)
        second = await engine.create_endpoint(1, "c2", [Codec.PCMU])
        assert second.local_address.port != port
        await asyncio.sleep(QUARANTINE + 0.1)  # silent now
        third = await engine.create_endpoint(1, "c3", [Codec.PCMU])
        assert third.local_address.port == port
    finally:
        stray.close()
        await engine.close()


async def test_a_full_range_takes_a_parked_pair_before_giving_up() -> None:
    engine = pooled_engine(pairs=2, quarantine=60.0)
    try:
        a = await engine.create_endpoint(1, "c", [Codec.PCMU])
        b = await engine.create_endpoint(1, "c", [Codec.PCMU])
        with pytest.raises(PortsExhausted):
            await engine.create_endpoint(1, "c", [Codec.PCMU])
        await engine.release(a)
        c = await engine.create_endpoint(1, "c", [Codec.PCMU])  # quarantined, but the range has nothing else
        assert c.local_address.port == a.local_address.port != b.local_address.port
        with pytest.raises(PortsExhausted):
            await engine.create_endpoint(1, "c", [Codec.PCMU])
    finally:
        await engine.close()


async def test_the_pool_is_bounded_and_a_disabled_pool_closes_at_release() -> None:
    engine = pooled_engine(pool=1)
    try:
        a = await engine.create_endpoint(1, "c", [Codec.PCMU])
        b = await engine.create_endpoint(1, "c", [Codec.PCMU])
        await engine.release(a)
        await engine.release(b)  # the pool holds one pair: the oldest (a's) is closed
        assert bindable(a.local_address.port) and bindable(a.local_address.port + 1)
        assert not bindable(b.local_address.port)
    finally:
        await engine.close()
    off = pooled_engine(pool=0)
    try:
        c = await off.create_endpoint(1, "c", [Codec.PCMU])
        await off.release(c)
        assert bindable(c.local_address.port) and bindable(c.local_address.port + 1)
    finally:
        await off.close()


async def srtp_leg_parked_back_to_plain() -> None:
    engine = pooled_engine(quarantine=0.0)
    phone = await FakePeer.open()
    try:
        secure = await engine.create_endpoint(1, "c1", [Codec.PCMU])
        keys = SrtpKeys(local=os.urandom(30), remote=os.urandom(30))
        await engine.set_remote(secure, HOST, phone.port, payload_type=0, codec=Codec.PCMU, srtp=keys)
        phone.send(tx_session(keys.remote).protect(build_rtp(
            payload_type=0, sequence=1, timestamp=0, ssrc=5, payload=g711.encode(Codec.PCMU, np.zeros(160, np.int16)))), secure)
        await asyncio.sleep(0.05)
        await engine.release(secure)
        again = await engine.create_endpoint(1, "c2", [Codec.PCMU])
        assert again.local_address.port == secure.local_address.port
        await relays(engine, again)  # plain RTP in and out: no SRTP wrapper left on the reused sockets
    finally:
        phone.close()
        await engine.close()


async def test_an_srtp_leg_is_parked_back_to_plain_rtp() -> None:
    await srtp_leg_parked_back_to_plain()


def test_an_srtp_leg_is_parked_back_to_plain_rtp_under_uvloop() -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(srtp_leg_parked_back_to_plain())
