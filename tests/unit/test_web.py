"""The web console on the ASGI app: login and logout, CSRF, tenant scoping, languages, throttling.

Pages are fetched with a cookie-keeping client, as a browser would; forms are posted with the CSRF
token scraped from the page that rendered them.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import httpx
import pytest

from zvonok.config import Settings
from zvonok.org import accounts, schemas, service
from zvonok.org.models import Role
from zvonok.storage.db import Database
from zvonok.telephony.location import Binding, Location

PASSWORD = "correct horse battery"


@dataclass
class Web:
    db: Database
    settings: Settings
    location: Location
    app: object

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
        return httpx.AsyncClient(transport=transport, base_url="http://zvonok.test")


@dataclass
class Company:
    id: int
    admin: str
    employee: str
    extension_id: int


@pytest.fixture
async def web(db: Database, settings: Settings) -> Web:
    from zvonok.api.app import create_app
    from zvonok.web import mount_web

    location = Location()
    app = create_app(settings, db)
    mount_web(app, location=location)
    return Web(db, settings, location, app)


async def _company(db: Database, domain: str, locale: str = "en-US") -> Company:
    async with db.session() as session:
        tenant = await service.platform_create_tenant(
            session, schemas.TenantCreate(name=domain.split(".")[0].title(), sip_domain=domain, locale=locale,
                                          currency="RUB", timezone="Europe/Moscow"))
        emp = await service.create_employee(session, tenant.id,
                                            schemas.EmployeeCreate(full_name="Ivan", email=f"ivan@{domain}"))
        ext, _ = await service.create_extension(
            session, tenant.id, schemas.ExtensionCreate(number="101", display_name="Ivan desk", employee_id=emp.id))
        await accounts.platform_create_account(session, email=f"admin@{domain}", password=PASSWORD,
                                               role=Role.TENANT_ADMIN, tenant_id=tenant.id)
        await accounts.set_employee_login(session, tenant.id, emp, PASSWORD, "employee")
        await session.commit()
        return Company(tenant.id, f"admin@{domain}", f"ivan@{domain}", ext.id)


@pytest.fixture
async def a(web: Web) -> Company:
    return await _company(web.db, "a.example")


@pytest.fixture
async def b(web: Web) -> Company:
    return await _company(web.db, "b.example", locale="ru-RU")


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/login")
    return await client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_of(page.text)})


@pytest.fixture
async def admin_a(web: Web, a: Company) -> AsyncIterator[httpx.AsyncClient]:
    async with web.client() as client:
        r = await login(client, a.admin)
        assert r.status_code == 303, r.text
        yield client


async def test_pages_need_a_login(web: Web, a: Company) -> None:
    async with web.client() as client:
        r = await client.get("/extensions")
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=/extensions"
        r = await client.get("/extensions", headers={"HX-Request": "true"})
        assert r.headers["HX-Redirect"] == "/login?next=/extensions"


async def test_login_sets_a_safe_cookie_and_logout_ends_it(web: Web, a: Company) -> None:
    async with web.client() as client:
        page = await client.get("/login?next=/extensions")
        assert page.status_code == 200 and 'name="password"' in page.text
        r = await client.post("/login", data={"email": a.admin.upper(), "password": PASSWORD, "next": "/extensions",
                                              "csrf_token": csrf_of(page.text)})
        assert r.status_code == 303 and r.headers["location"] == "/extensions"
        cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("zv_session="))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
        home = await client.get("/")
        assert home.status_code == 200 and a.admin in home.text and "A" in home.text
        r = await client.post("/logout", data={"csrf_token": csrf_of(home.text)})
        assert r.status_code == 303
        assert (await client.get("/")).status_code == 303


async def test_session_cookie_is_secure_over_https(web: Web, a: Company) -> None:
    transport = httpx.ASGITransport(app=web.app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://zvonok.test") as client:
        r = await login(client, a.admin)
        cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("zv_session="))
        assert "Secure" in cookie


async def test_login_never_tells_whether_the_account_exists(web: Web, a: Company) -> None:
    async with web.client() as client:
        wrong = await login(client, a.admin, "not the password")
        unknown = await login(client, "nobody@a.example", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong email or password." in wrong.text and "Wrong email or password." in unknown.text


async def test_a_nul_character_in_a_form_is_refused(web: Web, a: Company) -> None:
    """PostgreSQL cannot hold a NUL in text: a login form's email with one reached the query (a 500 there)."""
    async with web.client() as client:
        r = await login(client, a.admin + "\x00", "not the password")
        assert r.status_code == 422, r.text
        assert (await login(client, a.admin, PASSWORD)).status_code in (200, 303)


async def test_a_next_off_the_site_is_ignored(web: Web, a: Company) -> None:
    async with web.client() as client:
        page = await client.get("/login")
        r = await client.post("/login", data={"email": a.admin, "password": PASSWORD, "next": "//evil.example/x",
                                              "csrf_token": csrf_of(page.text)})
        assert r.headers["location"] == "/"


