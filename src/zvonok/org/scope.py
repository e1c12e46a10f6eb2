"""Tenant-scoped query helpers: the only way org services read tenant data.

Every helper takes ``tenant_id`` and adds ``WHERE tenant_id = :tenant`` itself, so a service cannot
forget it. An object of another tenant is indistinguishable from a missing one (NotFound).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.org.errors import NotFound, ValidationError
from zvonok.storage.base import TenantScoped

M = TypeVar("M", bound=TenantScoped)


def in_tenant(model: type[M], tenant_id: int) -> Select[tuple[M]]:
    return select(model).where(model.tenant_id == tenant_id)


async def get_in_tenant(session: AsyncSession, model: type[M], tenant_id: int, obj_id: int, what: str) -> M:
    obj = (await session.execute(in_tenant(model, tenant_id).where(model.id == obj_id))).scalar_one_or_none()  # type: ignore[attr-defined]
    if obj is None:
        raise NotFound(f"{what} {obj_id} not found")
    return obj


async def check_ref(
    session: AsyncSession, model: type[M], tenant_id: int, obj_id: int | None, field: str, what: str
) -> None:
    """Validate a foreign id given in input: it must exist *in this tenant* (else 422 naming the field)."""
    if obj_id is None:
        return
    try:
        await get_in_tenant(session, model, tenant_id, obj_id, what)
    except NotFound:
        raise ValidationError(f"{field}: {what} {obj_id} does not exist", field=field) from None


async def count_in_tenant(session: AsyncSession, model: type[M], tenant_id: int, *where: ColumnElement[bool]) -> int:
    stmt = select(func.count()).select_from(model).where(model.tenant_id == tenant_id, *where)
    return int((await session.execute(stmt)).scalar_one())


async def page_in_tenant(
    session: AsyncSession,
    model: type[M],
    tenant_id: int,
    *,
    where: Sequence[ColumnElement[bool]] = (),
    q: str | None = None,
    q_columns: Sequence[Any] = (),
    order_by: Sequence[Any] = (),
    limit: int,
    offset: int,
) -> tuple[list[M], int]:
    """One page of a tenant's objects plus the total matching count (for ``{"items", "total"}``)."""
    conds = list(where)
    if q:
        needle = q.lower()
        conds.append(or_(*(func.lower(col).contains(needle, autoescape=True) for col in q_columns)))
    base = in_tenant(model, tenant_id).where(*conds)
    total = int((await session.execute(select(func.count()).select_from(base.subquery()))).scalar_one())
    rows = (await session.execute(base.order_by(*order_by).limit(limit).offset(offset))).scalars().all()
    return list(rows), total


def describe_counts(counts: dict[str, int]) -> str:
    """``{"employee": 2, "extension": 1}`` -> ``"2 employees, 1 extension"``."""
    return ", ".join(f"{n} {name}{'' if n == 1 else 's'}" for name, n in counts.items() if n)
