"""Access-number PINs of a company's employees (tenant admins): set or clear, per employee.

A PIN is never shown, nor its hash: the page says only whether one is set and since when. Setting goes
through :func:`zvonok.pstn.policies.set_pin`, which refuses weak PINs (a repeated group, a run, the end
of the employee's own extension or phone number) and hashes it slowly, in a thread.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.org import service as org_service
from zvonok.org.errors import OrgError
from zvonok.org.pins import PIN_MAX_LENGTH, PIN_MIN_LENGTH, PinProblem
from zvonok.pstn import policies
from zvonok.pstn.models import EmployeePin
from zvonok.web.auth import TenantAdminUser, WebUser
from zvonok.web.i18n import N_
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import ADMIN, NavItem, page_router

router = page_router()
NAV = [NavItem("/pins", N_("PINs"), ADMIN, order=53)]
Session = Annotated[AsyncSession, Depends(get_session)]
PAGE = 50
_PROBLEM_OF = {message: problem for problem, message in policies._PIN_MESSAGES.items()}  # the service's words
_PROBLEMS = {
    PinProblem.FORMAT: N_("A PIN is %(min)s to %(max)s digits."),
    PinProblem.REPEATED: N_("Too easy to guess: a repeated group of digits such as 1212."),
    PinProblem.SEQUENCE: N_("Too easy to guess: a run of digits such as 1234 or 9876."),
    PinProblem.PERSONAL: N_("Too easy to guess: the end of the employee's extension or phone number."),
}


async def _page(request: Request, user: WebUser, session: AsyncSession, page: int, q: str | None, *,
                done: str | None = None, error: tuple[int, str] | None = None, status_code: int = 200) -> Response:
    rows, total = await org_service.list_employees(session, user.tenant, q=q or None, limit=PAGE,
                                                   offset=(page - 1) * PAGE)
    ids = [e.id for e in rows]
    pins: dict[int, Any] = {}
    if ids:  # one query for the page's employees: whether a PIN is set, never the hash itself
        stmt = select(EmployeePin.employee_id, EmployeePin.updated_at, EmployeePin.skip_for_caller_id).where(
            EmployeePin.tenant_id == user.tenant, EmployeePin.employee_id.in_(ids))
        pins = {emp: {"updated_at": at, "skip": skip} for emp, at, skip in (await session.execute(stmt)).all()}
    return render(request, "pstn/pins.html", {
        "rows": rows, "pins": pins, "total": total, "page": page, "pages": max(1, -(-total // PAGE)), "q": q or "",
        "done": done, "error": error, "min": PIN_MIN_LENGTH, "max": PIN_MAX_LENGTH}, status_code=status_code)


@router.get("/pins")
async def pins(request: Request, user: TenantAdminUser, session: Session,
               page: Annotated[int, Query(ge=1, le=100_000)] = 1,
               q: Annotated[str | None, Query(max_length=100)] = None,
               done: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    _ = gettext_for(request)
    notice = {"set": _("The PIN is set."), "cleared": _("The PIN is cleared.")}.get(done or "")
    return await _page(request, user, session, page, q, done=notice)


@router.post("/pins/{employee_id}")
async def set_pin(request: Request, employee_id: int, user: TenantAdminUser, session: Session,
                  pin: Annotated[str, Form(max_length=32)] = "") -> Response:
    _ = gettext_for(request)
    try:
        await policies.set_pin(session, user.tenant, employee_id, pin.strip())  # another company's: 404
        await session.commit()
    except OrgError as exc:
        if exc.status == 404:
            raise
        await session.rollback()
        problem = _PROBLEM_OF.get(exc.message)
        message = (_(_PROBLEMS[problem]) % {"min": PIN_MIN_LENGTH, "max": PIN_MAX_LENGTH} if problem is not None
                   else _("Changed meanwhile: try again."))
        return await _page(request, user, session, 1, None, error=(employee_id, message), status_code=exc.status)
    return RedirectResponse("/pins?done=set", status_code=303)


@router.post("/pins/{employee_id}/clear")
async def clear_pin(employee_id: int, user: TenantAdminUser, session: Session) -> Response:
    if await policies.get_pin(session, user.tenant, employee_id) is not None:  # another company's: 404
        await policies.delete_pin(session, user.tenant, employee_id)
        await session.commit()
    return RedirectResponse("/pins?done=cleared", status_code=303)
