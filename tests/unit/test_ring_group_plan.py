"""The ring-group planner (telephony/ring_group.py): steps, ring times, the overall limit, skipped
members and round robin's memory, on a hand-stepped clock."""

from __future__ import annotations

import itertools

import pytest

from zvonok.telephony.ring_group import (
    MIN_STEP_SECONDS,
    RingGroupInfo,
    RingPlan,
    Step,
    Strategy,
    is_outside,
    member_order,
    remembered,
)

MEMBERS = ("101", "102", "+74951234567", "103")


def group(strategy: Strategy, **kw: object) -> RingGroupInfo:
    return RingGroupInfo(id=1, tenant_id=1, number="600", strategy=strategy, members=kw.pop("members", MEMBERS),
                         **kw)  # type: ignore[arg-type]


def everyone(_member: str) -> bool:
    return True


def steps(plan: RingPlan, start: float = 0.0, available=everyone) -> list[Step]:  # type: ignore[no-untyped-def]
    """Every step, each taken when the one before ran its full time."""
    out: list[Step] = []
    now = start
    while (step := plan.next_step(now, available)) is not None:
        out.append(step)
        now += step.seconds
    return out


def test_simultaneous_is_one_step_of_every_member() -> None:
    plan = RingPlan(group(Strategy.SIMULTANEOUS, ring_seconds=25), now=100.0)
    assert steps(plan, 100.0) == [Step(MEMBERS, 25.0, 0)]
    assert plan.next_step(200.0, everyone) is None  # once only


def test_simultaneous_skips_unavailable_and_none_left_is_no_step() -> None:
    plan = RingPlan(group(Strategy.SIMULTANEOUS), now=0.0)
    assert plan.next_step(0.0, lambda m: m in ("102", "103")) == Step(("102", "103"), 20.0, 0)
    plan = RingPlan(group(Strategy.SIMULTANEOUS), now=0.0)
    assert plan.next_step(0.0, lambda m: False) is None


def test_simultaneous_overall_limit_shortens_it() -> None:
    plan = RingPlan(group(Strategy.SIMULTANEOUS, ring_seconds=30, max_seconds=12), now=0.0)
    assert steps(plan) == [Step(MEMBERS, 12.0, 0)]


def test_hunt_rings_one_member_after_another_in_order() -> None:
    plan = RingPlan(group(Strategy.HUNT, ring_seconds=15), now=0.0)
    assert steps(plan) == [Step(("101",), 15.0, 0), Step(("102",), 15.0, 1), Step(("+74951234567",), 15.0, 2),
                           Step(("103",), 15.0, 3)]


def test_hunt_default_limit_is_every_member_once() -> None:
    g = group(Strategy.HUNT)
    assert g.limit == 20 * len(MEMBERS)
    assert group(Strategy.SIMULTANEOUS).limit == 20


def test_hunt_skips_busy_members_without_spending_time() -> None:
    plan = RingPlan(group(Strategy.HUNT, ring_seconds=10), now=0.0)
    busy = {"101", "+74951234567"}
    assert steps(plan, available=lambda m: m not in busy) == [Step(("102",), 10.0, 0), Step(("103",), 10.0, 1)]


def test_availability_is_asked_when_the_step_starts() -> None:
    """A member busy when the call arrived but free by its turn is rung."""
    plan = RingPlan(group(Strategy.HUNT, members=("101", "102")), now=0.0)
    free: set[str] = {"101"}
    assert plan.next_step(0.0, free.__contains__) == Step(("101",), 20.0, 0)
    free.add("102")
    assert plan.next_step(20.0, free.__contains__) == Step(("102",), 20.0, 1)


def test_a_step_that_ends_early_leaves_its_time_to_the_next() -> None:
    """Every device of a member refused after 3 s: the next member gets its full ring time."""
    plan = RingPlan(group(Strategy.HUNT, ring_seconds=20, max_seconds=60), now=0.0)
    assert plan.next_step(0.0, everyone) == Step(("101",), 20.0, 0)
    assert plan.next_step(3.0, everyone) == Step(("102",), 20.0, 1)


def test_overall_limit_cuts_the_last_step_and_stops_the_plan() -> None:
    plan = RingPlan(group(Strategy.HUNT, ring_seconds=20, max_seconds=45), now=10.0)
    assert steps(plan, 10.0) == [Step(("101",), 20.0, 0), Step(("102",), 20.0, 1), Step(("+74951234567",), 5.0, 2)]


def test_no_step_starts_with_less_than_the_minimum_left() -> None:
    plan = RingPlan(group(Strategy.HUNT, ring_seconds=20, max_seconds=40), now=0.0)
    assert plan.next_step(0.0, everyone) is not None
    assert plan.next_step(40.0 - MIN_STEP_SECONDS / 2, everyone) is None
    assert plan.exhausted


@pytest.mark.parametrize("last, first", [(None, "101"), ("101", "102"), ("102", "+74951234567"),
                                          ("+74951234567", "103"), ("103", "101"), ("999", "101")])
def test_round_robin_starts_after_the_last_answerer(last: str | None, first: str) -> None:
    g = group(Strategy.ROUND_ROBIN, last_answered=last)
    order = member_order(g)
    assert order[0] == first
    assert sorted(order) == sorted(MEMBERS) and len(order) == len(MEMBERS)
    assert [s.members[0] for s in steps(RingPlan(g, 0.0))] == list(order)


def test_round_robin_wraps_and_skips_unavailable() -> None:
    g = group(Strategy.ROUND_ROBIN, last_answered="+74951234567")
    plan = RingPlan(g, 0.0)
    assert [s.members for s in steps(plan, available=lambda m: m != "101")] == [("103",), ("102",), ("+74951234567",)]


def test_memory_is_ignored_by_hunt_and_simultaneous() -> None:
    assert member_order(group(Strategy.HUNT, last_answered="102")) == MEMBERS
    assert member_order(group(Strategy.SIMULTANEOUS, last_answered="102")) == MEMBERS


def test_remembered() -> None:
    assert remembered(group(Strategy.ROUND_ROBIN), "102") == "102"
    assert remembered(group(Strategy.ROUND_ROBIN), "555") is None  # a member removed meanwhile
    assert remembered(group(Strategy.HUNT), "102") is None


def test_round_robin_over_many_calls_gives_each_member_its_turn() -> None:
    """The member who answers is always the first rung: calls go round the group."""
    last: str | None = None
    firsts = []
    for _ in range(8):
        g = group(Strategy.ROUND_ROBIN, last_answered=last)
        first = RingPlan(g, 0.0).next_step(0.0, everyone)
        assert first is not None
        firsts.append(first.members[0])
        last = remembered(g, first.members[0])
    assert firsts == list(itertools.islice(itertools.cycle(MEMBERS), 8))


def test_empty_group_has_no_step() -> None:
    for strategy in Strategy:
        assert RingPlan(group(strategy, members=()), 0.0).next_step(0.0, everyone) is None


def test_is_outside() -> None:
    assert is_outside("+74951234567") and not is_outside("101")


def test_step_numbers_count_only_steps_rung() -> None:
    plan = RingPlan(group(Strategy.HUNT), 0.0)
    got = steps(plan, available=lambda m: m in ("102", "103"))
    assert [s.index for s in got] == [0, 1]
