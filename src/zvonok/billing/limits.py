"""Monthly spending limits per employee, department, office (and tenant).

How it works: the caller (the billing service) gathers one :class:`Budget` per level that has a limit:
the configured monthly amount, its warning ratio and what was spent at that level this month. Then:

- :func:`authorize` decides, before a paid call starts, whether it may start and for how long at most:
  for every budget the longest duration whose cost fits what is left (:func:`max_duration`), the
  smallest over all levels wins. A level that cannot pay even the first billed block refuses the call.
  The call engine cuts the call at ``max_duration`` seconds after the answer and plays a warning tone a
  few seconds before (:meth:`Authorization.tone_at`).
- :func:`crossings` tells, after a call's cost is booked, which warning thresholds and limits that very
  call crossed (spent before < threshold ≤ spent after), so each event is published exactly once per
  month and level, without remembering what was already announced.

Calls in progress are not in ``spent`` yet: two simultaneous calls would each get the whole remaining
budget. The service therefore passes ``spent`` *including* what its calls in progress may still cost
(their cost at their ``max_duration``), and books the real cost when they end.

The maximum duration is exact, not estimated: cost is ``round_half_up(fee + price × billable / 60)``
and ``round(x) ≤ budget`` holds exactly when ``x < budget + unit / 2``; solving that for billable seconds
on the increment's grid (in :class:`fractions.Fraction`, no rounding on the way) gives the answer.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction

from .rating import ZERO, call_cost
from .tariffs import Increment, Rate

DEFAULT_WARN_RATIO = Decimal("0.8")


class Level(enum.StrEnum):
    EMPLOYEE = "employee"
    DEPARTMENT = "department"
    OFFICE = "office"
    TENANT = "tenant"


class Threshold(enum.StrEnum):
    WARNING = "warning"  # spent reached limit × warn_ratio
    LIMIT = "limit"  # spent reached the limit


@dataclass(frozen=True, kw_only=True, slots=True)
class Budget:
    """One level's monthly limit and this month's spend so far (in the tenant's currency)."""

    level: Level
    limit: Decimal
    spent: Decimal
    warn_ratio: Decimal = DEFAULT_WARN_RATIO
    owner_id: int | None = None  # the employee, department or office id, carried into events

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ValueError(f"{self.level} limit {self.limit} is negative")
        if not 0 < self.warn_ratio <= 1:
            raise ValueError(f"{self.level} warning ratio {self.warn_ratio} is not in (0, 1]")

    @property
    def remaining(self) -> Decimal:
        return self.limit - self.spent

    @property
    def warn_threshold(self) -> Decimal:
        return self.limit * self.warn_ratio

    def threshold(self, kind: Threshold) -> Decimal:
        return self.limit if kind is Threshold.LIMIT else self.warn_threshold


@dataclass(frozen=True, kw_only=True, slots=True)
class Authorization:
    allowed: bool
    exceeded: tuple[Budget, ...]  # the levels that refuse the call, in the order given
    warned: tuple[Budget, ...]  # the levels at or past their warning threshold already
    max_duration: int | None  # seconds after the answer; None: no limit applies
    limited_by: Budget | None  # the budget that sets max_duration

    def tone_at(self, seconds_before: int) -> int | None:
        """When to play the warning tone: ``seconds_before`` the cut, never before the answer."""
        if self.max_duration is None:
            return None
        return max(0, self.max_duration - seconds_before)


@dataclass(frozen=True, kw_only=True, slots=True)
class Crossing:
    """A threshold that one call's cost crossed; the service turns it into a bus event."""

    level: Level
    owner_id: int | None
    threshold: Threshold
    limit: Decimal
    spent: Decimal  # after the call


def max_duration(
    remaining: Decimal,
    *,
    price_per_minute: Decimal,
    increment: Increment,
    minimum: int = 0,
    connection_fee: Decimal = ZERO,
    decimals: int = 2,
) -> int | None:
    """The longest answered duration in whole seconds whose cost is at most ``remaining``: 0 if not
    even the first block fits, None if the rate costs nothing at all (nothing to limit)."""
    if price_per_minute == 0 and connection_fee == 0:
        return None
    unit = Decimal(1).scaleb(-decimals)
    # Costs are whole units (kopecks): a fraction of a unit left over buys nothing.
    budget = remaining.quantize(unit, rounding=ROUND_FLOOR)
    first_block = max(increment.first, minimum)
    if call_cost(price_per_minute, first_block, connection_fee, decimals) > budget:
        return 0
    if price_per_minute == 0:
        return None  # the fee alone fits and the time is free
    # Largest grid point g = first + k*next with fee + price*g/60 < budget + unit/2 (the half-up edge).
    spendable = Fraction(budget) + Fraction(unit) / 2 - Fraction(connection_fee)
    bound = spendable * 60 / Fraction(price_per_minute)
    steps = math.ceil((bound - increment.first) / increment.next) - 1
    return increment.first + steps * increment.next


def authorize(
    budgets: Iterable[Budget],
    rate: Rate | None = None,
    *,
    price_per_minute: Decimal | None = None,
    decimals: int = 2,
) -> Authorization:
    """May a paid call start, and for how long at most?

    ``rate`` is the matched sell rate (increment, minimum, connection fee); ``price_per_minute`` the
    price of the period in force (default the rate's base price). Without a rate only exhausted
    budgets refuse and no duration limit is computed.
    """
    exceeded: list[Budget] = []
    warned: list[Budget] = []
    shortest: int | None = None
    limited_by: Budget | None = None
    for budget in budgets:
        if budget.limit > 0 and budget.spent >= budget.warn_threshold:  # a 0 limit blocks, it does not warn
            warned.append(budget)
        if rate is None:
            if budget.remaining <= 0:
                exceeded.append(budget)
            continue
        price = rate.price_per_minute if price_per_minute is None else price_per_minute
        seconds = max_duration(
            budget.remaining, price_per_minute=price, increment=rate.increment, minimum=rate.minimum,
            connection_fee=rate.connection_fee, decimals=decimals,
        )
        if seconds == 0:
            exceeded.append(budget)
        if seconds is not None and (shortest is None or seconds < shortest):
            shortest, limited_by = seconds, budget
    allowed = not exceeded
    return Authorization(
        allowed=allowed, exceeded=tuple(exceeded), warned=tuple(warned),
        max_duration=(shortest if allowed else 0) if rate is not None else None,
        limited_by=limited_by if rate is not None else None,
    )


def crossings(budgets: Iterable[Budget], cost: Decimal) -> tuple[Crossing, ...]:
    """Thresholds crossed by booking ``cost`` on top of each budget's ``spent`` (the spend *before*
    the call): warning first, then limit, per level in the order given."""
    found: list[Crossing] = []
    if cost <= 0:
        return ()
    for budget in budgets:
        after = budget.spent + cost
        for kind in (Threshold.WARNING, Threshold.LIMIT):
            edge = budget.threshold(kind)
            if budget.spent < edge <= after:
                found.append(Crossing(level=budget.level, owner_id=budget.owner_id, threshold=kind,
                                      limit=budget.limit, spent=after))
    return tuple(found)
