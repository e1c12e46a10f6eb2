"""Outbound policies per level, the caller-ID rule, :func:`effective_policy` with this month's spend, and
access-number PINs set by an admin or by the employee themself (both backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from test_pstn_support import PstnApi, add_number, insert_cdr, make_company, ok, pstn_api

from zvonok.billing.limits import Budget, Level
from zvonok.config import Settings
from zvonok.dialing import Level as PolicyLevel
from zvonok.dialing import ServiceClass, normalize, russian_plan
from zvonok.org.pins import verify_pin
from zvonok.pstn import policies
from zvonok.pstn.events import PstnChanged
from zvonok.pstn.models import EmployeePin
from zvonok.storage.db import Database


@pytest.fixture
async def api(db: Database, settings: Settings) -> AsyncIterator[PstnApi]:
    async with pstn_api(db, settings) as a:
        yield a


async def test_policy_levels(api: PstnApi, make_tenant: Any) -> None:
    a = await make_company(api, make_tenant, "a.example")
    b = await make_company(api, make_tenant, "b.example")
    await add_number(api, "+74951234567", a.id)
    await add_number(api, "+74957654321", b.id)
    base = f"{a.base}/policies"
    r = await api.client.put(f"{base}/tenant", headers=a.headers, json={
        "service_class": "local", "deny_prefixes": ["7809", "+88216", "+7809"], "caller_id": "+7 495 123-45-67",
        "monthly_limit": 10000, "warn_percent": 90})
    tenant = await ok(r, 201)
    assert (tenant["level"], tenant["ref_id"], tenant["deny_prefixes"], tenant["caller_id"], tenant["monthly_limit"]) == (
        "tenant", None, ["+7809", "+88216"], "+74951234567", "10000.00")
    replaced = await ok(await api.client.put(f"{base}/tenant", headers=a.headers, json={"service_class": "long_distance"}))
    assert (replaced["id"], replaced["deny_prefixes"], replaced["caller_id"], replaced["monthly_limit"], replaced["warn_percent"]) == (
        tenant["id"], [], None, None, 80)  # PUT replaces the whole policy
    for level, ref in (("office", a.office), ("department", a.dept), ("employee", a.alice)):
        out = await ok(await api.client.put(f"{base}/{level}/{ref}", headers=a.headers, json={"allow_prefixes": ["7809"]}), 201)
        assert (out["level"], out["ref_id"], out["allow_prefixes"]) == (level, ref, ["+7809"])
        got = await ok(await api.client.get(f"{base}/{level}/{ref}", headers=a.headers))
        assert got["id"] == out["id"]
        assert (await api.client.get(f"{base}/{level}/{ref}", headers=a.alice_headers)).status_code == 403
    page = await ok(await api.client.get(base, headers=a.headers))
    assert [(p["level"], p["ref_id"]) for p in page["items"]] == [
        ("department", a.dept), ("employee", a.alice), ("office", a.office), ("tenant", None)]
    assert (await ok(await api.client.get(base, headers=a.headers, params={"level": "office"})))["total"] == 1

    refused: list[tuple[dict[str, Any], str, str]] = [
        ({"caller_id": "+74957654321"}, "caller_id", "caller_id: +74957654321 is not one of the tenant's phone numbers"),
        ({"caller_id": "84951234567"}, "caller_id", "write the number in international form"),
        ({"deny_prefixes": ["0123"]}, "deny_prefixes", "a prefix is 1-15 digits of an E.164 number"),
        ({"allow_prefixes": ["7x"]}, "allow_prefixes", "a prefix is 1-15 digits of an E.164 number"),
        ({"deny_prefixes": ["+7495"], "allow_prefixes": ["7495"]}, "body", "prefixes both denied and allowed: +7495"),
        ({"service_class": "world"}, "service_class", "Input should be"),
        ({"warn_percent": 0}, "warn_percent", "greater than or equal to 1"),
        ({"warn_percent": 101}, "warn_percent", "less than or equal to 100"),
        ({"monthly_limit": -1}, "monthly_limit", "greater than or equal to 0"),
    ]
    for body, field, message in refused:
        r = await api.client.put(f"{base}/office/{a.office}", headers=a.headers, json=body)
        assert r.status_code == 422, (body, r.text)
        detail = r.json()["detail"][0]
        assert field in detail["loc"] and message in detail["msg"], (body, detail)
    r = await api.client.put(f"{base}/office/{b.office}", headers=a.headers, json={})
    assert r.status_code == 404 and r.json() == {"detail": f"office {b.office} not found"}
    assert (await api.client.put(f"{base}/employee/{a.bob}", headers=a.alice_headers, json={})).status_code == 403
    api.events.clear()
    await ok(await api.client.delete(f"{base}/office/{a.office}", headers=a.headers), 204)
    assert api.events == [PstnChanged(tenant_id=a.id, what="policy")]
    r = await api.client.get(f"{base}/office/{a.office}", headers=a.headers)
    assert r.status_code == 404 and r.json() == {"detail": f"no outbound policy for office {a.office}"}


async def test_released_number_stops_being_caller_id(api: PstnApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "cid.example")
    n = await add_number(api, "+74951234567", c.id)
    await ok(await api.client.put(f"{c.base}/policies/tenant", headers=c.headers, json={"caller_id": n["number"]}), 201)
    await ok(await api.client.post(f"/api/v1/platform/numbers/{n['id']}/release", headers=api.admin))
    assert (await ok(await api.client.get(f"{c.base}/policies/tenant", headers=c.headers)))["caller_id"] is None


async def test_effective_policy(api: PstnApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "eff.example")
    other = await make_company(api, make_tenant, "other.example")
    main = await add_number(api, "+74951110000", c.id)
    spb = await add_number(api, "+78122220000", c.id)
    await add_number(api, "+74953330000", other.id)
    put = f"{c.base}/policies"
    await ok(await api.client.put(f"{put}/tenant", headers=c.headers, json={
        "service_class": "local", "deny_prefixes": ["+7809"], "caller_id": main["number"], "monthly_limit": 1000}), 201)
    await ok(await api.client.put(f"{put}/office/{c.office}", headers=c.headers, json={
        "caller_id": spb["number"], "monthly_limit": 300, "warn_percent": 50}), 201)
    await ok(await api.client.put(f"{put}/department/{c.dept}", headers=c.headers, json={"service_class": "long_distance"}), 201)
    await ok(await api.client.put(f"{put}/employee/{c.alice}", headers=c.headers, json={
        "service_class": "international", "allow_prefixes": ["+7809"], "monthly_limit": "100.50"}), 201)
    march = datetime(2025, 3, 15, 12, tzinfo=UTC)
    rows = [  # (at, cost, office, dept, employee): Moscow time decides the month
        (datetime(2025, 2, 28, 21, 30, tzinfo=UTC), "12.34", c.office, c.dept, c.alice),  # 1 March 00:30 MSK
        (datetime(2025, 3, 10, 8, tzinfo=UTC), "0.10", c.office, c.dept, c.alice),
        (datetime(2025, 3, 11, 8, tzinfo=UTC), "7.005", c.office, c.dept, c.alice),
        (datetime(2025, 3, 12, 8, tzinfo=UTC), "1.00", c.office, None, None),
        (datetime(2025, 3, 13, 8, tzinfo=UTC), "5.00", c.office2, None, c.bob),
        (datetime(2025, 2, 28, 20, 30, tzinfo=UTC), "99", c.office, c.dept, c.alice),  # 28 Feb 23:30 MSK
        (datetime(2025, 3, 31, 21, 0, tzinfo=UTC), "50", c.office, c.dept, c.alice),  # 1 April MSK
    ]
    for at, cost, office, dept, employee in rows:
        await insert_cdr(api.db, c.id, at=at, cost=cost, billed=60, office=office, dept=dept, employee=employee)
    await insert_cdr(api.db, other.id, at=march, cost="500", billed=60)

    async with api.db.session() as session:
        alice = await policies.effective_policy(session, c.id, c.alice, c.dept, c.office, now=march)
        bob = await policies.effective_policy(session, c.id, c.bob, None, c.office2, now=march)
        nobody = await policies.effective_policy(session, other.id, None, None, None, now=march)
    assert (alice.policy.service_class, alice.policy.class_level) == (ServiceClass.INTERNATIONAL, PolicyLevel.EMPLOYEE)
    premium = normalize("+7 809 123-45-67", russian_plan("495"))
    assert alice.policy.check(premium).allowed and not bob.policy.check(premium).allowed
    assert alice.caller_id == spb["number"] and bob.caller_id == main["number"]
    assert alice.budgets == (
        Budget(level=Level.EMPLOYEE, limit=Decimal("100.50"), spent=Decimal("19.445"), warn_ratio=Decimal("0.8"),
               owner_id=c.alice),
        Budget(level=Level.OFFICE, limit=Decimal("300"), spent=Decimal("20.445"), warn_ratio=Decimal("0.5"),
               owner_id=c.office),
        Budget(level=Level.TENANT, limit=Decimal("1000"), spent=Decimal("25.445"), warn_ratio=Decimal("0.8")),
    )
    assert [(b.level, b.spent) for b in bob.budgets] == [(Level.TENANT, Decimal("25.445"))]
    assert (bob.policy.service_class, nobody.policy.service_class) == (ServiceClass.LOCAL, ServiceClass.INTERNAL_ONLY)
    assert (nobody.caller_id, nobody.budgets) == ("+74953330000", ())


BAD_PINS = [
    ("12", "pin: 4 to 8 digits"),
    ("12a4", "pin: 4 to 8 digits"),
    ("123456789", "pin: 4 to 8 digits"),
    ("1111", "pin: too easy to guess, a repeated group of digits such as 1212 (repeated)"),
    ("3737", "pin: too easy to guess, a repeated group of digits such as 1212 (repeated)"),
    ("5678", "pin: too easy to guess, a run of digits such as 1234 or 9876 (sequence)"),
    ("9876", "pin: too easy to guess, a run of digits such as 1234 or 9876 (sequence)"),
    ("57654321", "pin: too easy to guess, the end of the employee's extension or phone number (personal)"),
]


async def test_pins(api: PstnApi, make_tenant: Any) -> None:
    a = await make_company(api, make_tenant, "a.example")
    b = await make_company(api, make_tenant, "b.example")
    mine, bobs = f"{a.base}/employees/{a.alice}/pin", f"{a.base}/employees/{a.bob}/pin"
    assert await ok(await api.client.get(mine, headers=a.alice_headers)) == {
        "tenant_id": a.id, "employee_id": a.alice, "has_pin": False, "skip_for_caller_id": False, "updated_at": None}
    api.events.clear()
    r = await api.client.put(mine, headers=a.alice_headers, json={"pin": "8362"})
    out = await ok(r)
    assert (out["has_pin"], out["skip_for_caller_id"]) == (True, False) and "8362" not in r.text and "hash" not in r.text
    assert api.events == [PstnChanged(tenant_id=a.id, what="pin")]
    assert await _verifies(api, a.alice, "8362") and not await _verifies(api, a.alice, "8363")
    for pin, message in BAD_PINS:
        r = await api.client.put(mine, headers=a.alice_headers, json={"pin": pin})
        assert r.status_code == 422 and r.json()["detail"] == [
            {"loc": ["body", "pin"], "msg": message, "type": "value_error"}], pin
    r = await api.client.put(mine, headers=a.alice_headers, json={"pin": "4179", "skip_for_caller_id": True})
    assert r.status_code == 403 and r.json()["detail"] == "skip_for_caller_id: only an admin may change this"
    for method, body in (("PUT", {"pin": "4179"}), ("GET", None), ("DELETE", None)):
        r = await api.client.request(method, bobs, headers=a.alice_headers, json=body)
        assert r.status_code == 403 and r.json()["detail"] == "only a tenant admin or the employee themself may manage this PIN"
    out = await ok(await api.client.put(mine, headers=a.headers, json={"pin": "4179", "skip_for_caller_id": True}))
    assert out["skip_for_caller_id"] is True
    out = await ok(await api.client.put(mine, headers=a.alice_headers, json={"pin": "6021"}))  # keeps the admin's flag
    assert out["skip_for_caller_id"] is True and await _verifies(api, a.alice, "6021")
    await ok(await api.client.put(bobs, headers=a.headers, json={"pin": "7305"}))
    # another tenant's employee does not exist here, whoever asks and whatever the body
    for url, headers in ((f"{b.base}/employees/{a.alice}/pin", b.headers), (mine, b.headers),
                         (f"{a.base}/employees/{b.alice}/pin", a.headers)):
        for body in ({"pin": "8362"}, {}):
            assert (await api.client.put(url, headers=headers, json=body)).status_code == 404
    await ok(await api.client.delete(mine, headers=a.alice_headers), 204)
    assert (await ok(await api.client.get(mine, headers=a.headers)))["has_pin"] is False
    r = await api.client.delete(mine, headers=a.headers)
    assert r.status_code == 404 and r.json() == {"detail": f"employee {a.alice} has no PIN"}
    assert (await ok(await api.client.get(bobs, headers=a.headers)))["has_pin"] is True


async def _verifies(api: PstnApi, employee_id: int, pin: str) -> bool:
    async with api.db.session() as session:
        hashed = (await session.execute(select(EmployeePin.pin_hash).where(EmployeePin.employee_id == employee_id))).scalar_one()
    return verify_pin(pin, hashed)


async def test_deleting_an_employee_drops_their_policy_and_pin(db: Database) -> None:
    """A later employee that reuses the id must not inherit a deleted one's class of service or PIN."""
    from zvonok.org import schemas as org_schemas
    from zvonok.org import service as org_service
    from zvonok.pstn import service  # noqa: F401 - registers the org hooks
    from zvonok.pstn.models import OutboundPolicy

    async with db.session() as session:
        tenant = await org_service.platform_create_tenant(
            session, org_schemas.TenantCreate(name="Hooks", sip_domain="hooks.test"))
        emp = await org_service.create_employee(session, tenant.id, org_schemas.EmployeeCreate(full_name="Gone"))
        session.add(OutboundPolicy(tenant_id=tenant.id, level="employee", ref_id=emp.id, service_class="international",
                                   deny_prefixes=[], allow_prefixes=[]))
        session.add(EmployeePin(tenant_id=tenant.id, employee_id=emp.id, pin_hash="x", skip_for_caller_id=False))
        await session.commit()
        await org_service.delete_employee(session, tenant.id, emp.id)
        await session.commit()
        assert (await session.execute(select(OutboundPolicy).where(OutboundPolicy.tenant_id == tenant.id))).first() is None
        assert (await session.execute(select(EmployeePin).where(EmployeePin.tenant_id == tenant.id))).first() is None


async def test_a_tenant_has_one_tenant_level_policy(db: Database) -> None:
    """ref_id is NULL at the tenant level, and NULLs never collide in a unique constraint: a partial
    unique index keeps a second tenant-level row (two concurrent PUTs) out."""
    from sqlalchemy.exc import IntegrityError

    from zvonok.org import schemas as org_schemas
    from zvonok.org import service as org_service
    from zvonok.pstn.models import OutboundPolicy

    async with db.session() as session:
        tenant = await org_service.platform_create_tenant(
            session, org_schemas.TenantCreate(name="Once", sip_domain="once.test"))
        for _ in range(2):
            session.add(OutboundPolicy(tenant_id=tenant.id, level="tenant", ref_id=None, deny_prefixes=[],
                                       allow_prefixes=[]))
        with pytest.raises(IntegrityError):
            await session.flush()
