"""Money queries over ``cdrs``: cost reports, the monthly statement, and this month's spend per level.

How it works: every figure is one SQL aggregate (GROUP BY), never a Python loop over calls, and it
gives the same answer on SQLite and PostgreSQL:

- costs are summed as whole units of 1/10000 (``cdrs.cost`` has 4 decimals). SQLite keeps NUMERIC
  values as binary floating point, and a SUM of floats drifts (0.1 + 0.2); rounding each cost to its
  units *before* summing makes every sum an exact integer on both backends;
- "per day" means per day in the tenant's time zone. SQLite has no time zone functions, so the day of
  a call is a CASE over the local midnights of the range, computed here with zoneinfo (DST included);
- a report covers the *charged* calls: those with billed seconds or a cost. Unanswered and unrated calls
  are not in it; costs are attributed to the caller's office, department and employee (the columns the
  CDR writer fills for the placing side), as spending limits are.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, ColumnElement, case, cast, func, literal, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.billing.statement import month_bounds
from zvonok.cdr.models import Cdr
from zvonok.org.errors import NotFound, ValidationError
from zvonok.org.models import Department, Employee, Office, Tenant
from zvonok.pstn import schemas as s
from zvonok.pstn.models import BillingAccount, PhoneNumber, Tariff, TariffRate

GROUPS = ("office", "department", "employee", "destination_class", "day")
MAX_DAYS = 400  # a per-day CASE with more branches than this is a mistake, not a report
_UNITS = 10_000
_CENT = Decimal("0.01")
_NONE_NAMES = {"office": "(no office)", "department": "(no department)", "employee": "(no employee)",
               "destination_class": "(unclassified)"}
_ENTITIES: dict[str, tuple[Any, Any, Any]] = {
    "office": (Cdr.caller_office_id, Office, Office.name),
    "department": (Cdr.caller_department_id, Department, Department.name),
    "employee": (Cdr.caller_employee_id, Employee, Employee.full_name),
}


def _units() -> ColumnElement[int]:
    # inline 10000: a bound parameter would be typed NUMERIC by the column and sent as one by asyncpg
    return cast(func.round(Cdr.cost * literal_column(str(_UNITS))), BigInteger)


def money(units: int) -> Decimal:
    """A sum of units as an amount: two decimals when that is exact, else all four."""
    amount = Decimal(units).scaleb(-4)
    cents = amount.quantize(_CENT)
    return cents if cents == amount else amount


def minutes(seconds: int) -> Decimal:
    return (Decimal(seconds) / 60).quantize(_CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class CostLine:
    key: int | str | None
    name: str
    calls: int
    seconds: int
    units: int

    def out(self) -> s.CostRow:
        return s.CostRow(key=self.key, name=self.name, calls=self.calls, minutes=minutes(self.seconds),
                         cost=money(self.units))


def _charged(tenant_id: int, start: datetime, end: datetime) -> list[ColumnElement[bool]]:
    return [Cdr.tenant_id == tenant_id, Cdr.started_at >= start, Cdr.started_at < end,
            or_(Cdr.billed_seconds > 0, Cdr.cost != 0)]


def _sort_key(line: CostLine) -> tuple[bool, str, int]:
    if isinstance(line.key, int):
        return (False, "", line.key)
    return (line.key is None, line.key or "", 0)


async def cost_lines(
    session: AsyncSession, tenant_id: int, *, start: datetime, end: datetime, group_by: str, time_zone: str
) -> tuple[list[CostLine], CostLine]:
    """One line per group (ids ascending, days in order, "none" last) and the totals line."""
    if group_by not in GROUPS:
        raise ValidationError(f"group_by: one of {', '.join(GROUPS)}", field="group_by")
    if end <= start:
        raise ValidationError("to: must be after from", field="to")
    aggregates = (func.count(), func.coalesce(func.sum(Cdr.billed_seconds), 0),
                  func.coalesce(func.sum(_units()), 0))
    where = _charged(tenant_id, start, end)
    lines: list[CostLine] = []
    if group_by == "day":
        days, key = _day_index(start, end, time_zone)
        inner = select(key.label("day"), Cdr.billed_seconds, _units().label("units")).where(*where).subquery()
        stmt = select(inner.c.day, func.count(), func.coalesce(func.sum(inner.c.billed_seconds), 0),
                      func.coalesce(func.sum(inner.c.units), 0)).group_by(inner.c.day)
        for index, calls, seconds, units in (await session.execute(stmt)).all():
            day = days[int(index)].isoformat()
            lines.append(CostLine(day, day, int(calls), int(seconds), int(units)))
    elif group_by == "destination_class":
        stmt2 = select(Cdr.destination_class, *aggregates).where(*where).group_by(Cdr.destination_class)
        for klass, calls, seconds, units in (await session.execute(stmt2)).all():
            lines.append(CostLine(klass, klass or _NONE_NAMES[group_by], int(calls), int(seconds), int(units)))
    else:
        column, model, name = _ENTITIES[group_by]
        stmt3 = (select(column, name, *aggregates).select_from(Cdr).outerjoin(model, model.id == column)
                 .where(*where).group_by(column, name))
        for ref, label, calls, seconds, units in (await session.execute(stmt3)).all():
            shown = label if label is not None else (_NONE_NAMES[group_by] if ref is None else f"#{ref}")
            lines.append(CostLine(ref, shown, int(calls), int(seconds), int(units)))
    lines.sort(key=_sort_key)
    total = CostLine(None, "Total", sum(x.calls for x in lines), sum(x.seconds for x in lines),
                     sum(x.units for x in lines))
    return lines, total


def _day_index(start: datetime, end: datetime, time_zone: str) -> tuple[list[Any], ColumnElement[int]]:
    """The local dates of [start, end) and a SQL expression giving each call's index among them."""
    zone = ZoneInfo(time_zone)
    first = start.astimezone(zone).date()
    last = (end - timedelta(microseconds=1)).astimezone(zone).date()
    count = (last - first).days + 1
    if count > MAX_DAYS:
        raise ValidationError(f"group_by=day: at most {MAX_DAYS} days at a time", field="group_by")
    days = [first + timedelta(days=i) for i in range(count)]
    midnights = [datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone) for day in days[:-1]]
    if not midnights:
        return days, literal(0)
    return days, case(*[(Cdr.started_at < edge, i) for i, edge in enumerate(midnights)], else_=count - 1)


