"""The company admin pages: settings, the organisation tree, numbers and API tokens.

Happy paths, bad input (a 4xx page with the message next to the field), tenant isolation (B's admin
gets 404 on A's ids) and roles (an employee gets 403). Fixtures come from test_web.
"""

from __future__ import annotations

import re

import httpx
import pytest
import test_web
from sqlalchemy import select
from test_web import Company, Web, csrf_of, login

from zvonok.org import accounts, schemas, service
from zvonok.org.models import ApiToken, Department, Employee, Office
from zvonok.pstn import schemas as pstn_schemas
from zvonok.pstn import service as pstn_service
from zvonok.web.pages.org import build_tree

# test_web's fixtures: the app, companies A and B, A's admin logged in
web, a, b, admin_a = test_web.web, test_web.a, test_web.b, test_web.admin_a

pytestmark = pytest.mark.filterwarnings("error")


async def _number(web: Web, tenant_id: int, e164: str) -> int:
    async with web.db.session() as session:
        number = await pstn_service.platform_create_number(session, pstn_schemas.NumberCreate(number=e164))
        await pstn_service.platform_assign_number(session, number.id, tenant_id)
        await session.commit()
        return number.id


async def _office(web: Web, tenant_id: int, name: str) -> int:
    async with web.db.session() as session:
        office = await service.create_office(session, tenant_id, schemas.OfficeCreate(name=name))
        await session.commit()
        return office.id


async def _post(client: httpx.AsyncClient, page: str, path: str, data: dict[str, object]) -> httpx.Response:
    token = csrf_of((await client.get(page)).text)
    return await client.post(path, data={**data, "csrf_token": token})


