"""Thin REST routes of the call center under ``/api/v1/tenants/{tenant_id}/callcenter``.

* ``queues`` (CRUD), ``queues/{id}/members`` (GET, PUT), ``agents/{employee_id}/skills`` (GET, PUT) and
  ``reasons`` (the not-ready reasons: GET for anyone of the tenant, POST, PATCH, DELETE; a reason's optional
  ``code``, 1-4 digits unique in the tenant, is what an agent dials after ``*47`` to pause with it): changes by
  the tenant's admin; the queues, members and skills are read by its supervisors too.
* ``agents/{employee_id}`` (GET: the live state) and ``agents/{employee_id}/login`` / ``logout`` /
  ``pause`` / ``unpause`` (POST): the employee for themself, a supervisor (role ``supervisor``) or tenant
  admin for anyone of the tenant.
* ``queues/{id}/supervisors`` (GET, PUT ``{"employee_ids": [...]}``): the supervisors assigned to the queue
  (changed by the tenant's admin; each must have an active supervisor account).
* ``live`` and ``wallboard`` (GET): every queue's line and agent counts and every logged-in agent, today's
  KPIs (supervisors and admins).

A supervisor assigned to queues (:mod:`.scope`) sees and acts on those queues and their agents only: the
lists, live view, wallboard and reports leave the others out, and asking for another queue or agent
answers 403 with a message, audited in the monitoring audit (``refused``). A supervisor assigned to no
queue has the whole tenant, as its admins do.
* ``queues/{id}/callbacks`` (GET; ``finished=true`` adds the finished ones) and ``callbacks/{id}`` (DELETE:
  cancel a waiting request, 409 once finished or while its customer is being called): the callers'
  callback requests, kept across restarts (:mod:`.callbacks`); supervisors and admins.
* ``reports/queues`` and ``reports/agents`` (GET, ``from``/``to`` epoch seconds, ``group`` 15min | hour |
  day in the tenant's time zone, ``format`` json | csv): supervisors and admins.

Live state comes from ``app.state.callcenter`` (:class:`~zvonok.callcenter.runtime.CallCenterRuntime`,
set by the composition root); an API-only process answers 503 for it. Another tenant's queues and
employees answer 404 like missing ones; the center refusing a state change (pausing an agent who is not
logged in) answers 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import Principal, TenantAdmin, TenantReader, TenantSupervisor
from zvonok.api.deps import Paging, get_session, paging
from zvonok.monitoring.service import audit_refusal
from zvonok.org.models import Employee
from zvonok.org.schemas import Page

from . import callbacks, reports, service, wallboard
from . import schemas as s
from .agents import Agent, AgentError
from .center import CenterError
from .runtime import CallCenterRuntime
from .scope import (
    OUTSIDE,
    Scope,
    agents_in_scope,
    covers_agent,
    queue_supervisors,
    scope_of,
    set_queue_supervisors,
)

router = APIRouter(prefix="/api/v1/tenants/{tenant_id}/callcenter", tags=["callcenter"])
SETTLE_WAIT = 5.0  # seconds a login waits at most for the configuration changes received before it
Session = Annotated[AsyncSession, Depends(get_session)]
PageParams = Annotated[Paging, Depends(paging)]
MAX_REPORT_SPAN = 366 * 86400


# -- a supervisor's queues -----------------------------------------------------------------------------
def who_of(principal: Principal) -> str:
    """How the audit names an API caller."""
    return f"account:{principal.account_id}" if principal.account_id is not None else f"token:{principal.token_id}"


async def scope_for(session: AsyncSession, tenant_id: int, who: Principal) -> Scope:
    return await scope_of(session, tenant_id, role=who.role, employee_id=who.employee_id,
                          account_id=who.owner_id if who.token_id is not None else None)


async def refuse(session: AsyncSession, request: Request, tenant_id: int, who: Principal, what: str,
                 agent: str = "") -> HTTPException:
    """Audit a supervisor's attempt outside their queues; the 403 to raise."""
    await audit_refusal(session, tenant_id, who_of(who), f"{request.method} {request.url.path}: {OUTSIDE}",
                        agent=agent)
    return HTTPException(403, f"{what} is outside the queues you supervise")


