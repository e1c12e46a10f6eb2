"""Monthly statements: rated calls summed by office, department, employee and destination class.

How it works: :func:`month_bounds` gives the month as two aware instants in the tenant's zone (a call at
23:30 on 31 March in Moscow belongs to March even though it is March 31 20:30 UTC, and a call at 02:00
on 1 April Moscow time to April). :func:`monthly_statement` keeps the calls that started in
``[start, end)`` and adds each to the total, to its office, department, employee and destination class,
in one pass. A call without an office (or department, employee) is counted under ``None``, so the
per-level sums always equal the total. Input rows are :class:`ChargedCall` values or plain mappings with
the same keys (rows straight from a query), so the REST and CSV reports can feed either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from .tariffs import as_datetime

OwnerId = int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ChargedCall:
    """One rated call as statements need it."""

    started_at: datetime
    cost: Decimal
    billable_seconds: int
    destination_class: str
    office_id: int | None = None
    department_id: int | None = None
    employee_id: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Totals:
    calls: int = 0
    billable_seconds: int = 0
    cost: Decimal = Decimal(0)


@dataclass(frozen=True, kw_only=True)
class Statement:
    currency: str
    start: datetime  # first instant of the month in the tenant's zone
    end: datetime  # first instant of the next month (exclusive)
    total: Totals
    by_office: Mapping[OwnerId, Totals] = field(default_factory=dict)
    by_department: Mapping[OwnerId, Totals] = field(default_factory=dict)
    by_employee: Mapping[OwnerId, Totals] = field(default_factory=dict)
    by_destination_class: Mapping[str, Totals] = field(default_factory=dict)


def month_bounds(year: int, month: int, time_zone: str = "UTC") -> tuple[datetime, datetime]:
    """Local midnight of the 1st of ``month`` and of the month after, as aware datetimes."""
    zone = ZoneInfo(time_zone)
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return start, end


class _Sum:
    """A mutable accumulator; frozen into Totals at the end (one object per key, not one per call)."""

    __slots__ = ("calls", "seconds", "cost")

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0
        self.cost = Decimal(0)

    def add(self, seconds: int, cost: Decimal) -> None:
        self.calls += 1
        self.seconds += seconds
        self.cost += cost

    def freeze(self) -> Totals:
        return Totals(calls=self.calls, billable_seconds=self.seconds, cost=self.cost)


def _sorted(sums: dict[Any, _Sum]) -> dict[Any, Totals]:
    # ids ascending, None (calls without that level) last: stable output for reports and tests
    keys = sorted(sums, key=lambda key: (key is None, key if key is not None else 0))
    return {key: sums[key].freeze() for key in keys}


def _charged(record: ChargedCall | Mapping[str, Any]) -> ChargedCall:
    if isinstance(record, ChargedCall):
        return record
    return ChargedCall(
        started_at=record["started_at"], cost=record["cost"], billable_seconds=record["billable_seconds"],
        destination_class=str(record["destination_class"]), office_id=record.get("office_id"),
        department_id=record.get("department_id"), employee_id=record.get("employee_id"),
    )


def monthly_statement(
    records: Iterable[ChargedCall | Mapping[str, Any]],
    *,
    year: int,
    month: int,
    currency: str,
    time_zone: str = "UTC",
) -> Statement:
    """Sum the calls of ``records`` that started in the month (in ``time_zone``); others are ignored.

    Costs must be Decimal (a float cost raises TypeError rather than summing binary fractions).
    """
    start, end = month_bounds(year, month, time_zone)
    total = _Sum()
    offices: dict[OwnerId, _Sum] = {}
    departments: dict[OwnerId, _Sum] = {}
    employees: dict[OwnerId, _Sum] = {}
    classes: dict[str, _Sum] = {}
    for record in records:
        call = _charged(record)
        if not isinstance(call.cost, Decimal):
            raise TypeError(f"cost {call.cost!r} is not a Decimal")
        if not start <= as_datetime(call.started_at) < end:
            continue
        seconds, cost = call.billable_seconds, call.cost
        total.add(seconds, cost)
        for sums, key in (
            (offices, call.office_id), (departments, call.department_id), (employees, call.employee_id),
        ):
            entry = sums.get(key)
            if entry is None:
                entry = sums[key] = _Sum()
            entry.add(seconds, cost)
        entry = classes.get(call.destination_class)
        if entry is None:
            entry = classes[call.destination_class] = _Sum()
        entry.add(seconds, cost)
    return Statement(
        currency=currency, start=start, end=end, total=total.freeze(), by_office=_sorted(offices),
        by_department=_sorted(departments), by_employee=_sorted(employees),
        by_destination_class={key: classes[key].freeze() for key in sorted(classes)},
    )
