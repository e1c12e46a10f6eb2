"""Callback requests kept across restarts: the center's changes for each step of a request (waiting, dialing,
back to waiting after a failed attempt, done, failed, cancelled), the store's rows on SQLite and PostgreSQL,
and a new runtime over the same database putting the open requests back in line in their order — ahead of a
caller who joins after the restart, a dialing one waiting again, the finished ones left out."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from zvonok.callcenter import callbacks
from zvonok.callcenter.center import ContactCenter, Offer
from zvonok.callcenter.models import CallQueue, QueueCallbackRow
from zvonok.callcenter.queues import QueueConfig
from zvonok.callcenter.runtime import CallCenterRuntime
from zvonok.org.models import Tenant
from zvonok.storage.db import Database

WALL = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _center() -> ContactCenter:
    center = ContactCenter(wall_offset=WALL)
    center.set_queue(QueueConfig(id=1, tenant_id=7, wrap_up=0, callback_attempts=2, callback_retry=60), 0.0)
    return center


def test_each_step_of_a_request_is_a_change() -> None:
    center = _center()
    center.join("live", 1, 0.0, number="100")
    center.join("cb", 1, 1.0, number="200")
    center.request_callback("cb", 5.0, number="+74950000002")
    [first] = center.take_callback_changes()
    assert (first.state, first.number, first.position, first.joined_at, first.requested_at) == (
        "waiting", "+74950000002", 2, WALL + 1.0, WALL + 5.0)
    center.caller_left("live", 6.0)  # not a callback: no change
    assert center.take_callback_changes() == []
    center.login(42, [1], 10.0)
    [offer] = [a for a in center.take_actions() if isinstance(a, Offer)]
    assert offer.callback and offer.call_id == "cb"
    assert center.take_callback_changes() == []  # the agent's phone ringing: still waiting
    assert center.offer_answered("cb", 42, 12.0)
    assert [(c.state, c.requested_at) for c in center.take_callback_changes()] == [("dialing", None)]
    center.callback_failed("cb", 20.0, reason="busy")
    [retry] = center.take_callback_changes()
    assert (retry.state, retry.attempts, retry.last_result, retry.retry_at) == ("waiting", 1, "busy", WALL + 80.0)
    center.handle_timer(80.0)
    assert center.offer_answered("cb", 42, 81.0)
    center.callback_failed("cb", 90.0, reason="no_answer")  # the second of two attempts: given up
    assert [(c.state, c.attempts, c.last_result) for c in center.take_callback_changes()] == [
        ("dialing", 1, None), ("failed", 2, "no_answer")]
    assert "cb" not in center.waiting and not center.in_call


def test_answered_is_done_and_a_cancelled_request_frees_the_ringing_agent() -> None:
    center = _center()
    center.join("a", 1, 0.0, number="1")
    center.join("b", 1, 1.0, number="2")
    center.request_callback("a", 2.0)
    center.request_callback("b", 3.0)
    center.login(42, [1], 4.0)
    assert center.offer_answered("a", 42, 5.0)
    center.callback_answered("a", 9.0)
    center.take_callback_changes()
    assert not center.cancel_callback("a", 10.0) and center.dialing_callback("a") is False
    center.call_ended("a", 30.0, by_agent=True)  # wrap-up 0: the agent is offered "b" at once
    assert center.agents[42].offer == "b"
    assert center.cancel_callback("b", 31.0)
    assert [(c.call_id, c.state, c.last_result) for c in center.take_callback_changes()] == [
        ("b", "cancelled", "cancelled")]
    assert not center.waiting and center.agents[42].status.value == "available" and center.agents[42].offer is None
    assert not center.cancel_callback("b", 32.0)  # once is enough


def test_restored_requests_keep_their_places_against_live_callers() -> None:
    center = _center()
    center.join("live-1", 1, 100.0, number="1")
    center.restore_callback("old-2", 1, 100.0, number="2", joined_at=-50.0, attempts=1, not_before=130.0)
    center.restore_callback("old-1", 1, 100.0, number="3", joined_at=-90.0)
    assert [c.call_id for c in center.callbacks(1, 100.0)] == ["old-1", "old-2"]
    assert [c.position for c in center.callbacks(1, 100.0)] == [1, 2]
    assert center.position("live-1") == 3
    changes = center.take_callback_changes()
    assert [(c.call_id, c.state, c.attempts, c.retry_at) for c in changes] == [
        ("old-2", "waiting", 1, WALL + 130.0), ("old-1", "waiting", 0, None)]
    center.login(42, [1], 101.0)
    [offer] = [a for a in center.take_actions() if isinstance(a, Offer)]
    assert offer.call_id == "old-1" and offer.callback and offer.number == "3"


async def _tenant_and_queue(db: Database) -> tuple[int, int]:
    async with db.session() as session:
        tenant = Tenant(name="T", sip_domain="t.example", timezone="UTC", currency="RUB", locale="ru")
        session.add(tenant)
        await session.flush()
        queue = CallQueue(tenant_id=tenant.id, name="Q", number="500", requirements=[], relaxations=[], wrap_up=0,
                          callback_key="*")
        session.add(queue)
        await session.commit()
        return tenant.id, queue.id


async def _rows(db: Database) -> dict[str, Any]:
    async with db.session() as session:
        rows = (await session.execute(select(QueueCallbackRow).order_by(QueueCallbackRow.id))).scalars()
        return {r.call_id: (r.state, r.attempts, r.position, r.number, r.joined_at) for r in rows}


async def test_a_new_runtime_over_the_same_database_puts_the_waiting_requests_back_in_order(db: Database) -> None:
    tenant_id, queue_id = await _tenant_and_queue(db)
    clock = Clock(1000.0)
    first = CallCenterRuntime(db, clock=clock, wall=lambda: WALL, flush_delay=0.0, retry_delay=0.01)
    await first.start()
    try:
        for n in range(1, 6):
            clock.now = 1000.0 + n
            first.feed(lambda c, now, n=n: c.join(f"call-{n}", queue_id, now, number=f"10{n}"))
        for n in (1, 2, 4, 5):
            first.feed(lambda c, now, n=n: c.request_callback(f"call-{n}", now, number=f"+7495000000{n}"))
        first.feed(lambda c, now: c.caller_left("call-3", now))  # a live caller gone: no request of its own
        assert first.cancel_callback(tenant_id, "call-5") == "cancelled"
        assert first.cancel_callback(tenant_id + 1, "call-4") == "absent"  # another tenant's: not touched
        first.login(tenant_id, 42, [queue_id], {})  # offered call-1 (first in line), which it answers
        assert first.feed(lambda c, now: c.offer_answered("call-1", 42, now))
        assert first.cancel_callback(tenant_id, "call-1") == "dialing"
        await first.flush()
        rows = await _rows(db)
        assert {k: v[:4] for k, v in rows.items()} == {
            "call-1": ("dialing", 0, 1, "+74950000001"), "call-2": ("waiting", 0, 2, "+74950000002"),
            "call-4": ("waiting", 0, 4, "+74950000004"), "call-5": ("cancelled", 0, 5, "+74950000005")}
        assert rows["call-1"][4] == WALL - 1000.0 + 1001.0  # wall-clock time of joining the line
    finally:
        await first.stop()  # the process dies with call-1's customer being called

    # a new process: another monotonic clock, 500 s of wall time later
    clock2 = Clock(50.0)
    second = CallCenterRuntime(db, clock=clock2, wall=lambda: WALL + 500.0, flush_delay=0.0, retry_delay=0.01)
    await second.start()
    try:
        second.feed(lambda c, now: c.join("call-new", queue_id, now, number="999"))
        listed = second.callbacks(tenant_id, queue_id)
        assert [(c.call_id, c.position, c.number) for c in listed] == [
            ("call-1", 1, "+74950000001"), ("call-2", 2, "+74950000002"), ("call-4", 3, "+74950000004")]
        assert listed[0].waiting == 499.0  # joined 1001 s into the first clock, 500 s of wall time ago
        assert second.center.position("call-new") == 4
        await second.flush()
        assert (await _rows(db))["call-1"][:2] == ("waiting", 0)  # the interrupted attempt is not counted
        actions: list[object] = []
        second.action_handlers.append(actions.append)
        second.login(tenant_id, 42, [queue_id], {})
        offers = [a for a in actions if isinstance(a, Offer)]
        assert [(o.call_id, o.callback, o.number) for o in offers] == [("call-1", True, "+74950000001")]
        async with db.session() as session:
            listed_rows, total = await callbacks.list_queue(session, tenant_id, queue_id, finished=False, limit=10,
                                                            offset=0)
            everything, all_total = await callbacks.list_queue(session, tenant_id, queue_id, finished=True,
                                                               limit=10, offset=0)
        assert [r.call_id for r in listed_rows] == ["call-1", "call-2", "call-4"] and total == 3
        assert all_total == 4 and "call-5" in [r.call_id for r in everything]
    finally:
        await second.stop()


async def test_finished_requests_are_not_restored_and_old_ones_are_pruned(db: Database) -> None:
    from datetime import timedelta

    from zvonok.storage.base import utcnow

    tenant_id, queue_id = await _tenant_and_queue(db)
    async with db.session() as session:
        for n, (state, age) in enumerate((("done", 0), ("failed", 0), ("cancelled", 40), ("waiting", 40))):
            session.add(QueueCallbackRow(tenant_id=tenant_id, queue_id=queue_id, call_id=f"c{n}", number=str(n),
                                         priority=0, joined_at=WALL + n, requested_at=WALL + n, position=1,
                                         state=state, attempts=1, last_result="busy",
                                         updated_at=utcnow() - timedelta(days=age)))
        await session.commit()
    runtime = CallCenterRuntime(db, flush_delay=0.0)
    await runtime.start()
    try:
        assert [c.call_id for c in runtime.callbacks(tenant_id, queue_id)] == ["c3"]
    finally:
        await runtime.stop()
    rows = await _rows(db)
    assert sorted(rows) == ["c0", "c1", "c3"]  # the month-old cancelled one is gone, not the waiting one
    async with db.session() as session:
        restored = (await session.execute(select(QueueCallbackRow).where(QueueCallbackRow.call_id == "c3"))).scalar_one()
    assert (restored.state, restored.attempts, restored.last_result) == ("waiting", 1, "busy")  # its history kept


async def test_a_change_for_a_deleted_queue_is_dropped_not_retried_for_ever(db: Database) -> None:
    tenant_id, queue_id = await _tenant_and_queue(db)
    runtime = CallCenterRuntime(db, flush_delay=0.0, retry_delay=0.01)
    await runtime.start()
    try:
        runtime.feed(lambda c, now: c.join("a", queue_id, now, number="1"))
        runtime.feed(lambda c, now: c.join("b", queue_id, now, number="2"))
        runtime.feed(lambda c, now: c.request_callback("a", now))
        good = runtime.callback_backlog[0][1]
        runtime.feed(lambda c, now: c.request_callback("b", now))
        bad = runtime.callback_backlog[1]
        from dataclasses import replace
        runtime.callback_backlog[1] = (bad[0], replace(bad[1], queue_id=queue_id + 999))  # no such queue
        await runtime.flush()
        assert runtime.callback_backlog == [] and list(await _rows(db)) == [good.call_id]
    finally:
        await runtime.stop()
