"""The call engine's two monitoring ports, implemented on the database: who may monitor (whom), and the
audit; and the audit of a refused API or web attempt."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.callcenter.runtime import CallCenterRuntime
from zvonok.callcenter.scope import covers_agent, scope_of
from zvonok.org.models import Account, Extension, Role
from zvonok.storage.base import utcnow
from zvonok.storage.db import Database
from zvonok.telephony.monitor import Audit, AuditRecord

from .models import MonitorAudit


class MonitorPolicy:
    """May this employee monitor that extension? An employee with an active supervisor or tenant-admin
    account of the tenant may; a supervisor assigned to queues only an agent of those queues (a member, or
    logged in to one or on one of its calls now: ``runtime``, set once the call center runs)."""

    def __init__(self, db: Database, runtime: CallCenterRuntime | None = None) -> None:
        self.db = db
        self.runtime = runtime

    async def __call__(self, tenant_id: int, employee_id: int | None, target: str | None) -> bool:
        if employee_id is None:
            return False
        async with self.db.session() as session:
            role = await session.scalar(
                select(Account.role)
                .where(
                    Account.tenant_id == tenant_id,
                    Account.employee_id == employee_id,
                    Account.role.in_((Role.SUPERVISOR.value, Role.TENANT_ADMIN.value)),
                    Account.active.is_(True),
                )
                .order_by(Account.role.desc())  # tenant_admin before supervisor: the wider of two accounts
                .limit(1)
            )
            if role is None:
                return False
            scope = await scope_of(session, tenant_id, role=Role(role), employee_id=employee_id)
            if scope is None:
                return True
            agent = None
            if target is not None:
                agent = await session.scalar(select(Extension.employee_id).where(
                    Extension.tenant_id == tenant_id, Extension.number == target))
            return await covers_agent(session, tenant_id, scope, agent, self.runtime)


def monitor_policy(db: Database) -> MonitorPolicy:
    return MonitorPolicy(db)


def monitor_audit(db: Database) -> Audit:
    async def record(entry: AuditRecord) -> None:
        async with db.session() as session:
            session.add(
                MonitorAudit(
                    tenant_id=entry.tenant_id,
                    session_id=entry.session_id,
                    call_id=entry.call_id,
                    supervisor=entry.supervisor[:64],
                    agent=entry.agent[:32],
                    action=entry.action,
                    mode=entry.mode,
                    via=entry.via,
                    detail=entry.detail[:200],
                    at=datetime.fromtimestamp(entry.at, UTC),
                )
            )
            await session.commit()

    return record


async def audit_of(session: AsyncSession, tenant_id: int, limit: int = 200) -> list[MonitorAudit]:
    rows = await session.scalars(
        select(MonitorAudit)
        .where(MonitorAudit.tenant_id == tenant_id)
        .order_by(MonitorAudit.id.desc())
        .limit(limit)
    )
    return list(rows)


async def audit_refusal(session: AsyncSession, tenant_id: int, who: str, detail: str, *, agent: str = "",
                        via: str = "api") -> None:
    """A refused attempt of a supervisor's power (monitoring, or the call center out of their queues),
    audited as ``refused`` and committed at once (the request fails next)."""
    session.add(MonitorAudit(tenant_id=tenant_id, session_id=None, call_id=None, supervisor=who[:64],
                             agent=agent[:32], action="refused", mode=None, via=via, detail=detail[:200],
                             at=utcnow()))
    await session.commit()
