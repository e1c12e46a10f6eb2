"""A call: legs (each one SIP dialog with one media endpoint) joined by a bridge.

The caller's leg is the one we answer as a UAS; the callee legs are the INVITEs we place as a UAC, one
per registered device of the called extension (parallel forking). The first device to answer wins; the
others are cancelled. These are plain records; :mod:`zvonok.telephony.b2bua` drives them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from zvonok.media.interface import Endpoint, Recording
from zvonok.sip.dialog import Dialog
from zvonok.sip.message import Request
from zvonok.sip.peer import Peer
from zvonok.sip.sdp_offer_answer import PCMA, PCMU, TELEPHONE_EVENT, Codec, LocalSession, NegotiatedMedia
from zvonok.sip.transaction import ClientTransaction, ServerTransaction

from .events import Direction, HangupSide, LegRole, Party
from .leg import Leg as SipLeg
from .leg_events import LegEvent

# what every leg offers and accepts, in our order of preference
CODECS: tuple[Codec, ...] = (PCMU, PCMA, TELEPHONE_EVENT)


class LegState(StrEnum):
    TRYING = "trying"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


@dataclass(eq=False, slots=True)
class Leg:
    id: str
    role: LegRole
    call: Call
    party: Party
    peer: Peer  # where requests to this leg's device go
    session: LocalSession
    endpoint: Endpoint | None = None
    invite: Request | None = None  # the INVITE we received (caller) or sent (callee)
    server_txn: ServerTransaction | None = None
    client_txn: ClientTransaction | None = None
    dialog: Dialog | None = None
    media: NegotiatedMedia | None = None
    state: LegState = LegState.TRYING
    local_tag: str = ""
    contact: str = ""
    user_agent: str = ""
    held: bool = False  # this leg's device put the call on hold
    held_by_us: bool = False  # we offered sendonly to this leg's device (its party is on hold)
    hearing_music: bool = False  # we play music on hold to this leg's device
    awaits_answer: bool = False  # delayed offer: our offer went in the 2xx, the answer comes in the ACK
    cancelled: bool = False
    final_status: int | None = None
    trunk_id: int | None = None  # the leg goes to (or came from) this trunk: counted against its max_calls
    trunk_released: bool = False
    auth_answered: bool = False  # we answered the trunk's 401/407 for this INVITE once
    srtp_policy: str | None = None  # its extension's or trunk's: required, optional, off (None: the default)
    srtp_key: bytes | None = None  # our SDES key on this leg (TLS legs that may run SRTP)
    # the SIP dialog machine of this leg (telephony/leg.py, wired in telephony/leg_wiring.py), its one timer
    # and who turns its events into call logic; None on a caller's leg until its media endpoint exists
    sip: SipLeg | None = None
    sip_timer: asyncio.TimerHandle | None = None
    on_sip_event: Callable[[Leg, LegEvent], None] | None = None
    keys: Any = None  # the keys typed so far for a feature code (telephony.threeway.KeySequence), from the first


@dataclass(eq=False, slots=True, weakref_slot=True)
class Call:
    id: str
    tenant_id: int
    direction: Direction
    domain: str = ""  # the tenant's SIP domain
    caller: Leg | None = None
    forks: list[Leg] = field(default_factory=list)
    callee: Leg | None = None  # the fork that answered
    started_at: float = 0.0
    answered_at: float | None = None
    ended: bool = False
    hangup_side: HangupSide | None = None
    no_answer: asyncio.TimerHandle | None = None
    caller_answer_sdp: bytes = b""  # our answer to the caller's offer (sent in 183 or 200)
    early_media_from: Leg | None = None
    ringback: bool = False  # we play ringback to the caller in band (a 183 went out)
    recording: Recording | None = None
    recording_path: str | None = None
    recording_part: int = 1  # a transfer starts a new file: <call id>-<part>.wav
    # outside calls: the number dialed out, the trunks still to try (failover), what we present
    outside_number: str | None = None
    next_trunks: list[Any] = field(default_factory=list)
    caller_id: str | None = None
    route_fields: dict[str, Any] = field(default_factory=dict)  # the CallRouted event's, but the trunk
    access: Any = None  # the access-number session while its dialogue runs (telephony.access)
    conference: Any = None  # the conference session from the answer to the end (telephony.conference)
    park: Any = None  # the call's park slot while its party waits there (telephony.park)
    voicemail: Any = None  # leaving a message or listening to a mailbox (telephony.voicemail)
    fax: Any = None  # a fax being received (telephony.fax_app)
    monitor: Any = None  # a supervisor's call monitoring another (telephony.monitor: LiveMonitor)
    monitored: Any = None  # the supervisor's session on this call (telephony.monitor: LiveMonitor)
    max_duration: int | None = None  # seconds after the answer (spending limit)
    budgets: list[Any] = field(default_factory=list)  # the spending budgets checked at the start
    limit_timers: list[asyncio.TimerHandle] = field(default_factory=list)
    # the call's inbox: its steps (coroutines), run one at a time by one task, ``runner``, while any is
    # queued; a step that raises ends the call (CallEngine.step)
    # (the coroutine, and the request it answers with its server transaction, if any). A list, not a deque:
    # it holds a step or two, and an empty deque is 760 bytes (a block of 64 slots) on every call up (issue 9)
    inbox: list[tuple[Coroutine[Any, Any, None], Any, Any]] = field(default_factory=list)
    runner: asyncio.Task[None] | None = None
    # call forwarding (telephony/call_forward.py): the numbers the call has been to, the extension being
    # rung now (its busy / no-answer / unavailable forwarding applies), the CFNA timer, the first fork of
    # the current target, and a forward in progress (the old forks' final responses decide nothing)
    forwarding: Any = None
    ringing_ext: Any = None
    ring_timeout: float | None = None
    forks_from: int = 0
    forward_pending: bool = False
    ring_group: Any = None  # the ring group being rung (telephony/ring_group_call.py: GroupRun)
    queue: Any = None  # the call-center queue the caller waits in (telephony/queue_call.py: QueueSession)
    threeway: Any = None  # the ad-hoc three-way room the call's legs talk in (telephony/threeway.py)
    originate: Any = None  # a call placed from the PBX (telephony/originate.py: Originate)
    indexed: list[Leg] = field(default_factory=list)  # its legs in CallEngine.extension_legs (emptied at the end)

    # every Call object still in memory, ended or not (weak: the set never keeps one alive). After the calls
    # end this must fall to 0 by reference counting alone; a finished call that lingers is held by a
    # reference cycle (freed only by a rare full collection) or by a forgotten timer or callback (issue 8)
    live: ClassVar[weakref.WeakSet[Call]] = weakref.WeakSet()

    def __post_init__(self) -> None:
        Call.live.add(self)

    def other(self, leg: Leg) -> Leg | None:
        """The leg bridged with ``leg``."""
        if leg is self.caller:
            return self.callee
        return self.caller if leg is self.callee else None

    def legs(self) -> list[Leg]:
        return [leg for leg in (self.caller, *self.forks) if leg is not None]


@dataclass(eq=False)
class Transfer:
    """A blind transfer in progress: the transferee is connected to the first of ``forks`` to answer."""

    transferor: Leg
    transferee: Leg
    target: Party
    forks: list[Leg] = field(default_factory=list)
    ringing: bool = False
    done: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class CallSnapshot:
    """A call in progress as a read-only view sees it (the web console's live calls): copied values,
    never the engine's objects, so a reader cannot change a call or keep it alive."""

    call_id: str
    tenant_id: int
    direction: Direction
    state: str  # "ringing" until answered, then "answered" ("on_hold" while a party holds it)
    caller: Party
    callees: tuple[Party, ...]  # the answered leg's party, else every device being rung
    started_at: float  # wall-clock epoch seconds
    answered_at: float | None

    @classmethod
    def of(cls, call: Call) -> CallSnapshot:
        legs = call.legs()
        callees = (call.callee,) if call.callee is not None else tuple(call.forks)
        if call.answered_at is None:
            state = "ringing"
        elif any(leg.held or leg.held_by_us for leg in legs):
            state = "on_hold"
        else:
            state = "answered"
        return cls(call_id=call.id, tenant_id=call.tenant_id, direction=call.direction, state=state,
                   caller=call.caller.party if call.caller is not None else Party(number=""),
                   callees=tuple(dict.fromkeys(leg.party for leg in callees)),  # one per extension, in order
                   started_at=call.started_at, answered_at=call.answered_at)

    def involves(self, employee_id: int) -> bool:
        return any(p.employee_id == employee_id for p in (self.caller, *self.callees))
