"""The location service: where each extension's devices can be reached (RFC 3261 §10.3).

How it works: bindings live in memory, keyed by (tenant, extension) and then by contact URI, so the
registrar and later the call router read them with a dict look-up. Every change is also queued for a
:class:`BindingStore`, and :class:`GroupCommit` writes the changes that arrive within a few milliseconds
in one transaction. A REGISTER's 200 waits for that commit (:meth:`Location.when_durable`): a phone
told "registered" stays registered through a crash (kill -9 50 ms after a 200 once lost it, when
bindings were written every 250 ms and answered at once). At start-up the bindings that have not
expired are restored from the database.

Several nodes on one PostgreSQL database (issue 14): the database is the shared location, each node's
dict a cache of it. A node that commits binding changes announces them (:class:`BindingsChanged`, written
to ``change_log`` in the same transaction, see :mod:`zvonok.telephony.store`), and every other node folds
them in with :meth:`Location.apply_remote`. A binding learned that way is *remote*: this node reads it
(a call to the extension goes along its Path, through the edge), but never writes it back, and when it
expires here it only leaves the cache, because the node that owns it may have refreshed it a moment ago
(the owner, or the next start's load, deletes the row). A REGISTER for it arriving here makes it local.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from zvonok import metrics
from zvonok.bus import register_event
from zvonok.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    """One registered contact of an extension."""

    tenant_id: int
    extension_id: int
    aor: str
    contact: str  # the Contact URI, as the device sent it
    expires_at: float  # wall-clock time (epoch seconds)
    q: float | None = None
    source: str = ""  # where REGISTER came from: "udp:203.0.113.5:5060" (NAT: reach the device there)
    connection: int | None = None  # stream connection the device keeps open (not persisted)
    user_agent: str = ""
    call_id: str = ""
    cseq: int = 0
    instance: str | None = None  # +sip.instance (RFC 5626)
    reg_id: int | None = None
    registered_at: float = 0.0
    # RFC 3327: the Path values of the REGISTER, in order; a request to the device goes along them
    path: tuple[str, ...] = ()
    # the device's own address when it registered through a trusted edge ("" : the source's address)
    client: str = ""

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))


@register_event
@dataclass(frozen=True, slots=True, kw_only=True)
class BindingsChanged:
    """Binding changes one node committed, for the other nodes' caches (never a call event)."""

    upserts: tuple[Binding, ...] = ()
    deletes: tuple[tuple[int, int, str], ...] = ()
    version: int = 1


Key = tuple[int, int]
Waiter = Callable[[bool], None]  # called with True once the changes before it are committed, False if they failed


class BindingStore(Protocol):
    """Durable storage of bindings (the database)."""

    async def load(self, now: float) -> list[Binding]: ...

    async def apply(self, upserts: list[Binding], deletes: list[tuple[int, int, str]]) -> None: ...


