"""Routing by owner: the CRM's answer to "whose phone rings first" (the client of the caller's number, its
owner's extension, the tenant's ring time; off by default) and the one-step group the engine runs."""

from __future__ import annotations

import uuid
from typing import Any

from zvonok.crm.owner_routing import ClientOwnerDirectory
from zvonok.telephony.owner_first import OwnerRoute, applies, owner_group

Api = Any


async def test_owner_route_from_the_crm(api: Api, make_tenant: Any) -> None:
    t = await make_tenant(f"owner-{uuid.uuid4().hex[:6]}.example")
    base = f"/api/v1/tenants/{t.id}"
    h = t.headers
    olga = (await api.client.post(f"{base}/employees", headers=h, json={"full_name": "Olga"})).json()["id"]
    lazy = (await api.client.post(f"{base}/employees", headers=h, json={"full_name": "No phone"})).json()[
        "id"
    ]
    r = await api.client.post(
        f"{base}/extensions", headers=h, json={"number": "301", "employee_id": olga, "display_name": "Olga"}
    )
    assert r.status_code == 201, r.text
    for name, owner, phone in (
        ("Client", olga, "+79165550101"),
        ("Orphan", None, "+79165550102"),
        ("Unreachable", lazy, "+79165550103"),
    ):
        r = await api.client.post(
            f"{base}/crm/clients",
            headers=h,
            json={"name": name, "owner_id": owner, "phones": [{"number": phone}]},
        )
        assert r.status_code == 201, r.text
    owners = ClientOwnerDirectory(api.db)
    assert await owners.owner_route(t.id, "+79165550101") is None  # off until the tenant sets a ring time
    r = await api.client.put(
        f"{base}/crm/settings",
        headers=h,
        json={"callback_minutes": 60, "escalate_hours": 24, "owner_ring_seconds": 15},
    )
    assert r.status_code == 200 and r.json()["owner_ring_seconds"] == 15
    assert (await api.client.get(f"{base}/crm/settings", headers=h)).json()["owner_ring_seconds"] == 15
    route = await owners.owner_route(t.id, "+79165550101")
    assert route is not None and (route.extension, route.seconds, route.employee_id) == ("301", 15, olga)
    assert await owners.owner_route(t.id, "79165550101") == route  # a trunk that sends no "+"
    assert await owners.owner_route(t.id, "+79165550102") is None  # no owner
    assert await owners.owner_route(t.id, "+79165550103") is None  # an owner without an extension
    assert await owners.owner_route(t.id, "+79165550199") is None  # no client
    other = await make_tenant(f"owner-{uuid.uuid4().hex[:6]}.example")
    assert await owners.owner_route(other.id, "+79165550101") is None  # another company's client
    r = await api.client.put(
        f"{base}/crm/settings",
        headers=h,
        json={"callback_minutes": 60, "escalate_hours": 24, "owner_ring_seconds": 121},
    )
    assert r.status_code == 422


def test_the_owner_group() -> None:
    route = OwnerRoute(extension="301", seconds=15, client_id=7, employee_id=3)
    group = owner_group(5, route, "ivr", {"menu": 2})
    assert (group.members, group.ring_seconds, group.max_seconds) == (("301",), 15, 15)
    assert group.no_answer == {"menu": 2, "kind": "ivr"}  # then the number's own destination
    assert applies(route, "ring_group", {"number": "600"})
    assert not applies(route, "extension", {"number": "301"})  # the number rings the owner anyway
    assert not applies(route, "none", None)  # nobody takes calls now
    assert not applies(None, "extension", {"number": "101"})
