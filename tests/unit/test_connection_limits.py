"""Connection caps, stream deadlines, the descriptor budget and the body limit, without sockets."""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from zvonok.api.limits import BodyLimit
from zvonok.netaddr import address_key
from zvonok.transport.limits import ConnectionTable, StreamDeadlines, fd_budget


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
