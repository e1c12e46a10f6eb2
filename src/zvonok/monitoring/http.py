"""REST of supervisor monitoring (telephony/monitor.py): the sessions running now, switching their mode,
and the audit.

* ``GET  /api/v1/tenants/{t}/monitor-sessions`` — live sessions (who monitors whom, mode, since when);
* ``POST /api/v1/tenants/{t}/monitor-sessions/{id}/mode`` ``{"mode": "listen|whisper|barge"}`` — switch;
* ``DELETE /api/v1/tenants/{t}/monitor-sessions/{id}`` — stop (the PBX hangs up the supervisor's call);
* ``GET  /api/v1/tenants/{t}/monitor-audit`` — the newest audit rows (start, mode, stop, refused);
* ``POST /api/v1/tenants/{t}/monitor-sessions`` ``{"extension": "102", "mode": "listen", "supervisor":
  "103"}`` — 202: the platform rings the supervisor's phone (yours when ``supervisor`` is left out) and,
  answered, joins it to the agent's call (telephony/originate.py); 404 when that extension has no call now.

A session is also started from the supervisor's phone: ``*33<ext>``. Only the tenant's supervisors (role
``supervisor``) and admins may use these routes: a plain employee gets 403, and the refusal is audited;
another tenant's account gets 403 too (not the 404 of the other tenant-scoped routes: listening in is refused
in plain words), the same for a tenant that does not exist, and is audited in the tenant it asked about.
A supervisor assigned to queues (zvonok.callcenter.scope) monitors only those queues' agents: starting on
another extension answers 403, switching or stopping another's session 404, both audited; the lists show
only their agents' sessions and audit rows. Sessions live
in the running call engine (``app.state.monitoring``): an API-only process answers 503.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import CurrentPrincipal, Principal
from zvonok.api.deps import get_session
from zvonok.callcenter.runtime import CallCenterRuntime
from zvonok.callcenter.scope import OUTSIDE, Scope, agents_in_scope, covers_agent, scope_of
from zvonok.org.models import Extension, Tenant
from zvonok.storage.base import utcnow
from zvonok.telephony import originate_http
from zvonok.telephony.monitor import LiveMonitor, Monitoring
from zvonok.telephony.monitor_matrix import MonitorMode
from zvonok.telephony.originate import OriginateRefused

from .models import MonitorAudit
from .service import audit_of, audit_refusal

router = APIRouter(prefix="/api/v1/tenants/{tenant_id}", tags=["monitoring"])


class MonitorSessionOut(BaseModel):
    id: str
    call_id: str
    supervisor: str
    agent: str
    mode: MonitorMode
    started_at: datetime


class ModeIn(BaseModel):
    mode: MonitorMode


class AuditOut(BaseModel):
    id: int
    session_id: str | None
    call_id: str | None
    supervisor: str
    agent: str
    action: str
    mode: str | None
    via: str
    detail: str
    at: datetime


def _monitoring(request: Request) -> Monitoring | None:
    monitoring: Monitoring | None = getattr(request.app.state, "monitoring", None)
    return monitoring


async def supervisor(
    tenant_id: int,
    principal: CurrentPrincipal,
    request: Request,
    session: Annotated[AsyncSession, Depends(get_session)],
) -> Principal:
    """A supervisor or tenant admin of ``tenant_id`` (or a platform admin); anyone else is refused and
    audited."""
    if principal.may_supervise(tenant_id):
        if await session.get(Tenant, tenant_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"tenant {tenant_id} not found")
        return principal
    other_tenant = principal.tenant_id != tenant_id
    if await session.get(Tenant, tenant_id) is not None:  # the tenant whose calls were asked for sees it
        who = (
            f"account:{principal.account_id}"
            if principal.account_id is not None
            else f"token:{principal.token_id}"
        )
        reason = "another tenant's account" if other_tenant else "not a supervisor"
        session.add(
            MonitorAudit(
                tenant_id=tenant_id,
                session_id=None,
                call_id=None,
                supervisor=who,
                agent="",
                action="refused",
                mode=None,
                via="api",
                detail=f"{request.method} {request.url.path}: {reason}"[:200],
                at=utcnow(),
            )
        )
        await session.commit()
    # 403 to another tenant's account too (the rule for monitoring), whether the tenant exists or not:
    # the answer tells nothing the caller did not know
    raise HTTPException(status.HTTP_403_FORBIDDEN, "only the tenant's supervisors (and admins) may monitor calls")


Supervisor = Annotated[Principal, Depends(supervisor)]


def _who(principal: Principal) -> str:
    return f"account:{principal.account_id}" if principal.account_id is not None else f"token:{principal.token_id}"


async def _scope(session: AsyncSession, tenant_id: int, principal: Principal) -> Scope:
    return await scope_of(session, tenant_id, role=principal.role, employee_id=principal.employee_id,
                          account_id=principal.owner_id if principal.token_id is not None else None)


def _callcenter(request: Request) -> CallCenterRuntime | None:
    runtime: CallCenterRuntime | None = getattr(request.app.state, "callcenter", None)
    return runtime


async def visible_extensions(session: AsyncSession, tenant_id: int, scope: Scope,
                             runtime: CallCenterRuntime | None) -> set[str] | None:
    """The extensions a supervisor limited to ``scope`` may monitor (None: every one)."""
    if scope is None:
        return None
    employees = await agents_in_scope(session, tenant_id, scope, runtime)
    rows = await session.scalars(select(Extension.number).where(Extension.tenant_id == tenant_id,
                                                                Extension.employee_id.in_(employees)))
    return set(rows)


async def may_monitor(session: AsyncSession, tenant_id: int, scope: Scope, extension: str,
                      runtime: CallCenterRuntime | None) -> bool:
    """Whether ``extension``'s employee is an agent of the supervisor's queues (any, unlimited)."""
    if scope is None:
        return True
    employee = await session.scalar(select(Extension.employee_id).where(Extension.tenant_id == tenant_id,
                                                                        Extension.number == extension))
    return await covers_agent(session, tenant_id, scope, employee, runtime)


def _running(request: Request) -> Monitoring:
    monitoring = _monitoring(request)
    if monitoring is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no call engine in this process")
    return monitoring


@router.get("/monitor-sessions", response_model=list[MonitorSessionOut])
async def list_sessions(tenant_id: int, principal: Supervisor, request: Request,
                        session: Annotated[AsyncSession, Depends(get_session)]) -> list[MonitorSessionOut]:
    """Supervisors monitoring calls now (a supervisor with queues: their agents' calls)."""
    running = _running(request).of_tenant(tenant_id)
    seen = await visible_extensions(session, tenant_id, await _scope(session, tenant_id, principal),
                                    _callcenter(request))
    return [
        MonitorSessionOut(
            id=s.id,
            call_id=s.call_id,
            supervisor=s.supervisor,
            agent=s.agent,
            mode=s.mode,
            started_at=datetime.fromtimestamp(s.started_at, UTC),
        )
        for s in running
        if seen is None or s.agent in seen
    ]


class StartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    extension: str = Field(min_length=1, max_length=8, pattern=r"^[0-9]+$", description="The agent's extension")
    mode: MonitorMode = MonitorMode.LISTEN
    supervisor: str | None = Field(default=None, min_length=1, max_length=8, pattern=r"^[0-9]+$",
                                   description="The extension whose phone rings; default: your own")


class StartOut(BaseModel):
    call_id: str  # the supervisor's call (GET /api/v1/calls/originate/{call_id} says how it goes)
    supervisor: str
    agent: str
    mode: MonitorMode


@router.post("/monitor-sessions", status_code=202, response_model=StartOut,
             responses={404: {"description": "no such extension, or it has no call to monitor now"},
                        409: {"description": "the supervisor's extension has no registered phone"}})
async def start_session(tenant_id: int, body: StartIn, principal: Supervisor, request: Request,
                        session: Annotated[AsyncSession, Depends(get_session)]) -> object:
    """The platform rings the supervisor's phone; answered, it joins the agent's call in ``mode``."""
    if not await may_monitor(session, tenant_id, await _scope(session, tenant_id, principal), body.extension,
                             _callcenter(request)):
        await audit_refusal(session, tenant_id, _who(principal), f"{request.method} {request.url.path}: {OUTSIDE}",
                            agent=body.extension)
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"extension {body.extension} is no agent of the queues you supervise")
    originator = getattr(request.app.state, "originator", None)
    if originator is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no call engine in this process")
    supervisor = body.supervisor
    if supervisor is None and principal.employee_id is not None and principal.tenant_id == tenant_id:
        supervisor = (await session.execute(
            select(Extension.number).where(Extension.tenant_id == tenant_id,
                                           Extension.employee_id == principal.employee_id,
                                           Extension.enabled.is_(True))
            .order_by(Extension.number).limit(1))).scalar_one_or_none()
    if supervisor is None:
        raise HTTPException(422, "name the supervisor's extension (your account has none)")
    try:
        started = await originator.start_monitor(tenant_id, supervisor, body.extension, body.mode,
                                                 requested_by=originate_http.requester(principal))
    except OriginateRefused as exc:
        return originate_http.refused(exc)
    return JSONResponse(StartOut(call_id=started.call_id, supervisor=supervisor, agent=body.extension,
                                 mode=body.mode).model_dump(mode="json"), status_code=202)


