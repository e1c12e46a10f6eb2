"""Connection caps, stream deadlines, the descriptor budget and the body limit, without sockets."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from zvonok.api.limits import BodyLimit
from zvonok.netaddr import address_key
from zvonok.transport.limits import ConnectionTable, StreamDeadlines, fd_budget, prefix_key


def test_address_key_counts_ipv6_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("not-an-address") == "not-an-address"


def test_table_caps_per_address_and_overall() -> None:
    table = ConnectionTable(max_total=5, max_per_address=2)
    assert table.admit("10.0.0.1") and table.admit("10.0.0.1")
    assert not table.admit("10.0.0.1")  # the third from one address
    assert table.admit("2001:db8::1") and table.admit("2001:db8::2")
    assert not table.admit("2001:db8::3")  # same /64
    assert table.admit("10.0.0.2")
    assert not table.admit("10.0.0.3")  # five open: the overall cap
    assert table.refused == 3
    table.release("10.0.0.1")
    assert table.count("10.0.0.1") == 1 and table.total == 4
    assert table.admit("10.0.0.3")
    for host in ("10.0.0.1", "2001:db8::1", "2001:db8::2", "10.0.0.2", "10.0.0.3"):
        table.release(host)
    assert table.total == 0 and table.count("2001:db8::5") == 0
    table.release("10.0.0.9")  # never admitted: nothing to release
    assert table.total == 0


def test_table_caps_an_ipv6_48_beyond_its_64s() -> None:
    assert prefix_key("2001:db8:1:ffff::1") == prefix_key("2001:db8:1::9") == "2001:db8:1::/48"
    assert prefix_key("192.0.2.7") is None and prefix_key("::ffff:192.0.2.7") is None
    table = ConnectionTable(max_total=100, max_per_address=2)
    assert table.max_per_prefix == 8  # four times the per-address cap by default
    for subnet in range(4):  # two each from four /64s of one /48
        assert table.admit(f"2001:db8:1:{subnet}::1") and table.admit(f"2001:db8:1:{subnet}::2")
    assert table.prefix_count("2001:db8:1:77::1") == 8
    assert not table.admit("2001:db8:1:4::1")  # a fresh /64 of the same /48: the /48 is full
    assert table.admit("2001:db8:2::1")  # another /48
    assert table.admit("192.0.2.1") and table.admit("192.0.2.2")  # IPv4 has no prefix cap
    table.release("2001:db8:1:0::1")
    assert table.prefix_count("2001:db8:1::") == 7
    assert table.admit("2001:db8:1:4::1")
    assert table.refused == 1


class Conn:
    """A connection as the table sees it: evict() closes it."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True


def test_full_table_evicts_the_oldest_untrusted_connection() -> None:
    # age is admission order: the table needs no clock to find the oldest
    table = ConnectionTable(max_total=3, max_per_address=10)
    a, b, c, d, e, f = (Conn(f"10.0.0.{i}") for i in range(1, 7))
    for conn in (a, b, c):
        assert table.admit(conn.host, conn)
    table.trust(b)  # e.g. it registered
    assert table.admit(d.host, d)  # full: the oldest untrusted (a) makes room
    assert a.evicted and not (b.evicted or c.evicted)
    assert table.total == 3 and table.count(a.host) == 0 and table.count(d.host) == 1
    assert table.admit(e.host, e)  # b is older but trusted: c goes
    assert c.evicted and not b.evicted
    assert table.admit(f.host, f)
    assert d.evicted and not b.evicted
    assert (table.evicted, table.refused) == (3, 0)


def test_trusted_connections_are_never_evicted() -> None:
    table = ConnectionTable(max_total=2, max_per_address=10)
    a, b, c = Conn("10.0.0.1"), Conn("10.0.0.2"), Conn("10.0.0.3")
    assert table.admit(a.host, a) and table.admit(b.host, b)
    table.trust(a)
    table.trust(b)
    assert not table.admit(c.host, c)  # every connection trusted: the newcomer is refused as without eviction
    assert not (a.evicted or b.evicted) and table.refused == 1 and table.total == 2
    # a connection counted by address alone (the HTTP listener's) is never evicted either
    http = ConnectionTable(max_total=1, max_per_address=10)
    assert http.admit("10.0.0.1")
    assert not http.admit(c.host, c)


