"""Thin REST routes of ring groups: ``/api/v1/tenants/{tenant_id}/ring-groups`` (CRUD), for the tenant's
admin, as conference rooms are (an employee gets 403; another tenant's groups answer 404 like missing
ones)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import TenantAdmin
from zvonok.api.deps import Paging, get_session, paging
from zvonok.org.schemas import Page

from . import schemas as s
from . import service

router = APIRouter(prefix="/api/v1", tags=["ring groups"])
Session = Annotated[AsyncSession, Depends(get_session)]
PageParams = Annotated[Paging, Depends(paging)]


@router.post("/tenants/{tenant_id}/ring-groups", response_model=s.RingGroupOut, status_code=201)
async def create_ring_group(tenant_id: int, body: s.RingGroupCreate, _: TenantAdmin, session: Session) -> object:
    group = await service.create_group(session, tenant_id, body)
    await session.commit()
    return service.group_out(group)


@router.get("/tenants/{tenant_id}/ring-groups", response_model=Page[s.RingGroupOut])
async def list_ring_groups(tenant_id: int, _: TenantAdmin, session: Session, p: PageParams) -> object:
    rows, total = await service.list_groups(session, tenant_id, limit=p.limit, offset=p.offset)
    return {"items": [service.group_out(g) for g in rows], "total": total, "limit": p.limit, "offset": p.offset}


@router.get("/tenants/{tenant_id}/ring-groups/{group_id}", response_model=s.RingGroupOut)
async def get_ring_group(tenant_id: int, group_id: int, _: TenantAdmin, session: Session) -> object:
    return service.group_out(await service.get_group(session, tenant_id, group_id))


@router.patch("/tenants/{tenant_id}/ring-groups/{group_id}", response_model=s.RingGroupOut)
async def update_ring_group(tenant_id: int, group_id: int, body: s.RingGroupUpdate, _: TenantAdmin,
                            session: Session) -> object:
    group = await service.update_group(session, tenant_id, group_id, body)
    await session.commit()
    return service.group_out(group)


@router.delete("/tenants/{tenant_id}/ring-groups/{group_id}", status_code=204)
async def delete_ring_group(tenant_id: int, group_id: int, _: TenantAdmin, session: Session) -> Response:
    await service.delete_group(session, tenant_id, group_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