@router.post("/monitor-sessions/{session_id}/mode", response_model=MonitorSessionOut)
async def switch_mode(
    tenant_id: int, session_id: str, body: ModeIn, principal: Supervisor, request: Request,
    session: Annotated[AsyncSession, Depends(get_session)],
) -> MonitorSessionOut:
    """Listen, whisper or barge, at once (as the supervisor's keys 4 / 5 / 6)."""
    monitoring = _monitoring(request)  # no call engine here: no session either
    live = await _live_session(session, request, tenant_id, session_id, principal)
    by = f"account:{principal.account_id or principal.token_id}"
    if monitoring is None or live is None or not monitoring.switch(live, body.mode, via="api", by=by):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no monitoring session {session_id}")
    s = live.session
    return MonitorSessionOut(
        id=s.id,
        call_id=s.call_id,
        supervisor=s.supervisor,
        agent=s.agent,
        mode=s.mode,
        started_at=datetime.fromtimestamp(s.started_at, UTC),
    )


async def _live_session(session: AsyncSession, request: Request, tenant_id: int, session_id: str,
                        principal: Principal) -> LiveMonitor | None:
    """The tenant's running session ``session_id``; a limited supervisor's attempt on another agent's
    session is audited and answers as a missing one (404)."""
    monitoring = _monitoring(request)
    live = monitoring.session(tenant_id, session_id) if monitoring is not None else None
    if live is None:
        return None
    scope = await _scope(session, tenant_id, principal)
    if not await may_monitor(session, tenant_id, scope, live.session.agent, _callcenter(request)):
        await audit_refusal(session, tenant_id, _who(principal), f"{request.method} {request.url.path}: {OUTSIDE}",
                            agent=live.session.agent)
        return None
    return live


