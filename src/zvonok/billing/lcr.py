"""Least-cost routing: which carrier trunks can take a destination, cheapest first.

How it works: each trunk brings its carrier's buy :class:`~zvonok.billing.tariffs.Tariff`; for the dialed
number every tariff does its own longest-prefix match and picks the price of the period in force at the
call's start (carriers' peak hours differ, so the period is per tariff). Trunks with no matching prefix
cannot sell us the destination and are left out. The rest are ordered by price per minute, then by the
trunk's priority (lower first, like SRV records), then by the order given, so equal offers keep the
administrator's order and the result is deterministic.

Only the per-minute price orders the list, as carriers' rate decks compare; connection fees and
increments are shown on each choice for whoever wants a finer comparison.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from .tariffs import Rate, Tariff, normalize_number


class TrunkTariff(NamedTuple):
    """A trunk as LCR sees it; a plain ``(trunk_id, priority, tariff)`` tuple works too."""

    trunk_id: Hashable
    priority: int
    tariff: Tariff


@dataclass(frozen=True, kw_only=True, slots=True)
class RouteChoice:
    trunk_id: Hashable
    priority: int
    price_per_minute: Decimal  # of the period in force at the call's start
    period: str
    rate: Rate  # the matched buy rate (prefix, destination, fee, increment)
    currency: str


def least_cost_routes(
    number: str,
    trunks: Iterable[TrunkTariff | tuple[Hashable, int, Tariff]],
    *,
    started_at: datetime | float,
    time_zone: str | None = None,
) -> list[RouteChoice]:
    """Trunks that have a rate for ``number`` (E.164), cheapest first, then by priority.

    ``time_zone`` overrides every tariff's own zone (None: each carrier's schedule in its own zone).
    ValueError if the matching tariffs are in different currencies: their prices do not compare.
    """
    digits = normalize_number(number)
    ranked: list[tuple[Decimal, int, int, RouteChoice]] = []
    currencies: set[str] = set()
    for position, (trunk_id, priority, tariff) in enumerate(trunks):
        rate = tariff.lookup(digits)
        if rate is None:
            continue
        currencies.add(tariff.currency)
        if len(currencies) > 1:
            raise ValueError(f"trunk tariffs in several currencies: {', '.join(sorted(currencies))}")
        period, price = tariff.price_at(rate, started_at, time_zone)
        choice = RouteChoice(
            trunk_id=trunk_id, priority=priority, price_per_minute=price, period=period, rate=rate,
            currency=tariff.currency,
        )
        ranked.append((price, priority, position, choice))
    ranked.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in ranked]
