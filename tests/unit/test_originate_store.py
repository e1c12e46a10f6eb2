"""The originate journal on the database (zvonok.originates.store), on SQLite and PostgreSQL: records
written and overwritten, kept while the database is away, calls a stop left unfinished, retention; and over
REST (telephony/originate_http.py): the status of an originated call after a restart (a new app and a new
originator on the same database), another company's id, and a failed click-to-call on the client's timeline."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from test_originate_api import _setup

from conftest import Api, _extra_routers
from zvonok.api.app import create_app
from zvonok.cdr import service as cdr_service
from zvonok.cdr.models import OpenCall
from zvonok.cdr.state import CallRecord
from zvonok.originates.models import OriginateRequest
from zvonok.originates.store import OriginateLog, close_interrupted, find
from zvonok.storage.db import Database
from zvonok.telephony.events import CallStarted, Direction, Disposition, HangupSide, Party
from zvonok.telephony.originate import OriginateRecord, Originator, Phase


async def _tenants(db: Database, count: int = 2) -> list[int]:
    from zvonok.org.models import Tenant

    ids = []
    async with db.session() as session:
        for _ in range(count):
            name = uuid.uuid4().hex[:8]
            tenant = Tenant(name=name, sip_domain=f"{name}.example", timezone="UTC", currency="RUB", locale="ru")
            session.add(tenant)
            await session.flush()
            ids.append(tenant.id)
        await session.commit()
    return ids


def _record(tenant_id: int, call_id: str | None = None, *, phase: Phase = Phase.RINGING_EMPLOYEE,
            reason: str | None = None, at: float | None = None, **more: Any) -> OriginateRecord:
    return OriginateRecord(call_id=call_id or uuid.uuid4().hex, tenant_id=tenant_id, kind="call",
                           requested_by="account:1", employee_id=None, extension="101", to="+74951112233",
                           client_id=None, phase=phase, reason=reason, started_at=at or time.time(), **more)


async def _rows(db: Database) -> dict[str, OriginateRequest]:
    async with db.session() as session:
        return {r.call_id: r for r in (await session.execute(select(OriginateRequest))).scalars()}


async def test_records_are_written_then_overwritten_and_found_per_company(db: Database) -> None:
    a, b = await _tenants(db)
    log = OriginateLog(db)
    first = _record(a)
    log(first)
    log(_record(b))
    assert await log.flush() == 2 and log.pending == 0
    now = time.time()
    log(_record(a, first.call_id, phase=Phase.DIALING, dialing_at=now))
    log(_record(a, first.call_id, phase=Phase.FAILED, reason="busy", dialing_at=now, finished_at=now + 1))
    assert await log.flush() == 1  # only the newest record of a call is written
    rows = await _rows(db)
    assert len(rows) == 2
    row = rows[first.call_id]
    assert (row.tenant_id, row.phase, row.reason, row.requested_by, row.to_number) == (
        a, "failed", "busy", "account:1", "+74951112233")
    assert row.dialing_at is not None and row.finished_at is not None and row.connected_at is None
    async with db.session() as session:
        assert (await find(session, a, first.call_id)) is not None
        assert (await find(session, b, first.call_id)) is None  # another company's id: as a missing one


async def test_records_wait_while_the_database_is_away(db: Database, tmp_path: Any) -> None:
    (a,) = await _tenants(db, 1)
    away = Database(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db")
    try:
        log = OriginateLog(away)
        record = _record(a)
        log(record)
        with pytest.raises(OperationalError):
            await log.flush()
        assert log.pending == 1
    finally:
        await away.dispose()
    log.db = db  # the database is back
    assert await log.flush() == 1 and record.call_id in await _rows(db)


async def test_the_job_writes_on_wake_and_what_is_left_at_the_stop(db: Database) -> None:
    (a,) = await _tenants(db, 1)
    log = OriginateLog(db)
    stopping = asyncio.Event()
    job = asyncio.create_task(log.run(stopping))
    first = _record(a)
    log(first)
    for _ in range(500):
        if first.call_id in await _rows(db):
            break
        await asyncio.sleep(0.01)
    assert first.call_id in await _rows(db)
    stopping.set()
    last = _record(a)
    log(last)  # queued as the job stops: written by its last flush
    await job
    assert last.call_id in await _rows(db)


async def test_a_stop_leaves_ringing_calls_failed_and_connected_ones_ended(db: Database) -> None:
    a, b = await _tenants(db)
    log = OriginateLog(db)
    ringing, dialing, talking, done = _record(a), _record(a, phase=Phase.DIALING), _record(
        b, phase=Phase.CONNECTED), _record(a, phase=Phase.FAILED, reason="employee_busy", finished_at=time.time())
    for record in (ringing, dialing, talking, done):
        log(record)
    await log.flush()
    assert await close_interrupted(db, datetime.now(UTC)) == 3
    rows = await _rows(db)
    assert (rows[ringing.call_id].phase, rows[ringing.call_id].reason) == ("failed", "server_restarted")
    assert (rows[dialing.call_id].phase, rows[dialing.call_id].reason) == ("failed", "server_restarted")
    assert (rows[talking.call_id].phase, rows[talking.call_id].reason) == ("ended", None)
    assert (rows[done.call_id].phase, rows[done.call_id].reason) == ("failed", "employee_busy")
    assert all(r.finished_at is not None for r in rows.values())


async def test_several_nodes_close_only_calls_no_node_keeps_open(db: Database) -> None:
    (a,) = await _tenants(db, 1)
    log = OriginateLog(db)
    old = time.time() - 600
    dead, alive, young = _record(a, at=old), _record(a, at=old), _record(a)
    for record in (dead, alive, young):
        log(record)
    await log.flush()
    now = datetime.now(UTC)
    async with db.session() as session:  # a live node's call: open, its heartbeat recent
        session.add(OpenCall(tenant_id=a, call_id=alive.call_id, started_at=now, updated_at=now, state={}))
        await session.commit()
    assert await close_interrupted(db, now, stale_before=now - timedelta(seconds=15)) == 1
    rows = await _rows(db)
    assert [c for c, r in rows.items() if r.phase == "failed"] == [dead.call_id]


async def test_old_rows_are_pruned_and_one_company_keeps_a_bounded_number(db: Database) -> None:
    a, b = await _tenants(db)
    log = OriginateLog(db, keep_days=90, per_tenant=5)
    ancient = _record(b, at=time.time() - 91 * 86400, phase=Phase.FAILED, reason="busy")
    recent_b = _record(b, at=time.time() - 89 * 86400, phase=Phase.FAILED, reason="busy")
    many = [_record(a, at=time.time() - 100 + i) for i in range(8)]
    for record in (ancient, recent_b, *many):
        log(record)
    await log.flush()
    assert await log.prune() == 1 + 3
    rows = await _rows(db)
    assert ancient.call_id not in rows and recent_b.call_id in rows
    assert sorted(c for c, r in rows.items() if r.tenant_id == a) == sorted(r.call_id for r in many[3:])
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(OriginateRequest)) == 6


# --- over REST ----------------------------------------------------------------------------------------------
async def test_the_status_outlives_a_restart_and_stays_the_companys(api: Api, make_tenant: Any) -> None:
    a, b, engine, ids = await _setup(api, make_tenant)
    app = api.client._transport.app  # type: ignore[attr-defined]
    log = OriginateLog(api.db)
    app.state.originator = Originator(engine, journal=log)
    engine.register(a.id, ids["aolga"][1], "101")
    r = await api.client.post("/api/v1/calls/originate", headers=ids["aolga-headers"],
                              json={"extension": "101", "to": "102"})
    assert r.status_code == 202, r.text
    call_id = r.json()["call_id"]
    await log.flush()
    rows = await _rows(api.db)
    assert rows[call_id].requested_by.startswith("account:") and rows[call_id].employee_id == ids["aolga"][0]

    # the process stops while Olga's phone rings; a new one starts on the same database
    assert await close_interrupted(api.db, datetime.now(UTC)) == 1
    restarted = create_app(api.settings, api.db, routers=_extra_routers())
    restarted.state.originator = Originator(engine, journal=OriginateLog(api.db))  # nothing in memory
    async with _client(restarted) as client:
        for headers in (a.headers, ids["aolga-headers"]):
            r = await client.get(f"/api/v1/calls/originate/{call_id}", headers=headers)
            assert r.status_code == 200, r.text
            assert (r.json()["phase"], r.json()["reason"], r.json()["to"]) == ("failed", "server_restarted", "102")
        # another company's admin, another employee of the company: 404, as an id that never was
        for headers in (b.headers, ids["bolga-headers"], ids["apetr-headers"]):
            assert (await client.get(f"/api/v1/calls/originate/{call_id}", headers=headers)).status_code == 404
        assert (await client.get(f"/api/v1/calls/originate/{'x' * 300}", headers=a.headers)).status_code == 404
    # an API-only process (no call engine) reads the status from the table too
    restarted.state.originator = None
    async with _client(restarted) as client:
        r = await client.get(f"/api/v1/calls/originate/{call_id}", headers=a.headers)
        assert r.status_code == 200 and r.json()["phase"] == "failed"


def _client(app: Any) -> Any:
    import httpx

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://zvonok.test")


async def test_a_click_to_call_that_failed_before_any_call_is_on_the_timeline(api: Api, make_tenant: Any) -> None:
    a, b, engine, ids = await _setup(api, make_tenant)
    app = api.client._transport.app  # type: ignore[attr-defined]
    log = OriginateLog(api.db)
    app.state.originator = Originator(engine, journal=log)
    base = f"/api/v1/tenants/{a.id}/crm/clients"
    r = await api.client.post(base, headers=a.headers, json={"name": "Roga", "phones": [{"number": "+74951112233"}]})
    assert r.status_code == 201, r.text
    client_id = r.json()["id"]
    olga = ids["aolga-headers"]
    # Olga's phone is not registered: 409, and the attempt is the client's
    r = await api.client.post(f"{base}/{client_id}/call", headers=olga, json={})
    assert r.status_code == 409 and r.json()["reason"] == "not_registered"
    # registered: it rings, then fails (the employee did not answer) — and that call has its CDR
    engine.register(a.id, ids["aolga"][1], "101")
    r = await api.client.post(f"{base}/{client_id}/call", headers=olga, json={})
    assert r.status_code == 202, r.text
    rang = r.json()["call_id"]
    session = app.state.originator.status(a.id, rang)
    session.advance(Phase.FAILED, "employee_no_answer")
    await log.flush()
    await _cdr(api, a.id, rang, "101", "+74951112233")
    rows = await _rows(api.db)
    assert {(r.client_id, r.phase, r.reason) for r in rows.values()} == {
        (client_id, "failed", "not_registered"), (client_id, "failed", "employee_no_answer")}

    r = await api.client.get(f"{base}/{client_id}/timeline", headers=olga)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["kind"] for i in items] == ["call", "click_to_call"]
    attempt = items[1]["click_to_call"]
    assert (attempt["reason"], attempt["extension"], attempt["client_number"], attempt["employee_name"]) == (
        "not_registered", "101", "+74951112233", "aolga")
    assert r.json()["total"] == 2
    assert items[0]["call"]["call_id"] == rang  # the call that rang is there once: as the call
    # another company sees nothing of it
    r = await api.client.get(f"/api/v1/tenants/{b.id}/crm/clients/{client_id}/timeline", headers=b.headers)
    assert r.status_code == 404
    # merged into another client: the attempt goes with the phones
    r = await api.client.post(base, headers=a.headers, json={"name": "Roga 2", "phones": [{"number": "+74953334455"}]})
    assert r.status_code == 201, r.text
    other = r.json()["id"]
    r = await api.client.post(f"{base}/{other}/merge", headers=a.headers, json={"source_id": client_id})
    assert r.status_code == 200, r.text
    r = await api.client.get(f"{base}/{other}/timeline", headers=a.headers)
    assert [i["kind"] for i in r.json()["items"]] == ["call", "click_to_call"]


async def _cdr(api: Api, tenant_id: int, call_id: str, caller: str, callee: str) -> None:
    record = CallRecord.started(CallStarted(
        tenant_id=tenant_id, call_id=call_id, at=time.time(), caller=Party(number=caller),
        callee_number=callee, direction=Direction.OUTBOUND))
    finished = record.finish(at=time.time() + 1, disposition=Disposition.NO_ANSWER, hangup_side=HangupSide.SYSTEM,
                             cause="originate_employee_no_answer")
    async with api.db.session() as session:
        assert await cdr_service.write_cdr(session, tenant_id, finished) is not None
        await session.commit()
