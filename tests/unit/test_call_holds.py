"""Trunk channels and spending held by calls in progress (zvonok.pstn.holds, issue 14): a paid call is
admitted against what CDRs booked plus what calls in progress hold; on PostgreSQL two nodes share the
holds (a trunk's limit and a level's budget count the calls of both), a dead node's holds are swept, and
an unreachable or slow store costs a call set-up a bounded wait and a documented fallback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from conftest import FreshDatabase, MigratedTemplates
from zvonok.billing.tariffs import Increment, Rate
from zvonok.pstn.holds import LocalHolds, SharedHolds, decide, delete_stale, spend_key
from zvonok.pstn.models import CallHold
from zvonok.pstn.routing import CallerProfile, PolicyInfo, PstnSnapshot, TrunkInfo
from zvonok.storage.db import Database
from zvonok.telephony.counters import StoreUnavailable
from zvonok.telephony.trunks import Trunks

RATE = Rate(prefix="7", destination="Russia", price_per_minute=Decimal("1.00"), increment=Increment(60, 60))
PRICE = Decimal("1.00")
ANNA = CallerProfile(tenant_id=1, employee_id=11, office_id=3)
BORIS = CallerProfile(tenant_id=1, employee_id=12, office_id=3)


def limits(profile: CallerProfile, *, employee: str | None = "2.00", tenant: str | None = None) -> list[PolicyInfo]:
    out = []
    if employee is not None:
        out.append(PolicyInfo(tenant_id=profile.tenant_id, level="employee", ref_id=profile.employee_id,
                              monthly_limit=Decimal(employee)))
    if tenant is not None:
        out.append(PolicyInfo(tenant_id=profile.tenant_id, level="tenant", ref_id=None, monthly_limit=Decimal(tenant)))
    return out


@pytest.fixture
async def pg(tmp_path: Path, migrated_templates: MigratedTemplates) -> AsyncIterator[Database]:
    fresh = FreshDatabase("postgres", tmp_path)
    await fresh.create(await migrated_templates.get("postgres"))
    db = Database(fresh.url)
    try:
        yield db
    finally:
        await db.dispose()
        await fresh.drop()


@pytest.fixture
async def two_nodes(pg: Database) -> AsyncIterator[tuple[SharedHolds, SharedHolds]]:
    other = Database(pg.url)  # the second node: its own engine and pool, the same database
    try:
        # a generous bound: on a loaded machine 12 serialized decisions may take longer than the default
        # 2 s, and this test is about the decisions, not the fallback (tested below)
        yield SharedHolds(pg, node="node-a", timeout=120), SharedHolds(other, node="node-b", timeout=120)
    finally:
        await other.dispose()


async def rows(db: Database) -> int:
    async with db.session() as session:
        return int((await session.execute(select(func.count()).select_from(CallHold))).scalar_one())


# -- the decision ---------------------------------------------------------------------------------------
def test_a_call_in_progress_holds_its_worst_case_cost_and_the_next_call_gets_only_the_rest() -> None:
    first = decide(1, limits(ANNA, employee="10.00"), {}, {}, RATE, PRICE)
    assert (first.verdict.allowed, first.verdict.max_duration, first.held) == (True, 600, Decimal("10.00"))
    key = spend_key(1, "employee", 11)
    second = decide(1, limits(ANNA, employee="10.00"), {}, {key: Decimal("7.00")}, RATE, PRICE)
    assert (second.verdict.allowed, second.verdict.max_duration, second.held) == (True, 180, Decimal("3.00"))
    assert decide(1, limits(ANNA, employee="10.00"), {}, {key: Decimal("10.00")}, RATE, PRICE).verdict.allowed is False
    # the budgets kept for the call's own threshold events carry the booked spend only
    assert second.budgets[0].spent == Decimal(0)


def test_a_refused_call_holds_nothing_and_a_free_call_holds_its_fee_only() -> None:
    refused = decide(1, limits(ANNA, employee="0.50"), {}, {}, RATE, PRICE)
    assert (refused.verdict.allowed, refused.held) == (False, Decimal(0))
    free = Rate(prefix="7", destination="x", price_per_minute=Decimal(0), connection_fee=Decimal("0.30"))
    fee_only = decide(1, limits(ANNA), {}, {}, free, Decimal(0))
    assert (fee_only.verdict.allowed, fee_only.verdict.max_duration, fee_only.held) == (True, None, Decimal("0.30"))


# -- one node ---------------------------------------------------------------------------------------------
async def test_one_node_two_simultaneous_calls_do_not_both_get_the_whole_budget(db: Database) -> None:
    ledger = LocalHolds(db)
    first = await ledger.reserve("c1", ANNA, "UTC", limits(ANNA), RATE, PRICE)
    assert (first.verdict.allowed, first.verdict.max_duration, first.held) == (True, 120, Decimal("2.00"))
    second = await ledger.reserve("c2", ANNA, "UTC", limits(ANNA), RATE, PRICE)
    assert second.verdict.allowed is False
    # another employee's own limit is untouched, the tenant's shared one is not
    assert (await ledger.reserve("c3", BORIS, "UTC", limits(BORIS), RATE, PRICE)).verdict.allowed is True
    ledger.settle("c1")
    ledger.settle("c1")  # twice: harmless
    again = await ledger.reserve("c4", ANNA, "UTC", limits(ANNA), RATE, PRICE)
    assert (again.verdict.allowed, again.held) == (True, Decimal("2.00"))


async def test_one_node_the_tenant_level_is_shared_by_its_employees(db: Database) -> None:
    ledger = LocalHolds(db)
    anna = limits(ANNA, employee=None, tenant="3.00")
    boris = limits(BORIS, employee=None, tenant="3.00")
    assert (await ledger.reserve("c1", ANNA, "UTC", anna, RATE, PRICE)).held == Decimal("3.00")
    assert (await ledger.reserve("c2", BORIS, "UTC", boris, RATE, PRICE)).verdict.allowed is False
    assert ledger.held(spend_key(1, "tenant", None)) == Decimal("3.00")


# -- several nodes on PostgreSQL --------------------------------------------------------------------------
@pytest.mark.postgres
async def test_a_trunk_limit_counts_the_calls_of_both_nodes(two_nodes: tuple[SharedHolds, SharedHolds]) -> None:
    a, b = two_nodes
    assert await a.acquire(5, 1, "call-a") is True
    assert await b.acquire(5, 1, "call-b") is False  # node B alone would have room: the limit is shared
    assert (a.active(5), b.active(5)) == (1, 0)
    a.release(5)
    await a.flush()
    assert await b.acquire(5, 1, "call-b2") is True
    assert await a.acquire(6, 1, "call-c") is True  # another trunk: its own count
    assert await a.acquire(7, None, "call-d") is True  # no limit: nothing written
    assert await rows(a.db) == 2


@pytest.mark.postgres
async def test_the_trunk_status_counts_the_calls_of_every_node(two_nodes: tuple[SharedHolds, SharedHolds]) -> None:
    """The REST trunk status (``Trunks.shared_status``, issue 14): the calls checked against the limit are
    every node's, not only those of the node that answers."""
    a, b = two_nodes
    limited = TrunkInfo(id=5, tenant_id=None, name="carrier", kind="carrier", host="192.0.2.1",
                        address="192.0.2.1", port=5060, transport="udp", max_calls=3)
    free = replace(limited, id=6, max_calls=None)
    on_a, on_b = Trunks(sip=None, slots=a), Trunks(sip=None, slots=b)  # type: ignore[arg-type]
    for trunks in (on_a, on_b):
        trunks.snapshot = PstnSnapshot(trunks={5: limited, 6: free})
    assert await a.acquire(5, 3, "call-a1") and await a.acquire(5, 3, "call-a2")
    assert await b.acquire(5, 3, "call-b1")
    status = await on_b.shared_status(5)
    assert (status["active_calls"], status["active_calls_here"], status["active_calls_scope"]) == (3, 1, "cluster")
    assert status["active_calls_by_node"] == {"node-a": 2, "node-b": 1}
    assert status["max_calls"] == 3
    assert (await on_a.shared_status(5))["active_calls"] == 3
    a.release(5)
    await a.flush()
    assert (await on_b.shared_status(5))["active_calls_by_node"] == {"node-a": 1, "node-b": 1}
    # a trunk without a limit writes nothing (no round trip per call): its count is the node's own
    assert await a.acquire(6, None, "call-a3")
    status = await on_a.shared_status(6)
    assert (status["active_calls"], status["active_calls_scope"]) == (1, "node")
    assert "active_calls_by_node" not in status
    assert (await on_b.shared_status(6))["active_calls"] == 0