async def _check_queue(session: AsyncSession, request: Request, tenant_id: int, queue_id: int,
                       who: Principal) -> None:
    await service.get_queue(session, tenant_id, queue_id)  # another tenant's or none: 404 first
    scope = await scope_for(session, tenant_id, who)
    if scope is not None and queue_id not in scope:
        raise await refuse(session, request, tenant_id, who, f"queue {queue_id}")


async def _check_agent(session: AsyncSession, request: Request, tenant_id: int, employee_id: int,
                       who: Principal) -> None:
    scope = await scope_for(session, tenant_id, who)
    runtime: CallCenterRuntime | None = getattr(request.app.state, "callcenter", None)
    if not await covers_agent(session, tenant_id, scope, employee_id, runtime):
        raise await refuse(session, request, tenant_id, who, f"agent {employee_id}", agent=f"employee:{employee_id}")


# -- queues --------------------------------------------------------------------------------------------
@router.post("/queues", response_model=s.QueueOut, status_code=201)
async def create_queue(tenant_id: int, body: s.QueueCreate, _: TenantAdmin, session: Session) -> object:
    queue = await service.create_queue(session, tenant_id, body)
    await session.commit()
    return service.queue_out(queue)


@router.get("/queues", response_model=Page[s.QueueOut])
async def list_queues(tenant_id: int, who: TenantSupervisor, session: Session, p: PageParams) -> object:
    rows, total = await service.list_queues(session, tenant_id, limit=p.limit, offset=p.offset,
                                            only=await scope_for(session, tenant_id, who))
    return {"items": [service.queue_out(q) for q in rows], "total": total, "limit": p.limit, "offset": p.offset}


@router.get("/queues/{queue_id}", response_model=s.QueueOut)
async def get_queue(tenant_id: int, queue_id: int, who: TenantSupervisor, session: Session,
                    request: Request) -> object:
    await _check_queue(session, request, tenant_id, queue_id, who)
    return service.queue_out(await service.get_queue(session, tenant_id, queue_id))


@router.patch("/queues/{queue_id}", response_model=s.QueueOut)
async def update_queue(tenant_id: int, queue_id: int, body: s.QueueUpdate, _: TenantAdmin, session: Session) -> object:
    queue = await service.update_queue(session, tenant_id, queue_id, body)
    await session.commit()
    return service.queue_out(queue)