def test_a_released_connection_is_no_longer_a_candidate() -> None:
    table = ConnectionTable(max_total=2, max_per_address=10)
    a, b, c, d = (Conn(f"10.0.0.{i}") for i in range(1, 5))
    assert table.admit(a.host, a) and table.admit(b.host, b)
    table.release(a.host, a)  # closed by its peer
    assert table.admit(c.host, c)  # room without evicting
    assert table.admit(d.host, d)
    assert b.evicted and not a.evicted and table.total == 2
    # the per-address cap refuses before anything is evicted for the newcomer
    crowded = ConnectionTable(max_total=2, max_per_address=1)
    x, y = Conn("10.0.0.1"), Conn("10.0.0.1")
    assert crowded.admit(x.host, x) and not crowded.admit(y.host, y)
    assert not x.evicted


def test_a_trickled_message_is_not_extended_by_its_bytes() -> None:
    d = StreamDeadlines(0.0, idle=300, message=10, first=30)
    for second in range(1, 10):
        d.on_data(float(second), buffered=second, completed=0, valid=False)  # a byte a second
        assert d.expired(float(second)) is None
    assert d.expired(10.99) is None
    assert d.expired(11.0) == "message deadline"  # ten seconds after the first byte, whatever came since


def test_a_complete_message_stops_the_deadline_and_a_leftover_restarts_it() -> None:
    d = StreamDeadlines(0.0, idle=300, message=10, first=30)
    d.on_data(1.0, buffered=100, completed=0, valid=False)
    d.on_data(5.0, buffered=0, completed=1, valid=True)
    assert d.message_started is None and d.proven
    assert d.expired(100.0) is None
    d.on_data(100.0, buffered=20, completed=1, valid=True)  # a message and the start of the next one
    assert d.expired(109.9) is None
    assert d.expired(110.0) == "message deadline"


def test_idle_and_first_message_deadlines() -> None:
    d = StreamDeadlines(0.0, idle=300, message=10, first=30)
    d.on_data(20.0, buffered=0, completed=1, valid=False)  # a keep-alive ping is no message
    assert d.expired(29.9) is None
    assert d.expired(30.0) == "no message"
    d.on_data(31.0, buffered=0, completed=1, valid=True)
    assert d.expired(330.9) is None
    assert d.expired(331.0) == "idle"


def test_fd_budget_keeps_the_rtp_range() -> None:
    roomy = fd_budget(1 << 20, rtp_ports=10_000, sip_tcp=2000, http=1000)
    assert (roomy.rtp, roomy.sip_tcp, roomy.http) == (10_000, 2000, 1000)
    assert roomy.spare == (1 << 20) - 256 - 13_000
    # the connections are cut to what the RTP range leaves, in proportion
    tight = fd_budget(15_256, rtp_ports=10_000, sip_tcp=4000, http=2000)
    assert (tight.rtp, tight.sip_tcp, tight.http) == (10_000, 3333, 1666)
    # the default 1024: a range wider than the limit still leaves a quarter to the connections
    small = fd_budget(1024, rtp_ports=10_000, sip_tcp=2000, http=1000)
    assert small.sip_tcp + small.http <= 192 and small.sip_tcp > 0 and small.http > 0
    assert small.rtp == 1024 - 256 - small.sip_tcp - small.http
    assert small.spare >= 0


def _app() -> tuple[FastAPI, list[int]]:
    app = FastAPI()
    seen: list[int] = []

    @app.post("/small")
    async def small(request: Request) -> dict[str, int]:
        seen.append(len(await request.body()))
        return {"size": seen[-1]}

    @app.put("/upload/{n}")
    async def upload(n: int, request: Request) -> dict[str, int]:
        seen.append(len(await request.body()))
        return {"size": seen[-1]}

    app.add_middleware(BodyLimit, default=1000, larger=[("PUT", "/upload/[^/]+", 5000)])
    return app, seen


