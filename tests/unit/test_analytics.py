"""The analytics store: two companies seeded with calls, deals and payments, one exported, its DuckDB file
opened and read as a BI tool would (exact facts, the joins to the dimensions, nothing of the other
company); the REST routes' 202/409/429 and the download; the CLI; the nightly schedule."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlalchemy import delete, select, text

from zvonok.analytics import star
from zvonok.analytics.export import export_tenant, file_of, last_report
from zvonok.analytics.queries import CallsDay, PaymentsMonth, WonDeals, overview
from zvonok.analytics.runner import ExportRunning, Exports, TooSoon, next_nightly
from zvonok.cdr.models import Cdr
from zvonok.cli import main
from zvonok.crm.models import CrmClient, CrmDeal, CrmInvoice, CrmPayment, CrmPhone, CrmPipeline, CrmStage
from zvonok.org.models import Department, Employee, Extension, Office, Tenant
from zvonok.storage.db import Database
from zvonok.storage.jobs import JobRun, claim_run

AT = datetime(2026, 3, 1, 22, 30, tzinfo=UTC)  # 2026-03-02 01:30 in Moscow: a Monday there, Sunday in UTC


@dataclass
class Seeded:
    tenant_id: int
    ids: dict[str, int]


async def _seed(db: Database, domain: str, *, secret: str = "", tz: str = "Europe/Moscow") -> Seeded:
    """A company: HQ with Sales (Olga, 101) and Support (Petr, 102); clients Acme and Beta with a phone
    each; four calls, a pipeline with two deals, an invoice and three payments. ``secret`` marks names
    and numbers that must never reach another company's file."""
    ids: dict[str, int] = {}
    async with db.session() as s:
        t = Tenant(name=f"Co{secret}", sip_domain=domain, timezone=tz, currency="RUB", locale="ru-RU")
        s.add(t)
        await s.flush()
        tid = t.id

        async def add(key: str, row: Any) -> int:
            s.add(row)
            await s.flush()
            ids[key] = row.id
            return int(row.id)

        hq = await add("hq", Office(tenant_id=tid, name=f"HQ{secret}", city="Moscow"))
        sales = await add("sales", Department(tenant_id=tid, name=f"Sales{secret}", office_id=hq))
        support = await add("support", Department(tenant_id=tid, name=f"Support{secret}", office_id=hq))
        olga = await add("olga", Employee(tenant_id=tid, full_name=f"Olga{secret}", office_id=hq, department_id=sales))
        petr = await add("petr", Employee(tenant_id=tid, full_name=f"Petr{secret}", office_id=hq,
                                          department_id=support))
        e101 = await add("e101", Extension(tenant_id=tid, number="101", display_name="Olga", employee_id=olga,
                                           office_id=hq, ha1_md5="0" * 32, ha1_sha256="0" * 64))
        e102 = await add("e102", Extension(tenant_id=tid, number="102", display_name="Petr", employee_id=petr,
                                           office_id=hq, ha1_md5="0" * 32, ha1_sha256="0" * 64))
        acme = await add("acme", CrmClient(tenant_id=tid, kind="company", name=f"Acme{secret}", owner_id=olga))
        beta = await add("beta", CrmClient(tenant_id=tid, kind="company", name=f"Beta{secret}"))
        acme_phone, beta_phone = f"+7495{tid:03d}1111", f"+7495{tid:03d}2222"
        s.add_all([CrmPhone(tenant_id=tid, client_id=acme, number=acme_phone, digits=acme_phone[1:]),
                   CrmPhone(tenant_id=tid, client_id=beta, number=beta_phone, digits=beta_phone[1:])])

        def cdr(n: int, direction: str, caller: str, callee: str, billsec: int, side: str, **refs: Any) -> Cdr:
            answered = billsec > 0
            return Cdr(tenant_id=tid, call_id=f"{domain}-{n}", direction=direction, internal=direction == "internal",
                       dialed_number=callee, caller_number=caller, caller_name="", callee_number=callee,
                       callee_name="", started_at=AT, answered_at=AT if answered else None, ended_at=AT,
                       duration=billsec + 4, billsec=billsec, disposition="answered" if answered else "no_answer",
                       hangup_side="caller", cause="normal", cost=Decimal("0.5") * billsec, currency="RUB", **refs)

        olga_side = {"caller_employee_id": olga, "caller_extension_id": e101, "caller_department_id": sales,
                     "caller_office_id": hq}
        petr_called = {"callee_employee_id": petr, "callee_extension_id": e102, "callee_department_id": support,
                       "callee_office_id": hq}
        s.add_all([
            cdr(1, "inbound", acme_phone, "102", 60, "callee", **petr_called),
            cdr(2, "outbound", "101", beta_phone, 30, "caller", **olga_side),
            cdr(3, "outbound", "101", "+74990000000", 10, "caller", **olga_side),
            cdr(4, "internal", "101", "102", 5, "caller", **olga_side, **petr_called),
            cdr(5, "inbound", "+74991112233", "102", 0, "callee", **petr_called),
        ])
        pipe = await add("pipeline", CrmPipeline(tenant_id=tid, name=f"Sales{secret}", currency="RUB"))
        new = await add("new", CrmStage(tenant_id=tid, pipeline_id=pipe, name="New", position=0, kind="open"))
        won = await add("won", CrmStage(tenant_id=tid, pipeline_id=pipe, name="Won", position=1, kind="won"))
        d1 = await add("d1", CrmDeal(tenant_id=tid, pipeline_id=pipe, stage_id=won, title=f"Big{secret}",
                                     client_id=acme, owner_id=olga, amount=Decimal("1000.00"), currency="RUB",
                                     created_at=AT, closed_at=datetime(2026, 3, 10, 9, tzinfo=UTC)))
        d2 = await add("d2", CrmDeal(tenant_id=tid, pipeline_id=pipe, stage_id=new, title=f"Small{secret}",
                                     client_id=beta, owner_id=petr, amount=Decimal("500.00"), currency="RUB",
                                     created_at=AT))
        inv = await add("inv", CrmInvoice(tenant_id=tid, deal_id=d1, number=f"INV{secret}-{tid}",
                                          amount=Decimal("1000.00"), currency="RUB", issued_on=date(2026, 3, 3),
                                          due_on=date(2026, 3, 20)))
        await add("p1", CrmPayment(tenant_id=tid, deal_id=d1, amount=Decimal("600.00"), paid_on=date(2026, 3, 5),
                                   method="transfer", invoice_id=inv))
        await add("p2", CrmPayment(tenant_id=tid, deal_id=d1, amount=Decimal("400.00"), paid_on=date(2026, 3, 6),
                                   method="cash"))
        await add("p3", CrmPayment(tenant_id=tid, deal_id=d2, amount=Decimal("100.00"), paid_on=date(2026, 3, 6),
                                   method="card"))
        await s.commit()
    return Seeded(tid, ids)


