"""Tariffs and rating: increments, minimum, fees, rounding, longest prefix, time of day, margin."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum

import pytest

from zvonok.billing import (
    Increment,
    NoRateError,
    Period,
    Rate,
    Tariff,
    billable_seconds,
    call_cost,
    margin,
    peak_offpeak,
    rate_call,
    round_money,
)
from zvonok.billing.rating import whole_seconds

D = Decimal
MONDAY_NOON_UTC = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
DURATIONS = (0, 1, 29, 30, 31, 59, 60, 61, 125.4)


def tariff(*rates: Rate, **kwargs: object) -> Tariff:
    return Tariff(name="test", currency="RUB", rates=rates, **kwargs)  # type: ignore[arg-type]


def flat(prefix: str, price: str, *, increment: str = "60/60", minimum: int = 0, fee: str = "0") -> Rate:
    return Rate(
        prefix=prefix,
        destination=f"dest {prefix}",
        price_per_minute=D(price),
        connection_fee=D(fee),
        increment=Increment.parse(increment),
        minimum=minimum,
    )


@pytest.mark.parametrize(
    ("increment", "expected"),
    [
        ("60/60", (0, 60, 60, 60, 60, 60, 60, 120, 180)),
        ("1/1", (0, 1, 29, 30, 31, 59, 60, 61, 126)),
        ("30/6", (0, 30, 30, 30, 36, 60, 60, 66, 126)),
    ],
)
def test_billable_seconds_by_increment(increment: str, expected: tuple[int, ...]) -> None:
    got = tuple(billable_seconds(duration, Increment.parse(increment)) for duration in DURATIONS)
    assert got == expected


@pytest.mark.parametrize(
    ("increment", "costs"),
    [
        # 1.50 per minute, per second pro rata, rounded half up once
        ("60/60", ("0.00", "1.50", "1.50", "1.50", "1.50", "1.50", "1.50", "3.00", "4.50")),
        ("1/1", ("0.00", "0.03", "0.73", "0.75", "0.78", "1.48", "1.50", "1.53", "3.15")),
        ("30/6", ("0.00", "0.75", "0.75", "0.75", "0.90", "1.50", "1.50", "1.65", "3.15")),
    ],
)
def test_cost_by_increment(increment: str, costs: tuple[str, ...]) -> None:
    plan = tariff(flat("7", "1.50", increment=increment))
    got = tuple(
        rate_call(plan, "79161234567", started_at=MONDAY_NOON_UTC, duration=d).cost for d in DURATIONS
    )
    assert got == tuple(D(cost) for cost in costs)


@pytest.mark.parametrize(
    ("duration", "seconds"), [(0, 0), (61.2, 62), (D("61.0"), 61), (D("0.001"), 1), (59.999, 60)]
)
def test_fractional_durations_round_up(duration: float | Decimal, seconds: int) -> None:
    assert whole_seconds(duration) == seconds


@pytest.mark.parametrize("duration", [-1, -0.5, float("nan"), float("inf"), D("NaN")])
def test_bad_durations_refused(duration: float | Decimal) -> None:
    with pytest.raises(ValueError):
        whole_seconds(duration)


@pytest.mark.parametrize(("duration", "billed"), [(0, 0), (1, 10), (9, 10), (10, 10), (11, 11), (70.5, 71)])
def test_minimum_billable(duration: float, billed: int) -> None:
    assert billable_seconds(duration, Increment(1, 1), minimum=10) == billed


def test_minimum_above_first_block_with_increment() -> None:
    # 60/60 with a 90 s minimum: a 61 s call is 120 s anyway, a 30 s call is raised to 90 s
    assert [billable_seconds(d, Increment(60, 60), 90) for d in (30, 61, 121)] == [90, 120, 180]


@pytest.mark.parametrize(
    ("duration", "cost", "fee", "billed"),
    [(0, "0.00", "0", 0), (1, "2.50", "0.50", 60), (60, "2.50", "0.50", 60), (61, "4.50", "0.50", 120)],
)
def test_connection_fee_only_for_answered_calls(duration: int, cost: str, fee: str, billed: int) -> None:
    plan = tariff(flat("7", "2.00", fee="0.50"))
    rated = rate_call(plan, "79161234567", started_at=MONDAY_NOON_UTC, duration=duration)
    assert (rated.cost, rated.connection_fee, rated.billable_seconds) == (D(cost), D(fee), billed)


@pytest.mark.parametrize(
    ("price", "cost"),
    [("0.30", "0.01"), ("0.294", "0.00"), ("0.306", "0.01"), ("1.50", "0.03"), ("0.90", "0.02")],
)
def test_rounding_is_half_up_once(price: str, cost: str) -> None:
    # one second at 1/1: 0.30/60 = 0.005 → 0.01 (half even would give 0.00), 1.50/60 = 0.025 → 0.03
    assert call_cost(D(price), 1) == D(cost)


def test_round_money_other_decimals() -> None:
    assert round_money(D("0.81335"), 4) == D("0.8134")
    assert round_money(D("2.5"), 0) == D("3")
    assert str(round_money(D("1"))) == "1.00"


def test_rated_call_fields() -> None:
    plan = tariff(flat("7495", "1.20", increment="1/1", fee="0.10"))
    rated = rate_call(plan, "+74951234567", started_at=MONDAY_NOON_UTC, duration=61.2)
    assert rated.cost == D("1.34")  # 0.10 + 1.20 * 62 / 60 = 1.34
    assert (rated.currency, rated.prefix, rated.destination) == ("RUB", "7495", "dest 7495")
    assert (rated.price_per_minute, rated.billable_seconds, rated.connection_fee, rated.period) == (
        D("1.20"),
        62,
        D("0.10"),
        "flat",
    )


LONGEST = tariff(flat("7", "1.00"), flat("749", "2.00"), flat("7495", "3.00"), flat("74951", "4.00"))


@pytest.mark.parametrize(
    ("number", "prefix"),
    [
        ("74951234567", "74951"),
        ("74959876543", "7495"),
        ("74991234567", "749"),
        ("79161234567", "7"),
        ("+74951234567", "74951"),
        ("7495", "7495"),
        ("74", "7"),
    ],
)
def test_longest_prefix_wins(number: str, prefix: str) -> None:
    rate = LONGEST.lookup(number)
    assert rate is not None and rate.prefix == prefix
    rated = rate_call(LONGEST, number, started_at=MONDAY_NOON_UTC, duration=60)
    assert rated.prefix == prefix and rated.cost == rate.price_per_minute


def test_no_rate_for_unsold_destination() -> None:
    assert LONGEST.lookup("441234567890") is None
    with pytest.raises(NoRateError) as caught:
        rate_call(LONGEST, "441234567890", started_at=MONDAY_NOON_UTC, duration=10)
    assert caught.value.number == "441234567890"


@pytest.mark.parametrize("number", ["", "+", "7-495", "7495a", "٧٤٩٥"])
def test_malformed_numbers_refused(number: str) -> None:
    with pytest.raises(ValueError):
        rate_call(LONGEST, number, started_at=MONDAY_NOON_UTC, duration=10)


class Kind(StrEnum):  # the shape of the dialing plan's DestinationClass: billing compares the values
    INTERNAL = "internal"
    EMERGENCY = "emergency"
    MOBILE = "mobile"


@pytest.mark.parametrize("kind", [Kind.INTERNAL, Kind.EMERGENCY, "internal", "emergency"])
def test_free_classes_cost_nothing_without_lookup(kind: str) -> None:
    empty = tariff()
    rated = rate_call(empty, "101", started_at=MONDAY_NOON_UTC, duration=125.4, destination_class=kind)
    assert (rated.cost, rated.prefix, rated.destination, rated.billable_seconds) == (
        D("0.00"),
        "",
        str(kind),
        126,
    )
    assert rated.destination in ("internal", "emergency")


def test_paid_class_is_looked_up() -> None:
    rated = rate_call(
        LONGEST, "79161234567", started_at=MONDAY_NOON_UTC, duration=60, destination_class=Kind.MOBILE
    )
    assert rated.cost == D("1.00")


# Europe/Moscow is UTC+3 all year (no DST since 2014): 08:00 local is 05:00 UTC.
PEAK = tariff(
    Rate(prefix="7", destination="Russia", price_per_minute=D("0.50"), period_prices=(("peak", D("1.20")),)),
    Rate(prefix="44", destination="UK", price_per_minute=D("3.00")),
    time_zone="Europe/Moscow",
    periods=peak_offpeak(),
    holidays=[date(2024, 3, 8)],
)


@pytest.mark.parametrize(
    ("started_at", "period", "price"),
    [
        (datetime(2024, 3, 4, 4, 59, 59, tzinfo=UTC), "offpeak", "0.50"),  # Monday 07:59:59 MSK
        (datetime(2024, 3, 4, 5, 0, 0, tzinfo=UTC), "peak", "1.20"),  # Monday 08:00:00 MSK
        (datetime(2024, 3, 4, 16, 59, 59, tzinfo=UTC), "peak", "1.20"),  # 19:59:59 MSK
        (datetime(2024, 3, 4, 17, 0, 0, tzinfo=UTC), "offpeak", "0.50"),  # 20:00:00 MSK
        (datetime(2024, 3, 3, 21, 0, 0, tzinfo=UTC), "offpeak", "0.50"),  # Monday 00:00 MSK, Sunday in UTC
        (datetime(2024, 3, 9, 9, 0, tzinfo=UTC), "offpeak", "0.50"),  # Saturday noon
        (datetime(2024, 3, 8, 9, 0, tzinfo=UTC), "offpeak", "0.50"),  # Friday, but a public holiday
        (datetime(2024, 3, 7, 9, 0, tzinfo=UTC).timestamp(), "peak", "1.20"),  # epoch seconds work too
    ],
)
def test_time_of_day_switches_at_the_boundary_in_moscow(
    started_at: datetime | float, period: str, price: str
) -> None:
    rated = rate_call(PEAK, "74951234567", started_at=started_at, duration=60)
    assert (rated.period, rated.price_per_minute, rated.cost) == (period, D(price), D(price))


def test_period_from_start_time_applies_to_the_whole_call() -> None:
    start = datetime(2024, 3, 4, 4, 59, 0, tzinfo=UTC)  # 07:59 MSK, off-peak; the call runs into peak
    rated = rate_call(PEAK, "74951234567", started_at=start, duration=600)
    assert (rated.period, rated.cost) == ("offpeak", D("5.00"))


def test_rate_without_period_price_uses_its_base_price() -> None:
    rated = rate_call(PEAK, "441234567890", started_at=datetime(2024, 3, 4, 9, tzinfo=UTC), duration=60)
    assert (rated.period, rated.price_per_minute) == ("peak", D("3.00"))


def test_time_zone_of_the_caller_overrides_the_tariffs() -> None:
    start = datetime(2024, 3, 4, 3, 30, tzinfo=UTC)  # 06:30 in Moscow, 08:30 in Yekaterinburg (UTC+5)
    assert rate_call(PEAK, "7495", started_at=start, duration=60).period == "offpeak"
    assert (
        rate_call(PEAK, "7495", started_at=start, duration=60, time_zone="Asia/Yekaterinburg").period
        == "peak"
    )


def test_naive_datetime_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        rate_call(PEAK, "7495", started_at=datetime(2024, 3, 4, 12), duration=60)


def test_night_period_across_midnight_as_two_halves() -> None:
    night = (
        Period(name="night", start=time(22), end=time(0)),
        Period(name="night", start=time(0), end=time(6)),
    )
    plan = tariff(flat("7", "1.00"), time_zone="Europe/Moscow", periods=night, default_period="day")
    msk = timedelta(hours=3)
    at = [
        datetime(2024, 3, 4, h, m, tzinfo=UTC) - msk
        for h, m in ((21, 59), (22, 0), (23, 59), (0, 0), (5, 59), (6, 0))
    ]
    assert [plan.period_at(moment) for moment in at] == ["day", "night", "night", "night", "night", "day"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Increment(0, 60),
        lambda: Increment(60, 0),
        lambda: Increment.parse("60/"),
        lambda: Increment.parse("a/b"),
        lambda: flat("7a", "1"),
        lambda: flat("1234567890123456", "1"),
        lambda: flat("7", "-1"),
        lambda: Rate(prefix="7", destination="x", price_per_minute=1.5),  # type: ignore[arg-type]
        lambda: flat("7", "1", minimum=-1),
        lambda: Period(name="Peak", start=time(8), end=time(20)),
        lambda: Period(name="peak", start=time(20), end=time(8)),
        lambda: Period(name="peak", start=time(8), end=time(20), weekdays=frozenset({7})),
        lambda: tariff(flat("7", "1"), flat("7", "2")),
        lambda: Tariff(name="x", currency="rub", rates=()),
        lambda: Tariff(name="x", currency="RUB", rates=(), time_zone="Mars/Olympus"),
    ],
)
def test_invalid_tariff_parts_refused(make: object) -> None:
    with pytest.raises((ValueError, LookupError)):
        make()  # type: ignore[operator]


def test_increment_text_forms() -> None:
    assert Increment.parse("30/6") == Increment(30, 6)
    assert Increment.parse(" 60 ") == Increment(60, 60)
    assert str(Increment(1, 1)) == "1/1"


def test_margin_sell_minus_buy_with_each_sides_rules() -> None:
    sell = tariff(flat("7", "2.00"))
    buy = Tariff(name="carrier", currency="RUB", decimals=4, rates=[flat("7", "0.80", increment="1/1")])
    result = margin(sell, buy, "79161234567", started_at=MONDAY_NOON_UTC, duration=61)
    # sell: 120 s at 2.00 = 4.00; buy: 61 s at 0.80 = 0.81333… → 0.8133
    assert (result.sell.cost, result.buy.cost, result.amount, result.currency) == (
        D("4.00"),
        D("0.8133"),
        D("3.1867"),
        "RUB",
    )


def test_margin_refuses_mixed_currencies_and_unbought_destinations() -> None:
    sell = tariff(flat("7", "2.00"), flat("44", "5.00"))
    with pytest.raises(ValueError, match="currency|EUR"):
        margin(
            sell,
            Tariff(name="eu", currency="EUR", rates=[flat("7", "0.01")]),
            "7916",
            started_at=0,
            duration=1,
        )
    with pytest.raises(NoRateError):
        margin(sell, tariff(flat("7", "0.80")), "4420", started_at=0, duration=1)


def test_hundred_thousand_prefixes_and_ten_thousand_lookups() -> None:
    rates = [
        Rate(prefix=str(n), destination="bulk", price_per_minute=D("0.01")) for n in range(100_000, 200_000)
    ]
    rates.append(Rate(prefix="1", destination="short", price_per_minute=D("9")))
    big = Tariff(name="big", currency="RUB", rates=rates)
    assert len(big) == 100_001
    found = [big.lookup(f"{n}{n % 10_000:07d}") for n in range(100_000, 200_000, 10)]
    assert len(found) == 10_000
    assert all(rate is not None and rate.destination == "bulk" for rate in found)
    fallback = big.lookup("1999")
    assert fallback is not None and fallback.prefix == "1"
