"""Callback requests kept in the database (``queue_callbacks``), so a restart does not lose a customer's request.

How it works: the center puts out each step of a request as a :class:`~.center.CallbackChange`; the runtime
writes them in order with the queue log (:func:`apply`): the request itself is a new row (``waiting``), the
later steps update it (``dialing`` when the agent answered and the customer is called, back to ``waiting`` after
a failed attempt, ``done``, ``failed`` or ``cancelled``). A row in one of these last three states is never
changed again, so a late write cannot bring a cancelled request back. At start the runtime reads the open rows
(:func:`open_requests`, in their line's order) and puts them back in line; a ``dialing`` one is waiting again.

Finished rows are kept :data:`KEEP_FINISHED` seconds (the list's history), then deleted at the next start.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.org.errors import Conflict
from zvonok.org.scope import get_in_tenant
from zvonok.storage.base import utcnow

from .center import CallbackChange
from .models import OPEN_CALLBACK_STATES, CallQueue, QueueCallbackRow, QueueMember

if TYPE_CHECKING:
    from .runtime import CallCenterRuntime

KEEP_FINISHED = 30 * 86400
NUMBER_LENGTH = 64


async def apply(session: AsyncSession, tenant_id: int, change: CallbackChange) -> None:
    """Write one step of a request (flushed, not committed)."""
    if change.requested_at is not None:
        await session.execute(insert(QueueCallbackRow).values(
            tenant_id=tenant_id, queue_id=change.queue_id, call_id=change.call_id,
            number=change.number[:NUMBER_LENGTH], priority=change.priority, joined_at=change.joined_at,
            requested_at=change.requested_at, position=change.position, state=change.state,
            attempts=change.attempts, last_result=change.last_result, retry_at=change.retry_at,
            created_at=utcnow(), updated_at=utcnow()))
        return
    values: dict[str, object] = {"state": change.state, "attempts": change.attempts, "retry_at": change.retry_at,
                                 "updated_at": utcnow()}
    if change.last_result is not None:  # a step without a result (dialing, a restore) keeps the last one
        values["last_result"] = change.last_result
    await session.execute(
        update(QueueCallbackRow)
        .where(QueueCallbackRow.tenant_id == tenant_id, QueueCallbackRow.call_id == change.call_id,
               QueueCallbackRow.state.in_(OPEN_CALLBACK_STATES))
        .values(values))


async def open_requests(session: AsyncSession) -> list[QueueCallbackRow]:
    """Every tenant's waiting (and interrupted ``dialing``) requests, in the order they joined their lines."""
    rows = await session.execute(
        select(QueueCallbackRow).where(QueueCallbackRow.state.in_(OPEN_CALLBACK_STATES))
        .order_by(QueueCallbackRow.joined_at, QueueCallbackRow.id))
    return list(rows.scalars())


async def prune(session: AsyncSession) -> int:
    """Delete the requests finished longer than :data:`KEEP_FINISHED` ago (not committed)."""
    result = await session.execute(
        delete(QueueCallbackRow).where(QueueCallbackRow.state.not_in(OPEN_CALLBACK_STATES),
                                       QueueCallbackRow.updated_at < utcnow() - timedelta(seconds=KEEP_FINISHED)))
    return int(getattr(result, "rowcount", 0) or 0)


async def get(session: AsyncSession, tenant_id: int, callback_id: int) -> QueueCallbackRow:
    """One request of the tenant; another tenant's or none: NotFound (404)."""
    return await get_in_tenant(session, QueueCallbackRow, tenant_id, callback_id, "callback request")


async def list_queue(session: AsyncSession, tenant_id: int, queue_id: int, *, finished: bool, limit: int,
                     offset: int) -> tuple[list[QueueCallbackRow], int]:
    """A page of a queue's requests in line order: the open ones, or (``finished``) every one kept."""
    where = [QueueCallbackRow.tenant_id == tenant_id, QueueCallbackRow.queue_id == queue_id]
    if not finished:
        where.append(QueueCallbackRow.state.in_(OPEN_CALLBACK_STATES))
    total = (await session.execute(select(func.count()).select_from(QueueCallbackRow).where(*where))).scalar_one()
    rows = await session.execute(select(QueueCallbackRow).where(*where)
                                 .order_by(QueueCallbackRow.priority.desc(), QueueCallbackRow.joined_at,
                                           QueueCallbackRow.id)
                                 .limit(limit).offset(offset))
    return list(rows.scalars()), int(total)


async def waiting_in(session: AsyncSession, tenant_id: int, *, queues: Collection[int] | None = None,
                     member: int | None = None, limit: int = 200) -> list[tuple[QueueCallbackRow, CallQueue]]:
    """The open requests of the tenant's queues (``queues``: only those; ``member``: the queues that employee
    may log in to), with their queue, by queue and line order; at most ``limit``."""
    query = (select(QueueCallbackRow, CallQueue).join(CallQueue, CallQueue.id == QueueCallbackRow.queue_id)
             .where(QueueCallbackRow.tenant_id == tenant_id, QueueCallbackRow.state.in_(OPEN_CALLBACK_STATES)))
    if queues is not None:
        query = query.where(QueueCallbackRow.queue_id.in_(list(queues)))
    if member is not None:
        query = query.where(QueueCallbackRow.queue_id.in_(
            select(QueueMember.queue_id).where(QueueMember.tenant_id == tenant_id, QueueMember.employee_id == member)))
    query = query.order_by(CallQueue.number, QueueCallbackRow.priority.desc(), QueueCallbackRow.joined_at,
                           QueueCallbackRow.id).limit(limit)
    return [(row, queue) for row, queue in (await session.execute(query)).tuples()]


async def mark_cancelled(session: AsyncSession, row: QueueCallbackRow) -> None:
    """The request's row says cancelled (the center has let it go, or never had it); flushed, not committed."""
    if row.state not in OPEN_CALLBACK_STATES:
        raise Conflict(f"callback request {row.id} is already {row.state}")
    row.state = "cancelled"
    row.last_result = "cancelled"
    row.retry_at = None
    await session.flush()


async def cancel(session: AsyncSession, runtime: CallCenterRuntime, tenant_id: int, callback_id: int) -> QueueCallbackRow:
    """A supervisor cancels a request: out of the line and ``cancelled`` (flushed, not committed). Another
    tenant's or none: NotFound; finished, or its customer being called right now: Conflict."""
    row = await get(session, tenant_id, callback_id)
    if row.state not in OPEN_CALLBACK_STATES:
        raise Conflict(f"callback request {row.id} is already {row.state}")
    if runtime.cancel_callback(tenant_id, row.call_id) == "dialing":
        raise Conflict(f"callback request {row.id}: its customer is being called now")
    await mark_cancelled(session, row)
    return row