def _all_text(con: duckdb.DuckDBPyConnection) -> str:
    """Every value of every table of the file, as text."""
    tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
    return "\n".join(str(con.execute(f"SELECT * FROM {s}.{t}").fetchall()) for s, t in tables)


async def test_export_writes_the_star_of_one_company(db: Database, tmp_path: Path) -> None:
    a = await _seed(db, "a.example")
    b = await _seed(db, "b.example", secret="Mallory")
    directory = tmp_path / "analytics"
    report = await export_tenant(db, a.tenant_id, directory)
    path = file_of(directory, a.tenant_id)
    assert path.name == f"t{a.tenant_id}.duckdb" and sorted(p.name for p in directory.iterdir()) == [path.name]
    assert report.rows["fact_calls"] == 5 and report.rows["fact_deals"] == 2 and report.rows["fact_payments"] == 3
    assert report.rows["dim_employee"] == 3  # Olga, Petr and "(none)"

    with duckdb.connect(str(path), read_only=True) as con:
        # total talk time per department (the company's party: the called employee of an inbound call)
        rows = con.execute("""SELECT d.name, sum(f.billsec), count(*) FROM fact_calls f
                              JOIN dim_department d USING (department_key) GROUP BY d.name ORDER BY d.name""").fetchall()
        assert rows == [("Sales", 45, 3), ("Support", 60, 2)]
        rows = con.execute("""SELECT e.full_name, o.name, f.extension, f.direction, f.billsec, f.cost, c.name
                              FROM fact_calls f JOIN dim_employee e ON e.employee_key = f.employee_key
                              JOIN dim_office o ON o.office_key = f.office_key
                              JOIN dim_client c ON c.client_key = f.client_key
                              ORDER BY f.call_key""").fetchall()
        assert rows == [("Petr", "HQ", "102", "inbound", 60, Decimal("30.0000"), "Acme"),
                        ("Olga", "HQ", "101", "outbound", 30, Decimal("15.0000"), "Beta"),
                        ("Olga", "HQ", "101", "outbound", 10, Decimal("5.0000"), "(none)"),
                        ("Olga", "HQ", "101", "internal", 5, Decimal("2.5000"), "(none)"),
                        ("Petr", "HQ", "102", "inbound", 0, Decimal("0.0000"), "(none)")]
        # the day is the company's (Moscow), not UTC's
        rows = con.execute("""SELECT DISTINCT d.date, d.day_name, d.is_weekend, f.started_local FROM fact_calls f
                              JOIN dim_date d USING (date_key)""").fetchall()
        assert rows == [(date(2026, 3, 2), "Monday", False, datetime(2026, 3, 2, 1, 30))]
        assert con.execute("SELECT DISTINCT trunk_key FROM fact_calls").fetchall() == [(0,)]

        # payments per client, through the deal; a payment's invoice
        rows = con.execute("""SELECT c.name, sum(p.amount), count(*) FROM fact_payments p
                              JOIN dim_client c USING (client_key) GROUP BY c.name ORDER BY c.name""").fetchall()
        assert rows == [("Acme", Decimal("1000.00"), 2), ("Beta", Decimal("100.00"), 1)]
        rows = con.execute("""SELECT payment_key, invoice_number, currency, method, date_key, deal_key
                              FROM fact_payments ORDER BY payment_key""").fetchall()
        ids = a.ids
        assert rows == [(ids["p1"], f"INV-{a.tenant_id}", "RUB", "transfer", 20260305, ids["d1"]),
                        (ids["p2"], None, "RUB", "cash", 20260306, ids["d1"]),
                        (ids["p3"], None, "RUB", "card", 20260306, ids["d2"])]

        # deals by stage and owner; a closed deal's day
        rows = con.execute("""SELECT f.title, s.stage, s.kind, s.pipeline, e.full_name, c.name, f.amount, f.paid,
                                     f.created_date_key, f.closed_date_key
                              FROM fact_deals f JOIN dim_stage s USING (stage_key)
                              JOIN dim_employee e ON e.employee_key = f.owner_employee_key
                              JOIN dim_client c USING (client_key) ORDER BY f.deal_key""").fetchall()
        assert rows == [("Big", "Won", "won", "Sales", "Olga", "Acme", Decimal("1000.00"), Decimal("1000.00"),
                         20260302, 20260310),
                        ("Small", "New", "open", "Sales", "Petr", "Beta", Decimal("500.00"), Decimal("100.00"),
                         20260302, 0)]
        # the calendar spans the facts' days (and today) without gaps
        first, last, days = con.execute(
            "SELECT min(date), max(date), count(*) FROM dim_date WHERE date_key <> 0").fetchone() or (None, None, 0)
        assert first == date(2026, 3, 2) and days == (last - first).days + 1
        # the file tells what it holds
        assert con.execute("SELECT tenant_id, schema_version, mode FROM export_info").fetchall() \
            == [(a.tenant_id, 2, "full")]
        assert dict(con.execute("SELECT table_name, row_count FROM export_tables").fetchall()) == report.rows
        # nothing of the other company: names, numbers, amounts
        text = _all_text(con)
        assert "Mallory" not in text and f"+7495{b.tenant_id:03d}" not in text and "b.example" not in text

    # a rebuild keeps the keys: the same facts under the same keys
    before = report
    again = await export_tenant(db, a.tenant_id, directory)
    assert again.rows == before.rows and again.exported_at >= before.exported_at
    with duckdb.connect(str(path), read_only=True) as con:
        keys = con.execute("SELECT call_key FROM fact_calls ORDER BY 1").fetchall()
    async with db.session() as s:
        own = (await s.execute(select(Cdr.id).where(Cdr.tenant_id == a.tenant_id).order_by(Cdr.id))).scalars().all()
    assert [k for (k,) in keys] == list(own)
    # the queries docs/analytics.md shows a BI tool running
    doc = (Path(__file__).resolve().parents[2] / "docs" / "analytics.md").read_text(encoding="utf-8")
    queries = re.findall(r"```sql\n(.*?)```", doc, re.S)
    assert len(queries) == 3
    with duckdb.connect(str(path), read_only=True) as con:
        by_department, by_client, won = (con.execute(q).fetchall() for q in queries)
    assert by_department == [(2026, 3, "Support", 2, 1.0, 50.0, Decimal("30.0000")),
                             (2026, 3, "Sales", 2, 0.7, 100.0, Decimal("20.0000"))]
    assert by_client == [("Acme", Decimal("1000.00"), 1), ("Beta", Decimal("100.00"), 1)]
    assert won == [(2026, 1, "Olga", 1, Decimal("1000.00"))]
    last = await last_report(directory, a.tenant_id)
    assert last is not None and last.rows == again.rows and last.tenant_id == a.tenant_id
    assert await last_report(directory, b.tenant_id) is None


