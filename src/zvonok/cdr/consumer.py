"""The CDR writer: a durable bus subscriber that folds each call's events and, at ``CallEnded``, commits
the CDR and only then publishes :class:`~zvonok.cdr.events.CdrWritten` (durability before announcement).

Database writes per call: ``calls_open`` insert at ``CallStarted``; a snapshot refresh at
``CallAnswered``, ``CallTransferred`` and ``RecordingStarted`` (what an "interrupted" CDR needs after a
crash: who answered and when, the recording); the CDR at ``CallEnded``. Other events only change memory.

Idempotent: a ``CallStarted`` for a call that already has a CDR is ignored with all its later events, and
``write_cdr`` refuses a second CDR per ``call_id``. A ``CallEnded`` whose call is not in memory (this
process started after the call did) is completed from the ``calls_open`` snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError, SQLAlchemyError

from zvonok import metrics
from zvonok.bus import Bus, Subscription
from zvonok.cdr import service
from zvonok.cdr.events import CdrWritten
from zvonok.cdr.state import CallRecord, FinishedCall
from zvonok.storage.db import Database
from zvonok.telephony.events import (
    CALL_EVENT_TYPES,
    CallAnswered,
    CallEnded,
    CallEvent,
    CallStarted,
    CallTransferred,
    RecordingStarted,
)

log = logging.getLogger(__name__)
A = TypeVar("A")
R = TypeVar("R")

_SNAPSHOT_AT = (CallAnswered, CallTransferred, RecordingStarted)
_DONE_MEMORY = 10_000  # finished call ids remembered to ignore late or replayed events cheaply


class CdrWriter:
    """Build with the database and the bus, then :meth:`start` (subscribes); :meth:`stop` drains."""

    def __init__(self, db: Database, bus: Bus, *, retry_delays: tuple[float, ...] = (0.1, 0.5, 2.0)) -> None:
        self.db = db
        self.bus = bus
        self.retry_delays = retry_delays
        self.calls: dict[str, CallRecord] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self.subscription: Subscription | None = None
        self.written = 0

    def start(self) -> Subscription:
        self.subscription = self.bus.subscribe(self.handle, event_types=CALL_EVENT_TYPES, name="cdr-writer")
        return self.subscription

    async def stop(self) -> None:
        if self.subscription is not None:
            await self.subscription.close(drain=True)
            self.subscription = None

    async def handle(self, event: CallEvent) -> None:
        if event.call_id in self._done:
            return
        if isinstance(event, CallStarted):
            await self._started(event)
            return
        record = self.calls.get(event.call_id)
        if isinstance(event, CallEnded):
            await self._ended(event, record)
            return
        if record is None:
            return  # a call this process never saw start (or already written): nothing to add to
        record.apply(event)
        if isinstance(event, _SNAPSHOT_AT):
            await self._with_retry("snapshot", event, self._snapshot, record)

    async def _started(self, ev: CallStarted) -> None:
        if ev.call_id in self.calls:
            return
        record = CallRecord.started(ev)
        opened = await self._with_retry("open", ev, self._open, record)
        if opened is False:
            self._remember_done(ev.call_id)
        else:
            self.calls[ev.call_id] = record

    async def _ended(self, ev: CallEnded, record: CallRecord | None) -> None:
        if record is None:
            async with self.db.session() as session:
                record = await service.load_open_call(session, ev.tenant_id, ev.call_id)
            if record is None:
                log.warning("CallEnded for unknown call %s of tenant %s: no CDR", ev.call_id, ev.tenant_id)
                self._remember_done(ev.call_id)
                return
        finished = record.finish_with(ev)
        written: CdrWritten | None = await self._with_retry("write", ev, self._write, finished)
        self.calls.pop(ev.call_id, None)
        self._remember_done(ev.call_id)
        if written is not None:
            self.written += 1
            self.bus.publish(written)  # after the commit: the CDR is on disk

    async def _open(self, record: CallRecord) -> bool:
        async with self.db.session() as session:
            opened = await service.open_call(session, record.tenant_id, record)
            await session.commit()
        return opened

    async def _snapshot(self, record: CallRecord) -> None:
        async with self.db.session() as session:
            await service.save_open_call(session, record.tenant_id, record)
            await session.commit()

    async def _write(self, finished: FinishedCall) -> CdrWritten | None:
        async with self.db.session() as session:
            cdr = await service.write_cdr(session, finished.tenant_id, finished)
            await session.commit()
        return service.cdr_written(cdr) if cdr is not None else None

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
