"""Connections we open to trunks (TCP and TLS, real loopback sockets): a message for a trunk with no
connection open waits while one is opened, then goes; over TLS the carrier's certificate is verified
against the CA file given (its name = the trunk's host, sent as SNI), a certificate that does not verify
means no connection and nothing sent, and a trunk with verification off is reached all the same. A peer
the dialer does not name (a phone) is never connected to.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from zvonok.sip.errors import SipParseError
from zvonok.sip.message import Request, Response
from zvonok.sip.peer import Peer
from zvonok.transport.tcp import Dial, TcpLimits, TcpTransport
from zvonok.transport.tls import ServerCertificate, client_context, write_self_signed

OPTIONS = (b"OPTIONS sip:carrier.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK1\r\n"
           b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
           b"Content-Length: 0\r\n\r\n")
LIMITS = TcpLimits(max_connections=10, max_per_address=10, idle_timeout=60, message_timeout=10,
                   first_message_timeout=10)

Received = list[tuple[Request | Response | SipParseError, Peer]]


async def carrier(tmp_path: Path, names: list[str]) -> tuple[TcpTransport, Received, list[str | None]]:
    """A TLS 'carrier' answering 200 to what it gets, recording the SNI of each handshake."""
    cert, key = tmp_path / "carrier.pem", tmp_path / "carrier.key"
    write_self_signed(cert, key, names)
    certificate = ServerCertificate(cert, key)
    sni: list[str | None] = []
    certificate.context.sni_callback = lambda _obj, name, _ctx: sni.append(name)  # type: ignore[assignment]
    received: Received = []
    server: TcpTransport

    def handler(item: Request | Response | SipParseError, raw: bytes, peer: Peer) -> None:
        received.append((item, peer))
        server.send(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK1\r\n"
                    b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n"
                    b"Content-Length: 0\r\n\r\n", peer)

    server = TcpTransport(handler, 65535, LIMITS, ssl=certificate.context)
    await server.start("127.0.0.1", 0)
    return server, received, sni


async def until(condition: object, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition() and asyncio.get_running_loop().time() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.02)


async def ours(tmp_path: Path, dial: Dial | None) -> tuple[TcpTransport, Received]:
    cert, key = tmp_path / "ours.pem", tmp_path / "ours.key"
    write_self_signed(cert, key, ["127.0.0.1"])
    received: Received = []
    transport = TcpTransport(lambda item, raw, peer: received.append((item, peer)), 65535, LIMITS,
                             ssl=ServerCertificate(cert, key).context)
    transport.dialer = lambda peer: dial
    await transport.start("127.0.0.1", 0)
    return transport, received


async def test_tls_to_a_trunk_verified_by_ca_file_with_sni(tmp_path: Path) -> None:
    server, got, sni = await carrier(tmp_path, ["carrier.test"])
    context = client_context(verify=True, ca_file=tmp_path / "carrier.pem")
    client, answers = await ours(tmp_path, Dial(ssl=context, server_hostname="carrier.test"))
    peer = Peer(transport="tls", host="127.0.0.1", port=server.local[1])
    try:
        assert client.send(OPTIONS, peer)  # nothing open: held while the connection opens
        assert client.send(OPTIONS.replace(b"c1", b"c2"), peer)
        await until(lambda: len(answers) == 2)
        assert [item.headers.get("call-id") for item, _ in got] == ["c1", "c2"]  # type: ignore[union-attr]
        assert sni == ["carrier.test"]  # one connection, named as the trunk's host
        assert all(isinstance(item, Response) and item.status == 200 for item, _ in answers)
        assert answers[0][1].transport == "tls" and answers[0][1].port == server.local[1]
        assert client.send(OPTIONS, peer) and len(client.connections) == 1  # the open one is reused
    finally:
        await client.close()
        await server.close()


async def test_tls_certificate_that_does_not_verify_sends_nothing(tmp_path: Path) -> None:
    server, got, sni = await carrier(tmp_path, ["other.test"])  # right CA, wrong name
    context = client_context(verify=True, ca_file=tmp_path / "carrier.pem")
    client, answers = await ours(tmp_path, Dial(ssl=context, server_hostname="carrier.test"))
    peer = Peer(transport="tls", host="127.0.0.1", port=server.local[1])
    try:
        assert client.send(OPTIONS, peer)
        await until(lambda: not client._pending)
        await asyncio.sleep(0.2)
        assert got == [] and answers == [] and client.connections == {}
        assert sni == ["carrier.test"]
    finally:
        await client.close()
        await server.close()


async def test_tls_system_store_refuses_self_signed_and_verify_off_accepts(tmp_path: Path) -> None:
    server, got, _ = await carrier(tmp_path, ["pbx.office.test"])
    peer = Peer(transport="tls", host="127.0.0.1", port=server.local[1])
    strict, _ = await ours(tmp_path, Dial(ssl=client_context(verify=True), server_hostname="pbx.office.test"))
    lax, answers = await ours(tmp_path, Dial(ssl=client_context(verify=False), server_hostname="pbx.office.test"))
    try:
        assert strict.send(OPTIONS, peer)
        await until(lambda: not strict._pending)
        await asyncio.sleep(0.2)
        assert got == []
        assert lax.send(OPTIONS, peer)
        await until(lambda: len(answers) == 1)
        assert len(got) == 1
    finally:
        await strict.close()
        await lax.close()
        await server.close()


async def test_no_dialing_a_peer_the_dialer_does_not_name(tmp_path: Path) -> None:
    server, got, _ = await carrier(tmp_path, ["carrier.test"])
    client, _ = await ours(tmp_path, None)
    try:
        assert not client.send(OPTIONS, Peer(transport="tls", host="127.0.0.1", port=server.local[1]))
        await asyncio.sleep(0.2)
        assert got == [] and client._pending == {}
    finally:
        await client.close()
        await server.close()


async def test_plain_tcp_to_a_trunk(tmp_path: Path) -> None:
    received: Received = []
    server = TcpTransport(lambda item, raw, peer: received.append((item, peer)), 65535, LIMITS)
    await server.start("127.0.0.1", 0)
    client = TcpTransport(lambda item, raw, peer: None, 65535, LIMITS)
    client.dialer = lambda peer: Dial()
    await client.start("127.0.0.1", 0)
    try:
        assert client.send(OPTIONS, Peer(transport="tcp", host="127.0.0.1", port=server.local[1]))
        await until(lambda: len(received) == 1)
        assert isinstance(received[0][0], Request) and received[0][1].transport == "tcp"
    finally:
        await client.close()
        await server.close()
