"""The call center in a running process: one :class:`~zvonok.callcenter.center.ContactCenter`, its
queues read from the database, its timer on the event loop and its queue log written to ``queue_log``.

How it works: every input (an agent logs in from the API, the call engine reports a caller or an offer
through :meth:`CallCenterRuntime.feed`) runs on the center with ``now`` from the injected clock, then
:meth:`CallCenterRuntime._after` drains the center: actions go to the registered handlers (the call
engine carries them out), log entries to an in-memory backlog, the state of the agents and queues they
touched to the bus (:class:`~zvonok.callcenter.events.AgentStateChanged`,
:class:`~zvonok.callcenter.events.QueueStateChanged`), and one ``loop.call_at`` is re-armed on
:meth:`~zvonok.callcenter.center.ContactCenter.next_deadline`.

Queue and membership changes, skills, an agent's employee deleted or deactivated and a deleted tenant
reach the center through the database's committed events, applied in order by one task.

Callback requests are kept in the database (:mod:`.callbacks`): the center's
changes (:class:`~zvonok.callcenter.center.CallbackChange`) go to a backlog of their own, written in order by the same
task after the log entries; :meth:`CallCenterRuntime.start` puts the open ones back in their queues' lines.
Several nodes: a request is its node's (``owner``); a starting node puts back its own and takes over those of
no live node, and after each dead-node sweep :meth:`CallCenterRuntime.take_over_callbacks` takes over those of
the nodes gone (:func:`.callbacks.take_over`: each by one node only) and lets go of those another node took.

The backlog is written by one background task in batches (a short delay gathers the entries of a
burst). A failed write keeps the batch and tries again after ``retry_delay``: the log is the reports'
only source, so it is never dropped while the process lives; :meth:`stop` writes what is left.

Queue and agent ids are database ids (unique across tenants), so one center serves every tenant of the
process; the tenant of each log entry and event comes from its queue or from the agent's login.

Several nodes (issue 14; ``claims`` given: the server passes its ``SharedHolds`` when it runs with a bus on
PostgreSQL; without them nothing below happens and the center is the node's alone): each node runs its own
center, and two things are shared through the database (docs/cluster.md says why not through NATS):

- **presence** — the queues an agent is logged in to and its not-ready reason. A change made on this node
  (the API, a pause after missed offers, a pause taken after wrap-up) is written to ``agent_presence`` by
  one background task with an :class:`~.events.AgentPresenceChanged` in the same transaction; the other
  nodes read the row and apply it to their center (:meth:`CallCenterRuntime.mirror`) as inputs whose
  presence entries are not logged again (the writing node logged them). A starting node reads every row.
  The row written last wins, on every node: a node does not apply a row read while it has a change of its
  own for that agent not written yet (or made since the read) — applied, the row would undo that change
  here, which its write then restores for the others only — and reads the row again once its change is
  written (another node's write may have come after it). Each node thus ends with the row's last word,
  without a version column: the row is read, not carried by the event, so a read is never older than the
  last event heard.
- **who has an agent** — before an agent's phone rings for this node's queue call the desk takes the
  agent's claim (:meth:`CallCenterRuntime.claim`, a ``call_holds`` row: :meth:`AgentClaims.claim_agent`);
  another node's claim makes the agent ``held_elsewhere`` here, the offer is withdrawn without counting as a
  miss and the caller offered to someone else. The claim stays through the call and wrap-up and is released
  when the agent is free of this node's calls (:meth:`CallCenterRuntime._release_claims`); every
  ``sync_every`` seconds a node reads the other nodes' claims and sets ``held_elsewhere`` accordingly, so an
  agent busy on one node shows (and is counted) busy on every node, and is offered again once freed —
  a killed node's claims, too, once the dead-node sweep has deleted them. An agent on a non-queue call here
  (``busy_elsewhere``) has this node's row too (:meth:`AgentClaims.mark_agent`): busy for every node. So has
  one already on such a call when it logs in, here or on another node (a mirrored login): the call engine
  says so (``on_other_call``, set by the desk). A login here reads the claims ``recheck_after`` seconds
  later: a node with the agent's call has marked it by then.
- **the line** — each caller waiting in this node's queues is a ``call_holds`` row (its queue, when it joined,
  its priority), and so is each callback request it keeps while the request may be offered (not while it
  waits for a retry); a claim for a caller or request is refused (``"ahead"``) while another node has one
  ahead of it in the agent's queues (by queue weight, priority, arrival) whom nobody is offered and the
  agent may take: this node lets the agent go and says so (:class:`~.events.AgentYielded`), that node
  reads the claims at once and offers it; this node reads them again ``recheck_after`` seconds later and
  offers the agent again if nobody took it (that caller gone meanwhile). The other nodes' callers and
  requests are counted in the queue snapshot (wallboard, live view) and in the positions announced
  (``ContactCenter.elsewhere``) as of the last read.
- **the wait estimate** — the queue calls this node completed (count, talk + wrap-up seconds) are one
  ``call_holds`` row per queue (:meth:`AgentClaims.share_handled`); each read adds the other nodes' to the
  average handle time (``ContactCenter.handled_elsewhere``).
- **the strategies' memory** — the agent's calls and talk time and its last round-robin offer ride with its
  presence row; a node takes the larger counts and the latest offer (:meth:`CallCenterRuntime.mirror`), and
  writes them merged the same way, whole-row writes (login, pause) too (``_merged_memory``). A change of
  this memory alone is written the same way into those columns only, and only into a row that
  exists (:meth:`CallCenterRuntime._write_memory`): this node's queues and pause may be older than the row —
  a call ending here just as another node logs the agent out must not log the agent in again everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, NamedTuple, Protocol, TypeVar

from sqlalchemy import case, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.bus import Bus
from zvonok.org.events import EntityChanged, TenantDeleted
from zvonok.org.models import Employee
from zvonok.pstn.holds import Line, Waiter
from zvonok.storage.db import Database, emit

from . import callbacks, service
from . import log as ql
from .agents import BUSY, Agent, AgentStatus
from .center import Action, CallbackChange, CallbackRequest, Caller, ContactCenter, Offer, QueueSnapshot
from .events import (
    AgentChanged,
    AgentPresenceChanged,
    AgentStateChanged,
    AgentYielded,
    QueueChanged,
    QueueStateChanged,
)
from .log import QueueLogEntry
from .models import AgentPresence, QueueCallbackRow, QueueLogRow
from .queues import Strategy

log = logging.getLogger(__name__)
T = TypeVar("T")
_AGENT_EVENTS = frozenset({ql.AGENTSTATUS, ql.ADDMEMBER, ql.REMOVEMEMBER, ql.PAUSE, ql.UNPAUSE})
_PRESENCE_EVENTS = frozenset({ql.ADDMEMBER, ql.REMOVEMEMBER, ql.PAUSE, ql.UNPAUSE})


class Presence(NamedTuple):
    """What every node knows of an agent (``agent_presence``)."""

    queues: tuple[int, ...] = ()  # the queues logged in to
    reason: str | None = None  # the not-ready reason (None: ready)
    calls: int = 0  # queue calls handled, on any node (fewest-calls)
    talk_time: float = 0.0  # (least-talk-time)
    offered: tuple[int, float] | None = None  # the last round-robin offer: (queue, wall-clock time)


NOBODY = Presence()


class AgentClaims(Protocol):
    """Who has an agent, and who waits in which queue, across nodes (:class:`zvonok.pstn.holds.SharedHolds`)."""

    node: str

    async def announce(self) -> None: ...

    async def claim_agent(self, agent_id: int, call_id: str, *, line: Line | None = None) -> str: ...

    def mark_agent(self, agent_id: int, call_id: str) -> None: ...

    def release_agent(self, agent_id: int) -> None: ...

    def agents_claimed(self) -> set[int]: ...

    async def agents_elsewhere(self) -> set[int] | None: ...

    def hold_caller(self, queue_id: int, call_id: str, *, priority: int, since: float,
                    callback: bool = False) -> None: ...

    def release_caller(self, call_id: str) -> None: ...

    def callers_held(self) -> set[str]: ...

    async def callers_elsewhere(self) -> list[Waiter] | None: ...

    def share_handled(self, queue_id: int, seconds: float, calls: int) -> None: ...

    async def handled_elsewhere(self) -> dict[int, tuple[float, int]] | None: ...


def presence_of(agent: Agent | None, offered: tuple[int, float] | None = None) -> Presence:
    if agent is None or not agent.queues:
        return NOBODY
    reason = agent.reason if agent.status is AgentStatus.NOT_READY else agent.pause_after
    return Presence(tuple(sorted(agent.queues)), reason, agent.calls, agent.talk_time, offered)


def _row_presence(row: AgentPresence | None) -> Presence:
    if row is None:
        return NOBODY
    offered = (row.offered_queue, row.offered_at) if row.offered_queue is not None and row.offered_at else None
    return Presence(tuple(row.queues), row.reason, row.calls, row.talk_time, offered)


def _merged_memory(calls: Any, talk_time: Any, offered: tuple[Any, Any] | None) -> dict[str, Any]:
    """The strategies' memory columns of an agent's row merged with what this node writes (values, or the
    upsert's ``excluded`` columns): the larger counts and the later round-robin offer, as
    :meth:`CallCenterRuntime._mirror_memory` merges them when reading. A node's write of the whole row (a
    login, a pause) must not put its own older counts back over another node's call just written."""
    values: dict[str, Any] = {"calls": func.greatest(AgentPresence.calls, calls),
                              "talk_time": func.greatest(AgentPresence.talk_time, talk_time)}
    if offered is not None:
        queue_id, at = offered
        later = or_(AgentPresence.offered_at.is_(None), AgentPresence.offered_at < at)
        values["offered_queue"] = case((later, queue_id), else_=AgentPresence.offered_queue)
        values["offered_at"] = case((later, at), else_=AgentPresence.offered_at)
    return values


