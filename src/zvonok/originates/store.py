"""The originate journal: the call engine's ``journal`` port (telephony/originate.py) on the database.

How it works: :class:`OriginateLog` is called on the engine's loop with an :class:`OriginateRecord` at each
phase change of an originated call; it only keeps the newest record per call in memory and wakes its job.
The job (:meth:`OriginateLog.run`) writes what is pending in one transaction — an insert for a new call, an
update of its row otherwise (the row holds the whole record, so a later write simply wins) — and retries
on the next wake or poll while the database is away; at most ``max_pending`` calls wait (beyond that a
new call is not journaled, and a warning says so). Nothing is written on a call's path.

Restart: :func:`close_interrupted` (at start, before the engine) ends the rows a stopped process left in
progress: not yet connected → ``failed`` with reason ``server_restarted``; connected → ``ended`` (they
talked; the call's CDR is the interrupted one). Several nodes on one database: only rows whose call is not
open any more (``calls_open``, kept by the CDR writer's heartbeat) and that are older than the heartbeat's
staleness, so a live node's calls are never touched.

Retention: :meth:`OriginateLog.prune` (hourly, by the job) deletes the rows finished ``keep_days`` ago
(``originate_keep_days``), and the oldest of a company beyond ``per_tenant`` rows; with the originate quota
(``originate_per_minute``) that bounds what one company can make the table hold.

The status REST route reads a row with :func:`find` (telephony/originate_http.py): the running process's
own calls answer from memory first (fresher than the last write), any other from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.cdr.models import OpenCall
from zvonok.logs import get_logger
from zvonok.storage.db import Database
from zvonok.telephony.originate import OriginateRecord

from .models import OriginateRequest

log = get_logger(__name__)

KEEP_DAYS = 90
PER_TENANT = 100_000  # rows of one company at most (the oldest go first)
PRUNE_EVERY = 3600.0
RESTARTED = "server_restarted"


def _at(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _apply(row: OriginateRequest, record: OriginateRecord) -> None:
    row.kind, row.requested_by = record.kind, record.requested_by[:64]
    row.employee_id, row.extension, row.to_number = record.employee_id, record.extension[:32], record.to[:32]
    row.client_id, row.phase, row.reason = record.client_id, record.phase.value, (record.reason or None)
    if row.reason is not None:
        row.reason = row.reason[:64]
    row.created_at = _at(record.started_at) or datetime.now(UTC)
    row.dialing_at, row.connected_at = _at(record.dialing_at), _at(record.connected_at)
    row.finished_at = _at(record.finished_at)
    row.updated_at = datetime.now(UTC)


class OriginateLog:
    """The engine's originate journal: records queued on the loop, written by :meth:`run`."""

    def __init__(self, db: Database, *, keep_days: float = KEEP_DAYS, per_tenant: int = PER_TENANT,
                 max_pending: int = 10_000, poll: float = 5.0) -> None:
        self.db = db
        self.keep_days = keep_days
        self.per_tenant = per_tenant
        self.max_pending = max_pending
        self.poll = poll
        self._pending: OrderedDict[str, OriginateRecord] = OrderedDict()
        self._wake = asyncio.Event()
        self._pruned_at = -PRUNE_EVERY

    def __call__(self, record: OriginateRecord) -> None:
        if record.call_id not in self._pending and len(self._pending) >= self.max_pending:
            log.warning("originate journal full: a call is not journaled", call=record.call_id,
                        tenant=record.tenant_id)
            return
        self._pending[record.call_id] = record
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write what is pending in one transaction; how many calls. On failure they stay pending (a newer
        record of a call that arrived meanwhile wins) and the error is raised."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, OrderedDict()
        try:
            async with self.db.session() as session:
                rows = {r.call_id: r for r in (await session.execute(
                    select(OriginateRequest).where(OriginateRequest.call_id.in_(list(batch))))).scalars()}
                for call_id, record in batch.items():
                    row = rows.get(call_id)
                    if row is None:
                        row = OriginateRequest(tenant_id=record.tenant_id, call_id=call_id)
                        session.add(row)
                    elif row.tenant_id != record.tenant_id:
                        continue  # (a call id is a uuid: never another company's)
                    _apply(row, record)
                await session.commit()
        except BaseException:
            for call_id, record in batch.items():
                self._pending.setdefault(call_id, record)
            raise
        return len(batch)

    async def run(self, stopping: asyncio.Event) -> None:
        """The job: write on each wake (or every ``poll`` s while something waits), prune hourly, and write
        what is left at the stop."""
        while not stopping.is_set():
            self._wake.clear()  # (a record queued while writing wakes the next round)
            try:
                await self.flush()
                if time.monotonic() - self._pruned_at >= PRUNE_EVERY:
                    self._pruned_at = time.monotonic()
                    await self.prune()
            except Exception:  # noqa: BLE001 - the database may be away: the records wait for the next round
                log.exception("writing the originate journal failed")
            if self._pending and not self._wake.is_set():  # a failed write: again after a pause, not at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self.poll)
                continue
            waiter = asyncio.ensure_future(self._wake.wait())
            stop = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stop.cancel()
        with contextlib.suppress(Exception):
            await self.flush()

    async def prune(self, now: datetime | None = None) -> int:
        """Delete the rows finished more than ``keep_days`` ago, and each company's oldest beyond
        ``per_tenant``; how many."""
        before = (now or datetime.now(UTC)) - timedelta(days=self.keep_days)
        deleted = 0
        async with self.db.session() as session:
            result = await session.execute(delete(OriginateRequest).where(OriginateRequest.created_at < before))
            deleted += int(result.rowcount)  # type: ignore[attr-defined]
            crowded = (await session.execute(
                select(OriginateRequest.tenant_id).group_by(OriginateRequest.tenant_id)
                .having(func.count() > self.per_tenant))).scalars().all()
            for tenant_id in crowded:
                last_kept = (await session.execute(
                    select(OriginateRequest.id).where(OriginateRequest.tenant_id == tenant_id)
                    .order_by(OriginateRequest.id.desc()).offset(self.per_tenant - 1).limit(1))).scalar_one()
                result = await session.execute(delete(OriginateRequest).where(
                    OriginateRequest.tenant_id == tenant_id, OriginateRequest.id < last_kept))
                deleted += int(result.rowcount)  # type: ignore[attr-defined]
            await session.commit()
        if deleted:
            log.info("pruned old originate requests", rows=deleted)
        return deleted


