"""Ring groups: which members ring in which step, and for how long. Pure: no I/O, ``now`` is an argument.

How it works: a group (:class:`RingGroupInfo`) has members in order — extension numbers of its tenant or
outside numbers in E.164 (``+…``) — a strategy, a ring time per member and an overall limit. A call to
the group keeps one :class:`RingPlan`; the engine asks it for :meth:`RingPlan.next_step` when the call
reaches the group and again whenever a step ends unanswered (its ring time ran out, or every device of
it refused), passing which members can take a call now (an extension that is busy, on do-not-disturb or
has no registered phone is skipped, as FreePBX and Asterisk queues skip unavailable members):

* ``simultaneous`` ("ring all"): one step with every available member, ``ring_seconds`` long;
* ``hunt``: one member per step, in the listed order, each ``ring_seconds``;
* ``round_robin``: as hunt, but the order starts after the member who answered the group's last call
  (the group's memory, :attr:`RingGroupInfo.last_answered`; the engine stores it best-effort). A member
  no longer in the list (or no memory yet) starts the order at the first member.

No step runs past the overall limit (``max_seconds`` after the call reached the group): the last step
is shortened to what is left, and none starts with less than :data:`MIN_STEP_SECONDS` left. When the
plan has no step left the call goes to the group's no-answer destination (a DID destination branch:
``{"kind": "extension", "number": "101"}`` …; None: the caller gets 480).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_RING_SECONDS = 20
MIN_STEP_SECONDS = 1.0


class Strategy(enum.StrEnum):
    SIMULTANEOUS = "simultaneous"
    HUNT = "hunt"
    ROUND_ROBIN = "round_robin"


def is_outside(member: str) -> bool:
    """An outside number (E.164, rung out through the tenant's trunks) rather than an extension."""
    return member.startswith("+")


@dataclass(frozen=True, slots=True, kw_only=True)
class RingGroupInfo:
    """A ring group as the call engine sees it (read through a port, cached)."""

    id: int
    tenant_id: int
    number: str
    name: str = ""
    strategy: Strategy = Strategy.SIMULTANEOUS
    members: tuple[str, ...] = ()
    ring_seconds: int = DEFAULT_RING_SECONDS
    max_seconds: int | None = None  # the overall limit; None: every member once (one ring time if simultaneous)
    no_answer: dict[str, Any] | None = field(default=None, hash=False)  # {"kind": ..., payload}; None: hang up
    last_answered: str | None = None  # round robin's memory: the member who answered last

    @property
    def limit(self) -> int:
        if self.max_seconds is not None:
            return self.max_seconds
        if self.strategy is Strategy.SIMULTANEOUS:
            return self.ring_seconds
        return self.ring_seconds * max(1, len(self.members))


@dataclass(frozen=True, slots=True)
class Step:
    members: tuple[str, ...]  # rung at once
    seconds: float  # then the next step (or the no-answer destination)
    index: int  # 0 for the first step of the call


def member_order(group: RingGroupInfo) -> tuple[str, ...]:
    """The order members are tried in: as listed, or (round robin) from the one after the last answerer."""
    members = group.members
    if group.strategy is not Strategy.ROUND_ROBIN or group.last_answered not in members:
        return members
    start = members.index(group.last_answered) + 1
    return members[start:] + members[:start]


class RingPlan:
    """One call's way through a group: :meth:`next_step` until it returns None."""

    def __init__(self, group: RingGroupInfo, now: float) -> None:
        self.group = group
        self.order = member_order(group)
        self.deadline = now + group.limit
        self._position = 0  # the next member of ``order`` to consider
        self._steps = 0

    @property
    def exhausted(self) -> bool:
        return self._position >= len(self.order)

    def next_step(self, now: float, available: Callable[[str], bool]) -> Step | None:
        """The next members to ring and for how long; None: nobody left (or no time left)."""
        left = self.deadline - now
        if left < MIN_STEP_SECONDS or self.exhausted:
            self._position = len(self.order)
            return None
        seconds = min(float(self.group.ring_seconds), left)
        if self.group.strategy is Strategy.SIMULTANEOUS:
            members = tuple(m for m in self.order if available(m))
            self._position = len(self.order)
            return self._step(members, seconds) if members else None
        while self._position < len(self.order):
            member = self.order[self._position]
            self._position += 1
            if available(member):
                return self._step((member,), seconds)
        return None

    def _step(self, members: tuple[str, ...], seconds: float) -> Step:
        step = Step(members, seconds, self._steps)
        self._steps += 1
        return step


def remembered(group: RingGroupInfo, answered_by: str) -> str | None:
    """What the group's memory becomes when ``answered_by`` answered (only round robin keeps one)."""
    if group.strategy is not Strategy.ROUND_ROBIN or answered_by not in group.members:
        return None
    return answered_by
