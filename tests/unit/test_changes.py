"""Changes across processes (issue 8): an event committed through one :class:`Database` reaches the
listeners of another on the same database (another process: the CLI, another node) through the change
feed, once, on SQLite (``PRAGMA data_version``) and PostgreSQL (LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import insert, select

from conftest import FreshDatabase
from zvonok.bus import serialize
from zvonok.org import events as org_events
from zvonok.pstn import events as pstn_events
from zvonok.storage.base import utcnow
from zvonok.storage.changes import KEEP, ChangeFeed, ChangeLog
from zvonok.storage.db import Database, emit


@dataclass
class Node:
    """One process's view: its Database, its running feed and what its listeners received."""

    db: Database
    feed: ChangeFeed
    received: list[object] = field(default_factory=list)


@pytest.fixture
async def nodes(fresh_db: FreshDatabase) -> AsyncIterator[Callable[[], asyncio.Future[Node]]]:
    stopping = asyncio.Event()
    started: list[tuple[Node, asyncio.Task[None]]] = []
    first = Database(fresh_db.url)
    await first.upgrade()
    await first.dispose()

    async def start() -> Node:
        db = Database(fresh_db.url)
        node = Node(db, ChangeFeed(db))
        db.add_listener(node.received.append)
        await node.feed.prime()
        started.append((node, asyncio.create_task(node.feed.run(stopping))))
        return node

    yield start  # type: ignore[misc]
    stopping.set()
    await asyncio.gather(*(task for _, task in started))
    for node, _ in started:
        await node.db.dispose()


async def commit(db: Database, *events: object, rollback: bool = False) -> None:
    async with db.session() as session:
        for evt in events:
            emit(session, evt)
        if rollback:
            await session.rollback()
        else:
            await session.commit()


async def until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_a_change_reaches_the_other_process_once_and_not_its_own_twice(nodes) -> None:  # type: ignore[no-untyped-def]
    cli, server = await nodes(), await nodes()
    rates = pstn_events.PstnChanged(tenant_id=None, what=pstn_events.RATES)
    password = org_events.ExtensionChanged(tenant_id=3, extension_id=7, number="201", fields=("sip_password",),
                                           credentials_changed=True)
    await commit(cli.db, rates, password)
    assert cli.received == [rates, password]  # at commit, in its own process
    await until(lambda: len(server.received) == 2, "the other process did not receive the change")
    assert server.received == [rates, password]
    # the server's own change reaches the CLI; by then the CLI's feed has read past its own rows,
    # which it did not deliver a second time
    revoked = org_events.AccessRevoked(tenant_id=3, token_ids=(5, 6))
    await commit(server.db, revoked)
    await until(lambda: len(cli.received) == 3, "the change did not come back")
    assert cli.received == [rates, password, revoked]
    assert server.received == [rates, password, revoked]


async def test_a_rolled_back_change_is_not_announced(nodes) -> None:  # type: ignore[no-untyped-def]
    cli, server = await nodes(), await nodes()
    await commit(cli.db, pstn_events.PstnChanged(tenant_id=1, what=pstn_events.TRUNK), rollback=True)
    kept = pstn_events.PstnChanged(tenant_id=1, what=pstn_events.ROUTE)
    await commit(cli.db, kept)
    await until(lambda: len(server.received) >= 1, "the committed change did not arrive")
    assert server.received == [kept]


async def test_a_lower_id_committed_after_a_higher_one_is_still_delivered(fresh_db: FreshDatabase) -> None:
    """PostgreSQL allocates ids at insert: a transaction holding a lower id may commit after a later one."""
    db = Database(fresh_db.url)
    await db.upgrade()
    received: list[object] = []
    db.add_listener(received.append)
    feed = ChangeFeed(db)
    await feed.prime()
    late, early = (pstn_events.PstnChanged(tenant_id=None, what=w) for w in (pstn_events.TRUNK, pstn_events.ROUTE))
    try:
        async with db.engine.begin() as conn:
            await conn.execute(insert(ChangeLog).values(id=2, at=utcnow(), origin="elsewhere", payload=serialize(early)))
        assert await feed.poll() == 1
        async with db.engine.begin() as conn:
            await conn.execute(insert(ChangeLog).values(id=1, at=utcnow(), origin="elsewhere", payload=serialize(late)))
        assert await feed.poll() == 1
        assert await feed.poll() == 0
        assert received == [early, late]
    finally:
        await db.dispose()


async def test_old_changes_are_pruned_and_unknown_events_stay_local(db: Database) -> None:
    feed = ChangeFeed(db)
    async with db.engine.begin() as conn:
        await conn.execute(insert(ChangeLog).values(at=utcnow() - KEEP - timedelta(minutes=1), origin="x",
                                                    payload={"type": "PstnChanged", "tenant_id": None, "what": "pin"}))
    await commit(db, object(), pstn_events.PstnChanged(tenant_id=None, what=pstn_events.PIN))
    await feed.prune()
    async with db.engine.connect() as conn:
        payloads = (await conn.execute(select(ChangeLog.payload))).scalars().all()
    assert payloads == [{"type": "PstnChanged", "tenant_id": None, "what": "pin", "version": 1}]


async def test_closing_the_sqlite_wake_waits_for_a_read_in_flight() -> None:
    # the fresh-clone CI: a test server died with SIGSEGV in libsqlite3 while stopping — the data_version read
    # runs in a worker thread that cancelling the wait does not stop, and close() freed the connection under it
    from zvonok.storage.changes import _SqliteWake

    reading, release = threading.Event(), threading.Event()
    calls: list[str] = []

    class SlowConnection:  # stands for sqlite3.Connection: a PRAGMA that takes as long as the test says
        def execute(self, _sql: str) -> SlowConnection:
            calls.append("execute")
            reading.set()
            assert release.wait(10)
            calls.append("execute done")
            return self

        def fetchone(self) -> tuple[int]:
            return (7,)

        def close(self) -> None:
            calls.append("close")

    wake = _SqliteWake(SimpleNamespace(url="sqlite+aiosqlite:///unused.db"))  # type: ignore[arg-type]
    wake._conn = SlowConnection()  # type: ignore[assignment]
    read = asyncio.ensure_future(asyncio.to_thread(wake._read))
    assert await asyncio.to_thread(reading.wait, 10)
    closing = asyncio.ensure_future(wake.close())
    await asyncio.sleep(0.2)
    assert not closing.done() and calls == ["execute"]  # the connection is not closed under the read
    release.set()
    assert await read == 7
    await closing
    assert calls == ["execute", "execute done", "close"]
    wake._read()  # a read after close opens nothing again
    assert calls[-1] == "close" and wake._conn is None


async def test_a_cancelled_feed_closes_its_wake_after_the_wait_in_flight(db: Database) -> None:
    # a fresh CI run failed on an asyncpg connection garbage-collected unclosed: the feed's task was cancelled
    # (not stopped) while its wake was opening the LISTEN connection; the close ran first, the connect finished
    # after it, and that connection was never closed
    from zvonok.storage.changes import _Wake

    connecting, opened = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    class SlowWake(_Wake):
        async def wait(self) -> None:
            connecting.set()
            try:
                await asyncio.sleep(0.3)  # the connect in flight
            except asyncio.CancelledError:
                calls.append("wait cancelled")
                raise
            calls.append("connection opened")
            opened.set()

        async def close(self) -> None:
            calls.append("close")

    feed = ChangeFeed(db)
    feed._wake = SlowWake()
    task = asyncio.create_task(feed.run(asyncio.Event()))
    await asyncio.wait_for(connecting.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.5)
    assert calls == ["wait cancelled", "close"] and not opened.is_set()
