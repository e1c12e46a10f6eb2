"""Outgoing webhooks: REST (CRUD, validation naming the field, another tenant's 404, the secret shown once),
URLs into the platform's network refused unless allowed, and delivery to a real HTTP server on loopback:
a tenant's event reaches its webhook only, signed (the test checks the HMAC), filtered by event type,
retried after a 500, and a webhook that keeps failing switched off."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zvonok.bus import LocalBus, Subscription, forward_committed
from zvonok.mail.events import MailQueued
from zvonok.ringgroup.events import RingGroupChanged
from zvonok.storage.db import Database
from zvonok.webhooks.delivery import Dispatcher, Sender, UnsafeUrl, check_resolved, check_url


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A tiny HTTP server on 127.0.0.1: answers each POST with the next scripted status (then ``default``)."""

    statuses: list[int] = field(default_factory=list)
    default: int = 200
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            _method, path, _version = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name:
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Request(path, headers, body))
            status = self.statuses.pop(0) if self.statuses else self.default
            writer.write(
                f"HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    server = await asyncio.start_server(rec.handle, "127.0.0.1", 0)
    rec.port = server.sockets[0].getsockname()[1]
    try:
        yield rec
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def private_ok(api: Any) -> None:
    api.settings.webhooks_allow_private = True  # the receiver is on loopback


@dataclass
class Wiring:
    bus: LocalBus
    sub: Subscription
    sender: Sender

    async def settle(self) -> None:
        await self.sub.drain()


@pytest.fixture
async def wiring(db: Database) -> AsyncIterator[Wiring]:
    bus = LocalBus()
    sender = Sender(db, allow_private=True, backoff=(10.0, 60.0), disable_after=3)
    dispatcher = Dispatcher(db, on_queued=sender.wake)
    sub = bus.subscribe(dispatcher, where=dispatcher.wants, name="webhooks")
    listener = forward_committed(db, bus)  # WebhookChanged: the dispatcher forgets a tenant's webhooks
    try:
        yield Wiring(bus, sub, sender)
    finally:
        db.remove_listener(listener)
        await bus.close()
        await sender.aclose()


async def _hook(api: Any, tenant: Any, url: str, **extra: Any) -> dict[str, Any]:
    r = await api.client.post(
        f"/api/v1/tenants/{tenant.id}/webhooks", headers=tenant.headers, json={"url": url, **extra}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _verify(secret: str, req: Request) -> None:
    timestamp = req.headers["x-zvonok-timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["x-zvonok-signature"], f"sha256={expected}")


async def test_crud_validation_and_isolation(api: Any, make_tenant: Any, private_ok: None) -> None:
    a = await make_tenant("a.example")
    b = await make_tenant("b.example")
    base = f"/api/v1/tenants/{a.id}/webhooks"
    hook = await _hook(api, a, "https://hooks.example.com/zvonok", event_types=["CallStarted", "CdrWritten"])
    assert len(hook["secret"]) == 64 and hook["status"] == "active" and hook["enabled"] is True
    assert (hook["tenant_id"], hook["event_types"], hook["failures"]) == (
        a.id,
        ["CallStarted", "CdrWritten"],
        0,
    )
    one = f"{base}/{hook['id']}"
    r = await api.client.get(one, headers=a.headers)
    assert r.status_code == 200 and "secret" not in r.json()
    r = await api.client.get(base, headers=a.headers)
    assert r.json()["total"] == 1 and "secret" not in r.json()["items"][0]

    for body, field_ in (
        ({"url": "ftp://hooks.example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"event_types": ["NoSuchEvent"]}, "event_types"),
        ({"event_types": ["WebhookChanged"]}, "event_types"),
        ({"url": None}, "url"),
    ):
        r = await api.client.patch(one, headers=a.headers, json=body)
        assert r.status_code == 422, (body, r.text)
        assert field_ in r.text, r.text
    r = await api.client.post(base, headers=a.headers, json={"url": "https://x.example", "secret": "mine"})
    assert r.status_code == 422  # the secret is ours to make

    r = await api.client.patch(one, headers=a.headers, json={"event_types": [], "enabled": False})
    assert (r.json()["event_types"], r.json()["status"]) == ([], "disabled")
    r = await api.client.post(f"{one}/ping", headers=a.headers)
    assert r.status_code == 422 and "disabled" in r.text

    # another tenant's webhook is as missing as a missing one
    other = f"/api/v1/tenants/{b.id}/webhooks/{hook['id']}"
    for method, path in (
        ("GET", other),
        ("PATCH", other),
        ("DELETE", other),
        ("GET", f"{other}/deliveries"),
        ("POST", f"{other}/ping"),
        ("GET", f"{base}/{hook['id'] + 1000}"),
    ):
        r = await api.client.request(method, path, headers=b.headers, json={} if method == "PATCH" else None)
        assert r.status_code == 404, (method, path, r.text)
    r = await api.client.get(one, headers=b.headers)  # B's token on A's tenant
    assert r.status_code == 404
    r = await api.client.delete(one, headers=a.headers)
    assert r.status_code == 204
    assert (await api.client.get(one, headers=a.headers)).status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[fe80::1]/",
        "http://localhost:9000/",
        "http://api.localhost/",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
        "http://100.64.0.1/",
    ],
)
async def test_private_addresses_refused_unless_allowed(api: Any, make_tenant: Any, url: str) -> None:
    a = await make_tenant("a.example")
    r = await api.client.post(f"/api/v1/tenants/{a.id}/webhooks", headers=a.headers, json={"url": url})
    assert r.status_code == 422, r.text
    assert "url" in r.text and "address" in r.text or "this machine" in r.text, r.text
    assert check_url(url, allow_private=True) == url  # the platform may allow it (tests, a private network)


async def test_resolved_name_into_the_network_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A public-looking name is accepted at registration, but each try resolves it: an inside address
    is refused then (the name's owner may point it anywhere later)."""
    assert check_url("https://hooks.example.com/x", allow_private=False)
    with pytest.raises(UnsafeUrl, match="this machine"):
        check_url("http://localhost.:8080/x", allow_private=False)
    answers = {"hooks.example.com": "10.0.0.5", "public.example.com": "93.184.216.34"}

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        return [(2, 1, 6, "", (answers[host], port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    with pytest.raises(UnsafeUrl, match="resolves to 10.0.0.5"):
        await check_resolved("https://hooks.example.com/x", allow_private=False)
    await check_resolved("https://public.example.com/x", allow_private=False)
    await check_resolved("https://hooks.example.com/x", allow_private=True)


async def test_event_reaches_its_tenants_webhook_signed(
    api: Any, make_tenant: Any, private_ok: None, receiver: Receiver, wiring: Wiring
) -> None:
    a = await make_tenant("a.example")
    b = await make_tenant("b.example")
    hook_a = await _hook(api, a, receiver.url("/a"))
    await _hook(api, b, receiver.url("/b"))

    wiring.bus.publish(RingGroupChanged(tenant_id=a.id, group_id=7))
    await wiring.settle()
    assert await wiring.sender.run_once() == 1
    assert [r.path for r in receiver.requests] == ["/a"]
    req = receiver.requests[0]
    _verify(hook_a["secret"], req)
    with pytest.raises(AssertionError):
        _verify(hook_a["secret"] + "0", req)
    body = json.loads(req.body)
    assert (body["type"], body["tenant_id"], body["data"]) == (
        "RingGroupChanged",
        a.id,
        {"type": "RingGroupChanged", "tenant_id": a.id, "group_id": 7, "version": 1},
    )
    assert datetime.fromisoformat(body["at"]).tzinfo is not None and len(body["id"]) == 36
    assert (req.headers["x-zvonok-event"], req.headers["content-type"]) == (
        "RingGroupChanged",
        "application/json",
    )

    r = await api.client.get(f"/api/v1/tenants/{a.id}/webhooks/{hook_a['id']}/deliveries", headers=a.headers)
    [delivery] = r.json()
    assert req.headers["x-zvonok-delivery"] == str(delivery["id"])
    assert (delivery["state"], delivery["attempts"], delivery["last_status"], delivery["event_id"]) == (
        "delivered",
        1,
        200,
        body["id"],
    )
    assert await wiring.sender.run_once() == 0  # nothing left


async def test_event_type_filter(
    api: Any, make_tenant: Any, private_ok: None, receiver: Receiver, wiring: Wiring
) -> None:
    a = await make_tenant("a.example")
    await _hook(api, a, receiver.url("/mail"), event_types=["MailQueued"])
    await _hook(api, a, receiver.url("/all"))
    wiring.bus.publish(RingGroupChanged(tenant_id=a.id, group_id=1))
    wiring.bus.publish(MailQueued(tenant_id=a.id, kind="fax"))
    await wiring.settle()
    await wiring.sender.run_once()
    got = sorted((r.path, json.loads(r.body)["type"]) for r in receiver.requests)
    assert got == [("/all", "MailQueued"), ("/all", "RingGroupChanged"), ("/mail", "MailQueued")]


async def test_failed_try_retried_after_the_backoff(
    api: Any, make_tenant: Any, private_ok: None, receiver: Receiver, wiring: Wiring
) -> None:
    a = await make_tenant("a.example")
    hook = await _hook(api, a, receiver.url("/flaky"))
    receiver.statuses = [500, 200]
    wiring.bus.publish(RingGroupChanged(tenant_id=a.id, group_id=1))
    await wiring.settle()
    t0 = datetime.now(UTC)
    assert await wiring.sender.run_once(t0) == 1
    deliveries = f"/api/v1/tenants/{a.id}/webhooks/{hook['id']}/deliveries"
    [d] = (await api.client.get(deliveries, headers=a.headers)).json()
    assert (d["state"], d["attempts"], d["last_status"], d["last_error"]) == ("pending", 1, 500, "HTTP 500")
    assert datetime.fromisoformat(d["next_at"]) == t0 + timedelta(seconds=10)
    assert await wiring.sender.run_once(t0 + timedelta(seconds=5)) == 0  # not yet
    assert await wiring.sender.run_once(t0 + timedelta(seconds=11)) == 1
    [d] = (await api.client.get(deliveries, headers=a.headers)).json()
    assert (d["state"], d["attempts"], d["last_status"]) == ("delivered", 2, 200)
    first, second = receiver.requests
    assert (
        first.body == second.body
        and first.headers["x-zvonok-delivery"] == second.headers["x-zvonok-delivery"]
    )
    _verify(hook["secret"], second)
    r = await api.client.get(f"/api/v1/tenants/{a.id}/webhooks/{hook['id']}", headers=a.headers)
    assert r.json()["failures"] == 0  # a success clears the count


async def test_backoff_used_up_fails_the_delivery(
    api: Any, make_tenant: Any, private_ok: None, receiver: Receiver, db: Database
) -> None:
    a = await make_tenant("a.example")
    hook = await _hook(api, a, receiver.url("/down"))
    receiver.default = 503
    sender = Sender(db, allow_private=True, backoff=(1.0,), disable_after=100)
    try:
        r = await api.client.post(f"/api/v1/tenants/{a.id}/webhooks/{hook['id']}/ping", headers=a.headers)
        assert r.status_code == 202 and r.json()["event_type"] == "WebhookPing"
        t0 = datetime.now(UTC)
        await sender.run_once(t0)
        await sender.run_once(t0 + timedelta(seconds=2))
        assert await sender.run_once(t0 + timedelta(days=1)) == 0
    finally:
        await sender.aclose()
    [d] = (
        await api.client.get(f"/api/v1/tenants/{a.id}/webhooks/{hook['id']}/deliveries", headers=a.headers)
    ).json()
    assert (d["state"], d["attempts"], d["last_status"], d["next_at"]) == ("failed", 2, 503, None)
    assert len(receiver.requests) == 2


async def test_webhook_failing_in_a_row_is_switched_off(
    api: Any, make_tenant: Any, private_ok: None, receiver: Receiver, wiring: Wiring
) -> None:
    a = await make_tenant("a.example")
    hook = await _hook(api, a, receiver.url("/broken"))
    one = f"/api/v1/tenants/{a.id}/webhooks/{hook['id']}"
    receiver.default = 500
    for group in (1, 2, 3):
        wiring.bus.publish(RingGroupChanged(tenant_id=a.id, group_id=group))
    await wiring.settle()
    t0 = datetime.now(UTC)
    assert await wiring.sender.run_once(t0) == 3  # three failures in a row (disable_after=3)
    got = (await api.client.get(one, headers=a.headers)).json()
    assert (got["enabled"], got["status"], got["failures"]) == (False, "failing", 3)
    assert "3 failed deliveries in a row" in got["disabled_reason"]
    states = {d["state"] for d in (await api.client.get(f"{one}/deliveries", headers=a.headers)).json()}
    assert states == {"failed"}  # the retries are dropped with it

    await wiring.settle()  # WebhookChanged reached the dispatcher: no more queuing for it
    wiring.bus.publish(RingGroupChanged(tenant_id=a.id, group_id=4))
    await wiring.settle()
    assert await wiring.sender.run_once(t0 + timedelta(hours=5)) == 0
    assert len(receiver.requests) == 3

    r = await api.client.patch(one, headers=a.headers, json={"enabled": True})  # the admin fixed it
    assert (r.json()["status"], r.json()["failures"], r.json()["disabled_reason"]) == ("active", 0, None)
    receiver.default = 204
    r = await api.client.post(f"{one}/ping", headers=a.headers)
    assert r.status_code == 202
    assert await wiring.sender.run_once(t0 + timedelta(hours=5)) == 1
    assert json.loads(receiver.requests[-1].body)["type"] == "WebhookPing"
    _verify(hook["secret"], receiver.requests[-1])


async def test_no_answer_is_a_failed_try(api: Any, make_tenant: Any, private_ok: None, db: Database) -> None:
    """A server that accepts and never answers: the try ends at the timeout and is retried later."""
    a = await make_tenant("a.example")
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hook = await _hook(api, a, f"http://127.0.0.1:{port}/slow")
    sender = Sender(db, allow_private=True, timeout=0.3, backoff=(10.0,))
    try:
        r = await api.client.post(f"/api/v1/tenants/{a.id}/webhooks/{hook['id']}/ping", headers=a.headers)
        assert r.status_code == 202
        assert await sender.run_once() == 1
    finally:
        await sender.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    url = f"/api/v1/tenants/{a.id}/webhooks/{hook['id']}/deliveries"
    [d] = (await api.client.get(url, headers=a.headers)).json()
    assert (d["state"], d["attempts"], d["last_status"], d["last_error"]) == (
        "pending",
        1,
        None,
        "no answer within 0.3 s",
    )


async def test_done_deliveries_pruned_after_a_week(
    api: Any, make_tenant: Any, private_ok: None, receiver: Receiver, db: Database
) -> None:
    a = await make_tenant("a.example")
    hook = await _hook(api, a, receiver.url("/x"))
    url = f"/api/v1/tenants/{a.id}/webhooks/{hook['id']}"
    sender = Sender(db, allow_private=True)
    try:
        for _ in range(2):
            assert (await api.client.post(f"{url}/ping", headers=a.headers)).status_code == 202
        receiver.statuses = [200, 500]  # one delivered, one pending a retry
        assert await sender.run_once() == 2
        now = datetime.now(UTC)
        assert await sender.prune(now + timedelta(days=6)) == 0
        assert await sender.prune(now + timedelta(days=8)) == 1
    finally:
        await sender.aclose()
    [left] = (await api.client.get(f"{url}/deliveries", headers=a.headers)).json()
    assert left["state"] == "pending"  # a delivery still being tried is never pruned


async def test_a_company_has_a_bounded_number_of_webhooks(api: Any, make_tenant: Any, private_ok: None) -> None:
    # every webhook turns each of the company's events into a delivery row and a request: a hostile admin
    # with thousands of them would fill the database and the outgoing connections for everyone
    from zvonok.org import quotas

    a = await make_tenant("hooks-quota-a.example")
    b = await make_tenant("hooks-quota-b.example")
    quotas.configure({"webhooks": 1})
    try:
        await _hook(api, a, "http://127.0.0.1:9/one")
        r = await api.client.post(f"/api/v1/tenants/{a.id}/webhooks", headers=a.headers,
                                  json={"url": "http://127.0.0.1:9/two"})
        assert r.status_code == 409 and "webhooks" in r.text
        await _hook(api, b, "http://127.0.0.1:9/one")  # per company
    finally:
        quotas.configure(None)
