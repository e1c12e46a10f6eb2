"""Routing by owner, the CRM's side: whose phone an outside caller's call rings first.

The call engine asks through its ``client_owners`` port (:class:`zvonok.telephony.owner_first.ClientOwners`)
for every outside call to a company number; this answers with one query: the client one of whose phones
is the caller's number, its owner (an employee of the tenant), that employee's first extension, and the
tenant's ring time (``crm_settings.owner_ring_seconds``; 0 or no settings row: off). Anything missing —
an unknown caller, a client without an owner, an owner without an extension — answers None and the call
goes to its usual destination at once.
"""

from __future__ import annotations

from sqlalchemy import and_, select

from zvonok.org.models import Extension
from zvonok.storage.db import Database
from zvonok.telephony.owner_first import OwnerRoute

from .models import CrmClient, CrmPhone, CrmSettings


class ClientOwnerDirectory:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def owner_route(self, tenant_id: int, number: str) -> OwnerRoute | None:
        candidates = [number, number.lstrip("+")] if number.startswith("+") else [number, "+" + number]
        async with self.db.session() as session:
            row = (
                await session.execute(
                    select(Extension.number, CrmSettings.owner_ring_seconds, CrmClient.id, CrmClient.owner_id)
                    .select_from(CrmPhone)
                    .join(
                        CrmClient, and_(CrmClient.id == CrmPhone.client_id, CrmClient.tenant_id == tenant_id)
                    )
                    .join(CrmSettings, CrmSettings.tenant_id == tenant_id)
                    .join(
                        Extension,
                        and_(Extension.employee_id == CrmClient.owner_id, Extension.tenant_id == tenant_id),
                    )
                    .where(
                        CrmPhone.tenant_id == tenant_id,
                        CrmPhone.number.in_(candidates),
                        CrmSettings.owner_ring_seconds > 0,
                    )
                    .order_by(Extension.id)
                    .limit(1)
                )
            ).first()
        if row is None:
            return None
        extension, seconds, client_id, owner_id = row
        return OwnerRoute(
            extension=extension, seconds=int(seconds), client_id=client_id, employee_id=owner_id
        )
