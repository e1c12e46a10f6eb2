"""Outbound policies (class of service, prefixes, caller ID, spending limit per level) and access-number
PINs, plus :func:`effective_policy`, what the call engine asks before letting a caller out.

One policy row per level (the tenant, an office, a department, an employee); the URL names the level, so
an office, department or employee of another tenant is simply not found (404). A policy's caller ID
must be one of the tenant's own numbers: a company may present only what it rents.

Like :mod:`zvonok.pstn.service`, these functions flush and never commit, and queue a
:class:`~zvonok.pstn.events.PstnChanged` for after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.billing.limits import Budget
from zvonok.billing.limits import Level as BudgetLevel
from zvonok.billing.statement import month_bounds
from zvonok.dialing import CallingPolicy, EffectivePolicy, ServiceClass, resolve
from zvonok.org import service as org_service
from zvonok.org.errors import NotFound, ValidationError
from zvonok.org.models import Department, Employee, Extension, Office
from zvonok.org.pins import PIN_MAX_LENGTH, PIN_MIN_LENGTH, PinProblem, hash_pin_in_thread, pin_problem
from zvonok.pstn import events, reports
from zvonok.pstn import schemas as s
from zvonok.pstn.models import EmployeePin, OutboundPolicy, PhoneNumber
from zvonok.pstn.service import count_where, flush_or_conflict, notify
from zvonok.storage.base import utcnow

# --- outbound policies -----------------------------------------------------------------------------
_LEVEL_MODELS: dict[str, Any] = {"office": Office, "department": Department, "employee": Employee}


def _at_level(tenant_id: int, level: str, ref_id: int | None) -> list[ColumnElement[bool]]:
    ref = OutboundPolicy.ref_id.is_(None) if ref_id is None else OutboundPolicy.ref_id == ref_id
    return [OutboundPolicy.tenant_id == tenant_id, OutboundPolicy.level == level, ref]


async def list_policies(
    session: AsyncSession, tenant_id: int, *, level: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[OutboundPolicy], int]:
    base = select(OutboundPolicy).where(OutboundPolicy.tenant_id == tenant_id)
    if level is not None:
        base = base.where(OutboundPolicy.level == level)
    total = int((await session.execute(select(func.count()).select_from(base.subquery()))).scalar_one())
    order = (OutboundPolicy.level, OutboundPolicy.ref_id, OutboundPolicy.id)
    rows = (await session.execute(base.order_by(*order).limit(limit).offset(offset))).scalars().all()
    return list(rows), total


async def check_policy_target(session: AsyncSession, tenant_id: int, level: str, ref_id: int | None) -> None:
    """The office/department/employee a policy URL names must be the tenant's (404 otherwise)."""
    if level == "tenant":
        return
    model = _LEVEL_MODELS[level]
    found = await session.execute(select(model.id).where(model.tenant_id == tenant_id, model.id == ref_id))
    if found.scalar_one_or_none() is None:
        raise NotFound(f"{level} {ref_id} not found")


async def get_policy(session: AsyncSession, tenant_id: int, level: str, ref_id: int | None) -> OutboundPolicy:
    await check_policy_target(session, tenant_id, level, ref_id)
    row = (await session.execute(select(OutboundPolicy).where(*_at_level(tenant_id, level, ref_id)))).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no outbound policy for {level}" + (f" {ref_id}" if ref_id is not None else ""))
    return row


async def put_policy(
    session: AsyncSession, tenant_id: int, level: str, ref_id: int | None, data: s.PolicyIn
) -> tuple[OutboundPolicy, bool]:
    """Create or replace the policy of one level; returns it and whether it was created."""
    await check_policy_target(session, tenant_id, level, ref_id)
    if data.caller_id is not None:
        owned = await count_where(session, PhoneNumber.tenant_id == tenant_id, PhoneNumber.number == data.caller_id,
                             model=PhoneNumber)
        if not owned:
            raise ValidationError(f"caller_id: {data.caller_id} is not one of the tenant's phone numbers",
                                  field="caller_id")
    row = (await session.execute(select(OutboundPolicy).where(*_at_level(tenant_id, level, ref_id)))).scalar_one_or_none()
    created = row is None
    if row is None:
        row = OutboundPolicy(tenant_id=tenant_id, level=level, ref_id=ref_id)
        session.add(row)
    for name, value in data.model_dump().items():
        setattr(row, name, value)
    await flush_or_conflict(session, f"the outbound policy of {level} {ref_id or ''} was written at the same time".strip())
    notify(session, tenant_id, events.POLICY)
    return row, created


async def delete_policy(session: AsyncSession, tenant_id: int, level: str, ref_id: int | None) -> None:
    await session.delete(await get_policy(session, tenant_id, level, ref_id))
    await session.flush()
    notify(session, tenant_id, events.POLICY)


@dataclass(frozen=True, kw_only=True)
class PolicyInForce:
    """What the call engine needs to let one caller out: permissions, the caller ID to present (None:
    the tenant has no number) and one budget per level with a monthly limit, most specific first."""

    policy: EffectivePolicy
    caller_id: str | None
    budgets: tuple[Budget, ...]


def _calling(row: OutboundPolicy | None) -> CallingPolicy | None:
    if row is None:
        return None
    klass = ServiceClass[row.service_class.upper()] if row.service_class else None
    return CallingPolicy(service_class=klass, deny=frozenset(row.deny_prefixes or ()),
                         allow=frozenset(row.allow_prefixes or ()))


