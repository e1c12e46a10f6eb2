"""Folding one call's events into the values of its CDR. Pure: no I/O, no clock.

How it works: :meth:`CallRecord.started` opens a record from ``CallStarted``; :meth:`CallRecord.apply`
folds every later event of the call; :meth:`CallRecord.finish` turns ``CallEnded`` into a
:class:`FinishedCall` (the row to write). ``to_json`` / ``from_json`` are the snapshot kept in
``calls_open`` so a crash loses as little as possible.

Rules:
* durations are whole seconds, rounded half up: ``duration = end - start``, ``billsec = end - answer``
  (0 when nobody answered);
* the callee is the party of the answering callee leg; else the conference room or ring group the call
  reached; else of the first callee leg; else the number as dialed (external for outbound calls). A transfer does not change it: the legs show the transfer;
* a ring group's step to an outside member publishes that member's route; the next step (or the group's
  no-answer destination) puts back the route the call had when it reached the group, so a member
  answering later is not billed at a number it never reached;
* the outcome (disposition, hangup side, cause, SIP status) is what ``CallEnded`` says;
* a fax call (``FaxFinished``, received or sent) keeps its pages and T.30's result (the last, if several).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from zvonok.billing.rating import billable_seconds, call_cost
from zvonok.billing.tariffs import Increment
from zvonok.telephony.events import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallForwarded,
    CallRouted,
    CallStarted,
    CallTransferred,
    ConferenceJoined,
    Direction,
    Disposition,
    FaxFinished,
    HangupSide,
    LegAnswered,
    LegCreated,
    LegEnded,
    LegRole,
    Party,
    QueueCallbackPlaced,
    RecordingStarted,
    RecordingStopped,
    RingGroupCalled,
    RingGroupNoAnswer,
    RingGroupRinging,
)


def _party_json(p: Party) -> dict[str, Any]:
    return {"number": p.number, "display_name": p.display_name, "extension_id": p.extension_id,
            "employee_id": p.employee_id, "office_id": p.office_id, "department_id": p.department_id,
            "external": p.external}


def to_datetime(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def whole_seconds(seconds: float) -> int:
    """Round half up through whole milliseconds, as Asterisk does ((ms + 500) / 1000), so 7.4999999 s
    of float noise between two event times of 7.5 s counts as 8."""
    return max(0, (round(seconds * 1000) + 500) // 1000)


@dataclass
class LegRecord:
    leg_id: str
    role: LegRole
    party: Party
    contact: str
    user_agent: str
    created_at: float
    answered_at: float | None = None
    ended_at: float | None = None
    cause: str | None = None


@dataclass(frozen=True, kw_only=True)
class FinishedCall:
    """Everything a ``cdrs`` row (and its ``cdr_legs``) needs, in Python types."""

    tenant_id: int
    call_id: str
    direction: Direction
    internal: bool
    dialed_number: str
    caller: Party
    callee: Party
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    duration: int
    billsec: int
    disposition: Disposition
    hangup_side: HangupSide
    cause: str
    sip_status: int | None
    recording_path: str | None
    legs: tuple[LegRecord, ...]
    rating: Rating = field(default_factory=lambda: Rating())
    end_estimated: bool = False  # ended at the last heartbeat before a crash
    forwarded_from: str | None = None  # the extension whose forwarding sent the call on (the first)
    ring_group: str | None = None  # the number of the ring group the call reached (the first)
    queue: str | None = None  # the queue whose callback this call carried out (its number)
    fax_pages: int | None = None  # a fax call: pages received or sent
    fax_result: str | None = None  # and T.30's result
    fax_transport: str | None = None  # and how: audio | t38


@dataclass(frozen=True, kw_only=True)
class Rating:
    """An outside call's route and its price (all empty/zero for internal calls)."""

    trunk_id: int | None = None
    did: str | None = None
    destination_class: str | None = None
    rate_prefix: str | None = None
    rate_destination: str | None = None
    rate_per_minute: Decimal | None = None
    billed_seconds: int = 0
    cost: Decimal = Decimal(0)
    currency: str | None = None


