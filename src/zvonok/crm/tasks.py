"""Tasks on a client or a deal: who does what by when. A tenant admin changes any task; an employee the
tasks assigned to them (or that they wrote). Also the missed call's "call back" task and the two
notifications the scheduler (:mod:`zvonok.crm.reminders`) sends from the database's state: the reminder
when a task falls due and the escalation when it is overdue by more than the tenant's ``escalate_hours``.

A missed call is an inbound CDR that nobody answered (no answer, busy, the caller gave up): its task is for
the owner of the client whose number called, or — unknown caller or a client without an owner — for the
employee who was rung; due ``callback_minutes`` (tenant setting, default 60) after the call ended. One task
per CDR (a unique key), so a CdrWritten seen twice makes one task.

Escalation goes to the department head of the assignee. The org model has no department heads yet, so it
goes to the tenant's admins who are employees (:func:`escalation_targets` is the one place to change).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.cdr.events import MISSED_DISPOSITIONS
from zvonok.cdr.models import Cdr
from zvonok.org.errors import PermissionDenied, ValidationError
from zvonok.org.models import Account, Employee, Role
from zvonok.org.scope import get_in_tenant
from zvonok.storage.base import utcnow
from zvonok.storage.db import emit

from . import events, schemas
from .deals import Actor, get_deal
from .models import CrmClient, CrmDeal, CrmSettings, CrmTask
from .service import client_by_number, get_client

MISSED = MISSED_DISPOSITIONS
DEFAULT_ESCALATE_HOURS = 24


# --- settings ------------------------------------------------------------------------------------------
async def get_settings(session: AsyncSession, tenant_id: int) -> CrmSettings:
    row = (await session.execute(select(CrmSettings).where(CrmSettings.tenant_id == tenant_id))).scalar_one_or_none()
    if row is None:
        row = CrmSettings(tenant_id=tenant_id, callback_minutes=60, escalate_hours=DEFAULT_ESCALATE_HOURS)
        session.add(row)
        await session.flush()
    return row


async def set_settings(session: AsyncSession, tenant_id: int, data: schemas.SettingsIn) -> CrmSettings:
    row = await get_settings(session, tenant_id)
    row.callback_minutes = data.callback_minutes
    row.escalate_hours = data.escalate_hours
    row.owner_ring_seconds = data.owner_ring_seconds
    await session.flush()
    return row


# --- tasks ---------------------------------------------------------------------------------------------
def _may_edit(actor: Actor, task: CrmTask) -> bool:
    return actor.admin or (actor.employee_id is not None
                           and actor.employee_id in (task.assignee_id, task.author_employee_id))


async def get_task(session: AsyncSession, tenant_id: int, task_id: int) -> CrmTask:
    return await get_in_tenant(session, CrmTask, tenant_id, task_id, "task")


async def _check_assignee(session: AsyncSession, tenant_id: int, assignee_id: int | None) -> None:
    if assignee_id is None:
        return
    found = (await session.execute(select(Employee.id).where(Employee.tenant_id == tenant_id,
                                                             Employee.id == assignee_id))).first()
    if found is None:
        raise ValidationError(f"assignee_id: employee {assignee_id} does not exist", field="assignee_id")


async def create_task(session: AsyncSession, tenant_id: int, data: schemas.TaskCreate, actor: Actor) -> CrmTask:
    client_id = data.client_id
    if data.deal_id is not None:
        deal = await _ref(session, tenant_id, data.deal_id, "deal")
        assert isinstance(deal, CrmDeal)
        client_id = client_id or deal.client_id
    if data.client_id is not None:
        await _ref(session, tenant_id, data.client_id, "client")
    assignee = data.assignee_id if data.assignee_id is not None else actor.employee_id
    await _check_assignee(session, tenant_id, assignee)
    task = CrmTask(tenant_id=tenant_id, title=data.title, kind="task", client_id=client_id, deal_id=data.deal_id,
                   assignee_id=assignee, author_employee_id=actor.employee_id, due_at=data.due_at, done=False)
    session.add(task)
    await session.flush()
    emit(session, events.TaskChanged(tenant_id=tenant_id, task_id=task.id, action="created", assignee_id=assignee))
    return task


async def _ref(session: AsyncSession, tenant_id: int, obj_id: int, what: str) -> CrmClient | CrmDeal:
    from zvonok.org.errors import NotFound

    try:
        return await (get_deal(session, tenant_id, obj_id) if what == "deal" else get_client(session, tenant_id, obj_id))
    except NotFound:
        raise ValidationError(f"{what}_id: {what} {obj_id} does not exist", field=f"{what}_id") from None


async def update_task(session: AsyncSession, tenant_id: int, task_id: int, data: schemas.TaskUpdate,
                      actor: Actor) -> CrmTask:
    task = await get_task(session, tenant_id, task_id)
    if not _may_edit(actor, task):
        raise PermissionDenied("only the assignee, the author or an admin may change this task")
    changes = data.model_dump(exclude_unset=True)
    for key in ("title", "due_at", "done"):
        if key in changes and changes[key] is None:
            raise ValidationError(f"{key}: may not be null", field=key)
    if "assignee_id" in changes:
        await _check_assignee(session, tenant_id, changes["assignee_id"])
        task.assignee_id = changes["assignee_id"]
    if "title" in changes:
        task.title = changes["title"]
    if "due_at" in changes and changes["due_at"] != task.due_at:
        task.due_at = changes["due_at"]
        task.reminded_at = task.escalated_at = None  # a new due time: remind (and escalate) again
    if "done" in changes and changes["done"] != task.done:
        task.done = changes["done"]
        task.done_at = utcnow() if task.done else None
    await session.flush()
    emit(session, events.TaskChanged(tenant_id=tenant_id, task_id=task.id, action="done" if task.done else "changed",
                                     assignee_id=task.assignee_id))
    return task


async def delete_task(session: AsyncSession, tenant_id: int, task_id: int, actor: Actor) -> None:
    task = await get_task(session, tenant_id, task_id)
    if not _may_edit(actor, task):
        raise PermissionDenied("only the assignee, the author or an admin may delete this task")
    await session.delete(task)
    await session.flush()
    emit(session, events.TaskChanged(tenant_id=tenant_id, task_id=task_id, action="deleted"))


async def list_tasks(session: AsyncSession, tenant_id: int, *, assignee_id: int | None = None,
                     client_id: int | None = None, deal_id: int | None = None, done: bool | None = None,
                     overdue: bool = False, now: datetime | None = None, limit: int = 200,
                     offset: int = 0) -> tuple[list[CrmTask], int]:
    """Tasks, overdue first, then by due time (done ones last)."""
    now = now or utcnow()
    conds: list[ColumnElement[bool]] = [CrmTask.tenant_id == tenant_id]
    if assignee_id is not None:
        conds.append(CrmTask.assignee_id == assignee_id)
    if client_id is not None:
        conds.append(CrmTask.client_id == client_id)
    if deal_id is not None:
        conds.append(CrmTask.deal_id == deal_id)
    if done is not None:
        conds.append(CrmTask.done.is_(done))
    if overdue:
        conds += [CrmTask.done.is_(False), CrmTask.due_at < now]
    stmt = select(CrmTask).where(*conds)
    total = int((await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one())
    rows = (await session.execute(stmt.order_by(CrmTask.done, CrmTask.due_at, CrmTask.id)
                                  .limit(limit).offset(offset))).scalars().all()
    return list(rows), total


async def tasks_out(session: AsyncSession, tenant_id: int, tasks: Sequence[CrmTask],
                    now: datetime | None = None) -> list[schemas.TaskOut]:
    now = now or utcnow()
    client_ids = {t.client_id for t in tasks if t.client_id is not None}
    deal_ids = {t.deal_id for t in tasks if t.deal_id is not None}
    people = {t.assignee_id for t in tasks if t.assignee_id is not None}
    clients: dict[int, str] = dict((await session.execute(select(CrmClient.id, CrmClient.name).where(
        CrmClient.tenant_id == tenant_id, CrmClient.id.in_(client_ids)))).tuples().all()) if client_ids else {}
    deals: dict[int, str] = dict((await session.execute(select(CrmDeal.id, CrmDeal.title).where(
        CrmDeal.tenant_id == tenant_id, CrmDeal.id.in_(deal_ids)))).tuples().all()) if deal_ids else {}
    names: dict[int, str] = dict((await session.execute(select(Employee.id, Employee.full_name).where(
        Employee.tenant_id == tenant_id, Employee.id.in_(people)))).tuples().all()) if people else {}
    return [schemas.TaskOut(
        id=t.id, title=t.title, kind=t.kind, client_id=t.client_id,
        client_name=clients.get(t.client_id) if t.client_id else None, deal_id=t.deal_id,
        deal_title=deals.get(t.deal_id) if t.deal_id else None, assignee_id=t.assignee_id,
        assignee_name=names.get(t.assignee_id) if t.assignee_id else None, number=t.number, due_at=t.due_at,
        done=t.done, done_at=t.done_at, overdue=not t.done and t.due_at < now) for t in tasks]


# --- the missed call -----------------------------------------------------------------------------------
def is_missed(cdr: Cdr) -> bool:
    return cdr.direction == "inbound" and cdr.disposition in MISSED


async def task_for_missed_call(session: AsyncSession, cdr: Cdr) -> CrmTask | None:
    """The "call back" task of a missed inbound call (None: not missed, nobody to give it to, or made)."""
    if not is_missed(cdr) or not cdr.caller_number:
        return None
    tenant_id = cdr.tenant_id
    made = (await session.execute(select(CrmTask.id).where(CrmTask.tenant_id == tenant_id,
                                                           CrmTask.cdr_id == cdr.id))).first()
    if made is not None:
        return None
    client = await client_by_number(session, tenant_id, cdr.caller_number)
    assignee = (client.owner_id if client is not None else None) or cdr.callee_employee_id
    if assignee is None:
        return None
    settings = await get_settings(session, tenant_id)
    who = client.name if client is not None else cdr.caller_number
    task = CrmTask(tenant_id=tenant_id, title=f"Call back {who}", kind="call_back",
                   client_id=client.id if client is not None else None, assignee_id=assignee,
                   number=cdr.caller_number, cdr_id=cdr.id, done=False,
                   due_at=cdr.ended_at + timedelta(minutes=settings.callback_minutes))
    session.add(task)
    await session.flush()
    emit(session, events.TaskChanged(tenant_id=tenant_id, task_id=task.id, action="created", assignee_id=assignee))
    return task


# --- reminders and escalation ---------------------------------------------------------------------------
async def escalation_targets(session: AsyncSession, tenant_id: int, assignee_id: int | None) -> tuple[int, ...]:
    """Whom an overdue task of ``assignee_id`` is escalated to: the tenant's admins who are employees
    (the org model has no department heads yet), never the assignee themself."""
    rows = (await session.execute(select(Account.employee_id).where(
        Account.tenant_id == tenant_id, Account.role == Role.TENANT_ADMIN.value, Account.active.is_(True),
        Account.employee_id.is_not(None)).order_by(Account.employee_id))).scalars().all()
    return tuple(sorted({int(e) for e in rows if e is not None and e != assignee_id}))


async def notify_due(session: AsyncSession, now: datetime, *, limit: int = 500) -> int:
    """Queue the reminders of tasks now due and the escalations of tasks overdue past their tenant's limit
    (events for after the commit); marks them so each goes out once. Returns how many went out."""
    sent = 0
    due = (await session.execute(select(CrmTask).where(
        CrmTask.done.is_(False), CrmTask.reminded_at.is_(None), CrmTask.due_at <= now)
        .order_by(CrmTask.due_at).limit(limit))).scalars().all()
    for task in due:
        task.reminded_at = now
        emit(session, events.TaskDue(tenant_id=task.tenant_id, task_id=task.id, assignee_id=task.assignee_id,
                                     title=task.title, due_at=task.due_at.timestamp()))
        sent += 1
    limits: dict[int, int] = dict((await session.execute(select(CrmSettings.tenant_id, CrmSettings.escalate_hours)))
                                  .tuples().all())
    shortest = min([DEFAULT_ESCALATE_HOURS, *limits.values()])
    tenants = (await session.execute(select(CrmTask.tenant_id).where(
        CrmTask.done.is_(False), CrmTask.escalated_at.is_(None), CrmTask.due_at <= now - timedelta(hours=shortest))
        .distinct())).scalars().all()
    for tenant_id in tenants:  # each tenant by its own limit, so one tenant's long wait starves no other
        overdue = (await session.execute(select(CrmTask).where(
            CrmTask.tenant_id == tenant_id, CrmTask.done.is_(False), CrmTask.escalated_at.is_(None),
            CrmTask.due_at <= now - timedelta(hours=limits.get(tenant_id, DEFAULT_ESCALATE_HOURS))
        ).order_by(CrmTask.due_at).limit(limit))).scalars().all()
        for task in overdue:
            task.escalated_at = now
            emit(session, events.TaskEscalated(
                tenant_id=task.tenant_id, task_id=task.id, assignee_id=task.assignee_id, title=task.title,
                due_at=task.due_at.timestamp(),
                notify_employee_ids=await escalation_targets(session, task.tenant_id, task.assignee_id)))
            sent += 1
    await session.flush()
    return sent


async def overdue_by_employee(session: AsyncSession, tenant_id: int, now: datetime | None = None) -> list[tuple[str, int]]:
    now = now or utcnow()
    rows = await session.execute(
        select(func.coalesce(Employee.full_name, ""), func.count(CrmTask.id))
        .select_from(CrmTask).outerjoin(Employee, Employee.id == CrmTask.assignee_id)
        .where(CrmTask.tenant_id == tenant_id, CrmTask.done.is_(False), CrmTask.due_at < now)
        .group_by(Employee.full_name).order_by(func.count(CrmTask.id).desc()))
    return [(str(name), int(n)) for name, n in rows]