@pytest.mark.postgres
async def test_simultaneous_acquires_on_two_nodes_never_exceed_the_limit(
        two_nodes: tuple[SharedHolds, SharedHolds]) -> None:
    a, b = two_nodes
    results = await asyncio.gather(*(node.acquire(9, 3, f"c{i}") for i in range(6) for node in (a, b)))
    assert sum(results) == 3
    assert a.active(9) + b.active(9) == 3
    assert await rows(a.db) == 3


@pytest.mark.postgres
async def test_a_dead_nodes_holds_are_swept_and_a_live_nodes_are_kept(
        two_nodes: tuple[SharedHolds, SharedHolds]) -> None:
    a, b = two_nodes
    assert await a.acquire(5, 1, "call-a") is True
    await b.reserve("call-b", BORIS, "UTC", limits(BORIS), RATE, PRICE)
    before_beat = datetime.now(UTC)
    await b.beat()  # B is alive; A (killed) stopped beating
    assert await delete_stale(a.db, before_beat + timedelta(microseconds=1)) == 1
    assert await rows(a.db) == 1  # B's spending hold
    assert await b.acquire(5, 1, "call-b") is True


@pytest.mark.postgres
async def test_a_budget_is_shared_by_both_nodes(two_nodes: tuple[SharedHolds, SharedHolds]) -> None:
    a, b = two_nodes
    first = await a.reserve("c1", ANNA, "UTC", limits(ANNA, tenant="5.00"), RATE, PRICE)
    assert (first.verdict.allowed, first.held) == (True, Decimal("2.00"))
    assert (await b.reserve("c2", ANNA, "UTC", limits(ANNA, tenant="5.00"), RATE, PRICE)).verdict.allowed is False
    # Boris has no limit of his own: the tenant's 5.00 minus Anna's 2.00 in progress on node A
    boris = await b.reserve("c3", BORIS, "UTC", limits(BORIS, employee=None, tenant="5.00"), RATE, PRICE)
    assert (boris.verdict.allowed, boris.verdict.max_duration, boris.held) == (True, 180, Decimal("3.00"))
    a.settle("c1")
    await a.flush()
    again = await b.reserve("c4", ANNA, "UTC", limits(ANNA, tenant="5.00"), RATE, PRICE)
    assert (again.verdict.allowed, again.held) == (True, Decimal("2.00"))


