"""Call-center configuration in one tenant (the tenant is the first argument after the session): queues,
their members, agents' skills and the not-ready reasons; and the loaders the runtime reads them with.

Services flush but never commit; each write queues a :class:`~zvonok.callcenter.events.QueueChanged` or
:class:`~zvonok.callcenter.events.AgentChanged` delivered after the commit (the runtime reloads).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.conference.models import ConferenceRoom
from zvonok.destination import OVERFLOW_KINDS, parse
from zvonok.destination.references import check_references
from zvonok.org import quotas
from zvonok.org import service as org_service
from zvonok.org.errors import Conflict, ValidationError
from zvonok.org.models import Employee, Extension
from zvonok.org.scope import get_in_tenant, page_in_tenant
from zvonok.pstn.destinations import extension_refs
from zvonok.storage.db import emit

from . import events, schemas
from .models import AgentSkill, CallQueue, NotReadyReason, QueueMember, QueueSupervisor
from .queues import HoldSound, QueueConfig, Relaxation, SkillRequirement, Strategy, VipNumber

_NOT_NULL = ("name", "number", "strategy", "requirements", "relaxations", "ring_timeout", "retry", "wrap_up",
             "join_empty", "leave_empty", "service_level", "announce_every", "max_no_answer", "weight", "callback_attempts", "callback_retry",
             "callback_abroad", "vip_numbers", "hold_sound")


def queue_out(queue: CallQueue) -> schemas.QueueOut:
    return schemas.QueueOut.model_validate(queue)


def queue_config(queue: CallQueue) -> QueueConfig:
    """The sans-I/O core's view of a queue row."""
    return QueueConfig(
        id=queue.id, tenant_id=queue.tenant_id, name=queue.name, number=queue.number, strategy=Strategy(queue.strategy),
        requirements=tuple(SkillRequirement(r["skill"], int(r["min_level"])) for r in queue.requirements),
        relaxations=tuple(Relaxation(float(r["after"]), int(r["min_level"])) for r in queue.relaxations),
        ring_timeout=float(queue.ring_timeout), retry=float(queue.retry), wrap_up=float(queue.wrap_up),
        max_waiting=queue.max_waiting, max_wait=float(queue.max_wait) if queue.max_wait is not None else None,
        join_empty=queue.join_empty, leave_empty=queue.leave_empty, service_level=float(queue.service_level),
        announce_every=float(queue.announce_every), max_no_answer=queue.max_no_answer, weight=queue.weight,
        overflow=dict(queue.overflow or {}), callback_key=queue.callback_key or None,
        callback_attempts=queue.callback_attempts, callback_retry=float(queue.callback_retry),
        callback_abroad=queue.callback_abroad, vip=vip_rules(queue.vip_numbers or []),
        hold_sound=HoldSound(queue.hold_sound))


