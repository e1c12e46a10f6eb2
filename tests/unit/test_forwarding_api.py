"""GET/PUT /api/v1/tenants/{t}/extensions/{id}/forwarding: validation, roles, tenant isolation, the event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_ws import WsClient, mount, secret, subscribed

from zvonok.bus import LocalBus, deserialize, forward_committed
from zvonok.org.events import ForwardingChanged

Api = Any


@pytest.fixture
async def bus() -> AsyncIterator[LocalBus]:
    b = LocalBus(close_timeout=0.1)
    yield b
    await b.close()


async def _company(api: Api, make_tenant: Any, domain: str) -> dict[str, Any]:
    t = await make_tenant(domain)
    base = f"/api/v1/tenants/{t.id}"
    c = api.client

    async def post(path: str, body: dict[str, Any]) -> int:
        r = await c.post(f"{base}{path}", headers=t.headers, json=body)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    office = await post("/offices", {"name": "HQ", "area_code": "495"})
    olga = await post("/employees", {"full_name": "Olga", "email": f"olga@{domain}", "web_password": "olga-password",
                                     "office_id": office})
    petr = await post("/employees", {"full_name": "Petr", "email": f"petr@{domain}"})
    exts = {n: await post("/extensions", {"number": n, "display_name": n, "employee_id": emp})
            for n, emp in (("101", olga), ("102", petr), ("103", None))}
    r = await c.post("/api/v1/auth/login", json={"email": f"olga@{domain}", "password": "olga-password"})
    assert r.status_code == 200, r.text
    return {"t": t, "base": base, "exts": exts, "olga": {"Authorization": f"Bearer {r.json()['access_token']}"},
            "olga_id": olga}


def _url(co: dict[str, Any], number: str) -> str:
    return f"{co['base']}/extensions/{co['exts'][number]}/forwarding"


async def test_admin_sets_and_reads_forwarding_with_targets_normalized(api: Api, make_tenant: Any) -> None:
    co = await _company(api, make_tenant, "fwd.example")
    c, admin = api.client, co["t"].headers
    r = await c.get(_url(co, "102"), headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"extension_id": co["exts"]["102"], "number": "102", "dnd": False, "unconditional": None,
                        "busy": None, "no_answer": None, "no_answer_seconds": 20, "unavailable": None}
    body = {"dnd": True, "unconditional": "103", "busy": "8 (916) 123-45-67", "no_answer": "+7 495 765-43-21",
            "no_answer_seconds": 15, "unavailable": "103"}
    r = await c.put(_url(co, "102"), headers=admin, json=body)
    assert r.status_code == 200, r.text
    assert r.json() | {"extension_id": 0} == {"extension_id": 0, "number": "102", "dnd": True, "unconditional": "103",
                                              "busy": "+79161234567", "no_answer": "+74957654321",
                                              "no_answer_seconds": 15, "unavailable": "103"}
    assert (await c.get(_url(co, "102"), headers=admin)).json()["busy"] == "+79161234567"
    # a local number is read with the area code of the extension's office (Olga's: 495)
    r = await c.put(_url(co, "101"), headers=admin, json={"unconditional": "1234567"})
    assert r.status_code == 200 and r.json()["unconditional"] == "+74951234567", r.text
    # PUT replaces: what is left out is cleared
    r = await c.put(_url(co, "102"), headers=admin, json={"busy": "101"})
    assert r.json()["unconditional"] is None and r.json()["dnd"] is False and r.json()["busy"] == "101"


@pytest.mark.parametrize(("body", "field"), [
    ({"unconditional": "102"}, "unconditional"),  # itself
    ({"busy": "999"}, "busy"),  # neither an extension nor a number
    ({"no_answer": "112"}, "no_answer"),  # an emergency number
    ({"unavailable": "8 916 12"}, "unavailable"),  # too short
    ({"busy": "fax:101"}, "busy"),  # a kind of destination a forward cannot have
    ({"no_answer": "queue:5"}, "no_answer"),
    ({"unconditional": "sip:evil@example.com"}, "unconditional"),
])
async def test_bad_targets_are_refused_naming_the_field(api: Api, make_tenant: Any, body: dict[str, Any],
                                                        field: str) -> None:
    co = await _company(api, make_tenant, "bad.example")
    r = await api.client.put(_url(co, "102"), headers=co["t"].headers, json=body)
    assert r.status_code == 422, r.text
    assert field in r.text
    r = await api.client.get(_url(co, "102"), headers=co["t"].headers)
    assert r.json()[field] is None  # nothing was changed


async def test_schema_limits(api: Api, make_tenant: Any) -> None:
    co = await _company(api, make_tenant, "lim.example")
    for body in ({"no_answer_seconds": 2}, {"no_answer_seconds": 1000}, {"surprise": 1}, {"busy": "1" * 40}):
        r = await api.client.put(_url(co, "102"), headers=co["t"].headers, json=body)
        assert r.status_code == 422, (body, r.text)


async def test_an_employee_manages_only_their_own_extension(api: Api, make_tenant: Any) -> None:
    co = await _company(api, make_tenant, "emp.example")
    c, olga = api.client, co["olga"]
    r = await c.put(_url(co, "101"), headers=olga, json={"dnd": True})
    assert r.status_code == 200 and r.json()["dnd"] is True, r.text
    assert (await c.get(_url(co, "101"), headers=olga)).json()["dnd"] is True
    for number in ("102", "103"):  # a colleague's, nobody's
        assert (await c.get(_url(co, number), headers=olga)).status_code == 403
        r = await c.put(_url(co, number), headers=olga, json={"unconditional": "101"})
        assert r.status_code == 403, r.text
    r = await c.get(_url(co, "102"), headers=co["t"].headers)
    assert r.json()["unconditional"] is None


async def test_another_tenant_gets_404(api: Api, make_tenant: Any) -> None:
    a = await _company(api, make_tenant, "a.example")
    b = await _company(api, make_tenant, "b.example")
    c = api.client
    b_ext = b["exts"]["102"]
    for headers in (a["t"].headers, a["olga"]):
        # B's extension under B's URL, and under A's own URL
        for url in (_url(b, "102"), f"{a['base']}/extensions/{b_ext}/forwarding"):
            assert (await c.get(url, headers=headers)).status_code == 404, url
            assert (await c.put(url, headers=headers, json={"dnd": True})).status_code == 404, url
    # a target is an extension of the extension's own tenant: B's 103 does not exist for A... but A has a
    # 103 too, so try a number only B has
    r = await c.post(f"{b['base']}/extensions", headers=b["t"].headers, json={"number": "555", "display_name": "x"})
    assert r.status_code == 201
    r = await c.put(_url(a, "102"), headers=a["t"].headers, json={"unconditional": "555"})
    assert r.status_code == 422, r.text
    assert (await c.get(_url(b, "102"), headers=b["t"].headers)).json()["dnd"] is False


async def test_changes_are_streamed_on_the_websocket(api: Api, make_tenant: Any, bus: LocalBus) -> None:
    forward_committed(api.db, bus)
    app = mount(api, bus)
    co = await _company(api, make_tenant, "ws.example")
    admin_ws = WsClient(app, f"{co['base']}/events", token=secret(co["t"].headers))
    olga_ws = WsClient(app, f"{co['base']}/events", token=secret(co["olga"]))
    for ws in (admin_ws, olga_ws):
        assert await ws.connect() == "websocket.accept"
    await subscribed(bus, 2)
    r = await api.client.put(_url(co, "102"), headers=co["t"].headers, json={"unconditional": "103"})
    assert r.status_code == 200
    r = await api.client.put(_url(co, "101"), headers=co["olga"], json={"dnd": True})
    assert r.status_code == 200
    first = deserialize(await admin_ws.event())
    assert isinstance(first, ForwardingChanged)
    assert (first.number, first.unconditional, first.dnd) == ("102", "103", False)
    second = deserialize(await admin_ws.event())
    assert isinstance(second, ForwardingChanged) and second.number == "101" and second.dnd is True
    # Olga sees her own extension's change only, not Petr's
    mine = deserialize(await olga_ws.event())
    assert isinstance(mine, ForwardingChanged) and mine.number == "101" and mine.employee_id == co["olga_id"]
    await olga_ws.nothing_more()
    for ws in (admin_ws, olga_ws):
        await ws.disconnect()


def test_the_forwarding_employee_sees_the_forwarded_call() -> None:
    from zvonok.api.auth import Principal
    from zvonok.api.ws import CallVisibility
    from zvonok.org.models import Role
    from zvonok.telephony import events as ev

    common = {"tenant_id": 1, "call_id": "c1"}
    started = ev.CallStarted(**common, at=1.0, caller=ev.Party(number="101", employee_id=1), callee_number="102",
                             direction=ev.Direction.INTERNAL)
    forwarded = ev.CallForwarded(**common, at=1.1, from_number="102", from_extension_id=2, from_employee_id=5,
                                 to_number="103", reason="unconditional")
    bob = CallVisibility(Principal(role=Role.EMPLOYEE, tenant_id=1, employee_id=5))
    carol = CallVisibility(Principal(role=Role.EMPLOYEE, tenant_id=1, employee_id=6))
    assert bob.admit(started) == [] and carol.admit(started) == []
    assert bob.admit(forwarded) == [started, forwarded]  # the call's earlier events come with it
    assert carol.admit(forwarded) == []
