"""The supervisor's wallboard: live state per queue and agent with today's KPIs, in one answer.

Live figures (waiting now, longest wait, agents by status, each agent's status and time in it) come from
the running :class:`~.runtime.CallCenterRuntime`; today's figures (offered, answered, abandoned, service
level, ASA, AHT, abandon rate, occupancy) are :mod:`.reports`' SQL over the queue log since the tenant's
local midnight, so the wallboard and the historic day report agree by construction. An agent's current
status has not been logged yet (its AGENTSTATUS row is written when it ends): its time so far is added to
the busy or available seconds, so occupancy moves while an agent talks. A supervisor limited to some
queues (``scope``, :mod:`.scope`) gets those queues and their agents only.

:class:`WallboardFeed` gives the same answer to the websocket (a ``Wallboard`` frame every second, :mod:`zvonok.api.ws`):
computed at most once per ``max_age`` for each tenant and scope, however many sockets watch it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.storage.db import Database

from . import reports, service
from . import schemas as s
from .agents import BUSY, AgentStatus
from .runtime import CallCenterRuntime
from .scope import Scope, agents_in_scope


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


async def wallboard(session: AsyncSession, runtime: CallCenterRuntime, tenant_id: int, *,
                    scope: Scope = None) -> s.WallboardOut:
    monotonic_now = runtime.clock()
    now = runtime.wall_time(monotonic_now)  # the queue log's time base
    offset = await reports.utc_offset(session, tenant_id, now)
    day_start = (now + offset) // 86400 * 86400 - offset
    rows, _total = await service.list_queues(session, tenant_id, limit=10_000, offset=0, only=scope)
    seen = await agents_in_scope(session, tenant_id, scope, runtime) if scope is not None else None
    names = await service.employee_names(session, tenant_id)
    queue_rows = {r.queue_id: r for r in await reports.queue_report(session, tenant_id, start=day_start, end=now + 1,
                                                                  group="day", utc_offset=offset)}
    agent_rows = {r.agent_id: r for r in await reports.agent_report(session, tenant_id, start=day_start, end=now + 1,
                                                                  group="day", utc_offset=offset)}
    agents: list[s.WallboardAgent] = []
    busy_available: dict[int, tuple[float, float]] = {}
    for agent in runtime.agents(tenant_id):
        if seen is not None and agent.id not in seen:
            continue
        report = agent_rows.get(agent.id)
        busy = report.busy_time if report else 0.0
        available = report.available_time if report else 0.0
        since = runtime.wall_time(agent.since)
        so_far = max(0.0, now - max(since, day_start))
        if agent.status in BUSY:
            busy += so_far
        elif agent.status is AgentStatus.AVAILABLE:
            available += so_far
        busy_available[agent.id] = (busy, available)
        agents.append(s.WallboardAgent(
            employee_id=agent.id, full_name=names.get(agent.id, ""), status=agent.status.value, reason=agent.reason,
            queue_ids=sorted(agent.queues), in_status=max(0.0, monotonic_now - agent.since),
            calls=report.calls if report else 0, talk_time=report.talk_time if report else 0.0,
            occupancy=_ratio(busy, busy + available), busy_elsewhere=agent.busy_elsewhere or agent.held_elsewhere))
    queues: list[s.WallboardQueue] = []
    callbacks: list[s.WallboardCallback] = []
    for queue in rows:
        callbacks += [s.WallboardCallback(queue_id=queue.id, number=c.number, position=c.position, waiting=c.waiting,
                                          attempts=c.attempts, retry_in=c.retry_in, ringing=c.ringing)
                      for c in runtime.callbacks(tenant_id, queue.id)]
        snap = runtime.snapshot(tenant_id, queue.id)
        day = queue_rows.get(queue.id)
        members = [busy_available[a.employee_id] for a in agents if queue.id in a.queue_ids]
        queue_busy = sum(b for b, _ in members)
        queues.append(s.WallboardQueue(
            queue_id=queue.id, name=queue.name, number=queue.number,
            waiting=snap.waiting if snap else 0, callbacks=snap.callbacks if snap else 0,
            longest_wait=snap.longest_wait if snap else 0.0, agents=dict(snap.agents) if snap else {},
            offered=day.offered if day else 0, answered=day.answered if day else 0,
            abandoned=day.abandoned if day else 0, service_level=day.service_level if day else None,
            asa=day.asa if day else None, aht=day.aht if day else None,
            abandon_rate=day.abandon_rate if day else None,
            occupancy=_ratio(queue_busy, queue_busy + sum(a for _, a in members))))
    agents.sort(key=lambda a: (a.full_name, a.employee_id))
    return s.WallboardOut(at=now, day_start=day_start, queues=queues, agents=agents, callbacks=callbacks)


class WallboardFeed:
    """The wallboard of a tenant (and a supervisor's scope) computed at most once per ``max_age`` seconds: the
    sockets watching the same one share it, and one computation runs at a time per key. Keys nobody asked for
    in ``forget_after`` seconds are dropped."""

    def __init__(self, db: Database, runtime: CallCenterRuntime, *, max_age: float = 0.9, forget_after: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.runtime = runtime
        self.max_age = max_age
        self.forget_after = forget_after
        self.clock = clock
        self.computed = 0  # how many times a wallboard was computed (for tests and metrics)
        self._boards: dict[tuple[int, Scope], tuple[float, s.WallboardOut]] = {}
        self._locks: dict[tuple[int, Scope], asyncio.Lock] = {}
        self._asked: dict[tuple[int, Scope], float] = {}

    async def get(self, tenant_id: int, scope: Scope = None) -> s.WallboardOut:
        key = (tenant_id, scope)
        self._asked[key] = self.clock()
        self._forget()
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # a second socket asking meanwhile gets the board the first one computes
            kept = self._boards.get(key)
            if kept is not None and self.clock() - kept[0] < self.max_age:
                return kept[1]
            async with self.db.session() as session:
                board = await wallboard(session, self.runtime, tenant_id, scope=scope)
            self.computed += 1
            self._boards[key] = (self.clock(), board)
            return board

    def _forget(self) -> None:
        now = self.clock()
        for key in [k for k, asked in self._asked.items() if now - asked > self.forget_after]:
            lock = self._locks.get(key)
            if lock is not None and lock.locked():
                continue
            del self._asked[key]
            self._boards.pop(key, None)
            self._locks.pop(key, None)