@pytest.mark.parametrize("path", ["/login", "/logout", "/lang", "/password", "/extensions"])
async def test_posts_without_a_valid_csrf_token_are_refused(web: Web, a: Company, admin_a: httpx.AsyncClient,
                                                            path: str) -> None:
    for data in ({}, {"csrf_token": "0" * 64}):
        r = await admin_a.post(path, data={"email": a.admin, "password": PASSWORD, "number": "555",
                                           "display_name": "X", "lang": "ru", **data})
        assert r.status_code == 403, (path, data)
    # the token of another browser (its own seed) does not fit this one's cookie
    async with web.client() as other:
        token = csrf_of((await other.get("/login")).text)
    assert (await admin_a.post("/extensions", data={"number": "555", "display_name": "X",
                                                    "csrf_token": token})).status_code == 403
    page = await admin_a.get("/extensions")
    assert 'id="extension-101"' in page.text  # the rows are there, and no row for 555
    assert 'id="extension-555"' not in page.text and "<td>555</td>" not in page.text


async def test_htmx_header_carries_the_token(admin_a: httpx.AsyncClient) -> None:
    page = await admin_a.get("/extensions")
    token = re.search(r'"X-CSRF-Token": "([0-9a-f]{64})"', page.text)
    assert token
    r = await admin_a.post("/extensions", data={"number": "556", "display_name": "Via htmx"},
                           headers={"X-CSRF-Token": token.group(1)})
    assert r.status_code == 200 and "Extension 556 created." in r.text


async def test_create_extension_shows_the_generated_password_once(web: Web, a: Company,
                                                                  admin_a: httpx.AsyncClient) -> None:
    page = await admin_a.get("/extensions")
    r = await admin_a.post("/extensions", data={"number": "202", "display_name": "Reception",
                                                "csrf_token": csrf_of(page.text)})
    assert r.status_code == 200
    assert re.search(r"<code>[^<]{8,}</code>", r.text)
    async with web.db.session() as session:
        ext = await service.get_extension_by_number(session, a.id, "202")
    assert ext.display_name == "Reception"
    again = await admin_a.post("/extensions", data={"number": "202", "display_name": "Twice",
                                                    "csrf_token": csrf_of(page.text)})
    assert again.status_code == 422 and "This number is already taken." in again.text
    bad = await admin_a.post("/extensions", data={"number": "x", "display_name": "",
                                                  "csrf_token": csrf_of(page.text)})
    assert bad.status_code == 422 and "2 to 8 digits." in bad.text and 'aria-invalid="true"' in bad.text
    grouped = await admin_a.post("/extensions", data={"number": "203", "display_name": "Desk", "pickup_group": "front",
                                                      "csrf_token": csrf_of(page.text)})
    assert grouped.status_code == 200
    async with web.db.session() as session:
        assert (await service.get_extension_by_number(session, a.id, "203")).pickup_group == "front"
    bad_group = await admin_a.post("/extensions", data={"number": "204", "display_name": "Desk", "pickup_group": "a b",
                                                        "csrf_token": csrf_of(page.text)})
    assert bad_group.status_code == 422 and 'id="pickup-group-error"' in bad_group.text


