"""Ring groups in the call engine: a call that dials a group's number, or a number (DID) whose destination
is ``{"kind": "ring_group", "number": "600"}``, runs the group's plan (:mod:`.ring_group`, sans-I/O).

An application of the call engine (:class:`RingGroupCalls`, ``engine.group_calls``, like
:mod:`.call_forward`); it only carries the plan out, with the engine's own ways of ringing:

- a step's extension members ring through ``_ring_extensions`` (every registered phone of each; the
  members' own forwarding does not apply inside a group: a member's CFU would take the call out of it),
  an outside member through ``outside.route`` under the tenant's calling permissions, rated and billed to
  the tenant, like an employee's forwarding to an outside number;
- the step's ring time is ``call.no_answer`` (re-armed with the step's seconds); when it fires, or every
  device of the step refused, :meth:`RingGroupCalls.next_step` cancels the step's forks (their
  final responses then decide nothing: ``call.forward_pending``, as forwarding does) and queues the next
  step on the call's inbox; after the last, the group's no-answer destination (``_to_destination``) or 480;
- who can take a call is asked when each step starts: an extension that is disabled, on DND, has no
  phone registered or is in an answered call is skipped, as is an outside member the tenant may not call
  (its calling permissions, a rate when it has a tariff, a route); a spending limit reached still ends
  the call as ``outside.route`` decides;
- a member answering a round-robin group becomes its memory (through the ``groups`` port, written
  best-effort) — seen on the bus (``CallAnswered``), the same event the CDR writer folds.

Events: ``RingGroupCalled``, ``RingGroupRinging`` per step, ``RingGroupNoAnswer``; the CDR's callee names
the group until a member answers.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from zvonok.destination import stored
from zvonok.dialing import DestinationClass, InvalidNumber, normalize
from zvonok.logs import get_logger
from zvonok.pstn.routing import CallerProfile
from zvonok.sip.message import Request
from zvonok.sip.peer import Peer
from zvonok.sip.transaction import ServerTransaction

from . import events as ev
from .call import Call
from .directory import ExtensionInfo
from .forwarding import NO_FORWARDING
from .ring_group import RingGroupInfo, RingPlan, Step, is_outside, remembered

if TYPE_CHECKING:
    from .b2bua import CallEngine

log = get_logger(__name__)


class RingGroups(Protocol):
    """The port to the tenant's groups (:class:`zvonok.ringgroup.service.RingGroupDirectory`)."""

    async def group(self, tenant_id: int, number: str) -> RingGroupInfo | None: ...

    async def remember(self, tenant_id: int, group_id: int, member: str) -> None: ...


@dataclass
class GroupRun:
    """One call's way through a group (on ``call.ring_group``; holds no reference to the call)."""

    group: RingGroupInfo
    plan: RingPlan
    from_number: str | None  # the caller's number as the members see it (None: the caller's own)
    visited: tuple[str, ...]  # the groups this call has been to (a no-answer chain may not loop)
    legs: dict[str, str] = field(default_factory=dict)  # leg id -> the member it rings
    active: bool = True  # False once the plan is over (the no-answer destination owns the call)


