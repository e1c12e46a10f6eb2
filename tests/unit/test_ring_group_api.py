"""The ring-group REST API: CRUD, validation (422 naming the field), the tenant's internal number space
(groups, extensions and conference rooms never share a number), references that block deletes, tenant
isolation (404), RingGroupChanged after the commit, the engine's port (cache, round-robin memory) and
``ring_group`` as a number's destination."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from test_pstn_support import Company, make_company, ok

from zvonok.config import Settings
from zvonok.ringgroup.events import RingGroupChanged
from zvonok.ringgroup.service import RingGroupDirectory
from zvonok.storage.db import Database
from zvonok.telephony.ring_group import Strategy


@dataclass
class GroupApi:
    client: httpx.AsyncClient
    db: Database
    admin_token: str
    events: list[object]

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


@pytest.fixture
async def api(db: Database, settings: Settings) -> AsyncIterator[GroupApi]:
    from zvonok.api.app import create_app
    from zvonok.conference import http as conference_http
    from zvonok.org import accounts
    from zvonok.pstn import http as pstn_http
    from zvonok.ringgroup import http as ring_group_http

    async with db.session() as session:
        created = await accounts.platform_create_api_token(session, "tests")
        await session.commit()
    app = create_app(settings, db, routers=[ring_group_http.router, conference_http.router, pstn_http.router])
    seen: list[object] = []
    db.add_listener(seen.append)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://zvonok.test") as client:
            yield GroupApi(client, db, created.secret, seen)
    finally:
        db.remove_listener(seen.append)


SALES = {"number": "600", "name": "Sales", "strategy": "hunt", "members": ["102", "+7 (495) 123-45-67", "101"],
         "ring_seconds": 15, "max_seconds": 40, "no_answer": {"kind": "extension", "number": "103"}}


async def test_crud_and_the_engine_port(api: GroupApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "acme.example")
    url = f"{c.base}/ring-groups"
    group = await ok(await api.client.post(url, headers=c.headers, json=SALES), 201)
    assert (group["number"], group["name"], group["strategy"], group["members"], group["ring_seconds"],
            group["max_seconds"], group["no_answer"], group["last_answered"], group["tenant_id"]) == (
        "600", "Sales", "hunt", ["102", "+74951234567", "101"], 15, 40, {"kind": "extension", "number": "103"},
        None, c.id)
    assert any(isinstance(e, RingGroupChanged) and e.group_id == group["id"] for e in api.events)
    one = f"{url}/{group['id']}"
    assert (await ok(await api.client.get(one, headers=c.headers)))["name"] == "Sales"
    page = await ok(await api.client.get(url, headers=c.headers))
    assert (page["total"], page["items"][0]["id"]) == (1, group["id"])

    port = RingGroupDirectory(api.db)
    info = await port.group(c.id, "600")
    assert info is not None and info.strategy is Strategy.HUNT and info.members == ("102", "+74951234567", "101")
    assert (info.ring_seconds, info.max_seconds, info.no_answer) == (15, 40, {"kind": "extension", "number": "103"})
    assert await port.group(c.id, "601") is None
    await port.remember(c.id, group["id"], "101")  # round robin's memory: written through, seen at once
    assert (await port.group(c.id, "600")).last_answered == "101"  # type: ignore[union-attr]
    assert (await ok(await api.client.get(one, headers=c.headers)))["last_answered"] == "101"

    patched = await ok(await api.client.patch(one, headers=c.headers, json={
        "strategy": "round_robin", "members": ["101", "102"], "number": "601", "max_seconds": None,
        "no_answer": None}))
    assert (patched["strategy"], patched["members"], patched["number"], patched["max_seconds"],
            patched["no_answer"], patched["last_answered"]) == ("round_robin", ["101", "102"], "601", None, None, "101")
    port.on_event(api.events[-1])
    assert await port.group(c.id, "600") is None
    assert (await port.group(c.id, "601")).strategy is Strategy.ROUND_ROBIN  # type: ignore[union-attr]
    # a member removed takes the memory with it
    patched = await ok(await api.client.patch(one, headers=c.headers, json={"members": ["102"]}))
    assert patched["last_answered"] is None
    await ok(await api.client.delete(one, headers=c.headers), 204)
    r = await api.client.get(one, headers=c.headers)
    assert r.status_code == 404 and r.json() == {"detail": f"ring group {group['id']} not found"}


ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"number": "6"}, "number"),
    ({"number": "6a0"}, "number"),
    ({"members": []}, "members"),
    ({"members": ["999"]}, "extension 999 does not exist"),
    ({"members": ["101", "101"]}, "listed twice"),
    ({"members": ["101", "+7 495 123-45-67", "+74951234567"]}, "listed twice"),
    ({"members": ["+7 495 12"]}, "members[0]"),
    ({"members": ["84951234567"]}, "members[0]"),  # national form: say which country
    ({"members": ["101", "+74951234567"], "strategy": "simultaneous"}, "simultaneous group rings extensions only"),
    ({"strategy": "random"}, "strategy"),
    ({"ring_seconds": 2}, "ring_seconds"),
    ({"max_seconds": 100_000}, "max_seconds"),
    ({"name": ""}, "name"),
    ({"name": "a\r\nb"}, "name"),
    ({"no_answer": {"kind": "extension", "number": "999"}}, "extension 999 does not exist"),
    ({"no_answer": {"kind": "ring_group", "number": "600"}}, "to itself"),
    ({"no_answer": {"kind": "ring_group", "number": "700"}}, "ring group 700 does not exist"),
    ({"no_answer": {"kind": "schedule", "default": {"kind": "extension", "number": "101"}}}, "no_answer.kind"),
    ({"no_answer": {"kind": "external", "number": "12"}}, "no_answer.number"),
    ({"no_answer": {"number": "101"}}, "no_answer"),
    ({"surprise": 1}, "surprise"),
    ({"number": "101"}, "101 is already extension 101"),
]


@pytest.mark.parametrize(("change", "field"), ERRORS)
async def test_validation_422(api: GroupApi, make_tenant: Any, change: dict[str, Any], field: str) -> None:
    c = await make_company(api, make_tenant, "acme.example")
    body = {"number": "600", "name": "Sales", "members": ["101"], **change}
    r = await api.client.post(f"{c.base}/ring-groups", headers=c.headers, json=body)
    assert r.status_code == 422, r.text
    assert field in str(r.json()["detail"])


async def test_one_internal_number_space(api: GroupApi, make_tenant: Any) -> None:
    """A group's number is no extension's, room's or other group's, and the other way round."""
    c = await make_company(api, make_tenant, "acme.example")
    url = f"{c.base}/ring-groups"
    await ok(await api.client.post(f"{c.base}/conferences", headers=c.headers, json={"number": "800"}), 201)
    r = await api.client.post(url, headers=c.headers, json={"number": "800", "name": "X", "members": ["101"]})
    assert r.status_code == 422 and "conference room 800" in r.text
    first = await ok(await api.client.post(url, headers=c.headers, json={"number": "600", "name": "A",
                                                                          "members": ["101"]}), 201)
    r = await api.client.post(url, headers=c.headers, json={"number": "600", "name": "B", "members": ["102"]})
    assert r.status_code == 422 and "ring group" in r.text
    second = await ok(await api.client.post(url, headers=c.headers, json={"number": "601", "name": "B",
                                                                           "members": ["102"]}), 201)
    r = await api.client.patch(f"{url}/{second['id']}", headers=c.headers, json={"number": "600"})
    assert r.status_code == 422 and "600" in r.text
    # and neither an extension nor a room may take a group's number
    r = await api.client.post(f"{c.base}/extensions", headers=c.headers, json={"number": "600", "display_name": "X"})
    assert r.status_code == 409 and "ring group 600" in r.text
    r = await api.client.post(f"{c.base}/conferences", headers=c.headers, json={"number": "601"})
    assert r.status_code == 422 and "ring group 601" in r.text
    # another tenant has its own number space
    other = await make_company(api, make_tenant, "other.example")
    await ok(await api.client.post(f"{other.base}/ring-groups", headers=other.headers,
                                   json={"number": "600", "name": "Theirs", "members": ["101"]}), 201)
    assert first["number"] == "600"


async def test_references_block_deletes(api: GroupApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "acme.example")
    url = f"{c.base}/ring-groups"
    sales = await ok(await api.client.post(url, headers=c.headers, json={
        "number": "600", "name": "Sales", "members": ["101"]}), 201)
    desk = await ok(await api.client.post(url, headers=c.headers, json={
        "number": "601", "name": "Desk", "members": ["102"], "no_answer": {"kind": "ring_group", "number": "600"}}),
        201)
    # a member extension and a no-answer extension cannot be deleted
    r = await api.client.delete(f"{c.base}/extensions/{c.ext_alice}", headers=c.headers)
    assert r.status_code == 409 and "ring group 600" in r.text
    # a group another group's calls go to cannot be deleted, nor renumbered
    r = await api.client.delete(f"{url}/{sales['id']}", headers=c.headers)
    assert r.status_code == 409 and "ring group 601" in r.text
    r = await api.client.patch(f"{url}/{sales['id']}", headers=c.headers, json={"number": "602"})
    assert r.status_code == 422 and "destination" in r.text
    await ok(await api.client.delete(f"{url}/{desk['id']}", headers=c.headers), 204)
    await ok(await api.client.delete(f"{url}/{sales['id']}", headers=c.headers), 204)
    await ok(await api.client.delete(f"{c.base}/extensions/{c.ext_alice}", headers=c.headers), 204)


async def test_a_number_routed_to_a_group(api: GroupApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "acme.example")
    number = await ok(await api.client.post("/api/v1/platform/numbers", headers=api.admin,
                                            json={"number": "+74951112233"}), 201)
    await ok(await api.client.post(f"/api/v1/platform/numbers/{number['id']}/assign", headers=api.admin,
                                   json={"tenant_id": c.id}))
    did = f"{c.base}/numbers/{number['id']}"
    r = await api.client.patch(did, headers=c.headers, json={"destination_kind": "ring_group",
                                                             "destination": {"number": "600"}})
    assert r.status_code == 422 and "ring group 600 does not exist" in r.text
    group = await ok(await api.client.post(f"{c.base}/ring-groups", headers=c.headers, json={
        "number": "600", "name": "Sales", "members": ["101"]}), 201)
    routed = await ok(await api.client.patch(did, headers=c.headers, json={"destination_kind": "ring_group",
                                                                           "destination": {"number": "600"}}))
    assert (routed["destination_kind"], routed["destination"]) == ("ring_group", {"number": "600"})
    schedule = {"default": {"kind": "ring_group", "number": "600"},
                "rules": [{"days": [0], "from": "09:00", "to": "18:00",
                           "destination": {"kind": "ring_group", "number": "6x"}}]}
    r = await api.client.patch(did, headers=c.headers, json={"destination_kind": "schedule", "destination": schedule})
    assert r.status_code == 422 and "destination.rules[0].destination.number" in r.text
    schedule["rules"][0]["destination"]["number"] = "600"  # type: ignore[index]
    await ok(await api.client.patch(did, headers=c.headers, json={"destination_kind": "schedule",
                                                                  "destination": schedule}))
    r = await api.client.delete(f"{c.base}/ring-groups/{group['id']}", headers=c.headers)
    assert r.status_code == 409 and "DID +74951112233" in r.text
    r = await api.client.patch(did, headers=c.headers, json={"destination_kind": "hunt_group",
                                                             "destination": {"number": "600"}})
    assert r.status_code == 422


async def test_other_tenants_groups_are_404(api: GroupApi, make_tenant: Any) -> None:
    a = await make_company(api, make_tenant, "a.example")
    b: Company = await make_company(api, make_tenant, "b.example")
    theirs = await ok(await api.client.post(f"{b.base}/ring-groups", headers=b.headers, json={
        "number": "600", "name": "B", "members": ["101"]}), 201)
    for method in ("GET", "PATCH", "DELETE"):
        r = await api.client.request(method, f"{a.base}/ring-groups/{theirs['id']}", headers=a.headers,
                                     json={"name": "Mine"} if method == "PATCH" else None)
        assert r.status_code == 404, (method, r.text)
        r = await api.client.request(method, f"{b.base}/ring-groups/{theirs['id']}", headers=a.headers,
                                     json={"name": "Mine"} if method == "PATCH" else None)
        assert r.status_code in (403, 404), (method, r.text)
    assert (await ok(await api.client.get(f"{b.base}/ring-groups/{theirs['id']}", headers=b.headers)))["name"] == "B"
    # an employee does not manage groups
    r = await api.client.get(f"{a.base}/ring-groups", headers=a.alice_headers)
    assert r.status_code == 403


async def test_no_answer_naming_another_tenants_things_is_422(api: GroupApi, make_tenant: Any) -> None:
    """A no-answer destination is a typed destination checked in the group's tenant only: another
    tenant's group, room or extension is answered as one that does not exist."""
    a = await make_company(api, make_tenant, "a.example")
    b: Company = await make_company(api, make_tenant, "b.example")
    await ok(await api.client.post(f"{b.base}/ring-groups", headers=b.headers, json={
        "number": "700", "name": "B", "members": ["101"]}), 201)
    await ok(await api.client.post(f"{b.base}/extensions", headers=b.headers,
                                   json={"number": "105", "display_name": "B"}), 201)
    for no_answer, message in [
        ({"kind": "ring_group", "number": "700"}, "no_answer.number: ring group 700 does not exist"),
        ({"kind": "extension", "number": "105"}, "no_answer.number: extension 105 does not exist"),
        ({"kind": "voicemail", "number": "105"}, "no_answer.number: extension 105 does not exist"),
        ({"kind": "queue", "number": "500"}, "no_answer.number: queue 500 does not exist"),
        ({"kind": "hangup"}, "no_answer.kind: 'hangup' is not available here"),
        ({"kind": "teleport"}, "no_answer.kind: unknown destination kind 'teleport'"),
    ]:
        r = await api.client.post(f"{a.base}/ring-groups", headers=a.headers,
                                  json={"number": "600", "name": "A", "members": ["101"], "no_answer": no_answer})
        assert r.status_code == 422, (no_answer, r.text)
        detail = r.json()["detail"][0]
        assert detail["loc"] == ["body", "no_answer"] and detail["msg"].startswith(message), (no_answer, detail)
    group = await ok(await api.client.post(f"{a.base}/ring-groups", headers=a.headers, json={
        "number": "600", "name": "A", "members": ["101"], "no_answer": {"kind": "external", "number": "+7 495 123-45-67"}}),
        201)
    assert group["no_answer"] == {"kind": "external", "number": "+74951234567"}
