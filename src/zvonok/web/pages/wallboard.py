"""The supervisor's wallboard (supervisors and tenant admins): per queue the callers waiting, the longest wait, agents by
status and today's KPIs; per agent the status, time in it, calls, talk time and occupancy.

The figures are :func:`zvonok.callcenter.wallboard.wallboard`'s, as ``GET .../callcenter/wallboard`` gives
them (a supervisor assigned to queues: those queues and their agents only). The body reloads on every queue
or agent state event from the websocket and once a second for the clocks (waits, time in status); without a
running call center (an API-only process) the page says so.

Monitoring from the page: an agent on a call has Listen / Whisper / Barge buttons. A click does what
``POST .../monitor-sessions`` does (:meth:`~zvonok.telephony.originate.Originator.start_monitor`): the PBX
rings the supervisor's own phone (their first extension) and, answered, joins it to the agent's call. The
page then lists the running sessions the supervisor may see, with buttons to switch the mode and to stop.
A refusal (no phone registered, the agent no longer on a call, an agent of another queue) comes back on the
page with its status code and says why.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.callcenter import service
from zvonok.callcenter.wallboard import wallboard
from zvonok.org.models import Extension
from zvonok.telephony.monitor import Monitoring
from zvonok.telephony.monitor_matrix import MonitorMode
from zvonok.telephony.originate import OriginateRefused
from zvonok.web.auth import SupervisorUser, WebUser
from zvonok.web.i18n import N_
from zvonok.web.pages.callcenter import STATUSES, check_agent, runtime_of, visible_agents, web_scope
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import SUPERVISE, NavItem, page_router

router = page_router()
NAV = [NavItem("/callcenter/wallboard", N_("Wallboard"), SUPERVISE, order=38)]
Session = Annotated[AsyncSession, Depends(get_session)]
MODES = {"listen": N_("Listen"), "whisper": N_("Whisper"), "barge": N_("Barge in")}


def _monitoring(request: Request) -> Monitoring | None:
    monitoring: Monitoring | None = getattr(request.app.state, "monitoring", None)
    return monitoring


async def _extensions(session: AsyncSession, tenant_id: int) -> dict[str, int | None]:
    """Every extension number of the company -> its employee."""
    rows = await session.execute(select(Extension.number, Extension.employee_id).where(Extension.tenant_id == tenant_id))
    return dict(rows.tuples().all())


async def _context(request: Request, session: AsyncSession, user: WebUser) -> dict[str, object]:
    runtime = runtime_of(request)
    tenant_id = user.tenant
    board = await wallboard(session, runtime, tenant_id, scope=await web_scope(session, user)) \
        if runtime is not None else None
    monitoring = _monitoring(request)
    sessions: list[dict[str, Any]] = []
    monitored: set[int | None] = set()  # one supervisor per call: no start buttons for these agents
    if monitoring is not None:
        seen = await visible_agents(request, session, user)
        owners = await _extensions(session, tenant_id)
        names = await service.employee_names(session, tenant_id)
        for s in sorted(monitoring.of_tenant(tenant_id), key=lambda s: s.started_at):
            employee = owners.get(s.agent)
            monitored.add(employee)
            if seen is not None and employee not in seen:
                continue
            sessions.append({"id": s.id, "agent": s.agent, "agent_name": names.get(employee, "") if employee else "",
                             "supervisor": s.supervisor, "mode": s.mode.value})
    queue_names = {q.queue_id: q.name for q in board.queues} if board is not None else {}
    return {"board": board, "statuses": STATUSES, "monitoring": monitoring is not None, "sessions": sessions,
            "modes": MODES, "monitored": monitored, "queue_names": queue_names}


async def _page(request: Request, session: AsyncSession, user: WebUser, *, message: str | None = None,
                error: bool = False, status_code: int = 200) -> Response:
    context = await _context(request, session, user)
    return render(request, "callcenter/wallboard.html", {**context, "message": message, "error": error},
                  status_code=status_code)


@router.get("/callcenter/wallboard")
async def wallboard_page(request: Request, user: SupervisorUser, session: Session) -> Response:
    return await _page(request, session, user)


@router.get("/callcenter/wallboard/body")
async def wallboard_body(request: Request, user: SupervisorUser, session: Session) -> Response:
    return render(request, "callcenter/_wallboard_body.html", await _context(request, session, user))


Mode = Annotated[str, Form(max_length=16)]


async def _numbers_of(session: AsyncSession, tenant_id: int, employee_id: int | None) -> list[str]:
    """An employee's enabled extensions (their phones), lowest number first."""
    if employee_id is None:
        return []
    rows = await session.scalars(select(Extension.number).where(
        Extension.tenant_id == tenant_id, Extension.enabled.is_(True), Extension.employee_id == employee_id)
        .order_by(Extension.number))
    return list(rows)


