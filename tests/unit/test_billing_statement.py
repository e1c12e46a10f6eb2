"""Monthly statements: the month in the tenant's zone, totals per office, department, employee, class."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from zvonok.billing import ChargedCall, Totals, month_bounds, monthly_statement

D = Decimal


def call(
    when: datetime,
    cost: str,
    seconds: int,
    kind: str,
    office: int | None,
    dept: int | None,
    employee: int | None,
) -> ChargedCall:
    return ChargedCall(
        started_at=when,
        cost=D(cost),
        billable_seconds=seconds,
        destination_class=kind,
        office_id=office,
        department_id=dept,
        employee_id=employee,
    )


# Moscow is UTC+3: March 2024 there runs from 2024-02-29 21:00 UTC to 2024-03-31 21:00 UTC.
RECORDS = [
    call(datetime(2024, 2, 29, 21, 0, tzinfo=UTC), "1.50", 60, "mobile", 1, 10, 100),  # 1 March 00:00 MSK
    call(datetime(2024, 3, 15, 9, 0, tzinfo=UTC), "12.00", 600, "international", 1, 10, 101),
    call(datetime(2024, 3, 20, 9, 0, tzinfo=UTC), "0.00", 300, "internal", 1, 11, 100),
    call(datetime(2024, 3, 31, 20, 59, 59, tzinfo=UTC), "0.75", 30, "mobile", 2, None, None),  # 23:59:59 MSK
    call(
        datetime(2024, 2, 29, 20, 59, 59, tzinfo=UTC), "99.00", 60, "mobile", 1, 10, 100
    ),  # February in Moscow
    call(datetime(2024, 3, 31, 21, 0, tzinfo=UTC), "99.00", 60, "mobile", 1, 10, 100),  # April in Moscow
]


def test_totals_by_every_level_for_the_moscow_month() -> None:
    statement = monthly_statement(RECORDS, year=2024, month=3, currency="RUB", time_zone="Europe/Moscow")
    assert statement.total == Totals(calls=4, billable_seconds=990, cost=D("14.25"))
    assert statement.by_office == {
        1: Totals(calls=3, billable_seconds=960, cost=D("13.50")),
        2: Totals(calls=1, billable_seconds=30, cost=D("0.75")),
    }
    assert statement.by_department == {
        10: Totals(calls=2, billable_seconds=660, cost=D("13.50")),
        11: Totals(calls=1, billable_seconds=300, cost=D("0.00")),
        None: Totals(calls=1, billable_seconds=30, cost=D("0.75")),
    }
    assert list(statement.by_employee) == [100, 101, None]
    assert statement.by_employee[100] == Totals(calls=2, billable_seconds=360, cost=D("1.50"))
    assert statement.by_destination_class == {
        "internal": Totals(calls=1, billable_seconds=300, cost=D("0.00")),
        "international": Totals(calls=1, billable_seconds=600, cost=D("12.00")),
        "mobile": Totals(calls=2, billable_seconds=90, cost=D("2.25")),
    }
    assert (statement.currency, statement.start, statement.end) == (
        "RUB",
        datetime(2024, 2, 29, 21, tzinfo=UTC),
        datetime(2024, 3, 31, 21, tzinfo=UTC),
    )


def test_the_same_calls_in_utc_months() -> None:
    statement = monthly_statement(RECORDS, year=2024, month=3, currency="RUB")
    # in UTC the 29 February calls are February's, the 31 March 21:00 one is March's
    assert statement.total == Totals(calls=4, billable_seconds=990, cost=D("111.75"))


def test_mappings_with_epoch_seconds_are_accepted() -> None:
    rows = [
        {
            "started_at": datetime(2024, 3, 5, tzinfo=UTC).timestamp(),
            "cost": D("2.00"),
            "billable_seconds": 120,
            "destination_class": "local",
            "employee_id": 7,
        },
        {
            "started_at": datetime(2024, 3, 6, tzinfo=UTC),
            "cost": D("1.00"),
            "billable_seconds": 60,
            "destination_class": "local",
        },
    ]
    statement = monthly_statement(rows, year=2024, month=3, currency="RUB")
    assert statement.by_employee == {
        7: Totals(calls=1, billable_seconds=120, cost=D("2.00")),
        None: Totals(calls=1, billable_seconds=60, cost=D("1.00")),
    }
    assert statement.by_office == {None: Totals(calls=2, billable_seconds=180, cost=D("3.00"))}


def test_empty_month() -> None:
    statement = monthly_statement([], year=2024, month=3, currency="RUB")
    assert (statement.total, statement.by_office, statement.by_destination_class) == (Totals(), {}, {})


def test_float_costs_and_naive_times_refused() -> None:
    when = datetime(2024, 3, 5, tzinfo=UTC)
    with pytest.raises(TypeError):
        monthly_statement(
            [{"started_at": when, "cost": 1.5, "billable_seconds": 60, "destination_class": "local"}],
            year=2024,
            month=3,
            currency="RUB",
        )
    with pytest.raises(ValueError, match="naive"):
        monthly_statement(
            [call(datetime(2024, 3, 5), "1.00", 60, "local", 1, 1, 1)], year=2024, month=3, currency="RUB"
        )


@pytest.mark.parametrize(
    ("year", "month", "zone", "start", "end"),
    [
        (2024, 12, "UTC", datetime(2024, 12, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)),
        (
            2024,
            3,
            "Europe/Moscow",
            datetime(2024, 2, 29, 21, tzinfo=UTC),
            datetime(2024, 3, 31, 21, tzinfo=UTC),
        ),
        # a zone with DST: Berlin is UTC+1 on 1 March and UTC+2 on 1 April
        (
            2024,
            3,
            "Europe/Berlin",
            datetime(2024, 2, 29, 23, tzinfo=UTC),
            datetime(2024, 3, 31, 22, tzinfo=UTC),
        ),
    ],
)
def test_month_bounds(year: int, month: int, zone: str, start: datetime, end: datetime) -> None:
    got_start, got_end = month_bounds(year, month, zone)
    assert (got_start, got_end) == (start, end)
    assert got_start.tzinfo == ZoneInfo(zone)