# --- settings --------------------------------------------------------------------------------------
async def test_settings_save_and_show_field_errors(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    page = await admin_a.get("/settings")
    assert page.status_code == 200 and 'value="Europe/Moscow"' in page.text and "a.example" in page.text
    r = await _post(admin_a, "/settings", "/settings", {"name": "Acme Ltd", "timezone": "Asia/Yekaterinburg",
                                                        "currency": "eur", "locale": "en-GB"})
    assert r.status_code == 303 and r.headers["location"] == "/settings?saved=1"
    async with web.db.session() as session:
        tenant = await service.get_tenant(session, a.id)
        assert (tenant.name, tenant.timezone, tenant.currency, tenant.locale) == (
            "Acme Ltd", "Asia/Yekaterinburg", "EUR", "en-GB")
    saved = await admin_a.get(r.headers["location"])
    assert 'id="saved"' in saved.text and "Acme Ltd" in saved.text

    bad = await _post(admin_a, "/settings", "/settings", {"name": "", "timezone": "Mars/Olympus",
                                                          "currency": "EURO", "locale": "english"})
    assert bad.status_code == 422
    for field, message in (("name", "Required: up to 200 characters"), ("timezone", "Unknown time zone"),
                           ("currency", "A three-letter currency code"), ("locale", "A language code")):
        assert re.search(rf'id="settings-{field}-error">{message}', bad.text), field
    assert 'value="Mars/Olympus"' in bad.text  # the input is kept for correction
    async with web.db.session() as session:
        assert (await service.get_tenant(session, a.id)).timezone == "Asia/Yekaterinburg"


# --- the organisation tree -------------------------------------------------------------------------
async def test_offices_departments_and_employees(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    r = await _post(admin_a, "/org", "/org/offices", {"name": "Kazan", "city": "Kazan"})
    assert r.status_code == 303
    async with web.db.session() as session:
        office = (await session.execute(select(Office).where(Office.tenant_id == a.id))).scalar_one()
    assert r.headers["location"] == f"/org#office-{office.id}"
    r = await _post(admin_a, "/org", "/org/departments", {"name": "Sales", "office_id": str(office.id)})
    assert r.status_code == 303
    async with web.db.session() as session:
        dept = (await session.execute(select(Department).where(Department.tenant_id == a.id))).scalar_one()
    r = await _post(admin_a, "/org", "/org/departments", {"name": "Key accounts", "parent_id": str(dept.id)})
    assert r.status_code == 303
    r = await _post(admin_a, "/org", "/org/employees", {
        "full_name": "Olga Admin", "email": "olga@a.example", "office_id": str(office.id),
        "department_id": str(dept.id), "role": "tenant_admin", "web_password": "olga-secret-1"})
    assert r.status_code == 303
    async with web.db.session() as session:
        olga = (await session.execute(select(Employee).where(Employee.email == "olga@a.example"))).scalar_one()
        account = await accounts.account_for_employee(session, a.id, olga.id)
    assert account is not None and account.role == "tenant_admin"

    tree = (await admin_a.get("/org")).text
    office_html = tree[tree.index(f'id="office-{office.id}"'):tree.index('id="no-office"')]
    dept_html = office_html[office_html.index(f'id="department-{dept.id}"'):]
    assert "Key accounts" in dept_html and f'id="employee-{olga.id}"' in dept_html  # nested
    assert "Ivan" in tree[tree.index('id="no-office"'):]  # the fixture's employee has no office

    # rename, then the refused deletion of an office in use, then the edit and deactivation
    r = await _post(admin_a, "/org", f"/org/offices/{office.id}", {"name": "Kazan HQ"})
    assert r.status_code == 303
    r = await _post(admin_a, "/org", f"/org/offices/{office.id}/delete", {})
    assert r.status_code == 409 and "Still in use" in r.text and "Kazan HQ" in r.text
    r = await _post(admin_a, f"/org/employees/{olga.id}", f"/org/employees/{olga.id}", {
        "full_name": "Olga Smirnova", "email": "olga@a.example", "office_id": str(office.id),
        "department_id": "", "role": "employee"})
    assert r.status_code == 303
    r = await _post(admin_a, "/org", f"/org/employees/{olga.id}/active", {"active": "0"})
    assert r.status_code == 303
    async with web.db.session() as session:
        olga = await service.get_employee(session, a.id, olga.id)
        account = await accounts.account_for_employee(session, a.id, olga.id)
    assert (olga.full_name, olga.department_id, olga.active) == ("Olga Smirnova", None, False)
    assert account is not None and account.role == "employee"
    async with web.client() as client:  # a deactivated employee's login no longer works
        assert (await login(client, "olga@a.example", "olga-secret-1")).status_code == 401
    tree = (await admin_a.get("/org")).text
    assert "Reactivate" in tree and "deactivated" in tree

    # an empty department and office can go
    async with web.db.session() as session:
        sub = (await session.execute(select(Department).where(Department.name == "Key accounts"))).scalar_one()
    assert (await _post(admin_a, "/org", f"/org/departments/{sub.id}/delete", {})).status_code == 303
    assert "Key accounts" not in (await admin_a.get("/org")).text


async def test_an_employees_fax_email_on_their_page(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    async with web.db.session() as session:
        ivan = (await session.execute(select(Employee).where(Employee.tenant_id == a.id))).scalar_one()
    page = f"/org/employees/{ivan.id}"
    form = {"full_name": "Ivan", "email": "ivan@a.example", "office_id": "", "department_id": "", "role": "employee"}
    r = await _post(admin_a, page, page, {**form, "fax_email": "nope"})
    assert r.status_code == 422 and 'id="employee-fax_email-error"' in r.text
    r = await _post(admin_a, page, page, {**form, "fax_email": "ivan.fax@a.example"})
    assert r.status_code == 303
    async with web.db.session() as session:
        assert (await service.get_employee(session, a.id, ivan.id)).fax_email == "ivan.fax@a.example"
    assert 'value="ivan.fax@a.example"' in (await admin_a.get(page)).text
    r = await _post(admin_a, page, page, {**form, "fax_email": ""})  # empty: faxes go to the e-mail again
    assert r.status_code == 303
    async with web.db.session() as session:
        assert (await service.get_employee(session, a.id, ivan.id)).fax_email is None


async def test_org_forms_show_errors_next_to_fields(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    office_id = await _office(web, a.id, "Moscow")
    r = await _post(admin_a, "/org", "/org/offices", {"name": "Moscow"})
    assert r.status_code == 409 and 'id="new-office-name-error">This name is already taken.' in r.text
    r = await _post(admin_a, "/org", "/org/offices", {"name": "  "})
    assert r.status_code == 422 and 'id="new-office-name-error">Required' in r.text
    r = await _post(admin_a, "/org", f"/org/offices/{office_id}", {"name": "bad\nname"})
    assert r.status_code == 422 and f'id="office-{office_id}-name-error">Required' in r.text
    r = await _post(admin_a, "/org", "/org/departments", {"name": "Sales", "office_id": "x1"})
    assert r.status_code == 422 and "Choose from the list." in r.text
    r = await _post(admin_a, "/org", "/org/employees", {"full_name": "Petr", "email": "not-an-email"})
    assert r.status_code == 422 and 'id="new-employee-email-error">Not a valid email address.' in r.text
    r = await _post(admin_a, "/org", "/org/employees", {"full_name": "Petr", "email": "ivan@a.example"})
    assert r.status_code == 409 and "Another employee or login already has this email." in r.text
    r = await _post(admin_a, "/org", "/org/employees", {"full_name": "Petr", "web_password": "short"})
    assert r.status_code == 422 and 'id="new-employee-web_password-error">At least 8 characters.' in r.text
    r = await _post(admin_a, "/org", "/org/employees", {"full_name": "Petr", "web_password": "long-enough-1"})
    assert r.status_code == 422 and "A login needs the employee" in r.text
    async with web.db.session() as session:
        ivan = (await session.execute(select(Employee).where(Employee.email == "ivan@a.example"))).scalar_one()
        petr = await service.create_employee(session, a.id, schemas.EmployeeCreate(full_name="Petr"))
        await session.commit()
    r = await _post(admin_a, f"/org/employees/{petr.id}", f"/org/employees/{petr.id}",
                    {"full_name": "Petr", "role": "tenant_admin"})
    assert r.status_code == 422 and 'id="employee-role-error">The employee has no login' in r.text
    r = await _post(admin_a, f"/org/employees/{ivan.id}", f"/org/employees/{ivan.id}",
                    {"full_name": "Ivan", "email": "", "role": "employee"})
    assert r.status_code == 422 and "the email cannot be removed" in r.text
    async with web.db.session() as session:
        assert (await session.execute(select(Office))).scalars().all()[0].name == "Moscow"
        assert (await service.get_employee(session, a.id, ivan.id)).email == "ivan@a.example"


def test_the_tree_nests_departments_and_places_the_rest() -> None:
    moscow = Office(id=1, tenant_id=1, name="Moscow")
    sales = Department(id=10, tenant_id=1, name="Sales", office_id=1, parent_id=None)
    key = Department(id=11, tenant_id=1, name="Key", office_id=None, parent_id=10)
    support = Department(id=12, tenant_id=1, name="Support", office_id=None, parent_id=None)  # company-wide
    people = [Employee(id=100, tenant_id=1, full_name="In key", office_id=1, department_id=11),
              Employee(id=101, tenant_id=1, full_name="In office", office_id=1, department_id=None),
              Employee(id=102, tenant_id=1, full_name="Nowhere", office_id=None, department_id=None),
              Employee(id=103, tenant_id=1, full_name="Moscow support", office_id=1, department_id=12),
              Employee(id=104, tenant_id=1, full_name="Remote support", office_id=None, department_id=12)]
    office, nowhere = build_tree([moscow], [sales, key, support], people)
    assert [n.department.name for n in office.departments] == ["Sales"]
    assert office.departments[0].children[0].employees[0].full_name == "In key"  # Key is kept in Moscow too
    assert [e.full_name for e in office.employees] == ["In office"]
    assert [(d.name, [e.full_name for e in people]) for d, people in office.groups.values()] == [
        ("Support", ["Moscow support"])]  # listed in their office, under the department's name
    assert nowhere.office is None and [n.department.name for n in nowhere.departments] == ["Support"]
    assert [e.full_name for e in nowhere.departments[0].employees] == ["Remote support"]
    assert [e.full_name for e in nowhere.employees] == ["Nowhere"]


# --- numbers ---------------------------------------------------------------------------------------
async def test_a_numbers_destination_and_schedule(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    number_id = await _number(web, a.id, "+74951234567")
    page = await admin_a.get("/numbers")
    assert page.status_code == 200 and "+74951234567" in page.text and "not routed yet" in page.text
    r = await _post(admin_a, f"/numbers/{number_id}", f"/numbers/{number_id}", {"kind": "extension", "target": "101"})
    assert r.status_code == 303
    page = await admin_a.get(r.headers["location"])
    assert "extension 101" in page.text and 'id="saved"' in page.text

    r = await _post(admin_a, f"/numbers/{number_id}", f"/numbers/{number_id}", {
        "kind": "schedule", "days": ["0", "1", "2", "3", "4"], "from": "09:00", "to": "18:00",
        "in_kind": "ring", "in_target": "101", "out_kind": "voicemail", "out_target": "101"})
    assert r.status_code == 303, r.text
    async with web.db.session() as session:
        number = await pstn_service.get_number(session, a.id, number_id)
    assert number.destination_kind == "schedule"
    assert number.destination["rules"] == [{"days": [0, 1, 2, 3, 4], "from": "09:00", "to": "18:00",
                                            "destination": {"kind": "ring", "numbers": ["101"]}}]
    assert number.destination["default"] == {"kind": "voicemail", "number": "101"}
    form = (await admin_a.get(f"/numbers/{number_id}")).text
    assert 'name="days" value="4" checked' in form and 'name="days" value="5">' in form
    assert 'value="09:00"' in form

    # the second rule and the holidays (API-only) survive an edit of the first
    async with web.db.session() as session:
        extra = {"days": [5], "from": "10:00", "to": "14:00", "destination": {"kind": "extension", "number": "101"}}
        await pstn_service.update_number(session, a.id, number_id, pstn_schemas.NumberUpdate(
            destination={**number.destination, "rules": [*number.destination["rules"], extra],
                         "holidays": ["2027-01-01"]}))
        await session.commit()
    r = await _post(admin_a, f"/numbers/{number_id}", f"/numbers/{number_id}", {
        "kind": "schedule", "days": ["0", "1", "2", "3"], "from": "08:00", "to": "17:00",
        "in_kind": "extension", "in_target": "101", "out_kind": "external", "out_target": "+7 (495) 765-43-21"})
    assert r.status_code == 303, r.text
    async with web.db.session() as session:
        number = await pstn_service.get_number(session, a.id, number_id)
    assert number.destination["rules"][0]["days"] == [0, 1, 2, 3] and number.destination["rules"][1] == extra
    assert number.destination["holidays"] == ["2027-01-01"]
    assert number.destination["default"] == {"kind": "external", "number": "+74957654321"}


async def test_a_number_answered_by_the_fax_machine(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    number_id = await _number(web, a.id, "+74951234568")
    r = await _post(admin_a, f"/numbers/{number_id}", f"/numbers/{number_id}", {"kind": "fax", "target": ""})
    assert r.status_code == 303, r.text
    async with web.db.session() as session:
        number = await pstn_service.get_number(session, a.id, number_id)
    assert (number.destination_kind, number.destination) == ("fax", {})
    page = (await admin_a.get("/numbers")).text
    assert "fax: documents are kept" in page and "not routed yet" not in page
    form = (await admin_a.get(f"/numbers/{number_id}")).text
    assert '<option value="fax" selected>' in form
    # the "where exactly" field takes the addresses each fax is e-mailed to
    r = await _post(admin_a, f"/numbers/{number_id}", f"/numbers/{number_id}",
                    {"kind": "fax", "target": "office@a.example, boss@a.example"})
    assert r.status_code == 303, r.text
    async with web.db.session() as session:
        number = await pstn_service.get_number(session, a.id, number_id)
    assert number.destination == {"emails": ["office@a.example", "boss@a.example"]}
    assert 'value="office@a.example, boss@a.example"' in (await admin_a.get(f"/numbers/{number_id}")).text
    r = await _post(admin_a, f"/numbers/{number_id}", f"/numbers/{number_id}", {"kind": "fax", "target": "office"})
    assert r.status_code == 422 and "E-mail addresses to send each fax to" in r.text
    # an employee's own fax line: their extension's number (the fax goes to their fax e-mail), and a copy
    r = await _post(admin_a, f"/numbers/{number_id}", f"/numbers/{number_id}",
                    {"kind": "fax", "target": "101, office@a.example"})
    assert r.status_code == 303, r.text
    async with web.db.session() as session:
        number = await pstn_service.get_number(session, a.id, number_id)
    assert number.destination == {"emails": ["office@a.example"], "number": "101"}
    assert 'value="101, office@a.example"' in (await admin_a.get(f"/numbers/{number_id}")).text
    assert "fax of extension 101" in (await admin_a.get("/numbers")).text
    r = await _post(admin_a, f"/numbers/{number_id}", f"/numbers/{number_id}", {"kind": "fax", "target": "109"})
    assert r.status_code == 422  # no such extension: nothing saved
    async with web.db.session() as session:
        assert (await pstn_service.get_number(session, a.id, number_id)).destination["number"] == "101"


async def test_number_form_errors(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    number_id = await _number(web, a.id, "+74951234568")
    page, path = f"/numbers/{number_id}", f"/numbers/{number_id}"
    r = await _post(admin_a, page, path, {"kind": "extension", "target": "999"})
    assert r.status_code == 422 and 'id="number-target-error">Extension 999 does not exist.' in r.text
    r = await _post(admin_a, page, path, {"kind": "external", "target": "8495"})
    assert r.status_code == 422 and "A number in international form" in r.text
    r = await _post(admin_a, page, path, {"kind": "ring", "target": "101", "timeout": "2"})
    assert r.status_code == 422 and 'id="number-timeout-error">Whole seconds from 5 to 600.' in r.text
    r = await _post(admin_a, page, path, {"kind": "teleport", "target": "101"})
    assert r.status_code == 422 and 'id="number-kind-error">Choose from the list.' in r.text
    r = await _post(admin_a, page, path, {"kind": "schedule", "from": "9", "to": "18:00", "days": ["0"],
                                          "in_kind": "extension", "in_target": "101",
                                          "out_kind": "voicemail", "out_target": "101"})
    assert r.status_code == 422 and 'id="number-from-error">A time HH:MM.' in r.text
    r = await _post(admin_a, page, path, {"kind": "schedule", "from": "09:00", "to": "18:00",
                                          "in_kind": "extension", "in_target": "101",
                                          "out_kind": "voicemail", "out_target": "101"})
    assert r.status_code == 422 and 'id="number-days-error">Choose at least one day.' in r.text
    r = await _post(admin_a, page, path, {"kind": "schedule", "from": "09:00", "to": "18:00", "days": ["0"],
                                          "in_kind": "extension", "in_target": "101",
                                          "out_kind": "voicemail", "out_target": "55555"})
    assert r.status_code == 422 and 'id="number-out_target-error">Extension 55555 does not exist.' in r.text
    async with web.db.session() as session:
        assert (await pstn_service.get_number(session, a.id, number_id)).destination == {}


# --- API tokens ------------------------------------------------------------------------------------
async def test_tokens_create_shows_the_secret_once_and_revoke(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    r = await _post(admin_a, "/tokens", "/tokens", {"name": "CRM sync", "role": "employee"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    secret = re.search(r'<code id="token-secret">([^<]+)</code>', r.text)
    assert secret
    me = await admin_a.get("/api/v1/me", headers={"Authorization": f"Bearer {secret.group(1)}"})
    assert me.status_code == 200 and me.json()["role"] == "employee"
    listing = await admin_a.get("/tokens")
    assert "CRM sync" in listing.text and secret.group(1) not in listing.text
    async with web.db.session() as session:
        token = (await session.execute(select(ApiToken).where(ApiToken.tenant_id == a.id))).scalar_one()
    r = await _post(admin_a, "/tokens", f"/tokens/{token.id}/revoke", {})
    assert r.status_code == 303
    assert 'data-state="revoked"' in (await admin_a.get("/tokens")).text
    me = await admin_a.get("/api/v1/me", headers={"Authorization": f"Bearer {secret.group(1)}"})
    assert me.status_code == 401

    bad = await _post(admin_a, "/tokens", "/tokens", {"name": "", "role": "platform_admin"})
    assert bad.status_code == 422
    assert 'id="token-name-error">Required' in bad.text and 'id="token-role-error">Choose a role' in bad.text


# --- isolation and roles ---------------------------------------------------------------------------
async def test_another_companys_admin_gets_404_on_its_ids(web: Web, a: Company, b: Company) -> None:
    office_id = await _office(web, a.id, "A's office")
    number_id = await _number(web, a.id, "+74951234569")
    async with web.db.session() as session:
        dept = await service.create_department(session, a.id, schemas.DepartmentCreate(name="A's dept"))
        emp = (await session.execute(select(Employee).where(Employee.tenant_id == a.id))).scalar_one()
        token = await accounts.create_api_token(session, a.id, "A's token", accounts.Role.TENANT_ADMIN)
        await session.commit()
    async with web.client() as client:
        assert (await login(client, b.admin)).status_code == 303
        for path in (f"/org/employees/{emp.id}", f"/numbers/{number_id}"):
            r = await client.get(path)
            assert r.status_code == 404 and "<html" in r.text, path
        posts = {
            f"/org/offices/{office_id}": {"name": "Taken"}, f"/org/offices/{office_id}/delete": {},
            f"/org/departments/{dept.id}": {"name": "Taken"}, f"/org/departments/{dept.id}/delete": {},
            f"/org/employees/{emp.id}": {"full_name": "Taken"}, f"/org/employees/{emp.id}/active": {"active": "0"},
            f"/numbers/{number_id}": {"kind": "extension", "target": "101"},
            f"/tokens/{token.token.id}/revoke": {},
        }
        for path, data in posts.items():
            r = await _post(client, "/org", path, data)
            assert r.status_code == 404, (path, r.status_code)
        # nor do A's things show on B's pages, nor can B's forms point at A's office
        assert "A&#39;s office" not in (await client.get("/org")).text
        assert "+74951234569" not in (await client.get("/numbers")).text
        assert "A&#39;s token" not in (await client.get("/tokens")).text
        r = await _post(client, "/org", "/org/departments", {"name": "Sneaky", "office_id": str(office_id)})
        assert r.status_code == 422 and "Выберите из списка." in r.text  # B's console speaks Russian
    async with web.db.session() as session:
        assert (await service.get_office(session, a.id, office_id)).name == "A's office"
        assert (await service.get_employee(session, a.id, emp.id)).active
        assert (await pstn_service.get_number(session, a.id, number_id)).destination == {}
        assert (await session.get(ApiToken, token.token.id)).revoked_at is None  # type: ignore[union-attr]


@pytest.mark.parametrize("path", ["/settings", "/org", "/numbers", "/tokens"])
async def test_employees_get_403_and_no_menu_entry(web: Web, a: Company, path: str) -> None:
    async with web.client() as client:
        assert (await login(client, a.employee)).status_code == 303
        home = await client.get("/")
        assert f'href="{path}"' not in home.text
        assert (await client.get(path)).status_code == 403
        r = await client.post(path, data={"csrf_token": csrf_of(home.text), "name": "x"})
        assert r.status_code in (403, 405)


@pytest.mark.parametrize("path", ["/settings", "/org/offices", "/tokens"])
async def test_posts_without_csrf_are_refused(admin_a: httpx.AsyncClient, path: str) -> None:
    r = await admin_a.post(path, data={"name": "No token"})
    assert r.status_code == 403


async def test_admin_menu_has_the_pages(admin_a: httpx.AsyncClient) -> None:
    home = (await admin_a.get("/")).text
    hrefs = re.findall(r'<li><a href="(/[a-z]+)"', home)
    assert [h for h in hrefs if h in ("/org", "/numbers", "/tokens", "/settings")] == [
        "/org", "/numbers", "/settings", "/tokens"]
