"""Callback requests kept in the database (``queue_callbacks``), so a restart does not lose a customer's request.

How it works: the center puts out each step of a request as a :class:`~.center.CallbackChange`; the runtime
writes them in order with the queue log (:func:`apply`): the request itself is a new row (``waiting``), the
later steps update it (``dialing`` when the agent answered and the customer is called, back to ``waiting`` after
a failed attempt, ``done``, ``failed`` or ``cancelled``). A row in one of these last three states is never
changed again, so a late write cannot bring a cancelled request back. At start the runtime reads the open rows
(:func:`open_requests`, in their line's order) and puts them back in line; a ``dialing`` one is waiting again.

Several nodes: a request is its node's (``owner``, the node's id): the node writes its steps only while it owns
it. A node that starts reads its own open rows and takes over (:func:`take_over`) the ones of no live node —
nobody's, or a node whose ``call_holds`` row the dead-node sweep has deleted (killed, or stopped); every node
does so again after each sweep, so a dead node's requests are called back by a surviving one. One UPDATE per
former owner, on the condition that the owner is still that one: of two nodes taking over at once, each
request goes to one. A node taken for dead while alive (its store away longer than the sweep's interval)
finds out before it offers such a request (:func:`lost`) and lets it go.

Finished rows are kept :data:`KEEP_FINISHED` seconds (the list's history), then deleted at the next start.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.org.errors import Conflict
from zvonok.org.scope import get_in_tenant
from zvonok.pstn.holds import NODE
from zvonok.pstn.models import CallHold
from zvonok.storage.base import utcnow

from .center import CallbackChange
from .models import OPEN_CALLBACK_STATES, CallQueue, QueueCallbackRow, QueueMember

if TYPE_CHECKING:
    from .runtime import CallCenterRuntime

KEEP_FINISHED = 30 * 86400
NUMBER_LENGTH = 64


async def apply(session: AsyncSession, tenant_id: int, change: CallbackChange, *, owner: str | None = None) -> None:
    """Write one step of a request (flushed, not committed); ``owner`` (several nodes): this node, whose
    request a new one is and whose requests alone it changes."""
    if change.requested_at is not None:
        await session.execute(insert(QueueCallbackRow).values(
            tenant_id=tenant_id, queue_id=change.queue_id, call_id=change.call_id,
            number=change.number[:NUMBER_LENGTH], priority=change.priority, joined_at=change.joined_at,
            requested_at=change.requested_at, position=change.position, state=change.state,
            attempts=change.attempts, last_result=change.last_result, retry_at=change.retry_at,
            owner=owner, created_at=utcnow(), updated_at=utcnow()))
        return
    values: dict[str, object] = {"state": change.state, "attempts": change.attempts, "retry_at": change.retry_at,
                                 "updated_at": utcnow()}
    if change.last_result is not None:  # a step without a result (dialing, a restore) keeps the last one
        values["last_result"] = change.last_result
    query = update(QueueCallbackRow).where(
        QueueCallbackRow.tenant_id == tenant_id, QueueCallbackRow.call_id == change.call_id,
        QueueCallbackRow.state.in_(OPEN_CALLBACK_STATES))
    if owner is not None:  # a request another node has taken over is that node's to change
        query = query.where(QueueCallbackRow.owner == owner)
    await session.execute(query.values(values))


async def open_requests(session: AsyncSession, *, owner: str | None = None) -> list[QueueCallbackRow]:
    """Every tenant's waiting (and interrupted ``dialing``) requests (``owner``: only that node's), in the order
    they joined their lines."""
    query = select(QueueCallbackRow).where(QueueCallbackRow.state.in_(OPEN_CALLBACK_STATES))
    if owner is not None:
        query = query.where(QueueCallbackRow.owner == owner)
    rows = await session.execute(query.order_by(QueueCallbackRow.joined_at, QueueCallbackRow.id))
    return list(rows.scalars())


async def take_over(session: AsyncSession, node: str) -> list[QueueCallbackRow]:
    """The open requests of no live node (nobody's, or a node without its ``call_holds`` row) become ``node``'s
    (committed); returned in the order they joined their lines. Each former owner's in one UPDATE that names
    it: a request another node took meanwhile no longer matches (PostgreSQL checks the condition again on the
    row it waited for), so it is never taken twice."""
    alive = select(CallHold.key).where(CallHold.kind == NODE)
    owners = (await session.execute(select(QueueCallbackRow.owner).distinct().where(
        QueueCallbackRow.state.in_(OPEN_CALLBACK_STATES),
        or_(QueueCallbackRow.owner.is_(None), QueueCallbackRow.owner.not_in(alive)))
        .order_by(QueueCallbackRow.owner))).scalars().all()
    taken: list[QueueCallbackRow] = []
    for owner in owners:  # (each committed alone: no transaction keeps one owner's rows while it waits for more)
        result = await session.execute(
            update(QueueCallbackRow)
            .where(QueueCallbackRow.state.in_(OPEN_CALLBACK_STATES),
                   QueueCallbackRow.owner.is_(None) if owner is None else QueueCallbackRow.owner == owner)
            .values(owner=node, updated_at=utcnow())
            .returning(QueueCallbackRow))
        taken += result.scalars().all()
        await session.commit()
    return sorted(taken, key=lambda row: (row.joined_at, row.id))


async def lost(session: AsyncSession, node: str, call_ids: Collection[str]) -> set[str]:
    """Of the requests ``node`` keeps (``call_ids``), those it may no longer call back: another node's now, or
    finished by another process (a supervisor's cancel made through another node). A request whose row is not
    written yet is still the node's."""
    if not call_ids:
        return set()
    rows = await session.execute(select(QueueCallbackRow.call_id).where(
        QueueCallbackRow.call_id.in_(list(call_ids)),
        or_(QueueCallbackRow.owner.is_(None), QueueCallbackRow.owner != node,
            QueueCallbackRow.state.not_in(OPEN_CALLBACK_STATES))))
    return set(rows.scalars())


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
