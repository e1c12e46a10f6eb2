"""Calling permissions, caller ID and spending limits per level (tenant admins).

One outbound policy per level — the company, an office, a department, an employee
(:mod:`zvonok.pstn.policies`) — holds both what ``/permissions`` edits (class of service, denied and
allowed prefixes, caller ID) and what ``/billing`` edits (the monthly limit and its warning
percentage). Each page replaces only its own part: the other part is carried over from the stored
policy, and a policy left saying nothing is deleted. The API's ``PolicyIn`` checks the input and
``put_policy`` the business rules (a caller ID must be one of the company's numbers).

``/billing`` shows this month's spend (in the tenant's time zone) of every level from the cost report
(:func:`zvonok.pstn.reports.cost_lines`), against its limit.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.billing.statement import month_bounds
from zvonok.org import service as org_service
from zvonok.org.errors import NotFound, OrgError
from zvonok.pstn import reports
from zvonok.pstn import schemas as s
from zvonok.pstn import service as pstn_service
from zvonok.web.auth import TenantAdminUser, WebUser
from zvonok.web.i18n import N_
from zvonok.web.pages._pstn import (
    FORM,
    employee_choices,
    field_errors,
    lines,
    policy_rows,
    policy_values,
    save_policy,
    service_error,
    target_name,
    targets,
)
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import ADMIN, NavItem, page_router

router = page_router()
NAV = [NavItem("/permissions", N_("Permissions"), ADMIN, order=52),
       NavItem("/billing", N_("Spending limits"), ADMIN, order=54)]
Session = Annotated[AsyncSession, Depends(get_session)]
Level = Literal["tenant", "office", "department", "employee"]
SERVICE_CLASSES = {"internal_only": N_("Internal calls only"), "local": N_("Local"),
                   "long_distance": N_("Long distance"), "international": N_("International")}
LEVEL_NAMES = {"tenant": N_("Company"), "office": N_("Office"), "department": N_("Department"),
               "employee": N_("Employee")}


def _ref(level: str, ref_id: int | None) -> int | None:
    """The id a level needs (none for the company); missing for another level: nothing to show (404)."""
    if level == "tenant":
        return None
    if ref_id is None:
        raise NotFound(f"{level}: which one?")
    return ref_id


def _company(user: WebUser) -> str:
    return user.tenant_name or ""


# --- permissions -----------------------------------------------------------------------------------
def _permission_messages(request: Request) -> dict[str, str]:
    _ = gettext_for(request)
    return {"service_class": _("Invalid value."),
            "deny_prefixes": _("Prefixes are 1 to 15 digits of an international number, one per line."),
            "allow_prefixes": _("Prefixes are 1 to 15 digits of an international number, one per line."),
            "caller_id": _("Choose one of the company's phone numbers."),
            FORM: _("A prefix may not be both denied and allowed.")}


@router.get("/permissions")
async def permissions(request: Request, user: TenantAdminUser, session: Session,
                      done: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    rows = await policy_rows(session, user.tenant)
    return render(request, "pstn/permissions.html", {
        "targets": await targets(session, user.tenant, _company(user)), "policies": rows,
        "employees": await employee_choices(session, user.tenant), "classes": SERVICE_CLASSES,
        "level_names": LEVEL_NAMES, "done": gettext_for(request)("Saved.") if done else None})


async def _permission_page(request: Request, user: WebUser, session: AsyncSession, level: str, ref_id: int | None,
                           form: dict[str, Any] | None, errors: dict[str, str], status_code: int = 200) -> Response:
    name = await target_name(session, user.tenant, level, ref_id, _company(user))
    rows = await policy_rows(session, user.tenant)
    if form is None:
        stored = policy_values(rows.get((level, ref_id)))
        form = {"service_class": stored.get("service_class") or "", "caller_id": stored.get("caller_id") or "",
                "deny_prefixes": "\n".join(stored.get("deny_prefixes", [])),
                "allow_prefixes": "\n".join(stored.get("allow_prefixes", []))}
    numbers, _total = await pstn_service.list_numbers(session, user.tenant, limit=500)
    return render(request, "pstn/permission_edit.html", {
        "level": level, "ref_id": ref_id, "name": name, "level_names": LEVEL_NAMES, "classes": SERVICE_CLASSES,
        "numbers": [n.number for n in numbers], "form": form, "errors": errors,
        "has_policy": (level, ref_id) in rows}, status_code=status_code)


@router.get("/permissions/{level}")
async def edit_permissions(request: Request, level: Level, user: TenantAdminUser, session: Session,
                           id: Annotated[int | None, Query()] = None) -> Response:  # noqa: A002 - the form's field
    return await _permission_page(request, user, session, level, _ref(level, id), None, {})


@router.post("/permissions/{level}")
async def save_permissions(
    request: Request, level: Level, user: TenantAdminUser, session: Session,
    ref_id: Annotated[int | None, Form()] = None,
    service_class: Annotated[str, Form(max_length=32)] = "",
    deny_prefixes: Annotated[str, Form(max_length=20_000)] = "",
    allow_prefixes: Annotated[str, Form(max_length=20_000)] = "",
    caller_id: Annotated[str, Form(max_length=64)] = "",
    clear: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    _ = gettext_for(request)
    ref = _ref(level, ref_id)
    await target_name(session, user.tenant, level, ref, _company(user))  # another company's: 404 first
    form = {"service_class": service_class, "deny_prefixes": deny_prefixes, "allow_prefixes": allow_prefixes,
            "caller_id": caller_id}
    row = (await policy_rows(session, user.tenant)).get((level, ref))
    mine = ({} if clear else {"service_class": service_class or None, "deny_prefixes": lines(deny_prefixes),
                              "allow_prefixes": lines(allow_prefixes), "caller_id": caller_id.strip() or None})
    keep = {k: v for k, v in policy_values(row).items() if k in ("monthly_limit", "warn_percent")}
    try:
        await save_policy(session, user.tenant, level, ref, row, s.PolicyIn.model_validate({**keep, **mine}))
        await session.commit()
    except PydanticValidationError as exc:
        errors = field_errors(exc, _permission_messages(request), _("Invalid value."))
        return await _permission_page(request, user, session, level, ref, form, errors, 422)
    except OrgError as exc:
        await session.rollback()
        errors = service_error(exc, _permission_messages(request), _("Invalid value."), _("Changed meanwhile: try again."))
        return await _permission_page(request, user, session, level, ref, form, errors, exc.status)
    return RedirectResponse("/permissions?done=saved", status_code=303)


# --- spending limits -------------------------------------------------------------------------------
async def _spend(session: AsyncSession, tenant_id: int) -> tuple[dict[tuple[str, int | None], Decimal], str]:
    """This month's spend of the company and of each office, department and employee (one query per
    level, the cost report's), and the month's name."""
    zone = (await org_service.get_tenant(session, tenant_id)).timezone
    local = datetime.now(ZoneInfo(zone))
    start, end = month_bounds(local.year, local.month, zone)
    spent: dict[tuple[str, int | None], Decimal] = {}
    for level in ("office", "department", "employee"):
        found, total = await reports.cost_lines(session, tenant_id, start=start, end=end, group_by=level, time_zone=zone)
        for line in found:
            if isinstance(line.key, int):
                spent[(level, line.key)] = line.out().cost
        spent[("tenant", None)] = total.out().cost
    return spent, local.strftime("%Y-%m")


def _limit_messages(request: Request) -> dict[str, str]:
    _ = gettext_for(request)
    return {"monthly_limit": _("An amount of at least 0 with at most 2 decimals, or empty for no limit."),
            "warn_percent": _("A percentage from 1 to 100.")}


async def _billing_page(request: Request, user: WebUser, session: AsyncSession, *, done: str | None = None,
                        errors: dict[str, dict[str, str]] | None = None,
                        forms: dict[str, dict[str, str]] | None = None, status_code: int = 200) -> Response:
    spent, month = await _spend(session, user.tenant)
    tenant = await org_service.get_tenant(session, user.tenant)
    return render(request, "pstn/billing.html", {
        "targets": await targets(session, user.tenant, _company(user)), "policies": await policy_rows(session, user.tenant),
        "spent": spent, "month": month, "currency": await reports.tenant_currency(session, tenant),
        "employees": await employee_choices(session, user.tenant), "level_names": LEVEL_NAMES,
        "errors": errors or {}, "forms": forms or {}, "done": done}, status_code=status_code)


@router.get("/billing")
async def billing(request: Request, user: TenantAdminUser, session: Session,
                  done: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    return await _billing_page(request, user, session, done=gettext_for(request)("Saved.") if done else None)


@router.post("/billing/{level}")
async def save_limit(
    request: Request, level: Level, user: TenantAdminUser, session: Session,
    ref_id: Annotated[int | None, Form()] = None,
    monthly_limit: Annotated[str, Form(max_length=32)] = "",
    warn_percent: Annotated[str, Form(max_length=8)] = "80",
) -> Response:
    _ = gettext_for(request)
    ref = _ref(level, ref_id)
    await target_name(session, user.tenant, level, ref, _company(user))  # another company's: 404 first
    row = (await policy_rows(session, user.tenant)).get((level, ref))
    keep = {k: v for k, v in policy_values(row).items() if k not in ("monthly_limit", "warn_percent")}
    amount = monthly_limit.strip().replace(",", ".").replace(" ", "")
    mine = {"monthly_limit": amount or None, "warn_percent": warn_percent.strip() or 80}
    key = level if ref is None else f"{level}/{ref}"
    try:
        await save_policy(session, user.tenant, level, ref, row, s.PolicyIn.model_validate({**keep, **mine}))
        await session.commit()
    except PydanticValidationError as exc:
        errors = field_errors(exc, _limit_messages(request), _("Invalid value."))
    except OrgError as exc:
        await session.rollback()
        errors = service_error(exc, _limit_messages(request), _("Invalid value."), _("Changed meanwhile: try again."))
    else:
        return RedirectResponse("/billing?done=saved", status_code=303)
    return await _billing_page(request, user, session, errors={key: errors},
                               forms={key: {"monthly_limit": monthly_limit, "warn_percent": warn_percent}},
                               status_code=422)
