# ruff: noqa: F811 - the fixtures of test_web.py are imported (web, a, b, admin_a) and named as parameters
"""The outside-world pages of the web console: trunks (with their live state), outbound routes, calling
permissions, access-number PINs, spending limits, and the operator's tariffs with the rate import.

Each form is posted as a browser would (CSRF token scraped from the page); bad input must answer 4xx
with the field's message and change nothing; another company's ids answer 404, employees 403.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from test_pstn_support import insert_cdr
from test_web import PASSWORD, Company, Web, a, admin_a, b, csrf_of, login, web  # noqa: F401 - fixtures

from zvonok.org import schemas as org_schemas
from zvonok.org import service as org_service
from zvonok.pstn import schemas as s
from zvonok.pstn import service as pstn_service
from zvonok.pstn.models import EmployeePin, OutboundPolicy, OutboundRoute, Trunk
from zvonok.web.session import LANG_COOKIE


async def _post(client: httpx.AsyncClient, page: str, url: str, data: Mapping[str, Any]) -> httpx.Response:
    """Open ``page`` for its CSRF token, then post ``data`` to ``url``."""
    form = await client.get(page)
    assert form.status_code == 200, form.text
    return await client.post(url, data={"csrf_token": csrf_of(form.text), **data})


async def _count(web: Web, model: Any, tenant_id: int) -> int:
    async with web.db.session() as session:
        stmt = select(func.count()).select_from(model).where(model.tenant_id == tenant_id)
        return int((await session.execute(stmt)).scalar_one())


async def _trunk(web: Web, tenant_id: int, name: str = "Acme Telecom", host: str = "192.0.2.10") -> int:
    async with web.db.session() as session:
        trunk = await pstn_service.create_trunk(session, tenant_id, s.TrunkCreate(name=name, host=host))
        await session.commit()
        return trunk.id


async def _employee_id(web: Web, company: Company) -> int:
    async with web.db.session() as session:
        rows, _ = await org_service.list_employees(session, company.id)
        return rows[0].id


@pytest.fixture
async def admin_b(web: Web, b: Company) -> AsyncIterator[httpx.AsyncClient]:
    async with web.client() as client:
        assert (await login(client, b.admin)).status_code == 303
        yield client


@pytest.fixture
async def employee_a(web: Web, a: Company) -> AsyncIterator[httpx.AsyncClient]:
    async with web.client() as client:
        assert (await login(client, a.employee)).status_code == 303
        yield client


TRUNK_FORM = {"name": "Rostelecom", "kind": "carrier", "host": "192.0.2.20", "port": "5060", "transport": "udp",
              "username": "acme", "password": "s3cret-trunk-pw", "register": "1", "register_expires": "600",
              "inbound_addresses": "", "max_calls": "30", "number_format": "e164", "enabled": "1"}


# --- trunks ----------------------------------------------------------------------------------------
async def test_trunk_is_created_listed_with_its_state_edited_and_deleted(
        web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    r = await _post(admin_a, "/trunks", "/trunks", TRUNK_FORM)
    assert r.status_code == 303 and r.headers["location"] == "/trunks?done=created"
    async with web.db.session() as session:
        trunk = (await session.execute(select(Trunk).where(Trunk.tenant_id == a.id))).scalar_one()
    assert (trunk.name, trunk.host, trunk.register, trunk.max_calls) == ("Rostelecom", "192.0.2.20", True, 30)

    page = await admin_a.get("/trunks")
    assert page.status_code == 200 and "Rostelecom" in page.text
    assert 'hx-get="/trunks/rows" hx-trigger="every 5s"' in page.text
    assert 'data-state="unavailable"' in page.text  # no call engine in this app: the API would answer 503
    assert "s3cret-trunk-pw" not in page.text

    # the state the REST API reports (app.state.trunk_status, the engine's), on the polled rows
    facts: dict[int, dict[str, Any] | None] = {trunk.id: {"registered": True, "last_error": None, "active_calls": 2}}
    web.app.state.trunk_status = lambda trunk_id: facts.get(trunk_id)  # type: ignore[attr-defined]
    rows = await admin_a.get("/trunks/rows")
    assert 'data-state="registered"' in rows.text and "2 / 30" in rows.text
    facts[trunk.id] = {"registered": False, "last_error": "403 Forbidden from the registrar", "active_calls": 0}
    rows = await admin_a.get("/trunks/rows")
    assert 'data-state="failing"' in rows.text and "403 Forbidden from the registrar" in rows.text
    facts[trunk.id] = {"registered": None, "last_error": None, "active_calls": 0}
    assert 'data-state="not_registering"' in (await admin_a.get("/trunks/rows")).text
    facts[trunk.id] = None
    assert 'data-state="not_loaded"' in (await admin_a.get("/trunks/rows")).text

    edit = await admin_a.get(f"/trunks/{trunk.id}")
    assert edit.status_code == 200 and 'value="acme"' in edit.text and "s3cret-trunk-pw" not in edit.text
    changed = {**TRUNK_FORM, "name": "Rostelecom 2", "password": ""}  # empty password: keep the current one
    r = await _post(admin_a, f"/trunks/{trunk.id}", f"/trunks/{trunk.id}", changed)
    assert r.status_code == 303, r.text
    async with web.db.session() as session:
        again = await session.get(Trunk, trunk.id)
        assert again is not None and again.name == "Rostelecom 2" and again.password == "s3cret-trunk-pw"

    r = await _post(admin_a, f"/trunks/{trunk.id}", f"/trunks/{trunk.id}/delete", {})
    assert r.status_code == 303
    assert await _count(web, Trunk, a.id) == 0


@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", "Evil\r\nVia: x", "no line breaks"),
    ("host", "carrier.example\r\nX-Evil: 1", "A host name or an IP address"),
    ("host", "not a host!", "A host name or an IP address"),
    ("port", "70000", "A port from 1 to 65535"),
    ("username", "acme\nVia: x", "No line breaks"),
    ("inbound_addresses", "10.0.0.1/24", "IP addresses or networks"),
])
async def test_bad_trunk_input_is_shown_on_the_form_and_nothing_is_saved(
        web: Web, a: Company, admin_a: httpx.AsyncClient, field: str, value: str, message: str) -> None:
    r = await _post(admin_a, "/trunks", "/trunks", {**TRUNK_FORM, field: value})
    assert r.status_code == 422
    assert f'id="{field}-error"' in r.text and message in r.text
    assert 'name="name"' in r.text  # the form again, with what was typed
    assert await _count(web, Trunk, a.id) == 0


async def test_a_registering_trunk_needs_a_password_and_edits_are_validated_too(
        web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    r = await _post(admin_a, "/trunks", "/trunks", {**TRUNK_FORM, "password": ""})
    assert r.status_code == 422 and "needs a user name and a password" in r.text
    assert await _count(web, Trunk, a.id) == 0
    trunk_id = await _trunk(web, a.id)
    r = await _post(admin_a, f"/trunks/{trunk_id}", f"/trunks/{trunk_id}",
                    {**TRUNK_FORM, "host": "bad\r\nhost", "password": ""})
    assert r.status_code == 422 and 'id="host-error"' in r.text
    async with web.db.session() as session:
        trunk = await session.get(Trunk, trunk_id)
        assert trunk is not None and trunk.host == "192.0.2.10"


# --- routes ----------------------------------------------------------------------------------------
async def test_routes_are_created_ordered_edited_and_deleted(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    trunk_id = await _trunk(web, a.id)
    backup_id = await _trunk(web, a.id, "Backup", "192.0.2.11")
    for trunk in (trunk_id, backup_id):
        r = await _post(admin_a, "/routes", "/routes", {"prefix": "+7", "trunk_id": str(trunk), "priority": "100",
                                                         "enabled": "1"})
        assert r.status_code == 303, r.text
    async with web.db.session() as session:
        first, second = (await session.execute(select(OutboundRoute).where(OutboundRoute.tenant_id == a.id)
                                               .order_by(OutboundRoute.id))).scalars().all()
    assert first.prefix == "7"
    page = await admin_a.get("/routes")
    assert page.text.index(f'id="route-{first.id}"') < page.text.index(f'id="route-{second.id}"')

    r = await _post(admin_a, "/routes", f"/routes/{second.id}/move", {"direction": "up"})
    assert r.status_code == 303
    page = await admin_a.get("/routes")
    assert page.text.index(f'id="route-{second.id}"') < page.text.index(f'id="route-{first.id}"')

    r = await _post(admin_a, f"/routes/{first.id}", f"/routes/{first.id}",
                    {"prefix": "7495", "trunk_id": str(backup_id), "priority": "5"})
    assert r.status_code == 303
    async with web.db.session() as session:
        edited = await session.get(OutboundRoute, first.id)
        assert edited is not None and (edited.prefix, edited.trunk_id, edited.priority, edited.enabled) == (
            "7495", backup_id, 5, False)

    # a trunk in use is not deleted: the page says why
    r = await _post(admin_a, "/trunks", f"/trunks/{backup_id}/delete", {})
    assert r.status_code == 409 and "used by outbound routes" in r.text
    assert await _count(web, Trunk, a.id) == 2

    r = await _post(admin_a, "/routes", f"/routes/{first.id}/delete", {})
    assert r.status_code == 303
    assert await _count(web, OutboundRoute, a.id) == 1


@pytest.mark.parametrize(("data", "field"), [
    ({"prefix": "7abc", "priority": "1"}, "prefix"),
    ({"prefix": "7", "priority": "-3"}, "priority"),
    ({"prefix": "7", "priority": "1", "trunk_id": "999999"}, "trunk_id"),
])
async def test_bad_route_input_is_refused_and_nothing_is_saved(
        web: Web, a: Company, admin_a: httpx.AsyncClient, data: dict[str, str], field: str) -> None:
    trunk_id = await _trunk(web, a.id)
    r = await _post(admin_a, "/routes", "/routes", {"trunk_id": str(trunk_id), **data})
    assert r.status_code == 422 and f'id="{field}-error"' in r.text
    assert await _count(web, OutboundRoute, a.id) == 0


async def test_a_route_may_not_use_another_companys_trunk(
        web: Web, a: Company, b: Company, admin_a: httpx.AsyncClient) -> None:
    theirs = await _trunk(web, b.id, host="192.0.2.99")
    r = await _post(admin_a, "/routes", "/routes", {"prefix": "7", "trunk_id": str(theirs), "priority": "1"})
    assert r.status_code == 422 and 'id="trunk_id-error"' in r.text
    assert await _count(web, OutboundRoute, a.id) == 0


# --- permissions and caller ID ---------------------------------------------------------------------
async def _add_number(web: Web, tenant_id: int, number: str) -> None:
    async with web.db.session() as session:
        created = await pstn_service.platform_create_number(session, s.NumberCreate(number=number))
        await pstn_service.platform_assign_number(session, created.id, tenant_id)
        await session.commit()


async def _policy(web: Web, tenant_id: int, level: str, ref_id: int | None) -> OutboundPolicy | None:
    async with web.db.session() as session:
        stmt = select(OutboundPolicy).where(OutboundPolicy.tenant_id == tenant_id, OutboundPolicy.level == level,
                                            OutboundPolicy.ref_id.is_(None) if ref_id is None
                                            else OutboundPolicy.ref_id == ref_id)
        return (await session.execute(stmt)).scalar_one_or_none()


async def test_permissions_per_level_with_caller_id(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    await _add_number(web, a.id, "+74951234567")
    r = await _post(admin_a, "/permissions/tenant", "/permissions/tenant",
                    {"service_class": "long_distance", "deny_prefixes": "+7809\n7803", "allow_prefixes": "",
                     "caller_id": "+74951234567"})
    assert r.status_code == 303, r.text
    policy = await _policy(web, a.id, "tenant", None)
    assert policy is not None and (policy.service_class, policy.deny_prefixes, policy.caller_id) == (
        "long_distance", ["+7803", "+7809"], "+74951234567")
    page = await admin_a.get("/permissions")
    assert "+7803, +7809" in page.text and "Long distance" in page.text

    employee = await _employee_id(web, a)
    edit = await admin_a.get(f"/permissions/employee?id={employee}")
    assert edit.status_code == 200 and "Ivan" in edit.text
    r = await _post(admin_a, f"/permissions/employee?id={employee}", "/permissions/employee",
                    {"ref_id": str(employee), "service_class": "international", "allow_prefixes": "+44"})
    assert r.status_code == 303
    policy = await _policy(web, a.id, "employee", employee)
    assert policy is not None and policy.service_class == "international" and policy.allow_prefixes == ["+44"]
    assert 'id="permission-employee-' in (await admin_a.get("/permissions")).text

    # clearing the permissions keeps a spending limit set on the billing page (and the policy with it)
    r = await _post(admin_a, "/billing", "/billing/employee", {"ref_id": str(employee), "monthly_limit": "500"})
    assert r.status_code == 303
    r = await _post(admin_a, f"/permissions/employee?id={employee}", "/permissions/employee",
                    {"ref_id": str(employee), "clear": "1"})
    assert r.status_code == 303
    policy = await _policy(web, a.id, "employee", employee)
    assert policy is not None and policy.service_class is None and policy.monthly_limit == 500


@pytest.mark.parametrize(("data", "field"), [
    ({"deny_prefixes": "+7809\nabc"}, "deny_prefixes"),
    ({"caller_id": "+74990000000"}, "caller_id"),  # not one of the company's numbers
    ({"caller_id": "+7495\r\n"}, "caller_id"),
    ({"deny_prefixes": "+7809", "allow_prefixes": "+7809"}, "form"),
    ({"service_class": "everything"}, "service_class"),
])
async def test_bad_permissions_are_refused_and_nothing_is_saved(
        web: Web, a: Company, admin_a: httpx.AsyncClient, data: dict[str, str], field: str) -> None:
    r = await _post(admin_a, "/permissions/tenant", "/permissions/tenant", data)
    assert r.status_code == 422
    assert (f'id="{field}-error"' if field != "form" else 'id="form-error"') in r.text
    assert await _policy(web, a.id, "tenant", None) is None


# --- PINs ------------------------------------------------------------------------------------------
async def test_pins_are_set_and_cleared_and_never_shown(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    employee = await _employee_id(web, a)
    page = await admin_a.get("/pins")
    assert page.status_code == 200 and 'data-state="unset"' in page.text
    r = await _post(admin_a, "/pins", f"/pins/{employee}", {"pin": "4826"})
    assert r.status_code == 303
    page = await admin_a.get("/pins")
    assert 'data-state="set"' in page.text and "4826" not in page.text and "argon2" not in page.text
    async with web.db.session() as session:
        row = (await session.execute(select(EmployeePin).where(EmployeePin.employee_id == employee))).scalar_one()
        assert row.pin_hash.startswith("$argon2")

    r = await _post(admin_a, "/pins", f"/pins/{employee}/clear", {})
    assert r.status_code == 303
    assert await _count(web, EmployeePin, a.id) == 0


@pytest.mark.parametrize(("pin", "message"), [
    ("12", "A PIN is 4 to 8 digits"), ("12ab", "A PIN is 4 to 8 digits"), ("1212", "repeated group"),
    ("1234", "a run of digits"), ("8264", "extension or phone number"),  # the end of Ivan's phone number
])
async def test_weak_pins_are_refused_with_the_reason(
        web: Web, a: Company, admin_a: httpx.AsyncClient, pin: str, message: str) -> None:
    employee = await _employee_id(web, a)
    async with web.db.session() as session:
        await org_service.update_employee(session, a.id, employee, org_schemas.EmployeeUpdate(phone="+74951118264"))
        await session.commit()
    r = await _post(admin_a, "/pins", f"/pins/{employee}", {"pin": pin})
    assert r.status_code == 422 and message in r.text and 'id="pin-error"' in r.text
    assert f'value="{pin}"' not in r.text
    assert await _count(web, EmployeePin, a.id) == 0


# --- spending limits -------------------------------------------------------------------------------
async def test_limits_per_level_against_this_months_spend(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    employee = await _employee_id(web, a)
    await insert_cdr(web.db, a.id, at=datetime.now(UTC), cost="123.45", billed=60, employee=employee)
    await insert_cdr(web.db, a.id, at=datetime(2020, 1, 5, tzinfo=UTC), cost="999", billed=60, employee=employee)
    r = await _post(admin_a, "/billing", "/billing/tenant", {"monthly_limit": "10 000,50", "warn_percent": "90"})
    assert r.status_code == 303, r.text
    policy = await _policy(web, a.id, "tenant", None)
    assert policy is not None and (policy.monthly_limit, policy.warn_percent) == (10000.50, 90)
    r = await _post(admin_a, "/billing", "/billing/employee", {"ref_id": str(employee), "monthly_limit": "200"})
    assert r.status_code == 303
    page = await admin_a.get("/billing")
    row = re.search(rf'<tr id="limit-employee-{employee}">(.*?)</tr>', page.text, re.S)
    assert row is not None and "123.45" in row.group(1) and 'value="200.00"' in row.group(1)
    assert "<progress" in row.group(1)
    assert "999" not in page.text  # another month's call

    # a limit removed (empty) drops the policy that said nothing else
    r = await _post(admin_a, "/billing", "/billing/employee", {"ref_id": str(employee), "monthly_limit": ""})
    assert r.status_code == 303
    assert await _policy(web, a.id, "employee", employee) is None


@pytest.mark.parametrize(("data", "message"), [
    ({"monthly_limit": "-5"}, "An amount of at least 0"), ({"monthly_limit": "12.345"}, "An amount of at least 0"),
    ({"monthly_limit": "lots"}, "An amount of at least 0"), ({"monthly_limit": "10", "warn_percent": "0"}, "A percentage"),
])
async def test_bad_limits_are_refused_and_nothing_is_saved(
        web: Web, a: Company, admin_a: httpx.AsyncClient, data: dict[str, str], message: str) -> None:
    r = await _post(admin_a, "/billing", "/billing/tenant", data)
    assert r.status_code == 422 and message in r.text and 'id="limit-error"' in r.text
    assert await _policy(web, a.id, "tenant", None) is None


# --- who may see what ------------------------------------------------------------------------------
async def test_another_companys_objects_are_not_found(
        web: Web, a: Company, b: Company, admin_b: httpx.AsyncClient) -> None:
    trunk_id = await _trunk(web, a.id)
    async with web.db.session() as session:
        route = await pstn_service.create_route(session, a.id, s.RouteCreate(prefix="7", trunk_id=trunk_id))
        office = await org_service.create_office(session, a.id, org_schemas.OfficeCreate(name="Moscow"))
        await session.commit()
        route_id, office_id = route.id, office.id
    employee = await _employee_id(web, a)
    for url in (f"/trunks/{trunk_id}", f"/routes/{route_id}", f"/permissions/office?id={office_id}",
                f"/permissions/employee?id={employee}"):
        assert (await admin_b.get(url)).status_code == 404, url
    token = csrf_of((await admin_b.get("/trunks")).text)
    posts: list[tuple[str, dict[str, str]]] = [
        (f"/trunks/{trunk_id}", {**TRUNK_FORM, "password": ""}), (f"/trunks/{trunk_id}/delete", {}),
        (f"/routes/{route_id}", {"prefix": "1", "trunk_id": str(trunk_id)}), (f"/routes/{route_id}/delete", {}),
        (f"/routes/{route_id}/move", {"direction": "up"}),
        ("/permissions/office", {"ref_id": str(office_id), "service_class": "local"}),
        ("/billing/employee", {"ref_id": str(employee), "monthly_limit": "1"}),
        (f"/pins/{employee}", {"pin": "4826"}), (f"/pins/{employee}/clear", {}),
    ]
    for url, data in posts:
        r = await admin_b.post(url, data={"csrf_token": token, **data})
        assert r.status_code == 404, (url, r.status_code)
    async with web.db.session() as session:
        trunk = await session.get(Trunk, trunk_id)
        assert trunk is not None and trunk.name == "Acme Telecom"
        assert await session.get(OutboundRoute, route_id) is not None
    assert await _count(web, OutboundPolicy, a.id) == 0 and await _count(web, EmployeePin, a.id) == 0
    # and B's own list pages show nothing of A's
    assert "Acme Telecom" not in (await admin_b.get("/trunks")).text
    assert "Moscow" not in (await admin_b.get("/permissions")).text


PAGES = ["/trunks", "/trunks/rows", "/routes", "/permissions", "/permissions/tenant", "/pins", "/billing"]


async def test_employees_may_not_open_the_admin_pages(web: Web, a: Company, employee_a: httpx.AsyncClient) -> None:
    for url in PAGES:
        r = await employee_a.get(url)
        assert r.status_code == 403, url
    token = csrf_of((await employee_a.get("/")).text)
    for url in ("/trunks", "/routes", "/permissions/tenant", "/billing/tenant", "/pins/1"):
        r = await employee_a.post(url, data={"csrf_token": token, "name": "x"})
        assert r.status_code == 403, url
    home = await employee_a.get("/")
    assert 'href="/trunks"' not in home.text and 'href="/billing"' not in home.text


async def test_menu_and_csrf(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    home = await admin_a.get("/")
    for href in ("/trunks", "/routes", "/permissions", "/pins", "/billing"):
        assert f'href="{href}"' in home.text
    assert 'href="/operator/tariffs"' not in home.text
    r = await admin_a.post("/trunks", data=TRUNK_FORM)  # no CSRF token
    assert r.status_code == 403
    assert await _count(web, Trunk, a.id) == 0


# --- the operator's tariffs ------------------------------------------------------------------------
RATES = Path(__file__).resolve().parents[1] / "data" / "rates"


@pytest.fixture
async def operator(web: Web) -> AsyncIterator[httpx.AsyncClient]:
    from zvonok.org import accounts
    from zvonok.org.models import Role

    async with web.db.session() as session:
        await accounts.platform_create_account(session, email="ops@operator.example", password=PASSWORD,
                                               role=Role.PLATFORM_ADMIN, tenant_id=None)
        await session.commit()
    async with web.client() as client:
        assert (await login(client, "ops@operator.example")).status_code == 303
        yield client


async def _finished(client: httpx.AsyncClient, block: httpx.Response) -> str:
    """Follow the progress block's polling URL (as htmx would) until the import has ended."""
    text = block.text
    for _ in range(600):
        found = re.search(r'hx-get="(/operator/tariffs/imports/[^"]+)" hx-trigger="every 1s"', text)
        if found is None:
            return text
        await asyncio.sleep(0.05)
        text = (await client.get(found.group(1), headers={"HX-Request": "true"})).text
    raise AssertionError("the import did not end")


