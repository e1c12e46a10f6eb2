"""Call-center agents' feature codes: a phone logs its employee in to or out of the queues, or pauses it.

How it works: the phone's extension names its employee; the call center
(:meth:`.queue_call.QueueDesk.agent_code`, implemented by :class:`zvonok.callcenter.desk.CenterDesk` with the
runtime the REST API's login/logout/pause use) carries the request out and says what became of it. We then
answer, beep and hang up as for ``*72`` (:func:`.call_forward.confirm`): high beeps when the agent now takes
queue calls (logged in, resumed), low beeps when it does not (logged out, paused, logged in while paused).
An employee who is no agent of the queue (or of any queue), or who pauses or logs out while logged in
nowhere, or who dials a reason's code no reason of the company has, is refused with 404 as ``*72`` refuses a
bad number; without a call center in the process the codes get 503.

The codes follow FreePBX's (``*45`` its queue toggle) with a separate code for each way, so that a phone's
speed-dial key always does the same thing:

- ``*45`` log in to every queue the employee is a member of; ``*45<queue number>`` to that one only;
- ``*46`` log out of every queue; ``*46<queue number>`` of that one only;
- ``*47`` pause (not ready, reason ``phone``) or, when paused, resume;
- ``*47<code>`` pause with the company's not-ready reason that has that code (1-4 digits, set on the reason:
  ``lunch`` may be ``*471``); when already paused, the reason changes and the agent stays paused. So a
  speed-dial key says "lunch", not "toggle": dialed twice it never resumes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zvonok.logs import get_logger
from zvonok.media.interface import Tone
from zvonok.sip.message import Request
from zvonok.sip.peer import Peer
from zvonok.sip.transaction import ServerTransaction

from . import events as ev
from .call_forward import CONFIRM_TONE, confirm
from .directory import ExtensionInfo

if TYPE_CHECKING:
    from .b2bua import CallEngine

log = get_logger(__name__)

PHONE_PAUSE_REASON = "phone"  # the not-ready reason of a pause taken with *47
OFF_TONE = Tone(frequencies=(425.0,), cadence=(0.15, 0.1))  # low beeps: "you take no queue calls now"


class AgentCode(enum.StrEnum):
    LOGIN = "*45"
    LOGOUT = "*46"
    PAUSE = "*47"


@dataclass(frozen=True, slots=True)
class AgentRequest:
    code: AgentCode
    queue: str = ""  # a queue's number (*45 / *46 followed by it); "": every queue
    reason_code: str = ""  # a not-ready reason's code (*47 followed by it); "": *47 alone, the toggle


class AgentOutcome(enum.StrEnum):
    LOGGED_IN = "logged_in"
    LOGGED_OUT = "logged_out"
    PAUSED = "paused"
    RESUMED = "resumed"
    NOT_AGENT = "not_agent"  # no member of that queue (or of any), or a deactivated employee
    NOT_LOGGED_IN = "not_logged_in"  # logout or pause while logged in to none of those queues
    UNKNOWN_REASON = "unknown_reason"  # *47<code>: no not-ready reason of the company has that code


TAKES_CALLS = frozenset({AgentOutcome.LOGGED_IN, AgentOutcome.RESUMED})
DONE = TAKES_CALLS | {AgentOutcome.LOGGED_OUT, AgentOutcome.PAUSED}


def agent_code(dialed: str) -> AgentRequest | None:
    """``*45``, ``*45<queue>``, ``*46``, ``*46<queue>``, ``*47``, ``*47<reason code>`` (None for anything else)."""
    for code in AgentCode:
        if dialed.startswith(code.value):
            rest = dialed[len(code.value):]
            if rest and not (rest.isascii() and rest.isdigit()):
                return None
            return AgentRequest(code, reason_code=rest) if code is AgentCode.PAUSE else AgentRequest(code, rest)
    return None


class AgentCodes:
    """The agents' feature codes of one call engine (``engine.agent_codes``)."""

    def __init__(self, engine: CallEngine) -> None:
        self.engine = engine

    async def on_dial(self, txn: ServerTransaction, request: Request, peer: Peer, tenant_id: int, domain: str,
                      caller_ext: ExtensionInfo, dialed: str, session_expires: int | None) -> bool:
        """``dialed`` is an agent code (True): carried out, confirmed and hung up, or refused."""
        wanted = agent_code(dialed)
        if wanted is None:
            return False
        engine = self.engine
        call = engine._open_call(txn, request, peer, tenant_id=tenant_id, party=caller_ext.party(),
                                 domain=domain, dialed=dialed, session_expires=session_expires,
                                 srtp_policy=caller_ext.srtp,
                                 direction=ev.Direction.INTERNAL)
        queue_calls = engine.queue_calls  # the call center's desk (.queue_call.QueueDesk)
        if queue_calls is None:
            await engine._refuse(call, 503, "unavailable")
            return True
        employee = caller_ext.employee_id
        try:
            outcome = (AgentOutcome.NOT_AGENT if employee is None
                       else await queue_calls.desk.agent_code(tenant_id, employee, wanted))
        except Exception:  # noqa: BLE001 - the database failing: the phone gets an answer, the call its CDR
            log.exception("agent code failed", call=call.id, tenant=tenant_id, code=wanted.code.value)
            await engine._refuse(call, 500, "failed")
            return True
        log.info("agent code", call=call.id, tenant=tenant_id, extension=caller_ext.number, employee=employee,
                 code=wanted.code.value, queue=wanted.queue, reason_code=wanted.reason_code, outcome=outcome.value)
        if outcome not in DONE:
            await engine._refuse(call, 404, outcome.value)
            return True
        await confirm(engine, call, CONFIRM_TONE if outcome in TAKES_CALLS else OFF_TONE)
        return True
