"""Call-center queues in the call engine: a caller who dials a queue's number, or a number (DID) whose
destination is ``{"kind": "queue", "number": "500"}``, waits in the queue and is connected to an agent.

How it works: the queue's logic (who is next, which agent, timeouts, wrap-up, the queue log) is the sans-I/O
:class:`zvonok.callcenter.center.ContactCenter`, reached only through :class:`QueueDesk` (implemented by
:mod:`zvonok.callcenter.desk`); this module carries out what it decides, with the engine's own ways:

- **enter**: we answer the caller ourselves (our endpoint is the far end, as for the IVR), it hears the
  company's music on hold, and joins the queue (``ENTERQUEUE``). Refused at the door (full, no agent
  logged in) it goes to the overflow destination at once;
- **offer** (:meth:`QueueCalls.offer`): every registered device of the agent's extensions rings (one
  fork each, with this module's handler); an agent found in an answered non-queue call is reported busy
  elsewhere and never rung (the center offers the caller to someone else); no device registered, or
  every device refusing, is a failed offer (``RINGNOANSWER``); the center's own ring timeout cancels it;
- **answer**: the first device to answer is connected if the center still gives it the call
  (``CONNECT``): the music stops and the two endpoints are bridged; the other forks are cancelled;
- **announce**: the caller's position (a built-in prompt per position, RU/EN by the tenant's locale)
  plays over the music, which resumes when it ends;
- **overflow** (max wait, full, empty): the music stops, the caller hears ringback and goes to the
  queue's overflow destination (any destination kind of a number), or is hung up when there is none;
- **callback**: a queue with a ``callback_key`` listens for it (RFC 4733) while the caller waits; on it the
  center keeps the caller's place without a call (``CALLBACK``), the caller hears "we will call you back"
  and the call ends (no ``ABANDON``). When its turn comes, :mod:`.queue_callback` rings the agent, then
  calls the customer;
- **priority**: a destination's ``priority`` (an IVR key "9 for key accounts", a DID) goes with the caller
  into the line; the center gives the queue's VIP list's instead when that is higher (``ENTERQUEUE`` says which);
- **transfer**: a REFER to a queue's number (:mod:`.transfers`) puts the transferee in that queue in the
  call's caller's place (:meth:`QueueCalls.transfer_in`); a queue call's agent transferring its caller — into a
  queue, to an extension, attended — ends the queue's part of the call (``TRANSFER``, then the wrap-up);
- **the end**: the engine's ``_finish`` calls :meth:`QueueCalls.left` before it marks the call ended: a
  caller still waiting abandons (``ABANDON``), a connected call completes (``COMPLETEAGENT`` when the
  agent hung up, ``COMPLETECALLER`` otherwise); the agent's wrap-up is the center's. Any call ending also
  frees its parties that were busy elsewhere (:meth:`QueueCalls.finished`).

Center inputs run synchronously (the desk feeds the center and hands its actions back here); each action
that touches a call becomes a step of that call (:meth:`CallControl.step`), so they run in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from zvonok.destination import Destination, stored
from zvonok.logs import get_logger
from zvonok.media.interface import RINGBACK_RU, Endpoint, MediaEngine, PlaybackFinished, Prompt
from zvonok.media.prompts import prompt_path
from zvonok.sip.sdp import Direction as SdpDirection

from . import events as ev
from .agent_codes import AgentOutcome, AgentRequest
from .call import Call, Leg, LegState
from .leg_events import Answered, Challenged, Progress, Terminated
from .queue_callback import QueueCallbacks, may_call_back

log = get_logger(__name__)

MAX_SPOKEN_POSITION = 9  # positions above are announced as "more than nine callers ahead"


@dataclass(frozen=True, slots=True)
class QueueRef:
    id: int
    number: str
    name: str
    callback_key: str | None = None  # the key a waiting caller presses to be called back
    callback_abroad: bool = False  # callers from abroad may be called back too
    ringback: bool = False  # a waiting caller hears the ringback tone, not the music on hold


class QueueInfo(NamedTuple):
    tenant_id: int
    number: str
    callback_abroad: bool = False


class QueueDesk(Protocol):
    """The call center as the engine sees it (:class:`zvonok.callcenter.desk.CenterDesk`)."""

    async def queue(self, tenant_id: int, key: str) -> QueueRef | None: ...

    async def agent_extensions(self, tenant_id: int, agent_id: int) -> list[str]: ...

    def join(self, call_id: str, queue_id: int, *, number: str, priority: int = 0) -> bool: ...

    def caller_left(self, call_id: str) -> None: ...

    def transferred(self, call_id: str, *, target: str) -> None: ...

    def offer_answered(self, call_id: str, agent_id: int) -> bool: ...

    def offer_failed(self, call_id: str, agent_id: int, reason: str) -> None: ...

    def request_callback(self, call_id: str, *, number: str) -> bool: ...

    def callback_answered(self, call_id: str) -> None: ...

    def callback_failed(
        self, call_id: str, reason: str, *, agent_id: int | None = None, final: bool = False
    ) -> None: ...

    def queue_info(self, queue_id: int) -> QueueInfo | None:
        """The queue's tenant, number and what its callbacks may call."""
        ...

    def call_ended(self, call_id: str, *, by_agent: bool) -> None: ...

    def busy_elsewhere(self, agent_id: int, busy: bool) -> None: ...

    def is_busy_elsewhere(self, agent_id: int) -> bool: ...

    def is_agent(self, agent_id: int) -> bool: ...

    async def agent_code(self, tenant_id: int, employee_id: int, request: AgentRequest) -> AgentOutcome:
        """An agent's feature code from its phone (:mod:`.agent_codes`)."""
        ...


