"""What the call engine needs to know about tenants and extensions, cached in memory.

Routing a call looks up the dialed extension and the parties' office and department on every INVITE;
the answers are cached for ``ttl`` seconds and dropped when an org event says the tenant changed. An
extension or a domain found earlier whose ``ttl`` has passed is answered from the old entry at once while a
background task reads it again (the events already drop what changed; the ``ttl`` is the safety net): a call
never waits for the database behind the CDR and queue-log writes because a timer ran out. A
caller chooses what is dialed, so the caches are bounded LRUs with misses kept apart
(:class:`~zvonok.telephony.cache.BoundedCache`): dialing made-up numbers neither grows memory nor pushes
out the extensions everyone calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select

from zvonok.org.models import Employee, Extension, Tenant
from zvonok.storage.db import Database

from .cache import BoundedCache
from .events import Party
from .forwarding import NO_FORWARDING, ForwardingSettings


@dataclass(frozen=True, slots=True)
class ExtensionInfo:
    tenant_id: int
    extension_id: int
    number: str
    display_name: str
    employee_id: int | None
    office_id: int | None
    department_id: int | None
    enabled: bool
    srtp: str | None = None  # SRTP policy of the extension (None: the server's default)
    forwarding: ForwardingSettings = NO_FORWARDING  # its call forwarding and DND
    pickup_group: str | None = None  # its call pickup group (None: its department's)

    def party(self) -> Party:
        return Party(number=self.number, display_name=self.display_name, extension_id=self.extension_id,
                     employee_id=self.employee_id, office_id=self.office_id, department_id=self.department_id)


@dataclass(frozen=True, slots=True)
class TenantRef:
    id: int
    domain: str
    suspended: bool


Loader = Callable[[], Awaitable[object]]
log = logging.getLogger(__name__)


class Directory:
    def __init__(self, db: Database, ttl: float = 30.0, max_entries: int = 100_000, max_misses: int = 10_000) -> None:
        self.db = db
        self.ttl = ttl
        self._extensions: BoundedCache[tuple[int, str], ExtensionInfo] = BoundedCache(
            ttl=ttl, negative_ttl=ttl, max_entries=max_entries, max_misses=max_misses)
        self._tenants: BoundedCache[str, TenantRef] = BoundedCache(
            ttl=ttl, negative_ttl=ttl, max_entries=max_entries, max_misses=max_misses)
        self._refreshing: dict[tuple[object, ...], asyncio.Task[None]] = {}  # entries being read again
        self._generation = 0  # counts invalidations: a read again that crossed one is not kept

    async def extension(self, tenant_id: int, number: str) -> ExtensionInfo | None:
        found, cached, stale = self._extensions.get_or_stale((tenant_id, number))
        if stale:
            self._refresh(("extension", tenant_id, number), lambda: self._load_extension(tenant_id, number),
                          lambda: self._extensions.discard((tenant_id, number)))
        if found:
            return cached
        return await self._load_extension(tenant_id, number)

    def _refresh(self, key: tuple[object, ...], load: Loader, forget: Callable[[], None]) -> None:
        """Read an entry again in the background (once at a time per entry); an invalidation meanwhile wins:
        what the task read is forgotten."""
        if key in self._refreshing:
            return
        generation = self._generation

        async def again() -> None:
            try:
                await load()
            except Exception:  # noqa: BLE001 - the old entry keeps answering; the next look-up tries again
                log.warning("directory: reading %s again failed", key, exc_info=True)
            finally:
                self._refreshing.pop(key, None)
            if self._generation != generation:
                forget()

        self._refreshing[key] = asyncio.get_running_loop().create_task(again(), name="directory:refresh")

    async def _load_extension(self, tenant_id: int, number: str) -> ExtensionInfo | None:
        async with self.db.session() as session:
            row = (await session.execute(
                select(Extension, Employee.department_id, Employee.office_id)
                .outerjoin(Employee, Employee.id == Extension.employee_id)
                .where(Extension.tenant_id == tenant_id, Extension.number == number)
            )).first()
        info = None
        if row is not None:
            ext, department_id, employee_office = row
            info = ExtensionInfo(
                tenant_id=tenant_id, extension_id=ext.id, number=ext.number, display_name=ext.display_name,
                employee_id=ext.employee_id, office_id=ext.office_id or employee_office,
                department_id=department_id, enabled=ext.enabled, srtp=ext.srtp,
                pickup_group=ext.pickup_group or None,
                forwarding=ForwardingSettings(
                    dnd=bool(ext.dnd), unconditional=ext.forward_unconditional, busy=ext.forward_busy,
                    no_answer=ext.forward_no_answer, no_answer_seconds=ext.forward_no_answer_seconds or 20,
                    unavailable=ext.forward_unavailable) if ext.dnd or ext.forward_unconditional
                or ext.forward_busy or ext.forward_no_answer or ext.forward_unavailable else NO_FORWARDING,
            )
        self._extensions.put((tenant_id, number), info)
        return info

    async def tenant(self, domain: str) -> TenantRef | None:
        domain = domain.lower()
        found, cached, stale = self._tenants.get_or_stale(domain)
        if stale:
            self._refresh(("tenant", domain), lambda: self._load_tenant(domain), lambda: self._tenants.discard(domain))
        if found:
            return cached
        return await self._load_tenant(domain)

    async def _load_tenant(self, domain: str) -> TenantRef | None:
        async with self.db.session() as session:
            tenant = (await session.execute(select(Tenant).where(Tenant.sip_domain == domain))).scalar_one_or_none()
        ref = TenantRef(tenant.id, tenant.sip_domain, tenant.suspended) if tenant is not None else None
        self._tenants.put(domain, ref)
        return ref

    def invalidate(self, tenant_id: int | None = None) -> None:
        self._generation += 1
        if tenant_id is None:
            self._extensions.clear()
            self._tenants.clear()
            return
        self._extensions.discard_where(lambda key, _info: key[0] == tenant_id)
        # a domain not found may now be this tenant's (a domain changed or a tenant was made)
        self._tenants.discard_where(lambda _domain, ref: ref is None or ref.id == tenant_id)
