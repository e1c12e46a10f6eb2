"""Thin REST routes of conference rooms, and their live members (from the running call engine).

``/api/v1/tenants/{tenant_id}/conferences`` (CRUD) and ``.../conferences/{room_id}/members`` (GET),
``.../members/{call_id}/mute`` / ``unmute`` / ``kick`` (POST): all for the tenant's admin; another
tenant's rooms answer 404 like missing ones. Live members come from ``app.state.conferences`` (the call
engine's :class:`~zvonok.telephony.conference.Conferences`, set by the composition root); an API-only
process answers 503 for them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import TenantAdmin
from zvonok.api.deps import Paging, get_session, paging
from zvonok.org.schemas import Page
from zvonok.telephony.conference import Conferences

from . import schemas as s
from . import service

router = APIRouter(prefix="/api/v1", tags=["conferences"])
Session = Annotated[AsyncSession, Depends(get_session)]
PageParams = Annotated[Paging, Depends(paging)]


@router.post("/tenants/{tenant_id}/conferences", response_model=s.RoomOut, status_code=201)
async def create_conference(tenant_id: int, body: s.RoomCreate, _: TenantAdmin, session: Session) -> object:
    room = await service.create_room(session, tenant_id, body)
    await session.commit()
    return service.room_out(room)


@router.get("/tenants/{tenant_id}/conferences", response_model=Page[s.RoomOut])
async def list_conferences(tenant_id: int, _: TenantAdmin, session: Session, p: PageParams) -> object:
    rows, total = await service.list_rooms(session, tenant_id, limit=p.limit, offset=p.offset)
    return {"items": [service.room_out(r) for r in rows], "total": total, "limit": p.limit, "offset": p.offset}


@router.get("/tenants/{tenant_id}/conferences/{room_id}", response_model=s.RoomOut)
async def get_conference(tenant_id: int, room_id: int, _: TenantAdmin, session: Session) -> object:
    return service.room_out(await service.get_room(session, tenant_id, room_id))


@router.patch("/tenants/{tenant_id}/conferences/{room_id}", response_model=s.RoomOut)
async def update_conference(tenant_id: int, room_id: int, body: s.RoomUpdate, _: TenantAdmin, session: Session) -> object:
    room = await service.update_room(session, tenant_id, room_id, body)
    await session.commit()
    return service.room_out(room)


@router.delete("/tenants/{tenant_id}/conferences/{room_id}", status_code=204)
async def delete_conference(tenant_id: int, room_id: int, _: TenantAdmin, session: Session) -> Response:
    await service.delete_room(session, tenant_id, room_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _live(request: Request) -> Conferences:
    live: Conferences | None = getattr(request.app.state, "conferences", None)
    if live is None:
        raise HTTPException(503, "live members unavailable: no call engine runs in this process")
    return live


@router.get("/tenants/{tenant_id}/conferences/{room_id}/members", response_model=list[s.MemberOut])
async def list_conference_members(tenant_id: int, room_id: int, _: TenantAdmin, session: Session, request: Request) -> object:
    await service.get_room(session, tenant_id, room_id)
    return [s.MemberOut(call_id=m.call.id, number=m.number, display_name=m.display_name, moderator=m.moderator,
                        muted=m.muted, waiting=m.waiting, joined_at=m.joined_at)
            for m in _live(request).members(tenant_id, room_id)]


async def _act(request: Request, session: AsyncSession, tenant_id: int, room_id: int, call_id: str,
               action: str) -> Response:
    await service.get_room(session, tenant_id, room_id)
    live = _live(request)
    if not await live.act(tenant_id, room_id, call_id, action):
        raise HTTPException(404, f"member {call_id} not found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/tenants/{tenant_id}/conferences/{room_id}/members/{call_id}/mute", status_code=204)
async def mute_conference_member(tenant_id: int, room_id: int, call_id: str, _: TenantAdmin, session: Session,
               request: Request) -> Response:
    return await _act(request, session, tenant_id, room_id, call_id, "mute")


@router.post("/tenants/{tenant_id}/conferences/{room_id}/members/{call_id}/unmute", status_code=204)
async def unmute_conference_member(tenant_id: int, room_id: int, call_id: str, _: TenantAdmin, session: Session,
                 request: Request) -> Response:
    return await _act(request, session, tenant_id, room_id, call_id, "unmute")


@router.post("/tenants/{tenant_id}/conferences/{room_id}/members/{call_id}/kick", status_code=204)
async def kick_conference_member(tenant_id: int, room_id: int, call_id: str, _: TenantAdmin, session: Session,
               request: Request) -> Response:
    return await _act(request, session, tenant_id, room_id, call_id, "kick")
