"""Originate: a call the PBX places itself (REST, CRM click-to-call), with no caller's INVITE.

How it works: :meth:`Originator.plan` checks the request before anyone rings — the employee's extension
of the tenant, the target as an extension of the same tenant or an outside number of the employee's dial
plan allowed by their calling permissions (:func:`.outside.check_outside`, the one check of a phone's
outside call and a fax) — and :meth:`Originator.start` rings every registered device of the employee at
once (the forks of an internal call, placed by the engine's ``_fork`` with our own From: the target's
number, so the phone shows whom it is about to call). The first device to answer wins, the others are
cancelled; that leg becomes the call's caller leg, as if the employee had dialed: our INVITE carried the
offer, the phone's 200 the answer, the dialog is confirmed. Then the engine's own routing places the
second leg — ``_ring_extensions`` for an extension, ``outside.route`` (permissions, spending limits,
rating, trunks with failover, the employee's caller ID) for an outside number — while the employee hears
our in-band ringback (or the far end's early media). When the target answers, ``_connect`` bridges the
two endpoints exactly as for any call and publishes CallAnswered; from there on it is an ordinary call
(either side's BYE ends it). The events are the ordinary ones (CallStarted with the employee as the
caller and the target as the callee number, LegCreated, CallRouted, CallAnswered, CallEnded), plus
``CallOriginated`` and, when the two never talked, ``OriginateFailed`` with its reason.

A call center's callback (telephony/queue_callback.py) is an originated call too: the agent's phones (every
extension of theirs) ring first, the target is the customer's number checked and rated as the queue's
company (``Target.profile``), and an :class:`OriginateListener` on the session hears the agent answer (and
may still refuse the call), the target answer and the end.

The outcome of each originated call is kept for a while (bounded) so REST can say how it went:
:class:`Phase` and :data:`TRANSITIONS` are the table; :func:`employee_failure` and :func:`target_failure`
turn SIP statuses and dispositions into reasons. These are pure; only :class:`Originator` touches the
engine. Each phase change (and a refusal for want of a registered phone) is also handed, as an
:class:`OriginateRecord`, to the ``journal`` port (zvonok.originates: a table, so the outcome outlives
the process and reaches the CRM timeline); the port only queues it, nothing is written on the call's path.
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from zvonok.logs import get_logger
from zvonok.media.errors import PortsExhausted
from zvonok.media.interface import RINGBACK_RU
from zvonok.pstn.routing import CallerProfile
from zvonok.sip.grammar import name_addr

from . import events as ev
from .call import CODECS, Call, Leg, LegState
from .directory import ExtensionInfo
from .leg_events import Answered, Challenged, Progress, Terminated, TerminationCause
from .monitor_matrix import MonitorMode
from .outside import OutsideRefused, check_outside

log = get_logger(__name__)


class Phase(enum.StrEnum):
    RINGING_EMPLOYEE = "ringing_employee"  # the employee's devices ring
    DIALING = "dialing"  # the employee answered; the target rings
    CONNECTED = "connected"  # both talk
    ENDED = "ended"  # the call was connected and is over
    FAILED = "failed"  # it ended before the two talked (``reason`` says why)


TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.RINGING_EMPLOYEE: frozenset({Phase.DIALING, Phase.FAILED}),
    Phase.DIALING: frozenset({Phase.CONNECTED, Phase.FAILED}),
    Phase.CONNECTED: frozenset({Phase.ENDED}),
    Phase.ENDED: frozenset(),
    Phase.FAILED: frozenset(),
}


class OriginateRefused(Exception):
    """The request cannot be carried out: ``status`` is the HTTP answer, ``reason`` a stable code."""

    def __init__(self, status: int, reason: str, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after  # seconds, for a 429/503's Retry-After


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where the second leg goes: an extension of the tenant, or an outside number (E.164)."""

    number: str  # the extension's number, or the E.164 number
    extension: ExtensionInfo | None = None  # None: outside
    monitor: MonitorMode | None = None  # not a call to it: monitoring its call in this mode (monitor.py)
    profile: CallerProfile | None = None  # whose permissions and rates an outside target uses (None: the employee's)


