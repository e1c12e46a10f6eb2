"""Trunk channels and spending held by calls in progress: per node, or shared by the nodes of a cluster.

How it works: a call holds one channel of each trunk it uses (inbound from it, out through it) and, when
it is a paid call with spending limits, its worst-case cost (its cost at the longest duration it was
allowed) against each level that has a limit. A new call is admitted against what the month's CDRs
booked *plus* what the calls in progress hold, so two simultaneous calls cannot each get the whole
remaining budget, and a trunk's ``max_calls`` counts the calls of every node.

- :class:`LocalHolds`: one node (SQLite, or PostgreSQL without a bus): the holds live in memory; the
  month's spend is read from the CDRs.
- :class:`SharedHolds`: several nodes on PostgreSQL. The holds are rows of ``call_holds``; a decision
  takes a transaction-scoped advisory lock per key (a trunk, a spending level; always in key order, so two
  decisions never deadlock), counts or sums the rows under it, and inserts its own rows before the
  commit releases the lock: the check and the hold are one atomic step for every node. Rows are made with
  ids of the node's own (uuid4); the node refreshes ``updated_at`` of exactly the holds it still has
  every ``refresh`` seconds, and any node's dead-node sweep deletes rows not refreshed for the
  dead-node interval (:func:`delete_stale`): a killed node's holds go with it, and so does a row whose
  insert committed after the node had given up waiting for it.
- The call center's agents (:meth:`SharedHolds.claim_agent`): an agent rung for one node's queue call, or
  on any other call of the node (:meth:`SharedHolds.mark_agent`), is that node's (a row of ``kind``
  "agent") until it is free again; another node's offer of the agent is refused meanwhile. The callers
  waiting in the node's queues are rows too (``kind`` "caller", :meth:`SharedHolds.hold_caller`), and so
  are the callback requests it may offer (``kind`` "callback"): a claim for a caller is refused while
  another node has a caller ahead of it in the agent's queues (a heavier queue's, or an earlier or higher
  priority one of a queue as heavy) whom nobody is offered (the line's order across the nodes).
  Refreshed and swept like the other holds. So are the node's handled queue calls, one row per queue
  (``kind`` "handled", :meth:`SharedHolds.share_handled`: their count and total handle time, behind the
  wait estimates of every node: :meth:`SharedHolds.handled_elsewhere`).
- The node itself (:meth:`SharedHolds.announce`): a row of ``kind`` "node" (``key`` the node's id), refreshed
  (written again if the sweep took it) with the holds: while it is there the node is alive; once the sweep
  has deleted it, another node takes over the node's callback requests (:func:`zvonok.callcenter.callbacks.take_over`).
- Waiting is bounded (``timeout``, 2 s by default) and the failure policy is per limit: a trunk falls back
  to this node's own count (each node enforces the whole limit alone, as before clustering; the carrier's
  own channel limit answers 503 beyond it and the next trunk is tried), a spending decision fails closed
  (:class:`~zvonok.telephony.counters.StoreUnavailable`: the engine answers 503, as the
  month's spend cannot be read either). Releases never wait: they are queued and written by
  :meth:`SharedHolds.run`; one that cannot be written stops being refreshed, so the sweep frees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, insert, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok import metrics
from zvonok.billing.limits import Authorization, Budget, authorize
from zvonok.billing.rating import ZERO, billable_seconds, call_cost
from zvonok.billing.statement import month_bounds
from zvonok.billing.tariffs import Rate
from zvonok.logs import get_logger
from zvonok.telephony.counters import Reservation, StoreUnavailable

from .models import CallHold
from .reports import month_spend
from .routing import CallerProfile, PolicyInfo, budgets

log = get_logger(__name__)
T = TypeVar("T")

DEFAULT_TIMEOUT = 2.0  # seconds a call set-up waits for the shared store at most
DEFAULT_REFRESH = 5.0  # seconds between refreshes of a node's holds (the CDR heartbeat's pace)
_LOCK_SPACE = 0x5A56  # first key of pg_advisory_xact_lock(int, int): our locks, apart from others'
TRUNK, SPEND, AGENT, CALLER, CALLBACK, NODE = "trunk", "spend", "agent", "caller", "callback", "node"
HANDLED = "handled"  # a node's queue calls completed: ``key`` the queue, ``priority`` the count, ``amount`` seconds
_LINE = (CALLER, CALLBACK)  # a queue's line: its live callers and its callback requests
_STORE_ERRORS = (TimeoutError, SQLAlchemyError, OSError, ConnectionError)


@dataclass(frozen=True, slots=True)
class Line:
    """A queue call's place in the line of the agent's queues, for :meth:`SharedHolds.claim_agent`."""

    queue_id: int
    priority: int
    since: float  # when it joined the line (wall clock, epoch seconds)
    may_take: Callable[[int, float], bool]  # whether the agent may take a caller of that queue who joined then
    weights: Mapping[int, int] = field(default_factory=dict)  # the agent's queues (queue_id's too) -> weight

    def ahead(self) -> list[tuple[int, bool]]:
        """The agent's queues whose callers may be ahead of this one: (queue, only the earlier or higher
        priority ones: same weight) — a heavier queue's every caller is ahead, a lighter one's none."""
        mine = self.weights.get(self.queue_id, 0)
        queues = {**self.weights, self.queue_id: mine}
        return sorted((q, w == mine) for q, w in queues.items() if w >= mine)


class Waiter(NamedTuple):
    """A caller waiting on another node (or a callback request it may offer), as :meth:`SharedHolds.callers_elsewhere`
    reads it."""

    queue_id: int
    since: float  # when it joined the line (wall clock)
    priority: int
    callback: bool


def spend_key(tenant_id: int, level: str, ref_id: int | None) -> str:
    return f"{tenant_id}:{level}:{'' if ref_id is None else ref_id}"


def hold_cost(verdict: Authorization, rate: Rate, price: Decimal) -> Decimal:
    """The most an admitted call may cost: its cost at ``max_duration`` (the engine cuts it there)."""
    if not verdict.allowed:
        return ZERO
    if verdict.max_duration is None:  # nothing to limit: free time, maybe a connection fee
        return rate.connection_fee if rate.connection_fee > 0 else ZERO
    billed = billable_seconds(verdict.max_duration, rate.increment, rate.minimum) if verdict.max_duration else 0
    return call_cost(price, billed, rate.connection_fee) if billed else rate.connection_fee


def decide(tenant_id: int, limits: Sequence[PolicyInfo], spent: dict[tuple[str, int | None], Decimal],
           held: dict[str, Decimal], rate: Rate, price: Decimal) -> Reservation:
    """The decision for one call: what CDRs booked plus what calls in progress hold, per level."""
    booked = budgets(limits, spent)
    counted: list[Budget] = [
        replace(b, spent=b.spent + held.get(spend_key(tenant_id, b.level.value, b.owner_id), ZERO)) for b in booked]
    verdict = authorize(counted, rate, price_per_minute=price)
    return Reservation(verdict=verdict, budgets=booked, held=hold_cost(verdict, rate, price))


async def _month_spend(session: AsyncSession, profile: CallerProfile,
                       zone: str) -> dict[tuple[str, int | None], Decimal]:
    now = datetime.now(ZoneInfo(zone))
    start, end = month_bounds(now.year, now.month, zone)
    return await month_spend(session, profile.tenant_id, start=start, end=end, employee_id=profile.employee_id,
                             department_id=profile.department_id, office_id=profile.office_id)


def _keys(profile: CallerProfile, limits: Sequence[PolicyInfo]) -> list[str]:
    return sorted({spend_key(profile.tenant_id, p.level, p.ref_id) for p in limits})


class LocalHolds:
    """One node: spending holds in this process's memory (its trunk channels: ``Trunks``' own count)."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self._spend: dict[str, tuple[tuple[str, ...], Decimal]] = {}  # call id -> (keys, amount held)

    # -- spending --------------------------------------------------------------------------------------
    async def reserve(self, call_id: str, profile: CallerProfile, zone: str, limits: Sequence[PolicyInfo],
                      rate: Rate, price: Decimal) -> Reservation:
        try:
            async with self.db.session() as session:
                spent = await _month_spend(session, profile, zone)
        except _STORE_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        # no await from here on: the holds summed are exactly those this decision is made against
        keys = tuple(_keys(profile, limits))
        held = {key: sum((amount for ks, amount in self._spend.values() if key in ks), ZERO) for key in keys}
        reservation = decide(profile.tenant_id, limits, spent, held, rate, price)
        if reservation.verdict.allowed and reservation.held > 0:
            self._spend[call_id] = (keys, reservation.held)
        return reservation

    def settle(self, call_id: str) -> None:
        self._spend.pop(call_id, None)

    def held(self, key: str) -> Decimal:
        return sum((amount for ks, amount in self._spend.values() if key in ks), ZERO)


