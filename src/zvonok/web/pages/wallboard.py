"""The supervisor's wallboard (supervisors and tenant admins): per queue the callers waiting, the longest wait, agents by
status and today's KPIs; per agent the status, time in it, calls, talk time and occupancy.

The figures are :func:`zvonok.callcenter.wallboard.wallboard`'s, as ``GET .../callcenter/wallboard`` gives
them. The body reloads on every queue or agent state event from the websocket and once a second for the
clocks (waits, time in status); without a running call center (an API-only process) the page says so.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.callcenter.wallboard import wallboard
from zvonok.web.auth import SupervisorUser
from zvonok.web.i18n import N_
from zvonok.web.pages.callcenter import STATUSES, runtime_of
from zvonok.web.render import render
from zvonok.web.routing import SUPERVISE, NavItem, page_router

router = page_router()
NAV = [NavItem("/callcenter/wallboard", N_("Wallboard"), SUPERVISE, order=38)]
Session = Annotated[AsyncSession, Depends(get_session)]


async def _context(request: Request, session: AsyncSession, tenant_id: int) -> dict[str, object]:
    runtime = runtime_of(request)
    board = await wallboard(session, runtime, tenant_id) if runtime is not None else None
    return {"board": board, "statuses": STATUSES}


@router.get("/callcenter/wallboard")
async def wallboard_page(request: Request, user: SupervisorUser, session: Session) -> Response:
    return render(request, "callcenter/wallboard.html", await _context(request, session, user.tenant))


@router.get("/callcenter/wallboard/body")
async def wallboard_body(request: Request, user: SupervisorUser, session: Session) -> Response:
    return render(request, "callcenter/_wallboard_body.html", await _context(request, session, user.tenant))
