"""The company's phone numbers (tenant admins): where each one's calls go, and its working hours.

A number routes to one destination (:mod:`zvonok.pstn.destinations`): an extension, several at once, a
voicemail box, a queue, an outside number, the access-number service, a conference room, a ring group, or a schedule
that picks one of those by the time. The form edits a schedule's first rule and its default (the
other rules and holidays, set through the API, are kept as they are). The service checks everything
(:func:`zvonok.pstn.service.update_number`); its message names the place in the payload, which the page
turns into a message next to the field it came from.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.org.errors import OrgError
from zvonok.org.models import Extension, Office
from zvonok.pstn import schemas as pstn_schemas
from zvonok.pstn import service
from zvonok.pstn.models import PhoneNumber
from zvonok.ringgroup.models import RingGroup
from zvonok.web.auth import TenantAdminUser
from zvonok.web.forms import BadId, optional_id
from zvonok.web.i18n import N_
from zvonok.web.pages.destination_form import choices, payload_of, text_of
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import ADMIN, NavItem, page_router

router = page_router()
NAV = [NavItem("/numbers", N_("Numbers"), ADMIN, order=32)]
Session = Annotated[AsyncSession, Depends(get_session)]
LIMIT = 500

KINDS = choices(("extension", "ring", "voicemail", "queue", "external", "access", "conference", "ring_group",
                 "fax", "schedule"))
BRANCH_KINDS = {k: label for k, label in KINDS.items() if k != "schedule"}  # a schedule's branches are never schedules
DAYS = [N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun")]
TARGET_HELP = {
    "extension": N_("An extension number: 2 to 8 digits."),
    "voicemail": N_("An extension number: 2 to 8 digits."),
    "ring": N_("1 to 20 different extension numbers, separated by commas."),
    "queue": N_("A queue name (1 to 100 characters)."),
    "external": N_("A number in international form: + and the country code."),
    "conference": N_("A conference room number: 2 to 8 digits."),
    "ring_group": N_("A ring group number: 2 to 8 digits."),
    "access": N_("Invalid value."),
    "fax": N_("E-mail addresses to send each fax to as PDF (at most 10, separated by commas), and an employee's "
              "extension number for their own fax line (sent to their fax e-mail), or nothing."),
}
_MISSING_EXTENSION = re.compile(r"extension ([0-9]{2,8}) does not exist")
_MISSING_GROUP = re.compile(r"ring group ([0-9]{2,8}) does not exist")




def form_of(number: PhoneNumber) -> dict[str, Any]:
    """The edit form's values for a stored number."""
    dest = number.destination or {}
    form: dict[str, Any] = {"office_id": str(number.office_id or ""), "kind": number.destination_kind,
                            "target": "", "timeout": "", "skip_pin": False, "timezone": "", "days": [0, 1, 2, 3, 4],
                            "from": "09:00", "to": "18:00", "in_kind": "extension", "in_target": "",
                            "out_kind": "voicemail", "out_target": ""}
    if number.destination_kind == "schedule":
        form["timezone"] = dest.get("timezone", "")
        rules = dest.get("rules") or []
        if rules:
            rule = rules[0]
            form.update({"days": list(rule.get("days", [])), "from": rule.get("from", ""), "to": rule.get("to", "")})
            inside = rule.get("destination") or {}
            form.update(in_kind=inside.get("kind", "extension"), in_target=text_of(inside))
        default = dest.get("default") or {}
        form.update(out_kind=default.get("kind", "voicemail"), out_target=text_of(default))
    else:
        form.update(target=text_of(dest), timeout=str(dest.get("timeout", "")),
                    skip_pin=bool(dest.get("skip_pin_for_known_callers")))
    return form


def _field_of(message: str, kind: str) -> str:
    """The form field a service message is about, by the payload path it starts with."""
    path = message.split(":", 1)[0]
    if kind != "schedule":
        return "timeout" if path.endswith(".timeout") else "target"
    if path.startswith("destination.rules[0].destination"):
        return "in_target"
    for name in ("days", "from", "to"):
        if path == f"destination.rules[0].{name}":
            return name
    if path == "destination.rules[0]":
        return "to"
    if path.startswith("destination.default"):
        return "out_target"
    if path == "destination.timezone":
        return "timezone"
    return ""


def _message(request: Request, field: str, service_message: str, form: dict[str, Any]) -> str:
    _ = gettext_for(request)
    missing = _MISSING_EXTENSION.search(service_message)
    if missing:
        return str(_("Extension %(number)s does not exist.") % {"number": missing.group(1)})
    missing = _MISSING_GROUP.search(service_message)
    if missing:
        return str(_("Ring group %(number)s does not exist.") % {"number": missing.group(1)})
    if field in ("target", "in_target", "out_target"):
        kind = {"target": form["kind"], "in_target": form["in_kind"], "out_target": form["out_kind"]}[field]
        return str(_(TARGET_HELP.get(kind, N_("Invalid value."))))
    return str({
        "timeout": _("Whole seconds from 5 to 600."), "days": _("Choose at least one day."),
        "from": _("A time HH:MM."), "to": _("A time HH:MM, after the start (00:00 is the end of the day)."),
        "timezone": _("Unknown time zone: use a name such as Europe/Moscow."),
    }.get(field, _("Invalid value.")))