async def test_devices_show_from_the_location(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    page = await admin_a.get("/extensions")
    assert 'data-state="offline"' in page.text
    web.location.put(Binding(tenant_id=a.id, extension_id=a.extension_id, aor="sip:101@a.example",
                             contact="sip:101@192.0.2.1:5060", expires_at=time.time() + 600,
                             source="udp:192.0.2.1:5060", user_agent="Test Phone 1.0"))
    cell = await admin_a.get(f"/extensions/{a.extension_id}/devices")
    assert cell.status_code == 200 and "1 device online" in cell.text and "Test Phone 1.0" in cell.text
    assert "<html" not in cell.text  # a fragment for htmx, not a page


async def test_another_tenants_admin_sees_none_of_it(web: Web, a: Company, b: Company) -> None:
    async with web.client() as client:
        assert (await login(client, b.admin)).status_code == 303
        page = await client.get("/extensions")
        assert page.status_code == 200
        assert "admin@a.example" not in page.text and "Ivan desk" in page.text  # B's own 101
        r = await client.get(f"/extensions/{a.extension_id}/devices")
        assert r.status_code == 404 and "<html" in r.text
        token = (await client.get("/session/ws-token")).json()
        assert token["url"] == f"/api/v1/tenants/{b.id}/events"


async def test_employees_do_not_get_admin_pages(web: Web, a: Company) -> None:
    async with web.client() as client:
        assert (await login(client, a.employee)).status_code == 303
        home = await client.get("/")
        assert home.status_code == 200 and 'href="/extensions"' not in home.text
        r = await client.get("/extensions")
        assert r.status_code == 403 and "Access denied" in r.text


async def test_language_follows_tenant_then_user_choice(web: Web, a: Company, b: Company) -> None:
    async with web.client() as client:
        assert "Log in" in (await client.get("/login")).text
        assert "Вход" in (await client.get("/login", headers={"Accept-Language": "ru,en;q=0.5"})).text
        await login(client, b.admin)
        home = await client.get("/")
        assert '<html lang="ru"' in home.text and "Внутренние номера" in home.text  # B's locale is ru-RU
        r = await client.post("/lang", data={"lang": "en", "next": "/extensions", "csrf_token": csrf_of(home.text)})
        assert r.status_code == 303 and r.headers["location"] == "/extensions"
        page = await client.get("/extensions")
        assert '<html lang="en"' in page.text and "New extension" in page.text


async def test_password_change_ends_other_sessions(web: Web, a: Company) -> None:
    async with web.client() as first, web.client() as second:
        await login(first, a.admin)
        await login(second, a.admin)
        page = await first.get("/password")
        new = "a brand new password"
        r = await first.post("/password", data={"current": PASSWORD, "new": new, "confirm": new,
                                                "csrf_token": csrf_of(page.text)})
        assert r.status_code == 200 and "Your password has been changed" in r.text
        assert (await first.get("/")).status_code == 200
        assert (await second.get("/")).status_code == 303
        r = await first.post("/password", data={"current": "wrong one!", "new": new, "confirm": new,
                                                "csrf_token": csrf_of(page.text)})
        assert r.status_code == 422 and "The current password is wrong." in r.text
    async with web.client() as third:
        assert (await login(third, a.admin, new)).status_code == 303


async def test_failed_logins_are_throttled(web: Web, a: Company) -> None:
    limit = web.settings.login_fail_limit
    async with web.client() as client:
        for _ in range(limit + 1):  # a ban starts when the limit is passed
            assert (await login(client, a.admin, "wrong password")).status_code == 401
        r = await login(client, a.admin)  # even the right password waits now
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        assert "Too many failed attempts" in r.text


async def test_api_errors_stay_json(web: Web, a: Company) -> None:
    async with web.client() as client:
        r = await client.get("/api/v1/tenants/1/extensions")
        assert r.status_code == 401 and r.json()["detail"]
        r = await client.get("/no/such/page")
        assert r.status_code == 404 and "Page not found" in r.text
        r = await client.get("/api/v1/tenants/0/extensions")
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "tenant_id"]


async def test_a_malformed_address_is_a_page_too(admin_a: httpx.AsyncClient) -> None:
    r = await admin_a.get("/extensions?page=0")
    assert r.status_code == 422 and "Invalid input" in r.text and "<html" in r.text
    r = await admin_a.get("/extensions/0/devices")
    assert r.status_code == 422 and "Invalid input" in r.text


def test_every_string_is_translated_to_russian() -> None:
    from babel.messages.pofile import read_po

    from zvonok.web.i18n import LOCALE_DIR

    with (LOCALE_DIR / "messages.pot").open("rb") as f:
        template = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(f) if m.id}
    with (LOCALE_DIR / "ru" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        ru = read_po(f, locale="ru")
    done = {(m.id if isinstance(m.id, str) else m.id[0]) for m in ru
            if m.id and not m.fuzzy and (all(m.string) if isinstance(m.string, tuple) else m.string)}
    assert template and template <= done, sorted(template - done)


def test_money_and_dates_in_the_locale() -> None:
    from zvonok.web.i18n import format_moment, format_money

    assert format_money(Decimal("1234.5"), "RUB", "ru") == "1\xa0234,50\xa0₽"
    assert format_money(Decimal("1234.5"), "USD", "en") == "$1,234.50"
    moment = datetime(2026, 1, 2, 9, 30)  # UTC, as stored
    assert format_moment(moment, "en", "Europe/Moscow") == "Jan 2, 2026, 12:30:00\u202fPM"
    assert format_moment(moment, "ru", "Europe/Moscow") == "2 янв. 2026\u202fг., 12:30:00"


def test_the_catalogue_template_has_every_marked_string() -> None:
    """A string marked in a template or module but missing from messages.pot: run tools/web_i18n.sh."""
    from babel.messages.extract import extract_from_dir
    from babel.messages.pofile import read_po

    from zvonok.web.i18n import LOCALE_DIR

    web_dir = LOCALE_DIR.parent
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}}
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(web_dir), method_map, options, keywords=keywords):
        found.add(message if isinstance(message, str) else message[0])
    with (LOCALE_DIR / "messages.pot").open("rb") as f:
        template = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(f) if m.id}
    assert found and found <= template, sorted(found - template)


def test_the_pager_links_the_neighbouring_pages() -> None:
    from zvonok.web.render import environment

    template = environment("en").from_string(
        '{% from "_pager.html" import pager %}{% macro link(n) %}page={{ n }}&amp;q={{ q|urlencode }}{% endmacro %}'
        "{{ pager(page, pages, link) }}")
    html = template.render(page=2, pages=3, q="a b&c")
    assert '<a href="?page=1&amp;q=a%20b%26c">Previous</a>' in html
    assert '<a href="?page=3&amp;q=a%20b%26c">Next</a>' in html and "Page 2 of 3" in html
    first = template.render(page=1, pages=3, q="")
    assert "Previous" not in first and "Next" in first
    assert template.render(page=1, pages=1, q="").strip() == ""  # one page: no pager at all
