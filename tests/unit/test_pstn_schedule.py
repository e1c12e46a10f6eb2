"""Time schedules of numbers: business hours, weekends, holidays, nights across midnight, time zones."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from zvonok.pstn.models import DestinationKind
from zvonok.pstn.schedule import NOWHERE, resolve

MSK = "Europe/Moscow"  # UTC+3 all year
VVO = "Asia/Vladivostok"  # UTC+10 all year

OFFICE = {"kind": "extension", "number": "101"}
NIGHT = {"kind": "voicemail", "number": "101"}
HOLIDAY = {"kind": "queue", "queue": "holiday"}
DEFAULT = {"kind": "external", "number": "+74951234567"}

EXPECT_OFFICE = ("extension", {"number": "101"})
EXPECT_NIGHT = ("voicemail", {"number": "101"})
EXPECT_HOLIDAY = ("queue", {"queue": "holiday"})
EXPECT_DEFAULT = ("external", {"number": "+74951234567"})

BUSINESS = {
    "rules": [{"days": [0, 1, 2, 3, 4], "from": "09:00", "to": "18:00", "destination": OFFICE}],
    "holidays": ["2024-03-08", "2024-05-01"],
    "holiday_destination": HOLIDAY,
    "default": DEFAULT,
}


def local(day: int, hour: int, minute: int = 0, zone: str = MSK, month: int = 3) -> float:
    """Epoch seconds of 2024-<month>-<day> hh:mm in ``zone`` (2024-03-04 is a Monday)."""
    return datetime(2024, month, day, hour, minute, tzinfo=ZoneInfo(zone)).timestamp()


def schedule(destination: Mapping[str, Any], at: float, zone: str = MSK) -> tuple[str, Mapping[str, Any]]:
    return resolve(DestinationKind.SCHEDULE, destination, at, zone)


@pytest.mark.parametrize(("kind", "payload"), [
    ("extension", {"number": "101"}),
    ("ring", {"numbers": ["101", "102"]}),
    ("voicemail", {"number": "101"}),
    ("queue", {"queue": "sales"}),
    ("external", {"number": "+74951234567"}),
    ("access", {}),
])
def test_other_kinds_pass_through(kind: str, payload: Mapping[str, Any]) -> None:
    assert resolve(kind, payload, local(4, 3), MSK) == (kind, payload)


@pytest.mark.parametrize(("at", "expected"), [
    (local(4, 9, 0), EXPECT_OFFICE),  # Monday: "from" is inclusive
    (local(4, 8, 59), EXPECT_DEFAULT),
    (local(4, 12, 30), EXPECT_OFFICE),
    (local(4, 17, 59), EXPECT_OFFICE),
    (local(4, 18, 0), EXPECT_DEFAULT),  # "to" is exclusive
    (local(4, 23, 0), EXPECT_DEFAULT),
    (local(5, 0, 0), EXPECT_DEFAULT),
    (local(7, 10, 0), EXPECT_OFFICE),  # Thursday
    (local(9, 12, 0), EXPECT_DEFAULT),  # Saturday
    (local(10, 12, 0), EXPECT_DEFAULT),  # Sunday
    (local(11, 9, 0), EXPECT_OFFICE),  # Monday again
    (local(8, 12, 0), EXPECT_HOLIDAY),  # Friday, 8 March: a holiday in business hours
    (local(8, 0, 0), EXPECT_HOLIDAY),
    (local(8, 23, 59), EXPECT_HOLIDAY),
    (local(1, 12, 0, month=5), EXPECT_HOLIDAY),  # Wednesday, 1 May
    (local(2, 12, 0, month=5), EXPECT_OFFICE),
])
def test_business_hours_weekends_and_holidays(at: float, expected: tuple[str, Mapping[str, Any]]) -> None:
    assert schedule(BUSINESS, at) == expected


def test_holiday_without_its_own_destination_takes_the_default() -> None:
    plain = {k: v for k, v in BUSINESS.items() if k != "holiday_destination"}
    assert schedule(plain, local(8, 12, 0)) == EXPECT_DEFAULT
    assert schedule(plain, local(7, 12, 0)) == EXPECT_OFFICE


NIGHTS = {"rules": [{"days": [4], "from": "22:00", "to": "06:00", "destination": NIGHT},  # Friday night
                    {"days": [6], "from": "23:00", "to": "02:00", "destination": OFFICE}],  # Sunday night
          "default": DEFAULT}


@pytest.mark.parametrize(("at", "expected"), [
    (local(8, 21, 59), EXPECT_DEFAULT),  # Friday
    (local(8, 22, 0), EXPECT_NIGHT),
    (local(8, 23, 59), EXPECT_NIGHT),
    (local(9, 0, 0), EXPECT_NIGHT),  # Saturday's early morning belongs to Friday's rule
    (local(9, 5, 59), EXPECT_NIGHT),
    (local(9, 6, 0), EXPECT_DEFAULT),
    (local(9, 22, 30), EXPECT_DEFAULT),  # Saturday night: no rule
    (local(8, 3, 0), EXPECT_DEFAULT),  # Friday's early morning is Thursday's, which has no rule
    (local(10, 23, 0), EXPECT_OFFICE),  # Sunday
    (local(11, 1, 59), EXPECT_OFFICE),  # Monday's early morning: Sunday's rule (weekday 0 - 1 wraps to 6)
    (local(11, 2, 0), EXPECT_DEFAULT),
    (local(10, 1, 0), EXPECT_DEFAULT),  # Sunday's early morning is Saturday's
])
def test_rule_across_midnight(at: float, expected: tuple[str, Mapping[str, Any]]) -> None:
    assert schedule(NIGHTS, at) == expected


@pytest.mark.parametrize(("rule", "at", "covered"), [
    # "to" 00:00 means until midnight
    ({"days": [0], "from": "18:00", "to": "00:00"}, local(4, 17, 59), False),
    ({"days": [0], "from": "18:00", "to": "00:00"}, local(4, 18, 0), True),
    ({"days": [0], "from": "18:00", "to": "00:00"}, local(4, 23, 59), True),
    ({"days": [0], "from": "18:00", "to": "00:00"}, local(5, 0, 0), False),
    # 00:00-00:00 is the whole day, and so is a rule without times
    ({"days": [5], "from": "00:00", "to": "00:00"}, local(9, 0, 0), True),
    ({"days": [5], "from": "00:00", "to": "00:00"}, local(9, 23, 59), True),
    ({"days": [5], "from": "00:00", "to": "00:00"}, local(8, 23, 59), False),
    ({"days": [5], "from": "00:00", "to": "00:00"}, local(10, 0, 0), False),
    ({"days": [5]}, local(9, 13, 0), True),
    ({"days": [5]}, local(10, 13, 0), False),
    # "24:00" is midnight as well; no days means every day
    ({"from": "20:00", "to": "24:00"}, local(10, 21, 0), True),
    ({"from": "20:00", "to": "24:00"}, local(10, 19, 59), False),
    ({"from": "9", "to": "17:30"}, local(6, 17, 29), True),
    ({"from": "9", "to": "17:30"}, local(6, 17, 30), False),
])
def test_rule_times(rule: dict[str, Any], at: float, covered: bool) -> None:
    destination = {"rules": [{**rule, "destination": OFFICE}], "default": DEFAULT}
    assert schedule(destination, at) == (EXPECT_OFFICE if covered else EXPECT_DEFAULT)


def test_first_matching_rule_wins() -> None:
    overlapping = {"rules": [{"days": [0], "from": "12:00", "to": "13:00", "destination": NIGHT},
                             {"days": [0], "from": "09:00", "to": "18:00", "destination": OFFICE}],
                   "default": DEFAULT}
    assert [schedule(overlapping, local(4, h, 30)) for h in (11, 12, 13)] == [EXPECT_OFFICE, EXPECT_NIGHT,
                                                                            EXPECT_OFFICE]


# 09:30 UTC on a Monday: 12:30 in Moscow (open), 19:30 in Vladivostok (closed)
MONDAY_0930_UTC = datetime(2024, 3, 4, 9, 30, tzinfo=UTC).timestamp()
# 07:00 UTC: 10:00 in Moscow, 17:00 in Vladivostok (both open), 07:00 in UTC (closed)
MONDAY_0700_UTC = datetime(2024, 3, 4, 7, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("destination", "at", "zone", "expected"), [
    (BUSINESS, MONDAY_0930_UTC, MSK, EXPECT_OFFICE),
    (BUSINESS, MONDAY_0930_UTC, VVO, EXPECT_DEFAULT),
    (BUSINESS, MONDAY_0700_UTC, MSK, EXPECT_OFFICE),
    (BUSINESS, MONDAY_0700_UTC, VVO, EXPECT_OFFICE),
    (BUSINESS, MONDAY_0700_UTC, "UTC", EXPECT_DEFAULT),
    # the schedule's own zone overrides the one passed in
    ({**BUSINESS, "timezone": VVO}, MONDAY_0930_UTC, MSK, EXPECT_DEFAULT),
    ({**BUSINESS, "timezone": MSK}, MONDAY_0930_UTC, VVO, EXPECT_OFFICE),
    ({**BUSINESS, "timezone": None}, MONDAY_0930_UTC, VVO, EXPECT_DEFAULT),
    ({**BUSINESS, "timezone": ""}, MONDAY_0930_UTC, MSK, EXPECT_OFFICE),
    # a zone that does not exist is UTC, never an error
    (BUSINESS, MONDAY_0700_UTC, "Mars/Olympus", EXPECT_DEFAULT),
    (BUSINESS, MONDAY_0930_UTC, "Mars/Olympus", EXPECT_OFFICE),
    (BUSINESS, MONDAY_0700_UTC, "", EXPECT_DEFAULT),
    (BUSINESS, MONDAY_0700_UTC, "../etc/passwd", EXPECT_DEFAULT),
    ({**BUSINESS, "timezone": "Nowhere/Land"}, MONDAY_0700_UTC, MSK, EXPECT_DEFAULT),
])
def test_time_zones(destination: Mapping[str, Any], at: float, zone: str,
                    expected: tuple[str, Mapping[str, Any]]) -> None:
    assert schedule(destination, at, zone) == expected


def test_holiday_is_the_local_date() -> None:
    # 2024-03-07 20:00 UTC is already 8 March (a holiday) in Vladivostok, still 7 March 23:00 in Moscow
    at = datetime(2024, 3, 7, 20, 0, tzinfo=UTC).timestamp()
    assert schedule(BUSINESS, at, VVO) == EXPECT_HOLIDAY
    assert schedule(BUSINESS, at, MSK) == EXPECT_DEFAULT


NESTED = {"kind": "schedule", "rules": [], "default": OFFICE}


@pytest.mark.parametrize(("destination", "at"), [
    # a nested schedule
    ({"rules": [{"days": [0], "destination": NESTED}], "default": DEFAULT}, local(4, 12)),
    ({"rules": [], "default": NESTED}, local(4, 12)),
    ({"rules": [], "default": {"number": "101"}}, local(4, 12)),  # a branch without a kind
    ({"rules": [{"days": [0], "destination": {"number": "101"}}], "default": DEFAULT}, local(4, 12)),
    ({"rules": [{"days": [0]}], "default": DEFAULT}, local(4, 12)),  # a rule without a destination
    ({"rules": [], "default": {}}, local(4, 12)),
    ({"rules": [{"days": [1], "destination": OFFICE}]}, local(4, 12)),  # outside the rules, no default
    ({"holidays": ["2024-03-04"]}, local(4, 12)),  # a holiday, with neither destination
    ({}, local(4, 12)),
])
def test_nowhere(destination: Mapping[str, Any], at: float) -> None:
    assert schedule(destination, at) == NOWHERE == ("none", {})


def test_branch_payload_drops_only_the_kind() -> None:
    branch = {"kind": "ring", "numbers": ["101", "102"], "timeout": 20}
    kind, payload = schedule({"rules": [], "default": branch}, local(4, 12))
    assert (kind, payload) == ("ring", {"numbers": ["101", "102"], "timeout": 20})
    assert branch == {"kind": "ring", "numbers": ["101", "102"], "timeout": 20}  # not modified
