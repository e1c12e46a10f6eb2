"""The contact center's state machine: waiting callers, agents, offers — sans-I/O.

How it works: the call engine feeds :class:`ContactCenter` what happens, each input with ``now`` (a
monotonic clock): a caller :meth:`~ContactCenter.join`\\ s a queue or leaves it (:meth:`~ContactCenter.caller_left`,
:meth:`~ContactCenter.request_callback`), an agent's phone answers an offer or not
(:meth:`~ContactCenter.offer_answered`, :meth:`~ContactCenter.offer_failed`), a queue call ends
(:meth:`~ContactCenter.call_ended`, :meth:`~ContactCenter.transferred`), an agent logs in, out, pauses,
or is on a non-queue call (:meth:`~ContactCenter.login`, :meth:`~ContactCenter.logout`,
:meth:`~ContactCenter.pause`, :meth:`~ContactCenter.unpause`, :meth:`~ContactCenter.set_busy_elsewhere`), or
— several nodes — is taken by another node (:meth:`~ContactCenter.set_held_elsewhere`).
It then drains :meth:`~ContactCenter.take_actions` — :class:`Offer` (ring this agent for this call),
:class:`CancelOffer`, :class:`Announce` (tell the caller its position and estimated wait) and
:class:`Overflow` (send the caller to the queue's overflow destination) — and
:meth:`~ContactCenter.take_log` (the queue log, :mod:`.log`), and re-arms one timer on
:meth:`~ContactCenter.next_deadline`, calling :meth:`~ContactCenter.handle_timer` when it passes.

The order of the line: a heavier queue's callers first (queues sharing agents), then a higher caller
priority (VIP), then the earlier arrival. A caller whose offer fails (no answer, busy, the agent's phone
went away) keeps that place, so it is offered again first. A callback request keeps the place too: the
live call ends, and when its turn comes the agent's phone rings first (``Offer.callback``); when the agent
answers (:meth:`~ContactCenter.offer_answered`: ON_CALL, no ``CONNECT`` yet) the engine calls the customer,
and reports :meth:`~ContactCenter.callback_answered` (``CONNECT``) or
:meth:`~ContactCenter.callback_failed` (``CALLBACKFAILED``: the request goes back to its place, offered again
once the queue's ``callback_retry`` has passed, and is given up after ``callback_attempts`` attempts).
Each step of a callback request is also put out as a :class:`CallbackChange`
(:meth:`~ContactCenter.take_callback_changes`), which the runtime keeps in the database; after a restart
:meth:`~ContactCenter.restore_callback` puts the waiting requests back in their places, and a supervisor may
:meth:`~ContactCenter.cancel_callback` one.

One invariant makes dispatching cheap: after every input, no waiting caller that is not being offered
has an eligible available agent. So a caller who joins is matched against the available agents only,
an agent who becomes available against the waiting callers only, and only time (a skill relaxation
point, the end of an agent's retry pause) calls for a wider look — with 1,000 callers waiting, an agent
finishing wrap-up costs one pass over the line, not a pass per caller and agent.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import log as ql
from .agents import BUSY, TRANSITIONS, Agent, AgentError, AgentStatus
from .log import QueueLogEntry
from .queues import QueueConfig, Strategy
from .strategies import rank

__all__ = ["Announce", "CallbackChange", "Caller", "CancelOffer", "CenterError", "ContactCenter", "Offer", "Overflow",
           "QueueSnapshot", "Waiting"]

_S = AgentStatus
DEFAULT_HANDLE_TIME = 120.0  # seconds per call assumed by the wait estimate until a queue has handled one


class CenterError(ValueError):
    """An input the center cannot take (an unknown queue, a call already queued): the caller's mistake."""


# -- actions -------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, slots=True)
class Offer:
    call_id: str
    queue_id: int
    agent_id: int
    number: str  # the caller's number (the agent's screen; the number to call back)
    callback: bool = False  # ring the agent, then call the customer at ``number``


@dataclass(frozen=True, kw_only=True, slots=True)
class CancelOffer:
    call_id: str
    agent_id: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Announce:
    call_id: str
    position: int  # 1: next in line
    wait_estimate: int  # seconds, rounded up to whole minutes' worth by the prompt


@dataclass(frozen=True, kw_only=True, slots=True)
class Overflow:
    call_id: str
    queue_id: int
    reason: str  # "full", "empty", "timeout"
    destination: Any


Action = Offer | CancelOffer | Announce | Overflow


@dataclass(eq=False)
class Waiting:
    """A caller in line (or a callback request holding its place)."""

    call_id: str
    queue_id: int
    number: str
    priority: int
    joined_at: float
    seq: int
    original_position: int
    offered: set[int] = field(default_factory=set)  # the agents whose phones ring for it now
    offer_started: float | None = None
    callback: bool = False
    attempts: int = 0  # a callback's failed calls to the customer
    not_before: float = 0.0  # a callback whose call failed is not offered again before this
    next_announce: float | None = None
    relax_next: float | None = None  # the next time a skill relaxation widens who may take it


@dataclass(eq=False)
class _InCall:
    queue_id: int
    agent_id: int
    joined_at: float
    answered_at: float
    original_position: int
    entry: Waiting | None = None  # a callback whose customer the engine is calling (no CONNECT yet)
    ring: float = 0.0  # seconds the agent's phone rang
    number: str = ""  # the caller's (or the callback's customer's) number: the agent's screen


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueSnapshot:
    queue_id: int
    waiting: int  # callers in line, being offered included (callback requests not)
    callbacks: int  # callback requests holding a place
    longest_wait: float  # seconds the first live caller has waited
    agents: dict[str, int]  # logged-in agents by status (an agent on a non-queue call counts as "busy")


