"""A DID's destination may be a conference room: ``{"kind": "conference", "number": "800"}``."""

from __future__ import annotations

import pytest

from zvonok.pstn.destinations import clean_destination


def test_conference_destination_is_checked() -> None:
    clean = clean_destination("conference", {"number": "800"})
    assert clean.payload == {"number": "800"} and clean.extensions == ()
    for bad in ({}, {"number": "8"}, {"number": 800}, {"number": "800", "pin": "1"}):
        with pytest.raises(ValueError, match="destination"):
            clean_destination("conference", bad)
    nested = clean_destination("schedule", {"default": {"kind": "conference", "number": "801"}})
    assert nested.payload["default"] == {"kind": "conference", "number": "801"}