def _stored_vip(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``{"number": ..., "priority": ...}`` or ``{"prefix": ..., "priority": ...}`` (no nulls)."""
    return [{k: v for k, v in rule.items() if v is not None} for rule in rules]


def vip_rules(stored: list[dict[str, Any]]) -> tuple[VipNumber, ...]:
    """A queue's stored VIP list (checked on write) as the center's rules; an entry that no longer reads is
    skipped (one bad row never keeps a queue from loading)."""
    rules: list[VipNumber] = []
    for item in stored:
        try:
            prefix = item.get("prefix")
            rules.append(VipNumber(str(prefix or item["number"]), int(item["priority"]), prefix=bool(prefix)))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return tuple(rules)


# -- checks --------------------------------------------------------------------------------------------
async def _check_number(session: AsyncSession, tenant_id: int, number: str, queue_id: int | None) -> None:
    """A queue's number shares the tenant's internal number space with extensions and conference rooms."""
    ext = (await session.execute(select(Extension.id).where(Extension.tenant_id == tenant_id,
                                                            Extension.number == number))).first()
    if ext is not None:
        raise ValidationError(f"number: {number} is an extension of this tenant", field="number")
    room = (await session.execute(select(ConferenceRoom.id).where(ConferenceRoom.tenant_id == tenant_id,
                                                                  ConferenceRoom.number == number))).first()
    if room is not None:
        raise ValidationError(f"number: {number} is a conference room of this tenant", field="number")
    other = (await session.execute(select(CallQueue.id).where(
        CallQueue.tenant_id == tenant_id, CallQueue.number == number))).scalar_one_or_none()
    if other is not None and other != queue_id:
        raise Conflict(f"number: queue {other} already has number {number}", field="number")


async def _check_name(session: AsyncSession, tenant_id: int, name: str, queue_id: int | None) -> None:
    other = (await session.execute(select(CallQueue.id).where(
        CallQueue.tenant_id == tenant_id, CallQueue.name == name))).scalar_one_or_none()
    if other is not None and other != queue_id:
        raise Conflict(f"name: queue {other} is already called {name!r}", field="name")


async def clean_overflow(session: AsyncSession, tenant_id: int, value: Any) -> dict[str, Any] | None:
    """An overflow destination is a :data:`~zvonok.destination.Destination` (``{"kind": ..., <that kind's
    fields>}``, not a schedule); what it names must be the tenant's."""
    if value is None:
        return None
    try:
        dest = parse(value, kinds=OVERFLOW_KINDS, path="overflow")
    except ValueError as exc:
        raise ValidationError(str(exc), field="overflow") from None
    await check_references(session, tenant_id, [("overflow", dest)], field="overflow")
    return dest.stored()


async def _check_employees(session: AsyncSession, tenant_id: int, employee_ids: Iterable[int]) -> None:
    wanted = set(employee_ids)
    if not wanted:
        return
    found = set((await session.execute(select(Employee.id).where(
        Employee.tenant_id == tenant_id, Employee.id.in_(wanted)))).scalars())
    missing = sorted(wanted - found)
    if missing:
        raise ValidationError(f"employee_ids: employee {missing[0]} does not exist", field="employee_ids")


async def get_employee(session: AsyncSession, tenant_id: int, employee_id: int) -> Employee:
    return await get_in_tenant(session, Employee, tenant_id, employee_id, "employee")


# -- queues --------------------------------------------------------------------------------------------
async def create_queue(session: AsyncSession, tenant_id: int, data: schemas.QueueCreate) -> CallQueue:
    await quotas.check(session, tenant_id, "queues", CallQueue)
    await _check_number(session, tenant_id, data.number, None)
    await _check_name(session, tenant_id, data.name, None)
    values = data.model_dump(mode="json")
    values["overflow"] = await clean_overflow(session, tenant_id, data.overflow)
    values["vip_numbers"] = _stored_vip(values["vip_numbers"])
    queue = CallQueue(tenant_id=tenant_id, **values)
    session.add(queue)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"number: {data.number} or name: {data.name!r} is taken", field="number") from None
    emit(session, events.QueueChanged(tenant_id=tenant_id, queue_id=queue.id, action="created"))
    return queue


async def get_queue(session: AsyncSession, tenant_id: int, queue_id: int) -> CallQueue:
    return await get_in_tenant(session, CallQueue, tenant_id, queue_id, "queue")


async def list_queues(session: AsyncSession, tenant_id: int, *, limit: int, offset: int,
                      only: frozenset[int] | None = None) -> tuple[list[CallQueue], int]:
    """A page of the tenant's queues; ``only`` limits it to those ids (a supervisor's queues)."""
    where = [CallQueue.id.in_(only)] if only is not None else []
    return await page_in_tenant(session, CallQueue, tenant_id, where=where, order_by=[CallQueue.number],
                                limit=limit, offset=offset)


async def update_queue(session: AsyncSession, tenant_id: int, queue_id: int, data: schemas.QueueUpdate) -> CallQueue:
    queue = await get_queue(session, tenant_id, queue_id)
    changes: dict[str, Any] = data.model_dump(mode="json", exclude_unset=True)
    for name in _NOT_NULL:
        if name in changes and changes[name] is None:
            raise ValidationError(f"{name}: may not be null", field=name)
    if "number" in changes and changes["number"] != queue.number:
        await _check_number(session, tenant_id, changes["number"], queue.id)
    if "name" in changes and changes["name"] != queue.name:
        await _check_name(session, tenant_id, changes["name"], queue.id)
    if "overflow" in changes:
        changes["overflow"] = await clean_overflow(session, tenant_id, changes["overflow"])
    if "vip_numbers" in changes:
        changes["vip_numbers"] = _stored_vip(changes["vip_numbers"])
    for name, value in changes.items():
        setattr(queue, name, value)
    await session.flush()
    emit(session, events.QueueChanged(tenant_id=tenant_id, queue_id=queue.id, action="changed"))
    return queue


async def delete_queue(session: AsyncSession, tenant_id: int, queue_id: int) -> None:
    queue = await get_queue(session, tenant_id, queue_id)
    await session.execute(delete(QueueMember).where(QueueMember.queue_id == queue.id))
    await session.execute(delete(QueueSupervisor).where(QueueSupervisor.queue_id == queue.id))
    await session.delete(queue)
    await session.flush()
    emit(session, events.QueueChanged(tenant_id=tenant_id, queue_id=queue_id, action="deleted"))


