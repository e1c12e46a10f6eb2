"""The call engine's two monitoring ports, implemented on the database: who may monitor, and the audit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.org.models import Account, Role
from zvonok.storage.db import Database
from zvonok.telephony.monitor import Audit, AuditRecord

from .models import MonitorAudit


def monitor_policy(db: Database) -> Callable[[int, int | None], Awaitable[bool]]:
    """A supervisor is an employee with an active supervisor or tenant-admin account of that tenant."""

    async def allowed(tenant_id: int, employee_id: int | None) -> bool:
        if employee_id is None:
            return False
        async with db.session() as session:
            found = await session.scalar(
                select(Account.id)
                .where(
                    Account.tenant_id == tenant_id,
                    Account.employee_id == employee_id,
                    Account.role.in_((Role.SUPERVISOR.value, Role.TENANT_ADMIN.value)),
                    Account.active.is_(True),
                )
                .limit(1)
            )
        return found is not None

    return allowed


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
