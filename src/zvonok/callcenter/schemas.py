"""Pydantic schemas of the call-center API. Times are whole seconds."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from zvonok.destination.union import to_e164
from zvonok.org.schemas import ExtensionNumber
from zvonok.sip.grammar import check_text

from .queues import HoldSound, Strategy

QueueName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
                      AfterValidator(check_text)]
SkillName = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[\w .-]{1,40}$")]
ReasonName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40),
                       AfterValidator(check_text)]
Level = Annotated[int, Field(ge=1, le=10)]
CallbackKey = Annotated[str, StringConstraints(pattern=r"^[0-9*#]$")]
MAX_SECONDS = 86_400
MAX_VIP_NUMBERS = 1000
MAX_PRIORITY = 100
_EXTENSION = re.compile(r"^[0-9]{2,8}$")
_PREFIX = re.compile(r"^\+[0-9]{1,14}$")
_REASON_CODE = re.compile(r"[0-9]{1,4}")  # ASCII digits only (str.isdigit takes other scripts' too)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Requirement(_In):
    skill: SkillName
    min_level: Level


class RelaxationIn(_In):
    after: int = Field(ge=1, le=MAX_SECONDS, description="Seconds the caller has waited")
    min_level: int = Field(ge=0, le=10, description="Every requirement asks at most this level (0: none)")


def _unique_skills(value: list[Requirement]) -> list[Requirement]:
    names = [r.skill for r in value]
    if len(set(names)) != len(names):
        raise ValueError("a skill is required twice")
    return value


def _sorted_relaxations(value: list[RelaxationIn]) -> list[RelaxationIn]:
    afters = [r.after for r in value]
    if len(set(afters)) != len(afters):
        raise ValueError("two relaxations at the same time")
    return sorted(value, key=lambda r: r.after)


class VipNumberIn(_In):
    """One VIP rule: a ``number`` (E.164 — written in any usual way, kept normalized — or an extension's) or a
    ``prefix`` (``+`` and 1-14 digits: every number beginning so), and the ``priority`` its callers get."""

    number: str | None = Field(default=None, description="E.164 (+74951234567) or an extension number")
    prefix: str | None = Field(default=None, description="'+' and the first digits, e.g. +7495")
    priority: int = Field(ge=1, le=MAX_PRIORITY, description="Higher is offered first; other callers have 0")

    @field_validator("number")
    @classmethod
    def _number(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        if _EXTENSION.match(text):
            return text
        return to_e164(text)  # ValueError saying why

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = re.sub(r"[\s()-]", "", value)
        if not _PREFIX.match(text):
            raise ValueError(f"{value[:30]!r}: '+' and 1 to 14 digits (the number's beginning in E.164)")
        return text

    @model_validator(mode="after")
    def _one(self) -> VipNumberIn:
        if (self.number is None) == (self.prefix is None):
            raise ValueError('either "number" or "prefix"')
        return self


def _unique_vip(value: list[VipNumberIn]) -> list[VipNumberIn]:
    seen: set[tuple[str, bool]] = set()
    for i, rule in enumerate(value):
        key = (rule.prefix or rule.number or "", rule.prefix is not None)
        if key in seen:
            raise ValueError(f"item {i}: {key[0]} is listed twice")
        seen.add(key)
    return value


VipNumbers = Annotated[list[VipNumberIn], Field(max_length=MAX_VIP_NUMBERS), AfterValidator(_unique_vip)]
Requirements = Annotated[list[Requirement], Field(max_length=20), AfterValidator(_unique_skills)]
Relaxations = Annotated[list[RelaxationIn], Field(max_length=20), AfterValidator(_sorted_relaxations)]


class _QueueFields(_In):
    strategy: Strategy = Strategy.LONGEST_IDLE
    requirements: Requirements = []
    relaxations: Relaxations = []
    ring_timeout: int = Field(default=15, ge=5, le=300)
    retry: int = Field(default=5, ge=0, le=3600)
    wrap_up: int = Field(default=10, ge=0, le=3600)
    max_waiting: int | None = Field(default=None, ge=1, le=10_000)
    max_wait: int | None = Field(default=None, ge=10, le=MAX_SECONDS)
    join_empty: bool = True
    leave_empty: bool = False
    service_level: int = Field(default=20, ge=1, le=3600)
    announce_every: int = Field(default=0, ge=0, le=3600, description="0: no position announcements")
    max_no_answer: int = Field(default=3, ge=0, le=100, description="0: never set an agent not ready")
    weight: int = Field(default=0, ge=0, le=100)
    callback_key: CallbackKey | None = Field(
        default=None, description="The key a waiting caller presses to be called back, keeping its place; "
                                  "null: no callbacks")
    callback_attempts: int = Field(default=3, ge=1, le=10, description="Calls to the customer before giving up")
    callback_retry: int = Field(default=60, ge=10, le=MAX_SECONDS, description="Seconds between those calls")
    callback_abroad: bool = Field(
        default=False, description="Call back callers from abroad too (at the company's international rates); "
                                   "premium-rate and emergency numbers are never called back")
    vip_numbers: VipNumbers = Field(
        default=[], description="Callers offered before others, by number or prefix: "
                                '[{"number": "+74951234567", "priority": 5}, {"prefix": "+7495", "priority": 1}]; '
                                "the higher of this and a priority the way in gave (an IVR key's) counts")
    hold_sound: HoldSound = Field(
        default=HoldSound.MUSIC, description="What a waiting caller hears between announcements: the company's "
                                             "music on hold, or the ringback tone (425 Hz, 1 s on / 4 s off)")
    overflow: dict[str, Any] | None = Field(
        default=None, description='A destination like a number\'s schedule branch: {"kind": "extension", '
                                  '"number": "101"}; where callers go when full, empty or waited too long')


class QueueCreate(_QueueFields):
    name: QueueName
    number: ExtensionNumber = Field(description="Dialed like an extension (2-8 digits), unique in the tenant")


class QueueUpdate(_In):
    name: QueueName | None = None
    number: ExtensionNumber | None = None
    strategy: Strategy | None = None
    requirements: Requirements | None = None
    relaxations: Relaxations | None = None
    ring_timeout: int | None = Field(default=None, ge=5, le=300)
    retry: int | None = Field(default=None, ge=0, le=3600)
    wrap_up: int | None = Field(default=None, ge=0, le=3600)
    max_waiting: int | None = Field(default=None, ge=1, le=10_000)
    max_wait: int | None = Field(default=None, ge=10, le=MAX_SECONDS)
    join_empty: bool | None = None
    leave_empty: bool | None = None
    service_level: int | None = Field(default=None, ge=1, le=3600)
    announce_every: int | None = Field(default=None, ge=0, le=3600)
    max_no_answer: int | None = Field(default=None, ge=0, le=100)
    weight: int | None = Field(default=None, ge=0, le=100)
    callback_key: CallbackKey | None = None
    callback_attempts: int | None = Field(default=None, ge=1, le=10)
    callback_retry: int | None = Field(default=None, ge=10, le=MAX_SECONDS)
    callback_abroad: bool | None = None
    vip_numbers: VipNumbers | None = None
    hold_sound: HoldSound | None = None
    overflow: dict[str, Any] | None = None


class VipNumberOut(BaseModel):
    number: str | None = None
    prefix: str | None = None
    priority: int


class QueueOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    tenant_id: int
    name: str
    number: str
    strategy: Strategy
    requirements: list[Requirement]
    relaxations: list[RelaxationIn]
    ring_timeout: int
    retry: int
    wrap_up: int
    max_waiting: int | None
    max_wait: int | None
    join_empty: bool
    leave_empty: bool
    service_level: int
    announce_every: int
    max_no_answer: int
    weight: int
    callback_key: str | None
    callback_attempts: int
    callback_retry: int
    callback_abroad: bool
    vip_numbers: list[VipNumberOut]
    hold_sound: HoldSound
    overflow: dict[str, Any] | None


class MembersIn(_In):
    employee_ids: list[int] = Field(max_length=1000)

    @field_validator("employee_ids")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        return sorted(set(value))


class MembersOut(BaseModel):
    queue_id: int
    employee_ids: list[int]


class SkillsIn(_In):
    skills: dict[SkillName, Level] = Field(max_length=50, description="skill -> proficiency 1..10")


class SkillsOut(BaseModel):
    employee_id: int
    skills: dict[str, int]
    queue_ids: list[int] = Field(description="The queues the employee may log in to")


def _reason_code(value: str) -> str:
    if not _REASON_CODE.fullmatch(value):
        raise ValueError("a code is 1 to 4 digits (the agent dials *47 and the code)")
    return value


ReasonCode = Annotated[str, AfterValidator(_reason_code)]
_CODE_HELP = ("1 to 4 digits, unique in the company: an agent dials *47 and the code to pause with this reason "
              "from the phone; null: none")


class ReasonIn(_In):
    name: ReasonName
    code: ReasonCode | None = Field(default=None, description=_CODE_HELP)


class ReasonUpdate(_In):
    name: ReasonName | None = None
    code: ReasonCode | None = Field(default=None, description=_CODE_HELP)


class ReasonOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    code: str | None = None


class LoginIn(_In):
    queue_ids: list[int] | None = Field(default=None, max_length=200,
                                        description="Default: every queue the employee is a member of")


class LogoutIn(_In):
    queue_ids: list[int] | None = Field(default=None, max_length=200, description="Default: all")


class PauseIn(_In):
    reason: ReasonName = Field(description="One of the tenant's not-ready reasons")


class AgentOut(BaseModel):
    employee_id: int
    full_name: str = ""
    status: str
    reason: str | None = None
    queue_ids: list[int] = []
    since: float = Field(default=0.0, description="Epoch seconds the status began")
    calls: int = 0
    busy_elsewhere: bool = False


class QueueLive(BaseModel):
    queue_id: int
    name: str
    number: str
    waiting: int
    callbacks: int
    longest_wait: float
    agents: dict[str, int]


class LiveOut(BaseModel):
    queues: list[QueueLive]
    agents: list[AgentOut]


Group = Literal["15min", "hour", "day"]


class QueueReportRow(BaseModel):
    start: float = Field(description="Epoch seconds the bucket begins (UTC)")
    queue_id: int
    offered: int
    refused: int
    answered: int
    abandoned: int
    overflowed: int
    callbacks: int
    answered_in_time: int
    service_level: float | None
    asa: float | None
    aht: float | None
    abandon_rate: float | None
    talk_time: float
    wrap_up_time: float


class AgentReportRow(BaseModel):
    start: float
    agent_id: int
    calls: int
    talk_time: float
    busy_time: float
    available_time: float
    not_ready_time: float
    occupancy: float | None


class WallboardAgent(BaseModel):
    employee_id: int
    full_name: str = ""
    status: str
    reason: str | None = None
    queue_ids: list[int] = []
    in_status: float = Field(description="Seconds in the current status")
    calls: int = Field(description="Queue calls handled today")
    talk_time: float = Field(description="Seconds talking to queue callers today")
    occupancy: float | None = Field(description="Today's busy share of busy + available time, 0..1")
    busy_elsewhere: bool = Field(default=False, description="On a call that is not a queue's")


class WallboardQueue(QueueLive):
    offered: int
    answered: int
    abandoned: int
    service_level: float | None
    asa: float | None
    aht: float | None
    abandon_rate: float | None
    occupancy: float | None = Field(description="Busy share of the queue's logged-in agents today")


class WallboardCallback(BaseModel):
    queue_id: int
    number: str = Field(description="Whom to call back")
    position: int = Field(description="1-based place in the queue's line")
    waiting: float = Field(description="Seconds since the caller joined the queue")
    attempts: int = Field(description="Failed calls to the customer so far")
    retry_in: float = Field(description="Seconds before it may be offered again (0: now)")
    ringing: bool = Field(description="An agent's phone rings for it now")


class WallboardOut(BaseModel):
    at: float = Field(description="Epoch seconds of the figures")
    day_start: float = Field(description="Epoch seconds of the tenant's local midnight (today's figures begin)")
    queues: list[WallboardQueue]
    agents: list[WallboardAgent]
    callbacks: list[WallboardCallback] = Field(default_factory=list, description="Callback requests holding a place, "
                                               "per queue in line order")


class CallbackOut(BaseModel):
    """A caller's callback request, kept across restarts."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    queue_id: int
    number: str = Field(description="Whom to call back")
    state: Literal["waiting", "dialing", "done", "failed", "cancelled"] = Field(
        description="waiting: holding its place; dialing: the agent answered, the customer is called; then done, "
                    "failed (given up) or cancelled")
    joined_at: float = Field(description="Epoch seconds the caller joined the queue: its place in line")
    requested_at: float = Field(description="Epoch seconds the caller asked to be called back")
    position: int | None = Field(default=None, description="1-based place in the queue's line now (live callers "
                                                           "included); null when not waiting")
    attempts: int = Field(description="Failed calls to the customer so far")
    last_result: str | None = Field(default=None, description="The last attempt's result (busy, no_answer, ...)")
    retry_at: float | None = Field(default=None, description="Epoch seconds before which it is not offered again")
