"""REST view of the location service: the live SIP registrations of a tenant.

An admin sees every device; an employee only the devices of extensions assigned to them (addresses
and user agents of colleagues' phones are not theirs to see).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import TenantReader
from zvonok.api.deps import get_session
from zvonok.org import service as org_service

from .location import Location


class RegistrationOut(BaseModel):
    extension_id: int
    aor: str
    contact: str
    source: str
    user_agent: str
    expires_in: int
    expires_at: datetime
    registered_at: datetime
    q: float | None
    instance: str | None
    path: list[str] = []  # RFC 3327: the edge proxies a call to the device goes through
    client: str | None = None  # the device's own address, as a trusted edge reported it
    remote: bool = False  # registered through another node sharing the database (issue 14)


class RegistrationList(BaseModel):
    items: list[RegistrationOut]
    total: int


def registrations_router(location: Location) -> APIRouter:
    router = APIRouter(prefix="/api/v1/tenants/{tenant_id}", tags=["registrations"])

    @router.get("/registrations", response_model=RegistrationList)
    async def list_registrations(tenant_id: int, principal: TenantReader,
                                 session: Annotated[AsyncSession, Depends(get_session)],
                                 extension_id: int | None = None) -> RegistrationList:
        """Devices registered now (extension, contact, user agent, source address, expiry); an
        employee's own devices only."""
        mine: set[int] | None = None
        if not principal.may_administer(tenant_id):
            mine = await org_service.extension_ids_of(session, tenant_id, principal.employee_id)
        now = time.time()
        items = [
            RegistrationOut(
                extension_id=b.extension_id, aor=b.aor, contact=b.contact, source=b.source,
                user_agent=b.user_agent, expires_in=b.remaining(now),
                expires_at=datetime.fromtimestamp(b.expires_at, UTC),
                registered_at=datetime.fromtimestamp(b.registered_at, UTC), q=b.q, instance=b.instance,
                path=list(b.path), client=b.client or None,
                remote=location.is_remote(b.tenant_id, b.extension_id, b.contact),
            )
            for b in location.tenant_bindings(tenant_id, now)
            if (extension_id is None or b.extension_id == extension_id) and (mine is None or b.extension_id in mine)
        ]
        return RegistrationList(items=items, total=len(items))

    return router
