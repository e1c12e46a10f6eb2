"""The typed destination union (zvonok.destination): each kind valid and invalid, the kinds each place
allows, the stored form unchanged (no migration), and the message naming the place."""

from __future__ import annotations

from typing import Any

import pytest

from zvonok.destination import (
    BRANCH_KINDS,
    DESTINATION,
    DID_KINDS,
    KINDS,
    MENU_KINDS,
    Access,
    Conference,
    Extension,
    External,
    Hangup,
    Ivr,
    Park,
    Queue,
    Ring,
    RingGroup,
    Voicemail,
    parse,
    parse_payload,
    stored,
)

VALID: list[tuple[dict[str, Any], type, dict[str, Any]]] = [
    ({"kind": "extension", "number": "101"}, Extension, {"kind": "extension", "number": "101"}),
    (
        {"kind": "ring", "numbers": ["101", "102"], "timeout": 30},
        Ring,
        {"kind": "ring", "numbers": ["101", "102"], "timeout": 30},
    ),
    ({"kind": "ring_group", "number": "600"}, RingGroup, {"kind": "ring_group", "number": "600"}),
    ({"kind": "conference", "number": "800"}, Conference, {"kind": "conference", "number": "800"}),
    ({"kind": "park", "slot": "701"}, Park, {"kind": "park", "slot": "701"}),
    ({"kind": "park"}, Park, {"kind": "park"}),
    ({"kind": "voicemail", "number": "101"}, Voicemail, {"kind": "voicemail", "number": "101"}),
    ({"kind": "ivr", "menu": 3}, Ivr, {"kind": "ivr", "menu": 3}),
    ({"kind": "menu", "menu": 3}, Ivr, {"kind": "menu", "menu": 3}),  # as IVR menus store it
    ({"kind": "queue", "number": "500"}, Queue, {"kind": "queue", "number": "500"}),
    ({"kind": "queue", "queue": " sales "}, Queue, {"kind": "queue", "queue": "sales"}),
    ({"kind": "queue", "number": "500", "priority": 10}, Queue, {"kind": "queue", "number": "500", "priority": 10}),
    (
        {"kind": "external", "number": "+7 (495) 123-45-67"},
        External,
        {"kind": "external", "number": "+74951234567"},
    ),
    ({"kind": "access"}, Access, {"kind": "access"}),
    (
        {"kind": "access", "skip_pin_for_known_callers": True},
        Access,
        {"kind": "access", "skip_pin_for_known_callers": True},
    ),
    ({"kind": "hangup"}, Hangup, {"kind": "hangup"}),
]


@pytest.mark.parametrize(("value", "cls", "out"), VALID)
def test_each_kind_valid(value: dict[str, Any], cls: type, out: dict[str, Any]) -> None:
    dest = parse(value)
    assert isinstance(dest, cls)
    assert dest.stored() == out  # what is written back is the stored JSON of before: no migration
    assert dest.payload() == {k: v for k, v in out.items() if k != "kind"}
    # the discriminated union reads the stored form back to the same value
    assert DESTINATION.validate_python(out) == dest


INVALID: list[tuple[Any, str]] = [
    ({"kind": "extension", "number": "1"}, "destination.number: an extension number is 2-8 digits"),
    ({"kind": "extension"}, "destination.number: required"),
    ({"kind": "extension", "number": 101}, "destination.number: an extension number is 2-8 digits"),
    ({"kind": "ring", "numbers": []}, "destination.numbers: a list of 1 to 20 extension numbers"),
    ({"kind": "ring", "numbers": ["101", "x"]}, "destination.numbers[1]: an extension number is 2-8 digits"),
    ({"kind": "ring", "numbers": ["101", "101"]}, "destination.numbers: an extension is listed twice"),
    (
        {"kind": "ring", "numbers": ["101"], "timeout": True},
        "destination.timeout: whole seconds from 5 to 600",
    ),
    ({"kind": "ring_group", "number": "6"}, "destination.number: a ring group number is 2-8 digits"),
    ({"kind": "conference", "number": "abc"}, "destination.number: a conference room number is 2-8 digits"),
    ({"kind": "park", "slot": "7"}, "destination.slot: a park slot is 2-8 digits"),
    ({"kind": "voicemail", "number": ""}, "destination.number: an extension number is 2-8 digits"),
    ({"kind": "ivr", "menu": 0}, "destination.menu: an IVR menu's id"),
    ({"kind": "ivr", "menu": "3"}, "destination.menu: an IVR menu's id"),
    ({"kind": "queue"}, 'destination: either "number" (the queue\'s number) or "queue" (its name)'),
    ({"kind": "queue", "number": "500", "queue": "sales"}, 'destination: either "number"'),
    ({"kind": "queue", "queue": " "}, "destination.queue: a queue name (1-100 characters)"),
    ({"kind": "queue", "number": "500", "priority": 0}, "destination.priority: a whole number from 1 to 100"),
    ({"kind": "queue", "number": "500", "priority": 101}, "destination.priority: a whole number from 1 to 100"),
    ({"kind": "queue", "number": "500", "priority": "5"}, "destination.priority: a whole number from 1 to 100"),
    ({"kind": "queue", "number": "500", "priority": True}, "destination.priority: a whole number from 1 to 100"),
    (
        {"kind": "external", "number": "84951234567"},
        "destination.number: '84951234567': write the number in international form, '+' and the country code",
    ),
    ({"kind": "external", "number": 7}, "destination.number: an E.164 number"),
    (
        {"kind": "access", "skip_pin_for_known_callers": 1},
        "destination.skip_pin_for_known_callers: true or false",
    ),
    ({"kind": "access", "pin": "1"}, "destination: unknown key 'pin'"),
    ({"kind": "hangup", "x": 1}, "destination: unknown key 'x'"),
    ({"kind": "paging"}, "destination.kind: unknown destination kind 'paging' (one of extension, ring, "),
    ({"kind": 5}, 'destination: an object with a "kind" and that kind\'s fields'),
    ({"number": "101"}, 'destination: an object with a "kind" and that kind\'s fields'),
    ("101", 'destination: an object with a "kind" and that kind\'s fields'),
]


@pytest.mark.parametrize(("value", "message"), INVALID)
def test_each_kind_invalid(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse(value)
    assert str(caught.value).startswith(message)


def test_places_allow_their_kinds_only() -> None:
    assert set(DID_KINDS) | set(BRANCH_KINDS) | set(MENU_KINDS) <= set(KINDS)
    with pytest.raises(
        ValueError,
        match=r"^keys\.1\.kind: 'voicemail' is not available here \(one of extension, "
        r"ring, conference, external, queue, menu, fax, hangup\)$",
    ):
        parse({"kind": "voicemail", "number": "101"}, kinds=MENU_KINDS, path="keys.1")
    with pytest.raises(ValueError, match="'hangup' is not available here"):
        parse({"kind": "hangup"}, kinds=BRANCH_KINDS, path="no_answer")
    with pytest.raises(ValueError, match="'menu' is not available here"):  # a DID says "ivr"
        parse_payload("menu", {"menu": 3}, kinds=DID_KINDS)
    assert parse({"kind": "queue", "number": "500"}, kinds=BRANCH_KINDS) == Queue(number="500")


def test_stored_values_read_back_typed_or_none() -> None:
    assert stored("ring", {"numbers": ["101"]}) == Ring(numbers=["101"])
    assert stored("access", None) == Access()
    assert stored("none", {}) is None  # a schedule with no branch in force: nowhere to go
    assert stored("paging", {"number": "101"}) is None  # a kind this version does not know