@pytest.mark.postgres
async def test_a_slow_store_costs_a_bounded_wait_then_the_nodes_own_count_decides(pg: Database) -> None:
    """Another session holds the trunk's lock (a store that does not answer): the acquire gives up after
    ``timeout`` and this node's own count decides; a spending decision is refused (StoreUnavailable)."""
    node = SharedHolds(pg, node="node-a", timeout=0.5)
    blocker = Database(pg.url)
    try:
        async with blocker.session() as session:
            await session.execute(text("SELECT pg_advisory_xact_lock(:space, hashtext(:name))"),
                                  {"space": 0x5A56, "name": "trunk:5"})
            await session.execute(text("SELECT pg_advisory_xact_lock(:space, hashtext(:name))"),
                                  {"space": 0x5A56, "name": "spend:" + spend_key(1, "employee", 11)})
            assert await node.acquire(5, 1, "c1") is True  # fallback: none of this node's calls on it
            assert await node.acquire(5, 1, "c2") is False  # fallback: this node's one call fills it
            with pytest.raises(StoreUnavailable):
                await node.reserve("c3", ANNA, "UTC", limits(ANNA), RATE, PRICE)
            await session.rollback()
        node.release(5)
        await node.flush()  # a fallback slot has no row: nothing to delete, nothing breaks
        assert node.active(5) == 0
        assert await node.acquire(5, 1, "c4") is True  # the store answers again
        assert await rows(pg) == 1
    finally:
        await blocker.dispose()


async def test_an_unreachable_store_falls_back_for_trunks_and_refuses_paid_calls() -> None:
    down = Database("postgresql+asyncpg://postgres@127.0.0.1:9/nowhere")  # nothing listens on port 9
    node = SharedHolds(down, node="node-a", timeout=5)
    try:
        assert [await node.acquire(5, 2, f"c{i}") for i in range(3)] == [True, True, False]
        assert await node.by_node(5) is None  # the trunk status shows this node's own count then
        with pytest.raises(StoreUnavailable):
            await node.reserve("c9", ANNA, "UTC", limits(ANNA), RATE, PRICE)
        node.release(5)
        await node.flush()
        await node.beat()
        assert node.active(5) == 1
        # a call-center agent: this node's own view decides (the phone rings), nothing is held to release
        assert await node.claim_agent(7, "c10") == "taken"
        assert node.agents_claimed() == set() and await node.agents_elsewhere() is None
    finally:
        await down.dispose()
