"""The park slots (telephony/park_lot.py): numbers, first free slot, per-company slots, timeouts."""

from __future__ import annotations

import pytest

from zvonok.telephony.park_lot import ParkingLot
from zvonok.telephony.pickup import PickupRequest, pickup_request


def test_numbers() -> None:
    lot: ParkingLot[str] = ParkingLot()
    assert [lot.is_park_number(n) for n in ("700", "701", "720", "721", "699", "0701", "*8", "")] == [
        True, True, True, False, False, False, False, False]
    assert lot.slot_of("715") == 715 and lot.slot_of("700") is None


def test_first_free_slot_and_a_named_slot() -> None:
    lot: ParkingLot[str] = ParkingLot(slots=3, timeout=10.0)
    assert lot.park(1, "702", "a", now=0.0) is not None
    assert lot.park(1, "702", "b", now=0.0) is None  # taken
    first = lot.park(1, "700", "b", now=1.0)
    assert first is not None and (first.slot, first.deadline) == (701, 11.0)
    assert lot.park(1, "700", "c", now=1.0) is not None
    assert lot.park(1, "700", "d", now=1.0) is None  # all three taken
    assert lot.park(1, "999", "d", now=1.0) is None
    assert [p.item for p in lot.parked(1)] == ["b", "a", "c"]
    taken = lot.take(1, 702)
    assert taken is not None and taken.item == "a" and lot.take(1, 702) is None
    assert lot.park(1, "700", "d", now=2.0).slot == 702  # type: ignore[union-attr]


def test_companies_have_their_own_slots() -> None:
    lot: ParkingLot[str] = ParkingLot()
    assert lot.park(1, "700", "a", now=0.0).slot == 701  # type: ignore[union-attr]
    assert lot.park(2, "700", "b", now=0.0).slot == 701  # type: ignore[union-attr]
    assert lot.take(2, 701).item == "b"  # type: ignore[union-attr]
    assert [p.item for p in lot.parked(1)] == ["a"] and lot.parked(2) == []
    assert not lot.remove(1, 701, "other") and lot.remove(1, 701, "a") and len(lot) == 0


def test_deadlines_and_expiry() -> None:
    lot: ParkingLot[str] = ParkingLot(timeout=120.0)
    assert lot.next_deadline() is None
    lot.park(1, "700", "a", now=10.0)
    lot.park(2, "700", "b", now=5.0)
    assert lot.next_deadline() == 125.0
    assert lot.expired(124.9) == []
    assert [p.item for p in lot.expired(125.0)] == ["b"]
    assert lot.next_deadline() == 130.0
    assert [p.item for p in lot.expired(1000.0)] == ["a"] and len(lot) == 0
    with pytest.raises(ValueError):
        ParkingLot(slots=0)


def test_pickup_codes() -> None:
    assert pickup_request("*8") == PickupRequest(None)
    assert pickup_request("**102") == PickupRequest("102")
    assert [pickup_request(d) for d in ("*80", "**", "**1a", "*72", "8")] == [None] * 5


def test_the_new_events_travel_on_the_bus() -> None:
    from zvonok.telephony import events as ev

    party = ev.Party(number="102", extension_id=2)
    for event in (ev.CallParked(tenant_id=1, call_id="c", at=1.0, leg_id="l", slot=701, parked_by=party, timeout=120.0),
                  ev.CallUnparked(tenant_id=1, call_id="c", at=2.0, leg_id="l", slot=701, reason="hangup"),
                  ev.CallUnparked(tenant_id=1, call_id="c", at=2.0, leg_id="l", slot=701, reason="retrieved", by=party),
                  ev.CallPickedUp(tenant_id=1, call_id="c", at=3.0, leg_id="p", by=party, from_number="103")):
        assert ev.deserialize(ev.serialize(event)) == event
