"""Spending limits: refuse, warn, threshold crossings and the exact maximum call duration."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.billing import (
    Budget,
    Increment,
    Level,
    Rate,
    Threshold,
    authorize,
    billable_seconds,
    call_cost,
    crossings,
    max_duration,
)

D = Decimal


def rate(price: str, increment: str = "60/60", *, minimum: int = 0, fee: str = "0") -> Rate:
    return Rate(
        prefix="7",
        destination="Russia",
        price_per_minute=D(price),
        connection_fee=D(fee),
        increment=Increment.parse(increment),
        minimum=minimum,
    )


@pytest.mark.parametrize(
    ("remaining", "price", "increment", "minimum", "fee", "seconds"),
    [
        ("10.00", "2.00", "60/60", 0, "0", 300),  # 5 minutes cost exactly 10.00
        ("10.00", "2.00", "1/1", 0, "0", 300),  # 301 s would be 10.03
        ("10.00", "2.00", "1/1", 0, "0.50", 285),  # the fee takes 15 seconds' worth
        ("10.00", "2.00", "30/6", 0, "0", 300),
        ("9.99", "2.00", "30/6", 0, "0", 294),  # 300 s would be 10.00
        ("1.00", "1.00", "1/1", 0, "0", 60),
        ("0.01", "0.30", "1/1", 0, "0", 2),  # 2 s = 0.01; 3 s = 0.015 → 0.02 half up
        ("0.009", "0.30", "1/1", 0, "0", 0),  # less than a kopeck buys nothing
        ("0.99", "1.00", "60/60", 0, "0", 0),  # not even the first block
        ("1.00", "1.00", "1/1", 120, "0", 0),  # the minimum costs 2.00
        ("5.00", "1.00", "1/1", 120, "0", 300),
        ("0.00", "1.00", "1/1", 0, "0", 0),
        ("-3.00", "1.00", "1/1", 0, "0", 0),  # overspent already
        ("1.00", "0", "1/1", 0, "0.50", None),  # only a fee, and it fits: time is free
        ("0.40", "0", "1/1", 0, "0.50", 0),
        ("-1.00", "0", "1/1", 0, "0", None),  # a free rate is never cut
        ("1000000.00", "0.01", "1/1", 0, "0", 6_000_000_029),  # large budgets stay exact
    ],
)
def test_max_duration_exact(
    remaining: str, price: str, increment: str, minimum: int, fee: str, seconds: int | None
) -> None:
    got = max_duration(
        D(remaining),
        price_per_minute=D(price),
        increment=Increment.parse(increment),
        minimum=minimum,
        connection_fee=D(fee),
    )
    assert got == seconds


def _cost(price: Decimal, fee: Decimal, increment: Increment, minimum: int, duration: int) -> Decimal:
    billed = billable_seconds(duration, increment, minimum)
    return call_cost(price, billed, fee if billed else D(0))


@settings(max_examples=300, deadline=None)
@given(
    remaining=st.decimals(min_value=0, max_value=50, places=2),
    price=st.decimals(min_value=D("0.01"), max_value=20, places=3),
    fee=st.sampled_from([D(0), D("0.10"), D("1.00")]),
    first=st.sampled_from([1, 6, 30, 60]),
    step=st.sampled_from([1, 6, 30, 60]),
    minimum=st.sampled_from([0, 10, 90]),
)
def test_max_duration_is_the_last_affordable_second(
    remaining: Decimal, price: Decimal, fee: Decimal, first: int, step: int, minimum: int
) -> None:
    increment = Increment(first, step)
    seconds = max_duration(
        remaining, price_per_minute=price, increment=increment, minimum=minimum, connection_fee=fee
    )
    assert seconds is not None
    if seconds > 0:
        assert _cost(price, fee, increment, minimum, seconds) <= remaining
    assert _cost(price, fee, increment, minimum, seconds + 1) > remaining


# the employee has 10.00 left and is past the warning; the office has 1.00 left
EMPLOYEE = Budget(level=Level.EMPLOYEE, owner_id=11, limit=D("100.00"), spent=D("90.00"))
DEPARTMENT = Budget(level=Level.DEPARTMENT, owner_id=5, limit=D("1000.00"), spent=D("500.00"))
OFFICE = Budget(level=Level.OFFICE, owner_id=2, limit=D("5000.00"), spent=D("4999.00"), warn_ratio=D("0.9"))


def test_allowed_with_the_smallest_budget_setting_the_cut() -> None:
    decision = authorize([EMPLOYEE, DEPARTMENT], rate("2.00"))
    assert decision.allowed and decision.exceeded == ()
    assert (decision.max_duration, decision.limited_by) == (300, EMPLOYEE)
    assert decision.warned == (EMPLOYEE,)
    assert (decision.tone_at(10), decision.tone_at(400)) == (290, 0)


def test_refused_by_the_level_that_cannot_pay_the_first_block() -> None:
    # the office has 1.00 left and a minute costs 2.00
    decision = authorize([EMPLOYEE, DEPARTMENT, OFFICE], rate("2.00"))
    assert not decision.allowed
    assert decision.exceeded == (OFFICE,)
    assert decision.warned == (EMPLOYEE, OFFICE)
    assert decision.max_duration == 0
    # per second the office's 1.00 still buys 30 s, and the office is the tightest
    per_second = authorize([EMPLOYEE, DEPARTMENT, OFFICE], rate("2.00", "1/1"))
    assert (per_second.allowed, per_second.max_duration, per_second.limited_by) == (True, 30, OFFICE)


def test_peak_price_overrides_the_base_price() -> None:
    decision = authorize([EMPLOYEE], rate("2.00"), price_per_minute=D("5.00"))
    assert decision.max_duration == 120


def test_without_a_rate_only_exhausted_budgets_refuse() -> None:
    spent_out = Budget(level=Level.TENANT, limit=D("50"), spent=D("50"))
    decision = authorize([EMPLOYEE, spent_out])
    assert (decision.allowed, decision.exceeded, decision.max_duration, decision.limited_by) == (
        False,
        (spent_out,),
        None,
        None,
    )
    assert authorize([EMPLOYEE]).allowed


def test_no_budgets_no_limit() -> None:
    decision = authorize([], rate("2.00"))
    assert (decision.allowed, decision.max_duration, decision.tone_at(10)) == (True, None, None)


def test_zero_limit_blocks_paid_calls_without_warning() -> None:
    blocked = Budget(level=Level.EMPLOYEE, limit=D(0), spent=D(0))
    decision = authorize([blocked], rate("1.00"))
    assert (decision.allowed, decision.exceeded, decision.warned) == (False, (blocked,), ())


@pytest.mark.parametrize(
    ("limit", "ratio"),
    [("-1", "0.8"), ("10", "0"), ("10", "1.01")],
)
def test_invalid_budget(limit: str, ratio: str) -> None:
    with pytest.raises(ValueError):
        Budget(level=Level.OFFICE, limit=D(limit), spent=D(0), warn_ratio=D(ratio))


@pytest.mark.parametrize(
    ("spent", "cost", "ratio", "expected"),
    [
        ("70.00", "10.00", "0.8", [Threshold.WARNING]),  # reaching 80.00 exactly crosses
        ("70.00", "9.99", "0.8", []),
        ("80.00", "5.00", "0.8", []),  # already past: announced by an earlier call
        ("79.99", "25.00", "0.8", [Threshold.WARNING, Threshold.LIMIT]),  # both in one call
        ("95.00", "5.00", "0.8", [Threshold.LIMIT]),
        ("100.00", "1.00", "0.8", []),
        ("40.00", "10.00", "0.5", [Threshold.WARNING]),
        ("70.00", "0", "0.8", []),
    ],
)
def test_crossings_are_reported_once(spent: str, cost: str, ratio: str, expected: list[Threshold]) -> None:
    budget = Budget(
        level=Level.DEPARTMENT, owner_id=5, limit=D("100.00"), spent=D(spent), warn_ratio=D(ratio)
    )
    found = crossings([budget], D(cost))
    assert [c.threshold for c in found] == expected
    assert all(
        (c.level, c.owner_id, c.limit, c.spent) == (Level.DEPARTMENT, 5, D("100.00"), D(spent) + D(cost))
        for c in found
    )


def test_crossings_per_level_in_order() -> None:
    found = crossings([EMPLOYEE, DEPARTMENT, OFFICE], D("10.00"))
    assert [(c.level, c.threshold) for c in found] == [
        (Level.EMPLOYEE, Threshold.LIMIT),
        (Level.OFFICE, Threshold.LIMIT),
    ]
