"""A phone number's destination: what each ``destination_kind`` accepts as its JSON payload.

Pure checks (no database): :func:`clean_destination` validates a payload and returns it normalized
(external numbers in E.164) together with the extension numbers and ring groups it names, each with its
place in the payload. Every kind but ``schedule`` is a member of the typed union
:data:`zvonok.destination.Destination` (which holds the rules); :func:`placed` lists the typed
destinations of a clean payload (a schedule's branches) for :func:`zvonok.destination.references.check_references`.

Payloads by kind::

    extension   {"number": "101"}                     voicemail  {"number": "101"}
    ring        {"numbers": ["101", "102"], "timeout": 30}   (1-20 extensions; timeout optional, seconds)
    queue       {"number": "500"} or {"queue": "sales"}  external   {"number": "+74951234567"}
    access      {} or {"skip_pin_for_known_callers": true}
    conference  {"number": "800"}                     (a conference room's number: zvonok.conference)
    ivr         {"menu": 3}                           (an IVR menu's id: zvonok.ivr)
    ring_group  {"number": "600"}                     (a ring group's number: zvonok.ringgroup)
    schedule    {"timezone": "Europe/Moscow", "rules": [{"days": [0, 1, 2, 3, 4], "from": "09:00",
                 "to": "18:00", "destination": {"kind": "ring", "numbers": ["101", "102"]}}],
                 "holidays": ["2025-01-01"], "holiday_destination": {...}, "default": {...}}

A schedule's branches are ``{"kind": ..., <that kind's payload>}`` and may not be schedules themselves.
Rule times follow :mod:`zvonok.pstn.schedule`: a rule whose ``to`` is 00:00 (or 24:00) or earlier than
its ``from`` runs past midnight; 00:00-00:00 is the whole day.
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from zvonok.destination.union import (
    DID_KINDS,
    Destination,
    RingGroup,
    extension_numbers,
    parse,
    parse_payload,
)
from zvonok.destination.union import to_e164 as to_e164

_GROUP = "ring_group:"
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


@dataclass(frozen=True)
class CleanDestination:
    payload: dict[str, Any]
    extensions: tuple[tuple[str, str], ...]  # (where in the payload, extension number)
    ring_groups: tuple[tuple[str, str], ...] = ()  # (where in the payload, ring group number)


def clean_destination(kind: str, payload: Any, *, path: str = "destination") -> CleanDestination:
    """Check ``payload`` for ``kind``; ValueError naming the place (``destination.rules[0].from``)."""
    refs: list[tuple[str, str]] = []
    clean = _clean(kind, payload, path, refs, nested=False)
    return _split(clean, refs)


def _split(payload: dict[str, Any], refs: list[tuple[str, str]]) -> CleanDestination:
    # ring groups are marked by _clean with a "ring_group:" prefix: one list of references, two kinds
    groups = tuple((where, n.removeprefix(_GROUP)) for where, n in refs if n.startswith(_GROUP))
    return CleanDestination(payload, tuple(r for r in refs if not r[1].startswith(_GROUP)), groups)




def ring_group_refs(kind: str, payload: Any) -> set[str]:
    """The ring group numbers a stored destination names (best effort, as :func:`extension_refs`)."""
    try:
        return {number for _, number in clean_destination(kind, payload).ring_groups}
    except ValueError:
        return set()


def extension_refs(kind: str, payload: Any) -> set[str]:
    """The extension numbers a stored destination names (best effort: stored payloads were checked)."""
    try:
        return {number for _, number in clean_destination(kind, payload).extensions}
    except ValueError:
        return set()


def placed(kind: str, payload: dict[str, Any], path: str = "destination") -> list[tuple[str, Destination]]:
    """The typed destinations of a *clean* payload, each with its place (a schedule: each branch)."""
    if kind != "schedule":
        return [(path, parse_payload(kind, payload, path=path))]
    branches = [(f"{path}.rules[{i}].destination", rule["destination"]) for i, rule in enumerate(payload["rules"])]
    branches += [(f"{path}.{name}", payload[name]) for name in ("holiday_destination", "default") if name in payload]
    return [(where, parse(branch, path=where)) for where, branch in branches]


def menu_refs(kind: str, payload: dict[str, Any], path: str = "destination") -> list[tuple[str, int]]:
    """The IVR menus a *clean* payload names, each with its place (the service checks they exist)."""
    if kind == "ivr":
        return [(f"{path}.menu", payload["menu"])]
    if kind != "schedule":
        return []
    branches = [(f"{path}.rules[{i}].destination", rule["destination"]) for i, rule in enumerate(payload["rules"])]
    branches += [(f"{path}.{name}", payload[name]) for name in ("holiday_destination", "default") if name in payload]
    return [(f"{where}.menu", branch["menu"]) for where, branch in branches if branch["kind"] == "ivr"]


def _keys(payload: Any, path: str, required: AbstractSet[str], optional: AbstractSet[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: must be an object")
    unknown = sorted(set(payload) - required - optional)
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}")
    missing = sorted(required - set(payload))
    if missing:
        raise ValueError(f"{path}.{missing[0]}: required")
    return payload


def _clean(kind: str, payload: Any, path: str, refs: list[tuple[str, str]], *, nested: bool) -> dict[str, Any]:
    if kind == "schedule":
        if nested:
            raise ValueError(f"{path}: a schedule may not contain another schedule")
        return _schedule(payload, path, refs)
    dest = parse_payload(kind, payload, kinds=(*DID_KINDS, "schedule"), path=path)
    refs.extend((f"{path}.{where}", number) for where, number in extension_numbers(dest))
    if isinstance(dest, RingGroup):
        refs.append((f"{path}.number", _GROUP + dest.number))
    return dest.payload()


def _nested(value: Any, path: str, refs: list[tuple[str, str]]) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
        raise ValueError(f"{path}: an object with a \"kind\" and that kind's fields")
    payload = {k: v for k, v in value.items() if k != "kind"}
    return {"kind": value["kind"], **_clean(value["kind"], payload, path, refs, nested=True)}


def _schedule(payload: Any, path: str, refs: list[tuple[str, str]]) -> dict[str, Any]:
    _keys(payload, path, {"default"}, {"timezone", "rules", "holidays", "holiday_destination"})
    out: dict[str, Any] = {}
    if "timezone" in payload:
        zone = payload["timezone"]
        try:
            ZoneInfo(zone if isinstance(zone, str) else "")
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{path}.timezone: unknown IANA time zone {zone!r}") from None
        out["timezone"] = zone
    rules = payload.get("rules", [])
    if not isinstance(rules, list) or len(rules) > 50:
        raise ValueError(f"{path}.rules: a list of at most 50 rules")
    out["rules"] = []
    for i, rule in enumerate(rules):
        where = f"{path}.rules[{i}]"
        _keys(rule, where, {"days", "from", "to", "destination"})
        days = rule["days"]
        if (not isinstance(days, list) or not days or any(type(d) is not int or not 0 <= d <= 6 for d in days)
                or len(set(days)) != len(days)):
            raise ValueError(f"{where}.days: a list of different weekdays 0-6 (0 is Monday)")
        start, end = rule["from"], rule["to"]
        if not isinstance(start, str) or not _HHMM.match(start):
            raise ValueError(f"{where}.from: a time HH:MM")
        if not isinstance(end, str) or not (_HHMM.match(end) or end == "24:00"):
            raise ValueError(f"{where}.to: a time HH:MM (24:00 or 00:00 for the end of the day)")
        if end == start and start != "00:00":
            raise ValueError(f"{where}: 'from' and 'to' are both {start} (00:00-00:00 means the whole day)")
        out["rules"].append({"days": sorted(days), "from": start, "to": end,
                             "destination": _nested(rule["destination"], f"{where}.destination", refs)})
    holidays = payload.get("holidays", [])
    if not isinstance(holidays, list) or len(holidays) > 366:
        raise ValueError(f"{path}.holidays: a list of at most 366 dates")
    for i, day in enumerate(holidays):
        try:
            date.fromisoformat(day if isinstance(day, str) and len(day) == 10 else "")
        except ValueError:
            raise ValueError(f"{path}.holidays[{i}]: a date YYYY-MM-DD") from None
    if len(set(holidays)) != len(holidays):
        raise ValueError(f"{path}.holidays: a date is listed twice")
    out["holidays"] = list(holidays)
    if "holiday_destination" in payload:
        out["holiday_destination"] = _nested(payload["holiday_destination"], f"{path}.holiday_destination", refs)
    out["default"] = _nested(payload["default"], f"{path}.default", refs)
    return out
