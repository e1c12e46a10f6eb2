"""Tariff plans: per-prefix rates, longest-prefix match, time-of-day periods.

How it works: a :class:`Tariff` keeps its rates in one dict keyed by prefix (E.164 digits without '+')
and the set of prefix lengths that occur in it, longest first. :meth:`Tariff.lookup` slices the dialed
number to each of those lengths and probes the dict: at most one probe per distinct length (about 8 in
real rate decks), never a scan over the rates, so 100k prefixes cost the same per call as 100.

Time-of-day pricing lives at two levels, as in carriers' rate decks: the tariff holds the *schedule*
(named :class:`Period` s such as "peak" on weekdays 08:00–20:00, in a time zone) and each :class:`Rate`
may carry a price per period name (:attr:`Rate.period_prices`); a rate without a price for the period in
force uses its base :attr:`Rate.price_per_minute`. The period is chosen once, from the call's start time
in the caller's zone (tenant or office), and applies to the whole call. A tariff without periods is
"flat"; outside every period of a scheduled tariff the period is :attr:`Tariff.default_period`
("offpeak"). Public holidays are treated as Sundays.

Money is :class:`decimal.Decimal` throughout; a tariff also says how many decimals a cost is rounded to
(2: kopecks, cents), see :mod:`zvonok.billing.rating`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

FLAT = "flat"
OFFPEAK = "offpeak"
MAX_PREFIX_DIGITS = 15  # E.164 numbers have at most 15 digits (ITU-T E.164 §6)

_PREFIX = re.compile(r"[0-9]{1,15}")
PERIOD_NAME = re.compile(r"[a-z][a-z0-9_]*")
_ALL_DAYS = frozenset(range(7))
WEEKDAYS = frozenset(range(5))  # Monday..Friday, as datetime.weekday() counts them


# Destination classes that cost nothing and are never looked up. The classes themselves are the dialing
# plan's (``zvonok.dialing.numbers.DestinationClass``, a StrEnum): billing compares their string values
# and does not import the dialing layer, so it rates whatever classifier produced the call.
INTERNAL = "internal"  # extension to extension of the same tenant
EMERGENCY = "emergency"  # 112 and the national short codes: free by law
FREE_CLASSES = frozenset({INTERNAL, EMERGENCY})


def normalize_number(number: str) -> str:
    """E.164 digits of ``number`` (a leading '+' dropped); ValueError if anything else is in it."""
    digits = number[1:] if number.startswith("+") else number
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"not an E.164 number: {number!r}")
    return digits


def as_datetime(moment: datetime | float) -> datetime:
    """An aware datetime from an aware datetime or epoch seconds; a naive datetime is refused because
    its zone is a guess and a guessed zone picks the wrong peak/off-peak price."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("naive datetime: pass an aware datetime or epoch seconds")
        return moment
    return datetime.fromtimestamp(moment, tz=UTC)


@dataclass(frozen=True, slots=True)
class Increment:
    """Billing increment "first/next": the first ``first`` seconds are billed as a block, then every
    started ``next`` seconds (60/60 per started minute, 1/1 per second, 30/6 …)."""

    first: int = 60
    next: int = 60

    def __post_init__(self) -> None:
        if self.first < 1 or self.next < 1:
            raise ValueError(f"increment {self.first}/{self.next}: both parts must be at least 1 second")

    @classmethod
    def parse(cls, text: str) -> Increment:
        """``"60/60"`` → Increment(60, 60); a single number ``"60"`` means ``60/60``."""
        match = re.fullmatch(r"\s*([0-9]{1,5})\s*(?:/\s*([0-9]{1,5})\s*)?", text)
        if match is None:
            raise ValueError(f"increment {text!r} is not of the form first/next, e.g. 60/60 or 1/1")
        first = int(match.group(1))
        return cls(first, int(match.group(2)) if match.group(2) is not None else first)

    def __str__(self) -> str:
        return f"{self.first}/{self.next}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Period:
    """A named time band of a tariff's schedule: ``weekdays`` (0 = Monday) and local ``start`` ≤ t <
    ``end``. ``end`` = 00:00 means the end of the day; a band across midnight is written as two periods
    with the same name (so the weekday of each half is unambiguous)."""

    name: str
    start: time
    end: time
    weekdays: frozenset[int] = _ALL_DAYS

    def __post_init__(self) -> None:
        if not PERIOD_NAME.fullmatch(self.name) or self.name == FLAT:
            raise ValueError(f"period name {self.name!r}: lower-case letters, digits, '_' (and not 'flat')")
        if not self.weekdays or not self.weekdays <= _ALL_DAYS:
            raise ValueError(f"period {self.name}: weekdays must be a non-empty subset of 0..6")
        if self.end != time(0) and self.end <= self.start:
            raise ValueError(f"period {self.name}: end {self.end} is not after start {self.start}")

    def covers(self, local: datetime, weekday: int) -> bool:
        if weekday not in self.weekdays:
            return False
        t = local.time()  # naive wall-clock time in the tariff's zone
        return self.start <= t and (self.end == time(0) or t < self.end)


