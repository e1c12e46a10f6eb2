"""The call center's admin pages: queues (list, new, edit, delete: tenant admins) and agents (skills and
queue memberships, changed by tenant admins; live status with log-in / pause buttons, for supervisors too).

The same services as ``/api/v1/tenants/{id}/callcenter`` (:mod:`zvonok.callcenter.service`); live state
comes from the running :class:`~zvonok.callcenter.runtime.CallCenterRuntime` (``app.state.callcenter``):
without one (an API-only process) the agents page shows no live column and no buttons. Errors of a form
come back on the form with 422; another company's ids answer the 404 page.

A supervisor assigned to queues (:mod:`zvonok.callcenter.scope`; the queue's form assigns them) sees and
acts on those queues' agents only: another agent's buttons answer 403, audited as the REST API's refusals.

The agents page also lists the callers' callback requests waiting in the (supervisor's) queues, each with a
Cancel button (:func:`zvonok.callcenter.callbacks.cancel`); the employee's own page (``/me``) lists those of
the queues they may log in to, read-only (:func:`callback_rows`).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.callcenter import callbacks, schemas, service
from zvonok.callcenter.agents import AgentError
from zvonok.callcenter.center import CenterError
from zvonok.callcenter.queues import HoldSound, Strategy
from zvonok.callcenter.runtime import CallCenterRuntime
from zvonok.callcenter.scope import (
    OUTSIDE,
    Scope,
    agents_in_scope,
    covers_agent,
    queue_supervisors,
    scope_of,
    set_queue_supervisors,
    supervisor_candidates,
)
from zvonok.monitoring.service import audit_refusal
from zvonok.org.errors import OrgError
from zvonok.web.auth import SupervisorUser, TenantAdminUser, WebUser
from zvonok.web.forms import schema_errors
from zvonok.web.i18n import N_
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import ADMIN, SUPERVISE, NavItem, page_router

router = page_router()
NAV = [NavItem("/callcenter/queues", N_("Queues"), ADMIN, order=36),
       NavItem("/callcenter/agents", N_("Agents"), SUPERVISE, order=37)]
Session = Annotated[AsyncSession, Depends(get_session)]
STRATEGIES = (
    (Strategy.LONGEST_IDLE, N_("Longest idle agent")), (Strategy.RING_ALL, N_("Ring all")),
    (Strategy.ROUND_ROBIN, N_("Round robin")), (Strategy.FEWEST_CALLS, N_("Fewest calls")),
    (Strategy.LEAST_TALK_TIME, N_("Least talk time")), (Strategy.RANDOM, N_("Random")),
    (Strategy.SKILLS, N_("Most skilled")),
)
HOLD_SOUNDS = ((HoldSound.MUSIC, N_("Music on hold")), (HoldSound.RINGBACK, N_("Ringback tone")))
STATUSES = {"offline": N_("Offline"), "available": N_("Available"), "not_ready": N_("Not ready"),
            "ringing": N_("Ringing"), "on_call": N_("On a call"), "wrap_up": N_("Wrap-up")}
_FIELDS = ("name", "number", "strategy", "ring_timeout", "wrap_up", "max_wait", "service_level", "callback_key",
           "callback_attempts", "callback_retry", "callback_abroad", "hold_sound")
CALLBACK_KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "*", "#")
# a callback's last attempt (the queue log's CALLBACKFAILED reasons); others are shown as they are
CALLBACK_RESULTS = {"busy": N_("busy"), "no_answer": N_("no answer"), "failed": N_("failed"),
                    "agent_hung_up": N_("the agent hung up"), "cancelled": N_("cancelled")}


def runtime_of(request: Request) -> CallCenterRuntime | None:
    return getattr(request.app.state, "callcenter", None)


async def web_scope(session: AsyncSession, user: WebUser) -> Scope:
    """The queues this user's supervisor powers are limited to (None: the whole company)."""
    return await scope_of(session, user.tenant, role=user.role, employee_id=user.employee_id)


async def visible_agents(request: Request, session: AsyncSession, user: WebUser) -> set[int] | None:
    """The employees a limited supervisor may see and act on (None: everyone)."""
    scope = await web_scope(session, user)
    return None if scope is None else await agents_in_scope(session, user.tenant, scope, runtime_of(request))


