"""Cluster-wide jobs: a periodic job that must run once per period however many nodes run it (the nightly
analytics export) claims the period first.

How it works: ``job_runs`` holds one row per job, the last period claimed and by whom. A node claims a
period with one guarded UPDATE (``period < :period``: the row moves forward only) or, the first time, an
INSERT; exactly one node's statement changes the row (the other's UPDATE matches nothing once the first
commits, a second INSERT breaks the primary key), so exactly one node runs the job for that period.
Periods are strings that sort as they follow each other (``2026-03-01``). A node that claimed a period and
died before finishing is not replaced: the next period runs as usual (nightly jobs catch up the next
night).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import String, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from zvonok.storage.base import Base, utcnow

if TYPE_CHECKING:
    from zvonok.storage.db import Database


class JobRun(Base):
    """The last period a cluster-wide job was claimed for (platform-wide: no tenant)."""

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(32))
    node: Mapped[str] = mapped_column(String(64))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)


async def claim_run(db: Database, name: str, period: str, *, node: str,
                    now: Callable[[], datetime] = utcnow) -> bool:
    """Claim ``period`` of the job ``name`` for this node: True for exactly one caller per period."""
    async with db.session() as session:
        result = await session.execute(update(JobRun).where(JobRun.name == name, JobRun.period < period)
                                       .values(period=period, node=node[:64], claimed_at=now()))
        if result.rowcount == 1:  # type: ignore[attr-defined]
            await session.commit()
            return True
        if await session.get(JobRun, name) is not None:
            return False  # claimed already, by another node or by us
        session.add(JobRun(name=name, period=period, node=node[:64], claimed_at=now()))
        try:
            await session.commit()
        except IntegrityError:  # another node's INSERT committed first
            return False
        return True
