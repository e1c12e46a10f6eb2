"""Helpers shared by the outside-world pages (trunks, routes, permissions, PINs, billing, tariffs).

Not a page module (no ``router``): the forms' error messages, and the policy levels a tenant has.
Validation itself is the API's: the pages build the same pydantic schemas (:mod:`zvonok.pstn.schemas`)
and call the same services; here the errors they raise become translated messages per form field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.org.errors import OrgError
from zvonok.org.models import Department, Employee, Office
from zvonok.pstn import policies
from zvonok.pstn import schemas as s
from zvonok.pstn.models import OutboundPolicy

FORM = "form"  # the key of an error about the whole form (not one field)
LIST_LIMIT = 500  # offices, departments, employees offered in one page's choosers


def field_errors(exc: PydanticValidationError, messages: Mapping[str, str], fallback: str) -> dict[str, str]:
    """One translated message per field named in a schema's errors (the first per field)."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else FORM
        errors.setdefault(field, messages.get(field, fallback))
    return errors


def service_error(exc: OrgError, messages: Mapping[str, str], fallback: str, conflict: str) -> dict[str, str]:
    """A service's refusal (a business rule) as a message on its field."""
    field = exc.field or FORM
    if exc.status == 409:
        return {field: conflict}
    return {field: messages.get(field, fallback)}


def lines(text: str) -> list[str]:
    """A textarea of one item per line (commas too), empty lines dropped."""
    return [item.strip() for item in text.replace(",", "\n").splitlines() if item.strip()]


# --- policy levels ---------------------------------------------------------------------------------
LEVELS = ("tenant", "office", "department", "employee")


@dataclass(frozen=True)
class Target:
    """One level a policy may be set for: the company, an office, a department or an employee."""

    level: str
    ref_id: int | None
    name: str

    @property
    def key(self) -> str:
        return self.level if self.ref_id is None else f"{self.level}/{self.ref_id}"


async def targets(session: AsyncSession, tenant_id: int, company: str) -> list[Target]:
    """The company, its offices and departments, and the employees that have a policy."""
    found = [Target("tenant", None, company)]
    for level, model in (("office", Office), ("department", Department)):
        stmt = select(model.id, model.name).where(model.tenant_id == tenant_id).order_by(model.name).limit(LIST_LIMIT)
        found += [Target(level, i, n) for i, n in (await session.execute(stmt)).all()]
    stmt = (select(Employee.id, Employee.full_name)
            .join(OutboundPolicy, (OutboundPolicy.ref_id == Employee.id) & (OutboundPolicy.level == "employee")
                  & (OutboundPolicy.tenant_id == tenant_id))
            .where(Employee.tenant_id == tenant_id).order_by(Employee.full_name).limit(LIST_LIMIT))
    found += [Target("employee", i, n) for i, n in (await session.execute(stmt)).all()]
    return found


async def employee_choices(session: AsyncSession, tenant_id: int) -> list[tuple[int, str]]:
    stmt = (select(Employee.id, Employee.full_name).where(Employee.tenant_id == tenant_id)
            .order_by(Employee.full_name).limit(LIST_LIMIT))
    return [(i, n) for i, n in (await session.execute(stmt)).all()]


async def policy_rows(session: AsyncSession, tenant_id: int) -> dict[tuple[str, int | None], OutboundPolicy]:
    rows, _ = await policies.list_policies(session, tenant_id, limit=10_000)
    return {(row.level, row.ref_id): row for row in rows}


async def target_name(session: AsyncSession, tenant_id: int, level: str, ref_id: int | None, company: str) -> str:
    """The name of a level's owner; another tenant's (or a missing) office/department/employee is 404."""
    await policies.check_policy_target(session, tenant_id, level, ref_id)
    if level == "tenant":
        return company
    model: Any = {"office": Office, "department": Department, "employee": Employee}[level]
    column = model.full_name if model is Employee else model.name
    return str((await session.execute(select(column).where(model.id == ref_id))).scalar_one())


def policy_values(row: OutboundPolicy | None) -> dict[str, Any]:
    """A stored policy as :class:`~zvonok.pstn.schemas.PolicyIn` input (nothing stored: the defaults)."""
    if row is None:
        return {}
    return {"service_class": row.service_class, "deny_prefixes": list(row.deny_prefixes or []),
            "allow_prefixes": list(row.allow_prefixes or []), "caller_id": row.caller_id,
            "monthly_limit": row.monthly_limit, "warn_percent": row.warn_percent}


async def save_policy(session: AsyncSession, tenant_id: int, level: str, ref_id: int | None,
                      row: OutboundPolicy | None, data: s.PolicyIn) -> None:
    """Write one level's policy through the API's service; a policy that says nothing is deleted."""
    if not (data.service_class or data.deny_prefixes or data.allow_prefixes or data.caller_id
            or data.monthly_limit is not None):
        if row is not None:
            await policies.delete_policy(session, tenant_id, level, ref_id)
        return
    await policies.put_policy(session, tenant_id, level, ref_id, data)

