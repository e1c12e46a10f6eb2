"""The call center on several nodes (issue 14): two runtimes over one PostgreSQL database, as two nodes.

An agent logged in, paused or unpaused on one node is so on the other (``agent_presence``, carried by the
real change feed; a login and a logout made at once on two nodes end the same on both: the one written
last); an agent is offered one queue call at a time across the nodes (its ``call_holds`` claim
taken before its phone rings: one node wins, the other offers its caller to someone else and shows the
agent busy); the claim is released when the agent is free again, and a dead node's claim is freed by the
dead-node sweep. The line is one across the nodes: live callers and callback requests, by queue weight,
priority and arrival, and the positions announced count the other node's callers ahead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from conftest import FreshDatabase, MigratedTemplates
from zvonok.callcenter import log as ql
from zvonok.callcenter.agents import AgentStatus
from zvonok.callcenter.center import Announce, Offer
from zvonok.callcenter.models import AgentPresence, CallQueue, QueueCallbackRow, QueueLogRow
from zvonok.callcenter.queues import QueueConfig, Strategy
from zvonok.callcenter.runtime import CallCenterRuntime
from zvonok.org.models import Employee, Tenant
from zvonok.pstn.holds import AGENT, CALLBACK, CALLER, HANDLED, SharedHolds, delete_stale
from zvonok.pstn.models import CallHold
from zvonok.storage.changes import ChangeFeed
from zvonok.storage.db import Database

pytestmark = pytest.mark.postgres

ANNA, BORIS = 501, 502


# Callers joining on two nodes one after the other are a second apart here (``now - JOINED_BEFORE``): a node's
# wall time is its monotonic clock plus an offset read once at its start, and two nodes' offsets may differ by
# more than the microseconds between two calls in a row (a loaded CI once ordered them the other way)
JOINED_BEFORE = 1.0


@dataclass
class Node:
    db: Database
    holds: SharedHolds
    runtime: CallCenterRuntime
    feed: ChangeFeed
    offers: list[Offer]

    async def hear(self) -> None:
        """What the other node committed reaches this one (the change feed's poll, then its reload task)."""
        await self.feed.poll()
        await self.runtime.settled()


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
async def company(pg: Database) -> tuple[int, int]:
    async with pg.session() as session:
        tenant = Tenant(name="T", sip_domain="t.example", timezone="UTC", currency="RUB", locale="ru")
        session.add(tenant)
        await session.flush()
        session.add_all([Employee(id=ANNA, tenant_id=tenant.id, full_name="Anna"),
                         Employee(id=BORIS, tenant_id=tenant.id, full_name="Boris")])
        queue = CallQueue(tenant_id=tenant.id, name="Q", number="500", requirements=[], relaxations=[], wrap_up=0)
        session.add(queue)
        await session.commit()
        return tenant.id, queue.id


async def start_node(db: Database, name: str, queue: QueueConfig) -> Node:
    holds = SharedHolds(db, node=name, timeout=30)
    runtime = CallCenterRuntime(db, claims=holds, flush_delay=0.0, sync_every=3600)  # syncs called by the tests
    feed = ChangeFeed(db)
    await feed.prime()
    await runtime.start()
    runtime.center.set_queue(queue, runtime.clock())  # a long ring time: offers end when the test says
    offers: list[Offer] = []
    runtime.action_handlers.append(lambda a: offers.append(a) if isinstance(a, Offer) else None)
    return Node(db, holds, runtime, feed, offers)


@pytest.fixture
async def nodes(pg: Database, company: tuple[int, int]) -> AsyncIterator[tuple[Node, Node]]:
    tenant_id, queue_id = company
    queue = QueueConfig(id=queue_id, tenant_id=tenant_id, ring_timeout=600, retry=0, wrap_up=0)
    other = Database(pg.url)  # node 2: its own engine and pool, the same database
    a = await start_node(pg, "node-1", queue)
    b = await start_node(other, "node-2", queue)
    try:
        yield a, b
    finally:
        for node in (a, b):
            await node.runtime.stop()
        await other.dispose()


async def presence_written(node: Node) -> None:
    assert await node.runtime.write_presence()


async def logged_in_everywhere(a: Node, b: Node, tenant_id: int, queue_id: int) -> None:
    """Anna logs in to the queue through node 1, and node 2 has read it."""
    a.runtime.login(tenant_id, ANNA, [queue_id], {})
    await presence_written(a)
    await b.hear()


@asynccontextmanager
async def presence_writes_held(db: Database) -> AsyncIterator[None]:
    """Hold every write to ``agent_presence`` (reads go on) until the block ends: a node's presence write is
    made to land exactly after what the block does."""
    async with db.session() as session:
        await session.execute(text("LOCK TABLE agent_presence IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            await session.rollback()


async def second_queue(nodes: tuple[Node, Node], tenant_id: int, queue_id: int) -> int:
    a, _b = nodes
    async with a.db.session() as session:
        vip = CallQueue(tenant_id=tenant_id, name="VIP", number="501", requirements=[], relaxations=[], wrap_up=0)
        session.add(vip)
        await session.commit()
        vip_id = vip.id
    for node in nodes:
        config = node.runtime.center.queues[queue_id]
        node.runtime.center.set_queue(replace(config, id=vip_id), node.runtime.clock())
    return vip_id


async def presence_row(db: Database, employee_id: int) -> set[int] | None:
    async with db.session() as session:
        row = await session.get(AgentPresence, employee_id)
        return None if row is None else set(row.queues)


async def claims(db: Database) -> dict[str, str]:
    async with db.session() as session:
        rows = await session.execute(select(CallHold.key, CallHold.node).where(CallHold.kind == AGENT))
        return {key: node for key, node in rows.tuples()}


async def test_an_agent_logged_in_on_one_node_is_offered_a_call_arriving_on_the_other(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    await logged_in_everywhere(a, b, tenant_id, queue_id)
    agent = b.runtime.agent(tenant_id, ANNA)
    assert agent is not None and agent.status is AgentStatus.AVAILABLE and agent.queues == {queue_id}

    b.runtime.feed(lambda c, now: c.join("call-b", queue_id, now, number="100"))
    assert [(o.call_id, o.agent_id) for o in b.offers] == [("call-b", ANNA)]
    assert await b.runtime.claim(ANNA, "call-b") is True  # what the desk does before the phone rings
    assert await claims(a.db) == {str(ANNA): "node-2"}

    assert b.runtime.feed(lambda c, now: c.offer_answered("call-b", ANNA, now)) is True
    # a pause made on node 1 reaches node 2 during the call: taken there when the call is over
    a.runtime.pause(ANNA, "lunch")
    await presence_written(a)
    await b.hear()
    assert b.runtime.center.agents[ANNA].pause_after == "lunch"
    b.runtime.feed(lambda c, now: c.call_ended("call-b", now, by_agent=False))
    assert b.runtime.center.agents[ANNA].status is AgentStatus.NOT_READY  # wrap-up 0: paused at once
    await b.holds.flush()
    assert await claims(a.db) == {}  # released with the end of the call
    await b.runtime.flush()
    await a.runtime.flush()
    async with a.db.session() as session:
        logins = (await session.execute(select(QueueLogRow.agent_id).where(QueueLogRow.event == ql.ADDMEMBER))).all()
        connects = (await session.execute(select(QueueLogRow.agent_id).where(QueueLogRow.event == ql.CONNECT))).all()
    assert len(logins) == 1  # logged by node 1 only, not again by node 2 applying it
    assert len(connects) == 1  # node 2's call

    a.runtime.logout(ANNA, None)
    await presence_written(a)
    await b.hear()
    assert b.runtime.center.agents[ANNA].status is AgentStatus.OFFLINE
    async with a.db.session() as session:
        assert await session.get(AgentPresence, ANNA) is None


async def test_only_one_node_wins_an_agent_and_the_other_offers_its_caller_to_someone_else(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    await logged_in_everywhere(a, b, tenant_id, queue_id)
    # each node has a caller and offers it the only agent, at once
    a.runtime.feed(lambda c, now: c.join("call-a", queue_id, now, number="100"))
    b.runtime.feed(lambda c, now: c.join("call-b", queue_id, now, number="200"))
    assert [o.agent_id for o in a.offers] == [o.agent_id for o in b.offers] == [ANNA]
    won = await asyncio.gather(a.runtime.claim(ANNA, "call-a"), b.runtime.claim(ANNA, "call-b"))
    assert sorted(won) == [False, True]
    winner, loser = (a, b) if won[0] else (b, a)
    assert await claims(a.db) == {str(ANNA): winner.holds.node}
    lost = loser.runtime.center.agents[ANNA]
    # the loser's offer is withdrawn (no miss counted), its caller waits for someone else
    assert lost.status is AgentStatus.AVAILABLE and lost.held_elsewhere and lost.missed == 0
    snapshot = loser.runtime.snapshot(tenant_id, queue_id)
    assert snapshot is not None and snapshot.agents == {"busy": 1}

    # Boris logs in on the winning node: the loser's caller is offered to him
    winner.runtime.login(tenant_id, BORIS, [queue_id], {})
    await presence_written(winner)
    await loser.hear()
    assert (loser.offers[-1].agent_id, loser.offers[-1].call_id) == (BORIS, "call-b" if won[0] else "call-a")

    # the winner's caller hangs up: the agent is free, the loser sees it at its next sync
    winner_call = "call-a" if won[0] else "call-b"
    winner.runtime.feed(lambda c, now: c.caller_left(winner_call, now))
    await winner.holds.flush()
    assert str(ANNA) not in await claims(a.db)
    await loser.runtime.sync_claims()
    assert loser.runtime.center.agents[ANNA].held_elsewhere is False


async def test_a_dead_nodes_claim_is_freed_by_the_sweep(nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    await logged_in_everywhere(a, b, tenant_id, queue_id)
    a.runtime.feed(lambda c, now: c.join("call-a", queue_id, now, number="100"))
    assert await a.runtime.claim(ANNA, "call-a") is True
    # node 1 is killed here: it never refreshes nor releases its claim
    b.runtime.feed(lambda c, now: c.join("call-b", queue_id, now, number="200"))
    assert await b.runtime.claim(ANNA, "call-b") is False
    await b.runtime.sync_claims()
    assert b.runtime.center.agents[ANNA].held_elsewhere is True
    swept = datetime.now(UTC)
    await b.holds.beat()  # node 2 is alive
    # node 1's claim and its own row (while it is there node 1 is alive: its callback requests are its own)
    assert await delete_stale(b.db, swept) == 2
    await b.runtime.sync_claims()
    assert b.runtime.center.agents[ANNA].held_elsewhere is False
    assert (b.offers[-1].call_id, b.offers[-1].agent_id) == ("call-b", ANNA)  # offered again at once
    assert await b.runtime.claim(ANNA, "call-b") is True
    assert await claims(b.db) == {str(ANNA): "node-2"}


async def test_a_node_that_starts_later_reads_the_logged_in_agents(pg: Database, company: tuple[int, int]) -> None:
    tenant_id, queue_id = company
    queue = QueueConfig(id=queue_id, tenant_id=tenant_id, ring_timeout=600, retry=0, wrap_up=0)
    a = await start_node(pg, "node-1", queue)
    other = Database(pg.url)
    try:
        a.runtime.login(tenant_id, ANNA, [queue_id], {})
        a.runtime.login(tenant_id, BORIS, [queue_id], {})
        a.runtime.pause(BORIS, "training")
        await presence_written(a)
        b = await start_node(other, "node-2", queue)
        try:
            anna, boris = b.runtime.agent(tenant_id, ANNA), b.runtime.agent(tenant_id, BORIS)
            assert anna is not None and anna.status is AgentStatus.AVAILABLE
            assert boris is not None and boris.status is AgentStatus.NOT_READY and boris.reason == "training"
        finally:
            await b.runtime.stop()
    finally:
        await a.runtime.stop()
        await other.dispose()


async def test_an_agent_on_an_ordinary_call_on_one_node_is_busy_for_the_other(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    await logged_in_everywhere(a, b, tenant_id, queue_id)
    # Anna answers an extension call on node 2 (what the call engine reports there): node 2 marks her
    b.runtime.feed(lambda c, now: c.set_busy_elsewhere(ANNA, True, now))
    await b.holds.flush()
    assert await claims(a.db) == {str(ANNA): "node-2"}

    # node 1's queue call is offered to her before node 1 has read the claims: the claim is refused
    a.runtime.feed(lambda c, now: c.join("call-a", queue_id, now, number="100"))
    assert [(o.call_id, o.agent_id) for o in a.offers] == [("call-a", ANNA)]
    assert await a.runtime.claim(ANNA, "call-a") is False
    anna = a.runtime.center.agents[ANNA]
    assert anna.held_elsewhere and anna.status is AgentStatus.AVAILABLE and anna.missed == 0
    snapshot = a.runtime.snapshot(tenant_id, queue_id)
    assert snapshot is not None and snapshot.agents == {"busy": 1} and snapshot.waiting == 1

    # her call on node 2 ends: the mark goes, node 1 offers her its caller at its next read
    b.runtime.feed(lambda c, now: c.set_busy_elsewhere(ANNA, False, now))
    await b.holds.flush()
    assert await claims(a.db) == {}
    await a.runtime.sync_claims()
    assert a.runtime.center.agents[ANNA].held_elsewhere is False
    assert (a.offers[-1].call_id, a.offers[-1].agent_id) == ("call-a", ANNA)
    assert await a.runtime.claim(ANNA, "call-a") is True


async def test_the_caller_who_waited_longest_on_any_node_gets_the_next_free_agent(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    a.runtime.login(tenant_id, ANNA, [queue_id], {})
    a.runtime.pause(ANNA, "lunch")
    await presence_written(a)
    await b.hear()
    # a caller waits on node 2, then another on node 1; both nodes' lines are in the database
    b.runtime.feed(lambda c, now: c.join("call-b", queue_id, now - JOINED_BEFORE, number="200"))
    a.runtime.feed(lambda c, now: c.join("call-a", queue_id, now, number="100"))
    await b.holds.flush()
    await a.holds.flush()
    assert a.offers == b.offers == []

    # the wallboard of each node counts the other's caller too
    await a.runtime.sync_claims()
    await b.runtime.sync_claims()
    for node in (a, b):
        snapshot = node.runtime.snapshot(tenant_id, queue_id)
        assert snapshot is not None and snapshot.waiting == 2 and snapshot.longest_wait > 0

    # Anna is back on node 1: node 1 offers her its own caller, but node 2's waited longer: node 1 lets go
    a.runtime.unpause(ANNA)
    assert [(o.call_id, o.agent_id) for o in a.offers] == [("call-a", ANNA)]
    assert await a.runtime.claim(ANNA, "call-a") is False
    assert a.runtime.center.agents[ANNA].held_elsewhere and a.runtime.center.agents[ANNA].missed == 0
    await presence_written(a)
    await b.hear()  # the unpause, and node 1's word that it let her go
    assert [(o.call_id, o.agent_id) for o in b.offers] == [("call-b", ANNA)]
    assert await b.runtime.claim(ANNA, "call-b") is True
    assert await claims(a.db) == {str(ANNA): "node-2"}
    assert b.runtime.feed(lambda c, now: c.offer_answered("call-b", ANNA, now)) is True
    await b.holds.flush()

    # node 1 keeps its caller for her next turn; its wallboard shows node 2's caller gone
    await a.runtime.sync_claims()
    anna = a.runtime.center.agents[ANNA]
    assert anna.held_elsewhere and "call-a" in a.runtime.center.waiting
    snapshot = a.runtime.snapshot(tenant_id, queue_id)
    assert snapshot is not None and snapshot.waiting == 1 and snapshot.agents == {"busy": 1}
    # her call on node 2 ends: node 1's caller is the only one left, she is offered it
    b.runtime.feed(lambda c, now: c.call_ended("call-b", now, by_agent=False))
    await b.holds.flush()
    await a.runtime.sync_claims()
    assert (a.offers[-1].call_id, a.offers[-1].agent_id) == ("call-a", ANNA)
    assert await a.runtime.claim(ANNA, "call-a") is True


async def test_an_earlier_caller_already_offered_or_of_a_dead_node_does_not_hold_her_back(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    a.runtime.login(tenant_id, ANNA, [queue_id], {})
    a.runtime.pause(ANNA, "lunch")
    await presence_written(a)
    await b.hear()
    b.runtime.feed(lambda c, now: c.join("call-b", queue_id, now, number="200"))
    await b.holds.flush()
    # node 2's caller is being offered to someone already (an agent row names its call); a caller of a node
    # killed a minute ago (its row not refreshed since, not swept yet) is not waiting any more
    async with b.db.session() as session:
        session.add(CallHold(id="x" * 32, node="node-2", kind=AGENT, key="999", call_id="call-b",
                             updated_at=datetime.now(UTC)))
        session.add(CallHold(id="y" * 32, node="node-3", kind=CALLER, key=str(queue_id), call_id="call-dead",
                             since=0.0, updated_at=datetime.now(UTC) - timedelta(minutes=1)))
        await session.commit()
    await a.runtime.sync_claims()
    snapshot = a.runtime.snapshot(tenant_id, queue_id)
    assert snapshot is not None and snapshot.waiting == 1  # node 2's caller, not the dead node's
    a.runtime.feed(lambda c, now: c.join("call-a", queue_id, now, number="100"))
    a.runtime.unpause(ANNA)
    assert await a.runtime.claim(ANNA, "call-a") is True


async def test_round_robin_and_the_agents_call_counts_go_on_across_nodes(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    for node in (a, b):
        config = node.runtime.center.queues[queue_id]
        node.runtime.center.set_queue(replace(config, strategy=Strategy.ROUND_ROBIN), node.runtime.clock())
    a.runtime.login(tenant_id, ANNA, [queue_id], {})
    a.runtime.login(tenant_id, BORIS, [queue_id], {})
    await presence_written(a)
    await b.hear()
    # node 2's caller goes to Anna (round robin starts with the lowest id) and talks to her
    b.runtime.feed(lambda c, now: c.join("call-b", queue_id, now, number="200"))
    assert [(o.call_id, o.agent_id) for o in b.offers] == [("call-b", ANNA)]
    assert await b.runtime.claim(ANNA, "call-b") is True
    assert b.runtime.feed(lambda c, now: c.offer_answered("call-b", ANNA, now)) is True
    b.runtime.feed(lambda c, now: c.call_ended("call-b", now, by_agent=False))
    talked = b.runtime.center.agents[ANNA].talk_time
    await presence_written(b)
    await a.hear()
    await b.holds.flush()
    await a.runtime.sync_claims()
    # node 1 knows her call, and its round robin goes on after her: its caller goes to Boris
    anna = a.runtime.center.agents[ANNA]
    assert (anna.calls, anna.talk_time) == (1, talked)
    a.runtime.feed(lambda c, now: c.join("call-a", queue_id, now, number="100"))
    assert [(o.call_id, o.agent_id) for o in a.offers] == [("call-a", BORIS)]
    async with a.db.session() as session:
        row = await session.get(AgentPresence, ANNA)
        assert row is not None and (row.calls, row.offered_queue) == (1, queue_id)


async def test_an_agent_finishing_a_call_on_one_node_goes_to_the_other_nodes_longer_waiting_caller(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    await logged_in_everywhere(a, b, tenant_id, queue_id)
    # Anna talks to node 1's first caller; node 2's caller, then node 1's second, join meanwhile
    a.runtime.feed(lambda c, now: c.join("call-a1", queue_id, now, number="100"))
    assert await a.runtime.claim(ANNA, "call-a1") is True
    assert a.runtime.feed(lambda c, now: c.offer_answered("call-a1", ANNA, now)) is True
    b.runtime.feed(lambda c, now: c.join("call-b", queue_id, now - JOINED_BEFORE, number="200"))
    a.runtime.feed(lambda c, now: c.join("call-a2", queue_id, now, number="300"))
    await a.holds.flush()
    await b.holds.flush()
    await b.runtime.sync_claims()  # (node 2 had offered her its caller: withdrawn, node 1 has her)
    anna = b.runtime.center.agents[ANNA]
    assert anna.held_elsewhere and anna.status is AgentStatus.AVAILABLE and anna.offer is None
    offered = len(b.offers)

    # the call ends: node 1 offers her its own next caller, but node 2's has waited longer
    a.runtime.feed(lambda c, now: c.call_ended("call-a1", now, by_agent=False))
    assert (a.offers[-1].call_id, a.offers[-1].agent_id) == ("call-a2", ANNA)
    assert await a.runtime.claim(ANNA, "call-a2") is False
    assert await claims(a.db) == {}  # node 1's claim, kept since the first call, is given up
    assert a.runtime.center.agents[ANNA].held_elsewhere and "call-a2" in a.runtime.center.waiting
    await b.hear()  # node 1's word that it let her go: node 2 reads the claims at once
    assert [(o.call_id, o.agent_id) for o in b.offers[offered:]] == [("call-b", ANNA)]
    assert await b.runtime.claim(ANNA, "call-b") is True
    assert await claims(a.db) == {str(ANNA): "node-2"}


async def test_the_announced_position_and_wait_count_the_callers_ahead_on_the_other_node(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    for node in (a, b):
        config = node.runtime.center.queues[queue_id]
        node.runtime.center.set_queue(replace(config, announce_every=30), node.runtime.clock())
    announced: list[Announce] = []
    a.runtime.action_handlers.append(lambda x: announced.append(x) if isinstance(x, Announce) else None)
    await logged_in_everywhere(a, b, tenant_id, queue_id)
    b.runtime.login(tenant_id, BORIS, [queue_id], {})
    b.runtime.pause(BORIS, "lunch")  # Anna works the queue (but is on another call), Boris does not
    await presence_written(b)
    await a.hear()
    a.runtime.feed(lambda c, now: c.set_busy_elsewhere(ANNA, True, now))
    await a.holds.flush()
    await b.runtime.sync_claims()
    # node 2's caller joins first, then node 1's; then a VIP on node 2 (JOINED_BEFORE)
    b.runtime.feed(lambda c, now: c.join("call-b1", queue_id, now - 2 * JOINED_BEFORE, number="200"))
    a.runtime.feed(lambda c, now: c.join("call-a", queue_id, now - JOINED_BEFORE, number="100"))
    b.runtime.feed(lambda c, now: c.join("call-vip", queue_id, now, number="300", priority=5))
    assert a.offers == b.offers == []
    assert a.runtime.center.position("call-a") == 1  # before node 1 has read the other node's line
    await b.holds.flush()
    await a.holds.flush()
    await a.runtime.sync_claims()
    await b.runtime.sync_claims()
    assert a.runtime.center.position("call-a") == 3  # the VIP and node 2's earlier caller are ahead
    assert [b.runtime.center.position(c) for c in ("call-vip", "call-b1")] == [1, 2]  # node 1's is behind

    a.runtime.feed(lambda c, now: c.handle_timer(now + 31))  # the announcement is due
    # three calls ahead of its turn, the queue's default handle time (120 s), one agent working
    assert announced == [Announce(call_id="call-a", position=3, wait_estimate=360)]

    # node 2's callers hang up: node 1's caller is first at its next read
    b.runtime.feed(lambda c, now: c.caller_left("call-b1", now))
    b.runtime.feed(lambda c, now: c.caller_left("call-vip", now))
    await b.holds.flush()
    await a.runtime.sync_claims()
    assert a.runtime.center.position("call-a") == 1


async def test_a_callback_request_kept_by_one_node_is_offered_before_the_other_nodes_later_caller(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    a.runtime.login(tenant_id, ANNA, [queue_id], {})
    a.runtime.pause(ANNA, "lunch")
    await presence_written(a)
    await b.hear()
    # a caller on node 1 asks to be called back; later a caller waits on node 2
    a.runtime.feed(lambda c, now: c.join("call-a", queue_id, now, number="100"))
    a.runtime.feed(lambda c, now: c.request_callback("call-a", now, number="+74951234567"))
    a.runtime.feed(lambda c, now: c.caller_left("call-a", now))  # the live call ends, the request stays
    b.runtime.feed(lambda c, now: c.join("call-b", queue_id, now, number="200"))
    await a.holds.flush()
    await b.holds.flush()
    async with a.db.session() as session:
        kinds = (await session.execute(select(CallHold.call_id, CallHold.kind).where(
            CallHold.kind.in_([CALLER, CALLBACK])))).tuples().all()
    assert sorted(kinds) == [("call-a", CALLBACK), ("call-b", CALLER)]
    await a.runtime.sync_claims()
    await b.runtime.sync_claims()
    for node in (a, b):  # each node's wallboard counts both: one caller, one callback request
        snapshot = node.runtime.snapshot(tenant_id, queue_id)
        assert snapshot is not None and (snapshot.waiting, snapshot.callbacks) == (1, 1)
    assert b.runtime.center.position("call-b") == 2
    assert [r.position for r in a.runtime.callbacks(tenant_id, queue_id)] == [1]

    # Anna is back on node 2: node 2 offers her its caller, but node 1's request came first: node 2 lets go
    b.runtime.unpause(ANNA)
    assert [(o.call_id, o.agent_id) for o in b.offers] == [("call-b", ANNA)]
    assert await b.runtime.claim(ANNA, "call-b") is False
    await presence_written(b)
    await a.hear()  # the unpause, and node 2's word that it let her go
    assert [(o.call_id, o.agent_id, o.callback) for o in a.offers] == [("call-a", ANNA, True)]
    assert await a.runtime.claim(ANNA, "call-a") is True
    assert a.runtime.feed(lambda c, now: c.offer_answered("call-a", ANNA, now)) is True

    # the customer's line is busy: the request waits for its retry, out of the shared line meanwhile;
    # node 2's caller gets her at node 2's next read
    a.runtime.feed(lambda c, now: c.callback_failed("call-a", now, reason="busy"))
    assert "call-a" in a.runtime.center.waiting and a.runtime.center.agents[ANNA].status is AgentStatus.AVAILABLE
    await a.holds.flush()
    assert await claims(a.db) == {}
    await b.runtime.sync_claims()
    assert (b.offers[-1].call_id, b.offers[-1].agent_id) == ("call-b", ANNA)
    assert await b.runtime.claim(ANNA, "call-b") is True
    snapshot = b.runtime.snapshot(tenant_id, queue_id)
    assert snapshot is not None and (snapshot.waiting, snapshot.callbacks) == (1, 0)  # (retrying: not counted)


async def test_a_heavier_queues_caller_on_the_other_node_gets_the_shared_agent_first(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    async with a.db.session() as session:
        vip = CallQueue(tenant_id=tenant_id, name="VIP", number="501", requirements=[], relaxations=[], wrap_up=0)
        session.add(vip)
        await session.commit()
        vip_id = vip.id
    for node in (a, b):
        config = node.runtime.center.queues[queue_id]
        node.runtime.center.set_queue(replace(config, id=vip_id, weight=10), node.runtime.clock())
    a.runtime.login(tenant_id, ANNA, [queue_id, vip_id], {})
    a.runtime.pause(ANNA, "lunch")
    await presence_written(a)
    await b.hear()
    assert b.runtime.center.agents[ANNA].queues == {queue_id, vip_id}
    # node 1's caller of the ordinary queue joins first, node 2's of the heavier queue later
    a.runtime.feed(lambda c, now: c.join("call-a", queue_id, now, number="100"))
    b.runtime.feed(lambda c, now: c.join("call-b", vip_id, now, number="200"))
    await a.holds.flush()
    await b.holds.flush()

    a.runtime.unpause(ANNA)
    assert [(o.call_id, o.agent_id) for o in a.offers] == [("call-a", ANNA)]
    assert await a.runtime.claim(ANNA, "call-a") is False  # the heavier queue's caller is ahead
    await presence_written(a)
    await b.hear()
    assert [(o.call_id, o.agent_id) for o in b.offers] == [("call-b", ANNA)]
    assert await b.runtime.claim(ANNA, "call-b") is True  # the lighter queue's earlier caller holds none back
    assert await claims(a.db) == {str(ANNA): "node-2"}


async def test_the_wait_estimate_counts_the_calls_handled_on_the_other_node(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    await logged_in_everywhere(a, b, tenant_id, queue_id)
    # Anna talks ten minutes to node 2's caller
    b.runtime.feed(lambda c, now: c.join("call-b", queue_id, now, number="200"))
    assert await b.runtime.claim(ANNA, "call-b") is True
    assert b.runtime.feed(lambda c, now: c.offer_answered("call-b", ANNA, now)) is True
    b.runtime.feed(lambda c, now: c.call_ended("call-b", now + 600, by_agent=False))
    await b.holds.flush()
    async with a.db.session() as session:
        rows = (await session.execute(select(CallHold.node, CallHold.key, CallHold.priority).where(
            CallHold.kind == HANDLED))).tuples().all()
    assert rows == [("node-2", str(queue_id), 1)]  # node 2's handled calls, for the other nodes
    assert a.runtime.center.wait_estimate(queue_id, 1) == 120  # node 1 has read nothing yet: the default
    await a.runtime.sync_claims()
    assert a.runtime.center.wait_estimate(queue_id, 1) == 600  # one agent working, node 2's call
    # then five minutes to node 1's caller: node 1's estimate averages both nodes' calls, and so does node 2's
    a.runtime.feed(lambda c, now: c.join("call-a", queue_id, now, number="100"))
    assert await a.runtime.claim(ANNA, "call-a") is True
    assert a.runtime.feed(lambda c, now: c.offer_answered("call-a", ANNA, now)) is True
    a.runtime.feed(lambda c, now: c.call_ended("call-a", now + 300, by_agent=False))
    await a.holds.flush()
    await b.runtime.sync_claims()
    assert a.runtime.center.wait_estimate(queue_id, 1) == b.runtime.center.wait_estimate(queue_id, 1) == 450
    assert a.runtime.center.wait_estimate(queue_id, 2) == 900


async def test_an_agent_let_go_for_a_caller_who_hangs_up_meanwhile_is_offered_again_soon(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    a.runtime.recheck_after = 0.1  # (1 s in service; the periodic read is an hour away here)
    a.runtime.login(tenant_id, ANNA, [queue_id], {})
    a.runtime.pause(ANNA, "lunch")
    await presence_written(a)
    await b.hear()
    b.runtime.feed(lambda c, now: c.join("call-b", queue_id, now - JOINED_BEFORE, number="200"))
    a.runtime.feed(lambda c, now: c.join("call-a", queue_id, now, number="100"))
    await b.holds.flush()
    await a.holds.flush()
    # Anna is back on node 1: node 2's caller waited longer, node 1 lets her go ...
    a.runtime.unpause(ANNA)
    assert await a.runtime.claim(ANNA, "call-a") is False
    # ... but node 2's caller hangs up before node 2 hears of it: nobody takes her there
    b.runtime.feed(lambda c, now: c.caller_left("call-b", now))
    await b.holds.flush()
    await presence_written(a)
    await b.hear()
    assert b.offers == [] and await claims(a.db) == {}
    # node 1 reads the claims again shortly after letting her go (not at its next periodic read)
    async with asyncio.timeout(30):
        while len(a.offers) < 2:
            await asyncio.sleep(0.05)
    assert [(o.call_id, o.agent_id) for o in a.offers] == [("call-a", ANNA), ("call-a", ANNA)]
    assert await a.runtime.claim(ANNA, "call-a") is True


async def test_an_agent_already_on_a_call_when_logging_in_is_busy_on_every_node(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    on_call = {ANNA: b, BORIS: a}  # (what each node's call engine says)
    for node in (a, b):
        node.runtime.on_other_call = lambda employee, node=node: on_call.get(employee) is node
    a.runtime.feed(lambda c, now: c.join("call-a", queue_id, now, number="100"))
    # Boris, talking on node 1, logs in there: busy at once, node 1's caller is not offered to him
    a.runtime.login(tenant_id, BORIS, [queue_id], {})
    boris = a.runtime.center.agents[BORIS]
    assert boris.busy_elsewhere and boris.status is AgentStatus.AVAILABLE and a.offers == []
    await a.holds.flush()
    assert await claims(a.db) == {str(BORIS): "node-1"}  # busy for node 2 too
    # Anna, talking on node 2, logs in on node 1: node 2 marks her when it hears of the login
    a.runtime.login(tenant_id, ANNA, [queue_id], {})
    assert [(o.call_id, o.agent_id) for o in a.offers] == [("call-a", ANNA)]  # node 1 cannot know yet
    await presence_written(a)
    await b.hear()
    assert b.runtime.center.agents[ANNA].busy_elsewhere
    await b.holds.flush()
    assert await claims(a.db) == {str(BORIS): "node-1", str(ANNA): "node-2"}
    assert await a.runtime.claim(ANNA, "call-a") is False  # found before her phone rings: no offer, no miss
    anna = a.runtime.center.agents[ANNA]
    assert anna.held_elsewhere and anna.missed == 0 and "call-a" in a.runtime.center.waiting
    # her call on node 2 ends: node 1's caller is offered to her at node 1's next read
    b.runtime.feed(lambda c, now: c.set_busy_elsewhere(ANNA, False, now))
    await b.holds.flush()
    await a.runtime.sync_claims()
    assert (a.offers[-1].call_id, a.offers[-1].agent_id) == ("call-a", ANNA)
    assert await a.runtime.claim(ANNA, "call-a") is True


async def test_a_login_reads_another_nodes_mark_on_the_agent_soon(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, _b = nodes
    tenant_id, queue_id = company
    a.runtime.recheck_after = 0.1
    async with a.db.session() as session:  # Anna talks on node 3 (which marked her before she logged in)
        session.add(CallHold(id="z" * 32, node="node-3", kind=AGENT, key=str(ANNA), call_id="busy",
                             updated_at=datetime.now(UTC)))
        await session.commit()
    a.runtime.login(tenant_id, ANNA, [queue_id], {})
    async with asyncio.timeout(30):  # read shortly after the login, not at the next periodic read
        while not a.runtime.center.agents[ANNA].held_elsewhere:
            await asyncio.sleep(0.05)
    a.runtime.feed(lambda c, now: c.join("call-a", queue_id, now, number="100"))
    assert a.offers == []
    snapshot = a.runtime.snapshot(tenant_id, queue_id)
    assert snapshot is not None and snapshot.agents == {"busy": 1}


async def test_a_login_on_one_node_just_after_a_logout_on_the_other_ends_logged_in_everywhere(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    vip_id = await second_queue(nodes, tenant_id, queue_id)
    await logged_in_everywhere(a, b, tenant_id, queue_id)
    # Anna is logged out on node 2, and within milliseconds logged in to the VIP queue too on node 1, which
    # has not heard of the logout: node 1 reads the row node 2 deleted before its own login is written
    b.runtime.logout(ANNA, None)
    await presence_written(b)
    async with presence_writes_held(a.db):
        a.runtime.login(tenant_id, ANNA, [vip_id], {})
        await a.hear()
        anna = a.runtime.center.agents[ANNA]
        assert anna.status is AgentStatus.AVAILABLE and anna.queues == {queue_id, vip_id}  # the last word here
    await presence_written(a)
    await a.runtime.settled()
    await b.hear()
    # the login, written last, wins on both nodes (node 1 knew nothing of the logout: it kept the first queue)
    assert await presence_row(a.db, ANNA) == {queue_id, vip_id}
    for node in (a, b):
        anna = node.runtime.center.agents[ANNA]
        assert (anna.status, anna.queues) == (AgentStatus.AVAILABLE, {queue_id, vip_id}), node.holds.node


async def test_a_logout_on_one_node_just_after_a_login_on_the_other_ends_logged_out_everywhere(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    vip_id = await second_queue(nodes, tenant_id, queue_id)
    await logged_in_everywhere(a, b, tenant_id, queue_id)
    # Anna is logged in to the VIP queue too on node 2, and within milliseconds logged out on node 1, which
    # has not heard of the login: node 1 reads node 2's row before its own logout is written
    b.runtime.login(tenant_id, ANNA, [vip_id], {})
    await presence_written(b)
    async with presence_writes_held(a.db):
        a.runtime.logout(ANNA, None)
        await a.hear()
        assert a.runtime.center.agents[ANNA].status is AgentStatus.OFFLINE  # the last word here
    await presence_written(a)
    await a.runtime.settled()
    await b.hear()
    assert await presence_row(a.db, ANNA) is None
    for node in (a, b):
        anna = node.runtime.center.agents[ANNA]
        assert (anna.status, anna.queues) == (AgentStatus.OFFLINE, set()), node.holds.node


async def a_queue_call_on(node: Node, call_id: str, queue_id: int) -> None:
    """Anna answers ``node``'s queue caller (the node claims her first)."""
    node.runtime.feed(lambda c, now: c.join(call_id, queue_id, now, number="100"))
    assert (node.offers[-1].call_id, node.offers[-1].agent_id) == (call_id, ANNA)
    assert await node.runtime.claim(ANNA, call_id) is True
    assert node.runtime.feed(lambda c, now: c.offer_answered(call_id, ANNA, now)) is True


async def test_a_queue_call_ending_on_one_node_as_the_other_logs_the_agent_out_does_not_log_her_in_again(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    await logged_in_everywhere(a, b, tenant_id, queue_id)
    await a_queue_call_on(a, "call-a", queue_id)
    await presence_written(a)
    # Anna is logged out on node 2 just as her call ends on node 1, which has not heard of the logout yet: its
    # write of her call count (the strategies' memory) is pending when node 1 reads the row node 2 deleted
    b.runtime.logout(ANNA, None)
    await presence_written(b)
    async with presence_writes_held(a.db):
        a.runtime.feed(lambda c, now: c.call_ended("call-a", now, by_agent=False))
        assert a.runtime.center.agents[ANNA].calls == 1
        await a.hear()
        anna = a.runtime.center.agents[ANNA]
        assert anna.queues == {queue_id}  # (the row waits until node 1's own write is done, then is read again)
    await presence_written(a)
    await a.runtime.settled()
    assert await presence_row(a.db, ANNA) is None  # the count alone does not make her row again
    await b.hear()
    for node in (a, b):
        anna = node.runtime.center.agents[ANNA]
        assert (anna.status, anna.queues) == (AgentStatus.OFFLINE, set()), node.holds.node
    assert await presence_row(a.db, ANNA) is None


async def test_a_call_count_written_on_one_node_reaches_the_other_and_keeps_the_pause_made_there(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    await logged_in_everywhere(a, b, tenant_id, queue_id)
    await a_queue_call_on(a, "call-a", queue_id)
    await presence_written(a)
    # Anna is paused on node 2 during her call on node 1, which hears of it only after the call
    b.runtime.pause(ANNA, "lunch")
    await presence_written(b)
    a.runtime.feed(lambda c, now: c.call_ended("call-a", now, by_agent=False))
    talked = a.runtime.center.agents[ANNA].talk_time
    await presence_written(a)
    await a.runtime.settled()
    await paused_by_node_2_with_one_call(a, b, queue_id, talked)


async def paused_by_node_2_with_one_call(a: Node, b: Node, queue_id: int, talked: float) -> None:
    """Anna's row says node 2's pause and node 1's call, and so do both nodes once they have read it."""
    async with a.db.session() as session:
        row = await session.get(AgentPresence, ANNA)
        assert row is not None and (row.queues, row.reason, row.node) == ([queue_id], "lunch", "node-2")
        assert (row.calls, row.talk_time) == (1, talked)
    await a.hear()
    await b.hear()
    for node in (a, b):
        anna = node.runtime.center.agents[ANNA]
        assert (anna.status, anna.reason, anna.calls, anna.talk_time) == (
            AgentStatus.NOT_READY, "lunch", 1, talked), node.holds.node


async def test_a_pause_written_on_a_node_that_has_not_heard_of_a_call_count_keeps_the_count(
        nodes: tuple[Node, Node], company: tuple[int, int]) -> None:
    # the pause is a whole-row write of node 2's view: it set the counts (and the round-robin memory) to node
    # 2's own, and node 1's call (written just before, not heard on node 2 yet) was lost for every node
    a, b = nodes
    tenant_id, queue_id = company
    await logged_in_everywhere(a, b, tenant_id, queue_id)
    await a_queue_call_on(a, "call-a", queue_id)
    a.runtime.feed(lambda c, now: c.call_ended("call-a", now, by_agent=False))
    talked = a.runtime.center.agents[ANNA].talk_time
    await presence_written(a)
    await a.runtime.settled()
    assert b.runtime.center.agents[ANNA].calls == 0  # node 2 has not read it
    b.runtime.pause(ANNA, "lunch")
    await presence_written(b)
    await paused_by_node_2_with_one_call(a, b, queue_id, talked)


async def leave_callbacks(node: Node, queue_id: int, requests: list[tuple[str, int]]) -> None:
    """Callers join ``node``'s queue in this order (call id, priority) and press the callback key in the
    opposite order (the rows' ids are not the line's order), then hang up; the requests are written."""
    for call_id, priority in requests:
        node.runtime.feed(lambda c, now, i=call_id, p=priority: c.join(i, queue_id, now, number="100", priority=p))
    for call_id, _ in reversed(requests):
        node.runtime.feed(lambda c, now, i=call_id: c.request_callback(i, now, number=f"+7495000{i[-4:]}"))
        node.runtime.feed(lambda c, now, i=call_id: c.caller_left(i, now))
    await node.runtime.flush()
    await node.holds.flush()


async def owners(db: Database) -> dict[str, tuple[str | None, str]]:
    async with db.session() as session:
        rows = await session.execute(select(QueueCallbackRow.call_id, QueueCallbackRow.owner, QueueCallbackRow.state))
        return {call_id: (owner, state) for call_id, owner, state in rows.tuples()}


async def node_dies(dead: Node, *alive: Node) -> None:
    """``dead`` is killed (it refreshes nothing from now on); the dead-node sweep deletes its rows."""
    swept = datetime.now(UTC)
    for node in alive:
        await node.holds.beat()
    async with dead.db.session() as session:
        mine = (await session.execute(select(func.count()).select_from(CallHold).where(
            CallHold.node == dead.holds.node))).scalar_one()
    assert mine >= 1  # its own row at least
    assert await delete_stale(alive[0].db, swept) == mine


async def test_a_dead_nodes_callback_requests_are_taken_over_by_one_survivor_in_their_order(
        nodes: tuple[Node, Node], pg: Database, company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    third = Database(pg.url)  # node 3: its own engine, so the two take-overs below really run at once
    c = await start_node(third, "node-3", b.runtime.center.queues[queue_id])
    try:
        await leave_callbacks(a, queue_id, [("cb-0001", 0), ("cb-0002", 0), ("cb-0003", 5)])
        assert await owners(pg) == {
            f"cb-000{n}": ("node-1", "waiting") for n in (1, 2, 3)}
        assert await b.runtime.take_over_callbacks() == 0  # node 1 is alive: its requests are its own
        await node_dies(a, b, c)

        taken = await asyncio.gather(b.runtime.take_over_callbacks(), c.runtime.take_over_callbacks())
        assert sorted(taken) == [0, 3]  # one survivor took them all, the other none
        winner, loser = (b, c) if taken[0] == 3 else (c, b)
        assert set((await owners(pg)).values()) == {(winner.holds.node, "waiting")}
        # their places: the higher priority first, then the order they joined (not the order they pressed)
        lined = winner.runtime.callbacks(tenant_id, queue_id)
        assert [(r.call_id, r.position, r.number) for r in lined] == [
            ("cb-0003", 1, "+74950000003"), ("cb-0001", 2, "+74950000001"), ("cb-0002", 3, "+74950000002")]
        assert loser.runtime.callbacks(tenant_id, queue_id) == []
        assert await loser.runtime.take_over_callbacks() == 0 and await winner.runtime.take_over_callbacks() == 0

        # the winner offers them as its own: the first one to the agent logged in (on the loser's node)
        loser.runtime.login(tenant_id, ANNA, [queue_id], {})
        await presence_written(loser)
        await winner.hear()
        assert [(o.call_id, o.agent_id, o.callback) for o in winner.offers] == [("cb-0003", ANNA, True)]
        assert await winner.runtime.claim(ANNA, "cb-0003") is True
        assert winner.runtime.feed(lambda c_, now: c_.offer_answered("cb-0003", ANNA, now)) is True
        winner.runtime.feed(lambda c_, now: c_.callback_answered("cb-0003", now))
        await winner.runtime.flush()
        assert (await owners(pg))["cb-0003"] == (winner.holds.node, "done")
        assert loser.offers == []
    finally:
        await c.runtime.stop()
        await third.dispose()


async def test_a_restarted_node_does_not_serve_the_requests_taken_over_from_it(
        nodes: tuple[Node, Node], pg: Database, company: tuple[int, int]) -> None:
    a, b = nodes
    tenant_id, queue_id = company
    await leave_callbacks(a, queue_id, [("cb-0001", 0)])
    await node_dies(a, b)
    assert await b.runtime.take_over_callbacks() == 1
    # node 1 comes back under its own name: it reads its own requests (none now) and takes over no live node's
    restarted = await start_node(Database(pg.url), "node-1", b.runtime.center.queues[queue_id])
    try:
        assert restarted.runtime.callbacks(tenant_id, queue_id) == []
        assert await restarted.runtime.take_over_callbacks() == 0
        assert [r.call_id for r in b.runtime.callbacks(tenant_id, queue_id)] == ["cb-0001"]
    finally:
        await restarted.runtime.stop()
        await restarted.db.dispose()
    # node 1's first life, taken for dead while it was not (its store away): it still has the request, but
    # neither offers it to an agent nor changes its row; its next sweep lets it go
    a.runtime.login(tenant_id, ANNA, [queue_id], {})
    assert [(o.call_id, o.agent_id) for o in a.offers] == [("cb-0001", ANNA)]
    assert await a.runtime.claim(ANNA, "cb-0001") is False
    assert "cb-0001" not in a.runtime.center.waiting
    assert a.runtime.center.agents[ANNA].status is AgentStatus.AVAILABLE
    a.runtime.center.restore_callback("cb-0001", queue_id, a.runtime.clock(), number="+74950000001", joined_at=0.0)
    a.runtime.logout(ANNA, None)
    a.runtime.feed(lambda c, now: c.cancel_callback("cb-0001", now))  # its write finds the row not its own
    await a.runtime.flush()
    assert (await owners(pg))["cb-0001"] == ("node-2", "waiting")
    a.runtime.center.restore_callback("cb-0001", queue_id, a.runtime.clock(), number="+74950000001", joined_at=0.0)
    assert await a.runtime.take_over_callbacks() == 0
    assert "cb-0001" not in a.runtime.center.waiting