async def test_the_ready_queries_of_the_console(db: Database, tmp_path: Path) -> None:
    """The Analytics page's tables, computed from the file: calls per day by direction (the company's day),
    won deals per pipeline stage and month, payments per month; nothing before the first export."""
    a = await _seed(db, "a.example")
    await _seed(db, "b.example", secret="Mallory")
    directory = tmp_path / "analytics"
    assert await overview(directory, a.tenant_id) is None
    await export_tenant(db, a.tenant_id, directory)
    got = await overview(directory, a.tenant_id)
    assert got is not None
    assert got.calls_per_day == [CallsDay(day=date(2026, 3, 2), inbound=2, outbound=2, internal=1, calls=5)]
    assert got.won_per_month == [WonDeals(month=date(2026, 3, 1), pipeline="Sales", stage="Won", deals=1,
                                          amount=Decimal("1000.00"), currency="RUB")]
    assert got.payments_per_month == [PaymentsMonth(month=date(2026, 3, 1), currency="RUB", payments=3,
                                                    amount=Decimal("1100.00"))]
    assert await overview(directory, a.tenant_id) is got  # the same file: not read again


async def test_an_empty_company_and_a_foreign_reference(db: Database, tmp_path: Path) -> None:
    """A company with nothing still gets every table (the "(none)" rows); a CDR naming another company's
    employee (it cannot happen through the API) points at "(none)", never at the other's name."""
    a = await _seed(db, "a.example")
    async with db.session() as s:
        t = Tenant(name="Empty", sip_domain="empty.example", timezone="UTC", currency="RUB", locale="en")
        s.add(t)
        await s.flush()
        s.add(Cdr(tenant_id=t.id, call_id="x-1", direction="outbound", internal=False, dialed_number="1",
                  caller_number="101", caller_name="", callee_number="1", callee_name="", started_at=AT,
                  ended_at=AT, duration=1, billsec=1, disposition="answered", hangup_side="caller", cause="n",
                  currency="RUB", caller_employee_id=a.ids["olga"]))
        await s.commit()
        empty = t.id
    report = await export_tenant(db, empty, tmp_path / "analytics")
    assert report.rows["fact_calls"] == 1 and report.rows["fact_deals"] == 0 and report.rows["dim_client"] == 1
    with duckdb.connect(str(file_of(tmp_path / "analytics", empty)), read_only=True) as con:
        assert con.execute("SELECT e.full_name FROM fact_calls JOIN dim_employee e USING (employee_key)").fetchall() \
            == [("(none)",)]
        assert "Olga" not in _all_text(con)


