"""The CDR writer: a durable bus subscriber that folds each call's events and, at ``CallEnded``, commits
the CDR and only then publishes :class:`~zvonok.cdr.events.CdrWritten` (durability before announcement).

Database writes per call: ``calls_open`` insert at ``CallStarted``; a snapshot refresh at
``CallAnswered``, ``CallTransferred`` and ``RecordingStarted`` (what an "interrupted" CDR needs after a
crash: who answered and when, the recording); the CDR at ``CallEnded``. Other events only change memory.

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
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok import metrics
from zvonok.bus import Bus, Subscription
from zvonok.cdr import service
from zvonok.cdr.events import CdrWritten
from zvonok.cdr.state import CallRecord, FinishedCall, to_datetime
from zvonok.storage.db import Database
from zvonok.telephony.events import (
    CALL_EVENT_TYPES,
    CallAnswered,
    CallEnded,
    CallEvent,
    CallRouted,
    CallStarted,
    CallTransferred,
    RecordingStarted,
)

log = logging.getLogger(__name__)
A = TypeVar("A")
R = TypeVar("R")

_SNAPSHOT_AT = (CallAnswered, CallRouted, CallTransferred, RecordingStarted)
_DONE_MEMORY = 10_000  # finished call ids remembered to ignore late or replayed events cheaply


class CdrWriter:
    """Build with the database and the bus, then :meth:`start` (subscribes); :meth:`stop` drains.

    Events are folded in memory as they come; the database work they cause (open-call rows, snapshots,
    CDRs) is queued and written in one transaction at most ``linger`` seconds after the first of them
    (or when ``batch_size`` items wait), so a busy PBX commits about twenty times a second instead of
    three times per call. A call that
    starts and ends within one batch writes its CDR only. ``CdrWritten`` is published after the commit.
    """

    def __init__(self, db: Database, bus: Bus, *, retry_delays: tuple[float, ...] = (0.1, 0.5, 2.0),
                 batch_size: int = 500, linger: float = 0.05, heartbeat: float | None = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
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
        # queued database work, in event order: ("open" | "snapshot", record) or ("write", finished, event)
        self._pending: list[tuple[str, CallRecord | FinishedCall | CallEnded, CallEvent]] = []
        self._opening: set[str] = set()  # calls whose "open" is queued, not yet written

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

    async def stop(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
            self._beating = None
        if self.subscription is not None:
            await self.subscription.close(drain=True)
            self.subscription = None
        await self.flush()

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
                self._pending.append(("open", self.calls[event.call_id], event))
            return
        record = self.calls.get(event.call_id)
        if isinstance(event, CallEnded):
            self._ended(event, record)
            return
        if record is None:
            return  # a call this process never saw start (or already written): nothing to add to
        record.apply(event)
        if isinstance(event, _SNAPSHOT_AT) and event.call_id not in self._opening:
            self._pending.append(("snapshot", record, event))

    def _ended(self, ev: CallEnded, record: CallRecord | None) -> None:
        if record is None:
            # a call this process never saw start: completed from its calls_open row at write time
            self._pending.append(("write-open", ev, ev))
            self._remember_done(ev.call_id)
            return
        if ev.call_id in self._opening:
            # never written as open: the CDR alone is enough (and the queued open/snapshots can go)
            self._pending = [item for item in self._pending if item[2].call_id != ev.call_id]
            self._opening.discard(ev.call_id)
        self._pending.append(("write", record.finish_with(ev), ev))
        self.calls.pop(ev.call_id, None)
        self._remember_done(ev.call_id)

    async def flush(self) -> None:
        """Write the queued work in one transaction (item by item, with retries, if that fails)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self._opening.difference_update(item[2].call_id for item in batch if item[0] == "open")
        try:
            async with self._lock, self.db.session() as session:
                results = await service.apply_batch(session, [(kind, data) for kind, data, _ in batch])
                await session.commit()
        except (SQLAlchemyError, OSError):
            log.warning("CDR batch of %d failed; writing its items one by one", len(batch), exc_info=True)
            results = [await self._with_retry(item[0], item[2], self._apply_alone, item) for item in batch]
        for item, result in zip(batch, results, strict=True):
            if item[0] == "open" and result is False:
                self.calls.pop(item[2].call_id, None)
                self._remember_done(item[2].call_id)
            elif item[0] in ("write", "write-open") and isinstance(result, CdrWritten):
                self.written += 1
                self.bus.publish(result)  # after the commit: the CDR is on disk

    async def _apply(self, session: AsyncSession,
                     item: tuple[str, CallRecord | FinishedCall | CallEnded, CallEvent]) -> object:
        kind, data, _ = item
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
            data = record.finish_with(data)
        assert isinstance(data, FinishedCall)
        cdr = await service.write_cdr(session, data.tenant_id, data)
        if cdr is None:
            return None
        await session.flush()
        return service.cdr_written(cdr)

    async def _apply_alone(self, item: tuple[str, CallRecord | FinishedCall | CallEnded, CallEvent]) -> object:
        async with self.db.session() as session:
            result = await self._apply(session, item)
            await session.commit()
        return result

    async def _with_retry(self, what: str, ev: CallEvent, fn: Callable[[A], Awaitable[R]], arg: A) -> R | None:
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