class SharedHolds:
    """Several nodes on one PostgreSQL database: holds are ``call_holds`` rows (see the module notes)."""

    def __init__(self, db: Any, *, node: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 refresh: float = DEFAULT_REFRESH) -> None:
        self.db = db
        self.node = node or os.urandom(8).hex()
        self.timeout = timeout
        self.refresh = refresh
        self._trunks: dict[int, list[str]] = {}  # this node's holds per trunk ("": admitted by the fallback)
        self._spend: dict[str, list[str]] = {}  # call id -> its spending hold rows
        self._agents: dict[int, str] = {}  # call-center agent -> this node's claim row on it
        self._callers: dict[str, str] = {}  # queue call waiting here -> its caller row
        self._inserts: list[dict[str, Any]] = []  # rows to write behind the call (agents busy here, callers)
        self._handled: dict[int, str] = {}  # queue -> this node's row of its handled calls
        self._upserts: dict[str, dict[str, Any]] = {}  # rows to write again (the handled calls' totals)
        self._live: set[str] = set()  # the rows this node refreshes (in-flight inserts included)
        self._deletes: list[str] = []
        self._wake = asyncio.Event()
        self._abandoned: set[asyncio.Future[Any]] = set()  # timed-out attempts winding up
        self._node_row: str | None = None  # this node's own row, once announced

    async def announce(self) -> None:
        """Write this node's own row (``kind`` "node", ``key`` the node's id) now; :meth:`beat` refreshes it."""
        self._node_row = self._node_row or os.urandom(16).hex()
        async with self.db.session() as session:
            await session.execute(self._node_upsert(datetime.now(UTC)))
            await session.commit()

    def _node_upsert(self, now: datetime) -> Any:
        return pg_insert(CallHold).values(id=self._node_row, node=self.node, kind=NODE, key=self.node, call_id="",
                                          amount=ZERO, updated_at=now).on_conflict_do_update(
            index_elements=[CallHold.id], set_={"updated_at": now})

    # -- trunk channels ------------------------------------------------------------------------------
    async def acquire(self, trunk_id: int, limit: int | None, call_id: str) -> bool:
        mine = self._trunks.setdefault(trunk_id, [])
        if limit is None:  # nothing to share: no round trip for the many trunks without a limit
            mine.append("")
            return True
        hold = os.urandom(16).hex()
        self._live.add(hold)
        try:
            taken = await self._bounded(self._take(hold, TRUNK, str(trunk_id), call_id, limit))
        except _STORE_ERRORS as exc:
            self._live.discard(hold)  # written after all? not refreshed: the sweep deletes it
            metrics.ERRORS.labels("call_holds_trunk").inc()
            taken = len(mine) < limit
            log.warning("trunk limit store unreachable: this node's own count decides", trunk=trunk_id,
                        call=call_id, error=repr(exc), active_here=len(mine), limit=limit, admitted=taken)
            if taken:
                mine.append("")
            return taken
        if not taken:
            self._live.discard(hold)
            return False
        mine.append(hold)
        return True

    async def _take(self, hold: str, kind: str, key: str, call_id: str, limit: int, *,
                    others_only: bool = False) -> bool:
        async with self.db.session() as session:
            await self._lock(session, [f"{kind}:{key}"])
            counted = select(func.count()).select_from(CallHold).where(CallHold.kind == kind, CallHold.key == key)
            if others_only:
                counted = counted.where(CallHold.node != self.node)
            count = (await session.execute(counted)).scalar_one()
            if count >= limit:
                return False  # rolled back on exit: the lock goes with the transaction
            await session.execute(insert(CallHold).values(id=hold, node=self.node, kind=kind, key=key,
                                                          call_id=call_id, amount=ZERO,
                                                          updated_at=datetime.now(UTC)))
            await session.commit()
        return True

    async def _bounded(self, work: Coroutine[Any, Any, T]) -> T:
        """``work``'s result within ``timeout`` seconds, else TimeoutError. Unlike ``wait_for``, which waits
        for the cancelled work to wind up (asyncpg then tries to cancel the query on a new connection to a
        server that may be unreachable), an abandoned attempt finishes in the background."""
        task = asyncio.ensure_future(work)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task in done:
            return task.result()
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._wound_up)
        raise TimeoutError(f"no answer from the store in {self.timeout} s")

    def _wound_up(self, task: asyncio.Future[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("an abandoned call-hold transaction failed", error=repr(task.exception()))

    @staticmethod
    async def _lock(session: AsyncSession, names: Sequence[str]) -> None:
        for name in sorted(names):
            await session.execute(text("SELECT pg_advisory_xact_lock(:space, hashtext(:name))"),
                                  {"space": _LOCK_SPACE, "name": name})

    def release(self, trunk_id: int) -> None:
        mine = self._trunks.get(trunk_id)
        if not mine:
            return
        self._forget(mine.pop())
        if not mine:
            del self._trunks[trunk_id]

    def active(self, trunk_id: int) -> int:
        return len(self._trunks.get(trunk_id, ()))

    def counts(self) -> dict[int, int]:
        return {k: len(v) for k, v in self._trunks.items()}

    async def by_node(self, trunk_id: int) -> dict[str, int] | None:
        """Every node's holds on the trunk (rows not swept yet of a node killed included: they still count
        against the limit), plus this node's calls admitted by the fallback (never written); None when the
        store does not answer in ``timeout``: the caller shows this node's count."""
        try:
            rows = await self._bounded(self._count_by_node(str(trunk_id)))
        except _STORE_ERRORS as exc:
            log.info("trunk status: the shared count is unavailable", trunk=trunk_id, error=repr(exc))
            return None
        fallback = sum(1 for hold in self._trunks.get(trunk_id, ()) if not hold)
        if fallback:
            rows[self.node] = rows.get(self.node, 0) + fallback
        return rows

    async def _count_by_node(self, key: str) -> dict[str, int]:
        async with self.db.session() as session:
            rows = await session.execute(select(CallHold.node, func.count()).where(
                CallHold.kind == TRUNK, CallHold.key == key).group_by(CallHold.node))
            return {str(node): int(count) for node, count in rows.tuples()}

    # -- agents of the call center (zvonok.callcenter.runtime) ---------------------------------------
    async def claim_agent(self, agent_id: int, call_id: str, *, line: Line | None = None) -> str:
        """Take the agent for a queue call this node offers: ``"taken"``; ``"held"`` when another node has it
        (a row of ``kind`` "agent", ``key`` the agent's id, of another node); ``"ahead"`` when ``line`` (the
        call's queue, priority and time it joined, and which waits the agent may take) shows another node's
        caller of that queue ahead of this one whom no agent is offered: this node lets the agent go (its row
        deleted) for that node to offer it. The check and the insert are one transaction under the key's
        advisory lock; this node's own row does not count: the agent stays this node's from the offer through
        the call and its wrap-up (:meth:`release_agent` then), whichever of its calls it is offered next — the
        row then names the new call, so that the other nodes see the caller offered. The store not answering
        in ``timeout``: this node's own view decides (``"taken"``, logged and counted), as for a trunk —
        refusing every queue call while PostgreSQL is away would be the bigger outage, and two offers at once
        cost a phone that rings for a caller already taken.
        """
        own = self._agents.get(agent_id)
        if own is not None and line is None:
            return "taken"
        hold = own or os.urandom(16).hex()
        if own is None:
            self._live.add(hold)
        try:
            verdict = await self._bounded(self._claim(hold, agent_id, call_id, line, own is not None))
        except _STORE_ERRORS as exc:
            if own is None:
                self._live.discard(hold)
            metrics.ERRORS.labels("call_holds_agent").inc()
            log.warning("agent claim store unreachable: this node's own view decides", agent=agent_id,
                        call=call_id, error=repr(exc))
            return "taken"
        current = self._agents.get(agent_id)
        if own is not None:
            if verdict == "ahead":  # our row was deleted by that transaction
                self._live.discard(own)
                if current == own:
                    del self._agents[agent_id]
            elif current != own:  # released meanwhile: the row may have been written again
                self._forget(own)
            return verdict
        if verdict != "taken":
            self._live.discard(hold)
        elif current is None:
            self._agents[agent_id] = hold
        else:  # two claims of this node at once: one row is enough
            self._forget(hold)
        return verdict

    async def _claim(self, hold: str, agent_id: int, call_id: str, line: Line | None, own: bool) -> str:
        key = str(agent_id)
        async with self.db.session() as session:
            await self._lock(session, [f"{AGENT}:{key}"])
            others = (await session.execute(select(func.count()).select_from(CallHold).where(
                CallHold.kind == AGENT, CallHold.key == key, CallHold.node != self.node))).scalar_one()
            if others:
                return "held"
            if line is not None and await self._ahead(session, line):
                if own:
                    await session.execute(delete(CallHold).where(CallHold.id == hold))
                    await session.commit()
                return "ahead"
            if own:
                await session.execute(pg_insert(CallHold).values(
                    id=hold, node=self.node, kind=AGENT, key=key, call_id=call_id, amount=ZERO,
                    updated_at=datetime.now(UTC)).on_conflict_do_update(
                    index_elements=[CallHold.id], set_={"call_id": call_id}))
            else:
                await session.execute(insert(CallHold).values(id=hold, node=self.node, kind=AGENT, key=key,
                                                              call_id=call_id, amount=ZERO,
                                                              updated_at=datetime.now(UTC)))
            await session.commit()
        return "taken"

    async def _ahead(self, session: AsyncSession, line: Line) -> bool:
        """Another node's caller (or callback request) ahead of ours in the line of the agent's queues — of a
        heavier queue, or of one as heavy with a higher priority, or the same and earlier — whom no agent is
        offered (no agent row names its call) and whom the agent may take. A row its node has not refreshed
        for two refresh periods is not counted: its node is gone (the sweep deletes it later), and its callers
        with it — our caller must not wait for them."""
        offered = select(CallHold.call_id).where(CallHold.kind == AGENT)
        earlier = (CallHold.priority > line.priority) | (
            (CallHold.priority == line.priority) & (CallHold.since < line.since))
        queues = [(CallHold.key == str(q)) & earlier if same else CallHold.key == str(q) for q, same in line.ahead()]
        alive = datetime.now(UTC) - timedelta(seconds=2 * self.refresh)
        rows = await session.execute(select(CallHold.key, CallHold.since).where(
            CallHold.kind.in_(_LINE), or_(*queues), CallHold.node != self.node,
            CallHold.updated_at >= alive, CallHold.call_id.not_in(offered)).order_by(CallHold.since))
        return any(line.may_take(int(key), since) for key, since in rows.tuples() if since is not None)

    def mark_agent(self, agent_id: int, call_id: str) -> None:
        """The agent is on another call of this node (not a queue's): its row says so to the other nodes, which
        offer it nothing meanwhile (written behind the call, without the check: the agent is busy whatever
        another node decided; :meth:`release_agent` when the call is over)."""
        if agent_id in self._agents:
            return
        hold = os.urandom(16).hex()
        self._agents[agent_id] = hold
        self._write(hold, AGENT, str(agent_id), call_id)

    def hold_caller(self, queue_id: int, call_id: str, *, priority: int, since: float,
                    callback: bool = False) -> None:
        """A caller waits in one of this node's queues (``since``: when it joined the line, wall clock), or a
        callback request this node keeps may be offered (``callback``: a row of ``kind`` "callback")."""
        if call_id in self._callers:
            return
        hold = os.urandom(16).hex()
        self._callers[call_id] = hold
        self._write(hold, CALLBACK if callback else CALLER, str(queue_id), call_id, priority=priority, since=since)

    def release_caller(self, call_id: str) -> None:
        hold = self._callers.pop(call_id, None)
        if hold is not None:
            self._forget(hold)

    def callers_held(self) -> set[str]:
        return set(self._callers)

    async def callers_elsewhere(self) -> list[Waiter] | None:
        """The callers waiting in the other nodes' queues and the callback requests they may offer; None when
        the store does not answer in ``timeout``."""
        try:
            return await self._bounded(self._callers_elsewhere())
        except _STORE_ERRORS as exc:
            log.info("queue callers: the shared view is unavailable", error=repr(exc))
            return None

    async def _callers_elsewhere(self) -> list[Waiter]:
        async with self.db.session() as session:
            alive = datetime.now(UTC) - timedelta(seconds=2 * self.refresh)  # (as in _ahead)
            rows = await session.execute(select(CallHold.key, CallHold.since, CallHold.priority, CallHold.kind).where(
                CallHold.kind.in_(_LINE), CallHold.node != self.node, CallHold.updated_at >= alive))
            return [Waiter(int(key), float(since or 0.0), int(priority or 0), kind == CALLBACK)
                    for key, since, priority, kind in rows.tuples()]

    def share_handled(self, queue_id: int, seconds: float, calls: int) -> None:
        """This node's queue calls completed in the queue (``calls``, with ``seconds`` of talk and wrap-up in
        all), for the other nodes' wait estimates: one row per queue, written again behind the call."""
        hold = self._handled.get(queue_id)
        if hold is None:
            hold = self._handled[queue_id] = os.urandom(16).hex()
            self._live.add(hold)
        self._upserts[hold] = {"id": hold, "node": self.node, "kind": HANDLED, "key": str(queue_id),
                               "call_id": "", "amount": Decimal(f"{seconds:.4f}"), "priority": calls}
        self._wake.set()

    async def handled_elsewhere(self) -> dict[int, tuple[float, int]] | None:
        """Queue -> (seconds, calls) the other nodes (alive ones) have handled; None when the store does not
        answer in ``timeout``."""
        try:
            return await self._bounded(self._handled_elsewhere())
        except _STORE_ERRORS as exc:
            log.info("queue handle times: the shared view is unavailable", error=repr(exc))
            return None

    async def _handled_elsewhere(self) -> dict[int, tuple[float, int]]:
        async with self.db.session() as session:
            alive = datetime.now(UTC) - timedelta(seconds=2 * self.refresh)  # (as in _ahead)
            rows = await session.execute(select(CallHold.key, CallHold.amount, CallHold.priority).where(
                CallHold.kind == HANDLED, CallHold.node != self.node, CallHold.updated_at >= alive))
            handled: dict[int, tuple[float, int]] = {}
            for key, amount, calls in rows.tuples():
                seconds, count = handled.get(int(key), (0.0, 0))
                handled[int(key)] = (seconds + float(amount or 0), count + int(calls or 0))
            return handled

    def _write(self, hold: str, kind: str, key: str, call_id: str, **extra: Any) -> None:
        self._live.add(hold)
        self._inserts.append({"id": hold, "node": self.node, "kind": kind, "key": key, "call_id": call_id,
                              "amount": ZERO, **extra})
        self._wake.set()

    def release_agent(self, agent_id: int) -> None:
        """The agent is free of this node's queue calls (no answer, the caller gone, wrap-up over, logged out)."""
        hold = self._agents.pop(agent_id, None)
        if hold is not None:
            self._forget(hold)

    def agents_claimed(self) -> set[int]:
        """The agents this node has."""
        return set(self._agents)

    async def agents_elsewhere(self) -> set[int] | None:
        """The agents other nodes have (a killed node's until the sweep frees them); None when the store does
        not answer in ``timeout``."""
        try:
            return await self._bounded(self._agents_elsewhere())
        except _STORE_ERRORS as exc:
            log.info("agent claims: the shared view is unavailable", error=repr(exc))
            return None

    async def _agents_elsewhere(self) -> set[int]:
        async with self.db.session() as session:
            rows = await session.execute(select(CallHold.key).where(CallHold.kind == AGENT,
                                                                    CallHold.node != self.node))
            return {int(key) for key in rows.scalars()}

    # -- spending --------------------------------------------------------------------------------------
    async def reserve(self, call_id: str, profile: CallerProfile, zone: str, limits: Sequence[PolicyInfo],
                      rate: Rate, price: Decimal) -> Reservation:
        keys = _keys(profile, limits)
        holds = {key: os.urandom(16).hex() for key in keys}
        self._live.update(holds.values())
        try:
            reservation = await self._bounded(self._reserve(call_id, profile, zone, limits, rate, price, holds))
        except _STORE_ERRORS as exc:
            self._live.difference_update(holds.values())
            metrics.ERRORS.labels("call_holds_spend").inc()
            log.warning("spending ledger unreachable: paid call refused", call=call_id, tenant=profile.tenant_id,
                        error=repr(exc))
            raise StoreUnavailable(repr(exc)) from exc
        if reservation.verdict.allowed and reservation.held > 0:
            self._spend[call_id] = list(holds.values())
        else:
            self._live.difference_update(holds.values())
        return reservation

    async def _reserve(self, call_id: str, profile: CallerProfile, zone: str, limits: Sequence[PolicyInfo],
                       rate: Rate, price: Decimal, holds: dict[str, str]) -> Reservation:
        async with self.db.session() as session:
            await self._lock(session, [f"{SPEND}:{key}" for key in holds])
            spent = await _month_spend(session, profile, zone)
            rows = await session.execute(select(CallHold.key, func.sum(CallHold.amount)).where(
                CallHold.kind == SPEND, CallHold.key.in_(list(holds))).group_by(CallHold.key))
            held = {key: Decimal(total) for key, total in rows.all()}
            reservation = decide(profile.tenant_id, limits, spent, held, rate, price)
            if reservation.verdict.allowed and reservation.held > 0:
                now = datetime.now(UTC)
                await session.execute(insert(CallHold), [
                    {"id": hold, "node": self.node, "kind": SPEND, "key": key, "call_id": call_id,
                     "amount": reservation.held, "updated_at": now} for key, hold in holds.items()])
                await session.commit()
        return reservation

    def settle(self, call_id: str) -> None:
        for hold in self._spend.pop(call_id, ()):
            self._forget(hold)

    # -- upkeep ----------------------------------------------------------------------------------------
    def _forget(self, hold: str) -> None:
        if hold:
            self._live.discard(hold)
            self._deletes.append(hold)
            self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Write the releases as they come, refresh this node's holds every ``refresh`` seconds."""
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + self.refresh
        stopper = asyncio.ensure_future(stopping.wait())
        stopper.add_done_callback(lambda _f: self._wake.set())
        try:
            while not stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_refresh - loop.time()))
                self._wake.clear()
                await self.flush()
                if loop.time() >= next_refresh:
                    next_refresh = loop.time() + self.refresh
                    await self.beat()
            await self.flush()
        finally:
            stopper.cancel()

    async def flush(self) -> None:
        await self._flush_upserts()
        rows, self._inserts = self._inserts, []
        if rows:
            try:
                async with asyncio.timeout(self.timeout * 5):
                    async with self.db.session() as session:
                        now = datetime.now(UTC)
                        await session.execute(pg_insert(CallHold).on_conflict_do_nothing(),
                                              [{**row, "updated_at": now} for row in rows])
                        await session.commit()
            except _STORE_ERRORS as exc:
                # the other nodes do not see these: an agent busy here may be offered there (its phone
                # answers busy), a caller here is not counted there; dropped from the refresh
                metrics.ERRORS.labels("call_holds_write").inc()
                self._live.difference_update(row["id"] for row in rows)
                log.warning("writing call holds failed", holds=len(rows), error=repr(exc))
        ids, self._deletes = self._deletes, []
        if not ids:
            return
        try:
            async with asyncio.timeout(self.timeout * 5):
                async with self.db.session() as session:
                    await session.execute(delete(CallHold).where(CallHold.id.in_(ids)))
                    await session.commit()
        except _STORE_ERRORS as exc:
            # not refreshed any more: the dead-node sweep deletes them if we never can
            metrics.ERRORS.labels("call_holds_release").inc()
            log.warning("releasing call holds failed: the sweep frees them", holds=len(ids), error=repr(exc))

    async def _flush_upserts(self) -> None:
        rows = [row for row in self._upserts.values() if row["id"] in self._live]
        self._upserts = {}
        if not rows:
            return
        try:
            async with asyncio.timeout(self.timeout * 5):
                async with self.db.session() as session:
                    now = datetime.now(UTC)
                    for row in rows:
                        await session.execute(pg_insert(CallHold).values(**row, updated_at=now).on_conflict_do_update(
                            index_elements=[CallHold.id],
                            set_={"amount": row["amount"], "priority": row["priority"], "updated_at": now}))
                    await session.commit()
        except _STORE_ERRORS as exc:
            # kept for the next flush (unless a newer total came meanwhile): a total is never lost
            metrics.ERRORS.labels("call_holds_write").inc()
            for row in rows:
                self._upserts.setdefault(row["id"], row)
            log.warning("writing call holds failed", holds=len(rows), error=repr(exc))

    async def beat(self) -> None:
        ids = list(self._live)
        if not ids and self._node_row is None:
            return
        try:
            async with asyncio.timeout(self.timeout * 5):
                async with self.db.session() as session:
                    now = datetime.now(UTC)
                    if ids:
                        await session.execute(text("UPDATE call_holds SET updated_at = :now WHERE id = ANY(:ids)"),
                                              {"now": now, "ids": ids})
                    if self._node_row is not None:  # (written again if a store away so long had it swept)
                        await session.execute(self._node_upsert(now))
                    await session.commit()
        except _STORE_ERRORS as exc:
            metrics.ERRORS.labels("call_holds_refresh").inc()
            log.warning("refreshing call holds failed", holds=len(ids), error=repr(exc))


async def delete_stale(db: Any, before: datetime) -> int:
    """The dead-node sweep: holds no node refreshed since ``before`` (their node died, or let them go)."""
    async with db.session() as session:
        result = await session.execute(delete(CallHold).where(CallHold.updated_at < before))
        await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)