@router.delete("/queues/{queue_id}", status_code=204)
async def delete_queue(tenant_id: int, queue_id: int, _: TenantAdmin, session: Session) -> Response:
    await service.delete_queue(session, tenant_id, queue_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/queues/{queue_id}/members", response_model=s.MembersOut)
async def get_members(tenant_id: int, queue_id: int, who: TenantSupervisor, session: Session,
                      request: Request) -> object:
    await _check_queue(session, request, tenant_id, queue_id, who)
    return s.MembersOut(queue_id=queue_id, employee_ids=await service.queue_members(session, tenant_id, queue_id))


@router.put("/queues/{queue_id}/members", response_model=s.MembersOut)
async def put_members(tenant_id: int, queue_id: int, body: s.MembersIn, _: TenantAdmin, session: Session) -> object:
    ids = await service.set_queue_members(session, tenant_id, queue_id, body.employee_ids)
    await session.commit()
    return s.MembersOut(queue_id=queue_id, employee_ids=ids)


@router.get("/queues/{queue_id}/supervisors", response_model=s.MembersOut)
async def get_queue_supervisors(tenant_id: int, queue_id: int, who: TenantSupervisor, session: Session,
                                request: Request) -> object:
    """The supervisors assigned to the queue (none: only those with the whole tenant supervise it)."""
    await _check_queue(session, request, tenant_id, queue_id, who)
    return s.MembersOut(queue_id=queue_id, employee_ids=await queue_supervisors(session, tenant_id, queue_id))


@router.put("/queues/{queue_id}/supervisors", response_model=s.MembersOut)
async def put_queue_supervisors(tenant_id: int, queue_id: int, body: s.MembersIn, _: TenantAdmin,
                                session: Session) -> object:
    await service.get_queue(session, tenant_id, queue_id)
    ids = await set_queue_supervisors(session, tenant_id, queue_id, body.employee_ids)
    await session.commit()
    return s.MembersOut(queue_id=queue_id, employee_ids=ids)


# -- skills and reasons --------------------------------------------------------------------------------
@router.get("/agents/{employee_id}/skills", response_model=s.SkillsOut)
async def get_skills(tenant_id: int, employee_id: int, who: TenantSupervisor, session: Session,
                     request: Request) -> object:
    await service.get_employee(session, tenant_id, employee_id)
    await _check_agent(session, request, tenant_id, employee_id, who)
    return s.SkillsOut(employee_id=employee_id, skills=await service.skills(session, tenant_id, employee_id),
                       queue_ids=await service.member_queues(session, tenant_id, employee_id))


@router.put("/agents/{employee_id}/skills", response_model=s.SkillsOut)
async def put_skills(tenant_id: int, employee_id: int, body: s.SkillsIn, _: TenantAdmin, session: Session) -> object:
    values = await service.set_skills(session, tenant_id, employee_id, body.skills)
    await session.commit()
    return s.SkillsOut(employee_id=employee_id, skills=values,
                       queue_ids=await service.member_queues(session, tenant_id, employee_id))


@router.get("/reasons", response_model=list[s.ReasonOut])
async def list_reasons(tenant_id: int, _: TenantReader, session: Session) -> object:
    return await service.list_reasons(session, tenant_id)


@router.post("/reasons", response_model=s.ReasonOut, status_code=201)
async def create_reason(tenant_id: int, body: s.ReasonIn, _: TenantAdmin, session: Session) -> object:
    reason = await service.create_reason(session, tenant_id, body.name, code=body.code)
    await session.commit()
    return reason


@router.patch("/reasons/{reason_id}", response_model=s.ReasonOut)
async def update_reason(tenant_id: int, reason_id: int, body: s.ReasonUpdate, _: TenantAdmin,
                        session: Session) -> object:
    reason = await service.update_reason(session, tenant_id, reason_id, body)
    await session.commit()
    return reason


@router.delete("/reasons/{reason_id}", status_code=204)
async def delete_reason(tenant_id: int, reason_id: int, _: TenantAdmin, session: Session) -> Response:
    await service.delete_reason(session, tenant_id, reason_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- agent state ---------------------------------------------------------------------------------------
def runtime_of(request: Request) -> CallCenterRuntime:
    runtime: CallCenterRuntime | None = getattr(request.app.state, "callcenter", None)
    if runtime is None:
        raise HTTPException(503, "live state unavailable: no call center runs in this process")
    return runtime


async def _may_act_for(session: AsyncSession, tenant_id: int, employee_id: int, who: Principal,
                       request: Request) -> Employee:
    """The employee themself, or the tenant's supervisor (of the agent's queues) or admin."""
    if not who.may_supervise(tenant_id) and who.employee_id != employee_id:
        raise HTTPException(403, "only the agent themself or a supervisor may see or change an agent's state")
    employee = await service.get_employee(session, tenant_id, employee_id)
    if who.employee_id != employee_id:
        await _check_agent(session, request, tenant_id, employee_id, who)
    return employee


def agent_out(runtime: CallCenterRuntime, agent: Agent, full_name: str = "") -> s.AgentOut:
    return s.AgentOut(employee_id=agent.id, full_name=full_name, status=agent.status.value,
                      reason=agent.reason, queue_ids=sorted(agent.queues), since=runtime.wall_time(agent.since),
                      calls=agent.calls, busy_elsewhere=agent.busy_elsewhere or agent.held_elsewhere)


def _state_error(exc: Exception) -> HTTPException:
    return HTTPException(409, str(exc))


@router.post("/agents/{employee_id}/login", response_model=s.AgentOut)
async def login(tenant_id: int, employee_id: int, body: s.LoginIn, who: TenantReader, session: Session,
                request: Request) -> object:
    employee = await _may_act_for(session, tenant_id, employee_id, who, request)
    if not employee.active:
        raise HTTPException(422, "employee: a deactivated employee cannot log in to queues")
    runtime = runtime_of(request)
    queue_ids = await service.check_login_queues(session, tenant_id, employee_id, body.queue_ids)
    skills = await service.skills(session, tenant_id, employee_id)
    # a queue made a moment ago reaches the center after its commit, by the runtime's reload task: wait for it
    # (else "no queue": 409 for a login right after the queue was created). Bounded: the changes are all the
    # companies' and keep coming, so one company's stream of edits cannot hold another's logins.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(runtime.settled(), SETTLE_WAIT)
    try:
        agent = runtime.login(tenant_id, employee_id, queue_ids, skills)
    except (AgentError, CenterError) as exc:
        raise _state_error(exc) from None
    return agent_out(runtime, agent)


def _agent(runtime: CallCenterRuntime, tenant_id: int, employee_id: int) -> Agent:
    agent = runtime.agent(tenant_id, employee_id)
    if agent is None:
        raise HTTPException(409, f"agent {employee_id} is not logged in")
    return agent


@router.get("/agents/{employee_id}", response_model=s.AgentOut)
async def agent_state(tenant_id: int, employee_id: int, who: TenantReader, session: Session, request: Request) -> object:
    """One agent's live state (offline when not logged in): the agent themself or the admin."""
    employee = await _may_act_for(session, tenant_id, employee_id, who, request)
    runtime = runtime_of(request)
    agent = runtime.agent(tenant_id, employee_id)
    if agent is None:
        return s.AgentOut(employee_id=employee_id, full_name=employee.full_name, status="offline")
    return agent_out(runtime, agent, employee.full_name)


@router.post("/agents/{employee_id}/logout", response_model=s.AgentOut)
async def logout(tenant_id: int, employee_id: int, body: s.LogoutIn, who: TenantReader, session: Session,
                 request: Request) -> object:
    await _may_act_for(session, tenant_id, employee_id, who, request)
    runtime = runtime_of(request)
    agent = _agent(runtime, tenant_id, employee_id)
    try:
        runtime.logout(employee_id, body.queue_ids)
    except (AgentError, CenterError) as exc:
        raise _state_error(exc) from None
    return agent_out(runtime, agent)


@router.post("/agents/{employee_id}/pause", response_model=s.AgentOut)
async def pause(tenant_id: int, employee_id: int, body: s.PauseIn, who: TenantReader, session: Session,
                request: Request) -> object:
    await _may_act_for(session, tenant_id, employee_id, who, request)
    await service.check_reason(session, tenant_id, body.reason)
    runtime = runtime_of(request)
    agent = _agent(runtime, tenant_id, employee_id)
    try:
        runtime.pause(employee_id, body.reason)
    except (AgentError, CenterError) as exc:
        raise _state_error(exc) from None
    return agent_out(runtime, agent)


@router.post("/agents/{employee_id}/unpause", response_model=s.AgentOut)
async def unpause(tenant_id: int, employee_id: int, who: TenantReader, session: Session, request: Request) -> object:
    await _may_act_for(session, tenant_id, employee_id, who, request)
    runtime = runtime_of(request)
    agent = _agent(runtime, tenant_id, employee_id)
    try:
        runtime.unpause(employee_id)
    except (AgentError, CenterError) as exc:
        raise _state_error(exc) from None
    return agent_out(runtime, agent)


@router.get("/live", response_model=s.LiveOut)
async def live(tenant_id: int, who: TenantSupervisor, session: Session, request: Request) -> object:
    runtime = runtime_of(request)
    scope = await scope_for(session, tenant_id, who)
    rows, _total = await service.list_queues(session, tenant_id, limit=10_000, offset=0, only=scope)
    queues = []
    for queue in rows:
        snap = runtime.snapshot(tenant_id, queue.id)
        queues.append(s.QueueLive(queue_id=queue.id, name=queue.name, number=queue.number,
                                  waiting=snap.waiting if snap else 0, callbacks=snap.callbacks if snap else 0,
                                  longest_wait=snap.longest_wait if snap else 0.0,
                                  agents=dict(snap.agents) if snap else {}))
    names = await service.employee_names(session, tenant_id)
    seen = await agents_in_scope(session, tenant_id, scope, runtime) if scope is not None else None
    return s.LiveOut(queues=queues, agents=[agent_out(runtime, a, names.get(a.id, ""))
                                            for a in runtime.agents(tenant_id) if seen is None or a.id in seen])



@router.get("/wallboard", response_model=s.WallboardOut)
async def wallboard_state(tenant_id: int, who: TenantSupervisor, session: Session, request: Request) -> object:
    """Live state and today's KPIs per queue and agent (the supervisor's wallboard)."""
    return await wallboard.wallboard(session, runtime_of(request), tenant_id,
                                     scope=await scope_for(session, tenant_id, who))


# -- callback requests ---------------------------------------------------------------------------------
@router.get("/queues/{queue_id}/callbacks", response_model=Page[s.CallbackOut])
async def list_callbacks(tenant_id: int, queue_id: int, who: TenantSupervisor, session: Session, request: Request,
                         p: PageParams, finished: bool = False) -> object:
    """The queue's callback requests in line order: the waiting ones (and one being dialed), or with
    ``finished`` the done, failed and cancelled ones kept too."""
    await _check_queue(session, request, tenant_id, queue_id, who)
    rows, total = await callbacks.list_queue(session, tenant_id, queue_id, finished=finished, limit=p.limit,
                                             offset=p.offset)
    runtime: CallCenterRuntime | None = getattr(request.app.state, "callcenter", None)
    places = {c.call_id: c.position for c in runtime.callbacks(tenant_id, queue_id)} if runtime is not None else {}
    items = [s.CallbackOut.model_validate(row).model_copy(update={"position": places.get(row.call_id)})
             for row in rows]
    return {"items": items, "total": total, "limit": p.limit, "offset": p.offset}


@router.delete("/callbacks/{callback_id}", status_code=204)
async def cancel_callback(tenant_id: int, callback_id: int, who: TenantSupervisor, session: Session,
                          request: Request) -> Response:
    """Cancel a callback request (it leaves the line); 409 when finished or its customer is being called."""
    row = await callbacks.get(session, tenant_id, callback_id)
    await _check_queue(session, request, tenant_id, row.queue_id, who)
    await callbacks.cancel(session, runtime_of(request), tenant_id, callback_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)

# -- reports -------------------------------------------------------------------------------------------
def _span(start: float, end: float) -> None:
    if end <= start:
        raise HTTPException(422, "to: must be after from")
    if end - start > MAX_REPORT_SPAN:
        raise HTTPException(422, "to: a report covers at most 366 days")


def _csv(rows: list[s.QueueReportRow] | list[s.AgentReportRow], fields: list[str], name: str) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(fields)
    for row in rows:
        data = row.model_dump()
        writer.writerow(["" if data[f] is None else data[f] for f in fields])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


From = Annotated[float, Query(alias="from", ge=0, description="Epoch seconds (inclusive)")]
To = Annotated[float, Query(alias="to", ge=0, description="Epoch seconds (exclusive)")]
Format = Literal["json", "csv"]


@router.get("/reports/queues", response_model=list[s.QueueReportRow])
async def queue_report(tenant_id: int, who: TenantSupervisor, session: Session, request: Request, start: From,
                       end: To, group: s.Group = "hour", queue_id: int | None = None,
                       format: Format = "json") -> object:
    _span(start, end)
    if queue_id is not None:
        await _check_queue(session, request, tenant_id, queue_id, who)
    rows = await reports.queue_report(session, tenant_id, start=start, end=end, group=group, queue_id=queue_id,
                                      utc_offset=await reports.utc_offset(session, tenant_id, start))
    scope = await scope_for(session, tenant_id, who)
    if scope is not None:
        rows = [r for r in rows if r.queue_id in scope]
    if format == "csv":
        return _csv(rows, list(s.QueueReportRow.model_fields), "queues")
    return rows


@router.get("/reports/agents", response_model=list[s.AgentReportRow])
async def agent_report(tenant_id: int, who: TenantSupervisor, session: Session, request: Request, start: From,
                       end: To, group: s.Group = "hour", agent_id: int | None = None,
                       format: Format = "json") -> object:
    _span(start, end)
    if agent_id is not None:
        await service.get_employee(session, tenant_id, agent_id)
        await _check_agent(session, request, tenant_id, agent_id, who)
    rows = await reports.agent_report(session, tenant_id, start=start, end=end, group=group, agent_id=agent_id,
                                      utc_offset=await reports.utc_offset(session, tenant_id, start))
    scope = await scope_for(session, tenant_id, who)
    if scope is not None:
        seen = await agents_in_scope(session, tenant_id, scope, getattr(request.app.state, "callcenter", None))
        rows = [r for r in rows if r.agent_id in seen]
    if format == "csv":
        return _csv(rows, list(s.AgentReportRow.model_fields), "agents")
    return rows
