"""Cost reports of a company (tenant admins): costs per office, department, employee or day for a
period, with a chart, and the monthly statement.

The figures are the REST API's (:mod:`zvonok.pstn.reports`: one SQL aggregate per report, charged calls
only, days in the tenant's zone); the page only turns the form's dates into the period's instants (whole
days in the tenant's zone, the end day included) and formats money in the reader's locale. The chart is
uPlot (vendored, ``static/vendor``), drawn by ``static/reports.js`` from the report's rows embedded as
JSON, so the table stays the source of truth and the page works without scripts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from babel.dates import format_date
from babel.numbers import format_decimal
from fastapi import Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.org import service as org_service
from zvonok.pstn import reports
from zvonok.pstn.schemas import CostRow
from zvonok.web.auth import TenantAdminUser
from zvonok.web.i18n import N_
from zvonok.web.pages.calls import tenant_zone
from zvonok.web.render import gettext_for, locale_of, render
from zvonok.web.routing import ADMIN, NavItem, page_router

router = page_router()
NAV = [NavItem("/reports", N_("Reports"), ADMIN, order=14)]
Session = Annotated[AsyncSession, Depends(get_session)]

GROUPS = {"office": N_("Office"), "department": N_("Department"), "employee": N_("Employee"), "day": N_("Day")}
NONE_NAMES = {"office": N_("(no office)"), "department": N_("(no department)"), "employee": N_("(no employee)"),
              "destination_class": N_("(unclassified)")}
CLASSES = {"internal": N_("Internal"), "emergency": N_("Emergency"), "local": N_("Local"), "mobile": N_("Mobile"),
           "long_distance": N_("Long distance"), "international": N_("International"),
           "premium": N_("Premium rate"), "inbound": N_("Inbound")}


@dataclass(frozen=True)
class Line:
    name: str  # translated when the group is "none"
    out: CostRow


def _number(request: Request) -> Any:
    """Minutes and counts in the reader's locale (``12,50`` in Russian)."""
    locale = locale_of(request)
    return lambda value: format_decimal(value, locale=locale)


def _day(value: str) -> date | None:
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        return None
    return day if 2000 <= day.year <= 2100 else None


@router.get("/reports")
async def cost_report(request: Request, user: TenantAdminUser, session: Session,
                      group_by: Annotated[str, Query(max_length=20)] = "office",
                      from_: Annotated[str, Query(alias="from", max_length=20)] = "",
                      to: Annotated[str, Query(max_length=20)] = "") -> Response:
    _ = gettext_for(request)
    zone = tenant_zone(user)
    today = datetime.now(zone).date()
    errors: dict[str, str] = {}
    first = _day(from_) if from_ else today.replace(day=1)
    last = _day(to) if to else today
    if first is None:
        errors["from"] = _("A date like 2026-01-31.")
    if last is None:
        errors["to"] = _("A date like 2026-01-31.")
    if first is not None and last is not None:
        if last < first:
            errors["to"] = _("The end is before the start.")
        elif group_by == "day" and (last - first).days >= reports.MAX_DAYS:
            errors["to"] = _("At most %(days)s days by day.", days=reports.MAX_DAYS)
    if group_by not in GROUPS:
        errors["group_by"] = _("Invalid value.")
    form = {"group_by": group_by, "from": from_ or (first.isoformat() if first else ""),
            "to": to or (last.isoformat() if last else "")}
    context: dict[str, Any] = {"form": form, "errors": errors, "groups": GROUPS, "lines": [], "total": None,
                               "chart": None, "currency": None}
    if errors or first is None or last is None:
        return render(request, "reports/index.html", context, status_code=422)
    tenant = await org_service.get_tenant(session, user.tenant)
    start = datetime.combine(first, time(0), tzinfo=zone)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone)
    lines, total = await reports.cost_lines(session, user.tenant, start=start, end=end, group_by=group_by,
                                            time_zone=str(zone))
    if group_by == "day":  # every day of the period, the quiet ones too (a chart without gaps)
        have = {line.key: line for line in lines}
        lines = [have.get(d.isoformat()) or reports.CostLine(d.isoformat(), d.isoformat(), 0, 0, 0)
                 for d in (first + timedelta(days=i) for i in range((last - first).days + 1))]
    rows = [Line(_(NONE_NAMES[group_by]) if line.key is None and group_by in NONE_NAMES else line.name, line.out())
            for line in lines]
    chart = {"labels": [r.name for r in rows], "costs": [float(r.out.cost) for r in rows],
             "calls": [r.out.calls for r in rows], "by_day": group_by == "day",
             "cost_label": _("Cost"), "calls_label": _("Calls")}
    context.update(number=_number(request), lines=rows, total=total.out(), currency=await reports.tenant_currency(session, tenant),
                   chart=json.dumps(chart, ensure_ascii=False).replace("</", "<\\/"))
    return render(request, "reports/index.html", context)


@router.get("/reports/statement")
async def statement(request: Request, user: TenantAdminUser, session: Session,
                    month: Annotated[str, Query(max_length=7)] = "") -> Response:
    _ = gettext_for(request)
    today = datetime.now(tenant_zone(user)).date()
    year, number = today.year, today.month
    if month:
        try:
            chosen = datetime.strptime(month, "%Y-%m")
        except ValueError:
            chosen = None
        if chosen is None or not 2000 <= chosen.year <= 2100:
            return render(request, "reports/statement.html", {"month": month, "statement": None,
                                                              "error": _("A month like 2026-01.")}, status_code=422)
        year, number = chosen.year, chosen.month
    out = await reports.statement(session, user.tenant, year, number)
    levels = []  # who spent it: the same month by office, department and employee
    for group in ("office", "department", "employee"):
        lines, _total = await reports.cost_lines(session, user.tenant, start=out.start, end=out.end, group_by=group,
                                                 time_zone=out.time_zone)
        levels.append((group, GROUPS[group], [Line(_(NONE_NAMES[group]) if line.key is None else line.name,
                                                   line.out()) for line in lines]))
    classes = [{"name": _(CLASSES[row.key]) if isinstance(row.key, str) and row.key in CLASSES
                else (_(NONE_NAMES["destination_class"]) if row.key is None else row.name), "row": row}
               for row in out.by_class]
    previous = date(year, number, 1) - timedelta(days=1)
    following = (date(year, number, 28) + timedelta(days=4)).replace(day=1)
    return render(request, "reports/statement.html", {
        "month": f"{year:04d}-{number:02d}", "statement": out, "classes": classes, "levels": levels, "error": None,
        "period": format_date(date(year, number, 1), "LLLL y", locale=locale_of(request)), "previous": previous.strftime("%Y-%m"),
        "next": following.strftime("%Y-%m") if following <= today else None, "number": _number(request)})
