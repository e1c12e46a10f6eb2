"""Thin REST routes of voicemail.

Mailbox settings: ``/api/v1/tenants/{tenant_id}/extensions/{extension_id}/voicemail`` (GET, PUT, DELETE)
and its greetings ``.../voicemail/greetings/{busy|unavailable}`` (PUT the raw audio as the body: WAV, MP3,
FLAC or Ogg, converted to 8 kHz; GET: the greeting as the caller hears it, a WAV; DELETE: back to the
built-in greeting). Messages:
``/api/v1/tenants/{tenant_id}/voicemail/messages`` (GET, ``?extension_id=``), ``.../messages/{id}``
(GET, PATCH read/folder, DELETE) and ``.../messages/{id}/audio`` (the WAV). The company's own SMTP
server for voicemail e-mails: ``/api/v1/tenants/{tenant_id}/voicemail/smtp`` (admin; password write-only).

A tenant admin reaches every mailbox of the tenant; an employee only the mailboxes of their own
extensions (another's answers 404 like a missing one, as another tenant's does).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import FileResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import Principal, TenantAdmin, TenantReader
from zvonok.api.deps import Paging, get_session, paging
from zvonok.config import Settings
from zvonok.org.errors import NotFound
from zvonok.org.models import Extension
from zvonok.org.schemas import Page

from . import schemas as s
from . import service
from .models import TenantSmtp

router = APIRouter(prefix="/api/v1", tags=["voicemail"])
Session = Annotated[AsyncSession, Depends(get_session)]
PageParams = Annotated[Paging, Depends(paging)]
# greetings are audio uploads: zvonok.api.limits.BodyLimit gives them http_max_upload
UPLOAD = ("PUT", "/api/v1/tenants/[^/]+/extensions/[^/]+/voicemail/greetings/[^/]+")


def files_of(request: Request) -> service.VoicemailFiles:
    settings: Settings = request.app.state.settings
    return service.VoicemailFiles((settings.data_dir / "voicemail").resolve())


async def own_extensions(session: AsyncSession, principal: Principal, tenant_id: int) -> list[int] | None:
    """The extensions whose mailboxes ``principal`` may use: None (all) for an admin of the tenant."""
    if principal.may_administer(tenant_id):
        return None
    if principal.employee_id is None:
        return []
    return list((await session.execute(select(Extension.id).where(
        Extension.tenant_id == tenant_id, Extension.employee_id == principal.employee_id))).scalars())


async def _check_extension(session: AsyncSession, principal: Principal, tenant_id: int, extension_id: int) -> None:
    allowed = await own_extensions(session, principal, tenant_id)
    if allowed is not None and extension_id not in allowed:
        raise NotFound(f"extension {extension_id} not found")


# -- mailbox settings -------------------------------------------------------------------------------------
@router.get("/tenants/{tenant_id}/extensions/{extension_id}/voicemail", response_model=s.MailboxOut)
async def get_mailbox(tenant_id: int, extension_id: int, principal: TenantReader, session: Session) -> object:
    await _check_extension(session, principal, tenant_id, extension_id)
    box, ext = await service.get_mailbox(session, tenant_id, extension_id)
    return await service.mailbox_out(session, box, ext.number)


@router.put("/tenants/{tenant_id}/extensions/{extension_id}/voicemail", response_model=s.MailboxOut)
async def put_mailbox(tenant_id: int, extension_id: int, body: s.MailboxIn, principal: TenantReader,
                      session: Session) -> object:
    """An admin sets up any mailbox; an employee changes their own (PIN, e-mail, limits) once it exists."""
    await _check_extension(session, principal, tenant_id, extension_id)
    if not principal.may_administer(tenant_id):
        await service.get_mailbox(session, tenant_id, extension_id)  # an employee does not create one
    box, ext = await service.put_mailbox(session, tenant_id, extension_id, body)
    await session.commit()
    return await service.mailbox_out(session, box, ext.number)


@router.delete("/tenants/{tenant_id}/extensions/{extension_id}/voicemail", status_code=204)
async def delete_mailbox(tenant_id: int, extension_id: int, _: TenantAdmin, session: Session,
                         request: Request) -> Response:
    """Admins only (an employee's own mailbox is theirs to use and set, not to remove: 403)."""
    directory = await service.delete_mailbox(session, files_of(request), tenant_id, extension_id)
    await session.commit()
    await asyncio.to_thread(service.remove_tree, directory)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/tenants/{tenant_id}/extensions/{extension_id}/voicemail/greetings/{kind}",
            response_model=s.MailboxOut, responses={422: {"description": "Not an audio file the server can read"}})
async def put_greeting(tenant_id: int, extension_id: int, kind: str, principal: TenantReader, session: Session,
                       request: Request) -> object:
    await _check_extension(session, principal, tenant_id, extension_id)
    box = await service.store_greeting(session, files_of(request), tenant_id, extension_id, kind,
                                       await request.body())
    await session.commit()
    _box, ext = await service.get_mailbox(session, tenant_id, extension_id)
    return await service.mailbox_out(session, box, ext.number)


