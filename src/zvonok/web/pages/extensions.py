"""Extensions of a company (tenant admins): the list with each one's devices, live, and a create form.

The registration state is live: the page opens the tenant's event websocket (``static/app.js``) and
htmx reloads one extension's devices cell when a ``RegistrationChanged`` event names it, and the whole
table after a reconnect (events may have been missed meanwhile).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Annotated, Any

from fastapi import Depends, Form, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.org import schemas, service
from zvonok.org.errors import OrgError
from zvonok.org.models import Employee
from zvonok.telephony.location import Binding
from zvonok.web.auth import TenantAdminUser, WebUser
from zvonok.web.i18n import N_
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import ADMIN, NavItem, page_router

router = page_router()
NAV = [NavItem("/extensions", N_("Extensions"), ADMIN, order=20)]
PAGE = 50


def _devices(request: Request, tenant_id: int) -> dict[int, list[Binding]]:
    """Every live binding of the tenant by extension: one pass over the location, not one per row."""
    found: dict[int, list[Binding]] = defaultdict(list)
    for binding in request.app.state.location.tenant_bindings(tenant_id, time.time()):
        found[binding.extension_id].append(binding)
    return found


async def _table(request: Request, session: AsyncSession, user: WebUser, page: int, q: str | None) -> dict[str, Any]:
    rows, total = await service.list_extensions(session, user.tenant, q=q or None, limit=PAGE,
                                                offset=(page - 1) * PAGE)
    wanted = {r.employee_id for r in rows if r.employee_id is not None}
    names: dict[int, str] = {}
    if wanted:  # one query for the page's employees
        stmt = select(Employee.id, Employee.full_name).where(Employee.tenant_id == user.tenant, Employee.id.in_(wanted))
        names = {i: n for i, n in (await session.execute(stmt)).all()}
    return {"rows": rows, "total": total, "page": page, "pages": max(1, -(-total // PAGE)), "q": q or "",
            "employees": names, "devices": _devices(request, user.tenant), "now": time.time()}


async def _employee_choices(session: AsyncSession, tenant_id: int) -> list[tuple[int, str]]:
    stmt = (select(Employee.id, Employee.full_name).where(Employee.tenant_id == tenant_id, Employee.active.is_(True))
            .order_by(Employee.full_name).limit(1000))
    return [(i, n) for i, n in (await session.execute(stmt)).all()]


@router.get("/extensions")
async def extensions(request: Request, user: TenantAdminUser, session: Annotated[AsyncSession, Depends(get_session)],
                     page: Annotated[int, Query(ge=1, le=100_000)] = 1,
                     q: Annotated[str | None, Query(max_length=100)] = None) -> Response:
    context = await _table(request, session, user, page, q)
    context.update(form={}, errors={}, created=None, employee_choices=await _employee_choices(session, user.tenant))
    return render(request, "extensions/index.html", context)


@router.get("/extensions/rows")
async def extension_rows(request: Request, user: TenantAdminUser, session: Annotated[AsyncSession, Depends(get_session)],
                         page: Annotated[int, Query(ge=1, le=100_000)] = 1,
                         q: Annotated[str | None, Query(max_length=100)] = None) -> Response:
    """The table body alone (htmx: refreshed after the websocket reconnects)."""
    return render(request, "extensions/_rows.html", await _table(request, session, user, page, q))


@router.get("/extensions/{extension_id}/devices")
async def extension_devices(request: Request, extension_id: int, user: TenantAdminUser,
                            session: Annotated[AsyncSession, Depends(get_session)]) -> Response:
    """One extension's devices cell (htmx: refreshed on its RegistrationChanged event)."""
    ext = await service.get_extension(session, user.tenant, extension_id)  # another tenant's id: 404
    return render(request, "extensions/_devices.html",
                  {"ext": ext, "bindings": _devices(request, user.tenant).get(ext.id, []), "now": time.time()})


@router.post("/extensions")
async def create_extension(
    request: Request, user: TenantAdminUser, session: Annotated[AsyncSession, Depends(get_session)],
    number: Annotated[str, Form(max_length=16)] = "",
    display_name: Annotated[str, Form(max_length=200)] = "",
    employee_id: Annotated[str, Form(max_length=12)] = "",
    sip_password: Annotated[str, Form(max_length=128)] = "",
    pickup_group: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    _ = gettext_for(request)
    form = {"number": number, "display_name": display_name, "employee_id": employee_id, "pickup_group": pickup_group}
    errors: dict[str, str] = {}
    created = None
    try:
        data = schemas.ExtensionCreate(
            number=number.strip(), display_name=display_name, sip_password=sip_password or None,
            employee_id=int(employee_id) if employee_id.isdigit() else None, pickup_group=pickup_group,
        )
    except PydanticValidationError as exc:
        messages = {
            "number": _("2 to 8 digits."), "display_name": _("Required."),
            "sip_password": _("At least 8 characters, or leave empty to generate one."),
            "pickup_group": _("Up to 32 letters, digits, '-' or '_'; empty: the department."),
        }
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "number"
            errors[field] = messages.get(field, _("Invalid value."))
    else:
        try:
            ext, generated = await service.create_extension(session, user.tenant, data)
            await session.commit()
            created = {"number": ext.number, "password": generated}
            form = {}
        except OrgError as exc:
            await session.rollback()
            field = getattr(exc, "field", None) or "number"
            errors[field] = (_("This number is already taken.") if exc.status == 409
                             else _("Invalid value."))
    context = await _table(request, session, user, 1, None)
    context.update(form=form, errors=errors, created=created,
                   employee_choices=await _employee_choices(session, user.tenant))
    return render(request, "extensions/index.html", context, status_code=422 if errors else 200)