async def close_interrupted(db: Database, now: datetime, *, stale_before: datetime | None = None) -> int:
    """End the rows a stopped process left in progress (see the module docstring); how many."""
    ended = 0
    async with db.session() as session:
        for phases, values in (
            (("ringing_employee", "dialing"), {"phase": "failed", "reason": RESTARTED}),
            (("connected",), {"phase": "ended"}),
        ):
            query = update(OriginateRequest).where(OriginateRequest.phase.in_(phases))
            if stale_before is not None:
                query = query.where(OriginateRequest.created_at < stale_before, ~exists(
                    select(OpenCall.call_id).where(OpenCall.call_id == OriginateRequest.call_id)))
            result = await session.execute(query.values(finished_at=now, updated_at=now, **values)
                                           .execution_options(synchronize_session=False))
            ended += int(result.rowcount)  # type: ignore[attr-defined]
        await session.commit()
    if ended:
        log.warning("originated calls interrupted by the last stop", calls=ended)
    return ended


async def find(session: AsyncSession, tenant_id: int, call_id: str) -> OriginateRequest | None:
    """The company's originated call ``call_id`` (another company's is None, as a missing one)."""
    return (await session.execute(select(OriginateRequest).where(
        OriginateRequest.tenant_id == tenant_id, OriginateRequest.call_id == call_id))).scalar_one_or_none()
