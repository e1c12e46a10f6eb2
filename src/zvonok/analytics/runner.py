"""The exports of one process: on demand (REST, one tenant) and nightly (every tenant, one after another).

A tenant has at most one export at a time (a second request while one runs is :class:`ExportRunning`,
the API's 409), and an on-demand export no sooner than ``min_interval`` seconds after the tenant's last
one started (:class:`TooSoon`, the API's 429 with Retry-After): a full rebuild reads every row of the
tenant, so one company cannot keep the database busy. The process runs one export at a time, whichever
tenant asks: the others wait their turn (they count as running). These marks live in memory: with several
nodes each keeps its own, and each node's data directory holds its own files (docs/analytics.md). The
nightly run is cluster-wide: each night is claimed in the database first (``job_runs``,
:func:`zvonok.storage.jobs.claim_run`), so one node exports and the others let that night go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from zvonok.org.models import Tenant
from zvonok.storage.base import utcnow
from zvonok.storage.db import Database
from zvonok.storage.jobs import claim_run

from .export import ExportReport, TenantMissing, export_tenant, file_of

log = logging.getLogger(__name__)
NIGHTLY_JOB = "analytics-nightly"  # its row in job_runs


class ExportRunning(Exception):
    pass


@dataclass
class TooSoon(Exception):
    retry_after: int  # seconds


def next_nightly(now: datetime, hour: int) -> datetime:
    """The next ``hour``:00 (UTC) strictly after ``now``."""
    at = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


class Exports:
    def __init__(self, db: Database, directory: Path, *, min_interval: float = 600.0, target: str = "duckdb",
                 clock: Callable[[], float] = time.monotonic, node: str = "") -> None:
        self.db = db
        self.node = node or "node"  # named in job_runs when this node claims a night
        self.directory = directory
        self.target = target
        self.min_interval = min_interval
        self.clock = clock
        self._running: dict[int, asyncio.Task[ExportReport | None]] = {}
        self._started: dict[int, float] = {}
        self.errors: dict[int, str] = {}  # the last export's failure per tenant, until one succeeds
        self._one_at_a_time = asyncio.Lock()

    def running(self, tenant_id: int) -> bool:
        return tenant_id in self._running

    def start(self, tenant_id: int, *, on_demand: bool = True, full: bool = False) -> asyncio.Task[ExportReport | None]:
        """Start the tenant's export in the background (incremental unless ``full``); raises
        :class:`ExportRunning` or :class:`TooSoon`."""
        if tenant_id in self._running:
            raise ExportRunning
        now = self.clock()
        last = self._started.get(tenant_id)
        if on_demand and last is not None and now - last < self.min_interval:
            raise TooSoon(max(1, int(self.min_interval - (now - last) + 0.999)))
        self._started[tenant_id] = now
        task = asyncio.get_running_loop().create_task(self._run(tenant_id, full), name=f"analytics:t{tenant_id}")
        self._running[tenant_id] = task
        task.add_done_callback(lambda _: self._running.pop(tenant_id, None))
        return task

    async def wait(self, tenant_id: int) -> ExportReport | None:
        """The running export's report (None: none runs, or it failed)."""
        task = self._running.get(tenant_id)
        return None if task is None else await task

    async def _run(self, tenant_id: int, full: bool) -> ExportReport | None:
        async with self._one_at_a_time:
            try:
                report = await export_tenant(self.db, tenant_id, self.directory, target=self.target, full=full)
            except TenantMissing:
                return None
            except Exception as exc:  # noqa: BLE001 - reported on the status route; the next run tries again
                log.exception("analytics export of tenant %s failed", tenant_id)
                self.errors[tenant_id] = f"{exc.__class__.__name__}: {exc}"[:500]
                return None
        self.errors.pop(tenant_id, None)
        log.info("analytics export of tenant %s (%s): %s rows, %s written, in %.1f s", tenant_id, report.mode,
                 sum(report.rows.values()), sum(report.written.values()), report.seconds)
        return report

    async def close(self) -> None:
        """Stop the exports in progress (the server is stopping): their work directories are removed."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def export_all(self, stopping: asyncio.Event | None = None, *, only_used: bool = False) -> int:
        """Every tenant's export, one after another (a suspended company's too: its history is still its
        own), and the files of companies deleted since removed; returns how many were written.
        ``only_used`` (the nightly run): only the companies that have an export already — one asked for
        once turns the nightly refresh on; a platform's companies that never use analytics cost no file
        (DuckDB's smallest is ≈ 5 MB) and no work every night."""
        async with self.db.session() as session:
            ids = list((await session.execute(select(Tenant.id).order_by(Tenant.id))).scalars())
        known = {file_of(self.directory, tenant_id).name for tenant_id in ids}
        if self.directory.is_dir():
            for path in self.directory.glob("t*.duckdb"):
                if path.name not in known and path.name[1:-7].isdigit():
                    path.unlink(missing_ok=True)
        done = 0
        for tenant_id in ids:
            if stopping is not None and stopping.is_set():
                break
            if only_used and not file_of(self.directory, tenant_id).exists():
                continue
            with contextlib.suppress(ExportRunning):
                if await self.start(tenant_id, on_demand=False) is not None:
                    done += 1
        return done

    async def run(self, nightly_hour: int | None, stopping: asyncio.Event, *,
                  now: Callable[[], datetime] = utcnow) -> None:
        """The server's job: every day at ``nightly_hour``:00 UTC (None: never) :meth:`export_all` of the
        companies that have an export (``only_used``), until
        ``stopping`` is set; then the exports in progress are stopped."""
        try:
            if nightly_hour is None:
                await stopping.wait()
            else:
                await self._nightly(nightly_hour, stopping, now)
        finally:
            await self.close()

    async def nightly(self, night: date, stopping: asyncio.Event | None = None) -> int | None:
        """The night's exports (:meth:`export_all` of the companies that have one) if this node claims the
        night first: None when another node (or this one) has it already."""
        if not await claim_run(self.db, NIGHTLY_JOB, night.isoformat(), node=self.node):
            log.info("nightly analytics export of %s: claimed by another node", night)
            return None
        return await self.export_all(stopping, only_used=True)

    async def _nightly(self, hour: int, stopping: asyncio.Event, now: Callable[[], datetime]) -> None:
        while not stopping.is_set():
            at = next_nightly(now(), hour)
            delay = (at - now()).total_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), max(delay, 0.0))
            if stopping.is_set():
                return
            try:
                done = await self.nightly(at.date(), stopping)
                if done is not None:
                    log.info("nightly analytics export: %s tenants", done)
            except Exception:  # noqa: BLE001 - tried again the next night
                log.exception("nightly analytics export failed")
