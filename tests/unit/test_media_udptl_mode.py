"""The media engine's UDPTL mode (T.38): an endpoint's socket carries datagrams to a terminal's sink, or
relays them unchanged to a bridged endpoint in the same mode; loopback sockets, no timing assertions."""

from __future__ import annotations

import asyncio
from typing import Any

from test_media_engine import HOST, make_engine, wait_until

from zvonok.media.g711 import Codec
from zvonok.media.udptl import UdptlSender, decode


class Peer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.transport: Any = None

    @classmethod
    async def open(cls) -> Peer:
        peer = cls()
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: peer, local_addr=(HOST, 0))
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.datagrams.append(data)

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])


async def test_datagrams_reach_the_sink_and_ours_go_to_the_peer() -> None:
    engine = make_engine()
    peer = await Peer.open()
    try:
        endpoint = await engine.create_endpoint(1, "call", [Codec.PCMA])
        got: list[bytes] = []
        await engine.set_udptl(endpoint, HOST, peer.port, sink=got.append)
        wire = UdptlSender().send(b"\x02")  # a CNG indicator IFP
        peer.transport.sendto(wire, (HOST, endpoint.local_address.port))
        await wait_until(lambda: got == [wire])
        engine.send_datagram(endpoint, b"\x00\x01\x01\x04\x00\x00")
        await wait_until(lambda: len(peer.datagrams) == 1)
        assert decode(peer.datagrams[0]).primary == b"\x04"
        stats = await engine.stats(endpoint)
        assert stats.bytes_received == len(wire)
        await engine.release(endpoint)
    finally:
        peer.transport.close()
        await engine.close()


async def test_two_bridged_endpoints_relay_udptl_unchanged_both_ways() -> None:
    engine = make_engine()
    carrier, device = await Peer.open(), await Peer.open()
    try:
        a = await engine.create_endpoint(1, "call", [Codec.PCMA])
        b = await engine.create_endpoint(1, "call", [Codec.PCMA])
        await engine.set_remote(a, HOST, carrier.port, payload_type=8, codec=Codec.PCMA)
        await engine.set_remote(b, HOST, device.port, payload_type=8, codec=Codec.PCMA)
        await engine.bridge(a, b)
        await engine.set_udptl(a, HOST, carrier.port)
        await engine.set_udptl(b, HOST, device.port)
        sender = UdptlSender(redundancy=2)
        sent = [sender.send(bytes([n + 1]) * 5) for n in range(4)]
        for wire in sent:
            carrier.transport.sendto(wire, (HOST, a.local_address.port))
        await wait_until(lambda: len(device.datagrams) == 4)
        assert device.datagrams == sent  # byte for byte: no RTP header, no rewriting
        device.transport.sendto(b"\x00\x00\x01\x02\x00\x00", (HOST, b.local_address.port))
        await wait_until(lambda: len(carrier.datagrams) == 1)
        assert carrier.datagrams == [b"\x00\x00\x01\x02\x00\x00"]
    finally:
        carrier.transport.close()
        device.transport.close()
        await engine.close()


async def test_a_third_party_cannot_inject_once_latched() -> None:
    engine = make_engine()
    peer, intruder = await Peer.open(), await Peer.open()
    try:
        endpoint = await engine.create_endpoint(1, "call", [Codec.PCMA])
        got: list[bytes] = []
        await engine.set_udptl(endpoint, HOST, peer.port, sink=got.append)
        peer.transport.sendto(b"first", (HOST, endpoint.local_address.port))
        await wait_until(lambda: got == [b"first"])
        intruder.transport.sendto(b"intruder", (HOST, endpoint.local_address.port))
        peer.transport.sendto(b"second", (HOST, endpoint.local_address.port))
        await wait_until(lambda: len(got) == 2)
        assert got == [b"first", b"second"]
    finally:
        peer.transport.close()
        intruder.transport.close()
        await engine.close()
