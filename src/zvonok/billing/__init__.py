"""Billing: tariffs, rating, rate-deck import, spending limits, statements (least-cost routing is
the router's: :meth:`zvonok.pstn.routing.PstnSnapshot.outbound_trunks` orders trunks by priority, then buy price).

The modules here are pure (no database, no clock, no I/O): times come in as aware datetimes or epoch
seconds, files as bytes, money as :class:`decimal.Decimal`. The billing service (tables, REST, CLI)
builds on them.
"""

from .limits import Authorization, Budget, Crossing, Level, Threshold, authorize, crossings, max_duration
from .rates_csv import RateImport, RowError, parse_rates_csv
from .rating import (
    Margin,
    NoRateError,
    RatedCall,
    billable_seconds,
    call_cost,
    margin,
    rate_call,
    round_money,
)
from .statement import ChargedCall, Statement, Totals, month_bounds, monthly_statement
from .tariffs import FREE_CLASSES, Increment, Period, Rate, Tariff, peak_offpeak

__all__ = [
    "FREE_CLASSES", "Authorization", "Budget", "ChargedCall", "Crossing", "Increment",
    "Level", "Margin", "NoRateError", "Period", "Rate", "RateImport", "RatedCall", "RowError",
    "Statement", "Tariff", "Threshold", "Totals", "authorize", "billable_seconds", "call_cost",
    "crossings", "margin", "max_duration", "month_bounds", "monthly_statement",
    "parse_rates_csv", "peak_offpeak", "rate_call", "round_money",
]
