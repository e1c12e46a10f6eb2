"""The employee portal (/me) and the operator's pages (/operator/...) on the ASGI app.

Fixtures come from test_web.py (a company per test with an admin and an employee login).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select
from test_web import PASSWORD, Company, Web, a, b, csrf_of, login, web  # noqa: F401 - fixtures

from zvonok.config import Settings
from zvonok.org import accounts, schemas, service
from zvonok.org.credentials import sip_ha1s
from zvonok.org.models import Account, Role, Tenant
from zvonok.org.softphone import softphone_accounts
from zvonok.pstn import policies
from zvonok.pstn.models import PhoneNumber
from zvonok.telephony.location import Binding

OPERATOR = "operator@platform.example"


@pytest.fixture
async def employee_a(web: Web, a: Company) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with web.client() as client:
        assert (await login(client, a.employee)).status_code == 303
        yield client


@pytest.fixture
async def operator(web: Web) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with web.db.session() as session:
        await accounts.platform_create_account(session, email=OPERATOR, password=PASSWORD, role=Role.PLATFORM_ADMIN)
        await session.commit()
    async with web.client() as client:
        assert (await login(client, OPERATOR)).status_code == 303
        yield client


def _binding(tenant_id: int, extension_id: int, number: str, agent: str) -> Binding:
    return Binding(tenant_id=tenant_id, extension_id=extension_id, aor=f"sip:{number}@a.example",
                   contact=f"sip:{number}@192.0.2.9:5060", expires_at=time.time() + 600,
                   source="udp:192.0.2.9:5060", user_agent=agent)


# --- the softphone description ---------------------------------------------------------------------
def test_the_account_line_names_everything_a_phone_needs(tmp_path: object) -> None:
    settings = Settings(sip_host="0.0.0.0", sip_port=5070, sip_tls_cert="/x/cert.pem", sip_tls_port=5071)  # noqa: S104
    udp, tcp, tls = softphone_accounts(settings, number="101", domain="a.example", password="pw-123456",
                                       fallback_host="pbx.example.net")
    assert udp.account_line() == '<sip:101@a.example>;auth_pass=pw-123456;outbound="sip:pbx.example.net:5070"'
    assert tcp.account_line().endswith('outbound="sip:pbx.example.net:5070;transport=tcp"')
    assert tls.account_line() == ('<sip:101@a.example;transport=tls>;auth_pass=pw-123456;'
                                  'outbound="sip:pbx.example.net:5071;transport=tls";mediaenc=srtp-mand')
    advertised = Settings(sip_host="::1", sip_port=5060)
    (first, _tcp) = softphone_accounts(advertised, number="7", domain="d.example")
    assert first.server == "[::1]:5060" and "auth_pass" not in first.account_line()


# --- the employee portal ---------------------------------------------------------------------------
async def test_employee_sees_only_own_extensions_and_devices(web: Web, a: Company,  # noqa: F811
                                                             employee_a: httpx.AsyncClient) -> None:
    async with web.db.session() as session:
        colleague, _ = await service.create_extension(
            session, a.id, schemas.ExtensionCreate(number="102", display_name="Front desk"))
        await session.commit()
    web.location.put(_binding(a.id, a.extension_id, "101", "My Phone 2.0"))
    web.location.put(_binding(a.id, colleague.id, "102", "Their Phone 9.9"))
    page = await employee_a.get("/me")
    assert page.status_code == 200
    assert 'id="phone-101"' in page.text and "My Phone 2.0" in page.text and "1 device online" in page.text
    assert 'id="phone-102"' not in page.text and "Their Phone" not in page.text and "Front desk" not in page.text
    assert 'href="/me"' in page.text  # the menu entry
    cell = await employee_a.get(f"/me/extensions/{a.extension_id}/devices")
    assert cell.status_code == 200 and "My Phone 2.0" in cell.text and "<html" not in cell.text
    # a colleague's extension (same company) and the admin pages are not the employee's
    assert (await employee_a.get(f"/me/extensions/{colleague.id}/devices")).status_code == 404
    assert (await employee_a.get(f"/extensions/{colleague.id}/devices")).status_code == 403


async def test_another_companys_extension_is_not_found(web: Web, a: Company, b: Company,  # noqa: F811
                                                       employee_a: httpx.AsyncClient) -> None:
    r = await employee_a.get(f"/me/extensions/{b.extension_id}/devices")
    assert r.status_code == 404
    page = await employee_a.get("/me")
    r = await employee_a.post(f"/me/extensions/{b.extension_id}/password", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 404


async def test_setup_card_has_the_account_and_a_qr_code(web: Web, a: Company,  # noqa: F811
                                                        employee_a: httpx.AsyncClient) -> None:
    page = await employee_a.get("/me")
    text = page.text
    assert re.search(r'<svg viewBox="0 0 \d+ \d+"[^>]* role="img" aria-label="QR code of the account of '
                     r'extension 101"', text) or re.search(r'<svg role="img" aria-label="QR code of the account '
                                                           r'of extension 101"', text)
    assert 'class="qr"' in text and "<path" in text
    assert 'value="a.example"' in text and 'value="101"' in text
    assert "&lt;sip:101@a.example&gt;;outbound=&#34;sip:127.0.0.1:5060&#34;" in text  # no password in it
    assert "auth_pass" not in text


async def test_reset_password_shows_it_once_and_the_old_one_stops_working(
        web: Web, a: Company, employee_a: httpx.AsyncClient) -> None:  # noqa: F811
    async with web.db.session() as session:
        await service.set_extension_password(session, a.id, a.extension_id, "the-old-password")
        await session.commit()
        ext = await service.get_extension(session, a.id, a.extension_id)
        assert (ext.ha1_md5, ext.ha1_sha256) == sip_ha1s("101", "a.example", "the-old-password")
    page = await employee_a.get("/me")
    r = await employee_a.post(f"/me/extensions/{a.extension_id}/password", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 200
    shown = re.search(r'id="new-password-101">.*?<code>([^<]+)</code>', r.text, re.S)
    assert shown, r.text
    new = shown.group(1)
    assert len(new) >= 12 and f";auth_pass={new};" in r.text.replace("&#34;", '"')
    async with web.db.session() as session:
        creds = await service.sip_credentials(session, "a.example", "101")
    assert creds is not None
    # the digest's HA1 is the new password's; the old one no longer verifies
    assert (creds.ha1_md5, creds.ha1_sha256) == sip_ha1s("101", "a.example", new)
    assert creds.ha1_md5 != sip_ha1s("101", "a.example", "the-old-password")[0]
    again = await employee_a.get("/me")
    assert new not in again.text  # shown once
    # no CSRF token: refused, nothing changed
    assert (await employee_a.post(f"/me/extensions/{a.extension_id}/password")).status_code == 403


async def test_pin_set_refused_and_cleared(web: Web, a: Company, employee_a: httpx.AsyncClient) -> None:  # noqa: F811
    page = await employee_a.get("/me")
    assert "No PIN is set." in page.text
    token = csrf_of(page.text)
    for pin, confirm, message in (("1212", "1212", "a repeated group"), ("1234", "1234", "a run of digits"),
                                  ("12", "12", "4 to 8 digits."), ("5790", "5791", "The two PINs differ."),
                                  ("0101", "0101", "a repeated group")):
        r = await employee_a.post("/me/pin", data={"pin": pin, "confirm": confirm, "csrf_token": token})
        assert r.status_code == 422 and message in r.text, (pin, r.text)
        assert f'value="{pin}"' not in r.text
    async with web.db.session() as session:
        emp = await service.update_employee(session, a.id, (await _employee_id(web, a)),
                                            schemas.EmployeeUpdate(phone="+7 495 555-5790"))
        await session.commit()
    r = await employee_a.post("/me/pin", data={"pin": "5790", "confirm": "5790", "csrf_token": token})
    assert r.status_code == 422 and "the end of your extension or phone number" in r.text
    r = await employee_a.post("/me/pin", data={"pin": "4827", "confirm": "4827", "csrf_token": token})
    assert r.status_code == 200 and "Your PIN is set." in r.text and "A PIN is set." in r.text
    assert "4827" not in r.text  # never shown back
    async with web.db.session() as session:
        row = await policies.get_pin(session, a.id, emp.id)
        assert row is not None and row.pin_hash.startswith("$argon2")
    r = await employee_a.post("/me/pin/clear", data={"csrf_token": token})
    assert r.status_code == 200 and "Your PIN is cleared" in r.text and "No PIN is set." in r.text
    async with web.db.session() as session:
        assert await policies.get_pin(session, a.id, emp.id) is None
    r = await employee_a.post("/me/pin/clear", data={"csrf_token": token})
    assert r.status_code == 200 and "You had no PIN." in r.text
    assert (await employee_a.post("/me/pin", data={"pin": "4827", "confirm": "4827"})).status_code == 403


async def _employee_id(app: Web, company: Company) -> int:
    async with app.db.session() as session:
        account = (await session.execute(select(Account).where(Account.email == company.employee))).scalar_one()
        assert account.employee_id is not None
        return account.employee_id


async def test_an_admin_without_an_employee_gets_an_explanation(web: Web, a: Company) -> None:  # noqa: F811
    async with web.client() as client:
        await login(client, a.admin)
        home = await client.get("/")
        assert 'href="/me"' not in home.text
        page = await client.get("/me")
        assert page.status_code == 200 and "not linked to an employee" in page.text


async def test_an_admin_who_is_an_employee_sees_their_own_phone(web: Web, a: Company) -> None:  # noqa: F811
    async with web.db.session() as session:
        boss = await service.create_employee(session, a.id, schemas.EmployeeCreate(
            full_name="Anna Boss", email="anna@a.example", web_password=PASSWORD, role="tenant_admin"))
        await service.create_extension(session, a.id, schemas.ExtensionCreate(
            number="150", display_name="Anna desk", employee_id=boss.id))
        await session.commit()
    async with web.client() as client:
        assert (await login(client, "anna@a.example")).status_code == 303
        page = await client.get("/me")
        assert page.status_code == 200 and 'id="phone-150"' in page.text and 'id="phone-101"' not in page.text
        assert (await client.get("/extensions")).status_code == 200  # still the company's admin


# --- the operator's pages --------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/operator/companies", "/operator/numbers"])
async def test_operator_pages_are_the_operators_only(web: Web, a: Company, employee_a: httpx.AsyncClient,  # noqa: F811
                                                     path: str) -> None:
    assert (await employee_a.get(path)).status_code == 403
    async with web.client() as client:
        await login(client, a.admin)
        r = await client.get(path)
        assert r.status_code == 403 and "Access denied" in r.text
        home = await client.get("/")
        r = await client.post(path, data={"csrf_token": csrf_of(home.text), "name": "X", "numbers": "+74951234567"})
        assert r.status_code == 403
    async with web.client() as anonymous:
        assert (await anonymous.get(path)).status_code == 303


async def test_operator_lists_companies_with_counts(web: Web, a: Company, b: Company,  # noqa: F811
                                                   operator: httpx.AsyncClient) -> None:
    page = await operator.get("/operator/companies")
    assert page.status_code == 200
    row = re.search(rf'<tr id="company-{a.id}">(.*?)</tr>', page.text, re.S)
    assert row and "a.example" in row.group(1)
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', row.group(1)) == ["1", "1", "0", "1"]
    assert 'href="/operator/numbers"' in page.text
    found = await operator.get("/operator/companies?q=b.exam")
    assert f'id="company-{b.id}"' in found.text and f'id="company-{a.id}"' not in found.text


async def test_operator_creates_a_company_with_its_admin(web: Web, a: Company,  # noqa: F811
                                                        operator: httpx.AsyncClient) -> None:
    token = csrf_of((await operator.get("/operator/companies")).text)
    form = {"name": "Acme", "sip_domain": "Acme.Example", "timezone": "Europe/Moscow", "currency": "rub",
            "locale": "ru-RU", "admin_email": "boss@acme.example", "admin_password": "", "csrf_token": token}
    r = await operator.post("/operator/companies", data=form)
    assert r.status_code == 200 and "Company Acme (acme.example) created" in r.text
    password = re.search(r'id="created">.*?<code>([^<]+)</code>', r.text, re.S)
    assert password
    async with web.client() as client:  # the new admin can log in and sees their company
        assert (await login(client, "boss@acme.example", password.group(1))).status_code == 303
        assert "Acme" in (await client.get("/")).text
    async with web.db.session() as session:
        tenant = (await session.execute(select(Tenant).where(Tenant.sip_domain == "acme.example"))).scalar_one()
        assert (tenant.currency, tenant.timezone, tenant.locale) == ("RUB", "Europe/Moscow", "ru-RU")


async def test_company_creation_errors_are_shown_and_nothing_is_created(
        web: Web, a: Company, operator: httpx.AsyncClient) -> None:  # noqa: F811
    token = csrf_of((await operator.get("/operator/companies")).text)
    good = {"name": "Beta", "sip_domain": "beta.example", "timezone": "UTC", "currency": "USD", "locale": "en-US",
            "admin_email": "boss@beta.example", "admin_password": "long enough pw", "csrf_token": token}
    cases = [
        ({"name": "", "sip_domain": "not a domain", "timezone": "Mars/Olympus", "currency": "dollars",
          "admin_email": "nobody", "admin_password": "short"},
         ["Required, one line.", "A domain name such as", "An IANA time zone", "Three letters such as RUB.",
          "An email address.", "At least 8 characters"]),
        ({"sip_domain": "a.example"}, ["This domain is already in use."]),
        ({"admin_email": a.admin}, ["An account with this email already exists."]),
        ({"locale": "xx"}, ["Choose a language."]),
    ]
    for change, messages in cases:
        r = await operator.post("/operator/companies", data={**good, **change})
        assert r.status_code == 422, change
        for message in messages:
            assert message in r.text, (change, message)
        assert 'aria-invalid="true"' in r.text and "long enough pw" not in r.text
    async with web.db.session() as session:  # the refused admin left no company behind
        assert (await session.execute(select(Tenant).where(Tenant.sip_domain == "beta.example"))).first() is None


async def test_operator_adds_assigns_and_releases_numbers(web: Web, a: Company, b: Company,  # noqa: F811
                                                         operator: httpx.AsyncClient) -> None:
    page = await operator.get("/operator/numbers")
    assert page.status_code == 200 and "No numbers found." in page.text
    token = csrf_of(page.text)
    r = await operator.post("/operator/numbers", data={"numbers": "+7 495 123-45-67\n\n+74951234568",
                                                       "monthly_fee": "10,50", "csrf_token": token})
    assert r.status_code == 200 and "Added to the pool: +74951234567, +74951234568." in r.text
    # all or none: a duplicate or a bad line adds nothing
    r = await operator.post("/operator/numbers", data={"numbers": "+74951234569\n+74951234567",
                                                       "monthly_fee": "0", "csrf_token": token})
    assert r.status_code == 422 and "+74951234567 is already in the pool." in r.text
    r = await operator.post("/operator/numbers", data={"numbers": "84951234569", "monthly_fee": "x",
                                                       "csrf_token": token})
    assert r.status_code == 422 and "An amount such as 10.00." in r.text
    r = await operator.post("/operator/numbers", data={"numbers": "84951234569", "monthly_fee": "1",
                                                       "csrf_token": token})
    assert r.status_code == 422 and "84951234569 is not a phone number in international format" in r.text
    async with web.db.session() as session:
        pool = {n.number: n for n in (await session.execute(select(PhoneNumber))).scalars()}
    assert sorted(pool) == ["+74951234567", "+74951234568"] and str(pool["+74951234567"].monthly_fee) == "10.50"
    number = pool["+74951234567"]

    r = await operator.post(f"/operator/numbers/{number.id}/assign", data={"tenant_id": str(a.id), "csrf_token": token})
    assert r.status_code == 303
    listing = await operator.get(r.headers["location"])
    row = re.search(r'<tr id="number-74951234567">(.*?)</tr>', listing.text, re.S)
    assert row and "A (a.example)" in row.group(1) and "Release" in row.group(1)
    free = await operator.get("/operator/numbers?show=free")
    assert 'id="number-74951234568"' in free.text and 'id="number-74951234567"' not in free.text
    assigned = await operator.get("/operator/numbers?show=assigned")
    assert 'id="number-74951234567"' in assigned.text and 'id="number-74951234568"' not in assigned.text
    r = await operator.post(f"/operator/numbers/{number.id}/assign", data={"tenant_id": str(b.id), "csrf_token": token})
    assert r.status_code == 422 and "The number is already assigned." in r.text
    r = await operator.post(f"/operator/numbers/{pool['+74951234568'].id}/assign",
                            data={"tenant_id": "", "csrf_token": token})
    assert r.status_code == 422 and "Choose a company." in r.text
    r = await operator.post(f"/operator/numbers/{pool['+74951234568'].id}/assign",
                            data={"tenant_id": "999999", "csrf_token": token})
    assert r.status_code == 422 and "Choose a company." in r.text
    assert (await operator.post("/operator/numbers/999999/assign",
                                data={"tenant_id": str(a.id), "csrf_token": token})).status_code == 404

    r = await operator.post(f"/operator/numbers/{number.id}/release", data={"csrf_token": token})
    assert r.status_code == 303
    async with web.db.session() as session:
        assert (await session.get(PhoneNumber, number.id)).tenant_id is None  # type: ignore[union-attr]
    r = await operator.post(f"/operator/numbers/{number.id}/release", data={"csrf_token": token})
    assert r.status_code == 409 and "The number is not assigned." in r.text