async def check_agent(request: Request, session: AsyncSession, user: WebUser, employee_id: int | None,
                      agent: str = "") -> None:
    """403 (audited, as the REST API's) for an agent outside a limited supervisor's queues."""
    scope = await web_scope(session, user)
    if not await covers_agent(session, user.tenant, scope, employee_id, runtime_of(request)):
        await audit_refusal(session, user.tenant, f"account:{user.account_id}",
                            f"{request.method} {request.url.path}: {OUTSIDE}", agent=agent or f"employee:{employee_id}",
                            via="web")
        raise HTTPException(403, "this agent is outside the queues you supervise")


async def callback_rows(session: AsyncSession, tenant_id: int, *, queues: Collection[int] | None = None,
                        member: int | None = None) -> list[dict[str, Any]]:
    """The callback requests waiting in the company's queues (``queues``: only those; ``member``: the queues
    that employee may log in to), for ``callcenter/_callbacks.html``."""
    return [{"id": row.id, "number": row.number, "queue": queue.name, "queue_number": queue.number,
             "since": datetime.fromtimestamp(row.joined_at, UTC), "state": row.state, "attempts": row.attempts,
             "last_result": row.last_result, "result_label": CALLBACK_RESULTS.get(row.last_result or "")}
            for row, queue in await callbacks.waiting_in(session, tenant_id, queues=queues, member=member)]


# -- queues --------------------------------------------------------------------------------------------
async def _queues(request: Request, session: AsyncSession, tenant_id: int, *, form: dict[str, str] | None = None,
                  errors: dict[str, str] | None = None, status_code: int = 200) -> Response:
    rows, total = await service.list_queues(session, tenant_id, limit=500, offset=0)
    runtime = runtime_of(request)
    live = {q.id: runtime.snapshot(tenant_id, q.id) for q in rows} if runtime is not None else None
    return render(request, "callcenter/queues.html", {
        "rows": rows, "total": total, "strategies": STRATEGIES, "hold_sounds": HOLD_SOUNDS, "errors": errors or {}, "live": live,
        "callback_keys": CALLBACK_KEYS,
        "form": form or {"strategy": "longest_idle", "ring_timeout": "15", "wrap_up": "10", "service_level": "20",
                         "requirements": "", "callback_key": "", "callback_attempts": "3", "callback_retry": "60"},
    }, status_code=status_code)


def _form_values(name: str, number: str, strategy: str, ring_timeout: str, wrap_up: str, max_wait: str,
                 service_level: str, requirements: str, callback_key: str = "", callback_attempts: str = "3",
                 callback_retry: str = "60", callback_abroad: str = "", vip_numbers: str = "",
                 hold_sound: str = "music") -> dict[str, str]:
    return {"name": name, "number": number, "strategy": strategy, "ring_timeout": ring_timeout,
            "wrap_up": wrap_up, "max_wait": max_wait, "service_level": service_level, "requirements": requirements,
            "callback_key": callback_key, "callback_attempts": callback_attempts, "callback_retry": callback_retry,
            "callback_abroad": "on" if callback_abroad else "", "vip_numbers": vip_numbers,
            "hold_sound": hold_sound}


def parse_vip(text: str) -> list[dict[str, str]]:
    """``+74951234567:5, +7495*:2`` (one per line or comma; ``*`` at the end: a prefix) -> the schema's
    input; what is wrong in an item is the schema's to say (``vip_numbers``), so nothing is refused here."""
    rules: list[dict[str, str]] = []
    for item in re.split(r"[,\n]", text):
        if not item.strip():
            continue
        number, sep, priority = item.strip().rpartition(":")
        if not sep:
            number, priority = priority, ""
        number = number.strip()
        key = "prefix" if number.endswith("*") else "number"
        rules.append({key: number.removesuffix("*").strip(), "priority": priority.strip()})
    return rules


def vip_text(rules: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['prefix']}*:{r['priority']}" if r.get("prefix") else f"{r.get('number')}:{r['priority']}"
                     for r in rules)


