"""CDR logic: the durable call lifecycle (open → CDR) and tenant-scoped queries.

Writers flush but never commit, except the platform-level :func:`close_interrupted`, which owns its
transaction. The tenant is the first argument after the session in every call.

Idempotency: ``cdrs.call_id`` is unique, and :func:`write_cdr` returns ``None`` when a CDR for the call
already exists, so replaying a call's events never duplicates it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from zvonok.cdr.events import MISSED_DISPOSITIONS, CdrWritten
from zvonok.cdr.models import Cdr, CdrLeg, OpenCall
from zvonok.cdr.state import CallRecord, FinishedCall, to_datetime
from zvonok.org.errors import NotFound
from zvonok.org.models import Department, Employee, Extension, Office, Tenant
from zvonok.storage.base import utcnow
from zvonok.telephony.events import Direction, Disposition, HangupSide, Party

log = logging.getLogger(__name__)

INTERRUPTED_CAUSE = "server_restart"


# --- the call lifecycle ----------------------------------------------------------------------------
async def cdr_exists(session: AsyncSession, tenant_id: int, call_id: str) -> bool:
    stmt = select(Cdr.id).where(Cdr.tenant_id == tenant_id, Cdr.call_id == call_id)
    return (await session.execute(stmt)).first() is not None


async def open_call(session: AsyncSession, tenant_id: int, record: CallRecord) -> bool:
    """Note durably that the call is in progress. False if it already has a CDR (a replay)."""
    if await cdr_exists(session, tenant_id, record.call_id):
        return False
    await save_open_call(session, tenant_id, record)
    return True


async def save_open_call(session: AsyncSession, tenant_id: int, record: CallRecord) -> None:
    """Insert or refresh the call's snapshot in ``calls_open``."""
    row = await session.get(OpenCall, record.call_id)
    if row is None:
        session.add(OpenCall(
            tenant_id=tenant_id, call_id=record.call_id, started_at=to_datetime(record.started_at),
            updated_at=to_datetime(record.last_at), state=record.to_json(),
        ))
    elif row.tenant_id == tenant_id:
        row.updated_at = to_datetime(record.last_at)
        row.state = record.to_json()
    await session.flush()


async def heartbeat(session: AsyncSession, call_ids: list[str], at: datetime) -> None:
    """Mark the open calls alive at ``at``: one UPDATE (per 5,000 calls) whatever their number."""
    for start in range(0, len(call_ids), 5000):
        await session.execute(update(OpenCall).where(OpenCall.call_id.in_(call_ids[start:start + 5000]))
                              .values(updated_at=at))


async def load_open_call(session: AsyncSession, tenant_id: int, call_id: str) -> CallRecord | None:
    row = await session.get(OpenCall, call_id)
    if row is None or row.tenant_id != tenant_id:
        return None
    return _record_of(row)


async def write_cdr(session: AsyncSession, tenant_id: int, call: FinishedCall) -> Cdr | None:
    """Add the CDR and its legs and close the open call; ``None`` if the call already has a CDR or
    the tenant is gone. Directory ids that no longer exist in the tenant are stored as NULL."""
    if call.tenant_id != tenant_id:
        raise ValueError("call of another tenant")
    await session.execute(delete(OpenCall).where(OpenCall.tenant_id == tenant_id, OpenCall.call_id == call.call_id))
    if await cdr_exists(session, tenant_id, call.call_id):
        await session.flush()
        return None
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        log.warning("CDR of call %s dropped: tenant %s no longer exists", call.call_id, tenant_id)
        return None
    known = await _known_ids(session, tenant_id, [call.caller, call.callee])
    cdr = _cdr_of(call, tenant, _known(call.caller, known), _known(call.callee, known))
    session.add(cdr)
    await session.flush()
    return cdr