async def effective_policy(
    session: AsyncSession, tenant_id: int, employee_id: int | None, department_id: int | None,
    office_id: int | None, *, now: datetime | None = None,
) -> PolicyInForce:
    """Fold the four levels' policies (:func:`zvonok.dialing.resolve`), pick the most specific caller ID
    (else the office's first number, else the tenant's), and measure each limited level's spend in the
    month of ``now`` (default: the current one) in the tenant's time zone."""
    chain = [("employee", employee_id), ("department", department_id), ("office", office_id), ("tenant", None)]
    present = [(level, ref) for level, ref in chain if level == "tenant" or ref is not None]
    stmt = select(OutboundPolicy).where(or_(*(and_(*_at_level(tenant_id, level, ref)) for level, ref in present)))
    by_level = {(row.level, row.ref_id): row for row in (await session.execute(stmt)).scalars()}
    rows = [by_level.get((level, ref)) if level == "tenant" or ref is not None else None for level, ref in chain]
    employee, department, office, tenant = (_calling(row) for row in rows)
    policy = resolve(employee=employee, department=department, office=office, tenant=tenant)
    caller_id = next((row.caller_id for row in rows if row is not None and row.caller_id), None)
    if caller_id is None:
        caller_id = await _first_number(session, tenant_id, office_id)
    limited = [row for row in rows if row is not None and row.monthly_limit is not None]
    budgets: list[Budget] = []
    if limited:
        zone = (await org_service.get_tenant(session, tenant_id)).timezone
        local = (now or utcnow()).astimezone(ZoneInfo(zone))
        start, end = month_bounds(local.year, local.month, zone)
        spent = await reports.month_spend(session, tenant_id, start=start, end=end, employee_id=employee_id,
                                          department_id=department_id, office_id=office_id)
        budgets = [Budget(level=BudgetLevel(row.level), limit=Decimal(row.monthly_limit or 0),
                          spent=spent[(row.level, row.ref_id)], warn_ratio=Decimal(row.warn_percent) / 100,
                          owner_id=row.ref_id) for row in limited]
    return PolicyInForce(policy=policy, caller_id=caller_id, budgets=tuple(budgets))


async def _first_number(session: AsyncSession, tenant_id: int, office_id: int | None) -> str | None:
    base = select(PhoneNumber.number).where(PhoneNumber.tenant_id == tenant_id, PhoneNumber.enabled.is_(True))
    for stmt in ([base.where(PhoneNumber.office_id == office_id)] if office_id is not None else []) + [base]:
        number = (await session.execute(stmt.order_by(PhoneNumber.number).limit(1))).scalar_one_or_none()
        if number is not None:
            return number
    return None


# --- PINs ------------------------------------------------------------------------------------------
_PIN_MESSAGES = {
    PinProblem.FORMAT: f"pin: {PIN_MIN_LENGTH} to {PIN_MAX_LENGTH} digits",
    PinProblem.REPEATED: "pin: too easy to guess, a repeated group of digits such as 1212 (repeated)",
    PinProblem.SEQUENCE: "pin: too easy to guess, a run of digits such as 1234 or 9876 (sequence)",
    PinProblem.PERSONAL: "pin: too easy to guess, the end of the employee's extension or phone number (personal)",
}


async def get_pin(session: AsyncSession, tenant_id: int, employee_id: int) -> EmployeePin | None:
    await org_service.get_employee(session, tenant_id, employee_id)
    stmt = select(EmployeePin).where(EmployeePin.tenant_id == tenant_id, EmployeePin.employee_id == employee_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def set_pin(
    session: AsyncSession, tenant_id: int, employee_id: int, pin: str, *, skip_for_caller_id: bool | None = None
) -> EmployeePin:
    """Set an employee's access-number PIN (argon2, in a thread); 422 with the reason for a weak one.
    ``skip_for_caller_id`` None keeps the current setting (False for a new PIN)."""
    employee = await org_service.get_employee(session, tenant_id, employee_id)
    own = select(Extension.number).where(Extension.tenant_id == tenant_id, Extension.employee_id == employee_id)
    avoid = [*(await session.execute(own)).scalars(), *([employee.phone] if employee.phone else [])]
    problem = pin_problem(pin, avoid=avoid)
    if problem is not None:
        raise ValidationError(_PIN_MESSAGES[problem], field="pin")
    hashed = await hash_pin_in_thread(pin)
    row = await get_pin(session, tenant_id, employee_id)
    if row is None:
        row = EmployeePin(tenant_id=tenant_id, employee_id=employee_id, pin_hash=hashed,
                          skip_for_caller_id=bool(skip_for_caller_id))
        session.add(row)
    else:
        row.pin_hash = hashed
        row.updated_at = utcnow()  # a new hash of the same PIN still counts as a change
        if skip_for_caller_id is not None:
            row.skip_for_caller_id = skip_for_caller_id
    await flush_or_conflict(session, f"the PIN of employee {employee_id} was set at the same time")
    notify(session, tenant_id, events.PIN)
    return row


async def delete_pin(session: AsyncSession, tenant_id: int, employee_id: int) -> None:
    row = await get_pin(session, tenant_id, employee_id)
    if row is None:
        raise NotFound(f"employee {employee_id} has no PIN")
    await session.delete(row)
    await session.flush()
    notify(session, tenant_id, events.PIN)