async def test_body_limit_refuses_a_declared_length_before_reading() -> None:
    app, seen = _app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        ok = await client.post("/small", content=b"x" * 1000)
        assert ok.status_code == 200 and ok.json() == {"size": 1000}
        refused = await client.post("/small", content=b"x" * 1001)
        assert refused.status_code == 413 and refused.headers["connection"] == "close"
        assert seen == [1000]  # the route never ran
        assert (await client.put("/upload/1", content=b"x" * 5000)).status_code == 200
        assert (await client.put("/upload/1", content=b"x" * 5001)).status_code == 413
        assert (await client.post("/upload/1", content=b"x" * 1001)).status_code == 413  # other method


async def test_body_limit_counts_a_streamed_body() -> None:
    app, seen = _app()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 300

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        refused = await client.post("/small", content=chunks())
        assert refused.status_code == 413 and refused.headers["connection"] == "close"
        assert seen == []


async def test_rtp_out_of_descriptors_is_told_apart_from_a_full_port_range(monkeypatch: pytest.MonkeyPatch) -> None:
    from zvonok.media import engine as engine_module
    from zvonok.media.errors import PortsExhausted

    attempts: list[int] = []

    def no_descriptors(*args: object) -> socket.socket:
        attempts.append(1)
        raise OSError(errno.EMFILE, "Too many open files")

    engine = engine_module.InProcessMediaEngine(host="127.0.0.1", port_min=40000, port_max=40999)
    monkeypatch.setattr(engine_module.socket, "socket", no_descriptors)
    with pytest.raises(PortsExhausted, match="file descriptors"):
        await engine.create_endpoint(1, "c", [engine_module.Codec.PCMU])
    assert attempts == [1]  # not 500 pairs tried in vain


async def test_a_connection_that_answered_our_request_is_kept_at_the_cap() -> None:
    """The service trusts a stream that answered a request it sent (an INVITE to a phone, say): at the
    overall cap a newcomer evicts the younger, silent connection instead of that older one."""
    from zvonok.config import Settings
    from zvonok.sip.message import Request, make_response, parse_datagram
    from zvonok.sip.peer import Peer
    from zvonok.telephony.location import Location
    from zvonok.telephony.registrar import Registrar, RegistrarConfig
    from zvonok.telephony.service import SipService

    settings = Settings(sip_host="127.0.0.1", sip_port=0, sip_tcp_max_connections=2)
    registrar = Registrar(location=Location(), auth=None,  # type: ignore[arg-type]  # no REGISTER here
                          config=RegistrarConfig())
    service = SipService(settings, registrar)
    await service.start()
    assert service.tcp is not None
    port = service.local[1]
    opened: list[asyncio.StreamWriter] = []
    try:
        phone_reader, phone = await asyncio.open_connection("127.0.0.1", port)
        opened.append(phone)
        for _ in range(100):  # accepted on the server's side
            if service.tcp.connections:
                break
            await asyncio.sleep(0.05)
        conn_id, conn = next(iter(service.tcp.connections.items()))
        assert conn.peer is not None
        responses: list[object] = []
        request = parse_datagram(
            b"OPTIONS sip:phone@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:%d;branch=z9hG4bKq1\r\n"
            b"From: <sip:pbx@x>;tag=p\r\nTo: <sip:phone@x>\r\nCall-ID: q1\r\nCSeq: 1 OPTIONS\r\n"
            b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n" % port)
        assert isinstance(request, Request)
        service.send_request(request, Peer(transport="tcp", host="127.0.0.1", port=conn.peer.port,
                                           connection=conn_id), responses.append)
        received = parse_datagram(await asyncio.wait_for(phone_reader.readuntil(b"\r\n\r\n"), 10))
        assert isinstance(received, Request)
        phone.write(make_response(received, 200, to_tag="ph").to_bytes())
        for _ in range(200):
            if responses:
                break
            await asyncio.sleep(0.05)
        assert responses
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
        opened.append(silent)
        _, newcomer = await asyncio.open_connection("127.0.0.1", port)  # the third of two
        opened.append(newcomer)
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(silent_reader.read(), 10) == b""  # the silent one made room
        phone.write(b"\r\n\r\n")  # a keep-alive: still served
        assert await asyncio.wait_for(phone_reader.readexactly(2), 10) == b"\r\n"
    finally:
        for writer in opened:
            writer.close()
        await service.stop()
