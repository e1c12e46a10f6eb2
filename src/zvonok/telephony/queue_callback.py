"""Queue callbacks in the call engine: the center's ``Offer(callback=True)`` carried out as an originated call.

How it works: a caller who pressed its queue's callback key keeps its place in line without a call
(:meth:`zvonok.callcenter.center.ContactCenter.request_callback`). When its turn comes the center offers it
to an agent, and :meth:`QueueCallbacks.offer` places the call the way click-to-call does
(:meth:`zvonok.telephony.originate.Originator.ring_first`): the agent's phones ring first (an agent busy on
another call is reported busy elsewhere and never rung; no phone registered is a failed offer, as for a
queue call). Before anything rings, the customer's number is checked as the queue's company would dial it
— an extension of the company, or an outside number allowed by the company's calling permissions
(:func:`.outside.check_outside`); a number that cannot be called gives the callback up at once. The number
is the caller's caller ID, which anyone can forge: whatever the company lets its employees dial, a callback
only calls local, mobile and long-distance numbers of the company's country (:data:`CALLBACK_CLASSES`) —
never a premium-rate or an emergency number (toll fraud: a forged premium number asking for callbacks),
and abroad only for a queue whose owner opted in (``callback_abroad``: a company with customers abroad,
which pays the international rate and keeps its calling permissions and spending limits on it). A caller whose number is not one of those is not offered the callback: the key does nothing
(:func:`may_call_back`), as for an anonymous caller.

Each offer is a :class:`CallbackOffer`, the originated call's :class:`~.originate.OriginateListener`:

- the agent answers: the center is asked whether the offer still stands (``offer_answered``: the agent is
  ON_CALL); if not (withdrawn meanwhile) the agent's phone gets BYE. Otherwise the engine's own outside
  routing dials the customer (rated, spending limits, trunks by the dialing rules, the company's caller ID)
  while the agent hears ringback;
- the customer answers: the two are bridged by the engine as any call, and the center logs ``CONNECT``
  (``callback_answered``);
- the end: a connected callback completes as a queue call (the agent's wrap-up); a customer who did not
  answer (busy, no answer, a failed route) is a failed attempt (``CALLBACKFAILED``: retried after the
  queue's delay, given up after its attempts); the agent hanging up first is no attempt; an agent's phone
  that never answered is a failed offer (``RINGNOANSWER``) and the request keeps its place.

The call's events are an originated call's (the agent is the caller, the customer the callee), plus
:class:`~.events.QueueCallbackPlaced`, which names the queue in the CDR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zvonok.dialing import DestinationClass, InvalidNumber, normalize
from zvonok.logs import get_logger
from zvonok.pstn.routing import CallerProfile

from . import events as ev
from .call import Call, Leg, LegState
from .originate import OriginateRefused, Target
from .outside import OutsideRefused, check_outside

if TYPE_CHECKING:
    from .queue_call import QueueDesk

log = get_logger(__name__)

CALLBACK_CLASSES = frozenset({DestinationClass.LOCAL, DestinationClass.MOBILE, DestinationClass.LONG_DISTANCE})
ABROAD_CLASSES = CALLBACK_CLASSES | {DestinationClass.INTERNATIONAL}  # a queue that opted in (callback_abroad)


def callback_classes(abroad: bool) -> frozenset[DestinationClass]:
    return ABROAD_CLASSES if abroad else CALLBACK_CLASSES


def may_call_back(engine: Any, tenant_id: int, number: str, *, abroad: bool = False,
                  extension: bool = False) -> bool:
    """Whether a caller from ``number`` may leave a callback request: a number the company could call back
    (an extension — ``extension``: the caller is the company's own extension of that number —, or an outside
    number of :data:`CALLBACK_CLASSES`, or abroad too when the queue opted in; the company's calling
    permissions are checked when the callback is placed)."""
    if not number.removeprefix("+").isdigit():
        return False  # anonymous
    if extension or engine.trunks is None:
        return True  # no outside calls here: an extension, checked when placed
    try:
        dest = normalize(number, engine.trunks.snapshot.plan_for(tenant_id, None))
    except InvalidNumber:
        return False
    return dest.klass is DestinationClass.INTERNAL or dest.klass in callback_classes(abroad)


# why the agent's phones did not answer, as the center's offer failures name it
_OFFER_FAILURES = {"employee_busy": "busy", "employee_declined": "busy", "employee_no_answer": "no_answer"}


def customer_failure(reason: str | None) -> str:
    """The queue log's reason for a customer not reached: busy, no_answer, or the originate's own reason."""
    status = reason.removeprefix("sip_") if reason else ""
    if status.isdigit():
        code = int(status)
        return "busy" if code in (486, 600, 603) else "no_answer" if code in (408, 480, 487) else "failed"
    return reason or "failed"


@dataclass(eq=False)
class CallbackOffer:
    """One offer of a callback to one agent; ``state``: ringing -> dialing -> connected, or done."""

    request_call_id: str  # the customer's original call: the center's and the queue log's call id
    tenant_id: int
    queue_id: int
    queue_number: str
    agent_id: int
    number: str  # the customer's number
    desk: QueueDesk
    abroad: bool = False  # the queue calls back abroad too
    state: str = "ringing"
    call_id: str | None = None  # the originated call

    def answered(self, call: Call, leg: Leg) -> bool:
        if self.state != "ringing" or not self.desk.offer_answered(self.request_call_id, self.agent_id):
            self.state = "done"
            return False
        self.state = "dialing"
        log.info(
            "queue callback: the agent answered, calling the customer",
            call=call.id,
            request=self.request_call_id,
            agent=self.agent_id,
        )
        return True

    def connected(self, call: Call) -> None:
        if self.state == "dialing":
            self.state = "connected"
            self.desk.callback_answered(self.request_call_id)

    def ended(self, call: Call, connected: bool, reason: str | None) -> None:
        state, self.state = self.state, "done"
        if state == "connected":
            self.desk.call_ended(self.request_call_id, by_agent=call.hangup_side is ev.HangupSide.CALLER)
        elif state == "dialing":
            failure = "agent_hung_up" if reason == "employee_hung_up" else customer_failure(reason)
            log.info(
                "queue callback: the customer was not reached",
                call=call.id,
                request=self.request_call_id,
                reason=failure,
            )
            self.desk.callback_failed(self.request_call_id, failure)
        elif state == "ringing":
            self.desk.offer_failed(
                self.request_call_id, self.agent_id, _OFFER_FAILURES.get(reason or "", "unavailable")
            )


class QueueCallbacks:
    """The callbacks of one call engine (reached through :class:`zvonok.telephony.queue_call.QueueCalls`)."""

    def __init__(self, engine: Any, desk: QueueDesk) -> None:
        self.engine = engine  # zvonok.telephony.b2bua.CallEngine
        self.desk = desk
        self.offers: dict[tuple[str, int], CallbackOffer] = {}  # (request call id, agent) -> its offer

    def offer(self, request_call_id: str, queue_id: int, agent_id: int, number: str) -> None:
        queue = self.desk.queue_info(queue_id)
        if queue is None or self.engine.originator is None:
            self.desk.offer_failed(request_call_id, agent_id, "unavailable")
            return
        tenant_id, queue_number, abroad = queue
        # the finished offers go now: what is left is bounded by the agents ringing or talking
        self.offers = {key: o for key, o in self.offers.items() if o.state != "done"}
        offer = CallbackOffer(
            request_call_id=request_call_id,
            tenant_id=tenant_id,
            queue_id=queue_id,
            queue_number=queue_number,
            agent_id=agent_id,
            number=number,
            desk=self.desk,
            abroad=abroad,
        )
        self.offers[(request_call_id, agent_id)] = offer
        self.engine.spawn(self._start(offer))

    def cancel(self, request_call_id: str, agent_id: int) -> bool:
        """The center withdrew the offer (its ring timeout, the agent paused): stop the agent's phones."""
        offer = self.offers.get((request_call_id, agent_id))
        if offer is None:
            return False
        if offer.state == "ringing":
            offer.state = "done"
            call = self.engine.calls.get(offer.call_id) if offer.call_id is not None else None
            session = call.originate if call is not None else None
            if session is not None and call is not None and call.caller is None:
                session.reason = "employee_no_answer"
                for leg in session.employee_legs:
                    self.engine._cancel_fork(leg, None)
        return True

    def device_gone(self, leg: Leg) -> None:
        """An agent's phone that unregisters while a callback offer rings it will not answer: its fork is
        cancelled, and when none of the agent's phones rings any more the originated call fails as on a refusal
        (``RINGNOANSWER``, the request keeps its place and is offered to the next agent), not at the ring
        timeout."""
        call = leg.call
        session = call.originate
        offer = session.listener if session is not None else None
        if not isinstance(offer, CallbackOffer) or offer.state != "ringing" or self.engine.originator is None:
            return
        log.info(
            "queue callback: agent's device gone while rung",
            call=call.id,
            request=offer.request_call_id,
            agent=offer.agent_id,
            contact=leg.contact,
        )
        self.engine.originator.device_gone(call, leg)

    async def _start(self, offer: CallbackOffer) -> None:
        try:
            await self._place(offer)
        except Exception:
            if offer.state == "ringing" and offer.call_id is None:  # the request keeps its place
                offer.state = "done"
                self.desk.offer_failed(offer.request_call_id, offer.agent_id, "unavailable")
            raise

    async def _place(self, offer: CallbackOffer) -> None:
        engine = self.engine
        tenant_id = offer.tenant_id
        numbers = await self.desk.agent_extensions(tenant_id, offer.agent_id)
        extensions = [
            ext
            for n in numbers
            if (ext := await engine.directory.extension(tenant_id, n)) is not None and ext.enabled
        ]
        if offer.state != "ringing":
            return  # withdrawn while we looked
        if any(self._talking(call, offer.agent_id) for call in list(engine.calls.values())):
            offer.state = "done"
            self.desk.busy_elsewhere(offer.agent_id, True)  # withdraws the offer without a miss
            return
        target = await self._target(offer)
        if target is None or offer.state != "ringing":
            return
        if not extensions:
            offer.state = "done"
            self.desk.offer_failed(offer.request_call_id, offer.agent_id, "unavailable")
            return
        try:
            session = await engine.originator.ring_first(tenant_id, extensions, target, offer)
        except OriginateRefused as refused:
            log.info(
                "queue callback: the agent cannot be rung",
                request=offer.request_call_id,
                agent=offer.agent_id,
                reason=refused.reason,
            )
            if offer.state == "ringing":
                offer.state = "done"
                self.desk.offer_failed(offer.request_call_id, offer.agent_id, "unavailable")
            return
        offer.call_id = session.call_id
        call = engine.calls.get(session.call_id)
        if call is not None:
            engine.publish(
                ev.QueueCallbackPlaced,
                call,
                queue_id=offer.queue_id,
                queue_number=offer.queue_number,
                agent_id=offer.agent_id,
                number=target.number,
                request_call_id=offer.request_call_id,
            )
            if offer.state == "done" and call.caller is None:  # withdrawn while the forks were placed
                session.reason = "employee_no_answer"
                for leg in session.employee_legs:
                    engine._cancel_fork(leg, None)
        log.info(
            "queue callback: ringing the agent",
            call=session.call_id,
            request=offer.request_call_id,
            queue=offer.queue_number,
            agent=offer.agent_id,
            number=target.number,
        )

    async def _target(self, offer: CallbackOffer) -> Target | None:
        """The customer as the company would dial it; None (the callback given up) when it cannot be."""
        engine = self.engine
        callee = await engine.directory.extension(offer.tenant_id, offer.number) if offer.number else None
        if offer.state != "ringing":
            return None  # withdrawn while we looked
        if callee is not None:
            return Target(number=callee.number, extension=callee)
        cause = "no_number"
        if offer.number and engine.trunks is not None:
            profile = CallerProfile(tenant_id=offer.tenant_id)
            try:
                checked = check_outside(engine.trunks.snapshot, profile, offer.number)
            except OutsideRefused as refused:
                cause = refused.cause
            else:
                if checked.dest.klass in callback_classes(offer.abroad):
                    return Target(number=checked.dest.number, profile=profile)
                cause = "not_allowed"  # premium-rate, emergency (abroad unless opted in): not for a forgeable number
        log.warning(
            "queue callback: the number cannot be called, given up",
            request=offer.request_call_id,
            number=offer.number,
            cause=cause,
        )
        offer.state = "done"
        self.desk.callback_failed(offer.request_call_id, cause, agent_id=offer.agent_id, final=True)
        return None

    @staticmethod
    def _talking(call: Call, employee: int) -> bool:
        return not call.ended and any(
            leg is not None and leg.party.employee_id == employee and leg.state is LegState.ANSWERED
            for leg in (call.caller, call.callee)
        )
