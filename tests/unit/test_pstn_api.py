"""The outside-world REST API: trunks (tenant and platform, write-only passwords, live status), the
number pool and a tenant's numbers with their destinations, outbound routes, and PstnChanged events
after commit (both backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_pstn_support import Company, PstnApi, add_number, fake_dns, make_company, ok, pstn_api

from zvonok.callcenter.models import CallQueue
from zvonok.conference.models import ConferenceRoom
from zvonok.config import Settings
from zvonok.ivr.models import IvrMenu
from zvonok.pstn.events import PstnChanged
from zvonok.ringgroup.models import RingGroup
from zvonok.storage.db import Database

TRUNK = {"name": "Carrier", "host": "sip.carrier.example", "username": "acme", "password": "s3cret-pass",
         "register": True, "inbound_addresses": ["203.0.113.0/24", "198.51.100.7"]}


@pytest.fixture
async def api(db: Database, settings: Settings) -> AsyncIterator[PstnApi]:
    async with pstn_api(db, settings) as a:
        yield a


async def test_trunk_crud_never_shows_the_password(api: PstnApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "acme.example")
    r = await api.client.post(f"{c.base}/trunks", headers=c.headers, json={**TRUNK, "office_id": c.office})
    trunk = await ok(r, 201)
    assert "s3cret-pass" not in r.text and "password" not in trunk
    assert (trunk["has_password"], trunk["port"], trunk["transport"], trunk["kind"], trunk["number_format"]) == (
        True, 5060, "udp", "carrier", "e164")
    assert trunk["inbound_addresses"] == ["203.0.113.0/24", "198.51.100.7"] and trunk["tenant_id"] == c.id
    url = f"{c.base}/trunks/{trunk['id']}"
    for r in (await api.client.get(url, headers=c.headers), await api.client.get(f"{c.base}/trunks", headers=c.headers)):
        assert r.status_code == 200 and "s3cret-pass" not in r.text and '"password"' not in r.text
    assert (await api.client.get(url, headers=c.alice_headers)).status_code == 403  # carriers are the admin's
    page = await ok(await api.client.get(f"{c.base}/trunks", headers=c.headers))
    assert (page["total"], page["items"][0]["id"]) == (1, trunk["id"])

    patched = await ok(await api.client.patch(url, headers=c.headers, json={"port": 5080, "transport": "tcp"}))
    assert (patched["port"], patched["transport"], patched["has_password"]) == (5080, "tcp", True)
    r = await api.client.patch(url, headers=c.headers, json={"password": None})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "register"]
    patched = await ok(await api.client.patch(url, headers=c.headers, json={"register": False, "password": None}))
    assert (patched["has_password"], patched["register"]) == (False, False)
    r = await api.client.patch(url, headers=c.alice_headers, json={"port": 5090})
    assert r.status_code == 403  # an employee neither reads nor writes trunks
    await ok(await api.client.delete(url, headers=c.headers), 204)
    r = await api.client.get(url, headers=c.headers)
    assert r.status_code == 404 and r.json() == {"detail": f"trunk {trunk['id']} not found"}


async def test_trunk_over_tls_with_and_without_certificate_check(api: PstnApi, make_tenant: Any, db: Database) -> None:
    from sqlalchemy import select

    from zvonok.pstn.models import Trunk
    c = await make_company(api, make_tenant, "tls.example")
    trunk = await ok(await api.client.post(f"{c.base}/trunks", headers=c.headers,
                                           json={**TRUNK, "transport": "tls", "port": 5061}), 201)
    assert (trunk["transport"], trunk["tls_verify"]) == ("tls", True)
    url = f"{c.base}/trunks/{trunk['id']}"
    patched = await ok(await api.client.patch(url, headers=c.headers, json={"tls_verify": False}))
    assert (patched["transport"], patched["tls_verify"]) == ("tls", False)
    async with db.session() as session:  # stored in the transport string: no column of its own
        assert (await session.scalar(select(Trunk.transport).where(Trunk.id == trunk["id"]))) == "tls-any"
    patched = await ok(await api.client.patch(url, headers=c.headers, json={"port": 5062}))
    assert (patched["transport"], patched["tls_verify"]) == ("tls", False)  # other changes keep it
    patched = await ok(await api.client.patch(url, headers=c.headers, json={"transport": "udp"}))
    assert (patched["transport"], patched["tls_verify"]) == ("udp", True)
    patched = await ok(await api.client.patch(url, headers=c.headers, json={"transport": "tls"}))
    assert (patched["transport"], patched["tls_verify"]) == ("tls", True)
    r = await api.client.patch(url, headers=c.headers, json={"transport": "tls-any"})
    assert r.status_code == 422  # the stored form is not an API value


TRUNK_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"host": ""}, "host"),
    ({"host": "bad host!"}, "host"),
    ({"port": 0}, "port"),
    ({"port": 65536}, "port"),
    ({"transport": "sctp"}, "transport"),
    ({"kind": "gateway"}, "kind"),
    ({"number_format": "local"}, "number_format"),
    ({"inbound_addresses": ["10.0.0.1/24"]}, "inbound_addresses"),
    ({"inbound_addresses": ["not-an-ip"]}, "inbound_addresses"),
    ({"register": True, "password": None}, "register"),
    ({"register": True, "username": None}, "register"),
    ({"buy_tariff_id": 987654}, "buy_tariff_id"),
    ({"office_id": 987654}, "office_id"),
    ({"surprise": 1}, "surprise"),
    # text that ends up in SIP messages (REGISTER, From, digest): no control characters (a username is
    # escaped where it goes into a URI, so "ac me" and "acme<x>" are fine)
    ({"username": "acme\r\nVia: SIP/2.0/UDP evil"}, "username"),
    ({"username": "acme\tx"}, "username"),
    ({"auth_username": "acme\nx"}, "auth_username"),
    ({"from_domain": "carrier.example\r\nX: y"}, "from_domain"),
    ({"host": "sip.carrier.example\nX: y"}, "host"),
    ({"name": "Carrier\r\nX: y"}, "name"),
    ({"password": "pass\r\nword"}, "password"),
]


async def test_trunk_validation(api: PstnApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "valid.example")
    for change, field in TRUNK_ERRORS:
        r = await api.client.post(f"{c.base}/trunks", headers=c.headers, json={**TRUNK, **change})
        assert r.status_code == 422, (change, r.text)
        detail = r.json()["detail"][0]
        assert field in detail["loc"] and detail["msg"], detail
    trunk = await ok(await api.client.post(f"{c.base}/trunks", headers=c.headers, json=TRUNK), 201)
    for change, field in TRUNK_ERRORS:
        r = await api.client.patch(f"{c.base}/trunks/{trunk['id']}", headers=c.headers, json=change)
        assert r.status_code == 422 and field in r.json()["detail"][0]["loc"], (change, r.text)
    assert (await ok(await api.client.get(f"{c.base}/trunks", headers=c.headers)))["total"] == 1


async def test_trunk_validation_messages_say_what_is_wrong(api: PstnApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "messages.example")
    r = await api.client.post(f"{c.base}/trunks", headers=c.headers, json={**TRUNK, "username": "ac\r\nme"})
    assert r.status_code == 422 and "control characters" in r.json()["detail"][0]["msg"], r.text
    r = await api.client.post(f"{c.base}/trunks", headers=c.headers, json={**TRUNK, "username": "acme\r\nVia: x"})
    assert r.status_code == 422 and "control characters" in r.json()["detail"][0]["msg"], r.text
    # usernames are text: the digest username is a quoted-string and the AOR's user is escaped when written,
    # so an e-mail-like username (as carriers hand out) is fine
    await ok(await api.client.post(f"{c.base}/trunks", headers=c.headers,
                                   json={**TRUNK, "username": "12345@carrier.example", "auth_username": 'acme@corp "x"'}),
             201)


OVERLAP = "overlaps an address in use by another trunk on this platform"


async def test_what_a_tenant_admin_may_trust_is_its_own(api: PstnApi, make_tenant: Any) -> None:
    """A trunk's inbound addresses are taken without a challenge: a tenant admin may not trust a wide or
    special range, nor another company's or the operator's addresses (those are the platform admin's)."""
    a = await make_company(api, make_tenant, "trust-a.example")
    b = await make_company(api, make_tenant, "trust-b.example")
    plain = {"name": "PBX", "kind": "pbx", "host": "pbx.example"}
    await ok(await api.client.post(f"{a.base}/trunks", headers=a.headers,
                                   json={**plain, "inbound_addresses": ["203.0.113.0/24"]}), 201)
    await ok(await api.client.post("/api/v1/platform/trunks", headers=api.admin,
                                   json={"name": "Operator", "host": "192.0.2.55"}), 201)
    refused = [
        ({"inbound_addresses": ["10.0.0.0/16"]}, 422, "wider than /24"),
        ({"inbound_addresses": ["0.0.0.0/0"]}, 422, "wider than /24"),
        ({"inbound_addresses": ["127.0.0.0/8"]}, 422, "wider than /24"),
        ({"inbound_addresses": ["2001:db8::/48"]}, 422, "wider than /64"),
        ({"inbound_addresses": ["127.0.0.1"]}, 422, "loopback"),
        ({"host": "127.0.0.1"}, 422, "loopback"),  # no inbound list: the host's address is trusted
        ({"host": "localhost"}, 422, "loopback"),  # ... and a host name's, as it resolves
        ({"inbound_addresses": ["203.0.113.128/25"]}, 403, OVERLAP),
        ({"inbound_addresses": ["203.0.113.7"]}, 403, OVERLAP),
        ({"host": "192.0.2.55"}, 403, OVERLAP),
    ]
    mine = await ok(await api.client.post(f"{b.base}/trunks", headers=b.headers,
                                          json={**plain, "inbound_addresses": ["198.51.100.0/24"]}), 201)
    for change, status, words in refused:
        r = await api.client.post(f"{b.base}/trunks", headers=b.headers, json={**plain, **change})
        assert r.status_code == status and words in r.text and "trust-a" not in r.text, (change, r.text)
        r = await api.client.patch(f"{b.base}/trunks/{mine['id']}", headers=b.headers,
                                   json={"inbound_addresses": []} | change)
        assert r.status_code == status and words in r.text, (change, r.text)
    # the platform admin may (a carrier's wide range, a shared gateway), also under the tenant's URL
    for change, _, _ in refused:
        await ok(await api.client.post(f"{b.base}/trunks", headers=api.admin, json={**plain, **change}), 201)
    patched = await ok(await api.client.patch(f"{b.base}/trunks/{mine['id']}", headers=api.admin,
                                              json={"inbound_addresses": ["10.0.0.0/16"]}))
    assert patched["inbound_addresses"] == ["10.0.0.0/16"]
    # and the tenant admin may still change the rest of such a trunk
    await ok(await api.client.patch(f"{b.base}/trunks/{mine['id']}", headers=b.headers, json={"max_calls": 3}))


async def test_another_trunks_host_name_counts_as_what_it_resolves_to(api: PstnApi, make_tenant: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Company A's PBX is known by a name only: B may trust neither its address nor a name of its own
    that resolves there, and the refusal says nothing about A."""
    fake_dns(monkeypatch, {"pbx.trust-a.example": "198.18.0.5", "pbx.trust-b.example": "198.18.0.5",
                           "carrier.example": "198.18.7.1"})
    a = await make_company(api, make_tenant, "trust-a.example")
    b = await make_company(api, make_tenant, "trust-b.example")
    await ok(await api.client.post(f"{a.base}/trunks", headers=a.headers,
                                   json={"name": "PBX", "kind": "pbx", "host": "pbx.trust-a.example"}), 201)
    await ok(await api.client.post("/api/v1/platform/trunks", headers=api.admin,
                                   json={"name": "Operator", "host": "carrier.example"}), 201)
    for change in ({"inbound_addresses": ["198.18.0.0/24"]}, {"host": "pbx.trust-b.example"},
                   {"inbound_addresses": ["198.18.7.1"]}):
        r = await api.client.post(f"{b.base}/trunks", headers=b.headers,
                                  json={"name": "PBX", "kind": "pbx", "host": "pbx.b.example"} | change)
        assert r.status_code == 403 and OVERLAP in r.text, (change, r.text)
        assert "trust-a" not in r.text and "carrier" not in r.text and "Operator" not in r.text, r.text
    await ok(await api.client.post(f"{b.base}/trunks", headers=b.headers,
                                   json={"name": "PBX", "kind": "pbx", "host": "pbx.b.example",
                                         "inbound_addresses": ["198.18.1.0/24"]}), 201)


async def test_trunk_references_must_be_the_tenants(api: PstnApi, make_tenant: Any) -> None:
    a = await make_company(api, make_tenant, "a.example")
    b = await make_company(api, make_tenant, "b.example")
    own = await ok(await api.client.post("/api/v1/platform/tariffs", headers=api.admin,
                                         json={"name": "A buy", "tenant_id": a.id}), 201)
    shared = await ok(await api.client.post("/api/v1/platform/tariffs", headers=api.admin, json={"name": "Shared"}), 201)
    for body, field in [({"office_id": a.office}, "office_id"), ({"buy_tariff_id": own["id"]}, "buy_tariff_id")]:
        r = await api.client.post(f"{b.base}/trunks", headers=b.headers, json={**TRUNK, **body})
        assert r.status_code == 422 and r.json()["detail"][0]["msg"].startswith(f"{field}: ")
    for tariff in (own, shared):
        await ok(await api.client.post(f"{a.base}/trunks", headers=a.headers,
                                       json={**TRUNK, "buy_tariff_id": tariff["id"]}), 201)
    r = await api.client.post(f"{b.base}/trunks", headers=b.headers, json={**TRUNK, "buy_tariff_id": own["id"]})
    assert r.status_code == 422


async def test_platform_trunks(api: PstnApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "p.example")
    trunk = await ok(await api.client.post("/api/v1/platform/trunks", headers=api.admin, json=TRUNK), 201)
    assert trunk["tenant_id"] is None and trunk["has_password"] is True
    url = f"/api/v1/platform/trunks/{trunk['id']}"
    assert (await ok(await api.client.get(url, headers=api.admin)))["name"] == "Carrier"
    assert (await ok(await api.client.patch(url, headers=api.admin, json={"name": "Main"})))["name"] == "Main"
    assert [t["id"] for t in (await ok(await api.client.get("/api/v1/platform/trunks", headers=api.admin)))["items"]] == [
        trunk["id"]]
    for method in ("GET", "PATCH", "DELETE"):
        r = await api.client.request(method, url, headers=c.headers, json={} if method == "PATCH" else None)
        assert r.status_code == 403, method
    # the operator's trunk is not the tenant's: not listed, not reachable under the tenant's URL
    assert (await ok(await api.client.get(f"{c.base}/trunks", headers=c.headers)))["total"] == 0
    assert (await api.client.get(f"{c.base}/trunks/{trunk['id']}", headers=c.headers)).status_code == 404
    r = await api.client.post("/api/v1/platform/trunks", headers=api.admin, json={**TRUNK, "office_id": c.office})
    assert r.status_code == 422 and r.json()["detail"][0]["msg"] == "office_id: a platform trunk belongs to no office"
    await ok(await api.client.delete(url, headers=api.admin), 204)


async def test_trunk_status_comes_from_the_engine(api: PstnApi, make_tenant: Any) -> None:
    a = await make_company(api, make_tenant, "a.example")
    b = await make_company(api, make_tenant, "b.example")
    trunk = await ok(await api.client.post(f"{a.base}/trunks", headers=a.headers, json=TRUNK), 201)
    url = f"{a.base}/trunks/{trunk['id']}/status"
    r = await api.client.get(url, headers=a.headers)
    assert r.status_code == 503 and r.json()["detail"].startswith("status unavailable")
    asked: list[int] = []

    def provider(trunk_id: int) -> dict[str, Any] | None:
        asked.append(trunk_id)
        return {"registered": True, "last_error": None, "active_calls": 3, "expires_in": 120} if trunk_id == trunk["id"] else None

    api.app.state.trunk_status = provider
    assert await ok(await api.client.get(url, headers=a.headers)) == {
        "trunk_id": trunk["id"], "loaded": True, "registered": True, "last_error": None, "active_calls": 3,
        "expires_in": 120}
    r = await api.client.get(f"{b.base}/trunks/{trunk['id']}/status", headers=b.headers)
    assert r.status_code == 404 and asked == [trunk["id"]]  # B's request never reached the engine

    async def unloaded(trunk_id: int) -> None:
        return None

    api.app.state.trunk_status = unloaded
    assert await ok(await api.client.get(url, headers=a.headers)) == {
        "trunk_id": trunk["id"], "loaded": False, "registered": None, "last_error": None, "active_calls": 0}


async def test_trunk_in_use_by_a_route_is_not_deleted(api: PstnApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "r.example")
    trunk = await ok(await api.client.post(f"{c.base}/trunks", headers=c.headers, json=TRUNK), 201)
    route = await ok(await api.client.post(f"{c.base}/routes", headers=c.headers,
                                           json={"prefix": "7", "trunk_id": trunk["id"]}), 201)
    r = await api.client.delete(f"{c.base}/trunks/{trunk['id']}", headers=c.headers)
    assert r.status_code == 409 and r.json() == {"detail": f"trunk {trunk['id']} is in use by 1 outbound route"}
    await ok(await api.client.delete(f"{c.base}/routes/{route['id']}", headers=c.headers), 204)
    await ok(await api.client.delete(f"{c.base}/trunks/{trunk['id']}", headers=c.headers), 204)


async def test_number_pool_assign_and_release(api: PstnApi, make_tenant: Any) -> None:
    a = await make_company(api, make_tenant, "a.example")
    b = await make_company(api, make_tenant, "b.example")
    n = await add_number(api, "+7 495 123-45-67", fee="500")
    assert (n["number"], n["tenant_id"], n["monthly_fee"]) == ("+74951234567", None, "500.00")
    r = await api.client.post("/api/v1/platform/numbers", headers=api.admin, json={"number": "+7 (495) 1234567"})
    assert r.status_code == 409 and r.json()["detail"] == "number +74951234567 already exists"
    for bad in ("84951234567", "+7 495 123", "+0 123 456 789", "call me", "+7 495 123 45 67 8"):
        r = await api.client.post("/api/v1/platform/numbers", headers=api.admin, json={"number": bad})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "number"], bad
    r = await api.client.post("/api/v1/platform/numbers", headers=a.headers, json={"number": "+74950000000"})
    assert r.status_code == 403

    async def pool(**params: Any) -> list[str]:
        page = await ok(await api.client.get("/api/v1/platform/numbers", headers=api.admin, params=params))
        return [x["number"] for x in page["items"]]

    await add_number(api, "+74957777777")
    assert await pool(free="true") == ["+74951234567", "+74957777777"]
    assign = f"/api/v1/platform/numbers/{n['id']}/assign"
    assigned = await ok(await api.client.post(assign, headers=api.admin, json={"tenant_id": a.id}))
    assert assigned["tenant_id"] == a.id
    for tenant in (b.id, a.id):  # never twice, not even to the same tenant
        r = await api.client.post(assign, headers=api.admin, json={"tenant_id": tenant})
        assert r.status_code == 409 and r.json()["detail"] == f"number +74951234567 is already assigned to tenant {a.id}"
    r = await api.client.post(f"/api/v1/platform/numbers/{n['id'] + 1}/assign", headers=api.admin, json={"tenant_id": 987654})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "tenant_id"]
    assert (await pool(free="true"), await pool(free="false")) == (["+74957777777"], ["+74951234567"])
    assert [x["id"] for x in (await ok(await api.client.get(f"{a.base}/numbers", headers=a.headers)))["items"]] == [n["id"]]
    assert (await ok(await api.client.get(f"{b.base}/numbers", headers=b.headers)))["total"] == 0
    for url, headers in ((f"{b.base}/numbers/{n['id']}", b.headers), (f"{a.base}/numbers/{n['id'] + 1}", a.headers)):
        assert (await api.client.get(url, headers=headers)).status_code == 404
        assert (await api.client.patch(url, headers=headers, json={"office_id": None})).status_code == 404
    r = await api.client.delete(f"/api/v1/platform/numbers/{n['id']}", headers=api.admin)
    assert r.status_code == 409 and "release it first" in r.json()["detail"]

    await ok(await api.client.patch(f"{a.base}/numbers/{n['id']}", headers=a.headers,
                                    json={"destination_kind": "extension", "destination": {"number": "101"}}))
    released = await ok(await api.client.post(f"/api/v1/platform/numbers/{n['id']}/release", headers=api.admin))
    assert (released["tenant_id"], released["destination"], released["office_id"]) == (None, {}, None)
    assert (await ok(await api.client.get(f"{a.base}/numbers", headers=a.headers)))["total"] == 0
    r = await api.client.post(f"/api/v1/platform/numbers/{n['id']}/release", headers=api.admin)
    assert r.status_code == 409 and r.json()["detail"] == "number +74951234567 is not assigned"
    await ok(await api.client.delete(f"/api/v1/platform/numbers/{n['id']}", headers=api.admin), 204)
    assert await pool() == ["+74957777777"]


async def test_tenant_routes_its_number(api: PstnApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "did.example")
    n = await add_number(api, "+74951234567", c.id, fee="300")
    url = f"{c.base}/numbers/{n['id']}"
    out = await ok(await api.client.patch(url, headers=c.headers, json={
        "office_id": c.office, "destination_kind": "ring", "destination": {"numbers": ["101", "102"], "timeout": 25}}))
    assert (out["office_id"], out["destination_kind"], out["destination"]) == (
        c.office, "ring", {"numbers": ["101", "102"], "timeout": 25})
    r = await api.client.patch(url, headers=c.headers, json={"monthly_fee": "0"})
    assert r.status_code == 403 and r.json()["detail"] == "monthly_fee: only a platform admin may change this"
    assert (await api.client.patch(url, headers=c.headers, json={"enabled": False})).status_code == 403
    out = await ok(await api.client.patch(url, headers=api.admin, json={"monthly_fee": "250.5"}))
    assert out["monthly_fee"] == "250.50"
    # the extension a number rings cannot be deleted from under it
    r = await api.client.delete(f"{c.base}/extensions/{c.ext_alice}", headers=c.headers)
    assert r.status_code == 409 and r.json() == {"detail": "extension 101 is in use by DID +74951234567"}
    await ok(await api.client.patch(url, headers=c.headers, json={"destination_kind": "access"}))
    await ok(await api.client.delete(f"{c.base}/extensions/{c.ext_alice}", headers=c.headers), 204)


SCHEDULE = {
    "timezone": "Europe/Moscow",
    "rules": [{"days": [4, 0, 1, 2, 3], "from": "09:00", "to": "18:00",
               "destination": {"kind": "ring", "numbers": ["101", "102"]}},
              {"days": [5], "from": "22:00", "to": "06:00", "destination": {"kind": "external", "number": "+7 812 123-45-67"}}],
    "holidays": ["2025-01-01", "2025-01-07"],
    "holiday_destination": {"kind": "voicemail", "number": "103"},
    "default": {"kind": "queue", "queue": " night "},
}


ACCEPTED: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("extension", {"number": "101"}, {"number": "101"}),
    ("voicemail", {"number": "103"}, {"number": "103"}),
    ("queue", {"queue": "sales"}, {"queue": "sales"}),
    ("queue", {"number": "500"}, {"number": "500"}),  # a call-center queue's number
    ("fax", {}, {}),
    ("fax", {"emails": [" office@fax.example ", "boss@fax.example", "office@fax.example"]},
     {"emails": ["office@fax.example", "boss@fax.example"]}),
    ("external", {"number": "+7 (812) 123-45-67"}, {"number": "+78121234567"}),
    ("access", {}, {}),
    ("access", {"skip_pin_for_known_callers": True}, {"skip_pin_for_known_callers": True}),
    ("schedule", SCHEDULE, {**SCHEDULE, "rules": [
        {**SCHEDULE["rules"][0], "days": [0, 1, 2, 3, 4]},
        {**SCHEDULE["rules"][1], "destination": {"kind": "external", "number": "+78121234567"}}],
        "default": {"kind": "queue", "queue": "night"}}),
]
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("extension", {"number": "555"}, "destination.number: extension 555 does not exist"),
    ("extension", {}, "destination.number: required"),
    ("extension", {"number": "1"}, "destination.number: an extension number is 2-8 digits"),
    ("fax", {"email": "x@example.com"}, "destination: unknown key 'email'"),
    ("fax", {"emails": "x@example.com"}, "destination.emails: a list of at most 10 e-mail addresses"),
    ("fax", {"emails": ["x@example.com", "no address"]},
     "destination.emails: item 1: 'no address' is not an e-mail address"),
    ("fax", {"emails": ["a@b.example"] * 11}, "destination.emails: a list of at most 10 e-mail addresses"),
    ("ring", {"numbers": []}, "destination.numbers: a list of 1 to 20 extension numbers"),
    ("ring", {"numbers": ["101"] * 21}, "destination.numbers: a list of 1 to 20 extension numbers"),
    ("ring", {"numbers": ["101", "101"]}, "destination.numbers: an extension is listed twice"),
    ("ring", {"numbers": ["101", "999"]}, "destination.numbers[1]: extension 999 does not exist"),
    ("ring", {"numbers": ["101"], "timeout": 1}, "destination.timeout: whole seconds from 5 to 600"),
    ("queue", {"queue": ""}, "destination.queue: a queue name (1-100 characters)"),
    ("queue", {"queue": "support"}, "destination.queue: queue 'support' does not exist"),
    ("queue", {"number": "599"}, "destination.number: queue 599 does not exist"),
    ("queue", {}, 'destination: either "number" (the queue\'s number) or "queue" (its name)'),
    ("conference", {"number": "800"}, "destination.number: conference room 800 does not exist"),
    ("ring_group", {"number": "600"}, "destination.number: ring group 600 does not exist"),
    ("ivr", {"menu": 999}, "destination.menu: IVR menu 999 does not exist"),
    ("external", {"number": "84951234567"}, "destination.number: '84951234567': write the number in "
                                            "international form, '+' and the country code"),
    ("access", {"pin": "1"}, "destination: unknown key 'pin'"),
    ("schedule", {"rules": []}, "destination.default: required"),
    ("schedule", {**SCHEDULE, "timezone": "Mars/Base"}, "destination.timezone: unknown IANA time zone 'Mars/Base'"),
    ("schedule", {**SCHEDULE, "holidays": ["2025-02-30"]}, "destination.holidays[0]: a date YYYY-MM-DD"),
    ("schedule", {"rules": [{"days": [7], "from": "09:00", "to": "18:00", "destination": {"kind": "access"}}],
                  "default": {"kind": "access"}}, "destination.rules[0].days: a list of different weekdays 0-6 (0 is Monday)"),
    ("schedule", {"rules": [{"days": [1], "from": "9:00", "to": "18:00", "destination": {"kind": "access"}}],
                  "default": {"kind": "access"}}, "destination.rules[0].from: a time HH:MM"),
    ("schedule", {"rules": [{"days": [1], "from": "09:00", "to": "09:00", "destination": {"kind": "access"}}],
                  "default": {"kind": "access"}},
     "destination.rules[0]: 'from' and 'to' are both 09:00 (00:00-00:00 means the whole day)"),
    ("schedule", {"default": {"kind": "schedule", "default": {"kind": "access"}}},
     "destination.default: a schedule may not contain another schedule"),
    ("schedule", {"default": {"number": "101"}}, 'destination.default: an object with a "kind" and that kind\'s fields'),
    ("schedule", {"default": {"kind": "extension", "number": "404"}}, "destination.default.number: extension 404 does not exist"),
    ("schedule", {**SCHEDULE, "holiday_destination": {"kind": "ring", "numbers": ["101", "909"]}},
     "destination.holiday_destination.numbers[1]: extension 909 does not exist"),
]


async def add_queues(api: PstnApi, tenant_id: int, *names: tuple[str, str]) -> None:
    async with api.db.session() as session:
        session.add_all([CallQueue(tenant_id=tenant_id, name=name, number=number) for name, number in names])
        await session.commit()


async def test_destinations(api: PstnApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "dest.example")
    await add_queues(api, c.id, ("sales", "500"), ("night", "501"))
    n = await add_number(api, "+74951234567", c.id)
    url = f"{c.base}/numbers/{n['id']}"
    for kind, destination, stored in ACCEPTED:
        out = await ok(await api.client.patch(url, headers=c.headers,
                                              json={"destination_kind": kind, "destination": destination}))
        assert (out["destination_kind"], out["destination"]) == (kind, stored)
    await ok(await api.client.patch(url, headers=c.headers, json={"destination_kind": "access", "destination": {}}))
    for kind, destination, message in REFUSED:
        r = await api.client.patch(url, headers=c.headers, json={"destination_kind": kind, "destination": destination})
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == [{"loc": ["body", "destination"], "msg": message, "type": "value_error"}]
        assert (await ok(await api.client.get(url, headers=c.headers)))["destination_kind"] == "access"
    # a new kind alone is checked against an empty payload; a payload alone against the current kind
    r = await api.client.patch(url, headers=c.headers, json={"destination_kind": "extension"})
    assert r.status_code == 422 and r.json()["detail"][0]["msg"] == "destination.number: required"
    r = await api.client.patch(url, headers=c.headers, json={"destination": {"number": "101"}})
    assert r.status_code == 422 and r.json()["detail"][0]["msg"] == "destination: unknown key 'number'"
    r = await api.client.patch(url, headers=c.headers, json={"destination_kind": "paging", "destination": {}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "destination_kind"]


async def test_destination_in_another_tenant_is_refused(api: PstnApi, make_tenant: Any) -> None:
    """What another tenant has is answered exactly as what nobody has: 422 "... does not exist"."""
    a = await make_company(api, make_tenant, "mine.example")
    b = await make_company(api, make_tenant, "theirs.example")
    async with api.db.session() as session:
        menu = IvrMenu(tenant_id=b.id, name="Theirs")
        session.add_all([menu, CallQueue(tenant_id=b.id, name="support", number="599"),
                         ConferenceRoom(tenant_id=b.id, number="800"), RingGroup(tenant_id=b.id, number="600")])
        await session.commit()
        menu_id = menu.id
    await ok(await api.client.post(f"{b.base}/extensions", headers=b.headers, json={"number": "105", "display_name": "B"}),
             201)
    n = await add_number(api, "+74951234567", a.id)
    url = f"{a.base}/numbers/{n['id']}"
    for kind, destination, message in [
        ("queue", {"number": "599"}, "destination.number: queue 599 does not exist"),
        ("queue", {"queue": "support"}, "destination.queue: queue 'support' does not exist"),
        ("conference", {"number": "800"}, "destination.number: conference room 800 does not exist"),
        ("ring_group", {"number": "600"}, "destination.number: ring group 600 does not exist"),
        ("ivr", {"menu": menu_id}, f"destination.menu: IVR menu {menu_id} does not exist"),
        ("extension", {"number": "105"}, "destination.number: extension 105 does not exist"),
        ("schedule", {"default": {"kind": "voicemail", "number": "105"}},
         "destination.default.number: extension 105 does not exist"),
    ]:
        r = await api.client.patch(url, headers=a.headers, json={"destination_kind": kind, "destination": destination})
        assert r.status_code == 422, (kind, r.text)
        assert r.json()["detail"] == [{"loc": ["body", "destination"], "msg": message, "type": "value_error"}]
    # an unknown kind inside a schedule names the kinds a branch may be
    r = await api.client.patch(url, headers=a.headers, json={"destination_kind": "schedule",
                                                             "destination": {"default": {"kind": "paging"}}})
    assert r.status_code == 422 and r.json()["detail"][0]["msg"].startswith(
        "destination.default.kind: unknown destination kind 'paging' (one of extension, ring, ")


async def test_outbound_routes(api: PstnApi, make_tenant: Any) -> None:
    a = await make_company(api, make_tenant, "a.example")
    b = await make_company(api, make_tenant, "b.example")
    own = await ok(await api.client.post(f"{a.base}/trunks", headers=a.headers, json=TRUNK), 201)
    # b's trunk trusts its own addresses: a's are not b's to trust (test_what_a_tenant_admin_may_trust_is_its_own)
    other = await ok(await api.client.post(f"{b.base}/trunks", headers=b.headers,
                                           json={**TRUNK, "inbound_addresses": ["192.0.2.0/24"]}), 201)
    shared = await ok(await api.client.post("/api/v1/platform/trunks", headers=api.admin, json=TRUNK), 201)
    r1 = await ok(await api.client.post(f"{a.base}/routes", headers=a.headers, json={"prefix": "7495", "trunk_id": own["id"]}), 201)
    r2 = await ok(await api.client.post(f"{a.base}/routes", headers=a.headers,
                                        json={"trunk_id": shared["id"], "priority": 5}), 201)
    assert (r1["prefix"], r1["priority"], r2["prefix"], r1["tenant_id"]) == ("7495", 100, "", a.id)
    for body, field in [({"prefix": "+7", "trunk_id": own["id"]}, "prefix"), ({"prefix": "7a", "trunk_id": own["id"]}, "prefix"),
                        ({"trunk_id": other["id"]}, "trunk_id"), ({"trunk_id": 987654}, "trunk_id")]:
        r = await api.client.post(f"{a.base}/routes", headers=a.headers, json=body)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", field], body
    page = await ok(await api.client.get(f"{a.base}/routes", headers=a.headers))
    assert [x["id"] for x in page["items"]] == [r2["id"], r1["id"]]  # by prefix, then priority
    assert (await ok(await api.client.get(f"{b.base}/routes", headers=b.headers)))["total"] == 0
    assert (await api.client.patch(f"{b.base}/routes/{r1['id']}", headers=b.headers, json={"priority": 1})).status_code == 404
    out = await ok(await api.client.patch(f"{a.base}/routes/{r1['id']}", headers=a.headers, json={"priority": 1, "enabled": False}))
    assert (out["priority"], out["enabled"]) == (1, False)
    # the operator's routes use the operator's trunks only
    r = await api.client.post("/api/v1/platform/routes", headers=api.admin, json={"trunk_id": own["id"]})
    assert r.status_code == 422
    pr = await ok(await api.client.post("/api/v1/platform/routes", headers=api.admin, json={"prefix": "7", "trunk_id": shared["id"]}), 201)
    assert pr["tenant_id"] is None
    assert [x["id"] for x in (await ok(await api.client.get("/api/v1/platform/routes", headers=api.admin)))["items"]] == [pr["id"]]
    assert (await api.client.get(f"{a.base}/routes/{pr['id']}", headers=a.headers)).status_code == 404
    await ok(await api.client.delete(f"/api/v1/platform/routes/{pr['id']}", headers=api.admin), 204)
    await ok(await api.client.delete(f"{a.base}/routes/{r1['id']}", headers=a.headers), 204)


async def test_changes_are_announced_after_commit(api: PstnApi, make_tenant: Any) -> None:
    c: Company = await make_company(api, make_tenant, "ev.example")
    api.events.clear()
    trunk = await ok(await api.client.post(f"{c.base}/trunks", headers=c.headers, json=TRUNK), 201)
    assert [e for e in api.events if isinstance(e, PstnChanged)] == [PstnChanged(tenant_id=c.id, what="trunk")]
    api.events.clear()
    r = await api.client.patch(f"{c.base}/trunks/{trunk['id']}", headers=c.headers, json={"buy_tariff_id": 987654})
    assert r.status_code == 422 and api.events == []  # a refused change is not announced
    await ok(await api.client.post("/api/v1/platform/trunks", headers=api.admin, json=TRUNK), 201)
    n = await add_number(api, "+74951234567", c.id)
    await ok(await api.client.patch(f"{c.base}/numbers/{n['id']}", headers=c.headers, json={"destination_kind": "access"}))
    await ok(await api.client.post(f"{c.base}/routes", headers=c.headers, json={"trunk_id": trunk["id"]}), 201)
    assert api.events == [PstnChanged(tenant_id=None, what="trunk"), PstnChanged(tenant_id=None, what="number"),
                          PstnChanged(tenant_id=c.id, what="number"), PstnChanged(tenant_id=c.id, what="number"),
                          PstnChanged(tenant_id=c.id, what="route")]


async def test_events_wait_for_the_commit(api: PstnApi, make_tenant: Any) -> None:
    from zvonok.pstn import schemas, service

    c = await make_company(api, make_tenant, "commit.example")
    api.events.clear()
    async with api.db.session() as session:
        await service.create_trunk(session, c.id, schemas.TrunkCreate(name="Lost", host="lost.example"))
        await session.rollback()
    assert api.events == []
    async with api.db.session() as session:
        await service.create_trunk(session, c.id, schemas.TrunkCreate(name="Kept", host="kept.example"))
        assert api.events == []  # queued with the transaction, not delivered yet
        await session.commit()
    assert api.events == [PstnChanged(tenant_id=c.id, what="trunk")]
    names = [t["name"] for t in (await ok(await api.client.get(f"{c.base}/trunks", headers=c.headers)))["items"]]
    assert names == ["Kept"]
