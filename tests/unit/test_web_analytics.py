"""Reports → Analytics: the admin sees "no export yet", starts one (htmx gets the polled partial, running),
then sees the last export (kind, size, rows), the ready tables computed from the file and a download link
that gives the DuckDB file; a second export is incremental; too soon after one the page says how long to
wait; an employee gets 403, a form without its CSRF token is refused, the page speaks Russian, and with
the PostgreSQL target it shows where to connect (never the database password)."""

from __future__ import annotations

import re
from typing import Any

import test_analytics
import test_web
from test_web import PASSWORD, Web, csrf_of, login

from zvonok.analytics.http import get_exports
from zvonok.analytics.runner import Exports
from zvonok.org import accounts
from zvonok.org.models import Role

web = test_web.web


async def _company(web: Web, domain: str, *, locale: str = "en-US") -> tuple[int, str, str]:
    """A company with test_analytics's calls, deals and payments, its admin and an employee login."""
    seeded = await test_analytics._seed(web.db, domain)
    async with web.db.session() as session:
        await accounts.platform_create_account(session, email=f"admin@{domain}", password=PASSWORD,
                                               role=Role.TENANT_ADMIN, tenant_id=seeded.tenant_id)
        tenant = await session.get(test_analytics.Tenant, seeded.tenant_id)
        assert tenant is not None
        tenant.locale = locale
        employee = await session.get(test_analytics.Employee, seeded.ids["olga"])
        assert employee is not None
        employee.email = f"olga@{domain}"
        await accounts.set_employee_login(session, seeded.tenant_id, employee, PASSWORD, "employee")
        await session.commit()
    return seeded.tenant_id, f"admin@{domain}", f"olga@{domain}"


def _exports(web: Web) -> Exports:
    class Request:  # get_exports reads the app's state, making the process's exports once
        app: Any = web.app

    return get_exports(Request())  # type: ignore[arg-type]


async def test_the_admin_exports_and_reads_the_tables(web: Web) -> None:
    tenant_id, admin, employee = await _company(web, "an.example")
    exports = _exports(web)
    async with web.client() as client:
        assert (await login(client, admin)).status_code == 303
        page = await client.get("/reports/analytics")
        assert page.status_code == 200 and "No export yet." in page.text
        assert 'id="analytics-tab"' in page.text and 'id="analytics-download"' not in page.text
        csrf = csrf_of(page.text)
        assert (await client.post("/reports/analytics/export", data={})).status_code == 403  # no token

        r = await client.post("/reports/analytics/export", data={"csrf_token": csrf},
                              headers={"HX-Request": "true"})
        assert r.status_code == 200 and 'data-running="yes"' in r.text
        assert 'hx-get="/reports/analytics/status" hx-trigger="every 1s"' in r.text and "<html" not in r.text
        report = await exports.wait(tenant_id)
        assert report is not None and report.mode == "full"

        r = await client.get("/reports/analytics/status")
        assert r.status_code == 200 and 'data-running="no"' in r.text and "hx-trigger" not in r.text
        assert re.search(r'id="analytics-mode">full rebuild<', r.text)
        assert "5 rows, written by this export: 5" in r.text  # calls
        calls = re.search(r'<table class="striped" id="analytics-calls">(.*?)</table>', r.text, re.S)
        assert calls is not None
        assert re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", calls.group(1))).strip().endswith("Mon 2 Mar 2 2 1 5")
        won = re.search(r'id="analytics-won">(.*?)</table>', r.text, re.S)
        assert won is not None and "March 2026" in won.group(1) and "RUB1,000.00" in won.group(1)
        payments = re.search(r'id="analytics-payments">(.*?)</table>', r.text, re.S)
        assert payments is not None and "RUB1,100.00" in payments.group(1) and ">3<" in payments.group(1)

        download = await client.get("/reports/analytics/file")
        assert download.status_code == 200 and download.headers["content-type"] == "application/vnd.duckdb"
        assert int(download.headers["content-length"]) == len(download.content) == report.size

        # too soon after the last (no scripts: the page with the reason)
        r = await client.post("/reports/analytics/export", data={"csrf_token": csrf})
        assert r.status_code == 429 and "try again in 10 min" in r.text
        exports.min_interval = 0
        r = await client.post("/reports/analytics/export", data={"csrf_token": csrf})
        assert r.status_code == 303 and r.headers["location"] == "/reports/analytics"
        again = await exports.wait(tenant_id)
        assert again is not None and again.mode == "incremental"
        r = await client.get("/reports/analytics")
        assert 'id="analytics-mode">incremental<' in r.text and "5 rows, written by this export: 0" in r.text

    async with web.client() as client:
        assert (await login(client, employee)).status_code == 303
        for path in ("/reports/analytics", "/reports/analytics/status", "/reports/analytics/file"):
            assert (await client.get(path)).status_code == 403, path


async def test_russian_and_the_postgres_target(web: Web) -> None:
    tenant_id, admin, _employee = await _company(web, "ru.example", locale="ru-RU")
    async with web.client() as client:
        assert (await login(client, admin)).status_code == 303
        page = await client.get("/reports/analytics")
        assert "Аналитика" in page.text and "Выгрузить сейчас" in page.text
        web.settings.analytics_target = "postgres"
        try:
            page = await client.get("/reports/analytics")
        finally:
            web.settings.analytics_target = "duckdb"
        table = re.search(r'id="analytics-postgres">(.*?)</table>', page.text, re.S)
        assert table is not None and f"analytics_t{tenant_id}_reader" in table.group(1)
        assert "password" not in table.group(1).lower()


async def test_htmx_export_refused_in_place(web: Web) -> None:
    tenant_id, admin, _employee = await _company(web, "busy.example")
    exports = _exports(web)
    async with web.client() as client:
        assert (await login(client, admin)).status_code == 303
        csrf = csrf_of((await client.get("/reports/analytics")).text)
        async with exports._one_at_a_time:  # another company's export holds the process: this one waits
            r = await client.post("/reports/analytics/export", data={"csrf_token": csrf},
                                  headers={"HX-Request": "true"})
            assert 'data-running="yes"' in r.text
            r = await client.post("/reports/analytics/export", data={"csrf_token": csrf},
                                  headers={"HX-Request": "true"})
            assert r.status_code == 200 and "An export of the company is running already." in r.text
        assert await exports.wait(tenant_id) is not None