def peak_offpeak(
    start: time = time(8), end: time = time(20), weekdays: frozenset[int] = WEEKDAYS
) -> tuple[Period]:
    """The usual schedule: "peak" on working days from ``start`` to ``end``, "offpeak" otherwise."""
    return (Period(name="peak", start=start, end=end, weekdays=weekdays),)


@dataclass(frozen=True, kw_only=True, slots=True)
class Rate:
    """One row of a rate deck. Prices are per minute, applied per second pro rata (see rating)."""

    prefix: str
    destination: str
    price_per_minute: Decimal
    connection_fee: Decimal = Decimal(0)
    increment: Increment = field(default_factory=Increment)
    minimum: int = 0  # minimum billable seconds of an answered call
    # (period name, price per minute) pairs; a tuple, not a dict, so a Rate stays hashable
    period_prices: tuple[tuple[str, Decimal], ...] = ()

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise ValueError(f"prefix {self.prefix!r}: 1 to {MAX_PREFIX_DIGITS} digits")
        prices = [self.price_per_minute, self.connection_fee, *(price for _, price in self.period_prices)]
        for price in prices:
            if not isinstance(price, Decimal) or not price.is_finite() or price < 0:
                raise ValueError(f"prefix {self.prefix}: prices must be non-negative Decimals, got {price!r}")
        if self.minimum < 0:
            raise ValueError(f"prefix {self.prefix}: minimum {self.minimum} is negative")
        names = [name for name, _ in self.period_prices]
        if len(set(names)) != len(names):
            raise ValueError(f"prefix {self.prefix}: a period is priced twice")

    def price_for(self, period: str) -> Decimal:
        for name, price in self.period_prices:
            if name == period:
                return price
        return self.price_per_minute


class Tariff:
    """A rate deck (a tenant's sell plan or a carrier's buy plan) with its currency and schedule."""

    __slots__ = ("name", "currency", "decimals", "time_zone", "periods", "default_period", "holidays",
                 "_by_prefix", "_lengths", "_zone")

    def __init__(
        self,
        *,
        name: str,
        currency: str,
        rates: Iterable[Rate],
        decimals: int = 2,
        time_zone: str = "UTC",
        periods: Iterable[Period] = (),
        default_period: str = OFFPEAK,
        holidays: Iterable[date] = (),
    ) -> None:
        """``time_zone`` is a zoneinfo name, the default for :meth:`period_at`; ValueError on duplicate
        prefixes (a deck with two prices for one prefix is ambiguous) or an unknown zone."""
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise ValueError(f"currency {currency!r} is not an ISO 4217 code")
        if not 0 <= decimals <= 6:
            raise ValueError(f"decimals {decimals} out of 0..6")
        self.name = name
        self.currency = currency
        self.decimals = decimals
        self.time_zone = time_zone
        self._zone = ZoneInfo(time_zone)
        self.periods = tuple(periods)
        self.default_period = default_period
        self.holidays = frozenset(holidays)
        by_prefix: dict[str, Rate] = {}
        for rate in rates:
            if by_prefix.setdefault(rate.prefix, rate) is not rate:
                raise ValueError(f"tariff {name}: prefix {rate.prefix} appears twice")
        self._by_prefix = by_prefix
        self._lengths = tuple(sorted({len(prefix) for prefix in by_prefix}, reverse=True))

    def __len__(self) -> int:
        return len(self._by_prefix)

    def __iter__(self) -> Iterator[Rate]:
        return iter(self._by_prefix.values())

    def __repr__(self) -> str:
        return f"<Tariff {self.name!r} {self.currency} {len(self)} rates>"

    def rate_for_prefix(self, prefix: str) -> Rate | None:
        """The rate of exactly this prefix (no longest-match)."""
        return self._by_prefix.get(prefix)

    def lookup(self, number: str) -> Rate | None:
        """The rate of the longest prefix of ``number`` (E.164 digits, '+' allowed), or None."""
        if number[:1] == "+":
            number = number[1:]
        by_prefix = self._by_prefix
        size = len(number)
        for length in self._lengths:
            if length <= size:
                rate = by_prefix.get(number[:length])
                if rate is not None:
                    return rate
        return None

    def period_at(self, started_at: datetime | float, time_zone: str | None = None) -> str:
        """The period name in force at ``started_at`` in ``time_zone`` (default: the tariff's)."""
        if not self.periods:
            return FLAT
        zone = self._zone if time_zone is None else ZoneInfo(time_zone)
        local = as_datetime(started_at).astimezone(zone)
        weekday = 6 if local.date() in self.holidays else local.weekday()
        for period in self.periods:
            if period.covers(local, weekday):
                return period.name
        return self.default_period

    def price_at(
        self, rate: Rate, started_at: datetime | float, time_zone: str | None = None
    ) -> tuple[str, Decimal]:
        """(period name, price per minute) of ``rate`` for a call starting at ``started_at``."""
        period = self.period_at(started_at, time_zone)
        return period, rate.price_for(period)