def _cdr_values(call: FinishedCall, tenant: Tenant, caller: Party,
                callee: Party) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``cdrs`` row and its ``cdr_legs`` rows (without ``cdr_id``) of a finished call whose parties'
    directory ids are checked; used by the ORM path and the batched Core path alike."""
    tenant_id = tenant.id
    row = dict(
        tenant_id=tenant_id, call_id=call.call_id, direction=call.direction.value, internal=call.internal,
        dialed_number=_text(call.dialed_number, 64),
        **_party_columns("caller", caller), **_party_columns("callee", callee),
        started_at=call.started_at, answered_at=call.answered_at, ended_at=call.ended_at,
        duration=call.duration, billsec=call.billsec, disposition=call.disposition.value,
        hangup_side=call.hangup_side.value, cause=_text(call.cause, 64), sip_status=call.sip_status,
        recording_path=_text(call.recording_path, 1024) if call.recording_path else None,
        # internal calls cost nothing; outside calls are rated by the route the engine chose (state.rate)
        cost=call.rating.cost, currency=call.rating.currency or tenant.currency,
        trunk_id=call.rating.trunk_id, did=call.rating.did, destination_class=call.rating.destination_class,
        rate_prefix=call.rating.rate_prefix, rate_destination=call.rating.rate_destination,
        rate_per_minute=call.rating.rate_per_minute, billed_seconds=call.rating.billed_seconds,
        end_estimated=call.end_estimated, created_at=utcnow(),
        forwarded_from=_text(call.forwarded_from, 64) if call.forwarded_from else None,
        ring_group=_text(call.ring_group, 8) if call.ring_group else None,
        queue=_text(call.queue, 8) if call.queue else None,
        fax_pages=call.fax_pages, fax_result=_text(call.fax_result, 200) if call.fax_result is not None else None,
        fax_transport=call.fax_transport,
    )
    legs = [
        dict(
            tenant_id=tenant_id, leg_id=_text(leg.leg_id, 64), role=leg.role.value,
            number=_text(leg.party.number, 64), display_name=_text(leg.party.display_name, 200),
            contact=_text(leg.contact, 1024), user_agent=_text(leg.user_agent, 255),
            created_at=to_datetime(leg.created_at),
            answered_at=to_datetime(leg.answered_at) if leg.answered_at is not None else None,
            ended_at=to_datetime(leg.ended_at) if leg.ended_at is not None else None,
            cause=_text(leg.cause, 64) if leg.cause is not None else None,
        )
        for leg in call.legs
    ]
    return row, legs


def _cdr_of(call: FinishedCall, tenant: Tenant, caller: Party, callee: Party) -> Cdr:
    row, legs = _cdr_values(call, tenant, caller, callee)
    return Cdr(**row, legs=[CdrLeg(**leg) for leg in legs])


async def apply_batch(session: AsyncSession, items: list[tuple[str, Any]]) -> list[object]:
    """The CDR writer's queued work in a handful of statements, whatever the batch's size.

    ``items`` are ``("open" | "snapshot", CallRecord)``, ``("write", FinishedCall)`` or ``("write-open",
    CallEnded)`` in event order; results as :meth:`CdrWriter._apply` gives them one by one (``False`` for
    an open of a call that has a CDR already, a ``CdrWritten`` for each CDR written, else ``None``). Per
    batch: one query for the open calls involved, one for the CDRs that exist, one for the tenants, one
    per kind of directory id, and the inserts/updates/deletes of one flush (SQLAlchemy batches them).
    Through aiosqlite every statement costs several thread hand-offs: doing this per call cost ~5 ms
    of CPU per CDR, more than the whole call's signalling.
    """
    call_ids = {data.call_id for _, data in items}
    # Core tables, not ORM entities: plain rows in, executemany out, nothing in the identity map
    opens, cdr_table, legs_table = (cast(Table, m.__table__) for m in (OpenCall, Cdr, CdrLeg))
    open_rows = {row.call_id: row for row in (await session.execute(
        select(opens).where(opens.c.call_id.in_(call_ids))))} if call_ids else {}
    have_cdr = {(t, c) for t, c in (await session.execute(
        select(Cdr.tenant_id, Cdr.call_id).where(Cdr.call_id.in_(call_ids)))).all()} if call_ids else set()
    # "write-open": a call this process never saw start, completed from its calls_open row
    finished_items: list[tuple[int, FinishedCall | None]] = []
    for index, (kind, data) in enumerate(items):
        if kind == "write":
            finished_items.append((index, data))
        elif kind == "write-open":
            row = open_rows.get(data.call_id)
            if row is None or row.tenant_id != data.tenant_id:
                log.warning("CallEnded for unknown call %s of tenant %s: no CDR", data.call_id, data.tenant_id)
                finished_items.append((index, None))
            else:
                finished_items.append((index, _record_of(row).finish_with(data)))
    finished = {index: call for index, call in finished_items}
    tenant_ids = {call.tenant_id for call in finished.values() if call is not None}
    tenants = {t.id: t for t in (await session.execute(
        select(Tenant).where(Tenant.id.in_(tenant_ids)))).scalars()} if tenant_ids else {}
    known: dict[int, dict[str, set[int]]] = {}
    for tenant_id in tenant_ids:
        parties = [p for call in finished.values() if call is not None and call.tenant_id == tenant_id
                   for p in (call.caller, call.callee)]
        known[tenant_id] = await _known_ids(session, tenant_id, parties)
    results: list[object] = []
    inserts: dict[str, dict[str, Any]] = {}  # calls_open rows to insert, by call id
    updates: dict[str, dict[str, Any]] = {}  # calls_open rows to refresh
    deletes: set[str] = set()
    cdrs: list[tuple[int, dict[str, Any], list[dict[str, Any]]]] = []  # (item index, row, leg rows)
    for index, (kind, data) in enumerate(items):
        if kind in ("open", "snapshot"):
            record: CallRecord = data
            if kind == "open" and (record.tenant_id, record.call_id) in have_cdr:
                results.append(False)
                continue
            values = {"tenant_id": record.tenant_id, "call_id": record.call_id,
                      "started_at": to_datetime(record.started_at), "updated_at": to_datetime(record.last_at),
                      "state": record.to_json()}
            row = open_rows.get(record.call_id)
            if row is not None:
                if row.tenant_id == record.tenant_id:
                    updates[record.call_id] = values
            else:
                inserts[record.call_id] = values
            results.append(True if kind == "open" else None)
            continue
        call = finished.get(index)
        results.append(None)
        if call is None:
            continue
        inserts.pop(call.call_id, None)
        updates.pop(call.call_id, None)
        row = open_rows.get(call.call_id)
        if row is not None and row.tenant_id == call.tenant_id:
            deletes.add(call.call_id)
        tenant = tenants.get(call.tenant_id)
        if (call.tenant_id, call.call_id) in have_cdr or tenant is None:
            if tenant is None:
                log.warning("CDR of call %s dropped: tenant %s no longer exists", call.call_id, call.tenant_id)
            continue
        have_cdr.add((call.tenant_id, call.call_id))
        ids = known[call.tenant_id]
        row_values, legs = _cdr_values(call, tenant, _known(call.caller, ids), _known(call.callee, ids))
        cdrs.append((index, row_values, legs))
    # Core statements, executemany: the ORM's unit of work cost more than the SQL for these plain rows
    if deletes:
        await session.execute(delete(opens).where(opens.c.call_id.in_(deletes)))
    if updates:
        await session.execute(
            update(opens).where(opens.c.call_id == bindparam("key"))
            .values(updated_at=bindparam("updated_at"), state=bindparam("state")),
            [{"key": v["call_id"], "updated_at": v["updated_at"], "state": v["state"]} for v in updates.values()])
    if inserts:
        await session.execute(insert(opens), list(inserts.values()))
    if cdrs:
        # the ids come back keyed by call, in any order: asking them in the rows' order made SQLAlchemy send one
        # INSERT per CDR on SQLite (a thread hand-off each through aiosqlite: most of a CDR's cost); in any
        # order it sends the batch in a few multi-row INSERTs
        returned = await session.execute(
            insert(cdr_table).returning(cdr_table.c.id, cdr_table.c.tenant_id, cdr_table.c.call_id),
            [values for _, values, _ in cdrs])
        by_call = {(tenant_id, call_id): cdr_id for cdr_id, tenant_id, call_id in returned.all()}
        cdr_ids = [by_call[(values["tenant_id"], values["call_id"])] for _, values, _ in cdrs]
        leg_rows = [{**leg, "cdr_id": cdr_id} for (_, _, legs), cdr_id in zip(cdrs, cdr_ids, strict=True)
                    for leg in legs]
        if leg_rows:
            await session.execute(insert(legs_table), leg_rows)
        for (index, values, _), cdr_id in zip(cdrs, cdr_ids, strict=True):
            results[index] = _written(cast(int, values["tenant_id"]), cast(str, values["call_id"]), cdr_id,
                                      cast(int | None, values["caller_employee_id"]),
                                      cast(int | None, values["callee_employee_id"]),
                                      missed=_missed(values["direction"], values["disposition"]))
    return results


def cdr_written(cdr: Cdr) -> CdrWritten:
    return _written(cdr.tenant_id, cdr.call_id, cdr.id, cdr.caller_employee_id, cdr.callee_employee_id,
                    missed=_missed(cdr.direction, cdr.disposition))


def _missed(direction: object, disposition: object) -> bool:
    return direction == "inbound" and disposition in MISSED_DISPOSITIONS


def _written(tenant_id: int, call_id: str, cdr_id: int, *employee_ids: int | None, missed: bool) -> CdrWritten:
    """The announcement of a CDR on disk, naming the employees whose call it was."""
    return CdrWritten(tenant_id=tenant_id, call_id=call_id, cdr_id=cdr_id,
                      employee_ids=tuple(sorted({e for e in employee_ids if e is not None})), missed=missed)


async def close_interrupted(db: Any, now: datetime, *, bus: Any = None,
                            stale_before: datetime | None = None) -> list[CdrWritten]:
    """Start-up: turn every call left open by a crash into a CDR with disposition "interrupted", hung up
    by the system, in one transaction; then publish ``CdrWritten`` on ``bus`` if given.

    The end is the call's last sign of life (the writer's heartbeat, or its last event), marked
    ``end_estimated``: ending it at restart time billed a 1 s call that a crash cut as 12 s.

    ``db`` is the :class:`~zvonok.storage.db.Database`; call this before the SIP service starts, so no
    call of this run can be mistaken for a leftover. Platform-level: it covers every tenant.

    ``stale_before``: several nodes on one database (issue 14) — only the calls whose last heartbeat is
    older are closed (a node that died), never those a live node keeps beating; rows another node is
    closing at the same moment are skipped (``SKIP LOCKED``), so each gets one CDR.
    """
    written: list[CdrWritten] = []
    query = select(OpenCall).order_by(OpenCall.started_at)
    if stale_before is not None:
        query = query.where(OpenCall.updated_at < stale_before).with_for_update(skip_locked=True)
    async with db.session() as session:
        rows = (await session.execute(query)).scalars().all()
        for row in rows:
            record = _record_of(row)
            alive = max(row.updated_at.timestamp(), record.last_at)
            finished = record.finish(
                at=min(alive, now.timestamp()), disposition=Disposition.INTERRUPTED,
                hangup_side=HangupSide.SYSTEM, cause=INTERRUPTED_CAUSE, estimated=True,
            )
            cdr = await write_cdr(session, row.tenant_id, finished)
            if cdr is not None:
                written.append(cdr_written(cdr))
        await session.commit()
    if written:
        log.warning("closed %d call(s) left open by an unclean stop as interrupted", len(written))
    if bus is not None:
        for evt in written:
            bus.publish(evt)
    return written


def _record_of(row: Any) -> CallRecord:
    """The call of a ``calls_open`` row (an ORM object or a Core row)."""
    try:
        return CallRecord.from_json(row.state)
    except (KeyError, TypeError, ValueError):
        log.warning("unreadable snapshot of open call %s; writing what the row itself knows", row.call_id)
        start = row.started_at.timestamp()
        return CallRecord(
            tenant_id=row.tenant_id, call_id=row.call_id, direction=Direction.INBOUND, caller=Party(number=""),
            dialed_number="", started_at=start, last_at=max(start, row.updated_at.timestamp()),
        )


def _text(value: str, size: int) -> str:
    """Fit a string from the wire into a column: no NUL (PostgreSQL rejects it in text, and a display
    name is whatever a stranger's phone sent), at most ``size`` characters."""
    return value.replace("\x00", "")[:size]


def _party_columns(prefix: str, p: Party) -> dict[str, Any]:
    return {
        f"{prefix}_number": _text(p.number, 64), f"{prefix}_name": _text(p.display_name, 200),
        f"{prefix}_extension_id": p.extension_id, f"{prefix}_employee_id": p.employee_id,
        f"{prefix}_office_id": p.office_id, f"{prefix}_department_id": p.department_id,
    }


async def _known_ids(session: AsyncSession, tenant_id: int, parties: list[Party]) -> dict[str, set[int]]:
    """Which of the parties' directory ids exist in this tenant: one query per kind of id."""
    known: dict[str, set[int]] = {}
    for attr, model in (("extension_id", Extension), ("employee_id", Employee), ("office_id", Office),
                        ("department_id", Department)):
        ids = {getattr(p, attr) for p in parties} - {None}
        if ids:
            stmt = select(model.id).where(model.tenant_id == tenant_id, model.id.in_(ids))
            known[attr] = set((await session.execute(stmt)).scalars())
        else:
            known[attr] = set()
    return known


def _known(p: Party, known: dict[str, set[int]]) -> Party:
    """The party with directory ids that do not exist in its tenant nulled out (deleted meanwhile, or a
    caller's bug that would otherwise link a CDR to another tenant's rows or break the foreign key)."""
    changes: dict[str, Any] = {
        attr: None for attr in known if getattr(p, attr) is not None and getattr(p, attr) not in known[attr]
    }
    return replace(p, **changes) if changes else p


# --- queries ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Viewer:
    """Whose CDRs may be seen: all of the tenant (admins), or those where ``employee_id`` is a party."""

    all_calls: bool
    employee_id: int | None = None

    @classmethod
    def admin(cls) -> Viewer:
        return cls(all_calls=True)

    @classmethod
    def employee(cls, employee_id: int | None) -> Viewer:
        return cls(all_calls=False, employee_id=employee_id)

    def condition(self) -> ColumnElement[bool] | None:
        if self.all_calls:
            return None
        if self.employee_id is None:  # an employee-role login not linked to an employee sees nothing
            return false()
        return or_(Cdr.caller_employee_id == self.employee_id, Cdr.callee_employee_id == self.employee_id)


@dataclass(frozen=True)
class CdrFilter:
    since: datetime | None = None  # started_at >= since
    until: datetime | None = None  # started_at < until
    extension: str | None = None  # caller or callee number
    extension_id: int | None = None  # caller or callee extension
    disposition: str | None = None
    direction: str | None = None
    search: str | None = None  # part of the caller's or callee's number or name (case-insensitive)
    cost_min: Decimal | None = None  # cost >= cost_min
    cost_max: Decimal | None = None  # cost <= cost_max

    def conditions(self) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.since is not None:
            conds.append(Cdr.started_at >= self.since)
        if self.until is not None:
            conds.append(Cdr.started_at < self.until)
        if self.extension is not None:
            conds.append(or_(Cdr.caller_number == self.extension, Cdr.callee_number == self.extension))
        if self.extension_id is not None:
            conds.append(or_(Cdr.caller_extension_id == self.extension_id, Cdr.callee_extension_id == self.extension_id))
        if self.disposition is not None:
            conds.append(Cdr.disposition == self.disposition)
        if self.direction is not None:
            conds.append(Cdr.direction == self.direction)
        if self.search:
            conds.append(or_(*(column.icontains(self.search, autoescape=True) for column in (
                Cdr.caller_number, Cdr.caller_name, Cdr.callee_number, Cdr.callee_name, Cdr.dialed_number))))
        if self.cost_min is not None:
            conds.append(Cdr.cost >= self.cost_min)
        if self.cost_max is not None:
            conds.append(Cdr.cost <= self.cost_max)
        return conds


def _query(tenant_id: int, flt: CdrFilter, viewer: Viewer) -> Select[tuple[Cdr]]:
    conds = [Cdr.tenant_id == tenant_id, *flt.conditions()]
    visible = viewer.condition()
    if visible is not None:
        conds.append(visible)
    return select(Cdr).where(and_(*conds))


_ORDER = (Cdr.started_at.desc(), Cdr.id.desc())


async def list_cdrs(
    session: AsyncSession, tenant_id: int, flt: CdrFilter, viewer: Viewer, *, limit: int, offset: int
) -> tuple[list[Cdr], int]:
    """One page, newest first, and the total count matching."""
    base = _query(tenant_id, flt, viewer)
    total = int((await session.execute(select(func.count()).select_from(base.subquery()))).scalar_one())
    rows = (await session.execute(base.order_by(*_ORDER).limit(limit).offset(offset))).scalars().all()
    return list(rows), total


async def iter_cdrs(
    session: AsyncSession, tenant_id: int, flt: CdrFilter, viewer: Viewer, *, batch: int = 500
) -> AsyncIterator[list[Cdr]]:
    """Every matching CDR, newest first, in batches (keyset paging, so an export of a year stays cheap
    and stable while new calls are written)."""
    base = _query(tenant_id, flt, viewer).order_by(*_ORDER).limit(batch)
    after: tuple[datetime, int] | None = None
    while True:
        stmt = base
        if after is not None:
            stmt = stmt.where(or_(Cdr.started_at < after[0], and_(Cdr.started_at == after[0], Cdr.id < after[1])))
        rows = list((await session.execute(stmt)).scalars().all())
        if not rows:
            return
        yield rows
        if len(rows) < batch:
            return
        after = (rows[-1].started_at, rows[-1].id)


async def get_cdr(session: AsyncSession, tenant_id: int, cdr_id: int, viewer: Viewer, *, legs: bool = True) -> Cdr:
    stmt = _query(tenant_id, CdrFilter(), viewer).where(Cdr.id == cdr_id)
    if legs:
        stmt = stmt.options(selectinload(Cdr.legs))
    cdr = (await session.execute(stmt)).scalar_one_or_none()
    if cdr is None:
        raise NotFound(f"cdr {cdr_id} not found")
    return cdr


# --- recordings ------------------------------------------------------------------------------------
def recordings_dir(data_dir: Path) -> Path:
    return data_dir / "recordings"


def recording_file(data_dir: Path, stored: str | None) -> Path | None:
    """The recording's real path if it is an existing file inside ``<data_dir>/recordings`` (after
    resolving ``..`` and symlinks); else None. A CDR's path is never trusted to point anywhere else."""
    if not stored:
        return None
    root = recordings_dir(data_dir).resolve()
    candidate = Path(stored)
    if not candidate.is_absolute():
        candidate = root / candidate
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, a NUL byte
        return None
    if not real.is_relative_to(root) or not real.is_file():
        return None
    return real