async def _upload(client: httpx.AsyncClient, tariff_id: int, name: str, content: bytes, *,
                  htmx: bool = True) -> httpx.Response:
    page = await client.get(f"/operator/tariffs/{tariff_id}")
    headers = {"HX-Request": "true"} if htmx else {}
    return await client.post(f"/operator/tariffs/{tariff_id}/rates", headers=headers,
                             data={"csrf_token": csrf_of(page.text)}, files={"file": (name, content, "text/csv")})


async def _rate_count(web: Web, tariff_id: int) -> int:
    async with web.db.session() as session:
        return (await pstn_service.rate_counts(session, [tariff_id])).get(tariff_id, 0)


async def test_operator_creates_a_tariff_and_imports_rates_with_progress(web: Web, operator: httpx.AsyncClient) -> None:
    home = await operator.get("/")
    assert 'href="/operator/tariffs"' in home.text and 'href="/trunks"' not in home.text
    r = await _post(operator, "/operator/tariffs", "/operator/tariffs",
                    {"name": "Retail 2026", "currency": "rub", "time_zone": "Europe/Moscow"})
    assert r.status_code == 303
    tariff_id = int(r.headers["location"].rsplit("/", 1)[1])

    block = await _upload(operator, tariff_id, "good.csv", (RATES / "good.csv").read_bytes())
    assert block.status_code == 200 and 'id="import"' in block.text
    assert "<progress" in block.text or 'data-stage="done"' in block.text
    result = await _finished(operator, block)
    assert 'data-stage="done"' in result and "4 rates imported from good.csv" in result
    assert await _rate_count(web, tariff_id) == 4
    page = await operator.get(f"/operator/tariffs/{tariff_id}")
    assert "Москва" in page.text and "+7495" in page.text
    assert "Retail 2026" in (await operator.get("/operator/tariffs")).text

    # a deck with bad rows: every rejected row with its reason, and nothing changed
    block = await _upload(operator, tariff_id, "bad.csv", (RATES / "bad.csv").read_bytes())
    result = await _finished(operator, block)
    assert 'data-stage="rejected"' in result and "4 rows of bad.csv were rejected; nothing was imported" in result
    rejected = re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td></tr>", result)
    assert [int(line) for line, _ in rejected] == [3, 4, 5, 6]
    assert "already on line 2" in rejected[3][1]
    assert await _rate_count(web, tariff_id) == 4
    # the same rows' reasons in the reader's language (the checker says them as templates)
    operator.cookies.set(LANG_COOKIE, "ru")
    try:
        ru = await _finished(operator, await _upload(operator, tariff_id, "bad.csv", (RATES / "bad.csv").read_bytes()))
    finally:
        operator.cookies.delete(LANG_COOKIE)
    reasons = [reason for _, reason in re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td></tr>", ru)]
    assert len(reasons) == 4 and "уже есть в строке 2" in reasons[3]
    assert not any("line" in reason or "prefix" in reason for reason in reasons), reasons

    # without htmx: a redirect to the import's own page, which shows the result when it is done
    r = await _upload(operator, tariff_id, "good.csv", (RATES / "good.csv").read_bytes(), htmx=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/operator/tariffs/imports/")
    job_page = await operator.get(r.headers["location"])
    assert job_page.status_code == 200 and "Retail 2026" in job_page.text
    await _finished(operator, job_page)


async def test_operator_bad_input_is_refused(web: Web, operator: httpx.AsyncClient) -> None:
    r = await _post(operator, "/operator/tariffs", "/operator/tariffs",
                    {"name": "Bad\r\nname", "currency": "XX", "time_zone": "Mars/Olympus"})
    assert r.status_code == 422
    for field in ("name", "currency", "time_zone"):
        assert f'id="{field}-error"' in r.text, field
    async with web.db.session() as session:
        assert (await pstn_service.platform_list_tariffs(session))[1] == 0
        tariff = await pstn_service.platform_create_tariff(session, s.TariffCreate(name="T"))
        await session.commit()
    r = await _upload(operator, tariff.id, "empty.csv", b"")
    assert r.status_code == 422 and 'id="upload-error"' in r.text
    assert (await operator.get("/operator/tariffs/999999")).status_code == 404
    assert (await operator.get("/operator/tariffs/imports/nope")).status_code == 404
    assert (await operator.get("/trunks")).status_code == 403  # a company's page: the operator has none


async def test_tenant_admins_and_employees_may_not_open_the_operator_pages(
        web: Web, a: Company, admin_a: httpx.AsyncClient, employee_a: httpx.AsyncClient) -> None:
    async with web.db.session() as session:
        tariff = await pstn_service.platform_create_tariff(session, s.TariffCreate(name="T"))
        await session.commit()
    for client in (admin_a, employee_a):
        for url in ("/operator/tariffs", f"/operator/tariffs/{tariff.id}"):
            assert (await client.get(url)).status_code == 403, url
        token = csrf_of((await client.get("/")).text)
        r = await client.post("/operator/tariffs", data={"csrf_token": token, "name": "Mine", "currency": "RUB",
                                                         "time_zone": "UTC"})
        assert r.status_code == 403
        r = await client.post(f"/operator/tariffs/{tariff.id}/rates", data={"csrf_token": token},
                              files={"file": ("good.csv", (RATES / "good.csv").read_bytes(), "text/csv")})
        assert r.status_code == 403
    assert await _rate_count(web, tariff.id) == 0
    async with web.db.session() as session:
        assert (await pstn_service.platform_list_tariffs(session))[1] == 1


async def test_the_pages_speak_the_companys_language(web: Web, b: Company, admin_b: httpx.AsyncClient) -> None:
    expected = {"/trunks": "Транки", "/routes": "Исходящие маршруты", "/permissions": "Права на звонки",
                "/pins": "PIN-коды номера доступа", "/billing": "Лимиты расходов"}
    for url, title in expected.items():
        r = await admin_b.get(url)
        assert r.status_code == 200 and f"<h1>{title}</h1>" in r.text, url


async def test_trunk_over_tls_with_the_certificate_switch(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    form = {**TRUNK_FORM, "transport": "tls", "port": "5061", "tls_verify": "1"}
    r = await _post(admin_a, "/trunks", "/trunks", form)
    assert r.status_code == 303
    async with web.db.session() as session:
        trunk = (await session.execute(select(Trunk).where(Trunk.tenant_id == a.id))).scalar_one()
    assert trunk.transport == "tls"
    page = await admin_a.get(f"/trunks/{trunk.id}")
    assert '<option value="tls" selected>' in page.text and 'name="tls_verify" value="1" checked' in page.text
    unchecked = {k: v for k, v in form.items() if k != "tls_verify"} | {"password": ""}
    r = await _post(admin_a, f"/trunks/{trunk.id}", f"/trunks/{trunk.id}", unchecked)
    assert r.status_code == 303
    async with web.db.session() as session:
        stored = await session.get(Trunk, trunk.id)
        assert stored is not None and stored.transport == "tls-any"  # a self-signed office PBX
    page = await admin_a.get(f"/trunks/{trunk.id}")
    assert '<option value="tls" selected>' in page.text and 'name="tls_verify" value="1">' in page.text
