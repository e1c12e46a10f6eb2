"""Calls of a company: the history (filters, pages, CSV export, a call's details and recording) and the
calls in progress, live.

Who sees what is the CDR service's rule (:class:`zvonok.cdr.service.Viewer`), applied on the server: a
tenant admin sees every call of the tenant, an employee only the calls where they were caller or callee
(another call's page or recording is a 404, as another tenant's is). The CSV is the REST API's writer
(:func:`zvonok.cdr.http.csv_response`, formulas defused), over the same filters as the page.

The recording is served by a page route (the session cookie is the credential an ``<audio>`` element
sends) as a :class:`~starlette.responses.FileResponse`, which answers ``Range`` requests with 206: a
browser seeks in a recording by asking for the bytes from there on.

Live calls (a supervisor assigned to queues: their agents' calls and their own only): the first list is the running call engine's (``app.state.active_calls``, set by
``zvonok.server``; absent when the app runs without telephony, e.g. in API tests: then nothing is in
progress). The page opens the tenant's event websocket (``static/app.js``); htmx reloads the list when a
call starts, is answered, held, resumed or ends, and after a reconnect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from time import time as time_now
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, HTTPException, Query, Request
from fastapi import Form as FormField
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_db, get_session, get_settings
from zvonok.cdr import service
from zvonok.cdr.http import csv_response
from zvonok.config import Settings
from zvonok.org.models import Extension
from zvonok.storage.db import Database
from zvonok.telephony.call import CallSnapshot
from zvonok.telephony.events import Direction, Disposition
from zvonok.telephony.monitor import SPY_CODE, Monitoring
from zvonok.telephony.monitor_matrix import MonitorMode
from zvonok.web.auth import SupervisorUser, TenantUser, WebUser
from zvonok.web.i18n import N_
from zvonok.web.pages.callcenter import check_agent, visible_agents
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import TENANT, NavItem, page_router

router = page_router()
NAV = [NavItem("/calls", N_("Calls"), TENANT, order=12)]
PAGE = 50
Session = Annotated[AsyncSession, Depends(get_session)]
Text = Annotated[str, Query(max_length=100)]

DIRECTIONS = {Direction.INTERNAL.value: N_("Internal"), Direction.INBOUND.value: N_("Inbound"),
              Direction.OUTBOUND.value: N_("Outbound")}
DISPOSITIONS = {Disposition.ANSWERED.value: N_("Answered"), Disposition.BUSY.value: N_("Busy"),
                Disposition.NO_ANSWER.value: N_("No answer"), Disposition.FAILED.value: N_("Failed"),
                Disposition.CANCELLED.value: N_("Cancelled"), Disposition.INTERRUPTED.value: N_("Interrupted"),
                Disposition.VOICEMAIL.value: N_("Voicemail")}
LIVE_STATES = {"ringing": N_("Ringing"), "answered": N_("Talking"), "on_hold": N_("On hold")}
# a supervisor's modes on a call (telephony/monitor.py), as the buttons say them
MONITOR_MODES = {"listen": N_("Listen"), "whisper": N_("Whisper"), "barge": N_("Barge in")}


def viewer_of(user: WebUser) -> service.Viewer:
    return service.Viewer.admin() if user.is_tenant_admin else service.Viewer.employee(user.employee_id)


def tenant_zone(user: WebUser) -> ZoneInfo:
    try:
        return ZoneInfo(user.tenant_timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@dataclass
class Filters:
    """The history's filter form as typed (strings), what it means, and what is wrong with it."""

    values: dict[str, str]
    flt: service.CdrFilter = field(default_factory=service.CdrFilter)
    errors: dict[str, str] = field(default_factory=dict)

    def query(self, **extra: Any) -> str:
        """The filters (and ``extra``) as a query string for links: pages, export."""
        return urlencode({**{k: v for k, v in self.values.items() if v}, **extra})


def _date(value: str) -> date | None:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return day if 2000 <= day.year <= 2100 else None


def _amount(value: str) -> Decimal | None:
    try:
        amount = Decimal(value.strip().replace(",", "."))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and abs(amount) < 10**8 else None