class OriginateListener(Protocol):
    """Told how an originated call goes (a queue callback's; the engine's loop, synchronously)."""

    def answered(self, call: Call, leg: Leg) -> bool:
        """The employee's phone answered: True to dial the target, False to end the call now."""
        ...

    def connected(self, call: Call) -> None: ...

    def ended(self, call: Call, connected: bool, reason: str | None) -> None:
        """The call is over: after the two talked (``connected``), or failed with ``reason``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginateRecord:
    """What the journal keeps of one originated call at one moment (times: wall-clock seconds)."""

    call_id: str
    tenant_id: int
    kind: str  # call (REST, CRM) | monitor | callback (a call center's)
    requested_by: str  # "account:<id>", "token:<id>", or "" (the system: a queue's callback)
    employee_id: int | None  # whose phone rings first
    extension: str
    to: str
    client_id: int | None  # the CRM client called, if known
    phase: Phase
    reason: str | None
    started_at: float
    dialing_at: float | None = None
    connected_at: float | None = None
    finished_at: float | None = None


OriginateJournal = Callable[[OriginateRecord], None]


@dataclass(slots=True, kw_only=True)
class Originate:
    """One originated call as REST sees it."""

    call_id: str
    tenant_id: int
    extension: ExtensionInfo
    target: Target
    phase: Phase = Phase.RINGING_EMPLOYEE
    reason: str | None = None
    started_at: float = 0.0
    dialing_at: float | None = None
    connected_at: float | None = None
    finished_at: float | None = None
    kind: str = "call"  # call (REST, CRM) | monitor | callback
    requested_by: str = ""
    client_id: int | None = None
    employee_legs: list[Leg] = field(default_factory=list)
    listener: OriginateListener | None = None
    journal: OriginateJournal | None = None  # told of every phase change

    def advance(self, phase: Phase, reason: str | None = None) -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise ValueError(f"originate {self.call_id}: {self.phase} -> {phase} is not a transition")
        self.phase = phase
        if reason is not None:
            self.reason = reason
        now = time.time()
        if phase is Phase.DIALING:
            self.dialing_at = now
        elif phase is Phase.CONNECTED:
            self.connected_at = now
        else:
            self.finished_at = now
        if self.journal is not None:
            self.journal(self.record())

    def record(self) -> OriginateRecord:
        return OriginateRecord(
            call_id=self.call_id, tenant_id=self.tenant_id, kind=self.kind, requested_by=self.requested_by,
            employee_id=self.extension.employee_id, extension=self.extension.number, to=self.target.number,
            client_id=self.client_id, phase=self.phase, reason=self.reason, started_at=self.started_at,
            dialing_at=self.dialing_at, connected_at=self.connected_at, finished_at=self.finished_at)


class OriginateQuota:
    """What one company may originate: at most ``max_active`` originated calls not yet over at once, and at
    most ``per_minute`` new ones in any 60 s. A stolen token or a runaway script then rings a bounded number of
    phones and places a bounded number of outside calls (the spending limits bound their cost), and one
    company's burst never takes the engine from the others. Pure: ``now`` is the caller's monotonic clock.

    Memory: one entry per company with calls in progress or started within the minute; the start times
    kept per company are at most ``per_minute``."""

    WINDOW = 60.0

    def __init__(self, *, max_active: int, per_minute: int) -> None:
        if max_active < 1 or per_minute < 1:
            raise ValueError("originate limits must be at least 1")
        self.max_active = max_active
        self.per_minute = per_minute
        self._active: dict[int, set[str]] = {}
        self._starts: dict[int, deque[float]] = {}

    def admit(self, tenant_id: int, now: float) -> None:
        """Raise :class:`OriginateRefused` (429, with the seconds to wait) when ``tenant_id`` is at a limit;
        otherwise count a start at ``now``."""
        self._prune(now)
        if len(self._active.get(tenant_id, ())) >= self.max_active:
            raise OriginateRefused(429, "too_many_originates", f"at most {self.max_active} originated calls "
                                   "of the company at once: wait for one to end", retry_after=5.0)
        starts = self._starts.get(tenant_id)
        if starts is not None and len(starts) >= self.per_minute:
            wait = max(1.0, starts[0] + self.WINDOW - now)
            raise OriginateRefused(429, "too_many_originates", f"at most {self.per_minute} originated calls of "
                                   "the company per minute", retry_after=wait)
        if starts is None:
            starts = self._starts[tenant_id] = deque(maxlen=self.per_minute)
        starts.append(now)

    def started(self, tenant_id: int, call_id: str) -> None:
        self._active.setdefault(tenant_id, set()).add(call_id)

    def ended(self, tenant_id: int, call_id: str) -> None:
        calls = self._active.get(tenant_id)
        if calls is not None:
            calls.discard(call_id)
            if not calls:
                del self._active[tenant_id]

    def active(self, tenant_id: int) -> int:
        return len(self._active.get(tenant_id, ()))

    def _prune(self, now: float) -> None:
        horizon = now - self.WINDOW
        for tenant_id in [t for t, starts in self._starts.items() if not starts or starts[-1] <= horizon]:
            del self._starts[tenant_id]  # nothing of it within the minute
        for starts in self._starts.values():
            while starts and starts[0] <= horizon:
                starts.popleft()


def employee_failure(statuses: list[int], *, timed_out: bool) -> str:
    """Why none of the employee's devices answered: our timeout, busy, declined, or unreachable."""
    if timed_out:
        return "employee_no_answer"
    if any(s in (486, 600) for s in statuses):
        return "employee_busy"
    if 603 in statuses:
        return "employee_declined"
    return "employee_unavailable"


