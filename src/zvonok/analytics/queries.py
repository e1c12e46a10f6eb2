"""Ready queries over a tenant's analytics file, for the console's Analytics page: calls per day by
direction, won deals per pipeline stage and month, payments per month. Each is one SQL statement over the
star (what a BI tool would run), read-only, in a worker thread; the answers are kept per file (inode, mtime,
size), so a page shown again opens no DuckDB file until the next export replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb

from .export import file_of, read_while_same

DAYS = 31  # calls per day: the last days up to the last day with a call
MONTHS = 12  # won deals and payments: the last months up to the last one with any

CALLS_PER_DAY = f"""
SELECT d.date,
       count(*) FILTER (WHERE f.direction = 'inbound') AS inbound,
       count(*) FILTER (WHERE f.direction = 'outbound') AS outbound,
       count(*) FILTER (WHERE f.direction = 'internal') AS internal,
       count(*) AS calls
FROM fact_calls f JOIN dim_date d ON d.date_key = f.date_key
WHERE d.date > (SELECT max(d2.date) FROM fact_calls f2 JOIN dim_date d2 ON d2.date_key = f2.date_key)
               - INTERVAL {DAYS} DAY
GROUP BY d.date ORDER BY d.date DESC"""

WON_PER_MONTH = f"""
WITH won AS (
    SELECT make_date(d.year, d.month, 1) AS month, s.pipeline, s.stage, s.position, f.amount, f.currency
    FROM fact_deals f JOIN dim_stage s ON s.stage_key = f.stage_key AND s.kind = 'won'
    JOIN dim_date d ON d.date_key = f.closed_date_key)
SELECT month, pipeline, stage, count(*) AS deals, sum(amount) AS amount, min(currency) AS currency
FROM won WHERE month > (SELECT max(month) FROM won) - INTERVAL {MONTHS} MONTH
GROUP BY month, pipeline, stage, position ORDER BY month DESC, pipeline, position"""

PAYMENTS_PER_MONTH = f"""
WITH paid AS (
    SELECT make_date(d.year, d.month, 1) AS month, p.amount, p.currency
    FROM fact_payments p JOIN dim_date d ON d.date_key = p.date_key)
SELECT month, currency, count(*) AS payments, sum(amount) AS amount
FROM paid WHERE month > (SELECT max(month) FROM paid) - INTERVAL {MONTHS} MONTH
GROUP BY month, currency ORDER BY month DESC, currency"""


@dataclass(frozen=True, kw_only=True)
class CallsDay:
    day: date
    inbound: int
    outbound: int
    internal: int
    calls: int


@dataclass(frozen=True, kw_only=True)
class WonDeals:
    month: date  # its first day
    pipeline: str
    stage: str
    deals: int
    amount: Decimal | None
    currency: str | None


@dataclass(frozen=True, kw_only=True)
class PaymentsMonth:
    month: date
    currency: str | None
    payments: int
    amount: Decimal


@dataclass(frozen=True, kw_only=True)
class Overview:
    calls_per_day: list[CallsDay]
    won_per_month: list[WonDeals]
    payments_per_month: list[PaymentsMonth]


def _run(path: Path) -> Overview | None:
    try:
        con = duckdb.connect(str(path), read_only=True)
    except (duckdb.Error, OSError):
        return None
    try:
        calls = [CallsDay(day=r[0], inbound=r[1], outbound=r[2], internal=r[3], calls=r[4])
                 for r in con.execute(CALLS_PER_DAY).fetchall()]
        won = [WonDeals(month=r[0], pipeline=r[1], stage=r[2], deals=r[3], amount=r[4], currency=r[5])
               for r in con.execute(WON_PER_MONTH).fetchall()]
        payments = [PaymentsMonth(month=r[0], currency=r[1], payments=r[2], amount=r[3])
                    for r in con.execute(PAYMENTS_PER_MONTH).fetchall()]
    except duckdb.Error:
        return None  # a file of another schema
    finally:
        con.close()
    return Overview(calls_per_day=calls, won_per_month=won, payments_per_month=payments)


_cache: dict[Path, tuple[tuple[int, int, int], Overview | None]] = {}


async def overview(directory: Path, tenant_id: int) -> Overview | None:
    """The ready queries over the tenant's file (None: no file yet, or unreadable)."""
    answer: Overview | None = await read_while_same(_cache, file_of(directory, tenant_id), _run)
    return answer