def parse_filters(request: Request, user: WebUser, values: dict[str, str]) -> Filters:
    """Check the form; dates are days in the tenant's zone, ``to`` included."""
    _ = gettext_for(request)
    form = Filters({k: v.strip() for k, v in values.items()})
    v, errors, zone = form.values, form.errors, tenant_zone(user)
    since = until = None
    cost_min = cost_max = None
    if v["from"]:
        day = _date(v["from"])
        if day is None:
            errors["from"] = _("A date like 2026-01-31.")
        else:
            since = datetime.combine(day, time(0), tzinfo=zone)
    if v["to"]:
        day = _date(v["to"])
        if day is None:
            errors["to"] = _("A date like 2026-01-31.")
        else:
            until = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    if since is not None and until is not None and until <= since:
        errors["to"] = _("The end is before the start.")
    if v["direction"] and v["direction"] not in DIRECTIONS:
        errors["direction"] = _("Invalid value.")
    if v["disposition"] and v["disposition"] not in DISPOSITIONS:
        errors["disposition"] = _("Invalid value.")
    for key in ("cost_min", "cost_max"):
        if v[key]:
            amount = _amount(v[key])
            if amount is None:
                errors[key] = _("An amount like 12.50.")
            elif key == "cost_min":
                cost_min = amount
            else:
                cost_max = amount
    if cost_min is not None and cost_max is not None and cost_max < cost_min:
        errors["cost_max"] = _("The maximum is below the minimum.")
    if not errors:
        form.flt = service.CdrFilter(
            since=since, until=until, search=v["q"] or None, direction=v["direction"] or None,
            disposition=v["disposition"] or None, cost_min=cost_min, cost_max=cost_max)
    return form


async def filters(request: Request, user: TenantUser, q: Text = "",
                  from_: Annotated[str, Query(alias="from", max_length=20)] = "",
                  to: Annotated[str, Query(max_length=20)] = "",
                  direction: Annotated[str, Query(max_length=16)] = "",
                  disposition: Annotated[str, Query(max_length=16)] = "",
                  cost_min: Annotated[str, Query(max_length=20)] = "",
                  cost_max: Annotated[str, Query(max_length=20)] = "") -> Filters:
    return parse_filters(request, user, {"q": q, "from": from_, "to": to, "direction": direction,
                                         "disposition": disposition, "cost_min": cost_min, "cost_max": cost_max})


Form = Annotated[Filters, Depends(filters)]


CHOICES = {"directions": DIRECTIONS, "dispositions": DISPOSITIONS}