def _queue_data(form: dict[str, str]) -> dict[str, Any]:
    """The schema's input from the form; ValueError when the requirements are not name:level pairs."""
    data: dict[str, Any] = {k: v for k, v in form.items() if k in _FIELDS}
    data["max_wait"] = form["max_wait"] or None
    data["callback_key"] = form.get("callback_key") or None
    data["callback_abroad"] = bool(form.get("callback_abroad"))
    data["requirements"] = [{"skill": k, "min_level": v} for k, v in parse_skills(form["requirements"]).items()]
    data["vip_numbers"] = parse_vip(form.get("vip_numbers", ""))
    return data


def _requirements_text(requirements: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['skill']}:{r['min_level']}" for r in requirements)


def _errors(request: Request, exc: PydanticValidationError) -> dict[str, str]:
    _ = gettext_for(request)
    return schema_errors(exc, {
        "name": _("Required: up to 100 characters."),
        "number": _("2 to 8 digits."),
        "ring_timeout": _("Seconds, from 5 to 300."),
        "wrap_up": _("Seconds, from 0 to 3600."),
        "max_wait": _("Seconds, from 10 to 86400, or empty for no limit."),
        "service_level": _("Seconds, from 1 to 3600."),
        "callback_key": _("One key: a digit, * or #."),
        "callback_attempts": _("From 1 to 10."),
        "callback_retry": _("Seconds, from 10 to 86400."),
        "requirements": _("Skills the queue needs as name:level pairs separated by commas, levels 1 to 10."),
        "vip_numbers": _("Numbers in international form (+74951234567) or extensions, a * at the end for a "
                         "prefix, each with :priority from 1 to 100, separated by commas; each number once."),
    }, _("Invalid value."))


def _requirements_error(request: Request) -> dict[str, str]:
    _ = gettext_for(request)
    return {"requirements": _("Skills the queue needs as name:level pairs separated by commas, levels 1 to 10.")}


Field = Annotated[str, Form(max_length=200)]


@router.get("/callcenter/queues")
async def queues(request: Request, user: TenantAdminUser, session: Session) -> Response:
    return await _queues(request, session, user.tenant)


@router.post("/callcenter/queues")
async def create_queue(request: Request, user: TenantAdminUser, session: Session, name: Field = "",
                       number: Field = "", strategy: Field = "longest_idle", ring_timeout: Field = "15",
                       wrap_up: Field = "10", max_wait: Field = "", service_level: Field = "20",
                       requirements: Annotated[str, Form(max_length=2000)] = "", callback_key: Field = "",
                       callback_attempts: Field = "3", callback_retry: Field = "60",
                       callback_abroad: Field = "", vip_numbers: Annotated[str, Form(max_length=20000)] = "",
                       hold_sound: Field = "music",
                       ) -> Response:
    form = _form_values(name, number, strategy, ring_timeout, wrap_up, max_wait, service_level, requirements,
                        callback_key, callback_attempts, callback_retry, callback_abroad, vip_numbers, hold_sound)
    try:
        data = schemas.QueueCreate(**_queue_data(form))
    except PydanticValidationError as exc:
        return await _queues(request, session, user.tenant, form=form, errors=_errors(request, exc), status_code=422)
    except ValueError:
        return await _queues(request, session, user.tenant, form=form, errors=_requirements_error(request),
                             status_code=422)
    try:
        queue = await service.create_queue(session, user.tenant, data)
    except OrgError as exc:
        await session.rollback()
        return await _queues(request, session, user.tenant, form=form, errors={exc.field or "name": exc.message},
                             status_code=422)
    await session.commit()
    return RedirectResponse(f"/callcenter/queues#queue-{queue.id}", status_code=303)


