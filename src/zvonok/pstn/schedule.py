"""Where a number's calls go at a given moment: its destination, or the branch of its time schedule.

A ``schedule`` destination holds rules tried in order — each ``{"days": [0..6] (0 = Monday), "from": "09:00",
"to": "18:00", "destination": {"kind": ..., ...}}`` in the office's (else the tenant's) time zone —
``holidays`` (ISO dates) with an optional ``holiday_destination``, and a ``default`` for every other
time (nights, weekends). A rule whose ``to`` is "00:00" or earlier than ``from`` runs past midnight.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from .models import DestinationKind

NOWHERE: tuple[str, Mapping[str, Any]] = ("none", {})


def _hhmm(text: str) -> time:
    hours, _, minutes = str(text).partition(":")
    return time(int(hours) % 24, int(minutes or 0))


def _covers(rule: Mapping[str, Any], local: datetime) -> bool:
    days = rule.get("days", list(range(7)))
    start, end = _hhmm(rule.get("from", "00:00")), _hhmm(rule.get("to", "00:00"))
    now = local.time()
    if end <= start:  # past midnight (or the whole day for 00:00-00:00)
        if start == end == time(0):
            return local.weekday() in days
        # the early-morning half belongs to the previous day's rule
        return (local.weekday() in days and now >= start) or ((local.weekday() - 1) % 7 in days and now < end)
    return local.weekday() in days and start <= now < end


def resolve(kind: str, destination: Mapping[str, Any], at: float, time_zone: str) -> tuple[str, Mapping[str, Any]]:
    """The plain destination (kind, payload) of a number at epoch ``at``: a schedule resolved to the
    branch in force, anything else as it is. A schedule never nests another (the API refuses it)."""
    if kind != DestinationKind.SCHEDULE:
        return kind, destination
    zone_name = destination.get("timezone") or time_zone
    try:
        zone = ZoneInfo(zone_name)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    local = datetime.fromtimestamp(at, UTC).astimezone(zone)
    chosen: Mapping[str, Any] | None = None
    if local.date().isoformat() in set(destination.get("holidays", [])):
        chosen = destination.get("holiday_destination") or destination.get("default")
    else:
        for rule in destination.get("rules", []):
            if _covers(rule, local):
                chosen = rule.get("destination")
                break
        else:
            chosen = destination.get("default")
    if not chosen or chosen.get("kind") in (None, DestinationKind.SCHEDULE):
        return NOWHERE
    payload = {k: v for k, v in chosen.items() if k != "kind"}
    return str(chosen["kind"]), payload