# -- members and skills --------------------------------------------------------------------------------
async def queue_members(session: AsyncSession, tenant_id: int, queue_id: int) -> list[int]:
    await get_queue(session, tenant_id, queue_id)
    rows = await session.execute(select(QueueMember.employee_id).where(
        QueueMember.tenant_id == tenant_id, QueueMember.queue_id == queue_id).order_by(QueueMember.employee_id))
    return list(rows.scalars())


async def set_queue_members(session: AsyncSession, tenant_id: int, queue_id: int, employee_ids: list[int]) -> list[int]:
    await get_queue(session, tenant_id, queue_id)
    await _check_employees(session, tenant_id, employee_ids)
    await session.execute(delete(QueueMember).where(QueueMember.tenant_id == tenant_id,
                                                    QueueMember.queue_id == queue_id))
    session.add_all(QueueMember(tenant_id=tenant_id, queue_id=queue_id, employee_id=e) for e in employee_ids)
    await session.flush()
    emit(session, events.QueueChanged(tenant_id=tenant_id, queue_id=queue_id, action="members"))
    return sorted(employee_ids)


async def member_queues(session: AsyncSession, tenant_id: int, employee_id: int) -> list[int]:
    rows = await session.execute(select(QueueMember.queue_id).where(
        QueueMember.tenant_id == tenant_id, QueueMember.employee_id == employee_id).order_by(QueueMember.queue_id))
    return list(rows.scalars())


async def skills(session: AsyncSession, tenant_id: int, employee_id: int) -> dict[str, int]:
    rows = await session.execute(select(AgentSkill.skill, AgentSkill.level).where(
        AgentSkill.tenant_id == tenant_id, AgentSkill.employee_id == employee_id).order_by(AgentSkill.skill))
    return {skill: level for skill, level in rows.tuples()}


async def tenant_skills(session: AsyncSession, tenant_id: int) -> dict[int, dict[str, int]]:
    """Every employee's skills in one query (the agents page)."""
    rows = await session.execute(select(AgentSkill.employee_id, AgentSkill.skill, AgentSkill.level).where(
        AgentSkill.tenant_id == tenant_id).order_by(AgentSkill.employee_id, AgentSkill.skill))
    out: dict[int, dict[str, int]] = {}
    for employee_id, skill, level in rows.tuples():
        out.setdefault(employee_id, {})[skill] = level
    return out


async def tenant_memberships(session: AsyncSession, tenant_id: int) -> dict[int, list[int]]:
    """Every employee's queues in one query (the agents page)."""
    rows = await session.execute(select(QueueMember.employee_id, QueueMember.queue_id).where(
        QueueMember.tenant_id == tenant_id).order_by(QueueMember.employee_id, QueueMember.queue_id))
    out: dict[int, list[int]] = {}
    for employee_id, queue_id in rows.tuples():
        out.setdefault(employee_id, []).append(queue_id)
    return out


async def set_skills(session: AsyncSession, tenant_id: int, employee_id: int, values: dict[str, int]) -> dict[str, int]:
    await get_employee(session, tenant_id, employee_id)
    await session.execute(delete(AgentSkill).where(AgentSkill.tenant_id == tenant_id,
                                                   AgentSkill.employee_id == employee_id))
    session.add_all(AgentSkill(tenant_id=tenant_id, employee_id=employee_id, skill=k, level=v)
                    for k, v in values.items())
    await session.flush()
    emit(session, events.AgentChanged(tenant_id=tenant_id, employee_id=employee_id))
    return dict(sorted(values.items()))


# -- not-ready reasons ---------------------------------------------------------------------------------
async def list_reasons(session: AsyncSession, tenant_id: int) -> list[NotReadyReason]:
    rows = await session.execute(select(NotReadyReason).where(NotReadyReason.tenant_id == tenant_id)
                                 .order_by(NotReadyReason.name))
    return list(rows.scalars())


def _check_reason_unique(reasons: list[NotReadyReason], reason_id: int | None, *, name: str | None = None,
                         code: str | None = None) -> None:
    """Name and code are each unique in the company (409, as a queue's name or number)."""
    for other in reasons:
        if other.id == reason_id:
            continue
        if name is not None and other.name == name:
            raise Conflict(f"name: reason {name!r} exists", field="name")
        if code is not None and other.code == code:
            raise Conflict(f"code: reason {other.name!r} has code {code}", field="code")


async def create_reason(session: AsyncSession, tenant_id: int, name: str, *, code: str | None = None) -> NotReadyReason:
    await quotas.check(session, tenant_id, "reasons", NotReadyReason)
    _check_reason_unique(await list_reasons(session, tenant_id), None, name=name, code=code)
    reason = NotReadyReason(tenant_id=tenant_id, name=name, code=code)
    session.add(reason)
    try:
        await session.flush()
    except IntegrityError:  # the same name or code added at the same moment
        raise Conflict(f"name: {name!r} or code: {code} is taken", field="name") from None
    return reason


