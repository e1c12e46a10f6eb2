"""Historic reports by SQL over ``queue_log``, on SQLite and PostgreSQL alike.

The figures follow :mod:`.kpi`'s definitions exactly (a test compares the two on one scripted log): the
database sums counts and seconds per bucket and queue (or agent); the ratios are divided here, as kpi
does, so both sides compute them from the same sums. Buckets are 15 minutes, an hour or a day, aligned
on the tenant's local time: ``utc_offset`` (seconds east of UTC, the tenant's offset at the start of the
interval — a report across a DST change keeps one offset) shifts the boundaries, so a Moscow day runs
from local midnight. ``start`` is the bucket's first second, epoch. JSON figures are read with SQLAlchemy's JSON accessors
(``json_extract`` on SQLite, ``->>`` on PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Float, Integer, and_, case, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from zvonok.org.models import Tenant

from . import log as ql
from . import schemas
from .agents import BUSY, AgentStatus
from .models import CallQueue, QueueLogRow

BUCKETS = {"15min": 900, "hour": 3600, "day": 86400}
_COMPLETIONS = (ql.COMPLETEAGENT, ql.COMPLETECALLER, ql.TRANSFER)
_DEFAULT_SL = 20.0  # a deleted queue's threshold (kpi's caller passes the queue's)


async def utc_offset(session: AsyncSession, tenant_id: int, at: float) -> int:
    """The tenant's UTC offset at ``at`` (seconds east): buckets start at local midnight, hour, quarter."""
    tenant = await session.get(Tenant, tenant_id)
    try:
        zone = ZoneInfo(tenant.timezone if tenant is not None else "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    delta = datetime.fromtimestamp(at, zone).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def _bucket(session: AsyncSession, size: int, offset: int) -> ColumnElement[Any]:
    quotient = (QueueLogRow.at + offset) / size
    if session.bind.dialect.name == "postgresql":
        index: ColumnElement[Any] = cast(func.floor(quotient), Integer)
    else:  # SQLite's CAST truncates (epoch times are positive: the floor)
        index = cast(quotient, Integer)
    return (index * size - offset).label("start")


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _seconds(condition: ColumnElement[bool], key: str) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, QueueLogRow.data[key].as_float()), else_=literal(0.0, Float))),
                         0.0)


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


async def queue_report(session: AsyncSession, tenant_id: int, *, start: float, end: float, group: str,
                       queue_id: int | None = None, utc_offset: int = 0) -> list[schemas.QueueReportRow]:
    e = QueueLogRow.event
    bucket = _bucket(session, BUCKETS[group], utc_offset)
    threshold = func.coalesce(CallQueue.service_level, _DEFAULT_SL)
    hold = QueueLogRow.data["hold"].as_float()
    stmt = (
        select(bucket, QueueLogRow.queue_id,
               _count(e == ql.ENTERQUEUE), _count(e.in_((ql.FULL, ql.JOINEMPTY))), _count(e == ql.CONNECT),
               _count(e == ql.ABANDON), _count(e.in_((ql.EXITWITHTIMEOUT, ql.EXITEMPTY))), _count(e == ql.CALLBACK),
               _count(and_(e == ql.CONNECT, hold <= threshold)), _count(e.in_(_COMPLETIONS)),
               _seconds(e == ql.CONNECT, "hold"), _seconds(e.in_(_COMPLETIONS), "talk"),
               _seconds(and_(e == ql.AGENTSTATUS, QueueLogRow.data["from"].as_string() == AgentStatus.WRAP_UP.value),
                        "seconds"))
        .select_from(QueueLogRow)
        .outerjoin(CallQueue, CallQueue.id == QueueLogRow.queue_id)
        .where(QueueLogRow.tenant_id == tenant_id, QueueLogRow.queue_id.is_not(None),
               QueueLogRow.at >= start, QueueLogRow.at < end)
        .group_by(bucket, QueueLogRow.queue_id)
        .order_by(bucket, QueueLogRow.queue_id)
    )
    if queue_id is not None:
        stmt = stmt.where(QueueLogRow.queue_id == queue_id)
    out = []
    for row in (await session.execute(stmt)).tuples():
        (begin, qid, offered, refused, answered, abandoned, overflowed, callbacks, in_time, completed,
         hold_sum, talk, wrap) = row
        ended = answered + abandoned + overflowed
        out.append(schemas.QueueReportRow(
            start=float(begin), queue_id=qid, offered=offered, refused=refused, answered=answered,
            abandoned=abandoned, overflowed=overflowed, callbacks=callbacks, answered_in_time=in_time,
            service_level=_ratio(in_time, ended), asa=_ratio(float(hold_sum), answered),
            aht=_ratio(float(talk) + float(wrap), completed), abandon_rate=_ratio(abandoned, offered),
            talk_time=float(talk), wrap_up_time=float(wrap)))
    return out


async def agent_report(session: AsyncSession, tenant_id: int, *, start: float, end: float, group: str,
                       agent_id: int | None = None, utc_offset: int = 0) -> list[schemas.AgentReportRow]:
    e = QueueLogRow.event
    bucket = _bucket(session, BUCKETS[group], utc_offset)
    state = QueueLogRow.data["from"].as_string()
    status = e == ql.AGENTSTATUS
    stmt = (
        select(bucket, QueueLogRow.agent_id, _count(e.in_(_COMPLETIONS)), _seconds(e.in_(_COMPLETIONS), "talk"),
               _seconds(and_(status, state.in_([s.value for s in BUSY])), "seconds"),
               _seconds(and_(status, state == AgentStatus.AVAILABLE.value), "seconds"),
               _seconds(and_(status, state == AgentStatus.NOT_READY.value), "seconds"))
        .where(QueueLogRow.tenant_id == tenant_id, QueueLogRow.agent_id.is_not(None),
               QueueLogRow.at >= start, QueueLogRow.at < end)
        .group_by(bucket, QueueLogRow.agent_id)
        .order_by(bucket, QueueLogRow.agent_id)
    )
    if agent_id is not None:
        stmt = stmt.where(QueueLogRow.agent_id == agent_id)
    out = []
    for begin, aid, calls, talk, busy, available, not_ready in (await session.execute(stmt)).tuples():
        out.append(schemas.AgentReportRow(
            start=float(begin), agent_id=aid, calls=calls, talk_time=float(talk), busy_time=float(busy),
            available_time=float(available), not_ready_time=float(not_ready),
            occupancy=_ratio(float(busy), float(busy) + float(available))))
    return out
