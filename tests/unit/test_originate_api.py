"""REST of originated calls (telephony/originate_http.py): who may originate for whom, and what a bad
request gets. The originator is the real one over a stand-in engine (directory on the database, a
location, a routing snapshot): the calls themselves are tests/unit/test_originate.py's and the
integration test's."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from conftest import Api
from zvonok.pstn.routing import PolicyInfo, PstnSnapshot, RouteInfo, TenantInfo, TrunkInfo
from zvonok.telephony import events as ev
from zvonok.telephony.directory import Directory
from zvonok.telephony.location import Binding, Location
from zvonok.telephony.originate import OriginateQuota, Originator

ENGINES: list[StandInEngine] = []


@pytest.fixture(autouse=True)
async def _directory_reads_done(api: Api) -> AsyncIterator[None]:
    """The directory reads an entry again in a background task after a look-up (at once here: ttl 0). One
    still reading when a test ended held its database connection past the database's disposal; the garbage
    collector found it later, in whatever test ran then, whose unraisable ResourceWarning failed it. Torn
    down before ``api`` (which it depends on): the reads finish while the database is open."""
    yield
    while ENGINES:
        await asyncio.gather(*ENGINES.pop().directory._refreshing.values(), return_exceptions=True)


class StandInEngine:
    """What :class:`Originator` uses of the engine up to the first INVITE."""

    def __init__(self, api: Api, tenants: dict[int, str]) -> None:
        self.directory = Directory(api.db, ttl=0.0)
        ENGINES.append(self)
        self.location = Location()
        self.published: list[Any] = []
        self.calls: dict[str, Any] = {}
        self.bus = SimpleNamespace(publish=self.published.append)
        policies = {(t, "tenant", None): PolicyInfo(tenant_id=t, level="tenant", ref_id=None,
                                                     service_class="long_distance") for t in tenants}
        trunk = TrunkInfo(id=1, tenant_id=None, name="carrier", kind="carrier", host="192.0.2.1",
                          address="192.0.2.1", port=5060, transport="udp", max_calls=None)
        self.trunks = SimpleNamespace(snapshot=PstnSnapshot(
            tenants={t: TenantInfo(id=t, domain=d, timezone="UTC", currency="RUB", locale="ru", suspended=False)
                     for t, d in tenants.items()},
            policies=policies, trunks={1: trunk}, routes=[RouteInfo(tenant_id=None, prefix="", trunk_id=1, priority=1)]))
        self._ids = itertools.count(1)

    def reachable(self, binding: Binding, policy: str | None) -> bool:
        return True

    def publish(self, kind: type[Any], call: Any, **fields: Any) -> None:
        self.published.append(kind(tenant_id=call.tenant_id, call_id=call.id, at=0.0, **fields))

    async def _endpoints(self, call: Any, count: int) -> None:
        return None  # as if the call ended at once: nothing is placed here

    def register(self, tenant_id: int, extension_id: int, number: str) -> None:
        self.location.put(Binding(tenant_id=tenant_id, extension_id=extension_id, aor=f"sip:{number}@x",
                                  contact=f"sip:{number}@127.0.0.1:5999", expires_at=4e9,
                                  source="udp:127.0.0.1:5999", call_id=f"reg-{next(self._ids)}"))


async def _setup(api: Api, make_tenant: Any) -> tuple[Any, Any, StandInEngine, dict[str, Any]]:
    a = await make_tenant("orig-a.example")
    b = await make_tenant("orig-b.example")
    ids: dict[str, Any] = {}
    for t, prefix in ((a, "a"), (b, "b")):
        base = f"/api/v1/tenants/{t.id}"
        for name, number in ((f"{prefix}olga", "101"), (f"{prefix}petr", "102")):
            r = await api.client.post(f"{base}/employees", headers=t.headers, json={
                "full_name": name, "email": f"{name}@orig.example", "web_password": f"{name}-password-1",
                "role": "employee"})
            assert r.status_code == 201, r.text
            employee = r.json()["id"]
            r = await api.client.post(f"{base}/extensions", headers=t.headers,
                                      json={"number": number, "display_name": name, "employee_id": employee})
            assert r.status_code == 201, r.text
            ids[name] = (employee, r.json()["id"])
            r = await api.client.post("/api/v1/auth/login", json={"email": f"{name}@orig.example",
                                                                  "password": f"{name}-password-1"})
            assert r.status_code == 200, r.text
            ids[f"{name}-headers"] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    engine = StandInEngine(api, {a.id: a.domain, b.id: b.domain})
    app = api.client._transport.app  # type: ignore[attr-defined]
    app.state.originator = Originator(engine)
    return a, b, engine, ids


async def _originate(client: httpx.AsyncClient, headers: dict[str, str], extension: str, to: str) -> httpx.Response:
    return await client.post("/api/v1/calls/originate", headers=headers, json={"extension": extension, "to": to})


async def test_who_may_originate_for_whom_and_bad_numbers(api: Api, make_tenant: Any) -> None:
    a, b, engine, ids = await _setup(api, make_tenant)
    engine.register(a.id, ids["aolga"][1], "101")
    # a tenant admin for any extension of the company; an extension or an outside number
    r = await _originate(api.client, a.headers, "101", "102")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["extension"] == "101" and body["to"] == "102" and body["phase"] == "ringing_employee"
    r = await _originate(api.client, a.headers, "101", "8 (495) 123-45-67")
    assert r.status_code == 202 and r.json()["to"] == "+74951234567"
    started = [e for e in engine.published if isinstance(e, ev.CallStarted)]
    assert [(e.caller.number, e.callee_number) for e in started] == [("101", "102"), ("101", "+74951234567")]
    assert all(e.tenant_id == a.id for e in started)
    # the status of one's own company's call only
    r = await api.client.get(f"/api/v1/calls/originate/{body['call_id']}", headers=a.headers)
    assert r.status_code == 200 and r.json()["call_id"] == body["call_id"]
    assert (await api.client.get(f"/api/v1/calls/originate/{body['call_id']}", headers=b.headers)).status_code == 404
    # an employee: their own extension only
    r = await _originate(api.client, ids["aolga-headers"], "101", "102")
    assert r.status_code == 202, r.text
    r = await _originate(api.client, ids["apetr-headers"], "101", "102")
    assert r.status_code == 403
    assert (await api.client.get(f"/api/v1/calls/originate/{body['call_id']}",
                                 headers=ids["apetr-headers"])).status_code == 404
    # no registered phone: 409 with the reason, and the failure is an event
    r = await _originate(api.client, ids["apetr-headers"], "102", "101")
    assert r.status_code == 409 and r.json()["reason"] == "not_registered"
    assert [e.reason for e in engine.published if isinstance(e, ev.OriginateFailed)] == ["not_registered"]
    # another company's extension is no extension here (b has a 101 too: it is never rung for a)
    engine.register(b.id, ids["bolga"][1], "101")
    before = len(engine.published)
    r = await _originate(api.client, a.headers, "103", "102")
    assert r.status_code == 404
    # bad numbers: 422 with a message, before anything rings
    for bad in ("12", "8495", "hello", "+7 495 12", "101"):
        r = await _originate(api.client, a.headers, "101", bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["detail"]
    r = await api.client.post("/api/v1/calls/originate", headers=a.headers, json={"extension": "1x1", "to": "102"})
    assert r.status_code == 422
    r = await api.client.post("/api/v1/calls/originate", headers=a.headers, json={"extension": "101"})
    assert r.status_code == 422
    # not allowed by the calling permissions (long distance, no international): 403 with why
    r = await _originate(api.client, a.headers, "101", "+12125551234")
    assert r.status_code == 403 and r.json()["reason"] == "not_allowed"
    assert len(engine.published) == before
    # a platform admin names no company here; no token at all is 401
    assert (await _originate(api.client, api.admin, "101", "102")).status_code == 403
    assert (await api.client.post("/api/v1/calls/originate", json={"extension": "101", "to": "102"})).status_code == 401


async def test_crm_click_to_call_from_ones_own_extension(api: Api, make_tenant: Any) -> None:
    a, b, engine, ids = await _setup(api, make_tenant)
    engine.register(a.id, ids["aolga"][1], "101")
    base = f"/api/v1/tenants/{a.id}/crm/clients"
    r = await api.client.post(base, headers=a.headers, json={
        "name": "Roga i Kopyta", "phones": [{"number": "+7 495 111-22-33"}, {"number": "+7 495 444-55-66"}]})
    assert r.status_code == 201, r.text
    client_id = r.json()["id"]
    olga = ids["aolga-headers"]
    r = await api.client.post(f"{base}/{client_id}/call", headers=olga, json={})
    assert r.status_code == 202, r.text
    assert r.json()["extension"] == "101" and r.json()["to"] == "+74951112233"
    r = await api.client.post(f"{base}/{client_id}/call", headers=olga, json={"number": "+74954445566"})
    assert r.status_code == 202 and r.json()["to"] == "+74954445566"
    # not the client's number; a token that is no employee has no extension to call from
    r = await api.client.post(f"{base}/{client_id}/call", headers=olga, json={"number": "+74959999999"})
    assert r.status_code == 422
    r = await api.client.post(f"{base}/{client_id}/call", headers=olga, json={"phone_id": 99999})
    assert r.status_code == 422
    r = await api.client.post(f"{base}/{client_id}/call", headers=a.headers, json={})
    assert r.status_code == 409
    # another company's client, or another company's account: 404
    r = await api.client.post(f"/api/v1/tenants/{b.id}/crm/clients/{client_id}/call", headers=b.headers, json={})
    assert r.status_code == 404
    r = await api.client.post(f"{base}/{client_id}/call", headers=ids["bolga-headers"], json={})
    assert r.status_code == 404


async def test_monitoring_started_over_rest_rings_the_supervisor(api: Api, make_tenant: Any) -> None:
    a, b, engine, ids = await _setup(api, make_tenant)
    talking: set[str] = set()

    async def supervisors(tenant_id: int, employee_id: int | None, target: str | None) -> bool:
        return employee_id == ids["apetr"][0]  # Petr (102) is the supervisor

    engine.monitoring = SimpleNamespace(  # type: ignore[attr-defined]
        allowed=supervisors, _find=lambda tenant_id, ext, sup: ("call", "agent", "customer") if ext in talking else None)
    engine.register(a.id, ids["apetr"][1], "102")
    url = f"/api/v1/tenants/{a.id}/monitor-sessions"
    r = await api.client.post(url, headers=a.headers, json={"extension": "101", "supervisor": "102"})
    assert r.status_code == 404 and r.json()["reason"] == "nothing_to_monitor"  # Olga is not on a call
    talking.add("101")
    r = await api.client.post(url, headers=a.headers, json={"extension": "101", "supervisor": "102", "mode": "barge"})
    assert r.status_code == 202, r.text
    assert (r.json()["supervisor"], r.json()["agent"], r.json()["mode"]) == ("102", "101", "barge")
    started = [e for e in engine.published if isinstance(e, ev.CallStarted)]
    assert [(e.caller.number, e.callee_number) for e in started] == [("102", "101")]
    # Olga's phone may not monitor; a token that is no employee must name the supervisor; employees: 403
    r = await api.client.post(url, headers=a.headers, json={"extension": "102", "supervisor": "101"})
    assert r.status_code == 403
    r = await api.client.post(url, headers=a.headers, json={"extension": "101"})
    assert r.status_code == 422
    r = await api.client.post(url, headers=ids["apetr-headers"], json={"extension": "101"})
    assert r.status_code == 403
    # another company's admin: 403 (audited), and its extensions are not ours
    r = await api.client.post(url, headers=b.headers, json={"extension": "101", "supervisor": "102"})
    assert r.status_code == 403
    r = await api.client.post(url, headers=a.headers, json={"extension": "101", "supervisor": "109"})
    assert r.status_code == 404


async def test_a_company_over_its_originate_rate_gets_429_with_retry_after(api: Api, make_tenant: Any) -> None:
    a, b, engine, ids = await _setup(api, make_tenant)
    app = api.client._transport.app  # type: ignore[attr-defined]
    app.state.originator = Originator(engine, quota=OriginateQuota(max_active=100, per_minute=2))
    engine.register(a.id, ids["aolga"][1], "101")
    engine.register(b.id, ids["bolga"][1], "101")
    for _ in range(2):
        assert (await _originate(api.client, a.headers, "101", "102")).status_code == 202
    r = await _originate(api.client, a.headers, "101", "102")
    assert r.status_code == 429 and r.json()["reason"] == "too_many_originates", r.text
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert (await _originate(api.client, b.headers, "101", "102")).status_code == 202  # b is not held back
