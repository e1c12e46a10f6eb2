"""Domain events across processes: the ``change_log`` table and the feed that reads it.

A change committed by another process (``zvonok rates import`` or ``zvonok extension add`` while the
server runs, later another node) must reach every running server's caches, not wait for their periodic
reloads. So every event the bus codec knows (:func:`zvonok.bus.register_event`) is written to
``change_log`` in the transaction that made the change (:func:`log_changes`, called by
:class:`zvonok.storage.db.Database` at commit): the change and its announcement commit together or not at
all. On PostgreSQL the same transaction sends ``NOTIFY zvonok_changes``.

Each server runs a :class:`ChangeFeed`: woken by the NOTIFY (a dedicated asyncpg connection LISTENs; a
poll every 5 s covers a notification lost with that connection) or, on SQLite, when
``PRAGMA data_version`` of a dedicated read-only connection says another connection committed (checked
every 0.5 s in a thread). It reads the rows it has not seen, skips those its own process wrote (their
events were delivered at commit) and gives the others to the same listeners (:meth:`Database.deliver`).
Rows older than an hour are deleted; a server that was down reloads everything at start anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, delete, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Mapped, Session, mapped_column

from zvonok import metrics
from zvonok.bus import UnknownEvent, deserialize, serialize
from zvonok.storage.base import Base, utcnow
from zvonok.storage.db import Database

log = logging.getLogger(__name__)

CHANNEL = "zvonok_changes"
SQLITE_CHECK_INTERVAL = 0.5  # how often PRAGMA data_version is read
PG_POLL_INTERVAL = 5.0  # the poll behind NOTIFY (and the retry delay after an error)
KEEP = timedelta(hours=1)
PRUNE_INTERVAL = 300.0
# PostgreSQL hands out ids when rows are inserted, not when they commit: a lower id can become visible
# after a higher one. The feed waits this long for a missing id before it gives it up (a rollback).
GAP_WAIT = 30.0


class ChangeLog(Base):
    """One committed domain event, for the other processes; deleted after :data:`KEEP`."""

    __tablename__ = "change_log"
    # AUTOINCREMENT on SQLite: ids never go back, even when pruning has emptied the table
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 - SQLAlchemy's declarative attribute

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    origin: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


def log_changes(session: Session, origin: str, events: list[object]) -> None:
    """Write ``events`` to ``change_log`` in the session's transaction (about to commit); events the codec
    does not know stay in this process."""
    rows = []
    for evt in events:
        try:
            rows.append({"at": utcnow(), "origin": origin, "payload": serialize(evt)})
        except TypeError:
            continue
    if not rows:
        return
    session.execute(insert(ChangeLog), rows)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))  # sent by PostgreSQL when (and if) this commits


class ChangeFeed:
    """Delivers the events other processes commit to ``db``'s listeners (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._floor = 0  # every id up to here was seen
        self._seen: set[int] = set()  # ids above the floor already seen
        self._gap_since: float | None = None
        self._pruned = 0.0
        self._wake: _Wake = _SqliteWake(db) if db.is_sqlite else _PgWake(db)

    async def prime(self) -> None:
        """Start after the newest change: call before the caches are loaded, so nothing falls between."""
        async with self.db.engine.connect() as conn:
            self._floor = int((await conn.execute(select(func.coalesce(func.max(ChangeLog.id), 0)))).scalar_one())

    async def poll(self) -> int:
        """Read the rows not seen yet and deliver the other processes' events; how many were delivered."""
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(select(ChangeLog.id, ChangeLog.origin, ChangeLog.payload)
                                       .where(ChangeLog.id > self._floor).order_by(ChangeLog.id))).all()
        events = []
        for row_id, origin, payload in rows:
            if row_id in self._seen:
                continue
            self._seen.add(row_id)
            if origin == self.db.origin:
                continue
            try:
                events.append(deserialize(payload))
            except (UnknownEvent, ValueError):  # a newer node's event: its change shows at the next reload
                log.warning("undecodable change %s: %r", row_id, payload)
        self._advance()
        self.db.deliver(events)
        return len(events)

    def _advance(self) -> None:
        while self._floor + 1 in self._seen:
            self._floor += 1
            self._seen.discard(self._floor)
        if not self._seen:
            self._gap_since = None
        elif self._gap_since is None:
            self._gap_since = time.monotonic()
        elif time.monotonic() - self._gap_since > GAP_WAIT:  # rolled back: it never comes
            self._floor = min(self._seen) - 1
            self._gap_since = None
            self._advance()

    async def prune(self) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(delete(ChangeLog).where(ChangeLog.at < utcnow() - KEEP))

    async def run(self, stopping: asyncio.Event) -> None:
        """Deliver changes until ``stopping`` is set."""
        stop = asyncio.ensure_future(stopping.wait())
        woken: asyncio.Future[None] | None = None
        try:
            while not stopping.is_set():
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({stop, woken}, return_when=asyncio.FIRST_COMPLETED)
                if stop.done():
                    return
                try:
                    woken.result()
                    await self.poll()
                    if time.monotonic() - self._pruned > PRUNE_INTERVAL:
                        self._pruned = time.monotonic()
                        await self.prune()
                except Exception:  # noqa: BLE001 - the database may be down: try again a little later
                    metrics.ERRORS.labels("change_feed").inc()
                    log.exception("change feed failed")
                    await asyncio.wait({stop}, timeout=PG_POLL_INTERVAL)
        finally:
            # this task may itself be cancelled: the wait in flight (perhaps opening the LISTEN connection)
            # must end before the close, or the connection it opens afterwards is never closed
            stop.cancel()
            if woken is not None and not woken.done():
                woken.cancel()
                with contextlib.suppress(BaseException):
                    await woken
            await self._wake.close()


class _Wake:
    async def wait(self) -> None:
        """Return when another process may have committed (or it is time to look anyway)."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _SqliteWake(_Wake):
    """``PRAGMA data_version`` changes when another connection commits; read on a connection of our own,
    in a thread (it does not block the loop, and takes no lock)."""

    def __init__(self, db: Database) -> None:
        self._path = make_url(db.url).database or ":memory:"
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None
        # A read runs in a worker thread, and cancelling the waiting task does not stop it: closing the
        # connection under a read in flight crashed the server at stop (SIGSEGV in libsqlite3). The
        # connection is opened, read and closed only under this lock, and never again once closed.
        self._lock = threading.Lock()
        self._closed = False

    def _read(self) -> int:
        with self._lock:
            if self._closed:
                return self._version if self._version is not None else 0
            if self._conn is None:
                self._conn = sqlite3.connect(self._path, check_same_thread=False)
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def wait(self) -> None:
        while True:
            await asyncio.sleep(SQLITE_CHECK_INTERVAL)
            version = await asyncio.to_thread(self._read)
            if version != self._version:
                self._version = version
                return

    async def close(self) -> None:
        await asyncio.to_thread(self._close)  # waits for a read in flight (a PRAGMA: a moment)


class _PgWake(_Wake):
    """LISTEN on a dedicated asyncpg connection (reconnected when lost), and a poll every few seconds."""

    def __init__(self, db: Database) -> None:
        self._dsn = make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn: Any = None
        self._notified = asyncio.Event()

    async def wait(self) -> None:
        if self._conn is None or self._conn.is_closed():
            import asyncpg

            await self.close()
            self._conn = await asyncpg.connect(self._dsn)
            await self._conn.add_listener(CHANNEL, lambda *_: self._notified.set())
            return  # (re)connected: whatever was notified meanwhile is read now
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._notified.wait(), PG_POLL_INTERVAL)
        self._notified.clear()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)