@dataclass(frozen=True, kw_only=True, slots=True)
class CallbackChange:
    """A callback request's new state, for the store that keeps requests across restarts
    (:meth:`ContactCenter.take_callback_changes`). Times are wall-clock (``now + wall_offset``)."""

    call_id: str
    queue_id: int
    state: str  # waiting, dialing, done, failed, cancelled
    number: str
    priority: int
    joined_at: float  # the place in line
    attempts: int
    last_result: str | None = None
    retry_at: float | None = None  # a retry's earliest offer
    requested_at: float | None = None  # set on the request itself (a new row); None: an update
    position: int = 0  # the place in line when requested


@dataclass(frozen=True, kw_only=True, slots=True)
class Caller:
    """Whom an agent's phone rings for, or whom the agent talks to (the agent's panel)."""

    call_id: str
    queue_id: int
    number: str
    callback: bool  # a callback request not yet connected: the agent's phone rings, or its customer is being called


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """A callback request as the wallboard lists it."""

    call_id: str
    queue_id: int
    number: str  # whom to call back
    position: int  # 1-based place in the queue's line (live callers included)
    waiting: float  # seconds since the caller joined the queue
    attempts: int  # failed calls to the customer so far
    retry_in: float  # seconds before it may be offered again (0: now)
    ringing: bool  # an agent's phone rings for it now


