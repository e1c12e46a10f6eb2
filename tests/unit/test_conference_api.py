"""The conference REST API: CRUD of rooms (PINs write-only), validation (422), tenant isolation (404),
roles (an employee gets 403), ConferenceChanged after commit, and the live members routes (mute, unmute,
kick) against the engine's view."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from test_pstn_support import Company, make_company, ok

from zvonok.conference.events import ConferenceChanged
from zvonok.conference.service import RoomDirectory
from zvonok.config import Settings
from zvonok.storage.db import Database


@dataclass
class LiveMember:
    call: Any
    number: str
    display_name: str = ""
    moderator: bool = False
    muted: bool = False
    waiting: bool = False
    joined_at: float = 1.0


@dataclass
class Call:
    id: str


@dataclass
class FakeLive:
    """The engine's :class:`~zvonok.telephony.conference.Conferences`, as the routes use it."""

    rooms: dict[tuple[int, int], dict[str, LiveMember]] = field(default_factory=dict)
    actions: list[tuple[int, int, str, str]] = field(default_factory=list)

    def members(self, tenant_id: int, room_id: int) -> list[LiveMember]:
        return list(self.rooms.get((tenant_id, room_id), {}).values())

    async def act(self, tenant_id: int, room_id: int, call_id: str, action: str) -> bool:
        member = self.rooms.get((tenant_id, room_id), {}).get(call_id)
        if member is None:
            return False
        self.actions.append((tenant_id, room_id, call_id, action))
        member.muted = action == "mute" if action != "kick" else member.muted
        return True


@dataclass
class ConfApi:
    client: httpx.AsyncClient
    db: Database
    admin_token: str
    live: FakeLive
    events: list[object]

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


@pytest.fixture
async def api(db: Database, settings: Settings) -> AsyncIterator[ConfApi]:
    from zvonok.api.app import create_app
    from zvonok.conference import http as conference_http
    from zvonok.org import accounts

    async with db.session() as session:
        created = await accounts.platform_create_api_token(session, "tests")
        await session.commit()
    app = create_app(settings, db, routers=[conference_http.router])
    live = FakeLive()
    app.state.conferences = live
    seen: list[object] = []
    db.add_listener(seen.append)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://zvonok.test") as client:
            yield ConfApi(client, db, created.secret, live, seen)
    finally:
        db.remove_listener(seen.append)


async def company(api: ConfApi, make_tenant: Any, domain: str) -> Company:
    return await make_company(api, make_tenant, domain)


async def test_room_crud_pins_write_only_and_events(api: ConfApi, make_tenant: Any) -> None:
    c = await company(api, make_tenant, "acme.example")
    url = f"{c.base}/conferences"
    r = await api.client.post(url, headers=c.headers, json={"number": "800", "name": "Daily", "pin": "4711",
                                                           "moderator_pin": "9020", "wait_for_moderator": True})
    room = await ok(r, 201)
    assert "4711" not in r.text and "9020" not in r.text and "pin_hash" not in r.text
    assert (room["number"], room["name"], room["has_pin"], room["has_moderator_pin"], room["wait_for_moderator"],
            room["max_members"], room["tenant_id"]) == ("800", "Daily", True, True, True, 50, c.id)
    assert any(isinstance(e, ConferenceChanged) and e.room_id == room["id"] for e in api.events)
    one = f"{url}/{room['id']}"
    assert (await ok(await api.client.get(one, headers=c.headers)))["number"] == "800"
    page = await ok(await api.client.get(url, headers=c.headers))
    assert (page["total"], page["items"][0]["id"]) == (1, room["id"])
    # the engine's port sees it, and forgets it after a change
    rooms = RoomDirectory(api.db)
    info = await rooms.room(c.id, "800")
    assert info is not None and info.pin_hash is not None and info.pin_hash != "4711" and info.max_members == 50
    patched = await ok(await api.client.patch(one, headers=c.headers, json={"pin": None, "max_members": 3,
                                                                            "number": "801"}))
    assert (patched["has_pin"], patched["max_members"], patched["number"]) == (False, 3, "801")
    rooms.on_event(api.events[-1])
    assert await rooms.room(c.id, "800") is None and (await rooms.room(c.id, "801")) is not None
    await ok(await api.client.delete(one, headers=c.headers), 204)
    r = await api.client.get(one, headers=c.headers)
    assert r.status_code == 404 and r.json() == {"detail": f"conference {room['id']} not found"}


ROOM_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"number": "1"}, "number"),
    ({"number": "80a"}, "number"),
    ({"number": "800", "pin": "12"}, "pin"),
    ({"number": "800", "pin": "12345678901"}, "pin"),
    ({"number": "800", "moderator_pin": "abcd"}, "moderator_pin"),
    ({"number": "800", "max_members": 1}, "max_members"),
    ({"number": "800", "max_members": 10_000}, "max_members"),
    ({"number": "800", "name": "a\r\nb"}, "name"),
    ({"number": "800", "surprise": 1}, "surprise"),
]