def target_failure(disposition: ev.Disposition, cause: str) -> str:
    """Why the target never talked, from the call's end as the engine tells it."""
    if disposition is ev.Disposition.BUSY:
        return "busy" if cause != "declined" else "declined"
    if disposition is ev.Disposition.NO_ANSWER:
        return "no_answer"
    if disposition is ev.Disposition.CANCELLED:
        return "employee_hung_up"
    return cause


def profile_of(ext: ExtensionInfo) -> CallerProfile:
    """The employee's calling profile: their permissions, limits, caller ID and cost centre."""
    return CallerProfile(tenant_id=ext.tenant_id, employee_id=ext.employee_id,
                         department_id=ext.department_id, office_id=ext.office_id)


class Originator:
    """Originated calls of one engine; the engine reaches it through ``engine.originator`` (``_finish``)."""

    def __init__(self, engine: Any, *, answer_timeout: float = 30.0, keep: int = 1000,
                 quota: OriginateQuota | None = None, journal: OriginateJournal | None = None) -> None:
        self.engine = engine  # zvonok.telephony.b2bua.CallEngine
        self.answer_timeout = answer_timeout  # how long the employee's devices ring
        self.keep = keep  # outcomes remembered for REST, newest last
        self.recent: OrderedDict[str, Originate] = OrderedDict()
        self.quota = quota if quota is not None else OriginateQuota(max_active=30, per_minute=60)
        self.journal = journal  # zvonok.originates.store.OriginateLog: each phase change, queued to a table

    # -- before anything rings -----------------------------------------------------------------------
    async def plan(self, tenant_id: int, extension: str, to: str) -> tuple[ExtensionInfo, Target]:
        """The employee's extension and the target, or :class:`OriginateRefused` (404 / 422 / 403)."""
        engine = self.engine
        ext = await engine.directory.extension(tenant_id, extension) if extension else None
        if ext is None:
            raise OriginateRefused(404, "no_extension", f"extension {extension!r} does not exist")
        if not ext.enabled:
            raise OriginateRefused(409, "extension_disabled", f"extension {extension} is disabled")
        to = to.strip()
        if not to:
            raise OriginateRefused(422, "invalid_number", "no number to call")
        callee = await engine.directory.extension(tenant_id, to)
        if callee is not None:
            if callee.extension_id == ext.extension_id:
                raise OriginateRefused(422, "invalid_number", "an extension cannot call itself")
            return ext, Target(number=callee.number, extension=callee)
        if engine.trunks is None:
            raise OriginateRefused(422, "invalid_number", f"{to!r} is no extension (no outside calls here)")
        try:
            checked = check_outside(engine.trunks.snapshot, profile_of(ext), to)
        except OutsideRefused as refused:
            if refused.cause == "not_allowed":
                raise OriginateRefused(403, "not_allowed", str(refused)) from refused
            detail = f"{to!r} is no extension of the company" if refused.cause == "no_route" else str(refused)
            raise OriginateRefused(422, "invalid_number", detail) from refused
        return ext, Target(number=checked.dest.number)

    # -- ringing the employee ------------------------------------------------------------------------
    async def start(self, tenant_id: int, extension: str, to: str, *, requested_by: str = "",
                    client_id: int | None = None) -> Originate:
        """Check, then ring the employee's devices; the rest happens on the engine's loop. Raises
        :class:`OriginateRefused` (also 409 ``not_registered``: no device of the employee is registered).
        ``requested_by`` and ``client_id`` (the CRM client called) go to the journal."""
        ext, target = await self.plan(tenant_id, extension, to)
        self.quota.admit(tenant_id, time.monotonic())
        return await self._ring(tenant_id, ext, target, requested_by=requested_by, client_id=client_id)

    async def start_monitor(self, tenant_id: int, supervisor: str, extension: str, mode: MonitorMode, *,
                            requested_by: str = "") -> Originate:
        """Ring the supervisor's phones; when they answer, join them to ``extension``'s call in ``mode``
        (telephony/monitor.py, as ``*33<ext>`` does). 404 when that extension has no call to monitor now,
        403 when the supervisor's extension may not monitor (not a tenant admin's)."""
        engine = self.engine
        monitoring = engine.monitoring
        if monitoring is None:
            raise OriginateRefused(503, "unavailable", "no monitoring in this process")
        ext = await engine.directory.extension(tenant_id, supervisor) if supervisor else None
        agent = await engine.directory.extension(tenant_id, extension) if extension else None
        if ext is None or agent is None:
            missing = supervisor if ext is None else extension
            raise OriginateRefused(404, "no_extension", f"extension {missing!r} does not exist")
        if not await monitoring.allowed(tenant_id, ext.employee_id, agent.number):
            raise OriginateRefused(403, "monitor_forbidden",
                                   f"extension {supervisor} is no supervisor's of extension {agent.number}")
        if monitoring._find(tenant_id, agent.number, ext.number) is None:
            raise OriginateRefused(404, "nothing_to_monitor", f"extension {extension} has no call to monitor now")
        self.quota.admit(tenant_id, time.monotonic())
        return await self._ring(tenant_id, ext, Target(number=agent.number, extension=agent, monitor=mode),
                                requested_by=requested_by)

    async def ring_first(self, tenant_id: int, extensions: list[ExtensionInfo], target: Target,
                         listener: OriginateListener) -> Originate:
        """Ring every registered device of ``extensions`` (one employee's), then dial ``target`` (already
        checked by the caller) when one answers and ``listener`` agrees: a queue callback."""
        if not extensions:
            raise OriginateRefused(409, "not_registered", "no extension to ring")
        return await self._ring(tenant_id, extensions[0], target, extensions=extensions, listener=listener)

    async def _ring(self, tenant_id: int, ext: ExtensionInfo, target: Target, *,
                    extensions: list[ExtensionInfo] | None = None,
                    listener: OriginateListener | None = None, requested_by: str = "",
                    client_id: int | None = None) -> Originate:
        engine = self.engine
        kind = "monitor" if target.monitor is not None else "callback" if listener is not None else "call"
        now = time.time()
        bindings = [(e, b) for e in extensions or [ext] for b in engine.location.lookup(tenant_id, e.extension_id, now)
                    if engine.reachable(b, e.srtp)]
        outside = target.extension is None
        call_id = uuid.uuid4().hex
        if not bindings:
            engine.bus.publish(ev.OriginateFailed(tenant_id=tenant_id, call_id=call_id, at=now, extension=ext.number,
                                                  to=target.number, reason="not_registered"))
            if self.journal is not None:  # an attempt that rang nobody: no CDR, but the CRM's timeline shows it
                self.journal(OriginateRecord(
                    call_id=call_id, tenant_id=tenant_id, kind=kind, requested_by=requested_by,
                    employee_id=ext.employee_id, extension=ext.number, to=target.number, client_id=client_id,
                    phase=Phase.FAILED, reason="not_registered", started_at=now, finished_at=now))
            raise OriginateRefused(409, "not_registered", f"extension {ext.number} has no registered phone")
        tenant = engine.trunks.snapshot.tenants.get(tenant_id) if engine.trunks is not None else None
        if tenant is None:  # the routing snapshot is behind a new company: nothing names its domain yet
            raise OriginateRefused(409, "not_ready", "the company is not ready for calls yet, try again")
        if tenant.suspended:
            raise OriginateRefused(403, "tenant_suspended", "the company is suspended")
        domain = tenant.domain
        call = Call(id=call_id, tenant_id=tenant_id, started_at=now, domain=domain,
                    direction=ev.Direction.OUTBOUND if outside else ev.Direction.INTERNAL)
        session = Originate(call_id=call_id, tenant_id=tenant_id, extension=ext, target=target, started_at=now,
                            listener=listener, kind=kind, requested_by=requested_by, client_id=client_id,
                            journal=self.journal)
        call.originate = session
        self._remember(session)
        if self.journal is not None:
            self.journal(session.record())
        self.quota.started(tenant_id, call_id)
        engine.calls[call.id] = call
        engine.publish(ev.CallStarted, call, caller=ext.party(), callee_number=target.number,
                       direction=call.direction)
        engine.publish(ev.CallOriginated, call, extension=ext.number, to=target.number)
        log.info("originate: ringing the employee", call=call.id, tenant=tenant_id, extension=ext.number,
                 to=target.number, devices=len(bindings))
        try:
            endpoints = await engine._endpoints(call, len(bindings))
        except PortsExhausted as exc:  # the call ends as any call that found no ports (its CDR says so)
            session.reason = "no_ports"
            engine._hangup(call, None, ev.HangupSide.SYSTEM, "no_ports")
            raise OriginateRefused(503, "no_ports", "no media ports free: try again later") from exc
        if endpoints is None:
            return session
        display = target.extension.display_name if target.extension is not None else target.number
        from_header = name_addr(display or target.number, target.number, domain)
        for (owner, binding), endpoint in zip(bindings, endpoints, strict=True):
            leg = engine._fork(call, owner.party(), binding, endpoint, list(CODECS), display, domain,
                               handler=self._on_employee_event, srtp_policy=owner.srtp,
                               from_header=from_header, role=ev.LegRole.CALLER)
            session.employee_legs.append(leg)
        if not call.ended:
            call.no_answer = asyncio.get_running_loop().call_later(self.answer_timeout, self._no_answer, call)
        return session

    def _remember(self, session: Originate) -> None:
        self.recent[session.call_id] = session
        while len(self.recent) > self.keep:
            self.recent.popitem(last=False)

    def status(self, tenant_id: int, call_id: str) -> Originate | None:
        found = self.recent.get(call_id)
        return found if found is not None and found.tenant_id == tenant_id else None

    def _no_answer(self, call: Call) -> None:
        """The employee let it ring: cancel every device; the last one's end fails the originate."""
        call.no_answer = None
        session: Originate | None = call.originate
        if session is None or call.ended or call.caller is not None:
            return
        session.reason = "employee_no_answer"
        for leg in session.employee_legs:
            self.engine._cancel_fork(leg, None)

    def device_gone(self, call: Call, leg: Leg) -> None:
        """One of the employee's ringing devices will not answer (it unregistered, or its registration expired):
        its fork is cancelled, and the originate fails now (``employee_unavailable``, as a device answering
        480) when no other device of the employee rings — not after its 487, which a phone that vanished may
        never send (the CANCEL's 64*T1)."""
        session: Originate | None = call.originate
        if (
            session is None
            or call.ended
            or call.caller is not None
            or leg not in session.employee_legs
            or leg.cancelled  # cancelled already: the whole ring is ending (our timeout, an offer withdrawn)
            or leg.state not in (LegState.TRYING, LegState.RINGING)
        ):
            return
        self.engine._cancel_fork(leg, None)
        # a device gone earlier is cancelled but may not have ended: it rings no more either
        if all(other is leg or other.cancelled or other.state is LegState.ENDED for other in session.employee_legs):
            self._fail(call, "employee_unavailable")

    def _on_employee_event(self, leg: Leg, event: object) -> None:
        engine = self.engine
        call = leg.call
        session: Originate | None = call.originate
        assert session is not None
        if isinstance(event, Progress):
            if leg.state is LegState.TRYING:
                leg.state = LegState.RINGING
                engine.publish(ev.LegRinging, call, leg_id=leg.id, early_media=False)
        elif isinstance(event, Answered):
            self._employee_answered(call, session, leg, event)
        elif isinstance(event, Challenged):
            engine._leg_hangup(leg)  # no credentials for a phone: the leg fails with the 401/407
        elif isinstance(event, Terminated) and leg.state in (LegState.TRYING, LegState.RINGING):
            leg.state = LegState.ENDED
            if event.cause is TerminationCause.REJECTED:
                leg.final_status = event.status or 480
            elif event.cause is TerminationCause.TIMEOUT:
                leg.final_status = 408
            else:
                leg.final_status = event.status if event.status and event.status >= 300 else 487
            engine.publish(ev.LegEnded, call, leg_id=leg.id,
                           cause="cancelled" if leg.cancelled else f"sip_{leg.final_status}")
            engine._release(leg)
            if leg in call.forks:
                call.forks.remove(leg)
            if call.ended or call.caller is not None:
                return
            if any(other.state is not LegState.ENDED for other in session.employee_legs):
                return
            reason = employee_failure([other.final_status or 480 for other in session.employee_legs],
                                      timed_out=session.reason == "employee_no_answer")
            session.reason = reason
            disposition = ev.Disposition.BUSY if reason == "employee_busy" else ev.Disposition.NO_ANSWER \
                if reason == "employee_no_answer" else ev.Disposition.FAILED
            engine.spawn(engine._finish(call, disposition, ev.HangupSide.SYSTEM, f"originate_{reason}",
                                        leg.final_status))

    def _employee_answered(self, call: Call, session: Originate, leg: Leg, event: Answered) -> None:
        engine = self.engine
        assert leg.sip is not None and leg.sip.dialog is not None
        leg.dialog = leg.sip.dialog
        if call.ended or call.caller is not None or leg.cancelled or event.media is None:
            engine._send_bye(leg)  # a second phone answered too (or too late): its dialog ends at once
            leg.state = LegState.ENDED
            engine.publish(ev.LegEnded, call, leg_id=leg.id, cause="completed_elsewhere")
            engine._release(leg)
            if leg in call.forks:
                call.forks.remove(leg)
            if call.caller is None and not call.ended and event.media is None:
                self._fail(call, "incompatible_media")
            return
        if call.no_answer is not None:
            call.no_answer.cancel()
            call.no_answer = None
        leg.media = event.media
        leg.state = LegState.ANSWERED
        call.caller = leg  # from here on the employee's phone is the caller of an ordinary call
        engine.dialogs[leg.dialog.key] = leg
        # the employee's forks leave the call's forks: the target's forks decide its outcome alone
        call.forks = [f for f in call.forks if f not in session.employee_legs]
        for other in session.employee_legs:
            if other is not leg and other.state is not LegState.ENDED:
                engine._cancel_fork(other, 'SIP;cause=200;text="Call completed elsewhere"')
        if session.listener is not None and not session.listener.answered(call, leg):
            engine.publish(ev.LegAnswered, call, leg_id=leg.id)
            self._fail(call, "cancelled")  # (a queue's offer withdrawn meanwhile: BYE to the phone)
            return
        session.advance(Phase.DIALING)
        engine.publish(ev.LegAnswered, call, leg_id=leg.id)
        log.info("originate: the employee answered, dialing", call=call.id, tenant=call.tenant_id,
                 to=session.target.number)
        engine.step(call, self._dial(call, session, leg))

    def _fail(self, call: Call, reason: str) -> None:
        session: Originate | None = call.originate
        if session is not None:
            session.reason = reason
            for other in session.employee_legs:  # (the engine cancels only the forks of a callee)
                if other.state in (LegState.TRYING, LegState.RINGING):
                    self.engine._cancel_fork(other, None)
        self.engine._hangup(call, None, ev.HangupSide.SYSTEM, f"originate_{reason}",
                            disposition=ev.Disposition.FAILED)

    async def _dial(self, call: Call, session: Originate, leg: Leg) -> None:
        """The second leg: the engine's own routing, with in-band ringback to the employee meanwhile."""
        engine = self.engine
        assert leg.media is not None and leg.endpoint is not None
        await engine._set_remote(leg, leg.media)
        if call.ended:
            return
        target = session.target
        if target.monitor is not None:  # a supervisor's phone: joined to the agent's call, nobody is dialed
            failed = (await engine.monitoring.attach(call, session.extension.number, target.number, target.monitor)
                      if engine.monitoring is not None else "unavailable")
            if failed is not None:
                self._fail(call, failed)
                return
            call.answered_at = time.time()
            engine.publish(ev.CallAnswered, call, answered_leg_id=leg.id)
            session.advance(Phase.CONNECTED)
            return
        call.ringback = True  # the far end's 180 plays nothing more; its early media replaces the tone
        await engine.media.play(leg.endpoint, RINGBACK_RU)
        if target.extension is not None:
            await engine._ring_extensions(call, [target.extension], time.time(),
                                          from_number=session.extension.number)
        else:
            await engine.outside.route(call, target.number, target.profile or profile_of(session.extension))

    # -- the end (the engine's _finish) ----------------------------------------------------------------
    def ended(self, call: Call, disposition: ev.Disposition, cause: str) -> None:
        session: Originate | None = call.originate
        if session is None or session.phase in (Phase.ENDED, Phase.FAILED):
            return
        self.quota.ended(session.tenant_id, session.call_id)
        session.employee_legs = []  # (they hold the call: nothing of it outlives it here)
        listener, session.listener = session.listener, None
        if call.answered_at is not None:
            if session.phase is Phase.DIALING:
                session.advance(Phase.CONNECTED)
            session.advance(Phase.ENDED)
            if listener is not None:
                listener.ended(call, True, None)
            return
        reason = session.reason if session.reason else (
            "employee_hung_up" if session.phase is Phase.DIALING and call.hangup_side is ev.HangupSide.CALLER
            else target_failure(disposition, cause) if session.phase is Phase.DIALING
            else cause.removeprefix("originate_"))
        session.advance(Phase.FAILED, reason)
        self.engine.publish(ev.OriginateFailed, call, extension=session.extension.number,
                            to=session.target.number, reason=reason)
        log.info("originate failed", call=call.id, tenant=call.tenant_id, reason=reason)
        if listener is not None:
            listener.ended(call, False, reason)

    def connected(self, call: Call) -> None:
        """The target answered (the engine's ``_connect``): the two talk."""
        session: Originate | None = call.originate
        if session is not None and session.phase is Phase.DIALING:
            session.advance(Phase.CONNECTED)
            if session.listener is not None:
                session.listener.connected(call)
