"""A queue's settings: strategy, skill requirements and their relaxation, limits and overflow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Strategy(StrEnum):
    RING_ALL = "ring_all"  # every eligible available agent rings; the first to answer takes the call
    LONGEST_IDLE = "longest_idle"  # the agent available for the longest time
    ROUND_ROBIN = "round_robin"  # the next agent after the one offered last (remembered per queue)
    FEWEST_CALLS = "fewest_calls"  # the agent who handled the fewest calls
    LEAST_TALK_TIME = "least_talk_time"  # the agent with the least talk time
    RANDOM = "random"
    SKILLS = "skills"  # the most proficient in the queue's skills, then the longest idle


class HoldSound(StrEnum):
    """What a waiting caller hears between announcements."""

    MUSIC = "music"  # the company's music on hold
    RINGBACK = "ringback"  # the ringback tone, as if the line still rang (Asterisk's Queue(,r))


@dataclass(frozen=True, slots=True)
class SkillRequirement:
    skill: str
    min_level: int  # 1..10: an agent needs at least this proficiency


@dataclass(frozen=True, slots=True)
class Relaxation:
    """After a caller has waited ``after`` seconds, every requirement asks at most ``min_level`` (0: the
    skill is no longer required at all). Rules apply in order of ``after``; the latest applicable wins."""

    after: float
    min_level: int


@dataclass(frozen=True, slots=True)
class VipNumber:
    """A caller who waits ahead of others: one number (E.164, or an extension's), or every number beginning
    with ``number`` when ``prefix`` (``+7495``: Moscow). The caller's priority is the highest among the rules
    that match (Asterisk's ``QUEUE_PRIO``: higher first; 0 is everyone else)."""

    number: str
    priority: int
    prefix: bool = False

    def matches(self, forms: tuple[str, ...]) -> bool:
        if self.prefix:
            return any(form.startswith(self.number) for form in forms)
        return self.number in forms


def number_forms(number: str) -> tuple[str, ...]:
    """How a caller's number may be written: E.164, or its digits (a trunk that sent no "+"), as the CRM's
    screen pop and routing by owner match it."""
    if not number:
        return ()
    return (number, number.lstrip("+")) if number.startswith("+") else (number, "+" + number)


@dataclass(frozen=True, kw_only=True)
class QueueConfig:
    id: int
    tenant_id: int
    name: str = ""
    number: str = ""  # dialed like an extension (a callback's CDR names the queue by it)
    strategy: Strategy = Strategy.LONGEST_IDLE
    requirements: tuple[SkillRequirement, ...] = ()
    relaxations: tuple[Relaxation, ...] = ()
    ring_timeout: float = 15.0  # seconds an offer rings before it counts as unanswered
    retry: float = 5.0  # an agent who left an offer unanswered is not offered again for this long
    wrap_up: float = 10.0  # seconds of after-call work
    max_waiting: int | None = None  # callers in line; one more is sent to the overflow destination
    max_wait: float | None = None  # seconds; a caller who waited this long goes to the overflow destination
    join_empty: bool = True  # False: a caller arriving when no agent is logged in goes to overflow at once
    leave_empty: bool = False  # True: waiting callers go to overflow when the last agent logs out
    service_level: float = 20.0  # seconds: answered within this counts towards the service level
    announce_every: float = 0.0  # seconds between position/wait announcements (0: none)
    max_no_answer: int = 3  # unanswered offers in a row put the agent in NOT_READY ("missed"); 0: never
    weight: int = 0  # between queues sharing agents: a heavier queue's callers are offered first
    callback_key: str | None = None  # the DTMF key a waiting caller presses to be called back (None: no callbacks)
    callback_attempts: int = 3  # calls to the customer before a callback is given up
    callback_retry: float = 60.0  # seconds between a failed call to the customer and the next attempt
    callback_abroad: bool = False  # callers from abroad may be called back (the queue's owner opted in)
    hold_sound: HoldSound = HoldSound.MUSIC  # what a waiting caller hears (the engine's business)
    overflow: Mapping[str, Any] = field(default_factory=dict)  # a destination (the engine's business)
    vip: tuple[VipNumber, ...] = ()  # callers offered before others (by their number)

    def vip_priority(self, number: str) -> int:
        """The priority the queue's VIP list gives a caller from ``number`` (0: none)."""
        if not self.vip or not number:
            return 0
        forms = number_forms(number)
        return max((rule.priority for rule in self.vip if rule.matches(forms)), default=0)

    def required_level(self, requirement: SkillRequirement, waited: float) -> int:
        """The level ``requirement`` asks of an agent for a caller who has waited ``waited`` seconds."""
        level = requirement.min_level
        for rule in sorted(self.relaxations, key=lambda r: r.after):
            if waited >= rule.after:
                level = min(requirement.min_level, rule.min_level)
        return level