def _star(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every star table of a file, rows in key order."""
    with duckdb.connect(str(path), read_only=True) as con:
        return {table: con.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() for table in star.TABLES}


async def test_an_incremental_export_writes_only_what_changed(db: Database, tmp_path: Path) -> None:
    """Export, then two calls, a deal with a payment, a deal moved to Won: the next export reads only the new
    calls and payments, writes only the rows that changed, and its star is the one a full rebuild makes;
    the moved deal is updated in place, not duplicated. A deleted deal sends the export back to a full
    rebuild (the file's copy no longer counts what the database holds)."""
    a = await _seed(db, "a.example")
    directory = tmp_path / "analytics"
    first = await export_tenant(db, a.tenant_id, directory)
    assert first.mode == "full" and first.read == {"s_cdrs": 5, "s_deals": 2, "s_payments": 3}
    assert first.written["fact_calls"] == 5 and first.written == first.rows  # everything is new
    later = datetime(2026, 3, 12, 10, tzinfo=UTC)
    async with db.session() as s:
        tid, ids = a.tenant_id, a.ids
        for n in (6, 7):
            s.add(Cdr(tenant_id=tid, call_id=f"new-{n}", direction="outbound", internal=False, dialed_number="1",
                      caller_number="101", caller_name="", callee_number=f"+7495{tid:03d}2222", callee_name="",
                      started_at=later, answered_at=later, ended_at=later, duration=9, billsec=5,
                      disposition="answered", hangup_side="caller", cause="normal", cost=Decimal("2.5"),
                      currency="RUB", caller_employee_id=ids["olga"], caller_extension_id=ids["e101"]))
        deal = CrmDeal(tenant_id=tid, pipeline_id=ids["pipeline"], stage_id=ids["new"], title="Third",
                       client_id=ids["beta"], owner_id=ids["petr"], amount=Decimal("70.00"), currency="RUB",
                       created_at=later)
        s.add(deal)
        await s.flush()
        s.add(CrmPayment(tenant_id=tid, deal_id=deal.id, amount=Decimal("70.00"), paid_on=date(2026, 3, 12),
                         method="card"))
        small = await s.get(CrmDeal, ids["d2"])
        assert small is not None
        small.stage_id, small.closed_at = ids["won"], later  # the stage moved
        await s.commit()
    second = await export_tenant(db, a.tenant_id, directory)
    assert second.mode == "incremental"
    assert second.read["s_cdrs"] == 2 and second.read["s_payments"] == 1
    assert second.written["fact_calls"] == 2 and second.written["fact_payments"] == 1
    assert second.written["fact_deals"] == 2  # the new deal and the moved one; the Big deal untouched
    assert second.written["dim_employee"] == 0 and second.written["dim_client"] == 0
    assert second.rows["fact_calls"] == 7 and second.rows["fact_deals"] == 3 and second.rows["fact_payments"] == 4
    incremental = _star(file_of(directory, a.tenant_id))
    rebuilt = await export_tenant(db, a.tenant_id, tmp_path / "full", full=True)
    assert rebuilt.mode == "full" and rebuilt.read == {"s_cdrs": 7, "s_deals": 3, "s_payments": 4}
    assert incremental == _star(file_of(tmp_path / "full", a.tenant_id))
    with duckdb.connect(str(file_of(directory, a.tenant_id)), read_only=True) as con:
        assert con.execute("""SELECT s.stage, f.closed_date_key, f.paid FROM fact_deals f JOIN dim_stage s USING (stage_key)
                              WHERE f.deal_key = ?""", [ids["d2"]]).fetchall() == [("Won", 20260312, Decimal("100.00"))]
        marks = dict(con.execute("SELECT fact_table, last_id FROM export_watermarks").fetchall())
        assert marks["fact_calls"] == max(k for (k, *_) in incremental["fact_calls"])
        assert marks["fact_payments"] == max(k for (k, *_) in incremental["fact_payments"])
    # nothing changed: nothing written
    third = await export_tenant(db, a.tenant_id, directory)
    assert third.mode == "incremental" and third.read["s_cdrs"] == 0 and set(third.written.values()) == {0}
    # a deal deleted (its payment with it): the copy counts one deal too many, so the export rebuilds in full
    async with db.session() as s:
        gone = await s.get(CrmDeal, deal.id)
        await s.delete(gone)
        await s.commit()
    async with db.session() as s:
        await s.execute(delete(CrmPayment).where(CrmPayment.deal_id == deal.id))
        await s.commit()
    fourth = await export_tenant(db, a.tenant_id, directory)
    assert fourth.mode == "full" and fourth.rows["fact_deals"] == 2 and fourth.rows["fact_payments"] == 3
    await export_tenant(db, a.tenant_id, tmp_path / "full", full=True)
    assert _star(file_of(directory, a.tenant_id)) == _star(file_of(tmp_path / "full", a.tenant_id))


async def test_one_export_per_company_at_a_time_and_a_minimum_interval(db: Database, tmp_path: Path) -> None:
    a = await _seed(db, "a.example")
    clock = [100.0]
    exports = Exports(db, tmp_path / "analytics", min_interval=600, clock=lambda: clock[0])
    task = exports.start(a.tenant_id)
    with pytest.raises(ExportRunning):
        exports.start(a.tenant_id)
    assert exports.running(a.tenant_id)
    report = await task
    assert report is not None and not exports.running(a.tenant_id)
    clock[0] = 400.0
    with pytest.raises(TooSoon) as too_soon:
        exports.start(a.tenant_id)
    assert too_soon.value.retry_after == 300
    assert await exports.start(a.tenant_id, on_demand=False) is not None  # the nightly run is not held back
    clock[0] = 1001.0
    assert await exports.start(a.tenant_id) is not None
    assert await exports.start(987654, on_demand=False) is None  # no such company: nothing written
    assert sorted(p.name for p in (tmp_path / "analytics").iterdir()) == [f"t{a.tenant_id}.duckdb"]


async def test_export_all_and_the_nightly_hour(db: Database, tmp_path: Path) -> None:
    a = await _seed(db, "a.example")
    b = await _seed(db, "b.example")
    exports = Exports(db, tmp_path / "analytics")
    (tmp_path / "analytics").mkdir()
    (tmp_path / "analytics" / "t987654.duckdb").write_bytes(b"a deleted company's")
    (tmp_path / "analytics" / "tools.duckdb").write_bytes(b"not ours to remove")
    assert await exports.export_all() == 2
    assert (tmp_path / "analytics" / "tools.duckdb").exists()
    (tmp_path / "analytics" / "tools.duckdb").unlink()
    assert {p.name for p in (tmp_path / "analytics").iterdir()} == {f"t{a.tenant_id}.duckdb", f"t{b.tenant_id}.duckdb"}
    assert next_nightly(datetime(2026, 3, 1, 2, 59, tzinfo=UTC), 3) == datetime(2026, 3, 1, 3, tzinfo=UTC)
    assert next_nightly(datetime(2026, 3, 1, 3, 0, tzinfo=UTC), 3) == datetime(2026, 3, 2, 3, tzinfo=UTC)
    stopping = asyncio.Event()
    stopping.set()
    await exports.run(3, stopping)  # returns at once when the server stops

    # the server's job: at 03:00 the export of every company that has one, then asleep until the next night
    for path in (tmp_path / "analytics").iterdir():
        path.unlink() if path.name != f"t{a.tenant_id}.duckdb" else path.write_bytes(b"yesterday's")
    times = iter([datetime(2026, 3, 1, 2, 59, 59, 990000, tzinfo=UTC)] * 2)
    ran = asyncio.Event()
    export_all = exports.export_all

    async def spy(stop: asyncio.Event | None = None, *, only_used: bool = False) -> int:
        done = await export_all(stop, only_used=only_used)
        ran.set()
        return done

    exports.export_all = spy  # type: ignore[method-assign]
    stopping = asyncio.Event()
    job = asyncio.create_task(exports.run(3, stopping, now=lambda: next(times, datetime(2026, 3, 1, 3, tzinfo=UTC))))
    await ran.wait()
    # b never asked for one: no file made for it every night
    assert {p.name for p in (tmp_path / "analytics").iterdir()} == {f"t{a.tenant_id}.duckdb"}
    assert (tmp_path / "analytics" / f"t{a.tenant_id}.duckdb").read_bytes() != b"yesterday's"  # rebuilt
    stopping.set()
    await job
    assert job.done() and not exports.running(a.tenant_id)


async def test_the_nightly_export_runs_on_one_node_of_a_cluster(db: Database, tmp_path: Path) -> None:
    """Two nodes sharing the database (and the analytics directory) reach the nightly hour together: one
    claims the night and exports, the other lets it go; the next night is claimed afresh, once."""
    a = await _seed(db, "a.example")
    await export_tenant(db, a.tenant_id, tmp_path / "analytics")  # the company uses analytics
    nodes = [Exports(db, tmp_path / "analytics", node=name) for name in ("node-1", "node-2")]
    exported: list[str] = []
    for node in nodes:
        export_all = node.export_all

        async def spy(stop: asyncio.Event | None = None, *, only_used: bool = False, node: Exports = node,
                      export_all: Any = export_all) -> int:
            exported.append(node.node)
            return int(await export_all(stop, only_used=only_used))

        node.export_all = spy  # type: ignore[method-assign]
    first = await asyncio.gather(*(node.nightly(date(2026, 3, 1)) for node in nodes))
    assert sorted(first, key=str) == [1, None] and len(exported) == 1
    async with db.session() as s:
        row = await s.get(JobRun, "analytics-nightly")
        assert row is not None and row.period == "2026-03-01" and row.node == exported[0]
    assert await nodes[0].nightly(date(2026, 3, 1)) is None  # a night is never run twice
    assert await nodes[1].nightly(date(2026, 2, 28)) is None  # nor an earlier one (a clock behind)
    second = await asyncio.gather(*(node.nightly(date(2026, 3, 2)) for node in reversed(nodes)))
    assert sorted(second, key=str) == [1, None] and len(exported) == 2
    # the claim alone: exactly one winner per period, whoever asks
    assert await claim_run(db, "other-job", "2026-03-01", node="x") is True
    assert await claim_run(db, "other-job", "2026-03-01", node="y") is False
    assert await claim_run(db, "other-job", "2026-03-02", node="y") is True


async def test_rest_routes(api: Any, make_tenant: Any, db: Database) -> None:
    a = await make_tenant("a.example")
    await _seed(db, "b.example", secret="Mallory")
    base = f"/api/v1/tenants/{a.id}/analytics/export"
    r = await api.client.get(base, headers=a.headers)
    assert r.status_code == 200 and r.json() == {"running": False, "last": None, "error": None}
    r = await api.client.get(f"{base}/file", headers=a.headers)
    assert r.status_code == 404

    exports: Exports = api.client._transport.app.state.analytics
    async with exports._one_at_a_time:  # the process is busy with another export: this one waits its turn
        r = await api.client.post(base, headers=a.headers)
        assert r.status_code == 202 and r.json()["running"] is True, r.text
        r = await api.client.post(base, headers=a.headers)
        assert r.status_code == 409 and "running" in r.json()["detail"]
    assert await exports.wait(a.id) is not None
    r = await api.client.post(base, headers=a.headers)
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 600

    r = await api.client.get(base, headers=a.headers)
    body = r.json()
    assert body["running"] is False and body["last"]["rows"]["fact_calls"] == 0
    assert body["last"]["rows"]["dim_employee"] == 1 and body["last"]["size"] > 0
    assert body["last"]["mode"] == "full" and body["last"]["written"]["dim_employee"] == 1
    exports.min_interval = 0
    r = await api.client.post(f"{base}?full=true", headers=a.headers)
    assert r.status_code == 202
    assert await exports.wait(a.id) is not None
    r = await api.client.post(base, headers=a.headers)
    assert r.status_code == 202
    report = await exports.wait(a.id)
    assert report is not None and report.mode == "incremental"
    body = (await api.client.get(base, headers=a.headers)).json()
    r = await api.client.get(f"{base}/file", headers=a.headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.duckdb"
    assert int(r.headers["content-length"]) == len(r.content) == body["last"]["size"]
    copy = Path(api.settings.data_dir) / "copy.duckdb"
    copy.write_bytes(r.content)
    with duckdb.connect(str(copy), read_only=True) as con:
        assert con.execute("SELECT tenant_id FROM export_info").fetchall() == [(a.id,)]
        assert "Mallory" not in _all_text(con)


def test_cli_export(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    dd = ["--data-dir", str(tmp_path / "data"), "--log-level", "warning"]
    assert main([*dd, "db", "upgrade"]) == 0
    url = f"sqlite+aiosqlite:///{(tmp_path / 'data' / 'zvonok.db').resolve()}"

    async def seed() -> tuple[int, int]:
        db = Database(url)
        try:
            return (await _seed(db, "a.example")).tenant_id, (await _seed(db, "b.example")).tenant_id
        finally:
            await db.dispose()

    a, b = asyncio.run(seed())
    capsys.readouterr()
    assert main([*dd, "analytics", "export", "--tenant", "a.example", "--json"]) == 0
    [report] = json.loads(capsys.readouterr().out)
    assert report["tenant_id"] == a and report["rows"]["fact_payments"] == 3 and report["mode"] == "full"
    assert report["file"] == str(tmp_path / "data" / "analytics" / f"t{a}.duckdb")
    assert not (tmp_path / "data" / "analytics" / f"t{b}.duckdb").exists()
    assert main([*dd, "analytics", "export"]) == 0
    out = capsys.readouterr().out
    assert f"tenant {a}: " in out and f"tenant {b}: " in out and "fact_calls 5" in out
    assert "incremental, 0 fact rows written" in out  # a's second export: nothing changed
    assert main([*dd, "analytics", "export", "--tenant", "a.example", "--full", "--json"]) == 0
    [report] = json.loads(capsys.readouterr().out)
    assert report["mode"] == "full" and report["written"]["fact_calls"] == 5  # a new file: every row written
    assert main([*dd, "analytics", "export", "--tenant", "nope.example"]) == 1
    assert "no tenant with domain nope.example" in capsys.readouterr().err


async def test_the_postgres_target_publishes_the_star_as_a_schema(db: Database, tmp_path: Path) -> None:
    a = await _seed(db, "a.example")
    await _seed(db, "b.example", secret="Mallory")
    if db.engine.dialect.name != "postgresql":
        with pytest.raises(RuntimeError, match="PostgreSQL"):
            await export_tenant(db, a.tenant_id, tmp_path, target="postgres")
        return
    schema = f"analytics_t{a.tenant_id}"
    reader = f"{schema}_reader"
    async with db.engine.connect() as conn:  # the operator's role for the company's BI tool
        await conn.execute(text(f"DROP ROLE IF EXISTS {reader}"))
        await conn.execute(text(f"CREATE ROLE {reader}"))
        await conn.commit()
    try:
        for _ in range(2):  # the second export replaces the schema whole
            report = await export_tenant(db, a.tenant_id, tmp_path, target="postgres")
        async with db.engine.connect() as conn:
            may = (await conn.execute(text(
                f"SELECT has_schema_privilege('{reader}', '{schema}', 'USAGE'), "
                f"has_table_privilege('{reader}', '{schema}.fact_calls', 'SELECT'), "
                f"has_table_privilege('{reader}', '{schema}.fact_calls', 'INSERT')"))).one()
            assert tuple(may) == (True, True, False)
    finally:
        async with db.engine.connect() as conn:
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            await conn.execute(text(f"DROP ROLE IF EXISTS {reader}"))
            await conn.commit()
    await export_tenant(db, a.tenant_id, tmp_path, target="postgres")  # without the role: no grant, no error
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text(
            f"SELECT d.name, sum(f.billsec), count(*) FROM {schema}.fact_calls f "
            f"JOIN {schema}.dim_department d ON d.department_key = f.department_key GROUP BY d.name ORDER BY d.name"
        ))).all()
        assert [tuple(r) for r in rows] == [("Sales", 45, 3), ("Support", 60, 2)]
        rows = (await conn.execute(text(
            f"SELECT c.name, sum(p.amount) FROM {schema}.fact_payments p "
            f"JOIN {schema}.dim_client c ON c.client_key = p.client_key GROUP BY c.name ORDER BY c.name"))).all()
        assert [tuple(r) for r in rows] == [("Acme", Decimal("1000.00")), ("Beta", Decimal("100.00"))]
        counts = dict((await conn.execute(text(f"SELECT table_name, row_count FROM {schema}.export_tables"))).all())
        assert counts == report.rows
        schemas = (await conn.execute(text(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'analytics%'"))).scalars().all()
        assert schemas == [schema]  # no half-made schema left, none of the other company's
        text_of_all = str((await conn.execute(text(f"SELECT * FROM {schema}.dim_client"))).all())
        assert "Mallory" not in text_of_all
