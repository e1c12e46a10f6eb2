"""Least-cost routing over carriers' buy tariffs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from zvonok.billing import Rate, Tariff, TrunkTariff, least_cost_routes, peak_offpeak

D = Decimal
NOON_MSK = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)  # Monday 12:00 in Moscow: peak
NIGHT_MSK = datetime(2024, 3, 4, 20, 0, tzinfo=UTC)  # Monday 23:00 in Moscow: off-peak


def deck(name: str, *prices: tuple[str, str], **kwargs: object) -> Tariff:
    rates = [Rate(prefix=prefix, destination=prefix, price_per_minute=D(price)) for prefix, price in prices]
    return Tariff(name=name, currency="RUB", rates=rates, **kwargs)  # type: ignore[arg-type]


TRUNKS = [
    TrunkTariff("a", 1, deck("A", ("7", "0.90"))),
    TrunkTariff("b", 2, deck("B", ("7", "1.00"), ("7495", "0.50"))),
    TrunkTariff("c", 0, deck("C", ("44", "0.10"))),  # no Russia at all
    TrunkTariff("d", 0, deck("D", ("7", "0.90"))),
    ("e", 1, deck("E", ("7", "0.90"))),  # a plain tuple, same price and priority as "a", given after it
]


def test_cheapest_first_then_priority_then_given_order_without_unmatched() -> None:
    routes = least_cost_routes("+74951234567", TRUNKS, started_at=NOON_MSK)
    assert [(r.trunk_id, r.price_per_minute, r.rate.prefix) for r in routes] == [
        ("b", D("0.50"), "7495"),
        ("d", D("0.90"), "7"),
        ("a", D("0.90"), "7"),
        ("e", D("0.90"), "7"),
    ]


def test_each_trunk_matches_its_own_longest_prefix() -> None:
    routes = least_cost_routes("79161234567", TRUNKS, started_at=NOON_MSK)
    assert [(r.trunk_id, r.price_per_minute) for r in routes] == [
        ("d", D("0.90")),
        ("a", D("0.90")),
        ("e", D("0.90")),
        ("b", D("1.00")),
    ]


def test_no_trunk_has_the_destination() -> None:
    assert least_cost_routes("8613912345678", TRUNKS, started_at=NOON_MSK) == []


def test_order_follows_each_carriers_period_at_the_start() -> None:
    timed = Tariff(
        name="T",
        currency="RUB",
        time_zone="Europe/Moscow",
        periods=peak_offpeak(),
        rates=[
            Rate(
                prefix="7", destination="RU", price_per_minute=D("0.40"), period_prices=(("peak", D("1.50")),)
            )
        ],
    )
    trunks = [TrunkTariff("flat", 5, deck("F", ("7", "0.80"))), TrunkTariff("timed", 5, timed)]
    by_day = least_cost_routes("7916", trunks, started_at=NOON_MSK)
    by_night = least_cost_routes("7916", trunks, started_at=NIGHT_MSK.timestamp())
    assert [(r.trunk_id, r.period, r.price_per_minute) for r in by_day] == [
        ("flat", "flat", D("0.80")),
        ("timed", "peak", D("1.50")),
    ]
    assert [(r.trunk_id, r.period, r.price_per_minute) for r in by_night] == [
        ("timed", "offpeak", D("0.40")),
        ("flat", "flat", D("0.80")),
    ]


def test_mixed_currencies_do_not_compare() -> None:
    euro = Tariff(
        name="EU", currency="EUR", rates=[Rate(prefix="7", destination="RU", price_per_minute=D("0.01"))]
    )
    with pytest.raises(ValueError, match="EUR, RUB"):
        least_cost_routes("7916", [*TRUNKS, TrunkTariff("eu", 0, euro)], started_at=NOON_MSK)
    # a trunk in another currency that cannot take the number does not matter
    assert len(least_cost_routes("44207", [TrunkTariff("eu", 0, euro), TRUNKS[2]], started_at=NOON_MSK)) == 1
