"""Call forwarding, DND and their feature codes in the call engine.

An application of the call engine (:class:`Forwarding`, ``engine.forwards``), reaching the call only through
the engine; the decisions are :mod:`.forwarding`'s (sans-I/O), this only carries them out:

- before the engine rings one extension (:meth:`Forwarding.on_dial`): CFU forwards at once,
  DND answers 486 (or forwards with CFB), else the extension rings with its CFNA timer;
- when ringing it ends (:meth:`Forwarding.after`): busy (every device 486/600), no answer
  (the timer) or unavailable (no device registered) forward when the extension says so; the forks still
  ringing are cancelled and their final responses decide nothing (``call.forward_pending``);
- a forward to an extension rings it the same way (its own forwarding applies, the chain stops loops);
  one to an outside number is an outside call under the forwarding extension's calling permissions,
  limits and caller ID, billed to its employee (the CDR's caller employee, as for access-number calls);
- ``*72<number>``, ``*73``, ``*78``, ``*79`` from a phone change its own extension's settings through the
  ``store`` port (the org domain's service), then we answer, beep and hang up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from zvonok.logs import get_logger
from zvonok.media.interface import Tone
from zvonok.pstn.routing import CallerProfile
from zvonok.sip.message import Request
from zvonok.sip.peer import Peer
from zvonok.sip.transaction import ServerTransaction

from . import events as ev
from .call import Call
from .directory import ExtensionInfo
from .forwarding import (
    Forward,
    ForwardingChain,
    Reason,
    Refuse,
    feature_changes,
    feature_code,
    forward_destination,
)
from .voicemail_dialogue import GreetingKind

if TYPE_CHECKING:
    from .b2bua import CallEngine

log = get_logger(__name__)

# (tenant, the phone's extension number, changes) -> saved; raises ValueError for an invalid target
ForwardingStore = Callable[[int, str, dict[str, Any]], Awaitable[bool]]
CONFIRM_TONE = Tone(frequencies=(1000.0,), cadence=(0.15, 0.1))  # short beeps: "done"
CONFIRM_SECONDS = 1.5


class Forwarding:
    """Forwarding and DND of the engine's calls, and the forwarding feature codes."""

    def __init__(self, engine: CallEngine, store: ForwardingStore | None = None) -> None:
        self.engine = engine
        self.store = store  # the org domain's service (set by the composition root); None: codes get 503

    def chain(self, call: Call) -> ForwardingChain:
        if call.forwarding is None:
            caller = call.caller.party if call.caller is not None else None
            own = caller.number if caller is not None and caller.extension_id is not None else None
            call.forwarding = ForwardingChain.starting(own)
        chain: ForwardingChain = call.forwarding
        return chain

    async def on_dial(self, call: Call, ext: ExtensionInfo, now: float, from_number: str | None) -> bool:
        """The call reaches ``ext``: True when it was forwarded or refused here (CFU, DND)."""
        decision = self.chain(call).on_dialed(ext.number, ext.forwarding)
        if isinstance(decision, Forward):
            await self.forward(call, ext, decision, now, from_number)
            return True
        if isinstance(decision, Refuse):
            log.info("do not disturb: busy", call=call.id, tenant=call.tenant_id, extension=ext.number)
            await self.engine._refuse(call, decision.status, decision.cause, disposition=ev.Disposition.BUSY)
            return True
        call.ringing_ext = ext
        call.ring_timeout = decision.no_answer_after
        call.forks_from = len(call.forks)
        return False

    def after(self, call: Call, reason: Reason, *, now: float | None = None) -> Forward | None:
        """Ringing the current extension ended for ``reason``: its forward, if it has one that may happen.
        The forks still ringing are cancelled; the caller then awaits :meth:`forward`."""
        ext: ExtensionInfo | None = call.ringing_ext
        if ext is None or call.ended or call.callee is not None or call.access is not None:
            return None
        decision = self.chain(call).after(ext.number, ext.forwarding, reason)
        if decision is None:
            return None
        call.forward_pending = True
        if call.no_answer is not None:
            call.no_answer.cancel()
            call.no_answer = None
        for fork in call.forks:
            self.engine._cancel_fork(fork, None)
        return decision

    def later(self, call: Call, reason: Reason) -> bool:
        """From a response or a timer: forward as a step of the call (True: it is being forwarded)."""
        decision = self.after(call, reason)
        if decision is None:
            return False
        ext = call.ringing_ext
        self.engine.step(call, self.forward(call, ext, decision, time.time(), None))
        return True

    async def forward(self, call: Call, ext: ExtensionInfo, decision: Forward, now: float,
                          from_number: str | None) -> None:
        call.forward_pending = True
        try:
            log.info("call forwarded", call=call.id, tenant=call.tenant_id, extension=ext.number,
                     target=decision.target, reason=decision.reason.value)
            self.engine.publish(ev.CallForwarded, call, from_number=ext.number, from_extension_id=ext.extension_id,
                         from_employee_id=ext.employee_id, to_number=decision.target,
                         reason=decision.reason.value)
            call.ringing_ext = None
            call.ring_timeout = None
            call.early_media_from = None
            call.forks_from = len(call.forks)
            # the forwarding employee pays for an outside target, with their own class of service
            profile = CallerProfile(tenant_id=call.tenant_id, employee_id=ext.employee_id,
                                    department_id=ext.department_id, office_id=ext.office_id)
            await self.engine._to_destination(call, forward_destination(decision.target), now, from_number=from_number or "",
                                       billed_to=profile, greeting=GreetingKind.BUSY if decision.reason is Reason.BUSY
                                       else GreetingKind.UNAVAILABLE)
        finally:
            call.forward_pending = False

    # -- feature codes ----------------------------------------------------------------------------------
    async def feature_code(self, txn: ServerTransaction, request: Request, peer: Peer, tenant_id: int,
                            domain: str, caller_ext: ExtensionInfo, dialed: str,
                            session_expires: int | None) -> bool:
        """``dialed`` is a forwarding feature code: change the caller's own settings, beep, hang up (or the
        voicemail codes ``*97``/``*98``: telephony/voicemail.py)."""
        if self.engine.voicemail is not None and await self.engine.voicemail.feature_code(
                self.engine, txn, request, peer, tenant_id, domain, caller_ext, dialed, session_expires):
            return True
        wanted = feature_code(dialed)
        if wanted is None:
            return False
        call = self.engine._open_call(txn, request, peer, tenant_id=tenant_id, party=caller_ext.party(), domain=domain,
                               dialed=dialed, session_expires=session_expires, srtp_policy=caller_ext.srtp,
                               direction=ev.Direction.INTERNAL)
        if self.store is None:
            await self.engine._refuse(call, 503, "unavailable")
            return True
        try:
            saved = await self.store(tenant_id, caller_ext.number, feature_changes(wanted))
        except ValueError as exc:
            log.info("feature code refused", call=call.id, tenant=tenant_id, code=wanted.code.value, reason=str(exc))
            await self.engine._refuse(call, 404, "invalid_number")
            return True
        if not saved:
            await self.engine._refuse(call, 404, "no_route")
            return True
        log.info("feature code", call=call.id, tenant=tenant_id, extension=caller_ext.number, code=wanted.code.value)
        await confirm(self.engine, call)
        return True


async def confirm(engine: CallEngine, call: Call, tone: Tone = CONFIRM_TONE) -> None:
    """A feature code done: answer, play ``tone`` for a moment, hang up (also telephony/agent_codes.py)."""
    if not await engine._negotiate_caller(call):
        return
    engine._answer_caller(call)
    caller = call.caller
    if caller is not None and caller.endpoint is not None:
        await engine.media.play(caller.endpoint, tone)
    call.limit_timers.append(asyncio.get_running_loop().call_later(
        CONFIRM_SECONDS, engine._hangup, call, None, ev.HangupSide.SYSTEM, "feature_code"))
