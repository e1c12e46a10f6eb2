"""The CRM's background work: a "call back" task for each missed inbound call, the reminders and
escalations of due tasks, and a task for each invoice gone overdue (:func:`zvonok.crm.invoices.overdue_scan`).

Nothing is kept in memory between runs: a missed call is read from its CDR when ``CdrWritten`` arrives,
and due tasks are read from the database every ``interval`` seconds (a task marks the reminder and the
escalation sent in its row, in the transaction that queues the event), so a restart neither loses nor
repeats one. With several nodes each runs the scan; the marks make the second a no-op at worst, and a
task's unique CDR key keeps a call to one task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from zvonok.bus import Bus, Subscription
from zvonok.cdr.events import CdrWritten
from zvonok.cdr.models import Cdr
from zvonok.storage.base import utcnow
from zvonok.storage.db import Database

from .invoices import overdue_scan
from .tasks import notify_due, task_for_missed_call

log = logging.getLogger(__name__)


class TaskScheduler:
    def __init__(self, db: Database, bus: Bus, *, interval: float = 30.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.bus = bus
        self.interval = interval
        self.clock = clock
        self._sub: Subscription | None = None
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sub = self.bus.subscribe(self.handle, event_types=(CdrWritten,), maxsize=10_000, name="crm:tasks")
        self._loop = asyncio.get_running_loop().create_task(self._run(), name="crm:reminders")

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.close()
            self._sub = None
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None

    async def handle(self, event: object) -> None:
        if not isinstance(event, CdrWritten) or event.missed is False:
            return  # (an answered or outgoing call: its CDR is not read)
        try:
            async with self.db.session() as session:
                cdr = await session.get(Cdr, event.cdr_id)
                if cdr is not None and await task_for_missed_call(session, cdr) is not None:
                    await session.commit()
        except Exception:  # noqa: BLE001 - one bad CDR must not stop the consumer
            log.exception("call-back task for CDR %s failed", event.cdr_id)

    async def tick(self) -> int:
        """One scan: tasks for invoices now overdue, reminders and escalations due now; returns how many
        notices were sent."""
        now = self.clock()
        async with self.db.session() as session:
            sent = await overdue_scan(session, now)
            sent += await notify_due(session, now)
            await session.commit()
        return sent

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - a failed scan is retried at the next one
                log.exception("task reminders scan failed")
            await asyncio.sleep(self.interval)
