"""The database side of the location service: load live bindings, apply batched changes.

With ``announce`` (several nodes on one PostgreSQL database, issue 14) each batch also writes a
:class:`~zvonok.telephony.location.BindingsChanged` row to ``change_log`` and sends the NOTIFY, in the
batch's own transaction: the other nodes' change feeds hand it to their locations, and a change is
announced exactly when it is committed."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from zvonok.bus import serialize
from zvonok.storage.base import utcnow
from zvonok.storage.changes import CHANNEL, ChangeLog
from zvonok.storage.db import Database

from .location import Binding, BindingsChanged
from .models import Registration

_FIELDS = ("aor", "expires_at", "registered_at", "q", "source", "user_agent", "call_id", "cseq", "instance",
           "reg_id", "client", "path")
_SQLITE_UPSERT = (
    "INSERT INTO sip_registrations (tenant_id, extension_id, contact, " + ", ".join(_FIELDS) + ") "
    "VALUES (" + ", ".join("?" * (3 + len(_FIELDS))) + ") "
    "ON CONFLICT (extension_id, contact) DO UPDATE SET " + ", ".join(f"{f} = excluded.{f}" for f in _FIELDS)
)


class SqlBindingStore:
    """Implements :class:`zvonok.telephony.location.BindingStore` on the project's database."""

    def __init__(self, db: Database, *, announce: bool = False) -> None:
        self.db = db
        self.announce = announce and not db.is_sqlite
        url = make_url(db.url)
        self._sqlite_path = url.database if db.is_sqlite and url.database not in (None, "", ":memory:") else None
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _apply_sqlite(self, upserts: list[Binding], deletes: list[tuple[int, int, str]]) -> None:
        with self._lock:
            if self._conn is None:
                assert self._sqlite_path is not None
                self._conn = sqlite3.connect(self._sqlite_path, check_same_thread=False, isolation_level=None)
                self._conn.execute("PRAGMA foreign_keys=ON")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                # never wait for the lock: this runs on the event loop, and the writer holding it may be an
                # async (aiosqlite) transaction that needs the loop to finish — waiting froze the loop for
                # the whole busy timeout (seen: 5 s of frozen calls). A busy database fails the batch now
                # and the next flush retries it.
                self._conn.execute("PRAGMA busy_timeout=0")
            conn = self._conn
            rows = [tuple(_row(b).values()) for b in upserts]
            conn.execute("BEGIN IMMEDIATE")
            try:
                if deletes:
                    conn.executemany("DELETE FROM sip_registrations WHERE extension_id = ? AND contact = ?",
                                     [(e, c) for _, e, c in deletes])
                try:
                    conn.executemany(_SQLITE_UPSERT, rows)
                except sqlite3.IntegrityError:  # an extension deleted since it registered: skip that one
                    for row in rows:
                        try:
                            conn.execute(_SQLITE_UPSERT, row)
                        except sqlite3.IntegrityError:
                            continue
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def load(self, now: float) -> list[Binding]:
        async with self.db.session() as session:
            await session.execute(delete(Registration).where(Registration.expires_at <= now))
            rows = (await session.execute(select(Registration))).scalars().all()
            await session.commit()
        return [
            Binding(tenant_id=r.tenant_id, extension_id=r.extension_id, contact=r.contact,
                    **{f: getattr(r, f) for f in _FIELDS if f != "path"},
                    path=tuple(r.path.split("\n")) if r.path else ())
            for r in rows
        ]

    async def apply(self, upserts: list[Binding], deletes: list[tuple[int, int, str]]) -> None:
        """Write one batch in one transaction: Core statements, executemany, no ORM unit of work (it is
        the registrar's write path: thousands of refreshes a second)."""
        if not upserts and not deletes:
            return
        if self._sqlite_path is not None:
            # The embedded database: the whole batch on the event loop, in one transaction on a plain
            # sqlite3 connection (a few ms for a batch of hundreds; WAL, synchronous=NORMAL). Through a
            # worker thread (aiosqlite, or to_thread) every row's GIL hand-off cost the loop ~90 µs:
            # measured, the registrar then peaked at ~2,800/s instead of ~3,100/s.
            self._apply_sqlite(upserts, deletes)
            return
        table = cast(Table, Registration.__table__)
        removal = delete(table).where(table.c.extension_id == bindparam("e"), table.c.contact == bindparam("c"))
        removed = [{"e": extension_id, "c": contact} for _, extension_id, contact in deletes]
        rows = [_row(b) for b in upserts]
        try:
            async with self.db.engine.begin() as conn:
                if removed:
                    await conn.execute(removal, removed)
                if rows:
                    await conn.execute(_upsert(conn.dialect.name), rows)
                await self._announce(conn, upserts, deletes)
        except IntegrityError:
            # an extension was deleted since it registered: write the rest, skip what the FK refuses
            async with self.db.engine.begin() as conn:
                if removed:
                    await conn.execute(removal, removed)
                await self._announce(conn, upserts, deletes)
            await self._apply_one_by_one(rows)

    async def _announce(self, conn: Any, upserts: list[Binding], deletes: list[tuple[int, int, str]]) -> None:
        if not self.announce:
            return
        event = BindingsChanged(upserts=tuple(replace(b, connection=None) for b in upserts),
                                deletes=tuple(deletes))
        await conn.execute(insert(ChangeLog), [{"at": utcnow(), "origin": self.db.origin,
                                                "payload": serialize(event)}])
        await conn.execute(text(f"NOTIFY {CHANNEL}"))

    async def _apply_one_by_one(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            try:
                async with self.db.engine.begin() as conn:
                    await conn.execute(_upsert(conn.dialect.name), row)
            except IntegrityError:
                continue


def _upsert(dialect: str) -> Any:
    table = cast(Table, Registration.__table__)
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c.extension_id, table.c.contact],
        set_={f: getattr(stmt.excluded, f) for f in _FIELDS},
    )


def _row(b: Binding) -> dict[str, Any]:
    """The table row of a binding, its columns in the order of ``_SQLITE_UPSERT``."""
    row = {"tenant_id": b.tenant_id, "extension_id": b.extension_id, "contact": b.contact,
           **{f: getattr(b, f) for f in _FIELDS}}
    row["path"] = "\n".join(b.path) if b.path else None
    return row