@router.get("/tenants/{tenant_id}/extensions/{extension_id}/voicemail/greetings/{kind}", response_class=FileResponse)
async def get_greeting(tenant_id: int, extension_id: int, kind: str, principal: TenantReader, session: Session,
                       request: Request) -> FileResponse:
    await _check_extension(session, principal, tenant_id, extension_id)
    path = await service.greeting_file(session, files_of(request), tenant_id, extension_id, kind)
    return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "private, no-cache"})


@router.delete("/tenants/{tenant_id}/extensions/{extension_id}/voicemail/greetings/{kind}", status_code=204)
async def delete_greeting(tenant_id: int, extension_id: int, kind: str, principal: TenantReader, session: Session,
                          request: Request) -> Response:
    await _check_extension(session, principal, tenant_id, extension_id)
    await service.store_greeting(session, files_of(request), tenant_id, extension_id, kind, None)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- messages ---------------------------------------------------------------------------------------------
@router.get("/tenants/{tenant_id}/voicemail/messages", response_model=Page[s.MessageOut])
async def list_messages(tenant_id: int, principal: TenantReader, session: Session, p: PageParams,
                        extension_id: int | None = None) -> object:
    allowed = await own_extensions(session, principal, tenant_id)
    scope: list[int] | None = allowed
    if extension_id is not None:
        scope = [extension_id] if allowed is None or extension_id in allowed else []
    rows, total = await service.list_messages(session, tenant_id, extension_ids=scope, limit=p.limit,
                                              offset=p.offset)
    return {"items": [service.message_out(m, n) for m, n in rows], "total": total, "limit": p.limit,
            "offset": p.offset}


@router.get("/tenants/{tenant_id}/voicemail/messages/{message_id}", response_model=s.MessageOut)
async def get_message(tenant_id: int, message_id: int, principal: TenantReader, session: Session) -> object:
    scope = await own_extensions(session, principal, tenant_id)
    msg, _box, number = await service.get_message(session, tenant_id, message_id, extension_ids=scope)
    return service.message_out(msg, number)


@router.get("/tenants/{tenant_id}/voicemail/messages/{message_id}/audio", response_class=FileResponse)
async def get_message_audio(tenant_id: int, message_id: int, principal: TenantReader, session: Session,
                            request: Request) -> FileResponse:
    scope = await own_extensions(session, principal, tenant_id)
    msg, _box, _number = await service.get_message(session, tenant_id, message_id, extension_ids=scope)
    path = files_of(request).message(msg.path)
    if not path.is_file():
        raise NotFound(f"message {message_id} has no audio")
    return FileResponse(path, media_type="audio/wav", filename=f"voicemail-{message_id}.wav")


@router.patch("/tenants/{tenant_id}/voicemail/messages/{message_id}", response_model=s.MessageOut)
async def patch_message(tenant_id: int, message_id: int, body: s.MessagePatch, principal: TenantReader,
                        session: Session) -> object:
    scope = await own_extensions(session, principal, tenant_id)
    msg, number = await service.update_message(session, tenant_id, message_id, read=body.read, folder=body.folder,
                                               extension_ids=scope)
    await session.commit()
    return service.message_out(msg, number)


@router.delete("/tenants/{tenant_id}/voicemail/messages/{message_id}", status_code=204)
async def delete_message(tenant_id: int, message_id: int, principal: TenantReader, session: Session,
                         request: Request) -> Response:
    scope = await own_extensions(session, principal, tenant_id)
    path = await service.delete_message(session, files_of(request), tenant_id, message_id, extension_ids=scope)
    await session.commit()
    await asyncio.to_thread(path.unlink, True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- the company's own SMTP server (voicemail to e-mail) ------------------------------------------------
def _smtp_out(row: TenantSmtp) -> s.SmtpOut:
    return s.SmtpOut(host=row.host, port=row.port, username=row.username, has_password=row.password is not None,
                     security=row.security, sender=row.sender)


async def _smtp_row(session: AsyncSession, tenant_id: int) -> TenantSmtp | None:
    return (await session.execute(select(TenantSmtp).where(TenantSmtp.tenant_id == tenant_id))).scalar_one_or_none()


@router.get("/tenants/{tenant_id}/voicemail/smtp", response_model=s.SmtpOut)
async def get_smtp(tenant_id: int, _: TenantAdmin, session: Session) -> object:
    row = await _smtp_row(session, tenant_id)
    if row is None:
        raise NotFound("no SMTP server of the company's own: the platform's is used")
    return _smtp_out(row)


@router.put("/tenants/{tenant_id}/voicemail/smtp", response_model=s.SmtpOut)
async def put_smtp(tenant_id: int, body: s.SmtpIn, _: TenantAdmin, session: Session) -> object:
    row = await _smtp_row(session, tenant_id)
    if row is None:
        row = TenantSmtp(tenant_id=tenant_id)
        session.add(row)
    row.host, row.port, row.username = body.host, body.port, body.username
    row.security, row.sender = body.security, body.sender
    if "password" in body.model_fields_set:
        row.password = body.password
    await session.commit()
    return _smtp_out(row)


@router.delete("/tenants/{tenant_id}/voicemail/smtp", status_code=204)
async def delete_smtp(tenant_id: int, _: TenantAdmin, session: Session) -> Response:
    row = await _smtp_row(session, tenant_id)
    if row is not None:
        await session.delete(row)
        await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
