"""Supervisor monitoring: listen, whisper and barge on an extension's call (Asterisk's ChanSpy).

How it works: a supervisor dials ``*33<ext>``. Their INVITE opens a call of its own (its CDR is the
feature code's). Unless the supervisor's extension belongs to a tenant admin of the same tenant (the
``allowed`` port; refused: 403, audited), and unless ``<ext>`` has an answered two-party call of that tenant
right now (else 404), the supervisor is answered and the monitored call's two endpoints leave their relay
for a mixing bridge (``monitor:<call id>``) joined by the supervisor's endpoint; the mode is a setting of
that bridge's matrix (:mod:`.monitor_matrix`) — listen first. Keys 4 / 5 / 6 from the supervisor (RFC 4733
or SIP INFO) switch to listen / whisper / barge; so does ``POST .../monitor-sessions/{id}/mode`` (the
REST API, the live-calls page and the wallboard); ``DELETE .../monitor-sessions/{id}`` (:meth:`Monitoring.stop`)
hangs up the supervisor's call for them.

The media changes of the monitored call run as steps of that call (its inbox), so they never interleave
with its own (a re-INVITE, music on hold). When the supervisor hangs up, the two parties go back to a plain
relay; when the monitored call ends, the supervisor gets a BYE. One supervisor per call at a time (a second
gets 486). Every start, mode change, stop and refusal goes to the ``audit`` port (a table, zvonok.monitoring).

A transfer of the monitored call re-bridges its legs: the session then ends (the supervisor's call goes on
hearing nobody until they hang up), which is what ChanSpy does with a masqueraded channel too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zvonok.logs import get_logger
from zvonok.media.errors import MediaUsageError
from zvonok.media.events import DtmfReceived
from zvonok.sip.message import Request
from zvonok.sip.peer import Peer
from zvonok.sip.transaction import ServerTransaction

from . import events as ev
from .call import Call, Leg, LegState
from .directory import ExtensionInfo
from .monitor_matrix import MonitorMode, MonitorSession, Role, mode_for_key, overrides

if TYPE_CHECKING:
    from .b2bua import CallEngine

log = get_logger(__name__)

SPY_CODE = "*33"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    tenant_id: int
    session_id: str | None
    call_id: str | None  # the monitored call
    supervisor: str  # the supervisor's extension number (or "account:<id>" for a REST request)
    agent: str  # the monitored extension
    action: str  # start | mode | stop | refused
    mode: str | None
    via: str  # feature_code | dtmf | api | system
    detail: str = ""
    at: float


# (tenant, supervisor's employee, the extension to monitor) -> may monitor it
Allowed = Callable[[int, int | None, str | None], Awaitable[bool]]
Audit = Callable[[AuditRecord], Coroutine[Any, Any, None]]


@dataclass(slots=True, eq=False)
class LiveMonitor:
    session: MonitorSession
    supervisor_call: Call
    call: Call  # the monitored one
    agent: Leg
    customer: Leg
    stopped: tuple[str, str] | None = None  # (via, by) when ended from the API or the web, not by a hang-up

    @property
    def bridge_id(self) -> str:
        return f"monitor:{self.call.id}"


def spy_target(dialed: str) -> str | None:
    """The extension of ``*33<ext>`` (None for anything else)."""
    rest = dialed[len(SPY_CODE) :] if dialed.startswith(SPY_CODE) else ""
    return rest if rest.isdigit() else None


def _parties(call: Call, extension: str) -> tuple[Leg, Leg] | None:
    """(agent, customer) of an answered two-party call of ``extension``, when it may be monitored."""
    if (
        call.ended
        or call.answered_at is None
        or call.conference is not None
        or call.park is not None
        or call.voicemail is not None
        or call.access is not None
    ):
        return None
    caller, callee = call.caller, call.callee
    if caller is None or callee is None or caller.endpoint is None or callee.endpoint is None:
        return None
    if caller.state is not LegState.ANSWERED or callee.state is not LegState.ANSWERED:
        return None
    if callee.party.extension_id is not None and callee.party.number == extension:
        return callee, caller
    if caller.party.extension_id is not None and caller.party.number == extension:
        return caller, callee
    return None


class Monitoring:
    """The monitoring application of one call engine."""

    def __init__(
        self,
        engine: CallEngine,
        *,
        allowed: Allowed,
        audit: Audit,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.allowed = allowed
        self.audit = audit
        self.wall_clock = wall_clock
        self.sessions: dict[str, LiveMonitor] = {}

    # -- the feature code ---------------------------------------------------------------------------
    async def on_dial(
        self,
        txn: ServerTransaction,
        request: Request,
        peer: Peer,
        tenant_id: int,
        domain: str,
        caller_ext: ExtensionInfo,
        dialed: str,
        session_expires: int | None,
    ) -> bool:
        target = spy_target(dialed)
        if target is None:
            return False
        engine = self.engine
        sup_call = engine._open_call(
            txn,
            request,
            peer,
            tenant_id=tenant_id,
            party=caller_ext.party(),
            domain=domain,
            dialed=dialed,
            session_expires=session_expires,
            srtp_policy=caller_ext.srtp,
            direction=ev.Direction.INTERNAL,
        )
        if not await self.allowed(tenant_id, caller_ext.employee_id, target):
            self._record(
                tenant_id,
                None,
                None,
                caller_ext.number,
                target,
                "refused",
                None,
                "feature_code",
                "not a supervisor of this tenant or of this agent's queues",
            )
            log.warning(
                "monitoring refused",
                call=sup_call.id,
                tenant=tenant_id,
                by=caller_ext.number,
                extension=target,
            )
            await engine._refuse(sup_call, 403, "monitor_forbidden")
            return True
        found = self._find(tenant_id, target, caller_ext.number)
        if found is None:
            await engine._refuse(sup_call, 404, "nothing_to_monitor")
            return True
        call, agent, customer = found
        if call.monitored is not None:
            await engine._refuse(sup_call, 486, "already_monitored")
            return True
        if not await engine._negotiate_caller(sup_call):
            return True
        again = _parties(call, target)
        if sup_call.ended or again is None or call.monitored is not None:  # it changed during the await
            if not sup_call.ended:
                await engine._refuse(sup_call, 404, "nothing_to_monitor")
            return True
        agent, customer = again
        engine._answer_caller(sup_call)
        self._start(sup_call, call, agent, customer, supervisor=caller_ext.number, target=target, via="feature_code")
        return True

    async def attach(self, sup_call: Call, supervisor: str, target: str, mode: MonitorMode) -> str | None:
        """Join ``sup_call`` (a supervisor's answered call placed by the PBX: telephony/originate.py, for
        ``POST .../monitor-sessions``) to ``target``'s call in ``mode``; the reason it cannot, or None."""
        found = self._find(sup_call.tenant_id, target, supervisor)
        if found is None:
            return "nothing_to_monitor"
        call, agent, customer = found
        if call.monitored is not None:
            return "already_monitored"
        self._start(sup_call, call, agent, customer, supervisor=supervisor, target=target, via="api", mode=mode)
        return None

    def _start(self, sup_call: Call, call: Call, agent: Leg, customer: Leg, *, supervisor: str, target: str,
               via: str, mode: MonitorMode = MonitorMode.LISTEN) -> LiveMonitor:
        tenant_id = call.tenant_id
        session = MonitorSession(
            id=uuid.uuid4().hex[:12],
            tenant_id=tenant_id,
            call_id=call.id,
            supervisor=supervisor,
            agent=target,
            mode=mode,
            started_at=self.wall_clock(),
        )
        live = LiveMonitor(
            session=session, supervisor_call=sup_call, call=call, agent=agent, customer=customer
        )
        sup_call.monitor = live
        call.monitored = live
        self.sessions[session.id] = live
        self._record(
            tenant_id,
            session.id,
            call.id,
            session.supervisor,
            target,
            "start",
            session.mode.value,
            via,
        )
        log.info(
            "monitoring started",
            call=call.id,
            tenant=tenant_id,
            by=session.supervisor,
            extension=target,
            session=session.id,
        )
        self.engine.step(call, self._mix(live))
        return live

    def _find(self, tenant_id: int, extension: str, supervisor: str) -> tuple[Call, Leg, Leg] | None:
        if extension == supervisor:
            return None
        candidates = sorted(
            (c for c in self.engine.calls.values() if c.tenant_id == tenant_id), key=lambda c: c.started_at
        )
        for call in candidates:
            if call.monitor is not None:
                continue  # a supervisor's own monitoring call
            parties = _parties(call, extension)
            if parties is not None:
                return call, *parties
        return None

    # -- media: the matrix ----------------------------------------------------------------------------
    def _keys(self, live: LiveMonitor) -> dict[Role, str] | None:
        sup = live.supervisor_call.caller
        endpoints = (live.customer.endpoint, live.agent.endpoint, sup.endpoint if sup is not None else None)
        if any(e is None for e in endpoints):
            return None
        return {role: e.id for role, e in zip(Role, endpoints, strict=True) if e is not None}

    async def _mix(self, live: LiveMonitor) -> None:
        media = self.engine.media
        sup = live.supervisor_call.caller
        if not live.session.active or sup is None or sup.endpoint is None or live.supervisor_call.ended:
            return
        assert live.customer.endpoint is not None and live.agent.endpoint is not None
        for endpoint in (live.customer.endpoint, live.agent.endpoint, sup.endpoint):
            await media.mix_bridge(live.bridge_id, endpoint, speaks=False, listens=False)
        await self._apply(live)
        await media.on_dtmf(sup.endpoint, lambda event: self._key(live, event))

    async def _apply(self, live: LiveMonitor) -> None:
        keys = self._keys(live)
        if keys is None or not live.session.active:
            return
        by_id = {
            e.id: e
            for leg in (live.customer, live.agent, live.supervisor_call.caller)
            if leg is not None and (e := leg.endpoint) is not None
        }
        try:
            for listener, row in overrides(live.session.mode, keys).items():
                await self.engine.media.set_matrix(live.bridge_id, by_id[listener], hears=row)
        except MediaUsageError as exc:
            # the call's legs left the bridge (a transfer re-bridged them): the mode cannot apply, and a
            # failing step would end the monitored call itself — the supervisor's session alone is stale
            log.warning(
                "monitoring mode not applied",
                call=live.call.id,
                tenant=live.session.tenant_id,
                error=str(exc),
            )

    async def _unmix(self, live: LiveMonitor) -> None:
        """The supervisor left: the two parties relay again (leaving the mixing bridge)."""
        a, b = live.customer.endpoint, live.agent.endpoint
        if live.call.ended or a is None or b is None:
            return
        if live.customer is not live.call.caller and live.customer is not live.call.callee:
            return  # the call was transferred meanwhile: its legs are bridged anew already
        await self.engine.media.bridge(a, b)

    # -- switching ------------------------------------------------------------------------------------
    def _key(self, live: LiveMonitor, event: DtmfReceived) -> None:
        mode = mode_for_key(event.digit)
        if mode is not None:
            self.switch(live, mode, via="dtmf")

    def switch(self, live: LiveMonitor, mode: MonitorMode, *, via: str, by: str | None = None) -> bool:
        """Change the mode (False: the session has ended); applied as a step of the monitored call."""
        if not live.session.active:
            return False
        if live.session.switch(mode, self.wall_clock()) is None:
            return True
        self._record(
            live.session.tenant_id,
            live.session.id,
            live.call.id,
            by or live.session.supervisor,
            live.session.agent,
            "mode",
            mode.value,
            via,
        )
        log.info(
            "monitoring mode", call=live.call.id, tenant=live.session.tenant_id, mode=mode.value, via=via
        )
        self.engine.step(live.call, self._apply(live))
        return True

    def stop(self, live: LiveMonitor, *, via: str, by: str) -> bool:
        """End the session by hanging up the supervisor's call (False: it has ended already); :meth:`left`
        audits the stop."""
        if not live.session.active or live.supervisor_call.ended:
            return False
        live.stopped = (via, by)
        self.engine._hangup(live.supervisor_call, None, ev.HangupSide.SYSTEM, "monitor_stopped")
        return True

    def session(self, tenant_id: int, session_id: str) -> LiveMonitor | None:
        live = self.sessions.get(session_id)
        return live if live is not None and live.session.tenant_id == tenant_id else None

    def of_tenant(self, tenant_id: int) -> list[MonitorSession]:
        return [live.session for live in self.sessions.values() if live.session.tenant_id == tenant_id]

    # -- the end --------------------------------------------------------------------------------------
    def left(self, call: Call) -> None:
        """``call`` ended (from the engine's ``_finish``): a supervisor's, or a monitored one."""
        live = call.monitor if call.monitor is not None else call.monitored
        if not isinstance(live, LiveMonitor):
            return
        live.supervisor_call.monitor = None
        live.call.monitored = None
        self.sessions.pop(live.session.id, None)
        if live.session.stop(self.wall_clock()) is not None:
            via, detail = "system", "supervisor hung up" if call is live.supervisor_call else "call ended"
            if live.stopped is not None and call is live.supervisor_call:
                via, detail = live.stopped[0], f"stopped by {live.stopped[1]}"
            self._record(
                live.session.tenant_id,
                live.session.id,
                live.call.id,
                live.session.supervisor,
                live.session.agent,
                "stop",
                live.session.mode.value,
                via,
                detail,
            )
        if call is live.supervisor_call:
            if not live.call.ended:
                self.engine.step(live.call, self._unmix(live))
        elif not live.supervisor_call.ended:
            self.engine._hangup(live.supervisor_call, None, ev.HangupSide.SYSTEM, "monitored_call_ended")

    def _record(
        self,
        tenant_id: int,
        session_id: str | None,
        call_id: str | None,
        supervisor: str,
        agent: str,
        action: str,
        mode: str | None,
        via: str,
        detail: str = "",
    ) -> None:
        record = AuditRecord(
            tenant_id=tenant_id,
            session_id=session_id,
            call_id=call_id,
            supervisor=supervisor,
            agent=agent,
            action=action,
            mode=mode,
            via=via,
            detail=detail,
            at=self.wall_clock(),
        )
        self.engine.spawn(self.audit(record))
