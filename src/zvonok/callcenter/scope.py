"""Which queues and agents a supervisor's call-center powers reach.

A supervisor (role ``supervisor``) assigned to queues (``queue_supervisors``, set by the tenant's admin on
the queue) sees only those queues on the wallboard, the live view and the reports, changes the states of
those queues' agents only, and monitors only them. An agent is "of" a queue when they are its member (may
log in to it), are logged in to it now, or are on one of its calls now. A supervisor assigned to no queue
keeps the whole tenant, as do the tenant's admins and the platform admin: :data:`Scope` is then ``None``.

Refusals are the routes' business (403 with a message, audited in ``monitor_audit`` as ``refused``).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.org.errors import ValidationError
from zvonok.org.models import Account, Role

from .agents import Agent
from .models import QueueMember, QueueSupervisor
from .runtime import CallCenterRuntime

Scope = frozenset[int] | None  # the queues a supervisor is limited to; None: the whole tenant
OUTSIDE = "outside the supervisor's queues"  # the audited reason of a refusal


async def supervised_queues(session: AsyncSession, tenant_id: int, employee_id: int) -> frozenset[int]:
    rows = await session.scalars(
        select(QueueSupervisor.queue_id).where(
            QueueSupervisor.tenant_id == tenant_id, QueueSupervisor.employee_id == employee_id
        )
    )
    return frozenset(rows)


async def scope_of(
    session: AsyncSession,
    tenant_id: int,
    *,
    role: Role,
    employee_id: int | None,
    account_id: int | None = None,
) -> Scope:
    """The queues a caller of ``role`` is limited to. ``account_id`` finds the employee of an API token's
    owner (a token carries no employee)."""
    if role is not Role.SUPERVISOR:
        return None
    if employee_id is None and account_id is not None:
        employee_id = await session.scalar(select(Account.employee_id).where(Account.id == account_id))
    if employee_id is None:
        return None
    return await supervised_queues(session, tenant_id, employee_id) or None


def live_in_scope(agent: Agent, scope: frozenset[int]) -> bool:
    """Logged in to one of the queues, or on (or offered) one of their calls now."""
    return bool(agent.queues & scope) or agent.call_queue in scope


async def agents_in_scope(
    session: AsyncSession, tenant_id: int, scope: frozenset[int], runtime: CallCenterRuntime | None
) -> set[int]:
    """The employees a limited supervisor may see, act on and monitor."""
    found = set(
        await session.scalars(
            select(QueueMember.employee_id).where(
                QueueMember.tenant_id == tenant_id, QueueMember.queue_id.in_(scope)
            )
        )
    )
    if runtime is not None:
        found.update(a.id for a in runtime.agents(tenant_id) if live_in_scope(a, scope))
    return found


async def covers_agent(
    session: AsyncSession,
    tenant_id: int,
    scope: Scope,
    employee_id: int | None,
    runtime: CallCenterRuntime | None,
) -> bool:
    if scope is None:
        return True
    if employee_id is None:
        return False
    if runtime is not None:
        agent = runtime.agent(tenant_id, employee_id)
        if agent is not None and live_in_scope(agent, scope):
            return True
    member = await session.scalar(
        select(QueueMember.id)
        .where(
            QueueMember.tenant_id == tenant_id,
            QueueMember.employee_id == employee_id,
            QueueMember.queue_id.in_(scope),
        )
        .limit(1)
    )
    return member is not None


# -- the assignments -----------------------------------------------------------------------------------
async def queue_supervisors(session: AsyncSession, tenant_id: int, queue_id: int) -> list[int]:
    rows = await session.scalars(
        select(QueueSupervisor.employee_id)
        .where(QueueSupervisor.tenant_id == tenant_id, QueueSupervisor.queue_id == queue_id)
        .order_by(QueueSupervisor.employee_id)
    )
    return list(rows)


async def supervisor_candidates(session: AsyncSession, tenant_id: int) -> set[int]:
    """Employees with an active supervisor account: the ones a queue may be assigned to."""
    rows = await session.scalars(
        select(Account.employee_id).where(
            Account.tenant_id == tenant_id,
            Account.role == Role.SUPERVISOR.value,
            Account.active.is_(True),
            Account.employee_id.is_not(None),
        )
    )
    return {e for e in rows if e is not None}


async def set_queue_supervisors(
    session: AsyncSession, tenant_id: int, queue_id: int, employee_ids: Iterable[int]
) -> list[int]:
    """Replace the queue's supervisors (the caller checked the queue is the tenant's). Each must be an
    employee of the tenant with an active supervisor account (422 otherwise)."""
    wanted = sorted(set(employee_ids))
    allowed = await supervisor_candidates(session, tenant_id)
    for employee_id in wanted:
        if employee_id not in allowed:
            raise ValidationError(
                f"employee_ids: employee {employee_id} is not a supervisor of this company",
                field="employee_ids",
            )
    await session.execute(
        delete(QueueSupervisor).where(
            QueueSupervisor.tenant_id == tenant_id, QueueSupervisor.queue_id == queue_id
        )
    )
    session.add_all(QueueSupervisor(tenant_id=tenant_id, queue_id=queue_id, employee_id=e) for e in wanted)
    await session.flush()
    return wanted
