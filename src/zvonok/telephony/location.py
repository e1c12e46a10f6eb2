"""The location service: where each extension's devices can be reached (RFC 3261 §10.3).

How it works: bindings live in memory, keyed by (tenant, extension) and then by contact URI, so the
registrar and later the call router read them with a dict look-up. Every change is also queued for a
:class:`BindingStore`, which the server flushes to the database in batches (write-behind): a REGISTER
never waits for a disk write, and at start-up :meth:`Location.load` restores the bindings that have
not expired, so registrations survive a restart. A crash can lose the last fraction of a second of
changes; phones re-register anyway.

Multi-node operation replaces this class behind the same methods with a shared implementation (the
design rule of one interface per piece of shared state).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol


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

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))


Key = tuple[int, int]


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
        if binding.contact not in found:
            self.count += 1
        found[binding.contact] = binding
        self._dirty[(binding.tenant_id, binding.extension_id, binding.contact)] = binding
        self._schedule(binding)

    def _schedule(self, binding: Binding) -> None:
        heapq.heappush(self._expiry, (binding.expires_at, binding.tenant_id, binding.extension_id, binding.contact))
        if len(self._expiry) > 2 * self.count + 1024:  # mostly refreshed entries: rebuild
            self._expiry = [(b.expires_at, b.tenant_id, b.extension_id, b.contact)
                            for found in self._bindings.values() for b in found.values()]
            heapq.heapify(self._expiry)

    def remove(self, tenant_id: int, extension_id: int, contact: str) -> None:
        found = self._bindings.get((tenant_id, extension_id))
        if found and found.pop(contact, None) is not None:
            self.count -= 1
            if not found:
                del self._bindings[(tenant_id, extension_id)]
        self._dirty[(tenant_id, extension_id, contact)] = None

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
                self.remove(tenant_id, extension_id, contact)
                removed += 1
        return removed

    # -- persistence ------------------------------------------------------------------------------
    def restore(self, bindings: Iterable[Binding]) -> None:
        for binding in bindings:
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
