"""Rating: the cost of one call under a tariff.

How it works, in the order :func:`rate_call` applies the rules:

1. Internal and emergency calls (:data:`~zvonok.billing.tariffs.FREE_CLASSES`) cost 0 and are not looked
   up at all; their billable seconds are just the duration in whole seconds (for statements).
2. The duration (answer to hang-up) is rounded **up** to whole seconds first: 61.2 s is 62 s. A
   duration of 0 means unanswered: 0 billable seconds, no connection fee, cost 0.
3. Billable seconds follow the rate's increment "first/next": a call up to ``first`` seconds bills
   ``first``; a longer one bills ``first`` plus every *started* ``next`` seconds; then the rate's minimum
   applies. With 30/6: 31 s → 36 s, 125 s → 126 s.
4. The longest matching prefix gives the rate; the period in force at the call's *start* (in the caller's
   zone) gives the price per minute for the whole call.
5. cost = connection_fee + price_per_minute × billable_seconds / 60, computed exactly in Decimal
   (per second, pro rata: no rounding to whole minutes beyond what the increment says), then rounded
   **once**, half up, to the tariff's decimals (2: 0.005 → 0.01).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, localcontext

from .tariffs import FLAT, FREE_CLASSES, Increment, Tariff, normalize_number

ZERO = Decimal(0)
_SIXTY = Decimal(60)
_EXACT = Context(prec=50, rounding=ROUND_HALF_EVEN)


class NoRateError(LookupError):
    """No prefix of the tariff matches the number: the destination is not sold (or not bought)."""

    def __init__(self, tariff: str, number: str) -> None:
        super().__init__(f"tariff {tariff!r} has no rate for {number}")
        self.tariff = tariff
        self.number = number


@dataclass(frozen=True, kw_only=True, slots=True)
class RatedCall:
    """The outcome of rating one call."""

    cost: Decimal
    currency: str
    prefix: str  # the matched prefix; "" for a free class
    destination: str  # the rate's destination name, or the free class ("internal", "emergency")
    price_per_minute: Decimal  # the price actually applied (of the period in force)
    billable_seconds: int
    connection_fee: Decimal  # as charged: 0 for an unanswered call
    period: str  # "flat", or the tariff's period name at the start ("peak", "offpeak", …)


def whole_seconds(duration: float | Decimal) -> int:
    """``duration`` rounded up to whole seconds (61.2 → 62); ValueError if negative or not finite."""
    if isinstance(duration, int):
        seconds = duration
    elif isinstance(duration, Decimal):
        if not duration.is_finite() or duration < 0:
            raise ValueError(f"duration {duration} is negative or not finite")
        seconds = int(duration.to_integral_value(rounding=ROUND_CEILING))
    else:
        if not math.isfinite(duration) or duration < 0:
            raise ValueError(f"duration {duration} is negative or not finite")
        seconds = math.ceil(duration)
    if seconds < 0:
        raise ValueError(f"duration {duration} is negative")
    return seconds


def billable_seconds(duration: float | Decimal, increment: Increment, minimum: int = 0) -> int:
    """Seconds billed for an answered call of ``duration`` seconds (0 → 0: unanswered)."""
    seconds = whole_seconds(duration)
    if seconds == 0:
        return 0
    first, step = increment.first, increment.next
    if seconds <= first:
        billed = first
    else:
        billed = first + -(-(seconds - first) // step) * step  # ceiling division on ints
    return max(billed, minimum)


def round_money(amount: Decimal, decimals: int = 2) -> Decimal:
    """``amount`` rounded half up to ``decimals`` places (0.005 → 0.01, 0.0049 → 0.00)."""
    return amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


def call_cost(
    price_per_minute: Decimal, billable: int, connection_fee: Decimal = ZERO, decimals: int = 2
) -> Decimal:
    """connection_fee + price_per_minute × billable / 60, rounded once; 0 when nothing is billable."""
    if billable == 0:
        return round_money(ZERO, decimals)
    # A private context: the division by 60 is inexact (…/3) and must not depend on whatever precision
    # or rounding the process-wide context was given; 50 digits keep the half-up decision exact.
    with localcontext(_EXACT):
        return round_money(connection_fee + price_per_minute * billable / _SIXTY, decimals)


def rate_call(
    tariff: Tariff,
    number: str,
    *,
    started_at: datetime | float,
    duration: float | Decimal,
    destination_class: str | None = None,
    time_zone: str | None = None,
) -> RatedCall:
    """Rate a call to ``number`` (E.164) that started at ``started_at`` (aware datetime or epoch
    seconds) and was answered for ``duration`` seconds. ``time_zone`` is the caller's zone (office or
    tenant) for peak/off-peak, default the tariff's. ``destination_class`` is the dialing plan's class
    ("internal", "emergency", "mobile", … or its StrEnum); None means an external call to look up.
    NoRateError when no prefix matches."""
    if destination_class is not None and destination_class in FREE_CLASSES:
        return RatedCall(
            cost=round_money(ZERO, tariff.decimals), currency=tariff.currency, prefix="",
            destination=str(destination_class), price_per_minute=ZERO,
            billable_seconds=whole_seconds(duration), connection_fee=ZERO, period=FLAT,
        )
    digits = normalize_number(number)
    rate = tariff.lookup(digits)
    if rate is None:
        raise NoRateError(tariff.name, digits)
    period, price = tariff.price_at(rate, started_at, time_zone)
    billed = billable_seconds(duration, rate.increment, rate.minimum)
    fee = rate.connection_fee if billed else ZERO
    return RatedCall(
        cost=call_cost(price, billed, fee, tariff.decimals), currency=tariff.currency, prefix=rate.prefix,
        destination=rate.destination, price_per_minute=price, billable_seconds=billed,
        connection_fee=fee, period=period,
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class Margin:
    """What a call earned: the sell side minus the buy side (negative: sold below cost)."""

    sell: RatedCall
    buy: RatedCall
    amount: Decimal
    currency: str


def margin(
    sell: Tariff,
    buy: Tariff,
    number: str,
    *,
    started_at: datetime | float,
    duration: float | Decimal,
    time_zone: str | None = None,
) -> Margin:
    """Rate the same call under the tenant's ``sell`` tariff and the carrier's ``buy`` tariff.

    Each side keeps its own increments and rounding (carriers often bill 1/1 to 4 decimals while the
    customer pays 60/60 to kopecks); the difference is not rounded again. ValueError if the currencies
    differ (conversion is not rating's business), NoRateError if either side has no rate.
    """
    if sell.currency != buy.currency:
        raise ValueError(f"sell tariff in {sell.currency}, buy tariff in {buy.currency}")
    sold = rate_call(sell, number, started_at=started_at, duration=duration, time_zone=time_zone)
    bought = rate_call(buy, number, started_at=started_at, duration=duration, time_zone=time_zone)
    return Margin(sell=sold, buy=bought, amount=sold.cost - bought.cost, currency=sell.currency)