class ContactCenter:
    """Queues and agents of one tenant (or of the whole node: queue and agent ids are unique)."""

    def __init__(self, *, rng: random.Random | None = None, wall_offset: float = 0.0) -> None:
        self.queues: dict[int, QueueConfig] = {}
        self.agents: dict[int, Agent] = {}
        self.waiting: dict[str, Waiting] = {}
        self.in_call: dict[str, _InCall] = {}
        self.rng = rng or random.Random()
        self.wall_offset = wall_offset  # log entries carry wall-clock time: now + wall_offset
        self._seq = itertools.count()
        # several nodes: queue -> (priority, joined_at on this clock) of the callers and callback requests in
        # its line on the other nodes (set by the runtime at each read), counted in the positions announced
        self.elsewhere: dict[int, list[tuple[int, float]]] = {}
        # several nodes: queue -> (talk + wrap-up seconds, calls) the other nodes completed (the runtime's read)
        self.handled_elsewhere: dict[int, tuple[float, int]] = {}
        self._last_offered: dict[int, int] = {}  # queue -> agent offered last (round robin's memory)
        self._handled: dict[int, tuple[float, int]] = {}  # queue -> (talk + wrap-up seconds, calls)
        self._handled_changed: set[int] = set()  # the queues whose totals changed since take_handled
        self._actions: list[Action] = []
        self._log: list[QueueLogEntry] = []
        self._callback_changes: list[CallbackChange] = []

    # -- configuration -------------------------------------------------------------------------------
    def set_queue(self, config: QueueConfig, now: float) -> None:
        """Add a queue or change its settings (callers in line keep their places)."""
        self.queues[config.id] = config
        for entry in self.waiting.values():
            if entry.queue_id == config.id:
                entry.relax_next = self._relax_next(config, entry, now)
        self._dispatch(now, entries=[e for e in self.waiting.values() if e.queue_id == config.id])

    def remove_queue(self, queue_id: int, now: float) -> None:
        """A deleted queue: its callers go to its overflow destination, its agents leave it."""
        config = self._queue(queue_id)
        for entry in self._line(queue_id):
            self._exit(entry, now, ql.EXITEMPTY, "empty")
        for agent in list(self.agents.values()):
            if queue_id in agent.queues:
                self.logout(agent.id, [queue_id], now)
        del self.queues[config.id]

    def set_skills(self, agent_id: int, skills: dict[str, int], now: float) -> None:
        agent = self._agent(agent_id, create=True)
        agent.skills = dict(skills)
        self._dispatch(now, agents=[agent])

    # -- inputs: callers -----------------------------------------------------------------------------
    def join(self, call_id: str, queue_id: int, now: float, *, number: str = "", priority: int = 0) -> bool:
        """A caller enters the queue: True when in line; False when refused at the door (an
        :class:`Overflow` action says where it goes). ``priority``: what the way in asked (an IVR key's);
        the queue's VIP list may give the caller's number a higher one, and the higher counts."""
        config = self._queue(queue_id)
        priority = max(priority, config.vip_priority(number))
        if call_id in self.waiting or call_id in self.in_call:
            raise CenterError(f"call {call_id} is already in a queue")
        line = self._line(queue_id)
        if config.max_waiting is not None and len(line) >= config.max_waiting:
            self._entry(now, ql.FULL, queue_id=queue_id, call_id=call_id, number=number)
            self._actions.append(Overflow(call_id=call_id, queue_id=queue_id, reason="full",
                                          destination=config.overflow))
            return False
        if not config.join_empty and not self._logged_in(queue_id):
            self._entry(now, ql.JOINEMPTY, queue_id=queue_id, call_id=call_id, number=number)
            self._actions.append(Overflow(call_id=call_id, queue_id=queue_id, reason="empty",
                                          destination=config.overflow))
            return False
        entry = Waiting(call_id=call_id, queue_id=queue_id, number=number, priority=priority, joined_at=now,
                        seq=next(self._seq), original_position=0)
        self.waiting[call_id] = entry
        entry.original_position = self.position(call_id)
        entry.relax_next = self._relax_next(config, entry, now)
        if config.announce_every > 0:
            entry.next_announce = now + config.announce_every
        self._entry(now, ql.ENTERQUEUE, queue_id=queue_id, call_id=call_id, number=number,
                    position=entry.original_position, priority=priority)
        self._dispatch(now, entries=[entry])
        return True

    def caller_left(self, call_id: str, now: float) -> None:
        """The caller hung up: an abandon while in line, the end of the call when talking to an agent.
        A callback request's live call ending changes nothing (it holds its place without a call)."""
        entry = self.waiting.get(call_id)
        if entry is not None:
            if entry.callback:
                return
            position = self.position(call_id)
            del self.waiting[call_id]
            freed = self._cancel_offers(entry, now, "caller_left")
            self._entry(now, ql.ABANDON, queue_id=entry.queue_id, call_id=call_id, position=position,
                        original_position=entry.original_position, wait=now - entry.joined_at)
            self._dispatch(now, agents=freed)
            return
        if call_id in self.in_call:
            self.call_ended(call_id, now, by_agent=False)

    def request_callback(self, call_id: str, now: float, *, number: str | None = None) -> None:
        """The caller pressed the callback key: its place is kept, its live call may end."""
        entry = self._waiting(call_id)
        if entry.callback:
            return
        if number:
            entry.number = number
        self._entry(now, ql.CALLBACK, queue_id=entry.queue_id, call_id=call_id, position=self.position(call_id),
                    wait=now - entry.joined_at, number=entry.number)
        entry.callback = True
        entry.next_announce = None
        self._callback_change(entry, "waiting", now, requested=True)
        # the agents ringing now would reach a caller about to hang up: the call is offered again, as a callback
        freed = self._cancel_offers(entry, now, "cancelled")
        self._dispatch(now, entries=[entry])
        self._dispatch(now, agents=freed)

    def restore_callback(self, call_id: str, queue_id: int, now: float, *, number: str, joined_at: float,
                         priority: int = 0, attempts: int = 0, not_before: float = 0.0) -> None:
        """A callback request kept from before a restart (``joined_at``: its place, on this clock) goes back
        in line; one that was being dialed when the process stopped is waiting again, its attempt not counted."""
        config = self._queue(queue_id)
        if call_id in self.waiting or call_id in self.in_call:
            raise CenterError(f"call {call_id} is already in a queue")
        entry = Waiting(call_id=call_id, queue_id=queue_id, number=number, priority=priority, joined_at=joined_at,
                        seq=next(self._seq), original_position=0, callback=True, attempts=attempts,
                        not_before=not_before if not_before > now else 0.0)
        self.waiting[call_id] = entry
        entry.original_position = self.position(call_id)
        entry.relax_next = self._relax_next(config, entry, now)
        self._callback_change(entry, "waiting", now)
        self._dispatch(now, entries=[entry])

    def cancel_callback(self, call_id: str, now: float) -> bool:
        """A supervisor cancelled a callback request: it leaves the line (the phones ringing for it stop).
        False when it is not waiting (unknown, or its customer is being called now)."""
        entry = self.waiting.get(call_id)
        if entry is None or not entry.callback:
            return False
        del self.waiting[call_id]
        freed = self._cancel_offers(entry, now, "cancelled")
        self._entry(now, ql.CALLBACKFAILED, queue_id=entry.queue_id, call_id=call_id, attempt=entry.attempts,
                    reason="cancelled", final=True)
        self._callback_change(entry, "cancelled", now, result="cancelled")
        self._dispatch(now, agents=freed)
        return True

    def drop_callback(self, call_id: str, now: float) -> bool:
        """A callback request this center may no longer call back (another node has taken it over): it leaves
        the line without a log entry or a change, which are the new owner's now. False when it is not waiting."""
        entry = self.waiting.get(call_id)
        if entry is None or not entry.callback:
            return False
        del self.waiting[call_id]
        self._dispatch(now, agents=self._cancel_offers(entry, now, None))
        return True

    def dialing_callback(self, call_id: str) -> bool:
        """The callback's customer is being called now (the agent answered, the customer not yet)."""
        call = self.in_call.get(call_id)
        return call is not None and call.entry is not None

    # -- inputs: offers and calls --------------------------------------------------------------------
    def offer_answered(self, call_id: str, agent_id: int, now: float) -> bool:
        """An agent's phone answered: True if the call is theirs; False if it is not (any more): the
        engine then hangs up that phone's leg."""
        entry = self.waiting.get(call_id)
        agent = self.agents.get(agent_id)
        if entry is None or agent is None or agent_id not in entry.offered:
            return False
        entry.offered.discard(agent_id)
        ring = now - (entry.offer_started if entry.offer_started is not None else now)
        del self.waiting[call_id]
        freed = self._cancel_offers(entry, now, None)  # ring-all: the others stop ringing
        agent.offer = None
        agent.call = call_id
        agent.missed = 0
        self._set_status(agent, _S.ON_CALL, now, queue_id=entry.queue_id)
        self.in_call[call_id] = _InCall(queue_id=entry.queue_id, agent_id=agent_id, joined_at=entry.joined_at,
                                        answered_at=now, original_position=entry.original_position,
                                        entry=entry if entry.callback else None, ring=ring, number=entry.number)
        if not entry.callback:  # a callback connects when its customer answers (callback_answered)
            self._entry(now, ql.CONNECT, queue_id=entry.queue_id, call_id=call_id, agent_id=agent_id,
                        hold=now - entry.joined_at, ring=ring, position=entry.original_position)
        else:
            self._callback_change(entry, "dialing", now)
        self._dispatch(now, agents=freed)
        return True

    def callback_answered(self, call_id: str, now: float) -> None:
        """The customer of a callback answered the call the agent's phone placed: the two talk (``CONNECT``)."""
        call = self.in_call.get(call_id)
        if call is None or call.entry is None:
            return
        entry, call.entry = call.entry, None
        call.answered_at = now
        self._callback_change(entry, "done", now)
        self._entry(now, ql.CONNECT, queue_id=call.queue_id, call_id=call_id, agent_id=call.agent_id,
                    hold=now - call.joined_at, ring=call.ring, position=call.original_position, callback=True,
                    attempt=entry.attempts + 1)

    def callback_failed(self, call_id: str, now: float, *, reason: str, agent_id: int | None = None,
                        final: bool = False) -> None:
        """The call to a callback's customer failed (``busy``, ``no_answer``, ``failed`` …), or the agent hung up
        before the customer answered (``agent_hung_up``: not counted as an attempt, no delay). The request goes
        back to its place in line and is offered again once the queue's ``callback_retry`` has passed; after
        ``callback_attempts`` attempts, or at once when ``final`` (the number cannot be called), it is given
        up. The agent (``agent_id`` names it when its offer was still ringing) is free again after wrap-up."""
        call = self.in_call.get(call_id)
        if call is not None and call.entry is not None:
            del self.in_call[call_id]
            entry = call.entry
            agent = self.agents[call.agent_id]
            agent.call = None
        else:
            waiting = self.waiting.get(call_id)
            offered = self.agents.get(agent_id) if agent_id is not None else None
            if waiting is None or offered is None or offered.id not in waiting.offered:
                return
            entry, agent = waiting, offered
            del self.waiting[call_id]
            entry.offered.discard(agent.id)
            for other in sorted(entry.offered):  # (a ring-all: the others stop ringing too)
                self._actions.append(CancelOffer(call_id=call_id, agent_id=other))
                self.agents[other].offer = None
                self._set_status(self.agents[other], _S.AVAILABLE, now)
            entry.offered.clear()
            entry.offer_started = None
            agent.offer = None
        counted = reason != "agent_hung_up"
        if counted:
            entry.attempts += 1
        config = self.queues.get(entry.queue_id)
        if config is None or final or entry.attempts >= config.callback_attempts:
            self._entry(now, ql.CALLBACKFAILED, queue_id=entry.queue_id, call_id=call_id, agent_id=agent.id,
                        attempt=entry.attempts, reason=reason, final=True)
            self._callback_change(entry, "failed", now, result=reason)
        else:
            delay = config.callback_retry if counted else 0.0
            entry.not_before = now + delay
            self.waiting[call_id] = entry
            self._entry(now, ql.CALLBACKFAILED, queue_id=entry.queue_id, call_id=call_id, agent_id=agent.id,
                        attempt=entry.attempts, reason=reason, retry_in=delay)
            self._callback_change(entry, "waiting", now, result=reason)
        if not counted and config is not None:
            agent.rest_until = now + config.retry  # the agent turned it down: someone else first, as for a miss
        if agent.status is _S.ON_CALL:
            self._wrap_up(agent, config, now)
        elif agent.status is _S.RINGING:
            self._set_status(agent, _S.AVAILABLE, now)
        self._dispatch(now, agents=[a for a in self.agents.values() if a.status is _S.AVAILABLE])

    def offer_failed(self, call_id: str, agent_id: int, now: float, *, reason: str = "no_answer") -> None:
        """An offer did not reach the agent (no answer, busy, the phone is gone): the caller keeps its
        place and is offered again; the agent rests for the queue's retry time, or goes NOT_READY after
        ``max_no_answer`` misses in a row."""
        entry = self.waiting.get(call_id)
        agent = self.agents.get(agent_id)
        if entry is None or agent is None or agent_id not in entry.offered:
            return  # answered elsewhere or ended meanwhile
        entry.offered.discard(agent_id)
        self._missed(entry, agent, now, reason)
        if not entry.offered:
            entry.offer_started = None
            self._dispatch(now, entries=[entry])

    def call_ended(self, call_id: str, now: float, *, by_agent: bool) -> None:
        """A connected queue call ended: the agent goes to wrap-up."""
        call = self.in_call.get(call_id)
        if call is not None and call.entry is not None:  # a callback's customer never answered
            self.callback_failed(call_id, now, reason="agent_hung_up" if by_agent else "failed")
            return
        self._complete(call_id, now, ql.COMPLETEAGENT if by_agent else ql.COMPLETECALLER, {})

    def transferred(self, call_id: str, now: float, *, target: str) -> None:
        """The agent transferred the caller elsewhere: the queue's part of the call is over."""
        self._complete(call_id, now, ql.TRANSFER, {"target": target})

    # -- inputs: agents ------------------------------------------------------------------------------
    def login(self, agent_id: int, queue_ids: Iterable[int], now: float, *,
              skills: dict[str, int] | None = None, busy_elsewhere: bool | None = None) -> None:
        """Log in to queues (``busy_elsewhere``: the agent is on a call that is not a queue's, known before any
        offer is made)."""
        agent = self._agent(agent_id, create=True)
        if skills is not None:
            agent.skills = dict(skills)
        if busy_elsewhere is not None:
            agent.busy_elsewhere = busy_elsewhere
        for queue_id in queue_ids:
            self._queue(queue_id)
            if queue_id not in agent.queues:
                agent.queues.add(queue_id)
                self._entry(now, ql.ADDMEMBER, queue_id=queue_id, agent_id=agent_id)
        if agent.status is _S.OFFLINE and agent.queues:
            self._set_status(agent, _S.AVAILABLE, now)
        self._dispatch(now, agents=[agent])

    def logout(self, agent_id: int, queue_ids: Iterable[int] | None, now: float) -> None:
        """Leave the given queues (all when None). An agent in no queue is OFFLINE — at once, or when the
        call in progress ends."""
        agent = self._agent(agent_id)
        leaving = set(agent.queues if queue_ids is None else queue_ids) & agent.queues
        for queue_id in sorted(leaving):
            agent.queues.discard(queue_id)
            self._entry(now, ql.REMOVEMEMBER, queue_id=queue_id, agent_id=agent_id)
        withdrawn = None
        if agent.status is _S.RINGING and agent.call_queue in leaving:
            withdrawn = self._withdraw_offer(agent, now, "cancelled")
            if agent.queues:
                self._set_status(agent, _S.AVAILABLE, now)
        if not agent.queues and agent.status in (_S.AVAILABLE, _S.NOT_READY, _S.WRAP_UP, _S.RINGING):
            agent.wrap_until = None
            agent.pause_after = None
            self._set_status(agent, _S.OFFLINE, now)
        for queue_id in sorted(leaving):
            config = self.queues[queue_id]
            if config.leave_empty and not self._logged_in(queue_id):
                for entry in self._line(queue_id):
                    if not entry.callback:
                        self._exit(entry, now, ql.EXITEMPTY, "empty")
        if withdrawn is not None and withdrawn.call_id in self.waiting:
            self._dispatch(now, entries=[withdrawn])
        self._dispatch(now, agents=[agent])

    def pause(self, agent_id: int, reason: str, now: float) -> None:
        """Not ready (with a tenant-defined reason). During a queue call it applies once the call and its
        wrap-up are over."""
        agent = self._agent(agent_id)
        if agent.status is _S.OFFLINE:
            raise AgentError("an agent who is not logged in cannot pause")
        if agent.status in (_S.ON_CALL, _S.WRAP_UP):
            agent.pause_after = reason
            return
        withdrawn = self._withdraw_offer(agent, now, "cancelled") if agent.status is _S.RINGING else None
        agent.reason = reason
        self._entry(now, ql.PAUSE, agent_id=agent_id, reason=reason)
        if agent.status is not _S.NOT_READY:
            self._set_status(agent, _S.NOT_READY, now)
        if withdrawn is not None:
            self._dispatch(now, entries=[withdrawn])

    def unpause(self, agent_id: int, now: float) -> None:
        agent = self._agent(agent_id)
        agent.pause_after = None
        if agent.status is not _S.NOT_READY:
            return
        self._entry(now, ql.UNPAUSE, agent_id=agent_id, reason=agent.reason or "")
        agent.reason = None
        agent.missed = 0
        self._set_status(agent, _S.AVAILABLE if agent.queues else _S.OFFLINE, now)
        self._dispatch(now, agents=[agent])

    def set_busy_elsewhere(self, agent_id: int, busy: bool, now: float) -> None:
        """The agent is on (or has ended) a call that is not from a queue: no queue call is offered meanwhile."""
        self._elsewhere(agent_id, "busy_elsewhere", busy, now)

    def set_held_elsewhere(self, agent_id: int, held: bool, now: float) -> None:
        """Several nodes: another node has (or no longer has) the agent for one of its queue calls. Like a
        non-queue call: no offer meanwhile."""
        self._elsewhere(agent_id, "held_elsewhere", held, now)

    def _elsewhere(self, agent_id: int, flag: str, on: bool, now: float) -> None:
        """The agent taken (or freed) by something other than our queue calls (``flag``: which). Taken
        while its phone was about to ring for us (a call not reported yet, a claim lost): the offer is
        withdrawn without counting as a miss, and the caller is offered to someone else."""
        agent = self.agents.get(agent_id)
        if agent is None or getattr(agent, flag) == on:
            return
        setattr(agent, flag, on)
        if not on:
            self._dispatch(now, agents=[agent])
            return
        if agent.status is _S.RINGING:
            withdrawn = self._withdraw_offer(agent, now, "busy")
            self._set_status(agent, _S.AVAILABLE, now)
            if withdrawn is not None and withdrawn.call_id in self.waiting:
                self._dispatch(now, entries=[withdrawn])

    # -- time ----------------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        times: list[float] = []
        for entry in self.waiting.values():
            config = self.queues[entry.queue_id]
            if entry.offer_started is not None:
                times.append(entry.offer_started + config.ring_timeout)
            if config.max_wait is not None and not entry.callback:
                times.append(entry.joined_at + config.max_wait)
            if entry.next_announce is not None and not entry.offered:
                times.append(entry.next_announce)
            if entry.relax_next is not None and not entry.offered:
                times.append(entry.relax_next)
            if entry.not_before and not entry.offered:
                times.append(entry.not_before)
        for agent in self.agents.values():
            if agent.wrap_until is not None:
                times.append(agent.wrap_until)
            if agent.rest_until and self.waiting:
                times.append(agent.rest_until)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        rested: list[Agent] = []
        for agent in list(self.agents.values()):
            if agent.wrap_until is not None and agent.wrap_until <= now:
                agent.wrap_until = None
                self._after_work(agent, now)
            if agent.rest_until and agent.rest_until <= now:
                agent.rest_until = 0.0
                rested.append(agent)
        relaxed: list[Waiting] = []
        for entry in list(self.waiting.values()):
            config = self.queues[entry.queue_id]
            if entry.offer_started is not None and entry.offer_started + config.ring_timeout <= now:
                for agent_id in sorted(entry.offered):
                    self._actions.append(CancelOffer(call_id=entry.call_id, agent_id=agent_id))
                    self._missed(entry, self.agents[agent_id], now, "no_answer")
                entry.offered.clear()
                entry.offer_started = None
                relaxed.append(entry)
            if config.max_wait is not None and not entry.callback and entry.joined_at + config.max_wait <= now:
                self._exit(entry, now, ql.EXITWITHTIMEOUT, "timeout")
                continue
            if entry.relax_next is not None and entry.relax_next <= now:
                entry.relax_next = self._relax_next(config, entry, now)
                relaxed.append(entry)
            if entry.not_before and entry.not_before <= now:
                entry.not_before = 0.0
                relaxed.append(entry)
            if entry.next_announce is not None and entry.next_announce <= now:
                entry.next_announce = now + config.announce_every
                if not entry.offered:
                    position = self.position(entry.call_id)
                    self._actions.append(Announce(call_id=entry.call_id, position=position,
                                                  wait_estimate=self.wait_estimate(entry.queue_id, position)))
        # agents first, against the whole line in order: one whose rest ended must not go to a caller
        # behind one it now qualifies for; then the callers whose offers ended or whose skills relaxed
        self._dispatch(now, agents=rested)
        self._dispatch(now, entries=[e for e in relaxed if e.call_id in self.waiting])

    # -- outputs -------------------------------------------------------------------------------------
    def take_actions(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out

    def take_log(self) -> list[QueueLogEntry]:
        out, self._log = self._log, []
        return out

    def take_handled(self) -> dict[int, tuple[float, int]]:
        """Queue -> (talk + wrap-up seconds, calls) completed here, of the queues that changed since the last
        take (several nodes: shared for the others' wait estimates)."""
        changed, self._handled_changed = self._handled_changed, set()
        return {q: self._handled[q] for q in changed if q in self._handled}

    def take_callback_changes(self) -> list[CallbackChange]:
        out, self._callback_changes = self._callback_changes, []
        return out

    # -- views ---------------------------------------------------------------------------------------
    def position(self, call_id: str) -> int:
        """1-based place of a waiting caller among its queue's line (the other nodes' part of it included)."""
        entry = self._waiting(call_id)
        key = self._order(entry)
        return 1 + self._ahead_elsewhere(entry) + sum(
            1 for other in self.waiting.values()
            if other.queue_id == entry.queue_id and other is not entry and self._order(other) < key)

    def _ahead_elsewhere(self, entry: Waiting) -> int:
        """The callers of the entry's queue ahead of it on the other nodes (a higher priority, or the same and
        earlier; a tie in time goes to this node's)."""
        return sum(1 for priority, joined in self.elsewhere.get(entry.queue_id, ())
                   if priority > entry.priority or (priority == entry.priority and joined < entry.joined_at))

    def wait_estimate(self, queue_id: int, position: int) -> int:
        """Seconds a caller at ``position`` may still wait: the calls ahead times the queue's average
        handle time (talk + wrap-up; several nodes: of every node's calls), shared among the agents who work it
        now."""
        total, count = self._handled.get(queue_id, (0.0, 0))
        other_total, other_count = self.handled_elsewhere.get(queue_id, (0.0, 0))
        total, count = total + other_total, count + other_count
        handle = total / count if count else DEFAULT_HANDLE_TIME
        working = sum(1 for a in self.agents.values()
                      if queue_id in a.queues and a.status not in (_S.OFFLINE, _S.NOT_READY))
        return round(position * handle / max(1, working))

    def snapshot(self, queue_id: int, now: float) -> QueueSnapshot:
        line = self._line(queue_id)
        live = [e for e in line if not e.callback]
        agents: dict[str, int] = {}
        for agent in self.agents.values():
            if queue_id in agent.queues or agent.call_queue == queue_id:
                elsewhere = agent.busy_elsewhere or agent.held_elsewhere
                status = "busy" if elsewhere and agent.status is _S.AVAILABLE else agent.status.value
                agents[status] = agents.get(status, 0) + 1
        return QueueSnapshot(queue_id=queue_id, waiting=len(live), callbacks=len(line) - len(live),
                             longest_wait=max((now - e.joined_at for e in live), default=0.0), agents=agents)

    def callbacks(self, queue_id: int, now: float) -> list[CallbackRequest]:
        """The queue's callback requests in line order."""
        return [CallbackRequest(call_id=e.call_id, queue_id=queue_id, number=e.number,
                                position=place + self._ahead_elsewhere(e),
                                waiting=max(0.0, now - e.joined_at), attempts=e.attempts,
                                retry_in=max(0.0, e.not_before - now), ringing=bool(e.offered))
                for place, e in enumerate(self._line(queue_id), 1) if e.callback]

    def caller(self, agent_id: int) -> Caller | None:
        """The caller offered to the agent (RINGING) or talking to them (ON_CALL); None otherwise."""
        agent = self.agents.get(agent_id)
        if agent is None:
            return None
        if agent.offer is not None and (entry := self.waiting.get(agent.offer)) is not None:
            return Caller(call_id=entry.call_id, queue_id=entry.queue_id, number=entry.number, callback=entry.callback)
        if agent.call is not None and (call := self.in_call.get(agent.call)) is not None:
            return Caller(call_id=agent.call, queue_id=call.queue_id, number=call.number,
                          callback=call.entry is not None)
        return None

    # -- inside --------------------------------------------------------------------------------------
    def _queue(self, queue_id: int) -> QueueConfig:
        try:
            return self.queues[queue_id]
        except KeyError:
            raise CenterError(f"no queue {queue_id}") from None

    def _agent(self, agent_id: int, *, create: bool = False) -> Agent:
        agent = self.agents.get(agent_id)
        if agent is None:
            if not create:
                raise AgentError(f"agent {agent_id} is not logged in")
            agent = self.agents[agent_id] = Agent(id=agent_id)
        return agent

    def _waiting(self, call_id: str) -> Waiting:
        try:
            return self.waiting[call_id]
        except KeyError:
            raise CenterError(f"call {call_id} is not waiting in a queue") from None

    def _order(self, entry: Waiting) -> tuple[int, int, float, int]:
        return (-self.queues[entry.queue_id].weight, -entry.priority, entry.joined_at, entry.seq)

    def _line(self, queue_id: int) -> list[Waiting]:
        return sorted((e for e in self.waiting.values() if e.queue_id == queue_id), key=self._order)

    def _logged_in(self, queue_id: int) -> bool:
        return any(queue_id in a.queues and a.status is not _S.OFFLINE for a in self.agents.values())

    def _entry(self, now: float, event: str, *, queue_id: int | None = None, call_id: str | None = None,
               agent_id: int | None = None, **data: Any) -> None:
        self._log.append(QueueLogEntry(at=now + self.wall_offset, event=event, queue_id=queue_id, call_id=call_id,
                                       agent_id=agent_id, data=data))

    def _callback_change(self, entry: Waiting, state: str, now: float, *, requested: bool = False,
                         result: str | None = None) -> None:
        wall = self.wall_offset
        self._callback_changes.append(CallbackChange(
            call_id=entry.call_id, queue_id=entry.queue_id, state=state, number=entry.number, priority=entry.priority,
            joined_at=entry.joined_at + wall, attempts=entry.attempts, last_result=result,
            retry_at=entry.not_before + wall if entry.not_before > now else None,
            requested_at=now + wall if requested else None,
            position=self.position(entry.call_id) if requested else 0))

    def _set_status(self, agent: Agent, status: AgentStatus, now: float, *, queue_id: int | None = None) -> None:
        if status not in TRANSITIONS[agent.status]:
            raise AgentError(f"agent {agent.id}: {agent.status.value} -> {status.value} is not a transition")
        previous = agent.status
        self._log.append(QueueLogEntry(at=now + self.wall_offset, event=ql.AGENTSTATUS, agent_id=agent.id,
                                       queue_id=agent.call_queue if previous in BUSY else None,
                                       data={"from": previous.value, "to": status.value,
                                             "seconds": now - agent.since}))
        agent.status = status
        agent.since = now
        if status in (_S.RINGING, _S.ON_CALL):
            agent.call_queue = queue_id if queue_id is not None else agent.call_queue
        elif status is not _S.WRAP_UP:
            agent.call_queue = None
        if status is _S.AVAILABLE:
            agent.idle_since = now

    def _relax_next(self, config: QueueConfig, entry: Waiting, now: float) -> float | None:
        later = [entry.joined_at + rule.after for rule in config.relaxations if entry.joined_at + rule.after > now]
        return min(later) if later and config.requirements else None

    def note_offered(self, queue_id: int, agent_id: int) -> None:
        """Several nodes: another node offered the queue's call to this agent last (round robin goes on after it)."""
        self._last_offered[queue_id] = agent_id

    def qualifies(self, agent_id: int, queue_id: int, waited: float) -> bool:
        """Whether the agent is logged in to the queue and skilled enough for a caller who has waited ``waited``
        seconds (whatever its status now): several nodes, a caller of another node's line."""
        agent = self.agents.get(agent_id)
        config = self.queues.get(queue_id)
        if agent is None or config is None or queue_id not in agent.queues:
            return False
        return all(agent.proficiency(r.skill) >= config.required_level(r, waited) for r in config.requirements
                   if config.required_level(r, waited) > 0)

    def _eligible(self, agent: Agent, config: QueueConfig, waited: float, now: float) -> bool:
        if (agent.status is not _S.AVAILABLE or agent.busy_elsewhere or agent.held_elsewhere
                or config.id not in agent.queues):
            return False
        if agent.rest_until > now:
            return False
        for requirement in config.requirements:
            level = config.required_level(requirement, waited)
            if level > 0 and agent.proficiency(requirement.skill) < level:
                return False
        return True

    def _dispatch(self, now: float, *, entries: Iterable[Waiting] | None = None,
                  agents: Iterable[Agent] | None = None) -> None:
        """Offer waiting calls to eligible available agents: ``entries`` against every agent, or every
        entry against ``agents`` (see the invariant in the module's docstring)."""
        if entries is not None:
            pool = list(self.agents.values())
            todo = sorted((e for e in entries if not e.offered), key=self._order)
        else:
            pool = [a for a in agents or () if a.status is _S.AVAILABLE]
            if not pool:
                return
            todo = sorted((e for e in self.waiting.values() if not e.offered), key=self._order)
        for entry in todo:
            if entry.not_before > now:
                continue  # a callback waiting for its next attempt
            config = self.queues[entry.queue_id]
            candidates = [a for a in pool if self._eligible(a, config, now - entry.joined_at, now)]
            if not candidates:
                continue
            ranked = rank(config, candidates, last_offered=self._last_offered.get(config.id), rng=self.rng)
            for agent in ranked if config.strategy is Strategy.RING_ALL else ranked[:1]:
                self._offer(entry, agent, now)
            if entries is None and not any(a.status is _S.AVAILABLE for a in pool):
                return

    def _offer(self, entry: Waiting, agent: Agent, now: float) -> None:
        entry.offered.add(agent.id)
        entry.offer_started = now
        agent.offer = entry.call_id
        self._last_offered[entry.queue_id] = agent.id
        self._set_status(agent, _S.RINGING, now, queue_id=entry.queue_id)
        self._actions.append(Offer(call_id=entry.call_id, queue_id=entry.queue_id, agent_id=agent.id,
                                   number=entry.number, callback=entry.callback))

    def _cancel_offers(self, entry: Waiting, now: float, reason: str | None) -> list[Agent]:
        """Stop the phones ringing for ``entry``; the agents are available again and returned, for the
        caller to dispatch once ``entry`` is out of the line (or they would be offered it again)."""
        freed = []
        for agent_id in sorted(entry.offered):
            agent = self.agents[agent_id]
            self._actions.append(CancelOffer(call_id=entry.call_id, agent_id=agent_id))
            if reason is not None:
                ring = now - (entry.offer_started if entry.offer_started is not None else now)
                self._entry(now, ql.RINGNOANSWER, queue_id=entry.queue_id, call_id=entry.call_id, agent_id=agent_id,
                            ring=ring, reason=reason)
            agent.offer = None
            self._set_status(agent, _S.AVAILABLE, now)
            freed.append(agent)
        entry.offered.clear()
        entry.offer_started = None
        return freed

    def _withdraw_offer(self, agent: Agent, now: float, reason: str) -> Waiting | None:
        """Stop offering the agent's current call to it (it pauses or logs out; the caller sets its next
        state). The caller keeps its place: the entry is returned, to dispatch once the agent is settled."""
        entry = self.waiting.get(agent.offer or "")
        agent.offer = None
        if entry is None:
            return None
        entry.offered.discard(agent.id)
        self._actions.append(CancelOffer(call_id=entry.call_id, agent_id=agent.id))
        ring = now - (entry.offer_started if entry.offer_started is not None else now)
        self._entry(now, ql.RINGNOANSWER, queue_id=entry.queue_id, call_id=entry.call_id, agent_id=agent.id,
                    ring=ring, reason=reason)
        if not entry.offered:
            entry.offer_started = None
        return entry

    def _missed(self, entry: Waiting, agent: Agent, now: float, reason: str) -> None:
        ring = now - (entry.offer_started if entry.offer_started is not None else now)
        self._entry(now, ql.RINGNOANSWER, queue_id=entry.queue_id, call_id=entry.call_id, agent_id=agent.id,
                    ring=ring, reason=reason)
        agent.offer = None
        agent.missed += 1
        config = self.queues[entry.queue_id]
        if config.max_no_answer and agent.missed >= config.max_no_answer:
            agent.reason = "missed"
            self._entry(now, ql.PAUSE, agent_id=agent.id, reason="missed")
            self._set_status(agent, _S.NOT_READY, now)
        else:
            agent.rest_until = now + config.retry
            self._set_status(agent, _S.AVAILABLE, now)

    def _exit(self, entry: Waiting, now: float, event: str, reason: str) -> None:
        """The caller leaves the line for the overflow destination (max wait, no agents)."""
        position = self.position(entry.call_id)
        self.waiting.pop(entry.call_id, None)
        freed = self._cancel_offers(entry, now, "cancelled")
        self._entry(now, event, queue_id=entry.queue_id, call_id=entry.call_id, position=position,
                    original_position=entry.original_position, wait=now - entry.joined_at)
        self._actions.append(Overflow(call_id=entry.call_id, queue_id=entry.queue_id, reason=reason,
                                      destination=self.queues[entry.queue_id].overflow))
        if entry.callback:
            self._callback_change(entry, "cancelled", now, result=reason)
        self._dispatch(now, agents=freed)

    def _complete(self, call_id: str, now: float, event: str, extra: dict[str, Any]) -> None:
        call = self.in_call.pop(call_id, None)
        if call is None:
            return
        agent = self.agents[call.agent_id]
        talk = now - call.answered_at
        self._entry(now, event, queue_id=call.queue_id, call_id=call_id, agent_id=agent.id,
                    hold=call.answered_at - call.joined_at, talk=talk, original_position=call.original_position,
                    **extra)
        agent.call = None
        agent.calls += 1
        agent.talk_time += talk
        config = self.queues.get(call.queue_id)
        wrap = config.wrap_up if config is not None else 0.0
        total, count = self._handled.get(call.queue_id, (0.0, 0))
        self._handled[call.queue_id] = (total + talk + wrap, count + 1)
        self._handled_changed.add(call.queue_id)
        self._wrap_up(agent, config, now)

    def _wrap_up(self, agent: Agent, config: QueueConfig | None, now: float) -> None:
        wrap = config.wrap_up if config is not None else 0.0
        if wrap > 0 and agent.queues:
            agent.wrap_until = now + wrap
            self._set_status(agent, _S.WRAP_UP, now)
        else:
            self._after_work(agent, now)

    def _after_work(self, agent: Agent, now: float) -> None:
        """The call and its wrap-up are over: offline, paused, or available for the next caller."""
        if not agent.queues:
            self._set_status(agent, _S.OFFLINE, now)
            return
        if agent.pause_after is not None:
            reason, agent.pause_after = agent.pause_after, None
            agent.reason = reason
            self._entry(now, ql.PAUSE, agent_id=agent.id, reason=reason)
            self._set_status(agent, _S.NOT_READY, now)
            return
        self._set_status(agent, _S.AVAILABLE, now)
        self._dispatch(now, agents=[agent])
