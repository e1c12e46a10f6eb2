"""The queue log: one entry per thing that happened to a queued call or an agent, in the spirit of
Asterisk's queue_log (its event names), kept in the database for the historic reports (:mod:`.kpi`).

=================  ===========================  =================================================
event              call / agent                 data
=================  ===========================  =================================================
ENTERQUEUE         call                         number, position, priority
FULL, JOINEMPTY    call                         (refused at the door: overflow)
CONNECT            call, agent                  hold (s waited), ring (s the agent's phone rang), position;
                                                a callback: callback true and attempt, when the customer answers
RINGNOANSWER       call, agent                  ring (s), reason (no_answer, busy, unavailable, cancelled)
ABANDON            call                         position, original_position, wait
EXITWITHTIMEOUT    call                         position, original_position, wait (max wait: overflow)
EXITEMPTY          call                         position, original_position, wait (no agents left)
CALLBACK           call                         position, wait, number (the caller left a callback request)
CALLBACKFAILED     call, agent                  attempt, reason (busy, no_answer, failed, ...), retry_in (s),
                                                or final: true (the callback is given up); reason cancelled
                                                and no agent: a supervisor cancelled the request
COMPLETEAGENT      call, agent                  hold, talk, original_position (the agent hung up)
COMPLETECALLER     call, agent                  hold, talk, original_position (the caller hung up)
TRANSFER           call, agent                  hold, talk, target
ADDMEMBER          agent                        (logged in to the queue)
REMOVEMEMBER       agent                        (logged out of the queue)
PAUSE, UNPAUSE     agent                        reason
AGENTSTATUS        agent                        from, to, seconds (time spent in ``from``); queue set
                                                when the state belonged to a queue call
=================  ===========================  =================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENTERQUEUE = "ENTERQUEUE"
FULL = "FULL"
JOINEMPTY = "JOINEMPTY"
CONNECT = "CONNECT"
RINGNOANSWER = "RINGNOANSWER"
ABANDON = "ABANDON"
EXITWITHTIMEOUT = "EXITWITHTIMEOUT"
EXITEMPTY = "EXITEMPTY"
CALLBACK = "CALLBACK"
CALLBACKFAILED = "CALLBACKFAILED"
COMPLETEAGENT = "COMPLETEAGENT"
COMPLETECALLER = "COMPLETECALLER"
TRANSFER = "TRANSFER"
ADDMEMBER = "ADDMEMBER"
REMOVEMEMBER = "REMOVEMEMBER"
PAUSE = "PAUSE"
UNPAUSE = "UNPAUSE"
AGENTSTATUS = "AGENTSTATUS"


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueLogEntry:
    at: float  # wall-clock (epoch) seconds: reports group entries by time of day
    event: str
    queue_id: int | None = None
    call_id: str | None = None
    agent_id: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