class RingGroupCalls:
    """Calls to ring groups: the plan's steps rung through the engine, and round robin's memory."""

    def __init__(self, engine: CallEngine, groups: RingGroups | None = None) -> None:
        self.engine = engine
        self.groups = groups  # the tenant's groups (set by the composition root); None: no groups
        self.memory: dict[str, tuple[int, int, str]] | None = None  # answered calls -> the memory to write

    # -- the ways in -----------------------------------------------------------------------------------
    async def dial(self, txn: ServerTransaction, request: Request, peer: Peer, creds: Any,
                               caller_ext: ExtensionInfo, dialed: str, session_expires: int | None) -> bool:
        """The number a phone dialed is a ring group of its tenant: the call goes there (True)."""
        if self.groups is None or not (dialed.isdigit() and 2 <= len(dialed) <= 8):
            return False  # a group's number is 2-8 digits: outside numbers cost no look-up
        group = await self.groups.group(creds.tenant_id, dialed)
        if group is None:
            return False
        call = self.engine._open_call(txn, request, peer, tenant_id=creds.tenant_id, party=caller_ext.party(),
                               domain=creds.realm, dialed=dialed, session_expires=session_expires,
                               srtp_policy=caller_ext.srtp, direction=ev.Direction.INTERNAL)
        await self.ring(call, group, from_number=None)
        return True

    async def to_destination(self, call: Call, destination: Any, *, from_number: str | None) -> None:
        """A number's (or a no-answer) destination ``{"number": "600"}``."""
        number = str(destination.get("number", "")) if isinstance(destination, dict) else ""
        group = await self.groups.group(call.tenant_id, number) if self.groups and number else None
        if group is None:
            await self.engine._refuse(call, 404, "no_route")
            return
        await self.ring(call, group, from_number=from_number)

    async def ring(self, call: Call, group: RingGroupInfo, *, from_number: str | None) -> None:
        before: GroupRun | None = call.ring_group
        if before is not None and group.number in before.visited:
            log.warning("ring group loop: refused", call=call.id, tenant=call.tenant_id, group=group.number)
            await self.engine._refuse(call, 480, "no_answer", disposition=ev.Disposition.NO_ANSWER)
            return
        visited = (*before.visited, group.number) if before is not None else (group.number,)
        call.ring_group = GroupRun(group=group, plan=RingPlan(group, self.engine.clock()), from_number=from_number,
                                   visited=visited)
        self._watch_answers()
        log.info("ring group", call=call.id, tenant=call.tenant_id, group=group.number, strategy=group.strategy.value,
                 members=len(group.members))
        self.engine.publish(ev.RingGroupCalled, call, group_id=group.id, group_number=group.number, group_name=group.name,
                     strategy=group.strategy.value)
        await self._step(call)

    # -- steps -----------------------------------------------------------------------------------------
    def next_step(self, call: Call) -> bool:
        """The current step ended unanswered (its time ran out, or every device refused): True when the
        group takes it from here (the next step, or its no-answer destination, queued on the call)."""
        run: GroupRun | None = call.ring_group
        if run is None or not run.active or call.ended or call.callee is not None or call.access is not None:
            return False
        call.forward_pending = True
        if call.no_answer is not None:
            call.no_answer.cancel()
            call.no_answer = None
        for fork in call.forks:
            self.engine._cancel_fork(fork, None)
        self.engine.step(call, self._step(call))
        return True

    async def _step(self, call: Call) -> None:
        run: GroupRun | None = call.ring_group
        if run is None or call.ended or call.callee is not None:
            return
        call.forward_pending = True
        try:
            extensions = await self._extensions(call, run.group)
            step = run.plan.next_step(self.engine.clock(), lambda m: self._available(call, m, extensions))
            call.ringing_ext = None
            call.early_media_from = None
            call.forks_from = len(call.forks)
            if step is None:
                await self._nobody_answered(call, run)
                return
            await self._ring_step(call, run, step, extensions)
        finally:
            call.forward_pending = False

    async def _ring_step(self, call: Call, run: GroupRun, step: Step, extensions: dict[str, ExtensionInfo]) -> None:
        log.info("ring group step", call=call.id, tenant=call.tenant_id, group=run.group.number, step=step.index,
                 members=list(step.members), seconds=step.seconds)
        # before the legs: the CDR puts back the call's route here (an earlier outside step's is not its own)
        self.engine.publish(ev.RingGroupRinging, call, group_number=run.group.number, step=step.index,
                     members=step.members, seconds=step.seconds)
        inside = [replace(extensions[m], forwarding=NO_FORWARDING) for m in step.members if not is_outside(m)]
        if inside:
            call.ring_timeout = step.seconds
            await self.engine._ring_extensions(call, inside, time.time(), from_number=run.from_number)
        for member in (m for m in step.members if is_outside(m)):
            if call.ended:
                break
            await self.engine.outside.route(call, member, CallerProfile(tenant_id=call.tenant_id), billed=True)
        if call.ended or call.callee is not None:
            return
        for leg in call.forks[call.forks_from:]:
            run.legs[leg.id] = leg.party.number
        # the step's ring time drives the engine's no-answer timer (the engine armed its own default)
        if call.no_answer is not None:
            call.no_answer.cancel()
        call.ring_timeout = step.seconds
        call.no_answer = asyncio.get_running_loop().call_later(step.seconds, self.engine._no_answer, call)

    async def _nobody_answered(self, call: Call, run: GroupRun) -> None:
        run.active = False
        branch = run.group.no_answer
        kind = str(branch.get("kind")) if branch else None
        log.info("ring group: nobody answered", call=call.id, tenant=call.tenant_id, group=run.group.number,
                 destination=kind)
        self.engine.publish(ev.RingGroupNoAnswer, call, group_number=run.group.number, kind=kind)
        if not branch or kind is None or (kind == "external" and self.engine.trunks is None):
            await self.engine._refuse(call, 480, "no_answer", disposition=ev.Disposition.NO_ANSWER)
            return
        payload = {k: v for k, v in branch.items() if k != "kind"}
        caller = call.caller
        from_number = run.from_number or (caller.party.number if caller is not None else "")
        await self.engine._to_destination(call, stored(kind, payload), time.time(), from_number=from_number)

    # -- who can take a call -----------------------------------------------------------------------------
    async def _extensions(self, call: Call, group: RingGroupInfo) -> dict[str, ExtensionInfo]:
        found: dict[str, ExtensionInfo] = {}
        for member in group.members:
            if not is_outside(member) and (ext := await self.engine.directory.extension(call.tenant_id, member)) is not None:
                found[member] = ext
        return found

    def _available(self, call: Call, member: str, extensions: dict[str, ExtensionInfo]) -> bool:
        if is_outside(member):
            return self._outside_allowed(call, member)
        ext = extensions.get(member)
        if ext is None or not ext.enabled or ext.forwarding.dnd:
            return False
        if call.caller is not None and call.caller.party.extension_id == ext.extension_id:
            return False  # a member calling its own group is not rung
        now = time.time()
        if not any(self.engine.reachable(b, ext.srtp) for b in self.engine.location.lookup(call.tenant_id, ext.extension_id, now)):
            return False
        return not self.engine._extension_busy(call, ext.extension_id)

    def _outside_allowed(self, call: Call, member: str) -> bool:
        """The tenant may call this number out through a trunk now (else the member is skipped rather than
        the whole call refused)."""
        if self.engine.trunks is None:
            return False
        snapshot = self.engine.trunks.snapshot
        try:
            dest = normalize(member, snapshot.plan_for(call.tenant_id, None))
        except InvalidNumber:
            return False
        if dest.klass in (DestinationClass.INTERNAL, DestinationClass.EMERGENCY):
            return False
        if not snapshot.rules_for(CallerProfile(tenant_id=call.tenant_id)).policy.check(dest).allowed:
            return False
        tenant = snapshot.tenants.get(call.tenant_id)
        if tenant is not None and tenant.tariff is not None and snapshot.sell_rate(call.tenant_id, dest.number) is None:
            return False  # a company on a tariff calls out only where it has a rate
        return bool(snapshot.outbound_trunks(call.tenant_id, dest.number, time.time()))

    # -- round robin's memory ------------------------------------------------------------------------------
    def _watch_answers(self) -> None:
        if self.memory is not None:
            return
        self.memory = {}
        self.engine.bus.subscribe(self._answered, event_types=[ev.CallAnswered], where=self._answer_of,
                           name="ring-groups")

    def _answer_of(self, event: object) -> bool:
        """(At publish time, while the call is still ours.) A member of a group answered: keep what the
        group's memory becomes for the subscriber to write."""
        if not isinstance(event, ev.CallAnswered) or self.memory is None:
            return False
        call = self.engine.calls.get(event.call_id)
        run: GroupRun | None = call.ring_group if call is not None else None
        member = run.legs.get(event.answered_leg_id) if run is not None and run.active else None
        memory = remembered(run.group, member) if run is not None and member is not None else None
        if run is None or memory is None:
            return False
        self.memory[event.call_id] = (event.tenant_id, run.group.id, memory)
        return True

    async def _answered(self, event: object) -> None:
        found = self.memory.pop(getattr(event, "call_id", ""), None) if self.memory else None
        if found is not None and self.groups is not None:
            await self.groups.remember(*found)
