"""Voicemail mailbox settings in the console: an employee's own mailbox at ``/me/extensions/{id}/mailbox``
(linked from the voicemail section of ``/me``), any extension's for the company's admins at
``/extensions/{id}/mailbox`` (linked from the extensions list; an admin also sets a mailbox up there).

One page: voicemail to e-mail (on/off, the address, WAV or MP3, the recording attached or only a link,
delete the message once mailed), the longest message, the mailbox PIN (asked by ``*97``/``*98``; an
argon2 hash, never shown), and the two greetings (busy, unavailable) with a player for each and an
upload (WAV, MP3, FLAC or Ogg, converted to 8 kHz as an IVR greeting is; a file it cannot read is
refused with a message).

Every change goes through the services behind ``/api/v1/.../voicemail``
(:mod:`zvonok.voicemail.service`): the schema :class:`~zvonok.voicemail.schemas.MailboxIn` checks the
form, a refused one is shown again with its messages (422) and nothing is saved. Whose: as on the rest
of ``/me``, a colleague's extension is a 404; an employee may not create, enable or disable a mailbox
(the admin's); the admin pages are 403 for employees; another company's extension is a 404 for all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.org import service as org_service
from zvonok.org.errors import NotFound, ValidationError
from zvonok.org.models import Extension
from zvonok.voicemail import schemas, service
from zvonok.voicemail.http import files_of
from zvonok.voicemail.models import Mailbox
from zvonok.web.auth import TenantAdminUser, TenantUser, WebUser
from zvonok.web.forms import schema_errors
from zvonok.web.i18n import N_
from zvonok.web.pages.portal import _own_extension
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import page_router

router = page_router()
Session = Annotated[AsyncSession, Depends(get_session)]
ACCEPT = ".wav,.mp3,.flac,.ogg,audio/wav,audio/mpeg,audio/flac,audio/ogg"
KINDS = {"unavailable": N_("When you do not answer"), "busy": N_("When you are on the phone")}
DONE = {
    "saved": N_("Mailbox settings saved."),
    "pin": N_("The mailbox PIN is changed."),
    "uploaded": N_("The greeting is uploaded."),
    "removed": N_("The greeting is removed: callers hear the standard one."),
}
Text = Annotated[str, Form(max_length=300)]


@dataclass(frozen=True)
class Place:
    """Whose page: the employee's own (``/me``) or an admin's of any extension. The extension's values are
    copied: a refused upload rolls the session back, which expires the row."""

    ext_id: int
    number: str
    display_name: str
    employee_id: int | None
    admin: bool

    @classmethod
    def of(cls, ext: Extension, *, admin: bool) -> Place:
        return cls(ext.id, ext.number, ext.display_name, ext.employee_id, admin)

    @property
    def base(self) -> str:
        return f"{'' if self.admin else '/me'}/extensions/{self.ext_id}/mailbox"

    @property
    def back(self) -> str:
        return "/extensions" if self.admin else f"/me#voicemail-{self.ext_id}"


async def _box(session: AsyncSession, tenant_id: int, extension_id: int) -> Mailbox | None:
    try:
        box, _ext = await service.get_mailbox(session, tenant_id, extension_id)
    except NotFound:
        return None
    return box


def _form_of(box: Mailbox | None, default_email: str) -> dict[str, str]:
    if box is None:
        return {
            "enabled": "1",
            "email_on": "1" if default_email else "",
            "email": default_email,
            "attach_format": "wav",
            "email_audio": "attach",
            "delete_after_email": "",
            "max_message_seconds": "180",
        }
    return {
        "enabled": "1" if box.enabled else "",
        "email_on": "1" if box.email else "",
        "email": box.email or default_email,
        "attach_format": box.attach_format,
        "email_audio": box.email_audio,
        "delete_after_email": "1" if box.delete_after_email else "",
        "max_message_seconds": str(box.max_message_seconds),
    }


async def _default_email(session: AsyncSession, tenant_id: int, place: Place) -> str:
    if place.employee_id is None:
        return ""
    employee = await org_service.get_employee(session, tenant_id, place.employee_id)
    return employee.email or ""


async def _page(
    request: Request,
    session: AsyncSession,
    user: WebUser,
    place: Place,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    pin_error: str | None = None,
    greeting_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    _ = gettext_for(request)
    box = await _box(session, user.tenant, place.ext_id)
    done = request.query_params.get("done", "")
    context: dict[str, Any] = {
        "ext": place,
        "box": box,
        "admin": place.admin,
        "base": place.base,
        "back": place.back,
        "form": form or _form_of(box, await _default_email(session, user.tenant, place)),
        "errors": errors or {},
        "pin_error": pin_error,
        "greeting_errors": greeting_errors or {},
        "done": _(DONE[done]) if done in DONE and status_code == 200 else None,
        "kinds": {kind: _(label) for kind, label in KINDS.items()},
        "accept": ACCEPT,
        "max_greeting": int(service.MAX_GREETING_SECONDS),
        "max_upload_mib": service.MAX_GREETING_UPLOAD // (1024 * 1024),
    }
    return render(request, "me/mailbox.html", context, status_code=status_code)


def _current(box: Mailbox) -> dict[str, Any]:
    """The stored settings as :class:`MailboxIn` fields (a PUT replaces them all; the PIN is left out: kept)."""
    return {
        "enabled": box.enabled,
        "email": box.email,
        "attach_format": box.attach_format,
        "email_audio": box.email_audio,
        "delete_after_email": box.delete_after_email,
        "max_message_seconds": box.max_message_seconds,
        "silence_seconds": box.silence_seconds,
    }


def _done(place: Place, what: str) -> Response:
    return RedirectResponse(f"{place.base}?done={what}", status_code=303)


# --- the shared steps ---------------------------------------------------------------------------------
async def _save(
    request: Request, session: AsyncSession, user: WebUser, place: Place, form: dict[str, str]
) -> Response:
    _ = gettext_for(request)
    box = await _box(session, user.tenant, place.ext_id)
    if box is None and not place.admin:
        raise NotFound(f"extension {place.ext_id} has no mailbox")  # an employee does not create one
    errors: dict[str, str] = {}
    email = form["email"].strip() if form["email_on"] else ""
    if form["email_on"] and not email:
        errors["email"] = _("Enter the address to send new messages to, or turn e-mail off.")
    if form["delete_after_email"] and not form["email_on"]:
        errors["delete_after_email"] = _(
            "Messages can only be deleted after e-mailing when they are e-mailed."
        )
    elif form["delete_after_email"] and form["email_audio"] == "link":
        errors["delete_after_email"] = _(
            "A message sent as a link must be kept: attach the recording to delete it."
        )
    fields: dict[str, Any] = {
        **(_current(box) if box is not None else {}),
        "email": email or None,
        "attach_format": form["attach_format"],
        "email_audio": form["email_audio"],
        "delete_after_email": bool(form["delete_after_email"]),
        "max_message_seconds": form["max_message_seconds"] or "0",
    }
    if place.admin:
        fields["enabled"] = bool(form["enabled"])
    if not errors:
        try:
            data = schemas.MailboxIn.model_validate(fields)
        except PydanticValidationError as exc:
            errors = schema_errors(
                exc,
                {
                    "email": _("Not a valid email address."),
                    "attach_format": _("Choose WAV or MP3."),
                    "email_audio": _("Choose to attach the recording or to send a link."),
                    "max_message_seconds": _("Whole seconds from 10 to 600."),
                    "": _("Invalid value."),
                },
                _("Invalid value."),
            )
        else:
            await service.put_mailbox(session, user.tenant, place.ext_id, data)
            await session.commit()
            return _done(place, "saved")
    return await _page(request, session, user, place, form=form, errors=errors, status_code=422)


async def _set_pin(
    request: Request, session: AsyncSession, user: WebUser, place: Place, pin: str, confirm: str
) -> Response:
    _ = gettext_for(request)
    box = await _box(session, user.tenant, place.ext_id)
    if box is None:
        raise NotFound(f"extension {place.ext_id} has no mailbox")
    error = None
    if pin != confirm:
        error = _("The two PINs differ.")
    else:
        try:
            data = schemas.MailboxIn.model_validate({**_current(box), "pin": pin})
        except PydanticValidationError:
            error = _("The mailbox PIN is 4 to 8 digits.")
        else:
            await service.put_mailbox(session, user.tenant, place.ext_id, data)
            await session.commit()
            return _done(place, "pin")
    return await _page(request, session, user, place, pin_error=error, status_code=422)


async def _upload(
    request: Request,
    session: AsyncSession,
    user: WebUser,
    place: Place,
    kind: str,
    greeting: UploadFile | None,
) -> Response:
    _ = gettext_for(request)
    if kind not in KINDS:
        raise NotFound(f"no greeting {kind!r}")
    data = await greeting.read(service.MAX_GREETING_UPLOAD + 1) if greeting is not None else b""
    error = None
    if not data:
        error = _("Choose a sound file to upload.")
    elif len(data) > service.MAX_GREETING_UPLOAD:
        error = _("The file is larger than %(mib)s MiB.") % {
            "mib": service.MAX_GREETING_UPLOAD // (1024 * 1024)
        }
    else:
        try:
            await service.store_greeting(session, files_of(request), user.tenant, place.ext_id, kind, data)
            await session.commit()
        except ValidationError:
            await session.rollback()
            error = _("Not an audio file this server can read: upload a WAV, MP3, FLAC or Ogg Vorbis file.")
        else:
            return _done(place, "uploaded")
    return await _page(request, session, user, place, greeting_errors={kind: error}, status_code=422)


async def _remove(
    request: Request, session: AsyncSession, user: WebUser, place: Place, kind: str
) -> Response:
    await service.store_greeting(session, files_of(request), user.tenant, place.ext_id, kind, None)
    await session.commit()
    return _done(place, "removed")


async def _greeting(
    request: Request, session: AsyncSession, user: WebUser, place: Place, kind: str
) -> Response:
    path = await service.greeting_file(session, files_of(request), user.tenant, place.ext_id, kind)
    return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "private, no-cache"})


def _settings_form(
    enabled: str,
    email_on: str,
    email: str,
    attach_format: str,
    email_audio: str,
    delete_after_email: str,
    max_message_seconds: str,
) -> dict[str, str]:
    return {
        "enabled": "1" if enabled else "",
        "email_on": "1" if email_on else "",
        "email": email.strip(),
        "attach_format": attach_format,
        "email_audio": email_audio,
        "delete_after_email": "1" if delete_after_email else "",
        "max_message_seconds": max_message_seconds.strip(),
    }


Flag = Annotated[str, Form(max_length=8)]
Choice = Annotated[str, Form(max_length=16)]
Pin = Annotated[str, Form(max_length=64)]
Upload = Annotated[UploadFile | None, File()]


async def _mine(session: AsyncSession, user: WebUser, extension_id: int) -> Place:
    return Place.of(await _own_extension(session, user, extension_id), admin=False)


async def _any(session: AsyncSession, user: WebUser, extension_id: int) -> Place:
    return Place.of(await org_service.get_extension(session, user.tenant, extension_id), admin=True)


# --- an employee's own mailbox ------------------------------------------------------------------------
@router.get("/me/extensions/{extension_id}/mailbox")
async def my_mailbox(request: Request, extension_id: int, user: TenantUser, session: Session) -> Response:
    return await _page(request, session, user, await _mine(session, user, extension_id))


@router.post("/me/extensions/{extension_id}/mailbox")
async def save_my_mailbox(
    request: Request,
    extension_id: int,
    user: TenantUser,
    session: Session,
    email_on: Flag = "",
    email: Text = "",
    attach_format: Choice = "wav",
    email_audio: Choice = "attach",
    delete_after_email: Flag = "",
    max_message_seconds: Choice = "",
) -> Response:
    form = _settings_form(
        "", email_on, email, attach_format, email_audio, delete_after_email, max_message_seconds
    )
    return await _save(request, session, user, await _mine(session, user, extension_id), form)


@router.post("/me/extensions/{extension_id}/mailbox/pin")
async def set_my_mailbox_pin(
    request: Request, extension_id: int, user: TenantUser, session: Session, pin: Pin = "", confirm: Pin = ""
) -> Response:
    return await _set_pin(request, session, user, await _mine(session, user, extension_id), pin, confirm)


@router.post("/me/extensions/{extension_id}/mailbox/greetings/{kind}")
async def upload_my_greeting(
    request: Request,
    extension_id: int,
    kind: str,
    user: TenantUser,
    session: Session,
    greeting: Upload = None,
) -> Response:
    return await _upload(request, session, user, await _mine(session, user, extension_id), kind, greeting)


@router.post("/me/extensions/{extension_id}/mailbox/greetings/{kind}/remove")
async def remove_my_greeting(
    request: Request, extension_id: int, kind: str, user: TenantUser, session: Session
) -> Response:
    return await _remove(request, session, user, await _mine(session, user, extension_id), kind)


@router.get("/me/extensions/{extension_id}/mailbox/greetings/{kind}")
async def my_greeting(
    request: Request, extension_id: int, kind: str, user: TenantUser, session: Session
) -> Response:
    return await _greeting(request, session, user, await _mine(session, user, extension_id), kind)


# --- any extension of the company (tenant admins) ---------------------------------------------------
@router.get("/extensions/{extension_id}/mailbox")
async def extension_mailbox(
    request: Request, extension_id: int, user: TenantAdminUser, session: Session
) -> Response:
    return await _page(request, session, user, await _any(session, user, extension_id))


@router.post("/extensions/{extension_id}/mailbox")
async def save_extension_mailbox(
    request: Request,
    extension_id: int,
    user: TenantAdminUser,
    session: Session,
    enabled: Flag = "",
    email_on: Flag = "",
    email: Text = "",
    attach_format: Choice = "wav",
    email_audio: Choice = "attach",
    delete_after_email: Flag = "",
    max_message_seconds: Choice = "",
) -> Response:
    form = _settings_form(
        enabled, email_on, email, attach_format, email_audio, delete_after_email, max_message_seconds
    )
    return await _save(request, session, user, await _any(session, user, extension_id), form)


@router.post("/extensions/{extension_id}/mailbox/pin")
async def set_extension_mailbox_pin(
    request: Request,
    extension_id: int,
    user: TenantAdminUser,
    session: Session,
    pin: Pin = "",
    confirm: Pin = "",
) -> Response:
    return await _set_pin(request, session, user, await _any(session, user, extension_id), pin, confirm)


@router.post("/extensions/{extension_id}/mailbox/greetings/{kind}")
async def upload_extension_greeting(
    request: Request,
    extension_id: int,
    kind: str,
    user: TenantAdminUser,
    session: Session,
    greeting: Upload = None,
) -> Response:
    return await _upload(request, session, user, await _any(session, user, extension_id), kind, greeting)


@router.post("/extensions/{extension_id}/mailbox/greetings/{kind}/remove")
async def remove_extension_greeting(
    request: Request, extension_id: int, kind: str, user: TenantAdminUser, session: Session
) -> Response:
    return await _remove(request, session, user, await _any(session, user, extension_id), kind)


@router.get("/extensions/{extension_id}/mailbox/greetings/{kind}")
async def extension_greeting(
    request: Request, extension_id: int, kind: str, user: TenantAdminUser, session: Session
) -> Response:
    return await _greeting(request, session, user, await _any(session, user, extension_id), kind)
