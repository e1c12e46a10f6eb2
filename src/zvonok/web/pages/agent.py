"""The agent's panel at ``/me/agent``: a call-center agent's own live state and controls.

Whose: the login's employee (``user.employee_id``), any role; in the menu for an employee who is a member
of a queue (``WebUser.is_agent``). Every route acts on that employee only — the same rights as the REST
API's ``agents/{employee_id}/…`` for oneself (:mod:`zvonok.callcenter.http`): another agent's state is not
reachable from here at all, and the runtime answers for the login's tenant only
(:meth:`~zvonok.callcenter.runtime.CallCenterRuntime.agent`).

What it shows: the status and the time in it; the queues the employee may log in to, each with Log in /
Log out; Not ready with one of the company's reasons, and back to Available (a pause asked during a call
is taken after it and its wrap-up: the panel says so); the caller offered to or talking to the agent (the
number, and the CRM's card of it: :func:`zvonok.crm.service.card_for`, the screen pop's look-up); the
wrap-up's countdown (the runtime has no way to end wrap-up early: it ends when the queue's wrap-up time
is over); and the callback requests waiting in those queues (read-only; supervisors cancel them on the
agents page).

Live refresh, as the wallboard's: the state block reloads once a second (the clocks) and on the agent's own
``AgentStateChanged`` from the websocket (which an employee gets for themself only, :mod:`zvonok.api.ws`);
the controls reload on that event only, so a reason being chosen is not wiped every second. The CRM card
of a number is kept a few seconds (:data:`CARD_TTL`) so the once-a-second reload does not look it up each
time. Without a running call center (an API-only process) the page says so and offers no buttons.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.callcenter import service
from zvonok.callcenter.agents import AgentError
from zvonok.callcenter.center import CenterError
from zvonok.crm.events import Card
from zvonok.crm.service import card_for
from zvonok.org.errors import OrgError, ValidationError
from zvonok.web.auth import TenantUser, WebUser
from zvonok.web.i18n import N_
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import TENANT, NavItem, page_router

from .callcenter import STATUSES, callback_rows, runtime_of

router = page_router()
NAV = [NavItem("/me/agent", N_("Agent panel"), TENANT, order=11, agents_only=True)]
Session = Annotated[AsyncSession, Depends(get_session)]
PANEL = "/me/agent"
CARD_TTL = 10.0  # seconds a caller's CRM card is reused by the panel's reloads
MAX_CARDS = 1000


def _employee(user: WebUser) -> int:
    if user.employee_id is None:
        raise HTTPException(404, "this login is not an employee's")
    return user.employee_id


async def _card(request: Request, session: AsyncSession, tenant_id: int, number: str) -> Card:
    """The CRM card of ``number`` (the screen pop's), kept :data:`CARD_TTL` seconds per company and number."""
    cards: OrderedDict[tuple[int, str], tuple[float, Card]] | None = getattr(request.app.state, "agent_cards", None)
    if cards is None:
        cards = request.app.state.agent_cards = OrderedDict()
    now = time.monotonic()
    key = (tenant_id, number)
    kept = cards.get(key)
    if kept is not None and kept[0] > now:
        return kept[1]
    card = await card_for(session, tenant_id, number, last=0)
    cards[key] = (now + CARD_TTL, card)
    cards.move_to_end(key)
    while len(cards) > MAX_CARDS:
        cards.popitem(last=False)
    return card


async def _state(request: Request, session: AsyncSession, user: WebUser) -> dict[str, Any]:
    """The agent's live state for ``me/_agent_state.html`` and ``me/_agent_controls.html``."""
    employee_id = _employee(user)
    runtime = runtime_of(request)
    member_of = set(await service.member_queues(session, user.tenant, employee_id))
    rows, _total = await service.list_queues(session, user.tenant, limit=500, offset=0)
    queues = [q for q in rows if q.id in member_of]
    names = {q.id: q.name for q in rows}
    agent = runtime.agent(user.tenant, employee_id) if runtime is not None else None
    state: dict[str, Any] = {
        "live": runtime is not None, "queues": queues, "queue_names": names, "statuses": STATUSES,
        "status": agent.status.value if agent is not None else "offline",
        "reason": agent.reason if agent is not None else None,
        "pause_after": agent.pause_after if agent is not None else None,
        "logged_in": set(agent.queues) if agent is not None else set(),
        "busy_elsewhere": agent is not None and (agent.busy_elsewhere or agent.held_elsewhere),
        "in_status": None, "wrap_left": None, "caller": None, "card": None,
    }
    if runtime is None or agent is None:
        return state
    state["in_status"] = runtime.seconds_since(agent.since)
    if agent.wrap_until is not None:
        state["wrap_left"] = max(0.0, agent.wrap_until - runtime.clock())
    caller = runtime.caller(user.tenant, employee_id)
    if caller is not None:
        state["caller"] = caller
        if caller.number:
            state["card"] = await _card(request, session, user.tenant, caller.number)
    return state


async def _page(request: Request, session: AsyncSession, user: WebUser, *, message: str | None = None,
                status_code: int = 200) -> Response:
    if user.employee_id is None:
        return render(request, "me/unlinked.html", status_code=404)
    state = await _state(request, session, user)
    return render(request, "me/agent.html", {
        **state, "message": message, "reasons": await service.list_reasons(session, user.tenant),
        "callbacks": await callback_rows(session, user.tenant, member=user.employee_id) if state["queues"] else [],
    }, status_code=status_code)


@router.get(PANEL)
async def agent_panel(request: Request, user: TenantUser, session: Session) -> Response:
    return await _page(request, session, user)


@router.get(PANEL + "/state")
async def agent_state(request: Request, user: TenantUser, session: Session) -> Response:
    """The status, time in it, caller and wrap-up (htmx: reloaded every second and on the agent's events)."""
    return render(request, "me/_agent_state.html", await _state(request, session, user))


@router.get(PANEL + "/controls")
async def agent_controls(request: Request, user: TenantUser, session: Session) -> Response:
    """The queues' Log in / Log out and the pause buttons (htmx: reloaded on the agent's events)."""
    return render(request, "me/_agent_controls.html", {
        **await _state(request, session, user), "reasons": await service.list_reasons(session, user.tenant)})


QueueField = Annotated[str, Form(max_length=20)]


def _queue_ids(queue_id: str) -> list[int] | None:
    """One queue (the form's ``queue_id``) or every queue of the employee (empty)."""
    if not queue_id:
        return None
    if not queue_id.isdigit():
        raise HTTPException(422, "queue_id: a queue's id")
    return [int(queue_id)]


@router.post(PANEL + "/{action}")
async def agent_action(request: Request, action: str, user: TenantUser, session: Session,
                       queue_id: QueueField = "", reason: Annotated[str, Form(max_length=200)] = "") -> Response:
    """Log in to / out of one queue (``queue_id``) or all of the employee's, pause with a reason, unpause."""
    _ = gettext_for(request)
    employee_id = _employee(user)
    if action not in ("login", "logout", "pause", "unpause"):
        raise HTTPException(404, "no such action")
    runtime = runtime_of(request)
    message = None
    try:
        if runtime is None:
            message = _("The call center does not run in this process: you cannot log in to queues here.")
        elif action == "login":
            employee = await service.get_employee(session, user.tenant, employee_id)
            if not employee.active:
                message = _("A deactivated employee cannot log in to queues.")
            else:
                try:
                    queue_ids = await service.check_login_queues(session, user.tenant, employee_id,
                                                                 _queue_ids(queue_id))
                except ValidationError:  # another company's queue, or one of ours they are no member of
                    raise ValidationError(_("You are not a member of this queue.")) from None
                runtime.login(user.tenant, employee_id, queue_ids, await service.skills(session, user.tenant, employee_id))
        elif runtime.agent(user.tenant, employee_id) is None:
            message = _("You are not logged in to any queue.")
        elif action == "logout":
            runtime.logout(employee_id, _queue_ids(queue_id))
        elif action == "pause":
            try:
                await service.check_reason(session, user.tenant, reason)
            except ValidationError:
                raise ValidationError(_("Choose one of the company's not-ready reasons.")) from None
            runtime.pause(employee_id, reason)
        else:
            runtime.unpause(employee_id)
    except OrgError as exc:
        message = exc.message
    except (AgentError, CenterError) as exc:
        message = str(exc)
    if message is not None:
        return await _page(request, session, user, message=message, status_code=409)
    return RedirectResponse(PANEL, status_code=303)
