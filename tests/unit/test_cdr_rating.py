"""Rating an outside call in its CDR: the CallRouted event's price, folded by CallRecord into FinishedCall."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest

from zvonok.cdr.state import CallRecord, FinishedCall, Rating, rate
from zvonok.telephony.events import (
    CallAnswered,
    CallEnded,
    CallRouted,
    CallStarted,
    Direction,
    Disposition,
    HangupSide,
    LegAnswered,
    LegCreated,
    LegRole,
    Party,
)

D = Decimal
T0 = 1_709_550_000.0
CALL = "c0ffee"


def routed(**changes: Any) -> CallRouted:
    fields: dict[str, Any] = dict(
        tenant_id=1, call_id=CALL, at=T0 + 0.1, destination_class="long_distance", number="+78121234567",
        trunk_id=10, rate_prefix="7812", rate_destination="Saint Petersburg", price_per_minute="1.50",
        connection_fee="0", increment="60/60", minimum=0, currency="RUB", period="flat",
    )
    fields.update(changes)
    return CallRouted(**fields)


@pytest.mark.parametrize(("price", "fee", "increment", "minimum", "talk", "billed", "cost"), [
    ("1.50", "0", "60/60", 0, 60.0, 60, "1.50"),
    ("1.50", "0", "60/60", 0, 61.0, 120, "3.00"),
    ("1.50", "0", "60/60", 0, 1.0, 60, "1.50"),
    ("1.50", "0", "60/60", 0, 0.4, 60, "1.50"),  # any answered time bills the first block
    ("1.50", "0", "60", 0, 119.0, 120, "3.00"),  # "60" is 60/60
    ("1.50", "0", "1/1", 0, 61.0, 61, "1.53"),  # 1.525 rounds half up
    ("1.00", "0", "1/1", 0, 61.2, 62, "1.03"),  # started seconds count
    ("0.30", "0", "1/1", 0, 1.0, 1, "0.01"),  # 0.005 rounds half up
    ("0.29", "0", "1/1", 0, 1.0, 1, "0.00"),  # 0.00483…
    ("0.90", "0", "30/6", 0, 10.0, 30, "0.45"),
    ("0.90", "0", "30/6", 0, 30.0, 30, "0.45"),
    ("0.90", "0", "30/6", 0, 31.0, 36, "0.54"),
    ("0.90", "0", "30/6", 0, 125.0, 126, "1.89"),
    ("1.00", "0.25", "60/60", 0, 30.0, 60, "1.25"),  # connection fee added once
    ("1.00", "0.25", "1/1", 0, 90.0, 90, "1.75"),
    ("1.00", "0", "1/1", 60, 5.0, 60, "1.00"),  # minimum billable seconds
    ("1.00", "0", "1/1", 60, 90.0, 90, "1.50"),
    ("2.00", "0.10", "30/6", 45, 31.0, 45, "1.60"),
    ("0", "0", "60/60", 0, 61.0, 120, "0.00"),  # a free rate
    ("12.3456", "0", "1/1", 0, 7.0, 7, "1.44"),  # 1.440320
])
def test_rate_exact_costs(price: str, fee: str, increment: str, minimum: int, talk: float, billed: int,
                          cost: str) -> None:
    route = routed(price_per_minute=price, connection_fee=fee, increment=increment, minimum=minimum)
    rating = rate(route, talk)
    assert (rating.billed_seconds, str(rating.cost), rating.rate_per_minute) == (billed, cost, D(price))
    assert isinstance(rating.cost, Decimal)


def route_fields(rating: Rating) -> tuple[object, ...]:
    return (rating.trunk_id, rating.did, rating.destination_class, rating.rate_prefix,
            rating.rate_destination, rating.currency)


KEPT = (10, None, "long_distance", "7812", "Saint Petersburg", "RUB")


@pytest.mark.parametrize("talk", [0.0, -3.0])
def test_unanswered_costs_nothing_but_keeps_the_route(talk: float) -> None:
    rating = rate(routed(connection_fee="0.50", minimum=60), talk)
    assert route_fields(rating) == KEPT
    assert (rating.rate_per_minute, rating.billed_seconds, rating.cost) == (D("1.50"), 0, D(0))


def test_no_price_keeps_the_route_and_costs_nothing() -> None:
    rating = rate(routed(price_per_minute=None, connection_fee="0.50"), 125.0)
    assert rating == Rating(trunk_id=10, destination_class="long_distance", rate_prefix="7812",
                            rate_destination="Saint Petersburg", currency="RUB")
    assert (rating.rate_per_minute, rating.billed_seconds, rating.cost) == (None, 0, D(0))


def test_inbound_route_keeps_the_did() -> None:
    rating = rate(routed(destination_class="inbound", did="+74951112233", number="+79161234567",
                         rate_prefix=None, rate_destination=None, price_per_minute=None, currency=None), 30.0)
    assert route_fields(rating) == (10, "+74951112233", "inbound", None, None, None)
    assert rating.cost == D(0)


def test_no_route_is_an_empty_rating() -> None:
    assert rate(None, 100.0) == Rating()
    assert route_fields(Rating()) == (None,) * 6


# --- CallRecord: the route folded into the finished call -----------------------------------------------
def started() -> CallRecord:
    caller = Party(number="101", extension_id=1, employee_id=42)
    record = CallRecord.started(CallStarted(tenant_id=1, call_id=CALL, at=T0, caller=caller,
                                            callee_number="+78121234567", direction=Direction.OUTBOUND))
    record.apply(LegCreated(tenant_id=1, call_id=CALL, at=T0, leg_id="a", role=LegRole.CALLER, party=caller))
    return record


def connect(record: CallRecord, at: float) -> None:
    callee = Party(number="+78121234567", external=True)
    record.apply(LegCreated(tenant_id=1, call_id=CALL, at=T0 + 0.2, leg_id="b", role=LegRole.CALLEE,
                            party=callee))
    record.apply(LegAnswered(tenant_id=1, call_id=CALL, at=at, leg_id="b"))
    record.apply(CallAnswered(tenant_id=1, call_id=CALL, at=at, answered_leg_id="b"))


def end(record: CallRecord, at: float, disposition: Disposition = Disposition.ANSWERED) -> FinishedCall:
    return record.finish_with(CallEnded(tenant_id=1, call_id=CALL, at=at, disposition=disposition,
                                        hangup_side=HangupSide.CALLER, cause="normal_clearing"))


def test_answered_call_is_rated_from_answer_to_end() -> None:
    record = started()
    record.apply(routed())
    connect(record, T0 + 5)
    finished = end(record, T0 + 5 + 61)
    assert (finished.billsec, finished.duration) == (61, 66)
    assert finished.rating == Rating(trunk_id=10, destination_class="long_distance", rate_prefix="7812",
                                     rate_destination="Saint Petersburg", rate_per_minute=D("1.50"),
                                     billed_seconds=120, cost=D("3.00"), currency="RUB")


def test_unanswered_call_keeps_the_route_at_no_cost() -> None:
    record = started()
    record.apply(routed(connection_fee="0.30"))
    finished = end(record, T0 + 30, Disposition.NO_ANSWER)
    assert finished.billsec == 0
    assert route_fields(finished.rating) == KEPT
    assert (finished.rating.billed_seconds, finished.rating.cost) == (0, D(0))


def test_failover_route_replaces_the_first() -> None:
    record = started()
    record.apply(routed())
    record.apply(routed(at=T0 + 3, trunk_id=11, rate_prefix="7", rate_destination="Russia",
                        price_per_minute="0.90", increment="30/6"))
    connect(record, T0 + 10)
    rating = end(record, T0 + 10 + 31).rating
    assert (rating.trunk_id, rating.rate_prefix, rating.rate_destination) == (11, "7", "Russia")
    assert (rating.rate_per_minute, rating.billed_seconds, rating.cost) == (D("0.90"), 36, D("0.54"))


def test_call_without_route_has_an_empty_rating() -> None:
    record = started()
    connect(record, T0 + 2)
    assert end(record, T0 + 62).rating == Rating()


def test_route_survives_the_crash_snapshot() -> None:
    record = started()
    record.apply(routed(connection_fee="0.20", increment="1/1", minimum=10))
    connect(record, T0 + 4)
    snapshot = json.loads(json.dumps(record.to_json()))
    restored = CallRecord.from_json(snapshot)
    assert restored.route == record.route
    assert restored.route is not None and restored.route["trunk_id"] == 10
    after = end(restored, T0 + 4 + 45)
    assert after.rating == end(record, T0 + 4 + 45).rating
    # 0.20 + 1.50 × 45 / 60 = 1.325 → 1.33
    assert (after.rating.billed_seconds, str(after.rating.cost)) == (45, "1.33")


def test_snapshot_before_any_route_restores_none() -> None:
    restored = CallRecord.from_json(json.loads(json.dumps(started().to_json())))
    assert restored.route is None
    restored.apply(routed())
    assert restored.route == {f.name: getattr(routed(), f.name) for f in dataclasses.fields(CallRouted)}