@router.post("/callcenter/wallboard/monitor")
async def start_monitor(request: Request, user: SupervisorUser, session: Session,
                        employee_id: Annotated[int, Form()], mode: Mode = "listen") -> Response:
    """Ring the supervisor's phone to listen / whisper / barge on ``employee_id``'s call."""
    _ = gettext_for(request)
    if mode not in MODES:
        raise HTTPException(422, "mode must be listen, whisper or barge")
    await service.get_employee(session, user.tenant, employee_id)  # another company's: 404
    await check_agent(request, session, user, employee_id)  # another queue's agent: 403, audited
    names = await service.employee_names(session, user.tenant)
    agent_name = names.get(employee_id, "")
    originator = getattr(request.app.state, "originator", None)
    if originator is None or _monitoring(request) is None:
        return await _page(request, session, user, error=True, status_code=503,
                           message=_("Monitoring is not available: no call engine runs in this process."))
    own = await _numbers_of(session, user.tenant, user.employee_id)
    theirs = await _numbers_of(session, user.tenant, employee_id)
    if not own:
        return await _page(request, session, user, error=True, status_code=409,
                           message=_("You have no extension: an administrator must give you a phone first."))
    refused: OriginateRefused | None = None
    for number in theirs:
        try:
            await originator.start_monitor(user.tenant, own[0], number, MonitorMode(mode))
        except OriginateRefused as exc:
            refused = exc
            if exc.reason == "nothing_to_monitor":
                continue  # another of their phones may be the one on the call
            break
        return await _page(request, session, user, status_code=202, message=_(
            "Your phone (%(number)s) is ringing: answer it to join the call of %(name)s (%(mode)s).")
            % {"number": own[0], "mode": _(MODES[mode]), "name": agent_name})
    if refused is None or refused.reason == "nothing_to_monitor":
        return await _page(request, session, user, error=True, status_code=404,
                           message=_("%(name)s is not on a call now.") % {"name": agent_name})
    if refused.reason == "not_registered":
        return await _page(request, session, user, error=True, status_code=409, message=_(
            "Your phone (%(number)s) is not registered: switch it on and try again.") % {"number": own[0]})
    if refused.reason == "monitor_forbidden":
        return await _page(request, session, user, error=True, status_code=403,
                           message=_("You may not monitor this agent."))
    return await _page(request, session, user, error=True, status_code=refused.status,
                       message=_("Monitoring could not start: %(reason)s") % {"reason": str(refused)})


async def _session(request: Request, session: AsyncSession, user: WebUser, session_id: str) -> Any:
    """The running session (a limited supervisor: of their agents; else 403, audited); 404 when gone."""
    monitoring = _monitoring(request)
    live = monitoring.session(user.tenant, session_id) if monitoring is not None else None
    if monitoring is None or live is None:
        raise HTTPException(404, "no such monitoring session")
    owners = await _extensions(session, user.tenant)
    await check_agent(request, session, user, owners.get(live.session.agent), agent=live.session.agent)
    return live


@router.post("/callcenter/wallboard/monitor/{session_id}/mode")
async def switch_monitor(request: Request, session_id: str, user: SupervisorUser, session: Session,
                         mode: Mode = "") -> Response:
    if mode not in MODES:
        raise HTTPException(422, "mode must be listen, whisper or barge")
    live = await _session(request, session, user, session_id)
    monitoring = _monitoring(request)
    assert monitoring is not None
    if not monitoring.switch(live, MonitorMode(mode), via="web", by=f"account:{user.account_id}"):
        raise HTTPException(404, "no such monitoring session")
    return RedirectResponse("/callcenter/wallboard", status_code=303)


@router.post("/callcenter/wallboard/monitor/{session_id}/stop")
async def stop_monitor(request: Request, session_id: str, user: SupervisorUser, session: Session) -> Response:
    live = await _session(request, session, user, session_id)
    monitoring = _monitoring(request)
    assert monitoring is not None
    if not monitoring.stop(live, via="web", by=f"account:{user.account_id}"):
        raise HTTPException(404, "no such monitoring session")
    return RedirectResponse("/callcenter/wallboard", status_code=303)