async def get_reason(session: AsyncSession, tenant_id: int, reason_id: int) -> NotReadyReason:
    return await get_in_tenant(session, NotReadyReason, tenant_id, reason_id, "reason")


async def update_reason(session: AsyncSession, tenant_id: int, reason_id: int,
                        data: schemas.ReasonUpdate) -> NotReadyReason:
    """A new name or code (``code`` null: none). Agents paused with the old name keep it until they resume, as
    after a reason is deleted."""
    reason = await get_reason(session, tenant_id, reason_id)
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is None:
        raise ValidationError("name: may not be null", field="name")
    _check_reason_unique(await list_reasons(session, tenant_id), reason.id, name=changes.get("name"),
                         code=changes.get("code"))
    for name, value in changes.items():
        setattr(reason, name, value)
    wanted = f"name: {reason.name!r} or code: {reason.code}"  # (read before a failed flush spoils the session)
    try:
        await session.flush()
    except IntegrityError:  # the same name or code given to another reason at the same moment
        raise Conflict(f"{wanted} is taken", field="name") from None
    return reason


async def reason_by_code(session: AsyncSession, tenant_id: int, code: str) -> NotReadyReason | None:
    """The company's reason an agent pauses with by dialing ``*47<code>`` (None: no reason has that code)."""
    return (await session.execute(select(NotReadyReason).where(
        NotReadyReason.tenant_id == tenant_id, NotReadyReason.code == code))).scalar_one_or_none()


async def delete_reason(session: AsyncSession, tenant_id: int, reason_id: int) -> None:
    reason = await get_reason(session, tenant_id, reason_id)
    await session.delete(reason)
    await session.flush()


async def check_reason(session: AsyncSession, tenant_id: int, name: str) -> None:
    found = (await session.execute(select(NotReadyReason.id).where(
        NotReadyReason.tenant_id == tenant_id, NotReadyReason.name == name))).first()
    if found is None:
        raise ValidationError(f"reason: {name!r} is not one of the tenant's not-ready reasons", field="reason")


async def check_login_queues(session: AsyncSession, tenant_id: int, employee_id: int,
                             queue_ids: list[int] | None) -> list[int]:
    """The queues an employee may log in to now: the asked ones (each a membership of theirs) or all."""
    allowed = await member_queues(session, tenant_id, employee_id)
    if queue_ids is None:
        if not allowed:
            raise ValidationError("queue_ids: the employee is a member of no queue", field="queue_ids")
        return allowed
    for queue_id in queue_ids:
        if queue_id not in allowed:
            raise ValidationError(f"queue_ids: the employee is not a member of queue {queue_id}",
                                  field="queue_ids")
    return sorted(set(queue_ids))


# -- loaders for the runtime (the platform path: every tenant's queues) ---------------------------------
async def platform_all_queues(session: AsyncSession) -> list[QueueConfig]:
    rows = await session.execute(select(CallQueue).order_by(CallQueue.id))
    return [queue_config(q) for q in rows.scalars()]


async def platform_queue(session: AsyncSession, queue_id: int) -> QueueConfig | None:
    queue = await session.get(CallQueue, queue_id)
    return queue_config(queue) if queue is not None else None



async def employee_names(session: AsyncSession, tenant_id: int) -> dict[int, str]:
    rows = await session.execute(select(Employee.id, Employee.full_name).where(Employee.tenant_id == tenant_id))
    return {employee_id: name for employee_id, name in rows.tuples()}


async def overflow_references(session: AsyncSession, tenant_id: int, extension_id: int) -> list[str]:
    """The tenant's queues that overflow to an extension (an org hook: such an extension cannot be deleted)."""
    ext = await session.get(Extension, extension_id)
    if ext is None:
        return []
    queues = (await session.execute(select(CallQueue).where(CallQueue.tenant_id == tenant_id,
                                                            CallQueue.overflow.is_not(None)))).scalars()
    out = []
    for queue in queues:
        overflow = dict(queue.overflow or {})
        kind = overflow.pop("kind", "")
        if isinstance(kind, str) and ext.number in extension_refs(kind, overflow):
            out.append(f"queue {queue.name} ({queue.number})")
    return out


def register_hooks() -> None:
    """Tell the org domain that a queue's overflow extension cannot be deleted (idempotent; at import)."""
    if overflow_references not in org_service.extension_references:
        org_service.extension_references.append(overflow_references)


register_hooks()