async def _edit(request: Request, session: AsyncSession, tenant_id: int, queue_id: int, *,
                form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                status_code: int = 200) -> Response:
    queue = await service.get_queue(session, tenant_id, queue_id)
    if form is None:
        form = {k: "" if getattr(queue, k) is None else str(getattr(queue, k)) for k in _FIELDS}
        form["callback_abroad"] = "on" if queue.callback_abroad else ""
        form["requirements"] = _requirements_text(queue.requirements)
        form["vip_numbers"] = vip_text(queue.vip_numbers or [])
    members = set(await service.queue_members(session, tenant_id, queue_id))
    names = await service.employee_names(session, tenant_id)
    candidates = await supervisor_candidates(session, tenant_id)
    return render(request, "callcenter/queue.html", {
        "queue": queue, "form": form, "errors": errors or {}, "strategies": STRATEGIES, "hold_sounds": HOLD_SOUNDS, "callback_keys": CALLBACK_KEYS,
        "employees": sorted(names.items(), key=lambda kv: kv[1]), "members": members,
        "supervisor_choices": sorted(((e, n) for e, n in names.items() if e in candidates), key=lambda kv: kv[1]),
        "supervisors": set(await queue_supervisors(session, tenant_id, queue_id)),
    }, status_code=status_code)


@router.get("/callcenter/queues/{queue_id}")
async def edit_queue(request: Request, queue_id: int, user: TenantAdminUser, session: Session) -> Response:
    return await _edit(request, session, user.tenant, queue_id)


@router.post("/callcenter/queues/{queue_id}")
async def update_queue(request: Request, queue_id: int, user: TenantAdminUser, session: Session, name: Field = "",
                       number: Field = "", strategy: Field = "longest_idle", ring_timeout: Field = "15",
                       wrap_up: Field = "10", max_wait: Field = "", service_level: Field = "20",
                       requirements: Annotated[str, Form(max_length=2000)] = "", callback_key: Field = "",
                       callback_attempts: Field = "3", callback_retry: Field = "60",
                       callback_abroad: Field = "", vip_numbers: Annotated[str, Form(max_length=20000)] = "",
                       hold_sound: Field = "music",
                       ) -> Response:
    await service.get_queue(session, user.tenant, queue_id)
    form = _form_values(name, number, strategy, ring_timeout, wrap_up, max_wait, service_level, requirements,
                        callback_key, callback_attempts, callback_retry, callback_abroad, vip_numbers, hold_sound)
    try:
        data = schemas.QueueUpdate(**_queue_data(form))
    except PydanticValidationError as exc:
        return await _edit(request, session, user.tenant, queue_id, form=form, errors=_errors(request, exc),
                           status_code=422)
    except ValueError:
        return await _edit(request, session, user.tenant, queue_id, form=form, errors=_requirements_error(request),
                           status_code=422)
    try:
        await service.update_queue(session, user.tenant, queue_id, data)
    except OrgError as exc:
        await session.rollback()
        return await _edit(request, session, user.tenant, queue_id, form=form,
                           errors={exc.field or "name": exc.message}, status_code=422)
    await session.commit()
    return RedirectResponse(f"/callcenter/queues#queue-{queue_id}", status_code=303)


@router.post("/callcenter/queues/{queue_id}/members")
async def queue_members(request: Request, queue_id: int, user: TenantAdminUser, session: Session) -> Response:
    form = await request.form()
    ids = sorted({int(v) for v in form.getlist("employee_id") if isinstance(v, str) and v.isdigit()})
    await service.set_queue_members(session, user.tenant, queue_id, ids)  # another company's: 404 / 422
    await session.commit()
    return RedirectResponse(f"/callcenter/queues/{queue_id}", status_code=303)


@router.post("/callcenter/queues/{queue_id}/supervisors")
async def queue_supervisors_form(request: Request, queue_id: int, user: TenantAdminUser, session: Session) -> Response:
    form = await request.form()
    ids = sorted({int(v) for v in form.getlist("employee_id") if isinstance(v, str) and v.isdigit()})
    await service.get_queue(session, user.tenant, queue_id)  # another company's: 404
    await set_queue_supervisors(session, user.tenant, queue_id, ids)  # not a supervisor: 422
    await session.commit()
    return RedirectResponse(f"/callcenter/queues/{queue_id}", status_code=303)


@router.post("/callcenter/queues/{queue_id}/delete")
async def delete_queue(request: Request, queue_id: int, user: TenantAdminUser, session: Session) -> Response:
    await service.delete_queue(session, user.tenant, queue_id)
    await session.commit()
    return RedirectResponse("/callcenter/queues", status_code=303)


# -- agents --------------------------------------------------------------------------------------------
def _skills_text(skills: dict[str, int]) -> str:
    return ", ".join(f"{k}:{v}" for k, v in skills.items())


