"""The trunk registration client against SIPp playing a carrier's registrar (carrier_register.xml).

A small asyncio UDP adapter, written here, drives :class:`RegistrationClient` through the real
:class:`TransactionLayer` (retransmissions, Timer F) on a loopback socket: it feeds datagrams in,
sends what the layer and the client want sent, and re-arms one ``loop.call_at`` for the earlier of
their two deadlines, as the server's adapter will.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from zvonok.sip.errors import SipParseError
from zvonok.sip.message import Request, parse_datagram
from zvonok.sip.peer import Peer
from zvonok.sip.registration_client import (
    Registered,
    RegistrationClient,
    RegistrationEvent,
    RegistrationFailed,
    RegistrationState,
    Unregistered,
)
from zvonok.sip.transaction import (
    Event,
    ResponseReceived,
    TransactionLayer,
    TransactionTimeout,
    TransportError,
)

from .conftest import harness

# no server and no database: the client and SIPp only, on either run of the suite
pytestmark = [pytest.mark.integration, pytest.mark.fixed_backend]

USER, PASSWORD, GRANTED = "trunk", "s3cret-trunk", 4  # 4 s granted: the refresh comes after 2 s


def _token(prefix: str = "") -> Callable[[], str]:
    return lambda: prefix + secrets.token_hex(6)


class UdpRegistrationAdapter(asyncio.DatagramProtocol):
    """One UDP socket, one transaction layer, one registration client."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.layer = TransactionLayer(branch_factory=_token())
        self.client: RegistrationClient | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.events: list[RegistrationEvent] = []
        self.sent: list[Request] = []
        self.changed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's datagram transport does not subclass DatagramTransport, but is one
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        now = self.loop.time()
        try:
            message = parse_datagram(data)
        except SipParseError:
            return
        self._dispatch(self.layer.receive(message, Peer(transport="udp", host=addr[0], port=addr[1]), now), now)
        self.flush()

    def _dispatch(self, events: list[Event], now: float) -> None:
        assert self.client is not None
        for event in events:
            if isinstance(event, ResponseReceived) and event.response.status >= 200:
                self.client.receive_response(event.response, now)
            elif isinstance(event, TransactionTimeout):
                self.client.transaction_failed(now, request=event.transaction.request)
            elif isinstance(event, TransportError):
                self.client.transaction_failed(now, request=event.transaction.request, reason="transport error")

    def flush(self) -> None:
        assert self.client is not None and self.transport is not None
        now = self.loop.time()
        for request in self.client.requests_to_send():
            self.sent.append(request)
            self.layer.send_request(request, self.client.peer, now)
        for item in self.layer.data_to_send():
            self.transport.sendto(item.data, (item.peer.host, item.peer.port))
        while (event := self.client.next_event()) is not None:
            self.events.append(event)
            self.changed.set()
        if self.timer is not None:
            self.timer.cancel()
        deadlines = [d for d in (self.layer.get_timer(), self.client.get_timer()) if d is not None]
        self.timer = self.loop.call_at(min(deadlines), self._on_timer) if deadlines else None

    def _on_timer(self) -> None:
        assert self.client is not None
        self.timer = None
        now = self.loop.time()
        self._dispatch(self.layer.handle_timer(now), now)
        self.client.handle_timer(now)
        self.flush()

    async def wait_for(self, predicate: Callable[[list[RegistrationEvent]], bool], timeout: float = 10.0) -> None:
        async def waiting() -> None:
            while not predicate(self.events):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(waiting(), timeout)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.close()