def rate(route: CallRouted | None, talk_seconds: float) -> Rating:
    """Price an ended call from its route: billed seconds by the rate's increment and minimum, cost =
    connection fee + price per minute × billed seconds / 60 (:mod:`zvonok.billing.rating`)."""
    if route is None:
        return Rating()
    base = Rating(trunk_id=route.trunk_id, did=route.did, destination_class=route.destination_class,
                  rate_prefix=route.rate_prefix, rate_destination=route.rate_destination,
                  currency=route.currency)
    if route.price_per_minute is None:
        return base
    price = Decimal(route.price_per_minute)
    billed = billable_seconds(max(talk_seconds, 0.0), Increment.parse(route.increment), route.minimum)
    cost = call_cost(price, billed, Decimal(route.connection_fee))
    return dataclasses.replace(base, rate_per_minute=price, billed_seconds=billed, cost=cost)


@dataclass
class CallRecord:
    tenant_id: int
    call_id: str
    direction: Direction
    caller: Party
    dialed_number: str
    started_at: float
    last_at: float
    answered_at: float | None = None
    answered_leg_id: str | None = None
    recording_path: str | None = None
    transfers: int = 0
    legs: dict[str, LegRecord] = field(default_factory=dict)
    route: dict[str, Any] | None = None  # the CallRouted event's fields (JSON: it goes into snapshots)
    conference: tuple[str, str] | None = None  # the room the caller joined: (number, name), the callee
    forwarded_from: str | None = None
    ring_group: tuple[str, str] | None = None  # the group the call reached: (number, name)
    queue: str | None = None  # a queue callback's queue (its number)
    route_before_group: dict[str, Any] | None = None
    fax_pages: int | None = None
    fax_result: str | None = None
    fax_transport: str | None = None

    @classmethod
    def started(cls, ev: CallStarted) -> CallRecord:
        return cls(
            tenant_id=ev.tenant_id, call_id=ev.call_id, direction=ev.direction, caller=ev.caller,
            dialed_number=ev.callee_number, started_at=ev.at, last_at=ev.at,
        )

    def apply(self, ev: CallEvent) -> None:
        """Fold one event of this call (events of other calls are a caller's bug)."""
        if ev.call_id != self.call_id or ev.tenant_id != self.tenant_id:
            raise ValueError(f"event of call {ev.call_id} applied to call {self.call_id}")
        self.last_at = max(self.last_at, ev.at)
        if isinstance(ev, LegCreated):
            self.legs.setdefault(ev.leg_id, LegRecord(
                leg_id=ev.leg_id, role=ev.role, party=ev.party, contact=ev.contact, user_agent=ev.user_agent,
                created_at=ev.at,
            ))
        elif isinstance(ev, LegAnswered):
            leg = self.legs.get(ev.leg_id)
            if leg is not None and leg.answered_at is None:
                leg.answered_at = ev.at
        elif isinstance(ev, CallAnswered):
            if self.answered_at is None:
                self.answered_at = ev.at
                self.answered_leg_id = ev.answered_leg_id
        elif isinstance(ev, LegEnded):
            leg = self.legs.get(ev.leg_id)
            if leg is not None and leg.ended_at is None:
                leg.ended_at, leg.cause = ev.at, ev.cause
        elif isinstance(ev, RecordingStarted):
            self.recording_path = ev.path
        elif isinstance(ev, RecordingStopped):
            self.recording_path = self.recording_path or ev.path
        elif isinstance(ev, CallTransferred):
            self.transfers += 1
        elif isinstance(ev, CallRouted):
            self.route = {f.name: getattr(ev, f.name) for f in dataclasses.fields(ev)}
        elif isinstance(ev, ConferenceJoined):
            self.conference = (ev.room_number, ev.room_name)
        elif isinstance(ev, CallForwarded):
            self.forwarded_from = self.forwarded_from or ev.from_number
        elif isinstance(ev, QueueCallbackPlaced):
            self.queue = ev.queue_number
        elif isinstance(ev, RingGroupCalled):
            if self.ring_group is None:
                self.ring_group = (ev.group_number, ev.group_name)
                self.route_before_group = dict(self.route) if self.route else None
        elif isinstance(ev, RingGroupRinging | RingGroupNoAnswer):
            self.route = dict(self.route_before_group) if self.route_before_group else None
        elif isinstance(ev, FaxFinished):
            self.fax_pages, self.fax_result, self.fax_transport = ev.pages, ev.result, ev.transport

    def callee(self) -> Party:
        callee_legs = [leg for leg in self.legs.values() if leg.role is LegRole.CALLEE]
        answered = self.legs.get(self.answered_leg_id) if self.answered_leg_id else None
        if answered is not None and answered.role is LegRole.CALLEE:
            return answered.party
        if self.conference is not None:
            return Party(number=self.conference[0], display_name=self.conference[1])
        if self.ring_group is not None:
            return Party(number=self.ring_group[0], display_name=self.ring_group[1])
        for leg in callee_legs:
            if leg.answered_at is not None:
                return leg.party
        if callee_legs:
            return callee_legs[0].party
        return Party(number=self.dialed_number, external=self.direction is Direction.OUTBOUND)

    def finish(
        self, *, at: float, disposition: Disposition, hangup_side: HangupSide, cause: str,
        sip_status: int | None = None, estimated: bool = False,
    ) -> FinishedCall:
        end = max(at, self.started_at)
        legs = tuple(
            dataclasses.replace(leg, ended_at=leg.ended_at if leg.ended_at is not None else end)
            for leg in self.legs.values()
        )
        caller = self.caller
        if self.route and self.route.get("employee_id"):
            # an access-number call: billed to the PIN's owner (their office and department too)
            caller = dataclasses.replace(caller, employee_id=self.route["employee_id"],
                                         office_id=self.route.get("office_id"),
                                         department_id=self.route.get("department_id"))
        return FinishedCall(
            tenant_id=self.tenant_id, call_id=self.call_id, direction=self.direction,
            internal=self.direction is Direction.INTERNAL, dialed_number=self.dialed_number,
            caller=caller, callee=self.callee(),
            started_at=to_datetime(self.started_at),
            answered_at=to_datetime(self.answered_at) if self.answered_at is not None else None,
            ended_at=to_datetime(end),
            duration=whole_seconds(end - self.started_at),
            billsec=whole_seconds(end - self.answered_at) if self.answered_at is not None else 0,
            disposition=disposition, hangup_side=hangup_side, cause=cause, sip_status=sip_status,
            recording_path=self.recording_path, legs=legs,
            # billed from the same whole seconds as billsec: a CDR never shows two durations
            rating=rate(CallRouted(**self.route) if self.route else None,
                        whole_seconds(end - self.answered_at) if self.answered_at is not None else 0),
            end_estimated=estimated, forwarded_from=self.forwarded_from,
            ring_group=self.ring_group[0] if self.ring_group else None, queue=self.queue,
            fax_pages=self.fax_pages, fax_result=self.fax_result, fax_transport=self.fax_transport,
        )

    def finish_with(self, ev: CallEnded) -> FinishedCall:
        return self.finish(
            at=ev.at, disposition=ev.disposition, hangup_side=ev.hangup_side, cause=ev.cause,
            sip_status=ev.sip_status,
        )

    # --- snapshot for calls_open ----------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        # field by field, not dataclasses.asdict: its recursive deep copy cost ~0.3 ms per snapshot
        return {
            "tenant_id": self.tenant_id, "call_id": self.call_id, "direction": self.direction.value,
            "caller": _party_json(self.caller), "dialed_number": self.dialed_number,
            "started_at": self.started_at, "last_at": self.last_at, "answered_at": self.answered_at,
            "answered_leg_id": self.answered_leg_id, "recording_path": self.recording_path,
            "transfers": self.transfers, "route": dict(self.route) if self.route else None,
            "conference": list(self.conference) if self.conference else None,
            "forwarded_from": self.forwarded_from,
            "ring_group": list(self.ring_group) if self.ring_group else None, "queue": self.queue,
            "route_before_group": dict(self.route_before_group) if self.route_before_group else None,
            "fax_pages": self.fax_pages, "fax_result": self.fax_result, "fax_transport": self.fax_transport,
            "legs": [{"leg_id": leg.leg_id, "role": leg.role.value, "party": _party_json(leg.party),
                      "contact": leg.contact, "user_agent": leg.user_agent, "created_at": leg.created_at,
                      "answered_at": leg.answered_at, "ended_at": leg.ended_at, "cause": leg.cause}
                     for leg in self.legs.values()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallRecord:
        legs = {}
        for raw in data.get("legs", []):
            leg = LegRecord(**{**raw, "role": LegRole(raw["role"]), "party": Party(**raw["party"])})
            legs[leg.leg_id] = leg
        return cls(**{
            **data, "direction": Direction(data["direction"]), "caller": Party(**data["caller"]), "legs": legs,
            "conference": tuple(data["conference"]) if data.get("conference") else None,
            "ring_group": tuple(data["ring_group"]) if data.get("ring_group") else None,
        })