def parse_skills(text: str) -> dict[str, int]:
    """``"english:7, sales:3"`` -> ``{"english": 7, "sales": 3}``; ValueError when malformed."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        skill, sep, level = part.rpartition(":")
        if not sep or not skill.strip() or not level.strip().isdigit():
            raise ValueError(part)
        out[skill.strip()] = int(level)
    return out


async def _agents(request: Request, session: AsyncSession, tenant_id: int, *, errors: dict[int, str] | None = None,
                  status_code: int = 200, seen: set[int] | None = None, scope: Scope = None,
                  reason_errors: dict[int, str] | None = None, typed_codes: dict[int, str] | None = None,
                  new_reason: dict[str, str] | None = None) -> Response:
    """``reason_errors`` / ``typed_codes``: a reason's row refused (its message, the code as typed);
    ``new_reason``: the new-reason form as typed (refused: its message is ``errors[0]``)."""
    names = await service.employee_names(session, tenant_id)
    if seen is not None:  # a supervisor limited to some queues: their agents only
        names = {k: v for k, v in names.items() if k in seen}
    queues, _total = await service.list_queues(session, tenant_id, limit=500, offset=0)
    runtime = runtime_of(request)
    skills = await service.tenant_skills(session, tenant_id)
    memberships = await service.tenant_memberships(session, tenant_id)
    rows = []
    for employee_id, full_name in sorted(names.items(), key=lambda kv: kv[1]):
        agent = runtime.agent(tenant_id, employee_id) if runtime is not None else None
        member_of = set(memberships.get(employee_id, ()))
        rows.append({
            "id": employee_id, "name": full_name, "skills": _skills_text(skills.get(employee_id, {})),
            "queues": [q for q in queues if q.id in member_of],
            "status": agent.status.value if agent is not None else "offline",
            "reason": agent.reason if agent is not None else None,
            "logged_in": sorted(agent.queues) if agent is not None else [],
        })
    reasons = await service.list_reasons(session, tenant_id)
    return render(request, "callcenter/agents.html", {
        "rows": rows, "reasons": reasons, "statuses": STATUSES, "live": runtime is not None, "errors": errors or {},
        "reason_errors": reason_errors or {}, "typed_codes": typed_codes or {}, "new_reason": new_reason or {},
        "callbacks": await callback_rows(session, tenant_id, queues=scope),
    }, status_code=status_code)


@router.get("/callcenter/agents")
async def agents(request: Request, user: SupervisorUser, session: Session) -> Response:
    return await _agents(request, session, user.tenant, seen=await visible_agents(request, session, user),
                         scope=await web_scope(session, user))


@router.post("/callcenter/callbacks/{callback_id}/cancel")
async def cancel_callback(request: Request, callback_id: int, user: SupervisorUser, session: Session) -> Response:
    """A supervisor cancels a caller's callback request (another company's: the 404 page; another queue's: 403)."""
    _ = gettext_for(request)
    row = await callbacks.get(session, user.tenant, callback_id)
    scope = await web_scope(session, user)
    if scope is not None and row.queue_id not in scope:
        await audit_refusal(session, user.tenant, f"account:{user.account_id}",
                            f"{request.method} {request.url.path}: {OUTSIDE}", via="web")
        raise HTTPException(403, "this queue is outside the queues you supervise")
    runtime = runtime_of(request)
    message = None
    if runtime is None:
        message = _("This action is not available.")
    else:
        try:
            await callbacks.cancel(session, runtime, user.tenant, callback_id)
        except OrgError:
            message = _("This callback request is no longer waiting: it is being called now or is over.")
    if message is not None:
        await session.rollback()
        return await _agents(request, session, user.tenant, errors={-1: message}, status_code=409,
                             seen=await visible_agents(request, session, user), scope=scope)
    await session.commit()
    return RedirectResponse("/callcenter/agents#callbacks", status_code=303)


