"""What the call engine needs to know about tenants and extensions, cached in memory.

Routing a call looks up the dialed extension and the parties' office and department on every INVITE;
the answers are cached for ``ttl`` seconds and dropped when an org event says the tenant changed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select

from zvonok.org.models import Employee, Extension, Tenant
from zvonok.storage.db import Database

from .events import Party


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

    def party(self) -> Party:
        return Party(number=self.number, display_name=self.display_name, extension_id=self.extension_id,
                     employee_id=self.employee_id, office_id=self.office_id, department_id=self.department_id)


@dataclass(frozen=True, slots=True)
class TenantRef:
    id: int
    domain: str
    suspended: bool


Loader = Callable[[], Awaitable[object]]


class Directory:
    def __init__(self, db: Database, ttl: float = 30.0) -> None:
        self.db = db
        self.ttl = ttl
        self._extensions: dict[tuple[int, str], tuple[float, ExtensionInfo | None]] = {}
        self._tenants: dict[str, tuple[float, TenantRef | None]] = {}

    async def extension(self, tenant_id: int, number: str) -> ExtensionInfo | None:
        now = time.monotonic()
        hit = self._extensions.get((tenant_id, number))
        if hit is not None and hit[0] > now:
            return hit[1]
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
            )
        self._extensions[(tenant_id, number)] = (now + self.ttl, info)
        return info

    async def tenant(self, domain: str) -> TenantRef | None:
        now = time.monotonic()
        domain = domain.lower()
        hit = self._tenants.get(domain)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self.db.session() as session:
            tenant = (await session.execute(select(Tenant).where(Tenant.sip_domain == domain))).scalar_one_or_none()
        ref = TenantRef(tenant.id, tenant.sip_domain, tenant.suspended) if tenant is not None else None
        self._tenants[domain] = (now + self.ttl, ref)
        return ref

    def invalidate(self, tenant_id: int | None = None) -> None:
        if tenant_id is None:
            self._extensions.clear()
        else:
            self._extensions = {k: v for k, v in self._extensions.items() if k[0] != tenant_id}
        self._tenants.clear()
