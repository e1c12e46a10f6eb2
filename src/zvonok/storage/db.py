"""The database handle: one async engine, sessions, migrations, and events published after commit.

The composition root owns a :class:`Database` (create, ``upgrade()``, ``dispose()``); the HTTP app and
the services only borrow sessions from it.

A committed event reaches this process's listeners at once, and other processes' (the server, when the
CLI wrote) through the ``change_log`` row written in the same transaction (:mod:`zvonok.storage.changes`).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_EVENTS_KEY = "zvonok_pending_events"

EventListener = Callable[[object], None]


def emit(session: AsyncSession | Session, evt: object) -> None:
    """Queue a domain event; listeners see it only if and after the session's transaction commits (this
    process's at once, other processes' through the ``change_log`` row the commit writes with it)."""
    info = session.info
    info.setdefault(_EVENTS_KEY, []).append(evt)


def run_migrations(connection: Connection, revision: str = "head") -> None:
    """Upgrade the schema on an open (sync) connection; used by :meth:`Database.upgrade` and tests."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


class Database:
    """An async engine built from a URL (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                _private_sqlite_file(Path(parsed.database))
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_on_connect)

        # A Session subclass per Database so commit hooks stay local to this instance.
        session_cls = type("ZvonokSession", (Session,), {})
        event.listen(session_cls, "before_commit", self._before_commit)
        event.listen(session_cls, "after_commit", self._after_commit)
        event.listen(session_cls, "after_rollback", _drop_events)
        self._listeners: list[EventListener] = []
        # who wrote a change_log row: this process's feed skips its own (they were delivered at commit)
        self.origin = secrets.token_hex(8)
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=session_cls
        )

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener(event)`` for each domain event after its transaction commits (sync, keep it short)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        self._listeners.remove(listener)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; the caller commits. Uncommitted work is rolled back on exit."""
        async with self.sessionmaker() as session:
            yield session

    async def upgrade(self, revision: str = "head") -> None:
        """Apply the packaged Alembic migrations up to ``revision``."""
        async with self.engine.begin() as conn:
            await conn.run_sync(run_migrations, revision)
        log.info("database schema at %s", revision)

    async def dispose(self) -> None:
        await self.engine.dispose()

    def _before_commit(self, session: Session) -> None:
        events = session.info.get(_EVENTS_KEY)
        if events and not session.in_nested_transaction():  # a savepoint's events wait for the real commit
            from zvonok.storage.changes import log_changes

            log_changes(session, self.origin, events)

    def _after_commit(self, session: Session) -> None:
        self.deliver(session.info.pop(_EVENTS_KEY, []))

    def deliver(self, events: Iterable[object]) -> None:
        """Call the listeners for committed events: this process's, and other processes' read by the
        change feed (the listeners cannot tell them apart)."""
        for evt in events:
            for listener in list(self._listeners):
                try:
                    listener(evt)
                except Exception:  # a faulty subscriber must not undo a committed change
                    log.exception("event listener failed for %r", evt)


def _private_sqlite_file(path: Path) -> None:
    """The SQLite file holds HA1s and token hashes: owner-only (0600), created so before SQLite opens
    it (an empty file is a valid new database; its -wal/-shm files take the same mode). Missing parent
    directories are made 0700; existing ones are the operator's choice."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)


def _drop_events(session: Session) -> None:
    session.info.pop(_EVENTS_KEY, None)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Foreign keys are off by default in SQLite; WAL lets the API read while the registrar writes.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
