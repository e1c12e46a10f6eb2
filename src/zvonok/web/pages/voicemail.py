"""Voicemail on the employee portal (``/me``): the messages of my extensions' mailboxes, listened to in
the page (an ``<audio>`` player on ``/me/voicemail/{id}/audio``) and deleted with a button.

Whose: the login's employee; a colleague's message, or another company's, is a 404 like a missing one.
The list itself is part of ``/me`` (:mod:`zvonok.web.pages.portal` asks :func:`my_voicemail`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.org.errors import NotFound
from zvonok.org.models import Extension
from zvonok.voicemail import service
from zvonok.voicemail.http import files_of
from zvonok.voicemail.models import Mailbox
from zvonok.web.auth import TenantUser, WebUser
from zvonok.web.routing import page_router

router = page_router()
MAX_LISTED = 50  # per mailbox on the page; the API pages through the rest


async def _mine(session: AsyncSession, user: WebUser) -> list[int]:
    if user.employee_id is None:
        raise HTTPException(404, "this login is not an employee's")
    return list((await session.execute(select(Extension.id).where(
        Extension.tenant_id == user.tenant, Extension.employee_id == user.employee_id))).scalars())


async def my_voicemail(session: AsyncSession, tenant_id: int, extension_id: int) -> dict[str, Any] | None:
    """The mailbox of one of my extensions for the page (None without one): counts and recent messages."""
    has_box = (await session.execute(select(Mailbox.id).where(
        Mailbox.tenant_id == tenant_id, Mailbox.extension_id == extension_id))).scalar_one_or_none()
    if has_box is None:
        return None
    rows, total = await service.list_messages(session, tenant_id, extension_ids=[extension_id], limit=MAX_LISTED,
                                              offset=0)
    return {"messages": [m for m, _n in rows], "total": total, "new": sum(1 for m, _n in rows if not m.read)}


@router.get("/me/voicemail/{message_id}/audio")
async def my_message_audio(request: Request, message_id: int, user: TenantUser,
                           session: Annotated[AsyncSession, Depends(get_session)]) -> Response:
    msg, _box, _number = await service.get_message(session, user.tenant, message_id,
                                                   extension_ids=await _mine(session, user))
    path = files_of(request).message(msg.path)
    if not path.is_file():
        raise NotFound(f"message {message_id} has no audio")
    return FileResponse(path, media_type="audio/wav")


@router.post("/me/voicemail/{message_id}/delete")
async def delete_my_message(request: Request, message_id: int, user: TenantUser,
                            session: Annotated[AsyncSession, Depends(get_session)]) -> Response:
    path = await service.delete_message(session, files_of(request), user.tenant, message_id,
                                        extension_ids=await _mine(session, user))
    await session.commit()
    await asyncio.to_thread(path.unlink, True)
    return RedirectResponse("/me?voicemail_deleted=1#voicemail", status_code=303)