class CallControl(Protocol):
    """What the queue application needs of the call engine (:class:`zvonok.telephony.b2bua.CallEngine`)."""

    media: MediaEngine
    bus: Any
    directory: Any
    location: Any
    calls: dict[str, Call]
    dialogs: dict[Any, Leg]
    extension_legs: dict[tuple[int, int], set[Leg]]
    trunks: Any
    transfers: Any
    prompt_language: str
    clock: Callable[[], float]
    recordings_dir: Path | None  # None: calls are not recorded

    def step(self, call: Call, coro: Coroutine[Any, Any, None]) -> None: ...

    def publish(self, event_type: type[ev.CallEvent], call: Call, **fields: Any) -> None: ...

    def reachable(self, binding: Any, policy: str | None) -> bool: ...

    async def _negotiate_caller(self, call: Call) -> bool: ...

    def _answer_caller(self, call: Call, answered_by: Leg | None = None) -> None: ...

    async def _refuse(self, call: Call, status: int, cause: str, reason: str | None = None) -> None: ...

    async def _music_on_hold(self, leg: Leg, on: bool) -> None: ...

    async def _start_recording(self, call: Call, caller: Leg, callee: Leg, part: int = 1) -> None: ...

    async def _endpoints(self, call: Call, count: int) -> list[Endpoint] | None: ...

    def _offer_codecs(self, call: Call) -> list[Any]: ...

    def _fork(
        self,
        call: Call,
        party: ev.Party,
        binding: Any,
        endpoint: Endpoint,
        codecs: list[Any],
        from_display: str,
        domain: str,
        *,
        from_number: str | None = None,
        handler: Callable[[Leg, object], None] | None = None,
        srtp_policy: str | None = None,
    ) -> Leg: ...

    def _cancel_fork(self, leg: Leg, reason: str | None) -> None: ...

    def _leg_hangup(self, leg: Leg) -> None: ...

    def _reinvite(self, leg: Leg, direction: SdpDirection, *, refresh: bool = False) -> None: ...

    def _send_bye(self, leg: Leg) -> None: ...

    def _release(self, leg: Leg) -> None: ...

    def _unanswered_end(self, leg: Leg, event: Terminated) -> int | None: ...

    def _extension_busy(self, call: Call, extension_id: int) -> bool: ...

    async def _set_remote(self, leg: Leg, media: Any) -> None: ...

    async def _watch_media(self, call: Call) -> None: ...

    async def _to_destination(
        self, call: Call, dest: Destination | None, now: float, *, from_number: str
    ) -> None: ...

    def _hangup(
        self,
        call: Call,
        from_leg: Leg | None,
        side: ev.HangupSide,
        cause: str,
        disposition: ev.Disposition | None = None,
    ) -> None: ...