class CallCenterRuntime:
    def __init__(self, db: Database, bus: Bus | None = None, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, rng: random.Random | None = None,
                 batch_size: int = 500, flush_delay: float = 0.2, retry_delay: float = 1.0,
                 claims: AgentClaims | None = None, sync_every: float = 5.0, recheck_after: float = 1.0) -> None:
        self.db = db
        self.bus = bus
        self.claims = claims  # several nodes: presence and claims shared (see the module notes)
        self.sync_every = sync_every
        self.recheck_after = recheck_after  # a read of the claims this long after letting an agent go, or a login
        # whether the employee is on a call of this node that is not a queue's (the call engine's answer, given
        # by the desk): an agent logging in meanwhile is busy at once
        self.on_other_call: Callable[[int], bool] = lambda _employee_id: False
        self._recheck: asyncio.Task[None] | None = None  # the read of the claims soon (see _recheck_soon)
        self._recheck_more = False  # asked again while it waited: one more after it
        self._presence: dict[int, Presence] = {}  # what the nodes know of each agent (written or read)
        self._offered: dict[int, tuple[int, float]] = {}  # agent -> its last round-robin offer (queue, wall)
        self._rr_at: dict[int, float] = {}  # queue -> when its round robin's last agent was offered (wall)
        # agent -> (tenant, presence, whole) to write; not ``whole``: only the strategies' memory changed
        self._dirty: dict[int, tuple[int, Presence, bool]] = {}
        self._presence_wake: asyncio.Event | None = None
        self._mirroring: int | None = None  # the agent whose other node's presence is being applied
        self._edits: dict[int, int] = {}  # agent -> presence changes made here (a read older than one: not applied)
        self._writing: set[int] = set()  # the agents whose presence write is under way
        self._behind: dict[int, int] = {}  # agent -> tenant: a row not applied meanwhile, read again once written
        self._presence_lock = asyncio.Lock()
        self._claiming: dict[int, int] = {}  # agent -> claims of this node under way
        self._remote_waiting: dict[int, list[Waiter]] = {}  # queue -> the other nodes' callers and callbacks
        self._held_as: dict[str, bool] = {}  # call -> shared as a callback request (else as a live caller)
        self._shared_tasks: list[asyncio.Task[None]] = []
        self._presence_writer: asyncio.Task[None] | None = None  # one of the shared tasks
        self.clock = clock
        self.wall = wall
        self.center = ContactCenter(rng=rng, wall_offset=wall() - clock())
        self.action_handlers: list[Callable[[Action], None]] = []
        self.batch_size = batch_size
        self.flush_delay = flush_delay
        self.retry_delay = retry_delay
        self.backlog: list[dict[str, Any]] = []
        self.callback_backlog: list[tuple[int, CallbackChange]] = []  # (tenant, change), written in order
        self.write_failures = 0
        self._queue_tenant: dict[int, int] = {}  # also of deleted queues: their last entries need it
        self._agent_tenant: dict[int, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._changes: asyncio.Queue[object] | None = None
        self._reloader: asyncio.Task[None] | None = None
        self._stopping = False
        self._write_lock = asyncio.Lock()

    # -- life ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        async with self.db.session() as session:
            configs = await service.platform_all_queues(session)
        now = self.clock()
        for config in configs:
            self._queue_tenant[config.id] = config.tenant_id
            self.center.set_queue(config, now)
        await self._restore_callbacks()
        self._wake = asyncio.Event()
        self._changes = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name="callcenter:queue_log")
        self._reloader = asyncio.create_task(self._reload_loop(), name="callcenter:reload")
        self.db.add_listener(self.on_event)
        if self.claims is not None:
            await self._load_presence()
            self._presence_wake = asyncio.Event()
            self._presence_writer = asyncio.create_task(self._presence_loop(), name="callcenter:presence")
            self._shared_tasks = [self._presence_writer,
                                  asyncio.create_task(self._sync_loop(), name="callcenter:claims")]
        self._after()

    async def _restore_callbacks(self) -> None:
        """The callback requests kept from before the restart go back in line, in the order they joined it;
        several nodes: this node's own, and those of no live node, taken over (:func:`.callbacks.take_over`)."""
        if self.claims is not None:
            await self.claims.announce()  # alive for the others before any request is ours
        async with self.db.session() as session:
            pruned = await callbacks.prune(session)
            await session.commit()
            node = self.claims.node if self.claims is not None else None
            rows = await callbacks.open_requests(session, owner=node)
            if node is not None:
                rows = sorted([*rows, *await callbacks.take_over(session, node)], key=lambda r: (r.joined_at, r.id))
        restored = self._put_back(rows)
        if restored or pruned:
            log.info("call center: %d callback requests back in line, %d old ones deleted", restored, pruned)

    def _put_back(self, rows: Iterable[QueueCallbackRow]) -> int:
        wall = self.center.wall_offset
        restored = 0
        for row in rows:
            if row.queue_id not in self.center.queues or row.call_id in self.center.waiting:
                continue
            self.center.restore_callback(
                row.call_id, row.queue_id, self.clock(), number=row.number, joined_at=row.joined_at - wall,
                priority=row.priority, attempts=row.attempts,
                not_before=row.retry_at - wall if row.retry_at is not None else 0.0)
            restored += 1
        return restored

    async def take_over_callbacks(self) -> int:
        """Several nodes, after each dead-node sweep: the open callback requests of no live node become this
        node's and go in its lines in their places (how many); the ones this node keeps that it may no longer
        call back (taken over by another node while this one was taken for dead) leave its lines."""
        if self.claims is None:
            return 0
        node = self.claims.node
        kept = [call_id for call_id, entry in self.center.waiting.items() if entry.callback]
        async with self.db.session() as session:
            gone = await callbacks.lost(session, node, kept)
            rows = await callbacks.take_over(session, node)
        for call_id in gone:
            self.center.drop_callback(call_id, self.clock())
        taken = self._put_back(rows)
        self._after()
        if taken or gone:
            log.warning("call center: took over %d callback requests of stopped nodes, let %d go", taken, len(gone))
        return taken

    async def stop(self, *, attempts: int = 5) -> None:
        """Stop the timer and the tasks, then write the rest of the log (``attempts`` tries)."""
        with contextlib.suppress(ValueError):
            self.db.remove_listener(self.on_event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stopping = True
        # The writers are not cancelled in the middle of a write: on SQLite a transaction cut short kept the
        # write lock for seconds, and the last writes below waited 5 s (SQLite's busy timeout) per try.
        for writer, lock in ((self._writer, self._write_lock), (self._presence_writer, self._presence_lock)):
            if writer is not None:
                async with lock:
                    writer.cancel()
        for task in (self._reloader, self._writer, *self._shared_tasks, self._recheck):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._dirty and not await self.write_presence():
            log.error("agent presence: %d changes could not be written at stop", len(self._dirty))
        for _ in range(attempts):
            while self._unwritten() and await self._write_batch(self.batch_size):
                pass
            if not self._unwritten():
                return
            await asyncio.sleep(self.retry_delay)
        if self._unwritten():
            log.error("queue log: %d entries and %d callback changes could not be written at stop",
                      len(self.backlog), len(self.callback_backlog))

    async def flush(self) -> None:
        """Write the backlog now (tests, and before a report of this very second)."""
        while self._unwritten():
            if not await self._write_batch(self.batch_size):
                await asyncio.sleep(self.retry_delay)

    def _unwritten(self) -> bool:
        return bool(self.backlog or self.callback_backlog)

    # -- configuration changes (after commit) --------------------------------------------------------
    def on_event(self, event: object) -> None:
        if self._changes is None:
            return
        if isinstance(event, (AgentPresenceChanged, AgentYielded)):
            if self.claims is not None and event.node != self.claims.node:
                self._changes.put_nowait(event)
            return
        if isinstance(event, (QueueChanged, AgentChanged, TenantDeleted)) or (
                isinstance(event, EntityChanged) and event.entity == "employee"
                and event.entity_id in self.center.agents):
            self._changes.put_nowait(event)

    async def _reload_loop(self) -> None:
        assert self._changes is not None
        while True:
            event = await self._changes.get()
            try:
                await self.apply_change(event)
            except Exception:  # noqa: BLE001 - keep serving with the settings we have
                log.exception("call center: reloading after %r failed", event)
            finally:
                self._changes.task_done()

    async def settled(self) -> None:
        """Wait until the configuration changes received so far are applied."""
        if self._changes is not None:
            await self._changes.join()

    async def apply_change(self, event: object) -> None:
        if isinstance(event, AgentYielded):
            await self.sync_claims()  # another node let an agent go for one of our callers: offer it now
        elif isinstance(event, AgentPresenceChanged):
            edits = self._edits.get(event.employee_id, 0)
            async with self.db.session() as session:
                row = await session.get(AgentPresence, event.employee_id)
                presence = _row_presence(row)
            await self.mirror(event.tenant_id, event.employee_id, presence, edits=edits)
        elif isinstance(event, QueueChanged):
            async with self.db.session() as session:
                config = await service.platform_queue(session, event.queue_id)
                members = (set(await service.queue_members(session, event.tenant_id, event.queue_id))
                           if config is not None else set())
            now = self.clock()
            if config is None:
                if event.queue_id in self.center.queues:
                    self.center.remove_queue(event.queue_id, now)
            else:
                self._queue_tenant[config.id] = config.tenant_id
                self.center.set_queue(config, now)
                for agent in list(self.center.agents.values()):
                    if config.id in agent.queues and agent.id not in members:
                        self.center.logout(agent.id, [config.id], now)
            self._after()
        elif isinstance(event, EntityChanged):  # an agent deleted or deactivated: logged out of every queue
            async with self.db.session() as session:
                employee = await session.get(Employee, event.entity_id)
            gone = self.center.agents.get(event.entity_id)
            if gone is not None and gone.queues and (employee is None or not employee.active):
                self.center.logout(gone.id, None, self.clock())
                self._after()
        elif isinstance(event, TenantDeleted):
            now = self.clock()
            for queue_id in [q.id for q in self.center.queues.values() if q.tenant_id == event.tenant_id]:
                self.center.remove_queue(queue_id, now)
            # the tenant's log rows are gone with it (ON DELETE CASCADE): drop what was still to be written
            self._after()
            self.backlog = [row for row in self.backlog if row["tenant_id"] != event.tenant_id]
            self.callback_backlog = [c for c in self.callback_backlog if c[0] != event.tenant_id]
        elif isinstance(event, AgentChanged) and event.employee_id in self.center.agents:
            async with self.db.session() as session:
                skills = await service.skills(session, event.tenant_id, event.employee_id)
            self.center.set_skills(event.employee_id, skills, self.clock())
            self._after()

    # -- inputs --------------------------------------------------------------------------------------
    def feed(self, step: Callable[[ContactCenter, float], T]) -> T:
        """Run one input on the center (``step(center, now)``) and handle what it produced: the call
        engine's entry point (``runtime.feed(lambda c, now: c.join(call_id, queue_id, now, number=n))``)."""
        try:
            return step(self.center, self.clock())
        finally:
            self._after()

    def login(self, tenant_id: int, employee_id: int, queue_ids: Iterable[int], skills: dict[str, int]) -> Agent:
        self._agent_tenant[employee_id] = tenant_id
        try:
            self.feed(lambda c, now: self._login(c, employee_id, list(queue_ids), now, skills))
        finally:
            self._note_presence({employee_id})
        # another node's row for the agent (a call there, marked when that node hears of this login): busy here
        self._recheck_soon()
        return self.center.agents[employee_id]

    def _login(self, center: ContactCenter, employee_id: int, queue_ids: list[int], now: float,
               skills: dict[str, int] | None) -> None:
        """Log in; an agent already on a call of this node that is not a queue's is busy from the start (the
        mark is taken when such a call is answered: one answered before the login had none)."""
        agent = center.agents.get(employee_id)
        busy = (agent is None or not agent.busy_elsewhere) and self.on_other_call(employee_id)
        center.login(employee_id, queue_ids, now, skills=skills, busy_elsewhere=busy or None)


    def logout(self, employee_id: int, queue_ids: Iterable[int] | None) -> None:
        ids = None if queue_ids is None else list(queue_ids)
        try:
            self.feed(lambda c, now: c.logout(employee_id, ids, now))
        finally:
            self._note_presence({employee_id})

    def pause(self, employee_id: int, reason: str) -> None:
        try:
            self.feed(lambda c, now: c.pause(employee_id, reason, now))
        finally:  # (during a call the pause waits for its end: no log entry, a presence all the same)
            self._note_presence({employee_id})

    def unpause(self, employee_id: int) -> None:
        try:
            self.feed(lambda c, now: c.unpause(employee_id, now))
        finally:
            self._note_presence({employee_id})

    # -- several nodes -------------------------------------------------------------------------------
    async def mirror(self, tenant_id: int, employee_id: int, presence: Presence, *, edits: int | None = None) -> None:
        """Apply another node's presence of the agent: log in to / out of queues, pause or unpause — inputs
        like the API's, minus the log entries the other node wrote. ``edits``: this node's count of the agent's
        changes when the row was read; while one is not written, or was made since, the row waits (read again
        once ours is written: the module notes)."""
        if edits is None:
            edits = self._edits.get(employee_id, 0)
        queues = {q for q in presence.queues if q in self.center.queues}
        reason = presence.reason
        agent = self.center.agents.get(employee_id)
        current = set(agent.queues) if agent is not None else set()
        skills = None
        if queues - current:
            async with self.db.session() as session:
                skills = await service.skills(session, tenant_id, employee_id)
        if (employee_id in self._dirty or employee_id in self._writing
                or self._edits.get(employee_id, 0) != edits):
            self._behind[employee_id] = tenant_id
            if employee_id not in self._writing:  # (else when written) written since the read: read again now
                self._catch_up(employee_id)
            return
        self._agent_tenant[employee_id] = tenant_id
        self._mirroring = employee_id
        try:
            agent = self.center.agents.get(employee_id)
            current = set(agent.queues) if agent is not None else set()
            if queues - current:
                added = sorted(queues - current)
                # (an agent on a call of ours is marked here: busy for the node where it logged in, too)
                self.feed(lambda c, now: self._login(c, employee_id, added, now, skills))
            if current - queues:
                gone = sorted(current - queues)
                self.feed(lambda c, now: c.logout(employee_id, gone, now))
            agent = self.center.agents.get(employee_id)
            if agent is not None and agent.queues:
                if reason is not None and presence_of(agent).reason != reason:
                    self.feed(lambda c, now: c.pause(employee_id, reason, now))
                elif reason is None and presence_of(agent).reason is not None:
                    self.feed(lambda c, now: c.unpause(employee_id, now))
            self._mirror_memory(employee_id, presence)
        finally:
            self._mirroring = None
        self._presence[employee_id] = presence_of(self.center.agents.get(employee_id), self._offered.get(employee_id))

    def _mirror_memory(self, employee_id: int, presence: Presence) -> None:
        """The strategies' memory from another node: the agent's calls and talk time (the larger: a row written
        by a node that had not heard of the agent's last call yet must not count it out), and the queue's
        round robin's last agent when that node's offer is the queue's latest."""
        agent = self.center.agents.get(employee_id)
        if agent is not None:
            agent.calls = max(agent.calls, presence.calls)
            agent.talk_time = max(agent.talk_time, presence.talk_time)
        if presence.offered is not None:
            queue_id, at = presence.offered
            if at > self._rr_at.get(queue_id, 0.0) and queue_id in self.center.queues:
                self._rr_at[queue_id] = at
                self._offered[employee_id] = presence.offered
                self.center.note_offered(queue_id, employee_id)

    async def _load_presence(self) -> None:
        async with self.db.session() as session:
            rows = (await session.execute(select(AgentPresence))).scalars().all()
            loaded = [(row.tenant_id, row.employee_id, _row_presence(row)) for row in rows]
        for tenant_id, employee_id, presence in loaded:
            await self.mirror(tenant_id, employee_id, presence)

    def _note_presence(self, agent_ids: Iterable[int]) -> None:
        """This node changed these agents' presence (maybe): write the ones that differ from what is known."""
        if self.claims is None or self._mirroring is not None:
            return
        for agent_id in agent_ids:
            tenant_id = self._agent_tenant.get(agent_id)
            presence = presence_of(self.center.agents.get(agent_id), self._offered.get(agent_id))
            known = self._presence.get(agent_id, NOBODY)
            if tenant_id is None or known == presence:
                continue
            pending = self._dirty.get(agent_id)
            whole = (known.queues, known.reason) != (presence.queues, presence.reason) or (
                pending is not None and pending[2])
            self._presence[agent_id] = presence
            self._dirty[agent_id] = (tenant_id, presence, whole)
            self._edits[agent_id] = self._edits.get(agent_id, 0) + 1
        if self._dirty and self._presence_wake is not None:
            self._presence_wake.set()

    async def _presence_loop(self) -> None:
        assert self._presence_wake is not None
        while True:
            await self._presence_wake.wait()
            self._presence_wake.clear()
            while self._dirty:
                if not await self.write_presence():
                    await asyncio.sleep(self.retry_delay)

    async def write_presence(self) -> bool:
        """Write the changed presences (one transaction each, with its event); False if one failed (kept)."""
        # one writer at a time (the background task, stop(), a test): an agent's two changes are written in
        # the order made, and a caller returns once the write under way is done too
        async with self._presence_lock:
            return await self._write_presence_locked()

    async def _write_presence_locked(self) -> bool:
        assert self.claims is not None
        while self._dirty:
            agent_id = next(iter(self._dirty))
            tenant_id, presence, whole = self._dirty.pop(agent_id)
            self._writing.add(agent_id)
            try:
                async with self.db.session() as session:
                    if not whole:
                        if not await self._write_memory(session, agent_id, presence):
                            continue  # no row: another node logged the agent out (heard, or soon)
                    elif presence.queues:  # (several nodes run on PostgreSQL: one upsert, whoever wrote last wins)
                        offered = presence.offered or (None, None)
                        values = {"queues": list(presence.queues), "reason": presence.reason,
                                  "node": self.claims.node}
                        upsert = pg_insert(AgentPresence).values(
                            tenant_id=tenant_id, employee_id=agent_id, **values, calls=presence.calls,
                            talk_time=presence.talk_time, offered_queue=offered[0], offered_at=offered[1])
                        new = upsert.excluded
                        await session.execute(upsert.on_conflict_do_update(
                            index_elements=[AgentPresence.employee_id],
                            set_={**values, **_merged_memory(
                                new.calls, new.talk_time,
                                (new.offered_queue, new.offered_at) if presence.offered is not None else None)}))
                    else:
                        await session.execute(delete(AgentPresence).where(AgentPresence.employee_id == agent_id))
                    emit(session, AgentPresenceChanged(tenant_id=tenant_id, employee_id=agent_id,
                                                       node=self.claims.node))
                    await session.commit()
            except IntegrityError:
                log.warning("agent presence: the database refuses agent %d's (gone?), dropped", agent_id)
            except Exception:  # noqa: BLE001 - kept and written again (unless a newer one came meanwhile)
                self._dirty.setdefault(agent_id, (tenant_id, presence, whole))
                log.exception("agent presence: writing agent %d's failed; retrying", agent_id)
                return False
            finally:
                self._writing.discard(agent_id)
                self._catch_up(agent_id)
        return True

    @staticmethod
    async def _write_memory(session: AsyncSession, agent_id: int, presence: Presence) -> bool:
        """Only the strategies' memory changed here (a call completed, a round-robin offer): update those
        columns of the agent's row, merged as :meth:`_mirror_memory` does, and nothing else — this node's view
        of the queues and pause may be older than the row (another node's logout or pause not heard yet), and
        a row deleted meanwhile is not made again. False: no row."""
        result = await session.execute(update(AgentPresence).where(AgentPresence.employee_id == agent_id)
                                       .values(**_merged_memory(presence.calls, presence.talk_time,
                                                                presence.offered)))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def _catch_up(self, agent_id: int) -> None:
        """Our change of the agent is written: the row another node wrote meanwhile is read again (in order with
        the other nodes' changes, by the task applying them)."""
        if agent_id in self._dirty or agent_id not in self._behind:
            return
        tenant_id = self._behind.pop(agent_id)
        if self._changes is not None and self.claims is not None:
            self._changes.put_nowait(AgentPresenceChanged(tenant_id=tenant_id, employee_id=agent_id,
                                                          node=self.claims.node))

    async def claim(self, agent_id: int, call_id: str) -> bool:
        """Take the agent for this node's offer of ``call_id`` before its phone rings: True when the offer is
        still the agent's and the agent ours; False otherwise — another node has the agent, or has a caller of
        the queue ahead of ours whom nobody is offered (the line's order across the nodes: we let the agent go
        and tell the others, :class:`~.events.AgentYielded`). The offer is then withdrawn and the caller
        offered to someone else."""
        if self.claims is None:
            return True
        entry = self.center.waiting.get(call_id)
        if entry is not None and entry.callback and not await self._still_ours(call_id):
            self.feed(lambda c, now: c.drop_callback(call_id, now))
            return False
        line = self._line_of(agent_id, call_id)
        self._claiming[agent_id] = self._claiming.get(agent_id, 0) + 1
        try:
            verdict = await self.claims.claim_agent(agent_id, call_id, line=line)
        finally:
            self._claiming[agent_id] -= 1
            if not self._claiming[agent_id]:
                del self._claiming[agent_id]
        won = verdict == "taken"
        agent = self.center.agents.get(agent_id)
        current = agent is not None and agent.status is AgentStatus.RINGING and agent.offer == call_id
        if current and not won:
            self.feed(lambda c, now: c.set_held_elsewhere(agent_id, True, now))
        if verdict == "ahead":
            await self._yielded(agent_id)
            self._recheck_soon()
        self._release_claims()
        return current and won

    async def _still_ours(self, call_id: str) -> bool:
        """A callback request is this node's to call back (not taken over by another node meanwhile); the store
        not answering: this node's own view decides, as for the agent's claim."""
        assert self.claims is not None
        try:
            async with self.db.session() as session:
                return not await callbacks.lost(session, self.claims.node, [call_id])
        except Exception:  # noqa: BLE001 - as the claim itself, when the store is away
            log.exception("call center: checking callback request %s's owner failed", call_id)
            return True

    def _line_of(self, agent_id: int, call_id: str) -> Line | None:
        entry = self.center.waiting.get(call_id)
        agent = self.center.agents.get(agent_id)
        if entry is None or agent is None:
            return None
        center = self.center
        wall = self.wall()

        def may_take(queue_id: int, since: float) -> bool:
            return center.qualifies(agent_id, queue_id, wall - since)

        weights = {q: center.queues[q].weight for q in agent.queues | {entry.queue_id} if q in center.queues}
        return Line(queue_id=entry.queue_id, priority=entry.priority, since=self.wall_time(entry.joined_at),
                    may_take=may_take, weights=weights)

    async def _yielded(self, agent_id: int) -> None:
        """Tell the other nodes at once (the change feed) that we let the agent go: the node whose caller is
        ahead reads the claims and offers it."""
        assert self.claims is not None
        tenant_id = self._agent_tenant.get(agent_id)
        if tenant_id is None:
            return
        try:
            async with self.db.session() as session:
                emit(session, AgentYielded(tenant_id=tenant_id, employee_id=agent_id, node=self.claims.node))
                await session.commit()
        except Exception:  # noqa: BLE001 - the other nodes see the agent free at their next read of the claims
            log.exception("call center: telling the other nodes agent %d is free failed", agent_id)

    def _recheck_soon(self) -> None:
        """Read the claims ``recheck_after`` seconds from now rather than at the next ``sync_every`` read: after
        letting an agent go, the node whose caller was ahead has taken it by then, or that caller has gone
        meanwhile (hung up, or taken by someone else) and the agent is offered here again; after a login, a
        node where the agent is on a call has marked it (busy here too)."""
        if self.claims is None or self._changes is None or self._stopping:
            return
        if self._recheck is not None and not self._recheck.done():
            self._recheck_more = True  # asked during the wait: one more read after this one
            return
        with contextlib.suppress(RuntimeError):  # no running loop (a test's direct call): the periodic read
            self._recheck = asyncio.get_running_loop().create_task(self._rechecks(), name="callcenter:recheck")

    async def _rechecks(self) -> None:
        while True:
            self._recheck_more = False
            await asyncio.sleep(self.recheck_after)
            try:
                await self.sync_claims()
            except Exception:  # noqa: BLE001 - the periodic read tries again
                log.exception("call center: reading the other nodes' agents failed")
            if not self._recheck_more:
                return

    def _release_claims(self) -> None:
        if self.claims is None:
            return
        for agent_id in self.claims.agents_claimed():
            agent = self.center.agents.get(agent_id)
            if agent_id not in self._claiming and (agent is None or (agent.status not in BUSY
                                                                     and not agent.busy_elsewhere)):
                self.claims.release_agent(agent_id)

    def _share(self) -> None:
        """Several nodes: the agents on a non-queue call here and the callers waiting here, for the others."""
        assert self.claims is not None
        claimed = self.claims.agents_claimed()
        for agent in self.center.agents.values():
            if agent.busy_elsewhere and agent.id not in claimed:
                self.claims.mark_agent(agent.id, f"busy:{agent.id}")
        held = self.claims.callers_held()
        wall = self.center.wall_offset
        now = self.clock()
        # a callback request is in the shared line while it may be offered (not while it waits for a retry)
        line = {call_id: entry.callback for call_id, entry in self.center.waiting.items()
                if not entry.callback or entry.not_before <= now}
        for call_id in held:
            if self._held_as.get(call_id) != line.get(call_id):  # gone, retrying, or a callback now
                self.claims.release_caller(call_id)
                self._held_as.pop(call_id, None)
        for call_id, callback in line.items():
            if call_id not in self._held_as:
                entry = self.center.waiting[call_id]
                self.claims.hold_caller(entry.queue_id, call_id, priority=entry.priority,
                                        since=entry.joined_at + wall, callback=callback)
                self._held_as[call_id] = callback

    async def sync_claims(self) -> None:
        """Mark the agents other nodes have as ``held_elsewhere``, and clear the others."""
        if self.claims is None:
            return
        callers = await self.claims.callers_elsewhere()
        if callers is not None:
            remote: dict[int, list[Waiter]] = {}
            for waiter in sorted(callers):
                remote.setdefault(waiter.queue_id, []).append(waiter)
            if remote != self._remote_waiting:
                touched = set(remote) | set(self._remote_waiting)
                self._remote_waiting = remote
                wall = self.center.wall_offset
                self.center.elsewhere = {q: [(w.priority, w.since - wall) for w in ws] for q, ws in remote.items()}
                self._publish(set(), touched)
        handled = await self.claims.handled_elsewhere()
        if handled is not None:
            self.center.handled_elsewhere = handled
        elsewhere = await self.claims.agents_elsewhere()
        if elsewhere is None:
            return
        changed = [(a.id, a.id in elsewhere) for a in self.center.agents.values()
                   if a.held_elsewhere != (a.id in elsewhere)]
        if changed:
            def apply(center: ContactCenter, now: float) -> None:
                for agent_id, held in changed:
                    center.set_held_elsewhere(agent_id, held, now)

            self.feed(apply)

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_every)
            try:
                await self.sync_claims()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("call center: reading the other nodes' agents failed")

    # -- views ---------------------------------------------------------------------------------------
    def agents(self, tenant_id: int) -> list[Agent]:
        return sorted((a for a in self.center.agents.values() if self._agent_tenant.get(a.id) == tenant_id),
                      key=lambda a: a.id)

    def agent(self, tenant_id: int, employee_id: int) -> Agent | None:
        agent = self.center.agents.get(employee_id)
        return agent if agent is not None and self._agent_tenant.get(employee_id) == tenant_id else None

    def caller(self, tenant_id: int, employee_id: int) -> Caller | None:
        """The caller offered to or talking to the tenant's agent (the agent's panel)."""
        return self.center.caller(employee_id) if self.agent(tenant_id, employee_id) is not None else None

    def seconds_since(self, monotonic: float) -> float:
        """Seconds from a time of the center's clock (an agent's ``since``) to now."""
        return max(0.0, self.clock() - monotonic)

    def snapshot(self, tenant_id: int, queue_id: int) -> QueueSnapshot | None:
        config = self.center.queues.get(queue_id)
        if config is None or config.tenant_id != tenant_id:
            return None
        return self._snapshot(queue_id)

    def _snapshot(self, queue_id: int) -> QueueSnapshot:
        """The queue's line and agents; several nodes: the callers waiting and the callback requests kept on
        the other nodes too (as of the last read, every ``sync_every`` seconds; a callback request waiting
        for its retry is not counted there). The agents are every node's already (an agent another node has
        counts as busy)."""
        now = self.clock()
        snap = self.center.snapshot(queue_id, now)
        remote = self._remote_waiting.get(queue_id)
        if not remote:
            return snap
        live = [w.since for w in remote if not w.callback]
        waited = self.wall_time(now) - min(live) if live else 0.0
        return replace(snap, waiting=snap.waiting + len(live), callbacks=snap.callbacks + len(remote) - len(live),
                       longest_wait=max(snap.longest_wait, waited))

    def callbacks(self, tenant_id: int, queue_id: int) -> list[CallbackRequest]:
        config = self.center.queues.get(queue_id)
        if config is None or config.tenant_id != tenant_id:
            return []
        return self.center.callbacks(queue_id, self.clock())

    def cancel_callback(self, tenant_id: int, call_id: str) -> str:
        """A supervisor cancels a callback request: ``cancelled`` (it left the line), ``dialing`` (its customer
        is being called: not cancelled) or ``absent`` (not in this center's lines)."""
        entry = self.center.waiting.get(call_id)
        if entry is not None and self._queue_tenant.get(entry.queue_id) == tenant_id:
            return "cancelled" if self.feed(lambda c, now: c.cancel_callback(call_id, now)) else "absent"
        if self.center.dialing_callback(call_id):
            return "dialing"
        return "absent"

    def wall_time(self, monotonic: float) -> float:
        return monotonic + self.center.wall_offset

    # -- outputs -------------------------------------------------------------------------------------
    def _after(self) -> None:
        for action in self.center.take_actions():
            if self.claims is not None and isinstance(action, Offer):
                self._note_offer(action)
            for handler in list(self.action_handlers):
                try:
                    handler(action)
                except Exception:  # noqa: BLE001 - one faulty consumer must not stop the others
                    log.exception("call center action handler failed for %r", action)
        agents: set[int] = set()
        queues: set[int] = set()
        for entry in self.center.take_log():
            if entry.agent_id is not None and entry.event in _AGENT_EVENTS:
                agents.add(entry.agent_id)
            if entry.queue_id is not None:
                queues.add(entry.queue_id)
            if self._mirroring is not None and entry.agent_id == self._mirroring and self._logged_elsewhere(entry):
                continue  # published here all the same: this node's websockets show the agent's state
            tenant_id = self._tenant_of(entry)
            if tenant_id is None:
                log.error("queue log entry without a tenant: %r", entry)
                continue
            self.backlog.append({"at": entry.at, "tenant_id": tenant_id, "queue_id": entry.queue_id,
                                 "call_id": entry.call_id, "agent_id": entry.agent_id, "event": entry.event,
                                 "data": dict(entry.data)})
        handled = self.center.take_handled()
        if self.claims is not None:
            for queue_id, (seconds, calls) in handled.items():
                self.claims.share_handled(queue_id, seconds, calls)
        for change in self.center.take_callback_changes():
            tenant_id = self._queue_tenant.get(change.queue_id)
            if tenant_id is not None:
                self.callback_backlog.append((tenant_id, change))
        for agent_id in agents:  # an agent's state is part of each of its queues' state
            agent = self.center.agents.get(agent_id)
            if agent is not None:
                queues.update(agent.queues)
        if self._unwritten() and self._wake is not None:
            self._wake.set()
        self._publish(agents, queues)
        if self.claims is not None:
            self._note_presence(agents)
            self._release_claims()
            self._share()
        self._rearm()

    def _note_offer(self, offer: Offer) -> None:
        """A round-robin queue's offer: its last agent, for the other nodes (with the agent's presence)."""
        config = self.center.queues.get(offer.queue_id)
        if config is not None and config.strategy is Strategy.ROUND_ROBIN:
            at = self.wall()
            self._rr_at[offer.queue_id] = at
            self._offered[offer.agent_id] = (offer.queue_id, at)

    @staticmethod
    def _logged_elsewhere(entry: QueueLogEntry) -> bool:
        """A presence entry of a mirrored input: the node where it was made has logged it."""
        if entry.event in _PRESENCE_EVENTS:
            return True
        if entry.event == ql.AGENTSTATUS:
            return AgentStatus(entry.data["from"]) not in BUSY and AgentStatus(entry.data["to"]) not in BUSY
        return False

    def _tenant_of(self, entry: QueueLogEntry) -> int | None:
        if entry.queue_id is not None and entry.queue_id in self._queue_tenant:
            return self._queue_tenant[entry.queue_id]
        if entry.agent_id is not None:
            return self._agent_tenant.get(entry.agent_id)
        return None

    def _publish(self, agents: set[int], queues: set[int]) -> None:
        if self.bus is None:
            return
        at = self.wall()
        for agent_id in sorted(agents):
            agent = self.center.agents.get(agent_id)
            tenant_id = self._agent_tenant.get(agent_id)
            if agent is None or tenant_id is None:
                continue
            self.bus.publish(AgentStateChanged(
                tenant_id=tenant_id, employee_id=agent_id, status=agent.status.value,
                reason=agent.reason if agent.status is AgentStatus.NOT_READY else None,
                queues=tuple(sorted(agent.queues)), at=at))
        for queue_id in sorted(queues):
            config = self.center.queues.get(queue_id)
            if config is None:
                continue
            snap = self._snapshot(queue_id)
            counts = snap.agents
            self.bus.publish(QueueStateChanged(
                tenant_id=config.tenant_id, queue_id=queue_id, waiting=snap.waiting, callbacks=snap.callbacks,
                longest_wait=snap.longest_wait, available=counts.get("available", 0), busy=counts.get("busy", 0),
                not_ready=counts.get("not_ready", 0), ringing=counts.get("ringing", 0),
                on_call=counts.get("on_call", 0), wrap_up=counts.get("wrap_up", 0), at=at))

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.center.next_deadline()
        if deadline is None or self._stopping:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.call_at(loop.time() + max(0.0, deadline - self.clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.center.handle_timer(self.clock())
        self._after()

    # -- the queue log writer ------------------------------------------------------------------------
    async def _write_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.flush_delay)  # gather a burst into one batch
            while self._unwritten():
                if not await self._write_batch(self.batch_size):
                    await asyncio.sleep(self.retry_delay)

    async def _write_batch(self, size: int) -> bool:
        # one writer at a time: flush() and the background task must never insert the same entries twice
        async with self._write_lock:
            if self.backlog and not await self._write_locked(size):
                return False
            return await self._write_callbacks(size)

    async def _write_callbacks(self, size: int) -> bool:
        batch = self.callback_backlog[:size]
        if not batch:
            return True
        owner = self.claims.node if self.claims is not None else None
        try:
            async with self.db.session() as session:
                for tenant_id, change in batch:
                    await callbacks.apply(session, tenant_id, change, owner=owner)
                await session.commit()
                del self.callback_backlog[:len(batch)]
        except IntegrityError:
            # a request whose queue or tenant another process deleted meanwhile: one by one, those dropped
            for _ in range(len(batch)):
                tenant_id, change = self.callback_backlog[0]
                try:
                    async with self.db.session() as session:
                        await callbacks.apply(session, tenant_id, change, owner=owner)
                        await session.commit()
                except IntegrityError:
                    log.error("callback requests: the database refuses a change for good, dropped: %r", change)
                except Exception:  # noqa: BLE001 - kept in the backlog and written again
                    self.write_failures += 1
                    log.exception("callback requests: writing a change failed; retrying")
                    return False
                del self.callback_backlog[0]
        except Exception:  # noqa: BLE001 - kept in the backlog and written again
            self.write_failures += 1
            log.exception("callback requests: writing %d changes failed; retrying", len(batch))
            return False
        return True

    async def _write_locked(self, size: int) -> bool:
        batch = self.backlog[:size]
        if not batch:
            return True
        try:
            async with self.db.session() as session:
                await session.execute(insert(QueueLogRow), batch)
                await session.commit()
                # at once: a cancellation while the session closes must not write the batch twice
                del self.backlog[:len(batch)]
        except IntegrityError:
            # a row the database refuses for good (its tenant was deleted by another process): write the
            # batch row by row, so one such row cannot hold back the others for ever
            return await self._write_one_by_one(len(batch))
        except Exception:  # noqa: BLE001 - kept in the backlog and written again
            self.write_failures += 1
            log.exception("queue log: writing %d entries failed; retrying", len(batch))
            return False
        return True

    async def _write_one_by_one(self, count: int) -> bool:
        for _ in range(count):
            row = self.backlog[0]
            try:
                async with self.db.session() as session:
                    await session.execute(insert(QueueLogRow), [row])
                    await session.commit()
                    del self.backlog[0]
            except IntegrityError:
                log.error("queue log: the database refuses an entry for good, dropped: %r", row)
                del self.backlog[0]
            except Exception:  # noqa: BLE001 - kept in the backlog and written again
                self.write_failures += 1
                log.exception("queue log: writing an entry failed; retrying")
                return False
        return True
