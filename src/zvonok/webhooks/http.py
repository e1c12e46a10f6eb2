"""Thin REST routes of webhooks: ``/api/v1/tenants/{tenant_id}/webhooks`` (CRUD), ``.../{id}/deliveries``
(the latest tries) and ``.../{id}/ping`` (a test event), for the tenant's admin (an employee gets 403;
another tenant's webhooks answer 404 like missing ones). The secret is in the answer to the POST only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import TenantAdmin
from zvonok.api.deps import Paging, get_session, get_settings, paging
from zvonok.config import Settings
from zvonok.org.schemas import Page

from . import schemas as s
from . import service

router = APIRouter(prefix="/api/v1", tags=["webhooks"])
Session = Annotated[AsyncSession, Depends(get_session)]
PageParams = Annotated[Paging, Depends(paging)]
Config = Annotated[Settings, Depends(get_settings)]


@router.post("/tenants/{tenant_id}/webhooks", response_model=s.WebhookCreated, status_code=201)
async def create_webhook(
    tenant_id: int, body: s.WebhookCreate, _: TenantAdmin, session: Session, settings: Config
) -> object:
    hook = await service.create_webhook(
        session, tenant_id, body, allow_private=settings.webhooks_allow_private
    )
    await session.commit()
    return s.WebhookCreated(**service.webhook_out(hook).model_dump(), secret=hook.secret)


@router.get("/tenants/{tenant_id}/webhooks", response_model=Page[s.WebhookOut])
async def list_webhooks(tenant_id: int, _: TenantAdmin, session: Session, p: PageParams) -> object:
    rows, total = await service.list_webhooks(session, tenant_id, limit=p.limit, offset=p.offset)
    return {
        "items": [service.webhook_out(h) for h in rows],
        "total": total,
        "limit": p.limit,
        "offset": p.offset,
    }


@router.get("/tenants/{tenant_id}/webhooks/{webhook_id}", response_model=s.WebhookOut)
async def get_webhook(tenant_id: int, webhook_id: int, _: TenantAdmin, session: Session) -> object:
    return service.webhook_out(await service.get_webhook(session, tenant_id, webhook_id))


@router.patch("/tenants/{tenant_id}/webhooks/{webhook_id}", response_model=s.WebhookOut)
async def update_webhook(
    tenant_id: int, webhook_id: int, body: s.WebhookUpdate, _: TenantAdmin, session: Session, settings: Config
) -> object:
    hook = await service.update_webhook(
        session, tenant_id, webhook_id, body, allow_private=settings.webhooks_allow_private
    )
    await session.commit()
    return service.webhook_out(hook)


@router.delete("/tenants/{tenant_id}/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(tenant_id: int, webhook_id: int, _: TenantAdmin, session: Session) -> Response:
    await service.delete_webhook(session, tenant_id, webhook_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/tenants/{tenant_id}/webhooks/{webhook_id}/deliveries", response_model=list[s.DeliveryOut])
async def list_webhook_deliveries(
    tenant_id: int,
    webhook_id: int,
    _: TenantAdmin,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=service.MAX_DELIVERIES)] = 50,
) -> object:
    rows = await service.list_deliveries(session, tenant_id, webhook_id, limit=limit)
    return [service.delivery_out(r) for r in rows]


@router.post("/tenants/{tenant_id}/webhooks/{webhook_id}/ping", response_model=s.DeliveryOut, status_code=202)
async def ping_webhook(tenant_id: int, webhook_id: int, _: TenantAdmin, session: Session) -> object:
    row = await service.ping(session, tenant_id, webhook_id)
    await session.commit()
    return service.delivery_out(row)