@router.delete("/monitor-sessions/{session_id}", status_code=204)
async def stop_session(tenant_id: int, session_id: str, principal: Supervisor, request: Request,
                       session: Annotated[AsyncSession, Depends(get_session)]) -> Response:
    """End a session: the PBX hangs up the supervisor's call; the two parties talk on."""
    monitoring = _monitoring(request)
    live = await _live_session(session, request, tenant_id, session_id, principal)
    if monitoring is None or live is None or not monitoring.stop(live, via="api", by=_who(principal)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no monitoring session {session_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/monitor-audit", response_model=list[AuditOut])
async def list_audit(
    tenant_id: int, principal: Supervisor, request: Request, session: Annotated[AsyncSession, Depends(get_session)],
    limit: int = 200,
) -> list[AuditOut]:
    """Every monitoring start, mode change, stop and refusal, newest first (a supervisor with queues: those
    on their agents, and their own)."""
    if not 1 <= limit <= 1000:
        raise HTTPException(422, "limit must be 1..1000")
    seen = await visible_extensions(session, tenant_id, await _scope(session, tenant_id, principal),
                                    _callcenter(request))
    own = _who(principal)
    return [
        AuditOut(
            id=r.id,
            session_id=r.session_id,
            call_id=r.call_id,
            supervisor=r.supervisor,
            agent=r.agent,
            action=r.action,
            mode=r.mode,
            via=r.via,
            detail=r.detail,
            at=r.at,
        )
        for r in await audit_of(session, tenant_id, limit)
        if seen is None or r.agent in seen or r.supervisor == own
    ]
