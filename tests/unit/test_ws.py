"""The websocket event stream: auth (header or ?token=), 4401/4404 closes, tenant isolation, employees
seeing only their own calls, slow clients told about drops, clean-up, re-checked access.

Driven by a small in-loop ASGI websocket client (below) rather than Starlette's TestClient, which runs the
app on its own event loop in a thread: the test database's pooled connections belong to this loop.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI

from zvonok.api.auth import Principal
from zvonok.api.ws import CLOSE_NOT_FOUND, CLOSE_UNAUTHORIZED, CallVisibility, events_router
from zvonok.bus import LocalBus, deserialize
from zvonok.cdr.events import CdrWritten
from zvonok.org.models import Role
from zvonok.telephony import events as ev
from zvonok.telephony.events import Direction, Disposition, HangupSide, LegRole, Party

Api = Any


class WsClient:
    """One websocket connection to an ASGI app, in this event loop."""

    def __init__(self, app: FastAPI, path: str, *, token: str | None = None, query_token: str | None = None,
                 query: str = "") -> None:
        headers = [(b"host", b"zvonok.test")]
        if token is not None:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        self.scope = {
            "type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "ws",
            "server": ("zvonok.test", 80), "client": ("127.0.0.1", 40000), "root_path": "",
            "path": path, "raw_path": path.encode(), "headers": headers, "subprotocols": [],
            "query_string": "&".join(q for q in (f"token={query_token}" if query_token else "", query) if q).encode(),
        }
        self.app = app
        self.to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.flowing = asyncio.Event()  # cleared: the "network" stalls, the server's sends block
        self.flowing.set()
        self.task: asyncio.Task[None] | None = None

    async def _send(self, message: dict[str, Any]) -> None:
        await self.flowing.wait()
        await self.from_app.put(message)

    async def connect(self) -> str:
        self.task = asyncio.create_task(self.app(self.scope, self.to_app.get, self._send))
        await self.to_app.put({"type": "websocket.connect"})
        return (await self.message())["type"]

    async def message(self, timeout: float = 20.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.from_app.get(), timeout)

    async def event(self, timeout: float = 20.0) -> dict[str, Any]:
        msg = await self.message(timeout)
        assert msg["type"] == "websocket.send", msg
        data: dict[str, Any] = json.loads(msg["text"])
        return data

    async def close_code(self) -> int:
        msg = await self.message()
        assert msg["type"] == "websocket.close", msg
        code: int = msg.get("code", 1000)
        return code

    async def nothing_more(self, wait: float = 0.05) -> None:
        await asyncio.sleep(wait)
        assert self.from_app.empty(), self.from_app.get_nowait()

    async def disconnect(self) -> None:
        await self.to_app.put({"type": "websocket.disconnect", "code": 1000})
        assert self.task is not None
        await asyncio.wait_for(self.task, 20)


@pytest.fixture
async def bus() -> AsyncIterator[LocalBus]:
    b = LocalBus(close_timeout=0.1)
    yield b
    await b.close()


def mount(api: Api, bus: LocalBus, **kwargs: Any) -> FastAPI:
    app: FastAPI = api.client._transport.app
    app.include_router(events_router(bus, **kwargs))
    return app


async def subscribed(bus: LocalBus, n: int) -> None:
    for _ in range(100):
        if len(bus.subscriptions) == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(bus.subscriptions)} subscriptions, expected {n}")


def call_events(tenant_id: int, caller: Party, callee: Party, call_id: str | None = None) -> list[ev.CallEvent]:
    cid = call_id or uuid.uuid4().hex
    common = {"tenant_id": tenant_id, "call_id": cid}
    return [
        ev.CallStarted(**common, at=1.0, caller=caller, callee_number=callee.number, direction=Direction.INTERNAL),
        ev.LegCreated(**common, at=1.1, leg_id="L1", role=LegRole.CALLER, party=caller),
        ev.LegCreated(**common, at=1.2, leg_id="L2", role=LegRole.CALLEE, party=callee),
        ev.LegRinging(**common, at=1.3, leg_id="L2"),
        ev.LegAnswered(**common, at=2.0, leg_id="L2"),
        ev.CallAnswered(**common, at=2.0, answered_leg_id="L2"),
        ev.CallEnded(**common, at=9.0, disposition=Disposition.ANSWERED, hangup_side=HangupSide.CALLER,
                     cause="normal_clearing", sip_status=200),
    ]


def secret(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def test_admin_receives_its_tenants_events_only(api: Api, make_tenant: Any, bus: LocalBus) -> None:
    app = mount(api, bus)
    a = await make_tenant("a.example")
    b = await make_tenant("b.example")
    via_header = WsClient(app, f"/api/v1/tenants/{a.id}/events", token=secret(a.headers))
    via_query = WsClient(app, f"/api/v1/tenants/{a.id}/events", query_token=secret(a.headers))
    platform = WsClient(app, f"/api/v1/tenants/{b.id}/events", token=api.admin_token)
    for client in (via_header, via_query, platform):
        assert await client.connect() == "websocket.accept"
    await subscribed(bus, 3)

    alice, bob = Party(number="101", employee_id=1), Party(number="102")
    a_call = call_events(a.id, alice, bob)
    b_call = call_events(b.id, bob, alice)
    for e_a, e_b in zip(a_call, b_call, strict=True):
        bus.publish(e_b)
        bus.publish(e_a)
    bus.publish(CdrWritten(tenant_id=a.id, call_id=a_call[0].call_id, cdr_id=7, employee_ids=(1,)))
    bus.publish("not an event")
    for client in (via_header, via_query):
        got = [deserialize(await client.event()) for _ in range(len(a_call) + 1)]
        assert got == [*a_call, CdrWritten(tenant_id=a.id, call_id=a_call[0].call_id, cdr_id=7, employee_ids=(1,))]
        await client.nothing_more()
    got = [deserialize(await platform.event()) for _ in range(len(b_call))]
    assert got == b_call
    await platform.nothing_more()

    for client in (via_header, via_query, platform):
        await client.disconnect()
    await subscribed(bus, 0)  # every connection's subscription is gone


async def test_auth_failures_close_with_4401_or_4404(api: Api, make_tenant: Any, bus: LocalBus) -> None:
    app = mount(api, bus)
    a = await make_tenant("a.example")
    b = await make_tenant("b.example")
    cases = [
        (WsClient(app, f"/api/v1/tenants/{a.id}/events"), CLOSE_UNAUTHORIZED),
        (WsClient(app, f"/api/v1/tenants/{a.id}/events", token="zv_not-a-token"), CLOSE_UNAUTHORIZED),
        (WsClient(app, f"/api/v1/tenants/{a.id}/events", query_token="garbage.jwt.value"), CLOSE_UNAUTHORIZED),
        (WsClient(app, f"/api/v1/tenants/{b.id}/events", token=secret(a.headers)), CLOSE_NOT_FOUND),
        (WsClient(app, "/api/v1/tenants/987654/events", token=secret(a.headers)), CLOSE_NOT_FOUND),
        (WsClient(app, "/api/v1/tenants/987654/events", token=api.admin_token), CLOSE_NOT_FOUND),
    ]
    for client, code in cases:
        assert await client.connect() == "websocket.accept"
        assert await client.close_code() == code
        assert client.task is not None
        await asyncio.wait_for(client.task, 20)
    assert bus.subscriptions == ()


async def test_employee_sees_only_calls_they_are_part_of(api: Api, make_tenant: Any, bus: LocalBus) -> None:
    app = mount(api, bus)
    t = await make_tenant("acme.example")
    base = f"/api/v1/tenants/{t.id}"
    emp = (await api.client.post(f"{base}/employees", headers=t.headers, json={
        "full_name": "Olga", "email": "olga@acme.example", "web_password": "olga-password"})).json()
    r = await api.client.post("/api/v1/auth/login", json={"email": "olga@acme.example", "password": "olga-password"})
    olga = WsClient(app, f"{base}/events", query_token=r.json()["access_token"])
    admin = WsClient(app, f"{base}/events", token=secret(t.headers))
    assert await olga.connect() == "websocket.accept"
    assert await admin.connect() == "websocket.accept"
    await subscribed(bus, 2)

    me = Party(number="101", employee_id=emp["id"])
    x, y = Party(number="102", employee_id=emp["id"] + 100), Party(number="+7495", external=True)
    incoming = call_events(t.id, y, me)  # Olga is the callee: she gets the call from its CallStarted
    outgoing = call_events(t.id, me, x)
    others = call_events(t.id, x, y)
    transferred = call_events(t.id, x, y)[:6]
    transferred.append(ev.CallTransferred(tenant_id=t.id, call_id=transferred[0].call_id, at=5.0,
                                          kind=ev.TransferKind.BLIND, from_leg_id="L2", to=me))
    stream = [*incoming, *outgoing, *others, *transferred]
    for e in stream:
        bus.publish(e)
    bus.publish(CdrWritten(tenant_id=t.id, call_id=others[0].call_id, cdr_id=1, employee_ids=(x.employee_id,)))  # type: ignore[arg-type]
    bus.publish(CdrWritten(tenant_id=t.id, call_id=incoming[0].call_id, cdr_id=2, employee_ids=(emp["id"],)))

    expected = [*incoming, *outgoing, *transferred]
    got = [deserialize(await olga.event()) for _ in range(len(expected) + 1)]
    assert got[:-1] == expected
    assert got[-1] == CdrWritten(tenant_id=t.id, call_id=incoming[0].call_id, cdr_id=2, employee_ids=(emp["id"],))
    await olga.nothing_more()
    assert len([await admin.event() for _ in range(len(stream) + 2)]) == len(stream) + 2
    await olga.disconnect()
    await admin.disconnect()


async def test_slow_client_is_told_about_dropped_events(api: Api, make_tenant: Any, bus: LocalBus) -> None:
    app = mount(api, bus, queue_size=3)
    t = await make_tenant("slow.example")
    client = WsClient(app, f"/api/v1/tenants/{t.id}/events", token=secret(t.headers))
    assert await client.connect() == "websocket.accept"
    await subscribed(bus, 1)
    client.flowing.clear()  # the client stops reading
    events = call_events(t.id, Party(number="1"), Party(number="2")) * 2
    for e in events:
        bus.publish(e)
        await asyncio.sleep(0)
    (sub,) = bus.subscriptions
    assert sub.dropped > 0
    client.flowing.set()
    first = await client.event()
    rest = []
    while True:
        try:
            rest.append(await client.event(timeout=0.2))
        except TimeoutError:
            break
    drop_frames = [f for f in rest if f["type"] == "EventsDropped"]
    assert drop_frames == [{"type": "EventsDropped", "dropped": sub.dropped}]
    assert 1 + len(rest) - 1 + sub.dropped == len(events)  # every event was either sent or counted
    assert first["type"] == "CallStarted"
    await client.disconnect()


async def test_access_is_rechecked_while_connected(api: Api, make_tenant: Any, bus: LocalBus) -> None:
    app = mount(api, bus, reauth_interval=0.05)
    t = await make_tenant("revoke.example")
    r = await api.client.post(f"/api/v1/tenants/{t.id}/tokens", headers=t.headers, json={"name": "wallboard"})
    token = r.json()
    client = WsClient(app, f"/api/v1/tenants/{t.id}/events", token=token["token"])
    assert await client.connect() == "websocket.accept"
    await asyncio.sleep(0.15)  # a few re-checks pass while the token is valid
    await client.nothing_more()
    r = await api.client.delete(f"/api/v1/tenants/{t.id}/tokens/{token['id']}", headers=t.headers)
    assert r.status_code == 204, r.text
    assert await client.close_code() == CLOSE_UNAUTHORIZED
    assert client.task is not None
    await asyncio.wait_for(client.task, 20)
    await subscribed(bus, 0)


def test_visibility_holds_a_bounded_amount() -> None:
    vis = CallVisibility(Principal(role=Role.EMPLOYEE, tenant_id=1, employee_id=5), max_held_calls=2, max_held_events=2)
    calls = [call_events(1, Party(number="1"), Party(number="2")) for _ in range(3)]
    for events in calls:
        for e in events[:4]:
            assert vis.admit(e) == []
    assert len(vis._held) == 2 and all(len(h) == 2 for h in vis._held.values())
    # A call whose end passes without the employee leaves nothing behind.
    assert vis.admit(calls[2][-1]) == [] and len(vis._held) == 1
    nobody = CallVisibility(Principal(role=Role.EMPLOYEE, tenant_id=1, employee_id=None))
    assert nobody.admit(calls[0][0]) == []
    admin = CallVisibility(Principal(role=Role.TENANT_ADMIN, tenant_id=1))
    assert admin.admit(calls[0][0]) == [calls[0][0]]


async def test_revocation_closes_the_socket_at_once(api: Api, make_tenant: Any, bus: LocalBus) -> None:
    """No waiting for the periodic re-check: revoking the token, or deactivating the employee whose
    login the socket uses, closes it straight away."""
    app = mount(api, bus, reauth_interval=3600)
    t = await make_tenant("revoke-now.example")
    base = f"/api/v1/tenants/{t.id}"
    r = await api.client.post(f"{base}/tokens", headers=t.headers, json={"name": "wallboard"})
    token = r.json()
    r = await api.client.post(f"{base}/employees", headers=t.headers, json={
        "full_name": "Ira", "email": "ira@revoke-now.example", "web_password": "ira-password"})
    ira = r.json()
    r = await api.client.post("/api/v1/auth/login", json={"email": "ira@revoke-now.example", "password": "ira-password"})
    login = r.json()["access_token"]

    board = WsClient(app, f"{base}/events", token=token["token"])
    phone = WsClient(app, f"{base}/events", token=login)
    assert await board.connect() == "websocket.accept"
    assert await phone.connect() == "websocket.accept"
    await subscribed(bus, 2)

    r = await api.client.delete(f"{base}/tokens/{token['id']}", headers=t.headers)
    assert r.status_code == 204, r.text
    assert await board.close_code() == CLOSE_UNAUTHORIZED
    await phone.nothing_more()  # the others' sockets stay
    r = await api.client.patch(f"{base}/employees/{ira['id']}", headers=t.headers, json={"active": False})
    assert r.status_code == 200, r.text
    assert await phone.close_code() == CLOSE_UNAUTHORIZED
    for client in (board, phone):
        assert client.task is not None
        await asyncio.wait_for(client.task, 20)
    await subscribed(bus, 0)


async def test_employee_gets_registration_changes_of_own_extensions_only(api: Api, make_tenant: Any,
                                                                         bus: LocalBus) -> None:
    app = mount(api, bus)
    t = await make_tenant("regs.example")
    base = f"/api/v1/tenants/{t.id}"
    olga = (await api.client.post(f"{base}/employees", headers=t.headers, json={
        "full_name": "Olga", "email": "olga@regs.example", "web_password": "olga-password"})).json()
    petr = (await api.client.post(f"{base}/employees", headers=t.headers, json={
        "full_name": "Petr", "email": "petr@regs.example"})).json()
    mine, theirs, nobodys = [
        (await api.client.post(f"{base}/extensions", headers=t.headers, json={
            "number": number, "display_name": number, "employee_id": owner})).json()["id"]
        for number, owner in (("101", olga["id"]), ("102", petr["id"]), ("103", None))]
    r = await api.client.post("/api/v1/auth/login", json={"email": "olga@regs.example", "password": "olga-password"})
    employee = WsClient(app, f"{base}/events", query_token=r.json()["access_token"])
    admin = WsClient(app, f"{base}/events", token=secret(t.headers))
    assert await employee.connect() == "websocket.accept"
    assert await admin.connect() == "websocket.accept"
    await subscribed(bus, 2)

    changes = [ev.RegistrationChanged(tenant_id=t.id, extension_id=ext, devices=1, at=float(i))
               for i, ext in enumerate((theirs, mine, nobodys, theirs))]
    for change in changes:
        bus.publish(change)
    assert deserialize(await employee.event()) == changes[1]
    await employee.nothing_more()
    assert [deserialize(await admin.event()) for _ in changes] == changes  # an admin sees every extension
    await employee.disconnect()
    await admin.disconnect()


def test_visibility_of_registrations_follows_the_extension_set() -> None:
    employee = Principal(role=Role.EMPLOYEE, tenant_id=1, employee_id=7)
    seen = CallVisibility(employee, extensions=frozenset({5}))
    five = ev.RegistrationChanged(tenant_id=1, extension_id=5, devices=0, at=1.0)
    six = ev.RegistrationChanged(tenant_id=1, extension_id=6, devices=2, at=1.0)
    assert seen.admit(five) == [five] and seen.admit(six) == []
    seen.extensions = frozenset({6})  # the extension was given to someone else, another to them
    assert seen.admit(five) == [] and seen.admit(six) == [six]


async def test_park_and_pickup_events_reach_the_websocket(api: Api, make_tenant: Any, bus: LocalBus) -> None:
    app = mount(api, bus)
    a = await make_tenant("park-ws.example")
    client = WsClient(app, f"/api/v1/tenants/{a.id}/events", token=secret(a.headers))
    assert await client.connect() == "websocket.accept"
    await subscribed(bus, 1)
    alice, bob = Party(number="101"), Party(number="102")
    common = {"tenant_id": a.id, "call_id": "park1"}
    sent = [ev.CallParked(**common, at=3.0, leg_id="L1", slot=701, parked_by=bob, timeout=120.0),
            ev.CallUnparked(**common, at=4.0, leg_id="L1", slot=701, reason="retrieved", by=alice),
            ev.CallPickedUp(**common, at=5.0, leg_id="L3", by=alice, from_number="102")]
    for event in sent:
        bus.publish(event)
    frames = [await client.event() for _ in sent]
    assert [(f["type"], f.get("slot")) for f in frames] == [("CallParked", 701), ("CallUnparked", 701),
                                                            ("CallPickedUp", None)]
    assert [deserialize(f) for f in frames] == sent
    await client.disconnect()
