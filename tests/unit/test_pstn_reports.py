"""Cost reports (per office, department, employee, destination class and local day; JSON and CSV) and the
monthly statement, with exact sums from CDR rows written directly (both backends)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from test_pstn_support import Company, PstnApi, add_number, insert_cdr, make_company, ok, pstn_api

from zvonok.config import Settings
from zvonok.storage.db import Database

MARCH = {"from": "2025-03-01", "to": "2025-04-01"}


@pytest.fixture
async def api(db: Database, settings: Settings) -> AsyncIterator[PstnApi]:
    async with pstn_api(db, settings) as a:
        yield a


async def _seed(api: PstnApi, make_tenant: Any) -> Company:
    c = await make_company(api, make_tenant, "costs.example")
    other = await make_company(api, make_tenant, "other.example")
    calls: list[tuple[datetime, str, int, str, int | None, int | None, int | None]] = [
        # at (UTC; Moscow is +3), cost, billed seconds, class, office, department, employee
        (datetime(2025, 3, 3, 9, 0, tzinfo=UTC), "1.50", 60, "local", c.office, c.dept, c.alice),
        (datetime(2025, 3, 3, 20, 59, tzinfo=UTC), "4.35", 90, "mobile", c.office, c.dept, c.alice),  # 23:59 MSK
        (datetime(2025, 3, 3, 21, 0, tzinfo=UTC), "10.10", 125, "international", c.office, c.dept, c.alice),  # 4th
        (datetime(2025, 3, 10, 10, 0, tzinfo=UTC), "0.10", 6, "long_distance", c.office2, None, c.bob),
        (datetime(2025, 3, 31, 20, 59, 59, tzinfo=UTC), "0.2050", 30, "local", None, None, None),
        (datetime(2025, 3, 12, 10, 0, tzinfo=UTC), "0", 0, "local", c.office, c.dept, c.alice),  # unanswered
        (datetime(2025, 3, 31, 21, 0, tzinfo=UTC), "100", 600, "local", c.office, c.dept, c.alice),  # April MSK
        (datetime(2025, 2, 28, 20, 59, tzinfo=UTC), "100", 600, "local", c.office, c.dept, c.alice),  # February
    ]
    for at, cost, billed, klass, office, dept, employee in calls:
        await insert_cdr(api.db, c.id, at=at, cost=cost, billed=billed, klass=klass, office=office, dept=dept,
                         employee=employee)
    await insert_cdr(api.db, other.id, at=datetime(2025, 3, 5, tzinfo=UTC), cost="1000", billed=60)
    return c


async def _report(api: PstnApi, c: Company, group_by: str) -> dict[str, Any]:
    report: dict[str, Any] = await ok(await api.client.get(f"{c.base}/reports/costs", headers=c.headers,
                                                           params={**MARCH, "group_by": group_by}))
    return report


def _rows(report: dict[str, Any]) -> list[tuple[Any, str, int, str, str]]:
    return [(r["key"], r["name"], r["calls"], r["minutes"], r["cost"]) for r in report["rows"]]


async def test_cost_report_groups(api: PstnApi, make_tenant: Any) -> None:
    c = await _seed(api, make_tenant)
    by_office = await _report(api, c, "office")
    assert _rows(by_office) == [
        (c.office, "Moscow", 3, "4.58", "15.95"),
        (c.office2, "Saint Petersburg", 1, "0.10", "0.10"),
        (None, "(no office)", 1, "0.50", "0.2050"),
    ]
    assert by_office["totals"] == {"calls": 5, "minutes": "5.18", "cost": "16.2550"}
    assert (by_office["start"], by_office["end"], by_office["currency"]) == (
        "2025-03-01T00:00:00+03:00", "2025-04-01T00:00:00+03:00", "RUB")
    assert _rows(await _report(api, c, "department")) == [
        (c.dept, "Sales", 3, "4.58", "15.95"), (None, "(no department)", 2, "0.60", "0.3050")]
    assert _rows(await _report(api, c, "employee")) == [
        (c.alice, "Alice", 3, "4.58", "15.95"), (c.bob, "Bob", 1, "0.10", "0.10"), (None, "(no employee)", 1, "0.50", "0.2050")]
    assert _rows(await _report(api, c, "destination_class")) == [
        ("international", "international", 1, "2.08", "10.10"), ("local", "local", 2, "1.50", "1.7050"),
        ("long_distance", "long_distance", 1, "0.10", "0.10"), ("mobile", "mobile", 1, "1.50", "4.35")]
    by_day = await _report(api, c, "day")
    assert _rows(by_day) == [  # days in Moscow time: 23:59 is still the 3rd, 00:00 already the 4th
        ("2025-03-03", "2025-03-03", 2, "2.50", "5.85"), ("2025-03-04", "2025-03-04", 1, "2.08", "10.10"),
        ("2025-03-10", "2025-03-10", 1, "0.10", "0.10"), ("2025-03-31", "2025-03-31", 1, "0.50", "0.2050")]
    assert by_day["totals"] == by_office["totals"]
    # an explicit offset is taken as it is: from 21:00 UTC on the 3rd = midnight of the 4th in Moscow
    r = await ok(await api.client.get(f"{c.base}/reports/costs", headers=c.headers, params={
        "from": "2025-03-03T21:00:00Z", "to": "2025-03-10T00:00:00+03:00", "group_by": "employee"}))
    assert _rows(r) == [(c.alice, "Alice", 1, "2.08", "10.10")]


async def test_cost_report_csv(api: PstnApi, make_tenant: Any) -> None:
    c = await _seed(api, make_tenant)
    await ok(await api.client.patch(f"{c.base}/offices/{c.office2}", headers=c.headers, json={"name": "=cmd()"}))
    r = await api.client.get(f"{c.base}/reports/costs.csv", headers=c.headers, params={**MARCH, "group_by": "office"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="costs-tenant-' in r.headers["content-disposition"]
    assert list(csv.reader(io.StringIO(r.text))) == [
        ["key", "name", "calls", "minutes", "cost"],
        [str(c.office), "Moscow", "3", "4.58", "15.95"],
        [str(c.office2), "'=cmd()", "1", "0.10", "0.10"],  # a formula is defused for spreadsheets
        ["", "(no office)", "1", "0.50", "0.2050"],
        ["", "Total", "5", "5.18", "16.2550"],
    ]


async def test_report_rules(api: PstnApi, make_tenant: Any) -> None:
    c = await _seed(api, make_tenant)
    url = f"{c.base}/reports/costs"
    for params, field in [({"group_by": "city"}, "group_by"), ({"from": "2025-03-10", "to": "2025-03-01"}, "to"),
                          ({"from": "2024-01-01", "to": "2025-03-01", "group_by": "day"}, "group_by"),
                          ({"from": "yesterday"}, "from")]:
        r = await api.client.get(url, headers=c.headers, params=params)
        assert r.status_code == 422 and field in r.json()["detail"][0]["loc"], (params, r.text)
    for path in ("reports/costs", "reports/costs.csv", "reports/statement"):
        r = await api.client.get(f"{c.base}/{path}", headers=c.alice_headers)
        assert r.status_code == 403  # colleagues' spending is for admins
    # only from: the month it falls in
    r = await ok(await api.client.get(url, headers=c.headers, params={"from": "2025-03-01"}))
    assert (r["end"], r["totals"]["calls"]) == ("2025-04-01T00:00:00+03:00", 5)


async def test_statement(api: PstnApi, make_tenant: Any) -> None:
    c = await _seed(api, make_tenant)
    await add_number(api, "+74951234567", c.id, fee="300")
    await add_number(api, "+74957654321", c.id, fee="150.50")
    await add_number(api, "+74950000000", fee="999")  # in the pool: nobody pays for it
    released = await add_number(api, "+74951111111", c.id, fee="999")
    await ok(await api.client.post(f"/api/v1/platform/numbers/{released['id']}/release", headers=api.admin))
    out = await ok(await api.client.get(f"{c.base}/reports/statement", headers=c.headers, params={"year": 2025, "month": 3}))
    assert out == {
        "tenant_id": c.id, "year": 2025, "month": 3, "time_zone": "Europe/Moscow", "currency": "RUB",
        "start": "2025-03-01T00:00:00+03:00", "end": "2025-04-01T00:00:00+03:00",
        "calls": 5, "billed_seconds": 311, "minutes": "5.18", "cost": "16.2550",
        "by_class": [
            {"key": "international", "name": "international", "calls": 1, "minutes": "2.08", "cost": "10.10"},
            {"key": "local", "name": "local", "calls": 2, "minutes": "1.50", "cost": "1.7050"},
            {"key": "long_distance", "name": "long_distance", "calls": 1, "minutes": "0.10", "cost": "0.10"},
            {"key": "mobile", "name": "mobile", "calls": 1, "minutes": "1.50", "cost": "4.35"},
        ],
        "numbers": {"count": 2, "monthly_fees": "450.50"},
        "total": "466.7550",
    }
    april = await ok(await api.client.get(f"{c.base}/reports/statement", headers=c.headers, params={"year": 2025, "month": 4}))
    assert (april["calls"], april["cost"], april["total"]) == (1, "100.00", "550.50")
    r = await api.client.get(f"{c.base}/reports/statement", headers=c.headers, params={"year": 2025, "month": 13})
    assert r.status_code == 422
