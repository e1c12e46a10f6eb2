"""IVR voice menus (tenant admins): the list, a new menu, and one menu's form — greeting (text spoken by
espeak-ng, or an uploaded file), keys and where each leads, timeouts, retries, the repeat key, direct dial.

The same service as ``/api/v1/tenants/{id}/ivr-menus`` (:mod:`zvonok.ivr.service`): its validation is the
page's (an unknown extension, a menu cycle on timeouts...) and its message is shown above the form (422).
A destination is a kind and one text field: an extension's number, the numbers of a ring list separated
by commas, a conference room, an outside number, or a menu's id. The upload's BodyLimit entry
(``POST /ivr/{id}/greeting``) is in :mod:`zvonok.api.app`.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Depends, File, Request, UploadFile
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.config import Settings
from zvonok.destination import MENU_KINDS
from zvonok.ivr import schemas, service
from zvonok.ivr.prompts import IvrPrompts
from zvonok.media.hold_music import MAX_UPLOAD
from zvonok.org.errors import OrgError
from zvonok.web.auth import TenantAdminUser
from zvonok.web.i18n import N_
from zvonok.web.pages.destination_form import choices, from_form, to_form
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import ADMIN, NavItem, page_router

router = page_router()
NAV = [NavItem("/ivr", N_("Voice menus"), ADMIN, order=54)]
Session = Annotated[AsyncSession, Depends(get_session)]
KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "*", "#")
KINDS = choices(MENU_KINDS, empty=N_("Nothing"))
ACCEPT = ".wav,.mp3,.flac,.ogg,audio/wav,audio/mpeg,audio/flac,audio/ogg"


def prompts_of(request: Request) -> IvrPrompts:
    settings: Settings = request.app.state.settings
    return IvrPrompts(settings.data_dir / "ivr")


async def _list(request: Request, user: TenantAdminUser, session: AsyncSession, *, error: str | None = None,
                status_code: int = 200) -> Response:
    rows, total = await service.list_menus(session, user.tenant, limit=service.max_menus(), offset=0)
    return render(request, "ivr/index.html", {"rows": rows, "total": total, "error": error}, status_code=status_code)


@router.get("/ivr")
async def menus(request: Request, user: TenantAdminUser, session: Session) -> Response:
    return await _list(request, user, session)


@router.post("/ivr")
async def create(request: Request, user: TenantAdminUser, session: Session) -> Response:
    form = await request.form()
    try:
        data = schemas.MenuCreate(name=str(form.get("name", "")).strip(),
                                  prompt_text=str(form.get("prompt_text", "")).strip() or None,
                                  voice="en" if form.get("voice") == "en" else "ru")
        menu = await service.create_menu(session, user.tenant, data, prompts_of(request))
        await session.commit()
    except (OrgError, ValueError) as exc:
        await session.rollback()
        return await _list(request, user, session, error=getattr(exc, "message", str(exc)), status_code=422)
    return RedirectResponse(f"/ivr/{menu.id}?done=created", status_code=303)


async def _edit(request: Request, user: TenantAdminUser, session: AsyncSession, menu_id: int, *,
                error: str | None = None, status_code: int = 200, done: str | None = None) -> Response:
    menu = await service.get_menu(session, user.tenant, menu_id)
    others, _total = await service.list_menus(session, user.tenant, limit=service.max_menus(), offset=0)
    keys = {key: to_form(menu.keys.get(key)) for key in KEYS}
    return render(request, "ivr/edit.html", {
        "menu": menu, "keys": keys, "kinds": KINDS, "others": [m for m in others if m.id != menu.id],
        "timeout_target": to_form(menu.timeout_destination),
        "invalid_target": to_form(menu.invalid_destination), "accept": ACCEPT, "error": error, "done": done,
        "max_mib": MAX_UPLOAD // (1024 * 1024)}, status_code=status_code)


@router.get("/ivr/{menu_id}")
async def edit(request: Request, menu_id: int, user: TenantAdminUser, session: Session,
               done: str | None = None) -> Response:
    _ = gettext_for(request)
    notice = {"created": _("The menu is created."), "saved": _("The menu is saved."),
              "uploaded": _("The greeting is uploaded."), "removed": _("The uploaded greeting is removed.")}
    return await _edit(request, user, session, menu_id, done=notice.get(done or ""))


def _int(value: Any, default: int) -> int:
    text = str(value or "").strip()
    return int(text) if text.isdigit() else default


@router.post("/ivr/{menu_id}")
async def save(request: Request, menu_id: int, user: TenantAdminUser, session: Session) -> Response:
    await service.get_menu(session, user.tenant, menu_id)  # another company's: 404
    form = await request.form()
    keys = {key: t for key in KEYS
            if (t := from_form(str(form.get(f"kind_{key}", "")), str(form.get(f"target_{key}", "")))) is not None}
    repeat = str(form.get("repeat_key", "")).strip()
    try:
        data = schemas.MenuUpdate(
            name=str(form.get("name", "")).strip(), prompt_text=str(form.get("prompt_text", "")).strip() or None,
            voice="en" if form.get("voice") == "en" else "ru", keys=keys,  # type: ignore[arg-type]
            direct_dial=form.get("direct_dial") == "on", timeout=_int(form.get("timeout"), 5),
            digit_timeout=_int(form.get("digit_timeout"), 3), retries=_int(form.get("retries"), 2),
            repeat_key=repeat or None,  # type: ignore[arg-type]
            timeout_destination=from_form(str(form.get("timeout_kind", "")), str(form.get("timeout_target", ""))),
            invalid_destination=from_form(str(form.get("invalid_kind", "")), str(form.get("invalid_target", ""))))
        await service.update_menu(session, user.tenant, menu_id, data, prompts_of(request))
        await session.commit()
    except (OrgError, ValueError) as exc:
        await session.rollback()
        return await _edit(request, user, session, menu_id, error=getattr(exc, "message", str(exc)), status_code=422)
    return RedirectResponse(f"/ivr/{menu_id}?done=saved", status_code=303)


@router.post("/ivr/{menu_id}/delete")
async def delete(request: Request, menu_id: int, user: TenantAdminUser, session: Session) -> Response:
    try:
        await service.delete_menu(session, user.tenant, menu_id, prompts_of(request))
        await session.commit()
    except OrgError as exc:
        if exc.status == 404:
            raise
        await session.rollback()
        return await _edit(request, user, session, menu_id, error=exc.message, status_code=exc.status)
    return RedirectResponse("/ivr", status_code=303)


@router.post("/ivr/{menu_id}/greeting")
async def upload_greeting(request: Request, menu_id: int, user: TenantAdminUser, session: Session,
                          greeting: Annotated[UploadFile | None, File()] = None) -> Response:
    _ = gettext_for(request)
    data = await greeting.read(MAX_UPLOAD + 1) if greeting is not None else b""
    if len(data) > MAX_UPLOAD:
        return await _edit(request, user, session, menu_id, status_code=422,
                           error=str(_("The file is larger than %(mib)s MiB.")) % {"mib": MAX_UPLOAD // (1024 * 1024)})
    try:
        await service.store_greeting(session, user.tenant, menu_id, data, prompts_of(request))
        await session.commit()
    except OrgError as exc:
        if exc.status == 404:
            raise
        await session.rollback()
        return await _edit(request, user, session, menu_id, status_code=422, error=str(
            _("Not an audio file this server can read: upload a WAV, MP3, FLAC or Ogg Vorbis file.")))
    return RedirectResponse(f"/ivr/{menu_id}?done=uploaded", status_code=303)


@router.post("/ivr/{menu_id}/greeting/remove")
async def remove_greeting(request: Request, menu_id: int, user: TenantAdminUser, session: Session) -> Response:
    await service.remove_greeting(session, user.tenant, menu_id, prompts_of(request))
    await session.commit()
    return RedirectResponse(f"/ivr/{menu_id}?done=removed", status_code=303)


@router.get("/ivr/{menu_id}/greeting", response_class=FileResponse)
async def greeting_audio(request: Request, menu_id: int, user: TenantAdminUser, session: Session) -> Response:
    menu = await service.get_menu(session, user.tenant, menu_id)
    path = await asyncio.to_thread(prompts_of(request).greeting, user.tenant, menu_id, menu.prompt_text, menu.voice,
                                   menu.has_upload)
    if path is None:
        return Response(status_code=404)
    return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "private, no-cache"})
