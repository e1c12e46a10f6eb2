"""Agents and their states.

An agent is an employee who logs in to one or more queues. Its state is one field, changed only by
:class:`~zvonok.callcenter.center.ContactCenter` through :data:`TRANSITIONS`:

===========  =============================================================================
state        means
===========  =============================================================================
OFFLINE      logged in to no queue
AVAILABLE    may be offered a queue call (unless on another, non-queue call: ``busy_elsewhere``, or
             taken by another node for its queue call: ``held_elsewhere``)
NOT_READY    paused with a tenant-defined reason ("lunch", "training", "missed" after unanswered offers)
RINGING      a queue call is being offered to the agent's phone
ON_CALL      talking to a queue caller
WRAP_UP      after-call work: no offers until the queue's wrap-up time has passed
===========  =============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class AgentStatus(StrEnum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    NOT_READY = "not_ready"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"


_S = AgentStatus
# which states an agent may go to from each state; anything else is the caller's mistake (AgentError)
TRANSITIONS: dict[AgentStatus, frozenset[AgentStatus]] = {
    _S.OFFLINE: frozenset({_S.AVAILABLE, _S.NOT_READY}),
    _S.AVAILABLE: frozenset({_S.OFFLINE, _S.NOT_READY, _S.RINGING}),
    _S.NOT_READY: frozenset({_S.OFFLINE, _S.AVAILABLE}),
    _S.RINGING: frozenset({_S.OFFLINE, _S.AVAILABLE, _S.NOT_READY, _S.ON_CALL}),
    _S.ON_CALL: frozenset({_S.OFFLINE, _S.WRAP_UP, _S.AVAILABLE, _S.NOT_READY}),
    _S.WRAP_UP: frozenset({_S.OFFLINE, _S.AVAILABLE, _S.NOT_READY}),
}
# time in these states counts as working on contacts (occupancy's numerator; AVAILABLE is the idle rest)
BUSY = frozenset({_S.RINGING, _S.ON_CALL, _S.WRAP_UP})


class AgentError(ValueError):
    """A request the agent's state does not allow (the engine's or the API's mistake: answer 409)."""


@dataclass(eq=False)
class Agent:
    id: int  # the employee's id
    skills: dict[str, int] = field(default_factory=dict)  # skill -> proficiency 1..10
    queues: set[int] = field(default_factory=set)  # the queues logged in to
    status: AgentStatus = AgentStatus.OFFLINE
    since: float = 0.0  # when the status began
    reason: str | None = None  # NOT_READY's reason
    pause_after: str | None = None  # a pause asked during a call: taken when the call and wrap-up are over
    idle_since: float = 0.0  # when the agent last became available (longest-idle)
    rest_until: float = 0.0  # not offered again before this (after an unanswered offer)
    busy_elsewhere: bool = False  # on a call that is not from a queue: not offered queue calls
    held_elsewhere: bool = False  # several nodes: another node has the agent for a queue call (its claim)
    missed: int = 0  # offers left unanswered in a row
    calls: int = 0  # queue calls handled since the counters were reset
    talk_time: float = 0.0
    offer: str | None = None  # the call being offered (RINGING)
    call: str | None = None  # the queue call in progress (ON_CALL)
    call_queue: int | None = None  # the queue of the offer or call (its wrap-up time, the log's queue)
    wrap_until: float | None = None

    def proficiency(self, skill: str) -> int:
        return self.skills.get(skill, 0)
