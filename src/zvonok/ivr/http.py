"""Thin REST routes of IVR menus: ``/api/v1/tenants/{tenant_id}/ivr-menus`` (CRUD, for the tenant's admin)
and ``.../ivr-menus/{menu_id}/greeting`` (``PUT`` the raw audio file: WAV, MP3, FLAC or Ogg, converted to
8 kHz on upload, 422 for anything else; ``DELETE`` goes back to the spoken text; ``GET`` the WAV callers
hear). Another tenant's menus answer 404 like missing ones.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import FileResponse
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import TenantAdmin
from zvonok.api.deps import Paging, get_session, paging
from zvonok.config import Settings
from zvonok.org.schemas import Page

from . import schemas as s
from . import service
from .prompts import IvrPrompts

router = APIRouter(prefix="/api/v1", tags=["ivr"])
Session = Annotated[AsyncSession, Depends(get_session)]
PageParams = Annotated[Paging, Depends(paging)]
# the greeting upload may be larger than other bodies: zvonok.api.limits.BodyLimit gives it http_max_upload
UPLOAD = ("PUT", "/api/v1/tenants/[^/]+/ivr-menus/[^/]+/greeting")


def prompts_of(request: Request) -> IvrPrompts:
    settings: Settings = request.app.state.settings
    return IvrPrompts(settings.data_dir / "ivr")


@router.post("/tenants/{tenant_id}/ivr-menus", response_model=s.MenuOut, status_code=201)
async def create_ivr_menu(tenant_id: int, body: s.MenuCreate, _: TenantAdmin, session: Session,
                          request: Request) -> object:
    menu = await service.create_menu(session, tenant_id, body, prompts_of(request))
    await session.commit()
    return service.menu_out(menu)


@router.get("/tenants/{tenant_id}/ivr-menus", response_model=Page[s.MenuOut])
async def list_ivr_menus(tenant_id: int, _: TenantAdmin, session: Session, p: PageParams) -> object:
    rows, total = await service.list_menus(session, tenant_id, limit=p.limit, offset=p.offset)
    return {"items": [service.menu_out(r) for r in rows], "total": total, "limit": p.limit, "offset": p.offset}


@router.get("/tenants/{tenant_id}/ivr-menus/{menu_id}", response_model=s.MenuOut)
async def get_ivr_menu(tenant_id: int, menu_id: int, _: TenantAdmin, session: Session) -> object:
    return service.menu_out(await service.get_menu(session, tenant_id, menu_id))


@router.patch("/tenants/{tenant_id}/ivr-menus/{menu_id}", response_model=s.MenuOut)
async def update_ivr_menu(tenant_id: int, menu_id: int, body: s.MenuUpdate, _: TenantAdmin, session: Session,
                          request: Request) -> object:
    menu = await service.update_menu(session, tenant_id, menu_id, body, prompts_of(request))
    await session.commit()
    return service.menu_out(menu)


@router.delete("/tenants/{tenant_id}/ivr-menus/{menu_id}", status_code=204)
async def delete_ivr_menu(tenant_id: int, menu_id: int, _: TenantAdmin, session: Session, request: Request) -> Response:
    await service.delete_menu(session, tenant_id, menu_id, prompts_of(request))
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/tenants/{tenant_id}/ivr-menus/{menu_id}/greeting", response_model=s.GreetingOut,
            responses={413: {"description": "Larger than the upload limit"},
                       422: {"description": "Not an audio file the server can read"}})
async def put_ivr_greeting(tenant_id: int, menu_id: int, _: TenantAdmin, session: Session, request: Request) -> object:
    data = await request.body()  # bounded by the BodyLimit middleware (413)
    seconds = await service.store_greeting(session, tenant_id, menu_id, data, prompts_of(request))
    await session.commit()
    return s.GreetingOut(seconds=round(seconds, 2))


@router.delete("/tenants/{tenant_id}/ivr-menus/{menu_id}/greeting", status_code=204)
async def delete_ivr_greeting(tenant_id: int, menu_id: int, _: TenantAdmin, session: Session,
                              request: Request) -> Response:
    await service.remove_greeting(session, tenant_id, menu_id, prompts_of(request))
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/tenants/{tenant_id}/ivr-menus/{menu_id}/greeting", response_class=FileResponse)
async def get_ivr_greeting(tenant_id: int, menu_id: int, _: TenantAdmin, session: Session,
                           request: Request) -> FileResponse:
    menu = await service.get_menu(session, tenant_id, menu_id)
    path = await asyncio.to_thread(prompts_of(request).greeting, tenant_id, menu_id, menu.prompt_text, menu.voice,
                                   menu.has_upload)
    if path is None:
        raise HTTPException(404, "this menu has no greeting")
    return FileResponse(path, media_type="audio/wav")