async def _choices(session: AsyncSession, tenant_id: int) -> dict[str, Any]:
    offices = (await session.execute(select(Office.id, Office.name).where(Office.tenant_id == tenant_id)
                                     .order_by(Office.name))).all()
    extensions = (await session.execute(select(Extension.number, Extension.display_name)
                                        .where(Extension.tenant_id == tenant_id).order_by(Extension.number)
                                        .limit(2000))).all()
    groups = (await session.execute(select(RingGroup.number, RingGroup.name).where(RingGroup.tenant_id == tenant_id)
                                    .order_by(RingGroup.number).limit(2000))).all()
    return {"office_choices": [(i, n) for i, n in offices],
            "extension_choices": [(n, d) for n, d in extensions] + [(n, d) for n, d in groups],
            "kinds": KINDS, "branch_kinds": BRANCH_KINDS, "days": DAYS}


@router.get("/numbers")
async def numbers(request: Request, user: TenantAdminUser, session: Session,
                  saved: Annotated[int | None, Query(ge=1)] = None) -> Response:
    rows, total = await service.list_numbers(session, user.tenant, limit=LIMIT)
    context = await _choices(session, user.tenant)
    context.update(rows=rows, total=total, offices=dict(context["office_choices"]), saved=saved)
    return render(request, "numbers/index.html", context)


async def _edit_page(request: Request, session: AsyncSession, tenant_id: int, number: PhoneNumber,
                     form: dict[str, Any], errors: dict[str, str], status_code: int = 200) -> Response:
    context = await _choices(session, tenant_id)
    context.update(number=number, form=form, errors=errors)
    return render(request, "numbers/edit.html", context, status_code=status_code)


@router.get("/numbers/{number_id}")
async def edit_number(request: Request, number_id: int, user: TenantAdminUser, session: Session) -> Response:
    number = await service.get_number(session, user.tenant, number_id)  # another tenant's: 404 page
    return await _edit_page(request, session, user.tenant, number, form_of(number), {})


@router.post("/numbers/{number_id}")
async def save_number(
    request: Request, number_id: int, user: TenantAdminUser, session: Session,
    office_id: Annotated[str, Form(max_length=20)] = "",
    kind: Annotated[str, Form(max_length=20)] = "",
    target: Annotated[str, Form(max_length=500)] = "",
    timeout: Annotated[str, Form(max_length=10)] = "",
    skip_pin: Annotated[str, Form(max_length=5)] = "",
    timezone: Annotated[str, Form(max_length=100)] = "",
    days: Annotated[list[str] | None, Form()] = None,
    from_: Annotated[str, Form(alias="from", max_length=10)] = "",
    to: Annotated[str, Form(max_length=10)] = "",
    in_kind: Annotated[str, Form(max_length=20)] = "",
    in_target: Annotated[str, Form(max_length=500)] = "",
    out_kind: Annotated[str, Form(max_length=20)] = "",
    out_target: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    _ = gettext_for(request)
    number = await service.get_number(session, user.tenant, number_id)  # another tenant's: 404 page
    day_numbers = sorted({int(d) for d in (days or [])[:7] if d.isdigit() and len(d) == 1})
    form: dict[str, Any] = {"office_id": office_id, "kind": kind, "target": target, "timeout": timeout,
                            "skip_pin": skip_pin == "1", "timezone": timezone.strip(), "days": day_numbers,
                            "from": from_.strip(), "to": to.strip(), "in_kind": in_kind, "in_target": in_target,
                            "out_kind": out_kind, "out_target": out_target}
    errors: dict[str, str] = {}
    if kind not in KINDS:
        errors["kind"] = _("Choose from the list.")
    if kind == "schedule":
        for name, value in (("in_kind", in_kind), ("out_kind", out_kind)):
            if value not in BRANCH_KINDS:
                errors[name] = _("Choose from the list.")
    try:
        office = optional_id(office_id)
    except BadId:
        errors["office_id"] = _("Choose from the list.")
    if not errors:
        if kind == "schedule":
            before = number.destination if number.destination_kind == "schedule" else {}
            rule = {"days": day_numbers, "from": form["from"], "to": form["to"],
                    "destination": {"kind": in_kind, **payload_of(in_kind, in_target)}}
            payload: dict[str, Any] = {
                "rules": [rule, *(before.get("rules") or [])[1:]],  # the other rules stay as they were
                "holidays": before.get("holidays", []),
                "default": {"kind": out_kind, **payload_of(out_kind, out_target)},
            }
            if "holiday_destination" in before:
                payload["holiday_destination"] = before["holiday_destination"]
            if form["timezone"]:
                payload["timezone"] = form["timezone"]
        else:
            payload = payload_of(kind, target, timeout=timeout, skip_pin=skip_pin == "1")
        try:
            await service.update_number(session, user.tenant, number_id, pstn_schemas.NumberUpdate(
                office_id=office, destination_kind=kind, destination=payload))  # type: ignore[arg-type]
            await session.commit()
        except OrgError as exc:
            if exc.status == 404:
                raise
            await session.rollback()
            if exc.field == "office_id":
                errors["office_id"] = _("Choose from the list.")
            else:
                field = _field_of(exc.message, kind)
                errors[field] = _message(request, field, exc.message, form)
        else:
            return RedirectResponse(f"/numbers?saved={number_id}#number-{number_id}", status_code=303)
    number = await service.get_number(session, user.tenant, number_id)
    return await _edit_page(request, session, user.tenant, number, form, errors, status_code=422)