@pytest.mark.parametrize(("body", "field"), ROOM_ERRORS)
async def test_room_validation_422(api: ConfApi, make_tenant: Any, body: dict[str, Any], field: str) -> None:
    c = await company(api, make_tenant, "acme.example")
    r = await api.client.post(f"{c.base}/conferences", headers=c.headers, json=body)
    assert r.status_code == 422, r.text
    assert field in str(r.json()["detail"])


async def test_room_rules_422_and_409(api: ConfApi, make_tenant: Any) -> None:
    c = await company(api, make_tenant, "acme.example")
    url = f"{c.base}/conferences"
    r = await api.client.post(url, headers=c.headers, json={"number": "101"})  # alice's extension
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "number"]
    r = await api.client.post(url, headers=c.headers, json={"number": "800", "wait_for_moderator": True})
    assert r.status_code == 422 and "moderator_pin" in r.text
    r = await api.client.post(url, headers=c.headers, json={"number": "800", "pin": "4711", "moderator_pin": "4711"})
    assert r.status_code == 422 and "differ" in r.text
    room = await ok(await api.client.post(url, headers=c.headers, json={"number": "800"}), 201)
    r = await api.client.post(url, headers=c.headers, json={"number": "800"})
    assert r.status_code == 409
    r = await api.client.patch(f"{url}/{room['id']}", headers=c.headers, json={"wait_for_moderator": True})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "wait_for_moderator"]
    r = await api.client.patch(f"{url}/{room['id']}", headers=c.headers, json={"max_members": None})
    assert r.status_code == 422


async def test_tenant_isolation_and_roles(api: ConfApi, make_tenant: Any) -> None:
    acme = await company(api, make_tenant, "acme.example")
    other = await company(api, make_tenant, "other.example")
    room = await ok(await api.client.post(f"{acme.base}/conferences", headers=acme.headers,
                                          json={"number": "800"}), 201)
    api.live.rooms[(acme.id, room["id"])] = {"c1": LiveMember(call=Call("c1"), number="101")}
    # the other tenant's admin, on its own URL with acme's room id: 404 like a missing room
    for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/members"),
                           ("POST", "/members/c1/mute"), ("POST", "/members/c1/kick")):
        r = await api.client.request(method, f"{other.base}/conferences/{room['id']}{suffix}", headers=other.headers,
                                     json={} if method == "PATCH" else None)
        assert r.status_code == 404, (method, suffix, r.text)
        # and on acme's URL: no access to that tenant at all
        r = await api.client.request(method, f"{acme.base}/conferences/{room['id']}{suffix}", headers=other.headers,
                                     json={} if method == "PATCH" else None)
        assert r.status_code in (403, 404), (method, suffix, r.status_code)
    assert (await api.client.get(f"{acme.base}/conferences", headers=acme.alice_headers)).status_code == 403
    r = await api.client.post(f"{acme.base}/conferences/{room['id']}/members/c1/mute", headers=acme.alice_headers)
    assert r.status_code == 403
    assert api.live.actions == []
    page = await ok(await api.client.get(f"{other.base}/conferences", headers=other.headers))
    assert page["total"] == 0


async def test_live_members_mute_unmute_kick(api: ConfApi, make_tenant: Any) -> None:
    c = await company(api, make_tenant, "acme.example")
    room = await ok(await api.client.post(f"{c.base}/conferences", headers=c.headers, json={"number": "800"}), 201)
    base = f"{c.base}/conferences/{room['id']}"
    assert await ok(await api.client.get(f"{base}/members", headers=c.headers)) == []
    api.live.rooms[(c.id, room["id"])] = {"c1": LiveMember(call=Call("c1"), number="101", display_name="Alice",
                                                           moderator=True)}
    members = await ok(await api.client.get(f"{base}/members", headers=c.headers))
    assert members == [{"call_id": "c1", "number": "101", "display_name": "Alice", "moderator": True,
                        "muted": False, "waiting": False, "joined_at": 1.0}]
    await ok(await api.client.post(f"{base}/members/c1/mute", headers=c.headers), 204)
    assert (await ok(await api.client.get(f"{base}/members", headers=c.headers)))[0]["muted"] is True
    await ok(await api.client.post(f"{base}/members/c1/unmute", headers=c.headers), 204)
    await ok(await api.client.post(f"{base}/members/c1/kick", headers=c.headers), 204)
    assert [a[3] for a in api.live.actions] == ["mute", "unmute", "kick"]
    r = await api.client.post(f"{base}/members/nobody/mute", headers=c.headers)
    assert r.status_code == 404
    r = await api.client.post(f"{base}/members/c1/deafen", headers=c.headers)
    assert r.status_code in (404, 405)


async def test_members_without_an_engine_503(db: Database, settings: Settings, api: ConfApi, make_tenant: Any) -> None:
    c = await company(api, make_tenant, "acme.example")
    room = await ok(await api.client.post(f"{c.base}/conferences", headers=c.headers, json={"number": "800"}), 201)
    from zvonok.api.app import create_app
    from zvonok.conference import http as conference_http
    app = create_app(settings, db, routers=[conference_http.router])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://zvonok.test") as client:
        r = await client.get(f"{c.base}/conferences/{room['id']}/members", headers=c.headers)
    assert r.status_code == 503