@dataclass(eq=False)
class QueueSession:
    """One caller's stay in a queue (on ``call.queue``)."""

    queue: QueueRef
    from_number: str
    language: str
    # waiting -> connected | overflow | callback; connected -> transferred; "left" once the call ended
    state: str = "waiting"
    offers: dict[int, list[Leg]] = field(default_factory=dict)  # agent -> the forks ringing its devices
    agent_id: int | None = None  # the agent connected
    announcing: bool = False
    visited: tuple[int, ...] = ()  # the queues this call has been in (overflow may not loop)
    priority: int = 0  # what the way in asked (a destination's); the queue's VIP list may give more


def position_prompt(position: int, language: str) -> Path:
    """The built-in prompt telling a caller its place in line."""
    name = f"queue_position_{position}" if 1 <= position <= MAX_SPOKEN_POSITION else "queue_position_many"
    return prompt_path(name, language)


WAIT_MINUTES = (1, 2, 3, 5, 10)  # the waits there are prompts for; longer is "more than ten minutes"


def wait_prompt(seconds: int, language: str) -> Path:
    """The built-in prompt telling a caller its estimated wait: the first of :data:`WAIT_MINUTES` that
    covers it (0-60 s is "about one minute", 61-120 s two, 121-180 s three, then five and ten)."""
    minutes = max(1, -(-seconds // 60))
    bucket = next((m for m in WAIT_MINUTES if minutes <= m), None)
    return prompt_path(f"queue_wait_{bucket}" if bucket is not None else "queue_wait_more", language)


def _failure_reason(status: int) -> str:
    if status in (486, 600):
        return "busy"
    if status in (408, 480, 487):
        return "no_answer"
    return "unavailable"


class QueueCalls:
    """The queue application of one call engine (every tenant's queues: their ids are unique)."""

    def __init__(self, engine: CallControl, desk: QueueDesk) -> None:
        self.engine = engine
        self.desk = desk
        self.callbacks = QueueCallbacks(engine, desk)
        # an agent answering (or answered in) a call that is not from a queue is busy elsewhere at once: the
        # check runs at publish time, while the call is still ours, and delivers nothing
        engine.bus.subscribe(
            self._nothing, event_types=[ev.CallAnswered], where=self._answered_elsewhere, name="queue-agents"
        )
        # a device unregistering (or expiring) while an offer rings it is gone at once, not at the ring timeout
        engine.bus.subscribe(
            self._nothing, event_types=[ev.RegistrationChanged], where=self._devices_changed, name="queue-devices"
        )

    def _answered_elsewhere(self, event: object) -> bool:
        call = self.engine.calls.get(event.call_id) if isinstance(event, ev.CallAnswered) else None
        if call is None or call.queue is not None:
            return False
        if call.originate is not None and call.originate.listener is not None:
            return False  # a queue callback: its agent's state is the center's
        for leg in (call.caller, call.callee):
            employee = leg.party.employee_id if leg is not None else None
            if (
                employee is not None
                and self.desk.is_agent(employee)
                and not self.desk.is_busy_elsewhere(employee)
            ):
                self.desk.busy_elsewhere(employee, True)
        return False

    def _devices_changed(self, event: object) -> bool:
        """An agent's phone that unregisters while an offer rings it will not answer: its fork is cancelled, and
        the offer fails as soon as none of the agent's devices rings any more — the caller is back at the head
        of the line and offered to the next agent now, not after the ring timeout (Timer B, 32 s, for a phone
        that vanished without unregistering). A callback's offer the same (:meth:`QueueCallbacks.device_gone`):
        the request goes to the next agent."""
        if not isinstance(event, ev.RegistrationChanged):
            return False
        for leg in self._ringing_gone_devices(event.tenant_id, event.extension_id):
            session = self._session(leg.call)
            if session is None:
                self.callbacks.device_gone(leg)  # (nothing unless it rings for a callback offer)
                continue
            if session.state != "waiting":
                continue
            for agent_id, ringing in list(session.offers.items()):
                if leg in ringing:
                    self._device_gone(leg.call, session, agent_id, leg)
        return False

    def _ringing_gone_devices(self, tenant_id: int, extension_id: int) -> list[Leg]:
        """The extension's legs still ringing (or trying) a contact that is no longer registered."""
        legs = self.engine.extension_legs.get((tenant_id, extension_id))
        if not legs:
            return []
        contacts = {b.contact for b in self.engine.location.lookup(tenant_id, extension_id, time.time())}
        return [
            leg for leg in legs
            if leg.contact not in contacts and leg.state in (LegState.TRYING, LegState.RINGING)
        ]

    def _device_gone(self, call: Call, session: QueueSession, agent_id: int, leg: Leg) -> None:
        log.info("queue: agent's device gone while rung", call=call.id, agent=agent_id, contact=leg.contact)
        ringing = session.offers[agent_id]
        ringing.remove(leg)  # its final response (487, or Timer B) no longer counts for the offer
        self.engine._cancel_fork(leg, None)
        if all(other.state is LegState.ENDED for other in ringing):
            session.offers.pop(agent_id, None)
            self.desk.offer_failed(call.id, agent_id, "unavailable")

    @staticmethod
    async def _nothing(event: object) -> None:
        return None

    # -- the ways in ----------------------------------------------------------------------------------
    async def lookup(self, tenant_id: int, dialed: str) -> QueueRef | None:
        if not (dialed.isdigit() and 2 <= len(dialed) <= 8):
            return None  # a queue's number is 2-8 digits: outside numbers cost no look-up
        return await self.desk.queue(tenant_id, dialed)

    async def to_queue(self, call: Call, destination: Any, *, from_number: str) -> None:
        """A number's (or a branch's) destination ``{"number": "500"}`` (or the older ``{"queue": name}``),
        with its ``priority`` if it has one (checked when it was written: :class:`zvonok.destination.Queue`)."""
        key = ""
        priority = 0
        if isinstance(destination, dict):
            key = str(destination.get("number") or destination.get("queue") or "")
            given = destination.get("priority")
            priority = given if type(given) is int else 0
        queue = await self.desk.queue(call.tenant_id, key) if key else None
        if queue is None:
            await self.engine._refuse(call, 404, "no_route")
            return
        await self.enter(call, queue, from_number=from_number, priority=priority)

    async def enter(self, call: Call, queue: QueueRef, *, from_number: str, priority: int = 0) -> None:
        engine = self.engine
        before = self._session(call)
        if before is not None and (before.state != "overflow" or queue.id in before.visited):
            # an overflow chain back into a queue it has been in (the caller we answered gets our BYE: left())
            await engine._refuse(call, 480, "no_answer")
            return
        if not await engine._negotiate_caller(call):
            return
        tenant = engine.trunks.snapshot.tenants.get(call.tenant_id) if engine.trunks is not None else None
        session = QueueSession(
            queue=queue,
            from_number=from_number,
            language=tenant.locale if tenant is not None else engine.prompt_language,
            visited=(*before.visited, queue.id) if before is not None else (queue.id,),
            priority=priority,
        )
        call.queue = session
        if not call.answered_at:
            engine._answer_caller(call)
        await self._line_up(call, session)

    async def _line_up(self, call: Call, session: QueueSession) -> None:
        """The answered caller hears the music (the key for a callback listened for) and joins the line."""
        engine = self.engine
        queue = session.queue
        caller = call.caller
        assert caller is not None
        if (
            call.ringback and caller.endpoint is not None
        ):  # overflowed from another queue: music, not ringback
            call.ringback = False
            await engine.media.stop_play(caller.endpoint)
        await self._hold_sound(caller, session)
        if call.ended:
            return
        log.info(
            "queue: caller in line",
            call=call.id,
            tenant=call.tenant_id,
            queue=queue.number,
            caller=session.from_number,
        )
        if queue.callback_key and caller.endpoint is not None:
            key = queue.callback_key
            await engine.media.on_dtmf(caller.endpoint, lambda event: self._key(call, session, key, event.digit))
        # refused: an Overflow comes back at once
        self.desk.join(call.id, queue.id, number=session.from_number, priority=session.priority)

    # -- transfers ------------------------------------------------------------------------------------------
    async def transfer_in(self, transferor: Leg, transferee: Leg, queue: QueueRef) -> str:
        """A blind transfer (REFER, :mod:`.transfers`) to a queue's number: the transferee waits in that queue as
        a caller of a number whose destination is the queue would (music, announcements, its VIP priority), in
        the call's caller's place; the transferor leaves the call (the caller of this ends its leg on a 200). The
        agent of a queue call transferring its caller ends the queue's part of that call first (``TRANSFER``,
        then the agent's wrap-up), as a transfer to an extension does. Returns the sipfrag status line for the
        transferor's NOTIFY."""
        engine = self.engine
        call = transferee.call
        if call.ended or transferee.endpoint is None or transferee.state is not LegState.ANSWERED:
            return "SIP/2.0 481 Call/Transaction Does Not Exist"
        before = self._session(call)
        self.transferred(call, transferor, queue.number)
        from_number = (
            before.from_number if before is not None and transferee is call.caller else transferee.party.number
        )
        tenant = engine.trunks.snapshot.tenants.get(call.tenant_id) if engine.trunks is not None else None
        if before is not None:
            for leg in (leg for legs in before.offers.values() for leg in legs):
                engine._cancel_fork(leg, None)
            before.offers.clear()
            before.state = "left"  # a stay of its own: an overflow from before does not count as a visit
        session = QueueSession(
            queue=queue,
            from_number=from_number,
            language=tenant.locale if tenant is not None else engine.prompt_language,
            visited=(queue.id,),
        )
        # the queue's waiting party is the call's caller: the transferee takes that place, the transferor leaves
        if call.caller is not transferee:
            transferee.role = ev.LegRole.CALLER  # its BYE is the caller's (an abandon, COMPLETECALLER)
            call.caller = transferee
        call.callee = None
        call.queue = session
        await engine.media.unbridge(transferee.endpoint)
        await engine.transfers.restart_recording(call)  # the recorded pair is gone: the new one is recorded
        if transferee.held_by_us and not transferee.held:
            engine._reinvite(transferee, SdpDirection.SENDRECV)  # it may press the callback key, then talk
        log.info("queue: transferred in", call=call.id, tenant=call.tenant_id, queue=queue.number,
                 by=transferor.party.number)
        await self._line_up(call, session)
        return "SIP/2.0 200 OK"

    def transferred(self, call: Call, transferor: Leg, target: str) -> None:
        """``transferor``, a party of this call (its REFER came in its dialog: the agent, as a rule), transferred
        the other elsewhere (``target``: the number): the queue's part of the call is over (``TRANSFER`` with
        hold and talk time; the agent's wrap-up begins). Nothing for a call that is no queue call, or whose
        caller is not talking to its agent."""
        session = self._session(call)
        if session is None or session.state != "connected":
            return
        log.info("queue: call transferred", call=call.id, queue=session.queue.number, agent=session.agent_id,
                 by=transferor.party.number, target=target)
        session.state = "transferred"
        self.desk.transferred(call.id, target=target)

    def _key(self, call: Call, session: QueueSession, key: str, digit: str) -> None:
        if digit != key or call.ended or session.state != "waiting":
            return
        caller = call.caller
        own_extension = caller is not None and caller.party.extension_id is not None \
            and caller.party.number == session.from_number
        if not may_call_back(self.engine, call.tenant_id, session.from_number, abroad=session.queue.callback_abroad,
                             extension=own_extension):
            log.info("queue: no number to call back", call=call.id, caller=session.from_number)
            return  # an anonymous caller (or one from abroad, a premium number…) keeps waiting on the line
        if not self.desk.request_callback(call.id, number=session.from_number):
            return  # no longer in line (refused at the door, an agent's answer crossing the key)
        session.state = "callback"  # the place is kept; the center withdrew its offers (CancelOffer)
        for leg in (leg for legs in session.offers.values() for leg in legs):
            self.engine._cancel_fork(leg, None)
        session.offers.clear()
        log.info("queue: callback requested", call=call.id, queue=session.queue.number, number=session.from_number)
        self.engine.step(call, self._callback_goodbye(call, session))

    async def _callback_goodbye(self, call: Call, session: QueueSession) -> None:
        """"We will call you back", then the call ends (the request holds the place without it)."""
        engine = self.engine
        caller = call.caller
        if call.ended or caller is None or caller.endpoint is None:
            return
        await engine.media.on_dtmf(caller.endpoint, None)
        await engine._music_on_hold(caller, False)
        if session.announcing:
            session.announcing = False
            await engine.media.stop_play(caller.endpoint)
        await engine.media.play(
            caller.endpoint,
            Prompt(path=prompt_path("queue_callback", session.language)),
            on_finished=lambda finished: self._called_back(call),
        )

    def _called_back(self, call: Call) -> None:
        if not call.ended:
            self.engine._hangup(call, None, ev.HangupSide.SYSTEM, "queue_callback")

    # -- what the center decides (called by the desk, synchronously) -------------------------------------
    def offer_callback(self, call_id: str, queue_id: int, agent_id: int, number: str) -> None:
        """The center's turn for a callback request: ring the agent, then call ``number`` (.queue_callback)."""
        self.callbacks.offer(call_id, queue_id, agent_id, number)

    def offer(self, call_id: str, agent_id: int) -> None:
        call = self.engine.calls.get(call_id)
        session = self._session(call)
        if call is None or session is None or session.state != "waiting":
            self.desk.offer_failed(call_id, agent_id, "unavailable")
            return
        session.offers[agent_id] = []
        self.engine.step(call, self._ring_agent(call, session, agent_id))

    def cancel_offer(self, call_id: str, agent_id: int) -> None:
        if self.callbacks.cancel(call_id, agent_id):
            return
        call = self.engine.calls.get(call_id)
        session = self._session(call)
        if call is None or session is None:
            return
        for leg in session.offers.pop(agent_id, []):
            self.engine._cancel_fork(leg, None)

    def announce(self, call_id: str, position: int, wait_estimate: int) -> None:
        call = self.engine.calls.get(call_id)
        session = self._session(call)
        if call is not None and session is not None and session.state == "waiting":
            prompts = [
                position_prompt(position, session.language),
                wait_prompt(wait_estimate, session.language),
            ]
            self.engine.step(call, self._announce(call, session, prompts))

    def overflow(self, call_id: str, reason: str, destination: Any) -> None:
        call = self.engine.calls.get(call_id)
        session = self._session(call)
        if call is None or session is None or session.state != "waiting":
            return
        session.state = "overflow"
        self.engine.step(call, self._overflow(call, session, reason, destination))

    # -- ringing an agent ---------------------------------------------------------------------------------
    async def _ring_agent(self, call: Call, session: QueueSession, agent_id: int) -> None:
        engine = self.engine
        numbers = await self.desk.agent_extensions(call.tenant_id, agent_id)
        extensions = [
            ext
            for n in numbers
            if (ext := await engine.directory.extension(call.tenant_id, n)) is not None and ext.enabled
        ]
        if agent_id not in session.offers or session.state != "waiting" or call.ended:
            return  # withdrawn while we looked (the center's timeout, the caller gone)
        if any(engine._extension_busy(call, ext.extension_id) for ext in extensions):
            log.info("queue: agent busy on another call", call=call.id, agent=agent_id)
            session.offers.pop(agent_id, None)
            self.desk.busy_elsewhere(agent_id, True)  # withdraws the offer (no miss) and offers the caller on
            return
        now = time.time()
        targets = [
            (ext, binding)
            for ext in extensions
            for binding in engine.location.lookup(call.tenant_id, ext.extension_id, now)
            if engine.reachable(binding, ext.srtp)
        ]
        if not targets:
            session.offers.pop(agent_id, None)
            self.desk.offer_failed(call.id, agent_id, "unavailable")
            return
        endpoints = await engine._endpoints(call, len(targets))
        if endpoints is None:
            return
        if agent_id not in session.offers or session.state != "waiting":
            for endpoint in endpoints:
                await engine.media.release(endpoint)
            return
        caller = call.caller
        assert caller is not None
        codecs = engine._offer_codecs(call)
        display = f"{session.queue.name}: {session.from_number}"[:60]
        legs = session.offers[agent_id]
        for (ext, binding), endpoint in zip(targets, endpoints, strict=True):
            legs.append(
                engine._fork(
                    call,
                    ext.party(),
                    binding,
                    endpoint,
                    codecs,
                    display,
                    call.domain,
                    from_number=session.from_number,
                    handler=self._handler(call, session, agent_id),
                    srtp_policy=ext.srtp,
                )
            )
        log.info(
            "queue: ringing agent",
            call=call.id,
            queue=session.queue.number,
            agent=agent_id,
            devices=len(legs),
        )

    def _handler(self, call: Call, session: QueueSession, agent_id: int) -> Callable[[Leg, object], None]:
        return lambda leg, event: self._agent_event(call, session, agent_id, leg, event)

    def _agent_event(self, call: Call, session: QueueSession, agent_id: int, leg: Leg, event: object) -> None:
        engine = self.engine
        if isinstance(event, Progress):
            if leg.state is LegState.TRYING:
                leg.state = LegState.RINGING
                engine.publish(ev.LegRinging, call, leg_id=leg.id, early_media=False)
            return
        if isinstance(event, Challenged):
            engine._leg_hangup(leg)
            return
        if isinstance(event, Answered):
            assert leg.sip is not None and leg.sip.dialog is not None
            leg.dialog = leg.sip.dialog
            ours = (
                not call.ended
                and not leg.cancelled
                and session.state == "waiting"
                and leg in session.offers.get(agent_id, ())
            )
            if not ours or not self.desk.offer_answered(call.id, agent_id):
                engine._send_bye(leg)  # too late: another agent took it, or the caller left
                leg.state = LegState.ENDED
                engine._release(leg)
                return
            session.state = "connected"
            session.agent_id = agent_id
            for other in session.offers.pop(agent_id, []):
                if other is not leg and other.state is not LegState.ENDED:
                    engine._cancel_fork(other, 'SIP;cause=200;text="Call completed elsewhere"')
            for legs in session.offers.values():  # (the center cancelled the rest of a ring-all already)
                for other in legs:
                    engine._cancel_fork(other, None)
            session.offers.clear()
            leg.state = LegState.ANSWERED
            leg.media = event.media
            call.callee = leg
            engine.dialogs[leg.dialog.key] = leg
            engine.step(call, self._connect(call, session, leg))
            return
        if not isinstance(event, Terminated):
            return
        status = engine._unanswered_end(leg, event)
        if status is None:
            return
        leg.state = LegState.ENDED
        leg.final_status = status
        engine.publish(ev.LegEnded, call, leg_id=leg.id, cause=f"sip_{status}")
        engine._release(leg)
        ringing = session.offers.get(agent_id)
        if ringing is not None and leg in ringing and all(other.state is LegState.ENDED for other in ringing):
            session.offers.pop(agent_id, None)
            self.desk.offer_failed(call.id, agent_id, _failure_reason(status))

    async def _connect(self, call: Call, session: QueueSession, leg: Leg) -> None:
        engine = self.engine
        caller = call.caller
        if call.ended or caller is None or caller.endpoint is None or leg.endpoint is None:
            return
        if leg.media is None:
            engine._hangup(call, None, ev.HangupSide.SYSTEM, "incompatible_media")
            return
        await engine._set_remote(leg, leg.media)
        await engine._music_on_hold(caller, False)
        if session.announcing:
            session.announcing = False
            await engine.media.stop_play(caller.endpoint)
        await engine.media.bridge(caller.endpoint, leg.endpoint)
        if call.ended:
            return
        engine.publish(ev.LegAnswered, call, leg_id=leg.id)
        log.info(
            "queue: caller connected to agent",
            call=call.id,
            queue=session.queue.number,
            agent=session.agent_id,
        )
        await engine._watch_media(call)
        if engine.recordings_dir is not None:  # recorded from the agent's answer, as any answered call
            await engine._start_recording(call, caller, leg)

    # -- while waiting --------------------------------------------------------------------------------
    async def _announce(self, call: Call, session: QueueSession, prompts: list[Path]) -> None:
        """Play ``prompts`` one after the other over the music (which stops meanwhile)."""
        engine = self.engine
        caller = call.caller
        if (
            call.ended
            or session.state != "waiting"
            or caller is None
            or caller.endpoint is None
            or not prompts
        ):
            return
        await engine._music_on_hold(caller, False)
        session.announcing = True
        first, rest = prompts[0], prompts[1:]
        await engine.media.play(
            caller.endpoint,
            Prompt(path=first),
            on_finished=lambda finished: self._announced(call, session, finished, rest),
        )

    def _announced(
        self, call: Call, session: QueueSession, finished: PlaybackFinished, rest: list[Path]
    ) -> None:
        if call.ended or not session.announcing or finished.stopped:
            return  # (stopped: a newer announcement, the agent's answer or the overflow took over)
        session.announcing = False
        if session.state == "waiting":
            self.engine.step(
                call, self._announce(call, session, rest) if rest else self._music(call, session)
            )

    async def _music(self, call: Call, session: QueueSession) -> None:
        caller = call.caller
        if not call.ended and session.state == "waiting" and not session.announcing and caller is not None:
            await self._hold_sound(caller, session)

    async def _hold_sound(self, caller: Leg, session: QueueSession) -> None:
        """The queue's sound for a waiting caller: the company's music on hold, or the ringback tone. Either
        is stopped the same way (``_music_on_hold(caller, False)``: the leg is marked as hearing it)."""
        if not session.queue.ringback:
            await self.engine._music_on_hold(caller, True)
            return
        if caller.endpoint is None or caller.hearing_music:
            return
        await self.engine.media.play(caller.endpoint, RINGBACK_RU)
        caller.hearing_music = True

    async def _overflow(self, call: Call, session: QueueSession, reason: str, destination: Any) -> None:
        engine = self.engine
        caller = call.caller
        if call.ended or caller is None or caller.endpoint is None:
            return
        session.announcing = False
        await engine._music_on_hold(caller, False)
        kind = str(destination.get("kind") or "") if isinstance(destination, dict) else ""
        log.info(
            "queue: overflow",
            call=call.id,
            queue=session.queue.number,
            reason=reason,
            destination=kind or None,
        )
        if not kind or kind == "none":
            engine._hangup(call, None, ev.HangupSide.SYSTEM, f"queue_{reason}")
            return
        await engine.media.play(caller.endpoint, RINGBACK_RU)  # the engine stops it when the far end answers
        call.ringback = True
        payload = {k: v for k, v in destination.items() if k != "kind"}
        await engine._to_destination(call, stored(kind, payload), time.time(), from_number=session.from_number)

    # -- the end --------------------------------------------------------------------------------------
    def left(self, call: Call, side: ev.HangupSide) -> None:
        """The engine is finishing the call (before it marks it ended)."""
        session = self._session(call)
        if session is None:
            return
        state, session.state = session.state, "left"
        offers = [leg for legs in session.offers.values() for leg in legs]
        session.offers.clear()
        for leg in offers:
            self.engine._cancel_fork(leg, None)
        if state == "waiting":
            self.desk.caller_left(call.id)
        elif state == "connected":
            self.desk.call_ended(call.id, by_agent=side is ev.HangupSide.CALLEE)
        elif state == "overflow":
            caller = call.caller
            if (
                call.callee is None
                and side is not ev.HangupSide.CALLER
                and caller is not None
                and caller.state is LegState.ANSWERED
            ):
                self.engine._hangup(call, None, ev.HangupSide.SYSTEM, "queue_overflow_failed")

    def finished(self, call: Call) -> None:
        """Any call ended: its parties who were agents busy on it may be offered queue calls again."""
        for leg in (call.caller, call.callee):
            employee = leg.party.employee_id if leg is not None else None
            if employee is None or not self.desk.is_busy_elsewhere(employee):
                continue
            if not any(
                self._in_call(other, employee) for other in self.engine.calls.values() if other is not call
            ):
                self.desk.busy_elsewhere(employee, False)

    def holds(self, call: Call) -> bool:
        """The caller waits in a queue or talks to its agent: the queue owns the call's outcome."""
        session = self._session(call)
        return session is not None and session.state in ("waiting", "connected")

    def on_other_call(self, employee: int) -> bool:
        """The employee talks in a call of this node that is not a queue's (nor a queue callback): an agent
        logging in meanwhile is busy elsewhere from the start (the call center's ``on_other_call``)."""
        return any(
            call.queue is None
            and (call.originate is None or call.originate.listener is None)
            and self._in_call(call, employee)
            for call in self.engine.calls.values()
        )

    @staticmethod
    def _in_call(call: Call, employee: int) -> bool:
        return not call.ended and any(
            leg is not None and leg.party.employee_id == employee and leg.state is LegState.ANSWERED
            for leg in (call.caller, call.callee)
        )

    @staticmethod
    def _session(call: Call | None) -> QueueSession | None:
        session = call.queue if call is not None else None
        return session if isinstance(session, QueueSession) else None
