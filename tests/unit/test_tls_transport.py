"""SIP over TLS: the TCP transport given a certificate (real loopback sockets). A message sent over TLS
arrives framed, from a ``tls`` peer, and the answer goes back on the same connection; a new certificate
written over the files is what the next handshake presents; a broken one leaves the previous in force.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from test_sip_service import no_users_authenticator

from zvonok.config import Settings
from zvonok.sip.errors import SipParseError
from zvonok.sip.message import Request, Response
from zvonok.sip.peer import Peer
from zvonok.telephony.location import Location
from zvonok.telephony.registrar import Registrar, RegistrarConfig
from zvonok.telephony.service import SipService
from zvonok.transport.tcp import TcpLimits, TcpTransport
from zvonok.transport.tls import ServerCertificate, write_self_signed

OPTIONS = (b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK1\r\n"
           b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
           b"Content-Length: 0\r\n\r\n")


async def presented(port: int, cafile: Path | None = None) -> bytes:
    """The DER certificate the server presents to a new connection."""
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return bytes(der)


def der_of(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


async def test_sip_over_tls_and_certificate_reload(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_self_signed(cert, key, ["127.0.0.1"])
    certificate = ServerCertificate(cert, key)
    received: list[tuple[Request | Response | SipParseError, Peer]] = []
    transport: TcpTransport

    def handler(item: Request | Response | SipParseError, raw: bytes, peer: Peer) -> None:
        received.append((item, peer))
        transport.send(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", peer)

    limits = TcpLimits(max_connections=10, max_per_address=10, idle_timeout=60, message_timeout=10,
                       first_message_timeout=10)
    transport = TcpTransport(handler, 65535, limits, ssl=certificate.context)
    await transport.start("127.0.0.1", 0)
    port = transport.local[1]
    try:
        client = ssl.create_default_context(cafile=cert)
        client.check_hostname = False
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)  # verifies our certificate
        writer.write(OPTIONS[:40])
        writer.write(OPTIONS[40:])
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert answer.startswith(b"SIP/2.0 200 OK")
        ((item, peer),) = received
        assert isinstance(item, Request) and item.method == "OPTIONS"
        assert peer.transport == "tls" and peer.reliable and peer.connection is not None
        writer.close()
        await writer.wait_closed()

        first = der_of(cert)
        assert await presented(port) == first
        assert not certificate.reload_if_changed()  # nothing changed
        write_self_signed(cert, key, ["127.0.0.1", "sip.example.com"])  # a renewal written over the files
        assert certificate.reload_if_changed()
        renewed = der_of(cert)
        assert renewed != first and await presented(port) == renewed
        key.write_text("not a key")  # a broken renewal: logged, the loaded pair stays
        assert not certificate.reload_if_changed()
        assert await presented(port) == renewed
    finally:
        await transport.close()


async def test_sip_service_answers_over_tls_and_counts_tls_with_tcp(tmp_path: Path) -> None:
    """The service's TLS listener: OPTIONS answered on the TLS connection; its connections count against
    the same SIP stream cap as TCP's (the descriptor budget reserves one number for both), and a newcomer
    on either evicts the oldest unauthenticated connection of both."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_self_signed(cert, key, ["127.0.0.1"])

    auth = no_users_authenticator()
    settings = Settings(sip_host="127.0.0.1", sip_port=0, sip_tls_port=0, sip_tls_cert=cert, sip_tls_key=key,
                        sip_tcp_max_connections=2)
    service = SipService(settings, Registrar(location=Location(), auth=auth, config=RegistrarConfig()))
    await service.start()
    client = ssl.create_default_context(cafile=cert)
    client.check_hostname = False
    opened: list[asyncio.StreamWriter] = []
    try:
        assert service.port_for("tls") == service.tls_port != service.port_for("udp") == service.local[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", service.tls_port, ssl=client)
        opened.append(writer)
        writer.write(OPTIONS)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert answer.startswith(b"SIP/2.0 200 OK") and b"Via: SIP/2.0/TLS" in answer
        _, tcp_writer = await asyncio.open_connection("127.0.0.1", service.local[1])  # the second of two
        opened.append(tcp_writer)
        third, writer3 = await asyncio.open_connection("127.0.0.1", service.tls_port, ssl=client)
        opened.append(writer3)
        # over the shared cap (TLS alone holds two): the oldest connection, never authenticated, makes room
        try:
            assert await asyncio.wait_for(reader.read(), 10) == b""
        except ConnectionResetError:
            pass
        writer3.write(OPTIONS)
        assert (await asyncio.wait_for(third.readuntil(b"\r\n\r\n"), 10)).startswith(b"SIP/2.0 200 OK")
    finally:
        for w in opened:
            w.close()
        await service.stop()