def costs_csv(lines: list[CostLine], total: CostLine) -> str:
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["key", "name", "calls", "minutes", "cost"])
    for line in [*lines, total]:
        row = line.out()
        out.writerow(["" if row.key is None else row.key, csv_cell(row.name), row.calls, row.minutes, row.cost])
    return buf.getvalue()


_PLAIN_NUMBER = re.compile(r"^\+?[0-9]+$")


def csv_cell(value: str) -> str:
    """Defuse a name a spreadsheet would run as a formula (``=HYPERLINK(...)``); numbers stay."""
    if value and value[0] in "=+-@\t\r" and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value


async def month_spend(
    session: AsyncSession,
    tenant_id: int,
    *,
    start: datetime,
    end: datetime,
    employee_id: int | None = None,
    department_id: int | None = None,
    office_id: int | None = None,
) -> dict[tuple[str, int | None], Decimal]:
    """What was spent in [start, end) by the tenant and by each given level, in one query; keys are
    ``(level, ref_id)`` as in :func:`zvonok.pstn.routing.budgets` (``("tenant", None)`` for the tenant)."""
    units = _units()
    columns: list[tuple[str, int | None, ColumnElement[Any]]] = [("tenant", None, units)]
    for level, ref, column in (("employee", employee_id, Cdr.caller_employee_id),
                               ("department", department_id, Cdr.caller_department_id),
                               ("office", office_id, Cdr.caller_office_id)):
        if ref is not None:
            columns.append((level, ref, case((column == ref, units), else_=0)))
    stmt = select(*(func.coalesce(func.sum(expr), 0) for _, _, expr in columns)).where(
        Cdr.tenant_id == tenant_id, Cdr.started_at >= start, Cdr.started_at < end)
    sums = (await session.execute(stmt)).one()
    return {(level, ref): money(int(total)) for (level, ref, _), total in zip(columns, sums, strict=True)}


async def rented_numbers(session: AsyncSession, tenant_id: int) -> s.NumbersRented:
    """The phone numbers assigned to the tenant now, and the sum of their monthly fees."""
    fee_units = cast(func.round(PhoneNumber.monthly_fee * literal_column("100")), BigInteger)
    stmt = select(func.count(), func.coalesce(func.sum(fee_units), 0)).where(PhoneNumber.tenant_id == tenant_id)
    count, cents = (await session.execute(stmt)).one()
    return s.NumbersRented(count=int(count), monthly_fees=Decimal(int(cents)).scaleb(-2))


async def tenant_currency(session: AsyncSession, tenant: Tenant) -> str:
    """The currency calls are charged in: the plan's, else the tenant's own."""
    stmt = (select(Tariff.currency).select_from(BillingAccount).join(Tariff, Tariff.id == BillingAccount.tariff_id)
            .where(BillingAccount.tenant_id == tenant.id))
    return (await session.execute(stmt)).scalar_one_or_none() or tenant.currency


async def statement(session: AsyncSession, tenant_id: int, year: int, month: int) -> s.StatementOut:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"tenant {tenant_id} not found")
    start, end = month_bounds(year, month, tenant.timezone)
    lines, total = await cost_lines(session, tenant_id, start=start, end=end, group_by="destination_class",
                                    time_zone=tenant.timezone)
    numbers = await rented_numbers(session, tenant_id)
    cost = money(total.units)
    return s.StatementOut(
        tenant_id=tenant_id, year=year, month=month, time_zone=tenant.timezone,
        currency=await tenant_currency(session, tenant), start=start, end=end, calls=total.calls,
        billed_seconds=total.seconds, minutes=minutes(total.seconds), cost=cost,
        by_class=[line.out() for line in lines], numbers=numbers, total=cost + numbers.monthly_fees,
    )


def _amount(value: Decimal | str) -> str:
    return format(Decimal(value).normalize(), "f")


def rates_csv(rows: Sequence[TariffRate]) -> str:
    """A tariff's rates in the CSV format :func:`zvonok.billing.rates_csv.parse_rates_csv` reads back."""
    periods = sorted({name for r in rows for name in (r.period_prices or {})})
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["prefix", "destination", "rate", "connection_fee", "increment", "minimum",
                  *(f"rate_{p}" for p in periods)])
    for r in rows:
        prices = r.period_prices or {}
        out.writerow([r.prefix, csv_cell(r.destination), _amount(r.price), _amount(r.connection_fee),
                      r.increment, r.minimum, *(_amount(prices[p]) if p in prices else "" for p in periods)])
    return buf.getvalue()
