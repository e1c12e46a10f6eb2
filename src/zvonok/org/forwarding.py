"""An extension's call forwarding and DND: read, validate, change (the API and the feature codes).

A target is stored in the form the call engine uses: an extension number of the tenant as it is, an
outside number in E.164 (normalized by the dialing plan of the extension's office, so "8 495 …" and a
local number are accepted as a person dials them), a mailbox as ``voicemail:<extension number>``
(``voicemail`` alone: the extension's own; the mailbox must exist). An emergency number, the extension itself, or a
string that is neither is refused (422 naming the field). Like the other services this flushes and
queues its event (:class:`~zvonok.org.events.ForwardingChanged`); the caller commits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.dialing import DestinationClass, InvalidNumber, normalize, russian_plan
from zvonok.org import events
from zvonok.org.errors import ValidationError
from zvonok.org.models import Employee, Extension, Office
from zvonok.org.scope import get_in_tenant
from zvonok.storage.db import Database, emit
from zvonok.voicemail.models import Mailbox

VOICEMAIL_PREFIX = "voicemail:"  # as telephony.forwarding.VOICEMAIL_TARGET: the engine reads what is stored here

Target = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
TARGETS = ("unconditional", "busy", "no_answer", "unavailable")


class ForwardingIn(BaseModel):
    """The whole forwarding of an extension (PUT replaces it; a target left out is no forwarding)."""

    model_config = ConfigDict(extra="forbid")
    dnd: bool = False
    unconditional: Target | None = Field(default=None, description="CFU: every call goes here")
    busy: Target | None = Field(default=None, description="CFB: when busy (or DND)")
    no_answer: Target | None = Field(default=None, description="CFNA: after no_answer_seconds of ringing")
    no_answer_seconds: int = Field(default=20, ge=5, le=300)
    unavailable: Target | None = Field(default=None, description="when no device is registered")


class ForwardingOut(BaseModel):
    extension_id: int
    number: str
    dnd: bool
    unconditional: str | None
    busy: str | None
    no_answer: str | None
    no_answer_seconds: int
    unavailable: str | None


def settings_of(ext: Extension) -> ForwardingOut:
    return ForwardingOut(extension_id=ext.id, number=ext.number, dnd=bool(ext.dnd),
                         unconditional=ext.forward_unconditional, busy=ext.forward_busy,
                         no_answer=ext.forward_no_answer, no_answer_seconds=ext.forward_no_answer_seconds or 20,
                         unavailable=ext.forward_unavailable)


async def _area_code(session: AsyncSession, ext: Extension) -> str | None:
    office_id = ext.office_id
    if office_id is None and ext.employee_id is not None:
        office_id = (await session.execute(select(Employee.office_id).where(
            Employee.tenant_id == ext.tenant_id, Employee.id == ext.employee_id))).scalar_one_or_none()
    if office_id is None:
        return None
    return (await session.execute(select(Office.area_code).where(
        Office.tenant_id == ext.tenant_id, Office.id == office_id))).scalar_one_or_none()


async def normalize_target(session: AsyncSession, ext: Extension, number: str, field: str) -> str:
    """``number`` as stored: an extension of the tenant, else an outside number in E.164."""
    if number == "voicemail" or number.startswith(VOICEMAIL_PREFIX):
        box = ext.number if number == "voicemail" else number.removeprefix(VOICEMAIL_PREFIX)
        found = (await session.execute(select(Mailbox.id).join(Extension, Extension.id == Mailbox.extension_id).where(
            Mailbox.tenant_id == ext.tenant_id, Extension.tenant_id == ext.tenant_id,
            Extension.number == box))).scalar_one_or_none()
        if found is None:
            raise ValidationError(f"{field}: extension {box} has no mailbox", field=field)
        return f"{VOICEMAIL_PREFIX}{box}"
    if number == ext.number:
        raise ValidationError(f"{field}: an extension cannot forward to itself", field=field)
    other = (await session.execute(select(Extension.id).where(
        Extension.tenant_id == ext.tenant_id, Extension.number == number))).scalar_one_or_none()
    if other is not None:
        return number
    area = await _area_code(session, ext)
    try:
        plan = russian_plan(area)
    except ValueError:
        plan = russian_plan(None)
    try:
        dest = normalize(number, plan)
    except InvalidNumber as exc:
        raise ValidationError(f"{field}: {number!r} is no extension of the company and no valid outside number "
                              f"({exc})", field=field) from None
    if dest.klass in (DestinationClass.INTERNAL, DestinationClass.EMERGENCY):
        raise ValidationError(f"{field}: calls cannot be forwarded to {number!r}", field=field)
    return dest.number


async def get_forwarding(session: AsyncSession, tenant_id: int, extension_id: int) -> ForwardingOut:
    return settings_of(await get_in_tenant(session, Extension, tenant_id, extension_id, "extension"))


async def change_forwarding(session: AsyncSession, tenant_id: int, extension_id: int,
                            changes: dict[str, Any]) -> ForwardingOut:
    """Apply ``changes`` (keys of :class:`ForwardingIn`; a target None clears it) and queue the event."""
    ext = await get_in_tenant(session, Extension, tenant_id, extension_id, "extension")
    for key, value in changes.items():
        if key in TARGETS:
            target = await normalize_target(session, ext, str(value), key) if value else None
            setattr(ext, f"forward_{key}", target)
        elif key == "dnd":
            ext.dnd = bool(value)
        elif key == "no_answer_seconds":
            ext.forward_no_answer_seconds = int(value)
        else:
            raise ValidationError(f"{key}: no such forwarding setting", field=key)
    await session.flush()
    out = settings_of(ext)
    emit(session, events.ForwardingChanged(
        tenant_id=tenant_id, extension_id=ext.id, number=ext.number, employee_id=ext.employee_id, dnd=out.dnd,
        unconditional=out.unconditional, busy=out.busy, no_answer=out.no_answer,
        no_answer_seconds=out.no_answer_seconds, unavailable=out.unavailable))
    return out


async def put_forwarding(session: AsyncSession, tenant_id: int, extension_id: int, data: ForwardingIn) -> ForwardingOut:
    return await change_forwarding(session, tenant_id, extension_id, data.model_dump())


async def change_by_number(session: AsyncSession, tenant_id: int, number: str,
                           changes: dict[str, Any]) -> ForwardingOut | None:
    """The feature codes' way in: the phone's own extension by its number (None if it is gone)."""
    ext_id = (await session.execute(select(Extension.id).where(
        Extension.tenant_id == tenant_id, Extension.number == number))).scalar_one_or_none()
    if ext_id is None:
        return None
    return await change_forwarding(session, tenant_id, ext_id, changes)


def forwarding_store(db: Database) -> Callable[[int, str, dict[str, Any]], Awaitable[bool]]:
    """The call engine's port for the feature codes (telephony/call_forward.py): change an extension's
    settings by its number and commit; False if it is gone, ValueError for an invalid target."""

    async def store(tenant_id: int, number: str, changes: dict[str, Any]) -> bool:
        async with db.session() as session:
            try:
                out = await change_by_number(session, tenant_id, number, changes)
            except ValidationError as exc:
                raise ValueError(exc.message) from None
            await session.commit()
            return out is not None

    return store