class Location:
    """In-memory bindings with write-behind persistence."""

    def __init__(self) -> None:
        self._bindings: dict[Key, dict[str, Binding]] = {}
        self._dirty: dict[tuple[int, int, str], Binding | None] = {}
        # expiry times in a heap (stale entries of refreshed bindings are skipped when they surface)
        self._expiry: list[tuple[float, int, int, str]] = []
        self.count = 0
        self._waiters: list[Waiter] = []
        # set by a GroupCommit: without one (tests of the registrar alone) nothing waits
        self.on_waiter: Callable[[], None] | None = None
        # called with (tenant_id, extension_id) when a contact appears or goes (not on a refresh): live views
        self.on_change: Callable[[int, int], None] | None = None
        # True while on_change reports another node's binding (apply_remote): what only the node that took the
        # REGISTER does (the unsolicited message-waiting NOTIFY to the new contact) is skipped then
        self.applying_remote = False
        # bindings another node registered and announced (see the module docstring)
        self._remote: set[tuple[int, int, str]] = set()

    # -- reads ------------------------------------------------------------------------------------
    def lookup(self, tenant_id: int, extension_id: int, now: float) -> list[Binding]:
        """Live bindings of one extension, highest q first, then the most recent."""
        found = self._bindings.get((tenant_id, extension_id))
        if not found:
            return []
        live = [b for b in found.values() if b.expires_at > now]
        live.sort(key=lambda b: (-(b.q if b.q is not None else 1.0), -b.registered_at))
        return live

    def tenant_bindings(self, tenant_id: int, now: float) -> list[Binding]:
        out = [
            b for (tid, _), found in self._bindings.items() if tid == tenant_id
            for b in found.values() if b.expires_at > now
        ]
        out.sort(key=lambda b: (b.extension_id, b.registered_at))
        return out

    # -- writes -----------------------------------------------------------------------------------
    def put(self, binding: Binding) -> None:
        key = (binding.tenant_id, binding.extension_id)
        found = self._bindings.setdefault(key, {})
        added = binding.contact not in found
        if added:
            self.count += 1
        found[binding.contact] = binding
        self._dirty[(binding.tenant_id, binding.extension_id, binding.contact)] = binding
        self._remote.discard((binding.tenant_id, binding.extension_id, binding.contact))
        self._schedule(binding)
        if added and self.on_change is not None:
            self.on_change(binding.tenant_id, binding.extension_id)

    def _schedule(self, binding: Binding) -> None:
        heapq.heappush(self._expiry, (binding.expires_at, binding.tenant_id, binding.extension_id, binding.contact))
        if len(self._expiry) > 2 * self.count + 1024:  # mostly refreshed entries: rebuild
            self._expiry = [(b.expires_at, b.tenant_id, b.extension_id, b.contact)
                            for found in self._bindings.values() for b in found.values()]
            heapq.heapify(self._expiry)

    def remove(self, tenant_id: int, extension_id: int, contact: str) -> None:
        self._remote.discard((tenant_id, extension_id, contact))
        self._dirty[(tenant_id, extension_id, contact)] = None
        self._drop(tenant_id, extension_id, contact)

    def _drop(self, tenant_id: int, extension_id: int, contact: str) -> None:
        """Remove from the cache only."""
        found = self._bindings.get((tenant_id, extension_id))
        removed = found is not None and found.pop(contact, None) is not None
        if removed:
            self.count -= 1
            if not found:
                del self._bindings[(tenant_id, extension_id)]
        if removed and self.on_change is not None:
            self.on_change(tenant_id, extension_id)

    def remove_all(self, tenant_id: int, extension_id: int) -> None:
        for contact in list(self._bindings.get((tenant_id, extension_id), {})):
            self.remove(tenant_id, extension_id, contact)

    def current(self, tenant_id: int, extension_id: int) -> dict[str, Binding]:
        """All bindings of the extension, expired ones included (the registrar's view)."""
        return self._bindings.get((tenant_id, extension_id), {})

    def expire(self, now: float) -> int:
        """Remove expired bindings; returns how many. Costs only what expired, not all bindings."""
        removed = 0
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, tenant_id, extension_id, contact = heapq.heappop(heap)
            binding = self._bindings.get((tenant_id, extension_id), {}).get(contact)
            if binding is not None and binding.expires_at <= now:
                key = (tenant_id, extension_id, contact)
                if key in self._remote:
                    self._remote.discard(key)
                    self._drop(tenant_id, extension_id, contact)
                else:
                    self.remove(tenant_id, extension_id, contact)
                removed += 1
        return removed

    # -- other nodes ------------------------------------------------------------------------------
    def apply_remote(self, upserts: Iterable[Binding], deletes: Iterable[tuple[int, int, str]]) -> None:
        """Fold in the binding changes another node committed: cached, never written back."""
        self.applying_remote = True
        try:
            self._apply_remote(upserts, deletes)
        finally:
            self.applying_remote = False

    def _apply_remote(self, upserts: Iterable[Binding], deletes: Iterable[tuple[int, int, str]]) -> None:
        for binding in upserts:
            key = (binding.tenant_id, binding.extension_id)
            found = self._bindings.setdefault(key, {})
            added = binding.contact not in found
            if added:
                self.count += 1
            found[binding.contact] = replace(binding, connection=None)
            self._remote.add((binding.tenant_id, binding.extension_id, binding.contact))
            self._dirty.pop((binding.tenant_id, binding.extension_id, binding.contact), None)
            self._schedule(binding)
            if added and self.on_change is not None:
                self.on_change(binding.tenant_id, binding.extension_id)
        for tenant_id, extension_id, contact in deletes:
            self._remote.discard((tenant_id, extension_id, contact))
            self._dirty.pop((tenant_id, extension_id, contact), None)
            self._drop(tenant_id, extension_id, contact)

    def is_remote(self, tenant_id: int, extension_id: int, contact: str) -> bool:
        """Whether the binding came from another node's announcement."""
        return (tenant_id, extension_id, contact) in self._remote

    # -- persistence ------------------------------------------------------------------------------
    def restore(self, bindings: Iterable[Binding], *, remote: bool = False) -> None:
        """Load bindings from the database; ``remote`` when other nodes share it (any of them may own
        a row, see the module docstring)."""
        for binding in bindings:
            if remote:
                self._remote.add((binding.tenant_id, binding.extension_id, binding.contact))
            key = (binding.tenant_id, binding.extension_id)
            found = self._bindings.setdefault(key, {})
            if binding.contact not in found:
                self.count += 1
            found[binding.contact] = replace(binding, connection=None)
            self._schedule(binding)

    def take_changes(self) -> tuple[list[Binding], list[tuple[int, int, str]]]:
        """The changes since the last call: bindings to upsert and (tenant, extension, contact) to delete."""
        dirty, self._dirty = self._dirty, {}
        upserts = [b for b in dirty.values() if b is not None]
        deletes = [k for k, b in dirty.items() if b is None]
        return upserts, deletes

    def requeue(self, upserts: list[Binding], deletes: list[tuple[int, int, str]]) -> None:
        """Put back changes whose write failed, unless a newer change of the same binding is queued."""
        for binding in upserts:
            self._dirty.setdefault((binding.tenant_id, binding.extension_id, binding.contact), binding)
        for key in deletes:
            self._dirty.setdefault(key, None)

    @property
    def has_changes(self) -> bool:
        return bool(self._dirty)

    # -- group commit -----------------------------------------------------------------------------
    def when_durable(self, waiter: Waiter) -> None:
        """Call ``waiter(True)`` once every change made so far is committed (at once without a store)."""
        if self.on_waiter is None:
            waiter(True)
            return
        self._waiters.append(waiter)
        self.on_waiter()

    def take_waiters(self) -> list[Waiter]:
        waiters, self._waiters = self._waiters, []
        return waiters

    def requeue_waiters(self, waiters: list[Waiter]) -> None:
        self._waiters[:0] = waiters

    @property
    def has_waiters(self) -> bool:
        return bool(self._waiters)


