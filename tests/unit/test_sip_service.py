"""The SIP service on real loopback sockets: every RFC 4475 message gets the answer the RFC asks for.

The service runs in the test's event loop with an in-memory registrar; a UDP socket plays the peer.
After each torture message the test sends an OPTIONS probe: the probe's answer arriving first proves
that the torture message got no answer (UDP on loopback keeps order and the service answers in order).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from zvonok.config import Settings
from zvonok.org.service import SipCredentials
from zvonok.sip.digest import Algorithm, DigestVerifier, NonceManager
from zvonok.sip.message import Response, parse_datagram
from zvonok.telephony.auth import Authenticator, CredentialCache
from zvonok.telephony.location import Location
from zvonok.telephony.registrar import Registrar, RegistrarConfig
from zvonok.telephony.service import SipService
from zvonok.telephony.throttle import FailureThrottle

RFC4475 = Path(__file__).parents[1] / "data" / "rfc4475"

# the answer each message gets from our server (a registrar that does not take calls yet);
# None: no answer (a response, or an ACK, has nobody to answer)
WIRE_EXPECTED: dict[str, int | None] = {
    "wsinv": 405, "intmeth": 501, "esc01": 405, "escnull": 401, "esc02": 501, "lwsdisp": 200,
    "longreq": 405, "dblreq": 401, "semiuri": 200, "transports": 200, "mpart01": 405, "unreason": None,
    "noreason": None, "badinv01": 400, "clerr": 400, "ncl": 400, "scalar02": 400, "scalarlg": None,
    "quotbal": 400, "ltgtruri": 400, "lwsruri": 400, "lwsstart": 400, "trws": 400, "escruri": 405,
    "baddate": 405, "regbadct": 400, "badaspec": 400, "baddn": 400, "badvers": 505, "mismatch01": 400,
    "mismatch02": 400, "bigcode": None, "badbranch": 200, "insuf": 400, "unkscm": 416, "novelsc": 416,
    "unksm2": 400, "bext01": 420, "invut": 405, "regaut01": 401, "multi01": 400, "mcl01": 400,
    "bcast": None, "zeromf": 200, "cparam01": 401, "cparam02": 401, "regescrt": 401, "sdp01": 405,
    "inv2543": 405,
}


def probe(n: int) -> bytes:
    return (
        "OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKprobe{n};rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=p\r\nTo: <sip:probe@127.0.0.1>\r\n"
        f"Call-ID: probe-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Peer:
    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.server = ("127.0.0.1", port)

    async def recv(self, timeout: float = 10.0) -> bytes:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recv(self.sock, 65535), timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)


def no_users_authenticator() -> Authenticator:
    """An authenticator that knows no user (every digest fails): for tests of the transport layers."""
    async def lookup(domain: str, user: str) -> SipCredentials | None:
        return None

    return Authenticator(
        credentials=CredentialCache(lookup),
        verifier=DigestVerifier(NonceManager(os.urandom(32), 300, os.urandom), [Algorithm.MD5]),
        throttle=FailureThrottle(100, 60, 60), to_tag=lambda: os.urandom(4).hex(),
    )


@pytest.fixture
async def service() -> AsyncIterator[SipService]:
    auth = no_users_authenticator()
    registrar = Registrar(location=Location(), auth=auth, config=RegistrarConfig())
    svc = SipService(Settings(sip_host="127.0.0.1", sip_port=0), registrar)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
def peer(service: SipService) -> Iterator[Peer]:
    client = Peer(service.local[1])
    yield client
    client.sock.close()


def status_and_call_id(data: bytes) -> tuple[int, str]:
    """Read a response leniently: an answer to a malformed request copies its malformed headers."""
    status = int(data.split(b" ", 2)[1])
    match = re.search(rb"\r\n(?:Call-ID|i)[ \t]*:[ \t]*([^\r\n]*)", data, re.IGNORECASE)
    return status, match.group(1).decode(errors="replace") if match else ""


@pytest.mark.parametrize("name", sorted(WIRE_EXPECTED))
async def test_rfc4475_over_udp(service: SipService, peer: Peer, name: str) -> None:
    peer.send((RFC4475 / f"{name}.dat").read_bytes())
    peer.send(probe(1))
    status, call_id = status_and_call_id(await peer.recv())
    expected = WIRE_EXPECTED[name]
    if expected is None:
        assert call_id == "probe-1", f"{name} was answered with {status}"
        return
    assert (status, call_id != "probe-1") == (expected, True), name
    assert status_and_call_id(await peer.recv()) == (200, "probe-1")


async def test_path_is_a_supported_extension(service: SipService, peer: Peer) -> None:
    # RFC 3327: an edge proxy's REGISTER may require path; we do it, so it is challenged, not refused 420
    peer.send(
        b"REGISTER sip:acme.test SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKpath1;rport\r\nMax-Forwards: 70\r\n"
        b"From: <sip:101@acme.test>;tag=p\r\nTo: <sip:101@acme.test>\r\nCall-ID: path-1\r\nCSeq: 1 REGISTER\r\n"
        b"Path: <sip:10.0.0.5;lr>\r\nRequire: path\r\nSupported: path\r\nContact: <sip:101@192.0.2.9>\r\n"
        b"Content-Length: 0\r\n\r\n")
    assert status_and_call_id(await peer.recv()) == (401, "path-1")
    peer.send(probe(9))
    options = parse_datagram(await peer.recv())
    assert "path" in (options.headers.get("supported") or "").split(", ")


async def test_retransmitted_request_gets_the_same_response(service: SipService, peer: Peer) -> None:
    peer.send(probe(7))
    first = await peer.recv()
    peer.send(probe(7))  # the same branch: a retransmission, absorbed by the transaction layer
    again = await peer.recv()
    assert again == first


async def test_response_goes_to_source_port_with_rport(service: SipService, peer: Peer) -> None:
    peer.send(probe(8))
    response = parse_datagram(await peer.recv())
    via = response.vias[0]
    assert via.params.get("rport") == str(peer.sock.getsockname()[1])
    assert via.received == "127.0.0.1"


async def test_options_over_tcp_and_framing_error_closes(service: SipService, peer: Peer) -> None:
    reader, writer = await asyncio.open_connection(*service.local)
    writer.write(b"\r\n\r\n" + probe(9).replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
    pong = await asyncio.wait_for(reader.readexactly(2), 10)
    assert pong == b"\r\n"
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    response = parse_datagram(head)
    assert isinstance(response, Response) and response.status == 200
    writer.write((RFC4475 / "ncl.dat").read_bytes())  # negative Content-Length: the stream is lost
    rest = await asyncio.wait_for(reader.read(), 10)
    assert rest == b""
    writer.close()


async def test_garbage_never_stops_the_service(service: SipService, peer: Peer) -> None:
    rng = __import__("random").Random(4475)
    seeds = [p.read_bytes() for p in sorted(RFC4475.glob("*.dat"))]
    for batch in range(10):  # in batches, so that no socket buffer overflows
        for _ in range(40):
            seed = rng.choice(seeds)
            cut = rng.randrange(len(seed))
            peer.send(seed[:cut] + bytes(rng.randrange(256) for _ in range(rng.randrange(20))))
        peer.send(probe(100 + batch))
        while status_and_call_id(await peer.recv()) != (200, f"probe-{100 + batch}"):
            pass


async def test_metrics_count_messages_by_method_and_status(service: SipService, peer: Peer) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before_in = sample("zvonok_sip_messages_in_total", transport="udp", kind="request", method="OPTIONS", status="")
    before_out = sample("zvonok_sip_messages_out_total", transport="udp", kind="response", method="OPTIONS",
                        status="200")
    before_bad = sample("zvonok_sip_parse_errors_total", transport="udp")
    peer.send(probe(11))
    await peer.recv()
    peer.send((RFC4475 / "badvers.dat").read_bytes())
    await peer.recv()
    assert sample("zvonok_sip_messages_in_total", transport="udp", kind="request", method="OPTIONS",
                  status="") == before_in + 1
    assert sample("zvonok_sip_messages_out_total", transport="udp", kind="response", method="OPTIONS",
                  status="200") == before_out + 1
    assert sample("zvonok_sip_parse_errors_total", transport="udp") == before_bad + 1


async def test_invented_methods_add_no_time_series(service: SipService, peer: Peer) -> None:
    """Any token is a valid SIP method: a peer inventing names must not add a series per name (issue 8)."""
    from prometheus_client import REGISTRY

    def series() -> int:
        return sum(len(m.samples) for m in REGISTRY.collect() if m.name.startswith("zvonok_sip_messages"))

    def invented(n: int) -> bytes:
        return probe(n).replace(b"OPTIONS", f"XMETHOD{n}".encode())

    peer.send(invented(0))
    assert b" 501 " in (await peer.recv()).split(b"\r\n", 1)[0]  # unknown method: 501 (RFC 3261 §8.2.1)
    before = series()
    for n in range(1, 21):
        peer.send(invented(n))
        await peer.recv()
    assert series() == before
    assert (REGISTRY.get_sample_value("zvonok_sip_messages_in_total", {
        "transport": "udp", "kind": "request", "method": "other", "status": ""}) or 0) >= 21


async def test_a_header_line_without_colon_gets_400(service: SipService, peer: Peer) -> None:
    data = (RFC4475 / "cparam01.dat").read_bytes().replace(b"Max-Forwards: 70\r\n",
                                                            b"Max-Forwards: 70\r\n101[authentication x]\r\n")
    peer.send(data)
    assert status_and_call_id(await peer.recv())[0] == 400


async def test_a_finished_client_transaction_lets_go_of_its_handler(peer: Peer) -> None:
    """A request we send keeps its handler (and through it the call) only while its transaction lives:
    after the 200 the transaction ends silently by Timer K, and the handler must go with it."""
    from zvonok.sip.peer import Peer as SipPeer

    auth = no_users_authenticator()
    svc = SipService(Settings(sip_host="127.0.0.1", sip_port=0, sip_t4=0.05),
                     Registrar(location=Location(), auth=auth, config=RegistrarConfig()))
    await svc.start()
    try:
        peer.server = ("127.0.0.1", svc.local[1])
        host, port = peer.sock.getsockname()
        got: list[int] = []
        for n in range(20):
            request = parse_datagram((
                f"OPTIONS sip:p@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{svc.local[1]};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:z@127.0.0.1>;tag=z{n}\r\n"
                f"To: <sip:p@{host}>\r\nCall-ID: out-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode())
            assert not isinstance(request, Response)
            svc.send_request(request, SipPeer(transport="udp", host=host, port=port), lambda event: got.append(1))
            sent = await peer.recv()
            lines = [line for line in sent.split(b"\r\n") if line.lower().startswith(
                (b"via", b"from", b"to", b"call-id", b"cseq"))]
            peer.send(b"SIP/2.0 200 OK\r\n" + b"\r\n".join(lines) + b"\r\nContent-Length: 0\r\n\r\n")
        deadline = asyncio.get_running_loop().time() + 20
        while (len(got) < 20 or svc.client_handlers) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert len(got) == 20
        assert svc.client_handlers == 0
    finally:
        await svc.stop()
