"""The call-event vocabulary: what the call engine tells everyone else about a call.

A call (``call_id``: Zvonok's own id, a uuid hex, never a SIP Call-ID) is legs — each a SIP dialog with
a media endpoint, ``leg_id`` — joined by bridges. The engine publishes these events on the bus; the CDR
writer, live statistics, CRM history, the websocket and webhooks consume the same stream.

Every event is a frozen, keyword-only, slotted dataclass carrying ``tenant_id``, ``call_id``, ``at``
(wall-clock epoch seconds, the moment the thing happened) and ``version``. A field added later gets a
default, so older serialized events still decode; a change of meaning bumps ``version``.

The usual order for one call::

    CallStarted, LegCreated(caller), LegCreated(callee)..., LegRinging, LegAnswered, CallAnswered,
    [LegHeld/LegResumed, CallTransferred, RecordingStarted/Stopped, DtmfReceived]...,
    LegEnded..., CallEnded

``CallEnded`` is always the last event of a call and states the outcome; consumers must not infer it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# The bus codec, re-exported: it serializes every registered event (these, ``CdrWritten``...).
from zvonok.bus import deserialize, register_event, serialize

__all__ = [
    "AccessNumberBlocked", "CallAnswered", "CallParked", "CallPickedUp", "CallUnparked", "ConferenceJoined", "ConferenceLeft", "ConferenceMuted", "ThreeWayJoined", "CallEnded", "CallEvent", "CallRouted", "CallStarted", "CallTransferred", "Direction", "Disposition",
    "DtmfReceived", "HangupSide", "LegAnswered", "LegCreated", "LegEnded", "LegHeld", "LegResumed",
    "LegRinging", "LegRole", "Party", "RecordingStarted", "RecordingStopped", "RegistrationChanged", "SpendingThresholdCrossed", "TransferKind", "VoicemailLeft",
    "deserialize", "serialize",
]


class Direction(enum.StrEnum):
    INTERNAL = "internal"  # extension to extension of the same tenant
    INBOUND = "inbound"  # from outside (trunk, DID) to the tenant
    OUTBOUND = "outbound"  # from the tenant to outside


class LegRole(enum.StrEnum):
    CALLER = "caller"
    CALLEE = "callee"


class TransferKind(enum.StrEnum):
    BLIND = "blind"
    ATTENDED = "attended"


class Disposition(enum.StrEnum):
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    CANCELLED = "cancelled"  # the caller hung up before anyone answered
    INTERRUPTED = "interrupted"  # the server stopped (crash) while the call was up
    VOICEMAIL = "voicemail"  # the caller reached a mailbox (and maybe left a message)


class HangupSide(enum.StrEnum):
    CALLER = "caller"
    CALLEE = "callee"
    SYSTEM = "system"


@dataclass(frozen=True, kw_only=True, slots=True)
class Party:
    """One end of a call as the directory knows it; ``external`` for numbers outside the tenant."""

    number: str
    display_name: str = ""
    extension_id: int | None = None
    employee_id: int | None = None
    office_id: int | None = None
    department_id: int | None = None
    external: bool = False
    # the number as its URI user came from the wire (escapes and all; a trunk's caller that is no E.164
    # number): written back so, since an escaped ';' is another user (grammar.reescape_user)
    uri_user: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CallEvent:
    """Base of every call event (never published itself)."""

    tenant_id: int
    call_id: str
    at: float
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CallStarted(CallEvent):
    caller: Party
    callee_number: str  # as dialed, after the tenant's dialing rules (E.164 for outside numbers)
    direction: Direction


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CallRouted(CallEvent):
    """An outside call's route and price, decided before any leg goes out (or the DID it came in on).

    Money travels as decimal strings (the bus codec is JSON); the CDR writer rates the call with them
    when it ends: billed seconds by the increment and minimum, cost = connection fee + price × seconds.
    """

    destination_class: str  # zvonok.dialing.DestinationClass value (inbound calls: "inbound")
    number: str = ""  # the outside party's E.164 number
    did: str | None = None  # inbound: the number called
    trunk_id: int | None = None
    rate_prefix: str | None = None
    rate_destination: str | None = None
    price_per_minute: str | None = None  # of the period in force at the start
    connection_fee: str = "0"
    increment: str = "60/60"
    minimum: int = 0
    currency: str | None = None
    period: str | None = None
    # an access-number call is billed to the PIN's owner, not to the (outside) caller
    employee_id: int | None = None
    office_id: int | None = None
    department_id: int | None = None


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class SpendingThresholdCrossed(CallEvent):
    """This call took a level's monthly spend across its warning threshold or its limit."""

    level: str  # employee | department | office | tenant
    owner_id: int | None
    threshold: str  # warning | limit
    limit: str  # decimal strings, the tenant's currency
    spent: str


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class AccessNumberBlocked(CallEvent):
    """Wrong access-number PINs blocked a caller ID, a source address or (source_kind "employee") the
    PIN of the employee they were tried against, for a while: an alert."""

    source_kind: str
    source: str


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class LegCreated(CallEvent):
    leg_id: str
    role: LegRole
    party: Party
    contact: str = ""  # the device's SIP Contact
    user_agent: str = ""


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class LegRinging(CallEvent):
    leg_id: str
    early_media: bool = False
    # the early dialog of our INVITE to the device as the device knows it (RFC 4235 call-id, local-tag =
    # the device's tag, remote-tag = ours): what a BLF key names in an INVITE with Replaces (RFC 3891)
    sip_call_id: str = ""
    device_tag: str = ""
    our_tag: str = ""


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class LegAnswered(CallEvent):
    leg_id: str


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CallAnswered(CallEvent):
    answered_leg_id: str


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class LegHeld(CallEvent):
    leg_id: str


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class LegResumed(CallEvent):
    leg_id: str


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CallTransferred(CallEvent):
    kind: TransferKind
    from_leg_id: str  # the leg whose party asked for the transfer
    to: Party


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CallForwarded(CallEvent):
    """The extension ``from_number`` forwarded the call (its CFU, CFB, CFNA or unavailable setting, or DND
    with CFB: ``reason``) to ``to_number``: another extension, or an outside number (E.164) billed to the
    forwarding extension's employee."""

    from_number: str
    from_extension_id: int | None
    to_number: str
    reason: str  # unconditional | busy | no_answer | unavailable
    from_employee_id: int | None = None  # the forwarding extension's employee: the call is theirs to see


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RecordingStarted(CallEvent):
    path: str  # relative to the data directory's recordings folder, or absolute inside it


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RecordingStopped(CallEvent):
    path: str


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class DtmfReceived(CallEvent):
    leg_id: str
    digit: str


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class LegEnded(CallEvent):
    leg_id: str
    cause: str  # e.g. "normal_clearing", "busy", "no_answer", "cancelled", "failed"


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CallEnded(CallEvent):
    disposition: Disposition
    hangup_side: HangupSide
    cause: str
    sip_status: int | None = None  # the final SIP status that decided the outcome, when there was one


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class ConferenceJoined(CallEvent):
    """The call's caller entered a conference room's mix (after its PIN): ``members`` counts them all."""

    leg_id: str
    room_id: int
    room_number: str
    room_name: str = ""
    moderator: bool = False
    waiting: bool = False  # waiting for a moderator: neither hears nor is heard yet
    members: int = 1


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class ConferenceLeft(CallEvent):
    """The call left its room (hung up, kicked, or the server stopped); ``members``: those still in it."""

    leg_id: str
    room_id: int
    room_number: str
    members: int = 0


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class ConferenceMuted(CallEvent):
    """A member was muted (heard by nobody) or unmuted, through the API."""

    leg_id: str
    room_id: int
    muted: bool


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class ThreeWayJoined(CallEvent):
    """The call's legs joined an ad-hoc three-way room (``*3``, telephony/threeway.py) with ``other_call_id``;
    published for each call of the room (each keeps its own CDR). ``people``: distinct parties now in it."""

    room: str
    other_call_id: str
    people: int


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CallPickedUp(CallEvent):
    """A call ringing an extension was answered by another phone dialing a pickup code: ``*8`` (the
    picker's pickup group, ``directed`` False) or ``**<ext>`` (directed). ``leg_id`` is the picker's leg,
    now the call's callee; ``from_number`` the extension that was ringing."""

    leg_id: str
    by: Party
    from_number: str
    directed: bool = False


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class QueueCallbackPlaced(CallEvent):
    """This call carries out a queue's callback (telephony/queue_callback.py): the agent's phone rang first,
    then ``number`` (the customer who asked to be called back) is called; the CDR's ``queue`` keeps the
    queue's number. ``request_call_id`` is the customer's original call, the queue log's call."""

    queue_id: int
    queue_number: str
    agent_id: int
    number: str
    request_call_id: str


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RingGroupCalled(CallEvent):
    """The call reached a ring group (dialed, or a number's destination): the CDR's callee names it until
    a member answers, and its ``ring_group`` column keeps it."""

    group_id: int
    group_number: str
    group_name: str = ""
    strategy: str = "simultaneous"


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CallParked(CallEvent):
    """A party was parked in its company's ``slot`` (701–720 by default) by a transfer to the park number:
    it hears music on hold until someone dials the slot or the park timeout rings ``parked_by`` back."""

    leg_id: str  # the parked party's leg
    slot: int
    parked_by: Party
    timeout: float  # seconds until the ring-back


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RingGroupRinging(CallEvent):
    """A step of the group's plan: ``members`` ring (at once) for ``seconds``; the steps before it went
    unanswered. Members skipped (busy, DND, not registered) are in no step."""

    group_number: str
    step: int
    members: tuple[str, ...]
    seconds: float


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CallUnparked(CallEvent):
    """The call left its park slot: ``retrieved`` (``by`` dialed the slot), ``timeout`` (it rings the one
    who parked it) or ``hangup`` (the parked party hung up)."""

    leg_id: str
    slot: int
    reason: str
    by: Party | None = None


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class IvrLeft(CallEvent):
    """The caller left the voice menus (``menus``: the ids it went through, in order) for ``target_kind``
    (extension, ring, conference, external; "hangup" when the menu ended the call). ``reason``:
    caller_choice (a key), timeout or invalid (the menu's final target), loop (the cycle guard)."""

    menus: tuple[int, ...]
    target_kind: str
    reason: str = "caller_choice"


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RingGroupNoAnswer(CallEvent):
    """Nobody of the group answered: the call goes to its no-answer destination (``kind``; None: 480)."""

    group_number: str
    kind: str | None = None


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class FaxFinished(CallEvent):
    """A fax call reached its end: received into, or sent from, document ``fax_id`` of the tenant (the
    fax domain's row is committed). The CDR keeps ``pages`` and ``result``."""

    fax_id: int
    direction: str  # "in" | "out"
    ok: bool
    pages: int
    result: str  # T.30's completion text, or why the call never got that far
    remote_number: str = ""
    transport: str = "audio"  # "audio" (G.711 pass-through) | "t38"


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CallOriginated(CallEvent):
    """The platform placed this call itself (REST, CRM click-to-call, telephony/originate.py): the
    employee's ``extension`` rings first, then ``to`` (an extension or an E.164 number)."""

    extension: str
    to: str


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class OriginateFailed(CallEvent):
    """An originated call ended before its two parties talked: ``reason`` says why (``not_registered``,
    ``employee_no_answer``, ``employee_busy``, ``busy``, ``no_answer``, ``not_allowed`` …)."""

    extension: str
    to: str
    reason: str


CALL_EVENT_TYPES: tuple[type[CallEvent], ...] = (
    CallStarted, CallRouted, LegCreated, LegRinging, LegAnswered, CallAnswered, LegHeld, LegResumed, CallTransferred,
    RecordingStarted, RecordingStopped, DtmfReceived, LegEnded, CallEnded, ConferenceJoined, CallForwarded,
    IvrLeft, RingGroupCalled, RingGroupRinging, RingGroupNoAnswer, FaxFinished, QueueCallbackPlaced,
)


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RegistrationChanged:
    """An extension's set of registered devices changed (a device registered, unregistered or expired);
    ``devices`` is how many are registered now. Not a call event: the location service publishes it,
    for live views (the web console's extensions page)."""

    tenant_id: int
    extension_id: int
    devices: int
    at: float
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class VoicemailLeft(CallEvent):
    """A caller left a message in an extension's mailbox (published once the message is stored)."""

    mailbox_id: int
    mailbox_number: str
    message_id: int
    caller_number: str
    caller_name: str = ""
    duration: float = 0.0
