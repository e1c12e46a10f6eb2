"""Conference rooms: CRUD in one tenant (the tenant is the first argument after the session), and the
port the call engine reads rooms through (:class:`RoomDirectory`, no SQL in telephony).

Services flush but never commit; each write queues a :class:`~zvonok.conference.events.ConferenceChanged`
delivered after the commit (the engine's room cache forgets the tenant's rooms).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.org import quotas
from zvonok.org.errors import Conflict, ValidationError
from zvonok.org.models import Extension
from zvonok.org.pins import hash_pin_in_thread
from zvonok.org.scope import get_in_tenant, page_in_tenant
from zvonok.org.service import number_claimed
from zvonok.storage.db import Database, emit
from zvonok.telephony.cache import BoundedCache
from zvonok.telephony.conference import RoomInfo

from . import events, schemas
from .models import ConferenceRoom


def room_out(room: ConferenceRoom) -> schemas.RoomOut:
    return schemas.RoomOut(id=room.id, tenant_id=room.tenant_id, number=room.number, name=room.name,
                           has_pin=room.pin_hash is not None, has_moderator_pin=room.moderator_pin_hash is not None,
                           wait_for_moderator=room.wait_for_moderator, max_members=room.max_members)


async def _check_number(session: AsyncSession, tenant_id: int, number: str, room_id: int | None) -> None:
    """A room's number may not be an extension's (the extension would win) nor another room's."""
    ext = (await session.execute(select(Extension.id).where(Extension.tenant_id == tenant_id,
                                                            Extension.number == number))).first()
    if ext is not None:
        raise ValidationError(f"number: {number} is an extension of this tenant", field="number")
    holder = await number_claimed(session, tenant_id, number)
    if holder is not None:
        raise ValidationError(f"number: {number} is already {holder}", field="number")
    other = (await session.execute(select(ConferenceRoom.id).where(
        ConferenceRoom.tenant_id == tenant_id, ConferenceRoom.number == number))).scalar_one_or_none()
    if other is not None and other != room_id:
        raise Conflict(f"number: room {other} already has number {number}", field="number")


async def create_room(session: AsyncSession, tenant_id: int, data: schemas.RoomCreate) -> ConferenceRoom:
    await quotas.check(session, tenant_id, "conference_rooms", ConferenceRoom)
    await _check_number(session, tenant_id, data.number, None)
    room = ConferenceRoom(tenant_id=tenant_id, number=data.number, name=data.name,
                          wait_for_moderator=data.wait_for_moderator, max_members=data.max_members,
                          pin_hash=await hash_pin_in_thread(data.pin) if data.pin else None,
                          moderator_pin_hash=await hash_pin_in_thread(data.moderator_pin)
                          if data.moderator_pin else None)
    session.add(room)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"number: {data.number} is taken", field="number") from None
    emit(session, events.ConferenceChanged(tenant_id=tenant_id, room_id=room.id))
    return room


async def get_room(session: AsyncSession, tenant_id: int, room_id: int) -> ConferenceRoom:
    return await get_in_tenant(session, ConferenceRoom, tenant_id, room_id, "conference")


async def list_rooms(session: AsyncSession, tenant_id: int, *, limit: int, offset: int) -> tuple[list[ConferenceRoom], int]:
    return await page_in_tenant(session, ConferenceRoom, tenant_id, order_by=[ConferenceRoom.number],
                                limit=limit, offset=offset)


async def update_room(session: AsyncSession, tenant_id: int, room_id: int, data: schemas.RoomUpdate) -> ConferenceRoom:
    room = await get_room(session, tenant_id, room_id)
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    for field in ("number", "name", "wait_for_moderator", "max_members"):
        if field in changes and changes[field] is None:
            raise ValidationError(f"{field}: may not be null", field=field)
    if "number" in changes and changes["number"] != room.number:
        await _check_number(session, tenant_id, changes["number"], room.id)
        room.number = changes["number"]
    for field in ("name", "wait_for_moderator", "max_members"):
        if field in changes:
            setattr(room, field, changes[field])
    for field, column in (("pin", "pin_hash"), ("moderator_pin", "moderator_pin_hash")):
        if field in changes:
            value = changes[field]
            setattr(room, column, await hash_pin_in_thread(value) if value else None)
    if "pin" in changes and changes["pin"] is not None and changes["pin"] == changes.get("moderator_pin"):
        raise ValidationError("moderator_pin: must differ from pin", field="moderator_pin")
    if room.wait_for_moderator and room.moderator_pin_hash is None:
        raise ValidationError("wait_for_moderator: needs a moderator_pin", field="wait_for_moderator")
    await session.flush()
    emit(session, events.ConferenceChanged(tenant_id=tenant_id, room_id=room.id))
    return room


async def delete_room(session: AsyncSession, tenant_id: int, room_id: int) -> None:
    room = await get_room(session, tenant_id, room_id)
    await session.delete(room)
    await session.flush()
    emit(session, events.ConferenceChanged(tenant_id=tenant_id, room_id=room_id))


def _info(room: ConferenceRoom) -> RoomInfo:
    return RoomInfo(id=room.id, tenant_id=room.tenant_id, number=room.number, name=room.name,
                    pin_hash=room.pin_hash, moderator_pin_hash=room.moderator_pin_hash,
                    wait_for_moderator=room.wait_for_moderator, max_members=room.max_members)


class RoomDirectory:
    """The call engine's port to the rooms: looked up by dialed number, cached (bounded, misses apart: a
    caller chooses what is dialed) until a :class:`ConferenceChanged` for the tenant or ``ttl``."""

    def __init__(self, db: Database, ttl: float = 30.0) -> None:
        self.db = db
        self._rooms: BoundedCache[tuple[int, str], RoomInfo] = BoundedCache(
            ttl=ttl, negative_ttl=ttl, max_entries=10_000, max_misses=10_000)

    async def room(self, tenant_id: int, number: str) -> RoomInfo | None:
        found, cached = self._rooms.get((tenant_id, number))
        if found:
            return cached
        async with self.db.session() as session:
            row = (await session.execute(select(ConferenceRoom).where(
                ConferenceRoom.tenant_id == tenant_id, ConferenceRoom.number == number))).scalar_one_or_none()
        info = _info(row) if row is not None else None
        self._rooms.put((tenant_id, number), info)
        return info

    async def room_by_id(self, tenant_id: int, room_id: int) -> RoomInfo | None:
        async with self.db.session() as session:
            row = (await session.execute(select(ConferenceRoom).where(
                ConferenceRoom.tenant_id == tenant_id, ConferenceRoom.id == room_id))).scalar_one_or_none()
        return _info(row) if row is not None else None

    def on_event(self, event: object) -> None:
        if isinstance(event, events.ConferenceChanged):
            tenant = event.tenant_id
            self._rooms.discard_where(lambda key, _info: key[0] == tenant)