@router.post("/callcenter/agents/{employee_id}/skills")
async def agent_skills(request: Request, employee_id: int, user: TenantAdminUser, session: Session,
                       skills: Annotated[str, Form(max_length=2000)] = "") -> Response:
    _ = gettext_for(request)
    await service.get_employee(session, user.tenant, employee_id)
    try:
        data = schemas.SkillsIn(skills=parse_skills(skills))
    except (ValueError, PydanticValidationError):
        return await _agents(request, session, user.tenant, status_code=422, errors={
            employee_id: _("Write skills as name:level pairs separated by commas, levels 1 to 10.")})
    await service.set_skills(session, user.tenant, employee_id, data.skills)
    await session.commit()
    return RedirectResponse(f"/callcenter/agents#agent-{employee_id}", status_code=303)


REASON_ERRORS = {"name": N_("A reason needs a new name of up to 40 characters."),
                 "code": N_("A code is 1 to 4 digits that no other reason has: the agent dials *47 and the code.")}


def _reason_error(request: Request, exc: PydanticValidationError | OrgError) -> str:
    """The message of a reason's form: about its name or its code (malformed or another reason's)."""
    if isinstance(exc, PydanticValidationError):
        field = next(iter(schema_errors(exc, {}, "")), "name")
    else:
        field = exc.field or "name"
    _ = gettext_for(request)
    return str(_(REASON_ERRORS.get(field, REASON_ERRORS["name"])))


@router.post("/callcenter/reasons")
async def add_reason(request: Request, user: TenantAdminUser, session: Session,
                     name: Annotated[str, Form(max_length=200)] = "",
                     code: Annotated[str, Form(max_length=20)] = "") -> Response:
    try:
        data = schemas.ReasonIn(name=name, code=code.strip() or None)
        await service.create_reason(session, user.tenant, data.name, code=data.code)
    except (PydanticValidationError, OrgError) as exc:
        await session.rollback()
        return await _agents(request, session, user.tenant, status_code=422, errors={0: _reason_error(request, exc)},
                             new_reason={"name": name, "code": code})
    await session.commit()
    return RedirectResponse("/callcenter/agents#reasons", status_code=303)


@router.post("/callcenter/reasons/{reason_id}")
async def set_reason_code(request: Request, reason_id: int, user: TenantAdminUser, session: Session,
                          code: Annotated[str, Form(max_length=20)] = "") -> Response:
    """A reason's ``*47`` code set, changed or (empty) cleared; another company's reason: the 404 page."""
    await service.get_reason(session, user.tenant, reason_id)
    try:
        data = schemas.ReasonUpdate(code=code.strip() or None)
        await service.update_reason(session, user.tenant, reason_id, data)
    except (PydanticValidationError, OrgError) as exc:
        await session.rollback()
        return await _agents(request, session, user.tenant, status_code=422,
                             reason_errors={reason_id: _reason_error(request, exc)}, typed_codes={reason_id: code})
    await session.commit()
    return RedirectResponse(f"/callcenter/agents#reason-{reason_id}", status_code=303)


@router.post("/callcenter/agents/{employee_id}/{action}")
async def agent_action(request: Request, employee_id: int, action: str, user: SupervisorUser, session: Session,
                       reason: Annotated[str, Form(max_length=200)] = "") -> Response:
    _ = gettext_for(request)
    await service.get_employee(session, user.tenant, employee_id)
    await check_agent(request, session, user, employee_id)
    runtime = runtime_of(request)
    message = None
    try:
        if runtime is None or action not in ("login", "logout", "pause", "unpause"):
            message = _("This action is not available.")
        elif action == "login":
            queue_ids = await service.check_login_queues(session, user.tenant, employee_id, None)
            runtime.login(user.tenant, employee_id, queue_ids, await service.skills(session, user.tenant, employee_id))
        elif runtime.agent(user.tenant, employee_id) is None:
            message = _("The agent is not logged in.")
        elif action == "logout":
            runtime.logout(employee_id, None)
        elif action == "pause":
            await service.check_reason(session, user.tenant, reason)
            runtime.pause(employee_id, reason)
        else:
            runtime.unpause(employee_id)
    except OrgError as exc:
        message = exc.message
    except (AgentError, CenterError) as exc:
        message = str(exc)
    if message is not None:
        return await _agents(request, session, user.tenant, errors={employee_id: message}, status_code=422,
                             seen=await visible_agents(request, session, user))
    return RedirectResponse(f"/callcenter/agents#agent-{employee_id}", status_code=303)
