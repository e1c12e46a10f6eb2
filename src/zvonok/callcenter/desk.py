"""The call center's side of queue calls: :class:`CenterDesk` is the port the call engine's queue application
(:class:`zvonok.telephony.queue_call.QueueCalls`) talks to.

Callers' and offers' events go into the process's :class:`~.runtime.CallCenterRuntime` (so the queue log,
the bus events and the timer work as for the API's inputs); the center's actions come back to the
application — each one in a callback of its own on the event loop (``call_soon``), never inside the
runtime's draining of the center, so an input the application makes while carrying one out (an offer that
fails at once) is a fresh input, not one nested in another. Queue numbers and agents' extensions are read
from the database here (telephony runs no SQL). A callback's offer goes to the application's
``offer_callback`` (:mod:`zvonok.telephony.queue_callback`: the agent's phone first, then the customer), which
reports back with ``callback_answered`` / ``callback_failed``. Several nodes: an offer rings only once the
runtime has taken the agent for this node (:meth:`~.runtime.CallCenterRuntime.claim`). An agent's feature
code from its phone (:mod:`zvonok.telephony.agent_codes`: ``*45`` log in, ``*46`` log out, ``*47`` pause,
``*47<code>`` pause with the company's reason of that code) goes to the same runtime methods as the REST API's
login, logout, pause and unpause.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sqlalchemy import select

from zvonok.org import events as org_events
from zvonok.org.models import Employee, Extension
from zvonok.telephony.agent_codes import PHONE_PAUSE_REASON, AgentCode, AgentOutcome, AgentRequest
from zvonok.telephony.queue_call import QueueInfo, QueueRef

from . import service
from .agents import AgentError, AgentStatus
from .center import Action, Announce, CancelOffer, CenterError, Offer, Overflow
from .queues import HoldSound
from .runtime import CallCenterRuntime

if TYPE_CHECKING:
    from zvonok.telephony.queue_call import QueueCalls


class CenterDesk:
    def __init__(self, runtime: CallCenterRuntime) -> None:
        self.runtime = runtime
        self.app: QueueCalls | None = None
        self._claims: set[asyncio.Future[None]] = set()  # offers waiting for their agent's claim
        # each agent's extension numbers, read once and kept until an extension, employee or company of that
        # tenant changes (in this process or another: the database's listeners get both). Every offer needs
        # them, and a query queued behind the CDR and queue-log writes on the one database connection was
        # most of the time from an agent becoming free to its phone ringing.
        self._extensions: dict[tuple[int, int], list[str]] = {}
        runtime.db.add_listener(self._on_org_event)

    def _on_org_event(self, event: object) -> None:
        if isinstance(event, org_events.ExtensionCreated | org_events.ExtensionChanged | org_events.ExtensionDeleted
                      | org_events.EntityChanged | org_events.TenantChanged | org_events.TenantDeleted):
            tenant = event.tenant_id
            self._extensions = {key: numbers for key, numbers in self._extensions.items() if key[0] != tenant}

    def attach(self, app: QueueCalls) -> None:
        self.app = app
        self.runtime.action_handlers.append(self._on_action)
        self.runtime.on_other_call = app.on_other_call  # an agent logging in during a call is busy at once

    # -- the center's actions, for the engine -----------------------------------------------------------
    def _on_action(self, action: Action) -> None:
        asyncio.get_running_loop().call_soon(self._apply, action)

    def _apply(self, action: Action) -> None:
        app = self.app
        if app is None:
            return
        if isinstance(action, Offer):
            if self.runtime.claims is not None:  # several nodes: the agent is taken for this node first
                task = asyncio.ensure_future(self._claim_and_offer(action))
                self._claims.add(task)
                task.add_done_callback(self._claims.discard)
                return
            self._ring(app, action)
        elif isinstance(action, CancelOffer):
            app.cancel_offer(action.call_id, action.agent_id)
        elif isinstance(action, Announce):
            app.announce(action.call_id, action.position, action.wait_estimate)
        elif isinstance(action, Overflow):
            app.overflow(action.call_id, action.reason, action.destination)

    async def _claim_and_offer(self, action: Offer) -> None:
        if await self.runtime.claim(action.agent_id, action.call_id) and self.app is not None:
            self._ring(self.app, action)

    @staticmethod
    def _ring(app: QueueCalls, action: Offer) -> None:
        if action.callback:  # the agent's phone first, then the customer (telephony/queue_callback.py)
            app.offer_callback(action.call_id, action.queue_id, action.agent_id, action.number)
        else:
            app.offer(action.call_id, action.agent_id)

    # -- look-ups -------------------------------------------------------------------------------------------
    async def queue(self, tenant_id: int, key: str) -> QueueRef | None:
        """A queue of the tenant by its number (or, for older destinations, its name). From the center's own
        copy of the queues (kept current from the database's committed events): a caller joining never waits
        for the database behind the CDR and queue-log writes."""
        by_name = None
        for config in self.runtime.center.queues.values():
            if config.tenant_id != tenant_id:
                continue
            if config.number == key:
                by_name = config
                break
            if by_name is None and config.name == key:
                by_name = config
        if by_name is None:
            return None
        return QueueRef(id=by_name.id, number=by_name.number, name=by_name.name, callback_key=by_name.callback_key,
                        callback_abroad=by_name.callback_abroad, ringback=by_name.hold_sound is HoldSound.RINGBACK)

    def queue_info(self, queue_id: int) -> QueueInfo | None:
        config = self.runtime.center.queues.get(queue_id)
        return QueueInfo(config.tenant_id, config.number, config.callback_abroad) if config is not None else None

    async def agent_extensions(self, tenant_id: int, agent_id: int) -> list[str]:
        key = (tenant_id, agent_id)
        cached = self._extensions.get(key)
        if cached is not None:
            return list(cached)
        generation = self._extensions
        async with self.runtime.db.session() as session:
            rows = await session.execute(
                select(Extension.number)
                .where(
                    Extension.tenant_id == tenant_id,
                    Extension.employee_id == agent_id,
                    Extension.enabled.is_(True),
                )
                .order_by(Extension.number)
            )
            numbers = list(rows.scalars())
        if self._extensions is generation:  # no change arrived while we read (else the next offer reads again)
            generation[key] = numbers
        return list(numbers)

    # -- inputs -------------------------------------------------------------------------------------------
    def join(self, call_id: str, queue_id: int, *, number: str, priority: int = 0) -> bool:
        """``priority``: the way in's (a destination's); the center gives the queue's VIP list's if higher."""
        return self.runtime.feed(lambda c, now: c.join(call_id, queue_id, now, number=number, priority=priority))

    def caller_left(self, call_id: str) -> None:
        self.runtime.feed(lambda c, now: c.caller_left(call_id, now))

    def transferred(self, call_id: str, *, target: str) -> None:
        self.runtime.feed(lambda c, now: c.transferred(call_id, now, target=target))

    def offer_answered(self, call_id: str, agent_id: int) -> bool:
        return self.runtime.feed(lambda c, now: c.offer_answered(call_id, agent_id, now))

    def offer_failed(self, call_id: str, agent_id: int, reason: str) -> None:
        self.runtime.feed(lambda c, now: c.offer_failed(call_id, agent_id, now, reason=reason))

    def request_callback(self, call_id: str, *, number: str) -> bool:
        """False when the call is not in line (any more): no callback is left."""
        if call_id not in self.runtime.center.waiting:
            return False
        self.runtime.feed(lambda c, now: c.request_callback(call_id, now, number=number or None))
        return True

    def callback_answered(self, call_id: str) -> None:
        self.runtime.feed(lambda c, now: c.callback_answered(call_id, now))

    def callback_failed(self, call_id: str, reason: str, *, agent_id: int | None = None, final: bool = False) -> None:
        self.runtime.feed(
            lambda c, now: c.callback_failed(call_id, now, reason=reason, agent_id=agent_id, final=final))

    def call_ended(self, call_id: str, *, by_agent: bool) -> None:
        self.runtime.feed(lambda c, now: c.call_ended(call_id, now, by_agent=by_agent))

    def busy_elsewhere(self, agent_id: int, busy: bool) -> None:
        self.runtime.feed(lambda c, now: c.set_busy_elsewhere(agent_id, busy, now))

    def is_busy_elsewhere(self, agent_id: int) -> bool:
        agent = self.runtime.center.agents.get(agent_id)
        return agent is not None and agent.busy_elsewhere

    def is_agent(self, agent_id: int) -> bool:
        """Logged in to a queue (or finishing a queue call)."""
        agent = self.runtime.center.agents.get(agent_id)
        return agent is not None and agent.status is not AgentStatus.OFFLINE

    # -- agents' feature codes ----------------------------------------------------------------------------
    async def agent_code(self, tenant_id: int, employee_id: int, request: AgentRequest) -> AgentOutcome:
        """``*45`` / ``*46`` (all the employee's queues, or the one numbered), ``*47`` (pause or resume) and
        ``*47<code>`` (pause with that reason, or change to it when paused)."""
        runtime = self.runtime
        queue_id = None
        if request.queue:
            queue_id = next((q.id for q in runtime.center.queues.values()
                             if q.tenant_id == tenant_id and q.number == request.queue), None)
            if queue_id is None:
                return AgentOutcome.NOT_AGENT
        reason = None
        if request.reason_code:  # read before the agent's state: nothing awaited between its check and the pause
            reason = await self.reason_for_code(tenant_id, request.reason_code)
            if reason is None:
                return AgentOutcome.UNKNOWN_REASON
        agent = runtime.agent(tenant_id, employee_id)
        try:
            if request.code is AgentCode.LOGIN:
                membership = await self.membership(tenant_id, employee_id)
                if membership is None:
                    return AgentOutcome.NOT_AGENT
                queues, skills = membership
                wanted = [q for q in queues if q in runtime.center.queues and queue_id in (None, q)]
                if not wanted:
                    return AgentOutcome.NOT_AGENT
                state = runtime.login(tenant_id, employee_id, wanted, skills)
                # logged in while paused: still paused (low beeps: no queue calls yet; *47 resumes)
                return AgentOutcome.PAUSED if state.status is AgentStatus.NOT_READY else AgentOutcome.LOGGED_IN
            logged_in = set(agent.queues) if agent is not None else set()
            if request.code is AgentCode.LOGOUT:
                if not (logged_in if queue_id is None else logged_in & {queue_id}):
                    return AgentOutcome.NOT_LOGGED_IN
                runtime.logout(employee_id, None if queue_id is None else [queue_id])
                return AgentOutcome.LOGGED_OUT
            if agent is None or agent.status is AgentStatus.OFFLINE:
                return AgentOutcome.NOT_LOGGED_IN
            if reason is not None:
                # *47<code> is never a toggle: paused already, the reason changes; during a call, the pause
                # waiting for the call's end takes the new one
                runtime.pause(employee_id, reason)
                return AgentOutcome.PAUSED
            if agent.status is AgentStatus.NOT_READY or agent.pause_after is not None:
                runtime.unpause(employee_id)  # (a pause waiting for the call's end is dropped, too)
                return AgentOutcome.RESUMED
            runtime.pause(employee_id, PHONE_PAUSE_REASON)
            return AgentOutcome.PAUSED
        except (AgentError, CenterError):
            return AgentOutcome.NOT_LOGGED_IN

    async def reason_for_code(self, tenant_id: int, code: str) -> str | None:
        """The name of the company's not-ready reason with that ``*47`` code (None: no reason has it)."""
        async with self.runtime.db.session() as session:
            reason = await service.reason_by_code(session, tenant_id, code)
            return reason.name if reason is not None else None

    async def membership(self, tenant_id: int, employee_id: int) -> tuple[list[int], dict[str, int]] | None:
        """The queues an active employee is a member of and its skills (None: no such active employee)."""
        async with self.runtime.db.session() as session:
            employee = await session.get(Employee, employee_id)
            if employee is None or employee.tenant_id != tenant_id or not employee.active:
                return None
            return (await service.member_queues(session, tenant_id, employee_id),
                    await service.skills(session, tenant_id, employee_id))
