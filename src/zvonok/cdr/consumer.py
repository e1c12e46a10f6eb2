"""The CDR writer: a durable bus subscriber that folds each call's events and, at ``CallEnded``, commits
the CDR and only then publishes :class:`~zvonok.cdr.events.CdrWritten` (durability before announcement).

Database writes per call: ``calls_open`` insert at ``CallStarted``; a snapshot refresh at
``CallAnswered``, ``CallTransferred``, ``RecordingStarted`` and ``FaxFinished`` (what an "interrupted" CDR needs after a
crash: who answered and when, the recording); the CDR at ``CallEnded``. Other events only change memory.

Journal: each batch is appended to a local fsync'd journal (:mod:`zvonok.cdr.journal`) before the
database transaction. While the database is unreachable, batches stay there and in memory and are
retried with backoff (``retry_delays``, the last one repeated) until it is back; a crash meanwhile loses
nothing: :meth:`CdrWriter.recover` replays the journal at the next start, before interrupted calls are
closed.

Heartbeat: every ``heartbeat`` seconds one UPDATE moves ``calls_open.updated_at`` of all this writer's
open calls to now, so a crash's "interrupted" CDRs end within that much of the crash, not at restart.

Idempotent: a ``CallStarted`` for a call that already has a CDR is ignored with all its later events, and
``write_cdr`` refuses a second CDR per ``call_id``. A ``CallEnded`` whose call is not in memory (this
process started after the call did) is completed from the ``calls_open`` snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok import metrics
from zvonok.bus import Bus, Subscription
from zvonok.cdr import service
from zvonok.cdr.events import CdrWritten
from zvonok.cdr.journal import CdrJournal
from zvonok.cdr.state import CallRecord, to_datetime
from zvonok.storage.db import Database
from zvonok.telephony.events import (
    CALL_EVENT_TYPES,
    CallAnswered,
    CallEnded,
    CallEvent,
    CallRouted,
    CallStarted,
    CallTransferred,
    Disposition,
    FaxFinished,
    HangupSide,
    RecordingStarted,
)

log = logging.getLogger(__name__)
A = TypeVar("A")
R = TypeVar("R")

_SNAPSHOT_AT = (CallAnswered, CallRouted, CallTransferred, RecordingStarted, FaxFinished)
_DONE_MEMORY = 10_000  # finished call ids remembered to ignore late or replayed events cheaply

# One unit of queued database work, in event order: ("open" | "snapshot", record, None),
# ("write", record, its CallEnded) or ("write-open", CallEnded, CallEnded) for a call this process never
# saw start (completed from its calls_open row at write time).
Item = tuple[str, CallRecord | CallEnded, CallEnded | None]


class CdrWriter:
    """Build with the database and the bus, then :meth:`start` (subscribes); :meth:`stop` drains.

    Events are folded in memory as they come; the database work they cause (open-call rows, snapshots,
    CDRs) is queued and written in one transaction at most ``linger`` seconds after the first of them
    (or when ``batch_size`` items wait), so a busy PBX commits about twenty times a second instead of
    three times per call. A call that
    starts and ends within one batch writes its CDR only. ``CdrWritten`` is published after the commit.
    """

    def __init__(self, db: Database, bus: Bus, *, retry_delays: tuple[float, ...] = (0.1, 0.5, 2.0, 5.0),
                 batch_size: int = 500, linger: float = 0.05, heartbeat: float | None = 5.0,
                 clock: Callable[[], float] = time.time, journal: CdrJournal | None = None,
                 patience: float = 1.0) -> None:
        self.db = db
        self.patience = patience
        self.journal = journal
        # journaled work the database has not committed yet (it was unreachable), oldest first
        self._backlog: list[Item] = []
        self._failures = 0  # consecutive failed attempts to write the backlog
        self._retry_at = 0.0  # loop time before which the database is not tried again
        self._retry: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None  # the task committing the backlog
        self.heartbeat_interval = heartbeat
        self.clock = clock  # wall-clock seconds, for heartbeats
        self._beating: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one transaction of this writer at a time (batches, heartbeats)
        self.bus = bus
        self.retry_delays = retry_delays
        self.batch_size = batch_size
        self.linger = linger  # seconds a queued write may wait for company
        self._first_at = 0.0
        self.calls: dict[str, CallRecord] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self.subscription: Subscription | None = None
        self.written = 0
        self._pending: list[Item] = []  # queued database work, not journaled yet
        self._opening: set[str] = set()  # calls whose "open" is queued, not yet handed to the journal

    def start(self) -> Subscription:
        self.subscription = self.bus.subscribe(self.handle, event_types=CALL_EVENT_TYPES, name="cdr-writer")
        if self.heartbeat_interval is not None:
            self._beating = asyncio.get_running_loop().create_task(self._beat(self.heartbeat_interval))
        return self.subscription

    async def _beat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.heartbeat()

    async def heartbeat(self) -> None:
        """Note in one UPDATE that every call in progress here was still in progress now."""
        call_ids = [call_id for call_id in self.calls if call_id not in self._opening]
        if not call_ids:
            return
        at = to_datetime(self.clock())
        try:
            async with self._lock, self.db.session() as session:
                await service.heartbeat(session, call_ids, at)
                await session.commit()
        except (SQLAlchemyError, OSError):  # the next beat tries again; a crash meanwhile costs one interval
            log.warning("CDR heartbeat of %d calls failed", len(call_ids), exc_info=True)

    @property
    def queued(self) -> int:
        """Items journaled but not yet committed (the database was unreachable)."""
        return len(self._backlog)

    async def recover(self) -> int:
        """Start-up: write what the journal holds (a crash, or a database down at the last stop) to the
        database; call it before closing interrupted calls. Returns how many items were replayed."""
        if self.journal is None:
            return 0
        records = self.journal.read()
        if not records:
            return 0
        self._backlog = [_item_of(record) for record in records]
        log.warning("replaying %d CDR journal item(s) not committed before the last stop", len(records))
        await self._write()
        if self._backlog:
            raise RuntimeError("the CDR journal could not be written to the database")
        return len(records)

    async def settle(self) -> None:
        """Handle the events received so far and wait for their commits, still subscribed: a stopping
        server calls it before closing the bus, whose drain waits for the handling but not for a commit
        slower than ``patience``, so that the ``CdrWritten`` of the last calls still reach their
        subscribers (a missed call's call-back task in the CRM) instead of a stopped bus."""
        if self.subscription is not None:
            await self.subscription.drain()
        await self.flush()
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)

    async def stop(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
            self._beating = None
        if self.subscription is not None:
            await self.subscription.close(drain=True)
            self.subscription = None
        await self.settle()
        await self._write()  # one last try: what the database still refuses stays in the journal for the next start
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self.journal is not None:
            self.journal.close()

    async def handle(self, event: CallEvent) -> None:
        had_work = bool(self._pending)
        self._fold(event)
        if not self._pending:
            return
        now = asyncio.get_running_loop().time()
        if not had_work:
            self._first_at = now
        age = now - self._first_at
        if len(self._pending) >= self.batch_size or age >= self.linger:
            await self.flush()
        elif self._queue_empty():
            # nothing else waiting: linger a little so that the next events share this commit
            await asyncio.sleep(self.linger - age)
            await self.flush()

    def _queue_empty(self) -> bool:
        return self.subscription is None or self.subscription.pending == 0

    def _fold(self, event: CallEvent) -> None:
        if event.call_id in self._done:
            return
        if isinstance(event, CallStarted):
            if event.call_id not in self.calls:
                self.calls[event.call_id] = CallRecord.started(event)
                self._opening.add(event.call_id)
                self._pending.append(("open", self.calls[event.call_id], None))
            return
        record = self.calls.get(event.call_id)
        if isinstance(event, CallEnded):
            self._ended(event, record)
            return
        if record is None:
            return  # a call this process never saw start (or already written): nothing to add to
        record.apply(event)
        if isinstance(event, _SNAPSHOT_AT) and event.call_id not in self._opening:
            self._pending.append(("snapshot", record, None))

    def _ended(self, ev: CallEnded, record: CallRecord | None) -> None:
        if record is None:
            # a call this process never saw start: completed from its calls_open row at write time
            self._pending.append(("write-open", ev, ev))
            self._remember_done(ev.call_id)
            return
        if ev.call_id in self._opening:
            # never written as open: the CDR alone is enough (and the queued open/snapshots can go)
            self._pending = [item for item in self._pending if item[1].call_id != ev.call_id]
            self._opening.discard(ev.call_id)
        self._pending.append(("write", record, ev))
        self.calls.pop(ev.call_id, None)
        self._remember_done(ev.call_id)

    async def flush(self) -> None:
        """Journal the queued work (one fsync) and hand it to the task that commits it.

        The commit runs in its own task, waited for at most ``patience`` seconds: so the events queue
        behind a commit as usual (bigger batches under load), but a database that hangs (no refusal, no
        answer at all) does not keep the events that come meanwhile from reaching the journal.
        """
        batch, self._pending = self._pending, []
        if not batch:
            return
        self._opening.difference_update(item[1].call_id for item in batch if item[0] == "open")
        # into the backlog first, then the journal, with no await between: whenever the backlog is empty
        # every journaled line is committed, so the committer may truncate the journal then
        self._backlog.extend(batch)
        if self.journal is not None:
            await self.journal.append([_record_of(item) for item in batch])
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at:
            return  # the database is down: the retry timer writes the backlog
        if self._writing is None or self._writing.done():
            self._writing = loop.create_task(self._write_all())
        await asyncio.wait({self._writing}, timeout=self.patience)

    async def _write_all(self) -> None:
        while self._backlog and await self._write():
            pass

    async def _write(self) -> bool:
        """Commit the backlog (what is in it now) in one transaction; False if the database is down.

        A bad item (not a transient failure) makes the batch be written item by item, so one bad call
        cannot block the others.
        """
        async with self._lock:
            todo = self._backlog[:]
            if not todo:
                return True
            loop = asyncio.get_running_loop()
            try:
                async with self.db.session() as session:
                    results = await service.apply_batch(session, [_db_item(item) for item in todo])
                    await session.commit()
            except (SQLAlchemyError, OSError) as exc:
                if _transient(exc):
                    self._down(loop, len(todo))
                    return False
                log.warning("CDR batch of %d failed; writing its items one by one", len(todo), exc_info=True)
                results = [await self._with_retry(item[0], item[1], self._apply_alone, item) for item in todo]
            if self._failures:
                log.warning("CDR database reachable again: %d queued item(s) written", len(todo))
            del self._backlog[:len(todo)]
            self._failures, self._retry_at = 0, 0.0
            if not self._backlog and self.journal is not None:
                self.journal.clear()
        for item, result in zip(todo, results, strict=True):
            if item[0] == "open" and result is False:
                self.calls.pop(item[1].call_id, None)
                self._remember_done(item[1].call_id)
            elif item[0] in ("write", "write-open") and isinstance(result, CdrWritten):
                self.written += 1
                self.bus.publish(result)  # after the commit: the CDR is on disk
        return True

    def _down(self, loop: asyncio.AbstractEventLoop, queued: int) -> None:
        """The database is unreachable: try again after the next backoff delay (the work is journaled)."""
        delay = self.retry_delays[min(self._failures, len(self.retry_delays) - 1)] if self.retry_delays else 1.0
        self._failures += 1
        self._retry_at = loop.time() + delay
        metrics.ERRORS.labels(where="cdr_database").inc()
        log.warning("CDR database unreachable (attempt %d): %d item(s) kept in the journal, retry in %.1f s",
                    self._failures, queued, delay, exc_info=self._failures == 1)
        if self._retry is not None:
            self._retry.cancel()
        self._retry = loop.call_later(delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self._retry_at = 0.0
        if self._writing is None or self._writing.done():
            self._writing = asyncio.get_running_loop().create_task(self._write_all())

    async def _apply(self, session: AsyncSession, item: Item) -> object:
        kind, data, ended = item
        if kind == "open":
            assert isinstance(data, CallRecord)
            return await service.open_call(session, data.tenant_id, data)
        if kind == "snapshot":
            assert isinstance(data, CallRecord)
            await service.save_open_call(session, data.tenant_id, data)
            return None
        if kind == "write-open":
            assert isinstance(data, CallEnded)
            record = await service.load_open_call(session, data.tenant_id, data.call_id)
            if record is None:
                log.warning("CallEnded for unknown call %s of tenant %s: no CDR", data.call_id, data.tenant_id)
                return None
            data = record
        assert isinstance(data, CallRecord) and ended is not None
        finished = data.finish_with(ended)
        cdr = await service.write_cdr(session, finished.tenant_id, finished)
        if cdr is None:
            return None
        await session.flush()
        return service.cdr_written(cdr)

    async def _apply_alone(self, item: Item) -> object:
        async with self.db.session() as session:
            result = await self._apply(session, item)
            await session.commit()
        return result

    async def _with_retry(self, what: str, ev: CallRecord | CallEnded, fn: Callable[[A], Awaitable[R]],
                          arg: A) -> R | None:
        """Retry transient database failures; after the last one log and give up on this step (the
        ``calls_open`` row, if any, makes the call come back as "interrupted" at the next start)."""
        for attempt, delay in enumerate((*self.retry_delays, None)):
            try:
                return await fn(arg)
            except IntegrityError:  # another writer (node) wrote this call's CDR first
                log.info("CDR %s for call %s: already written elsewhere", what, ev.call_id)
                return None
            except (SQLAlchemyError, OSError) as exc:
                if delay is None or not _transient(exc):
                    metrics.ERRORS.labels(where="cdr_" + what).inc()
                    log.exception("CDR %s failed for call %s of tenant %s", what, ev.call_id, ev.tenant_id)
                    return None
                log.warning("CDR %s failed for call %s (attempt %d), retrying", what, ev.call_id, attempt + 1)
                await asyncio.sleep(delay)
        return None

    def _remember_done(self, call_id: str) -> None:
        self._done[call_id] = None
        while len(self._done) > _DONE_MEMORY:
            self._done.popitem(last=False)


def _transient(exc: BaseException) -> bool:
    """Worth retrying: the database was unreachable or busy, not a bad statement or value."""
    if isinstance(exc, OSError | OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _db_item(item: Item) -> tuple[str, Any]:
    """The item as :func:`service.apply_batch` takes it (a finished call is finished here)."""
    kind, data, ended = item
    if kind == "write":
        assert isinstance(data, CallRecord) and ended is not None
        return kind, data.finish_with(ended)
    return kind, data


def _record_of(item: Item) -> dict[str, Any]:
    """The journal line of an item: the call's snapshot and/or its CallEnded."""
    kind, data, ended = item
    record: dict[str, Any] = {"kind": kind}
    if isinstance(data, CallRecord):
        record["call"] = data.to_json()
    if ended is not None:
        # field by field: the bus's generic serialize cost three times as much, per CDR
        record["ended"] = {"tenant_id": ended.tenant_id, "call_id": ended.call_id, "at": ended.at,
                           "disposition": ended.disposition.value, "hangup_side": ended.hangup_side.value,
                           "cause": ended.cause, "sip_status": ended.sip_status}
    return record


def _item_of(record: dict[str, Any]) -> Item:
    raw = record.get("ended")
    ended = CallEnded(**{**raw, "disposition": Disposition(raw["disposition"]),
                         "hangup_side": HangupSide(raw["hangup_side"])}) if raw is not None else None
    if "call" in record:
        return record["kind"], CallRecord.from_json(record["call"]), ended
    if ended is None:
        raise ValueError(f"CDR journal line {record.get('seq')}: neither a call nor its end")
    return record["kind"], ended, ended