class GroupCommit:
    """Writes the location's changes to its store, several REGISTERs per transaction, and answers them.

    A waiting REGISTER wakes the writer, which lingers ``delay`` seconds so that the REGISTERs arriving
    meanwhile share the commit, then commits and calls every waiter taken with those changes. Without
    waiters (expiries, removals by the system) it writes every ``interval`` seconds as before. A busy
    SQLite database (the store never waits for the lock on the loop: see ``SqlBindingStore``) is tried
    again ``delay`` later with the waiters still waiting; any other failure answers them False (the
    registrar then says 500) and keeps the changes for the next attempt.

    It is stopped by the event, never cancelled, so that a batch being written is never cut off halfway.
    """

    def __init__(self, location: Location, store: BindingStore, *, delay: float = 0.005,
                 interval: float = 0.25) -> None:
        self.location = location
        self.store = store
        self.delay = delay
        self.interval = interval
        self._wake = asyncio.Event()
        location.on_waiter = self._wake.set

    async def run(self, stopping: asyncio.Event) -> None:
        stop = asyncio.ensure_future(stopping.wait())
        try:
            while not stopping.is_set():
                wake = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait((stop, wake), timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
                if self._wake.is_set() and not stopping.is_set():
                    await asyncio.sleep(self.delay)  # let the REGISTERs of the next few ms join this commit
                self._wake.clear()
                if not await self.flush() and self.location.has_waiters:
                    await asyncio.sleep(self.delay)
                    self._wake.set()
        finally:
            stop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stop

    async def flush(self) -> bool:
        """Expire, write the changes, answer the waiters; False when the database was busy or failed."""
        location = self.location
        location.expire(time.time())
        metrics.REGISTRATIONS.set(location.count)
        waiters = location.take_waiters()
        if not location.has_changes:
            _answer(waiters, True)
            return True
        upserts, deletes = location.take_changes()
        try:
            await self.store.apply(upserts, deletes)
        except BaseException as exc:  # keep what was not written; the next flush retries it
            location.requeue(upserts, deletes)
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                location.requeue_waiters(waiters)
                log.debug("database busy: registrations written at the next flush", upserts=len(upserts))
                return False
            _answer(waiters, False)
            if not isinstance(exc, Exception):
                raise
            metrics.ERRORS.labels("registration_flush").inc()
            log.exception("failed to persist registrations", upserts=len(upserts), deletes=len(deletes))
            return False
        _answer(waiters, True)
        return True


def _answer(waiters: list[Waiter], durable: bool) -> None:
    for waiter in waiters:
        try:
            waiter(durable)
        except Exception:  # noqa: BLE001 - one failed answer must not keep the others waiting
            metrics.ERRORS.labels("registration_answer").inc()
            log.exception("answering a registration failed")