def _udp_port_bound(port: int) -> bool:
    """Whether a socket holds 127.0.0.1:port (read from /proc: binding it ourselves to probe would race
    with SIPp's own bind)."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        if line.split()[1] == wanted:
            return True
    return False


async def _start_carrier(tmp_path: Path, client_port: int, name: str) -> tuple[int, asyncio.Task[Any]]:
    if shutil.which("sipp") is None:
        pytest.fail("SIPp (Debian sip-tester) is not installed: `make peers` installs it")
    port = harness.free_sip_port()
    task = asyncio.create_task(asyncio.to_thread(
        harness.run_sipp, "carrier_register.xml", f"127.0.0.1:{client_port}", workdir=tmp_path,
        rows=[[USER, PASSWORD, str(GRANTED)]], local_port=port, timeout=20, name=name,
    ))
    for _ in range(200):
        if _udp_port_bound(port) or task.done():
            break
        await asyncio.sleep(0.02)
    assert _udp_port_bound(port), "SIPp did not start"
    return port, task


async def _adapter(password: str, tmp_path: Path, name: str) -> tuple[UdpRegistrationAdapter, asyncio.Task[Any]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: UdpRegistrationAdapter(loop), local_addr=("127.0.0.1", 0))
    adapter = protocol
    client_port = int(transport.get_extra_info("sockname")[1])
    try:
        sipp_port, sipp = await _start_carrier(tmp_path, client_port, name)
    except BaseException:
        transport.close()
        raise
    adapter.client = RegistrationClient(
        registrar="sip:carrier.test", aor=f"sip:{USER}@carrier.test", username=USER, password=password,
        contact=f"sip:{USER}@127.0.0.1:{client_port}", peer=Peer(transport="udp", host="127.0.0.1", port=sipp_port),
        local_host="127.0.0.1", local_port=client_port, call_id_gen=_token("zv-"), tag_gen=_token(),
        branch_gen=_token(), cnonce_gen=_token(), user_agent="Zvonok-test",
    )
    return adapter, sipp


async def test_registers_refreshes_and_unregisters_against_sipp(tmp_path: Path) -> None:
    adapter, sipp = await _adapter(PASSWORD, tmp_path, "carrier_ok")
    client = adapter.client
    assert client is not None
    try:
        client.start(adapter.loop.time())
        adapter.flush()
        await adapter.wait_for(lambda evs: any(isinstance(e, Registered) for e in evs))
        first = adapter.events[0]
        assert isinstance(first, Registered) and first.expires == GRANTED
        assert client.state is RegistrationState.REGISTERED
        assert first.refresh_at - first.at == pytest.approx(GRANTED / 2)
        # the refresh comes after 2 s, with the known nonce and nc 2, and is accepted
        await adapter.wait_for(lambda evs: sum(isinstance(e, Registered) for e in evs) >= 2)
        client.stop(adapter.loop.time())
        adapter.flush()
        await adapter.wait_for(lambda evs: any(isinstance(e, Unregistered) for e in evs))
    finally:
        adapter.close()
    result = await sipp
    assert result.returncode == 0 and result.successful == 1 and result.failed == 0, result.describe()

    assert [type(e) for e in adapter.events] == [Registered, Registered, Unregistered]
    last = adapter.events[-1]
    assert isinstance(last, Unregistered) and last.error is None
    assert client.state is RegistrationState.UNREGISTERED and client.registered_until is None
    nc = [req.headers.get("authorization") for req in adapter.sent]
    assert nc[0] is None and all(v is not None for v in nc[1:])
    assert [(r.cseq.number, r.headers.get("expires")) for r in adapter.sent] == [
        (1, "3600"), (2, "3600"), (3, "3600"), (4, "0")]
    assert [v.split("nc=")[1][:8] for v in nc[1:] if v] == ["00000001", "00000002", "00000003"]
    assert all('opaque="zv0paque"' in v for v in nc[1:] if v)
    assert len({r.call_id for r in adapter.sent}) == 1 and len({r.from_.tag for r in adapter.sent}) == 1


async def test_wrong_password_fails_with_403_and_schedules_a_retry(tmp_path: Path) -> None:
    adapter, sipp = await _adapter("not-the-password", tmp_path, "carrier_403")
    client = adapter.client
    assert client is not None
    try:
        client.start(adapter.loop.time())
        adapter.flush()
        await adapter.wait_for(lambda evs: bool(evs))
    finally:
        adapter.close()
    result = await sipp
    assert result.returncode == 0, result.describe()

    (event,) = adapter.events
    assert isinstance(event, RegistrationFailed)
    assert (event.error, event.status) == ("403 Forbidden", 403)
    assert event.retry_at == pytest.approx(event.at + 30)
    assert client.state is RegistrationState.FAILED and client.last_error == "403 Forbidden"
    assert client.get_timer() == event.retry_at
    assert [r.cseq.number for r in adapter.sent] == [1, 2]