@router.get("/calls")
async def calls(request: Request, user: TenantUser, session: Session, form: Form,
                page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    rows: list[Any] = []
    total = 0
    if not form.errors:
        rows, total = await service.list_cdrs(session, user.tenant, form.flt, viewer_of(user), limit=PAGE,
                                              offset=(page - 1) * PAGE)
    return render(request, "calls/index.html", {
        "rows": rows, "total": total, "page": page, "pages": max(1, -(-total // PAGE)), "form": form,
        **CHOICES}, status_code=422 if form.errors else 200)


@router.get("/calls.csv")
async def calls_csv(request: Request, user: TenantUser, form: Form,
                    db: Annotated[Database, Depends(get_db)]) -> Response:
    """The filtered history (every page) as CSV: the REST API's columns and writer."""
    if form.errors:
        raise HTTPException(422, "invalid filters")
    return csv_response(db, user.tenant, form.flt, viewer_of(user), "calls.csv")


# --- calls in progress ---------------------------------------------------------------------------
def live_calls(request: Request, user: WebUser, seen: set[int] | None = None) -> list[CallSnapshot]:
    """The calls in progress this user may see (an employee: those they are a party of; a supervisor or
    admin: all; a supervisor limited to some queues, ``seen``: their agents' calls and their own)."""
    accessor = getattr(request.app.state, "active_calls", None)
    if accessor is None:  # no call engine in this app
        return []
    found: list[CallSnapshot] = accessor(user.tenant)
    if user.is_supervisor and seen is None:  # whom to listen to: every call of the company
        return found
    if seen is not None:
        mine = seen | ({user.employee_id} if user.employee_id is not None else set())
        return [snap for snap in found if any(snap.involves(e) for e in mine)]
    if user.employee_id is None:
        return []
    return [snap for snap in found if snap.involves(user.employee_id)]


def _monitoring(request: Request) -> Monitoring | None:
    monitoring: Monitoring | None = getattr(request.app.state, "monitoring", None)
    return monitoring


async def _live(request: Request, session: AsyncSession, user: WebUser) -> dict[str, Any]:
    monitoring = _monitoring(request) if user.is_supervisor else None
    monitors = {s.call_id: s for s in monitoring.of_tenant(user.tenant)} if monitoring is not None else {}
    seen = await visible_agents(request, session, user) if user.is_supervisor else None
    return {"live": live_calls(request, user, seen), "states": LIVE_STATES, "directions": DIRECTIONS,
            "when": lambda epoch: datetime.fromtimestamp(epoch, UTC), "now": round(time_now(), 3),
            "supervise": monitoring is not None, "monitors": monitors, "spy_code": SPY_CODE,
            "modes": MONITOR_MODES}


@router.get("/calls/live")
async def calls_live(request: Request, user: TenantUser, session: Session) -> Response:
    return render(request, "calls/live.html", await _live(request, session, user))


@router.get("/calls/live/rows")
async def calls_live_rows(request: Request, user: TenantUser, session: Session) -> Response:
    """The list alone (htmx: reloaded on a call's events and after a reconnect)."""
    return render(request, "calls/_live_rows.html", await _live(request, session, user))


@router.post("/calls/live/monitor/{session_id}")
async def calls_live_monitor(request: Request, session_id: str, user: SupervisorUser, session: Session,
                             mode: Annotated[str, FormField(max_length=16)] = "") -> Response:
    """A supervisor's listen / whisper / barge buttons (the session began with *33<ext> on their phone)."""
    monitoring = _monitoring(request)
    live = monitoring.session(user.tenant, session_id) if monitoring is not None else None
    if monitoring is None or live is None:
        raise HTTPException(404, "no such monitoring session")
    owner = await session.scalar(select(Extension.employee_id).where(Extension.tenant_id == user.tenant,
                                                                     Extension.number == live.session.agent))
    await check_agent(request, session, user, owner, agent=live.session.agent)  # another queue's: 403, audited
    if mode not in MONITOR_MODES:
        raise HTTPException(422, "mode must be listen, whisper or barge")
    monitoring.switch(live, MonitorMode(mode), via="web", by=f"account:{user.account_id}")
    return RedirectResponse("/calls/live", status_code=303)


# --- one call --------------------------------------------------------------------------------------
@router.get("/calls/{cdr_id}")
async def call_detail(request: Request, cdr_id: int, user: TenantUser, session: Session,
                      settings: Annotated[Settings, Depends(get_settings)]) -> Response:
    cdr = await service.get_cdr(session, user.tenant, cdr_id, viewer_of(user))  # not theirs: 404
    has_recording = service.recording_file(settings.data_dir, cdr.recording_path) is not None
    return render(request, "calls/detail.html", {"cdr": cdr, "has_recording": has_recording, **CHOICES})


@router.get("/calls/{cdr_id}/recording")
async def call_recording(cdr_id: int, user: TenantUser, session: Session,
                         settings: Annotated[Settings, Depends(get_settings)]) -> Response:
    """The WAV file, with byte ranges (206) so that the player can seek."""
    cdr = await service.get_cdr(session, user.tenant, cdr_id, viewer_of(user), legs=False)
    path = service.recording_file(settings.data_dir, cdr.recording_path)
    if path is None:
        raise HTTPException(404, "no recording")
    return FileResponse(path, media_type="audio/wav", filename=f"call-{cdr.id}.wav",
                        content_disposition_type="inline", headers={"Cache-Control": "private, max-age=300"})
