"""The company's mail settings (tenant admins): the SMTP server its e-mails go out through (voicemail, fax,
the CRM's e-mails and answers) and the IMAP mailbox the CRM reads clients' replies from, with a "Test
connection" that logs in to the stored mailbox (:func:`zvonok.crm.mail.test_imap`).

Passwords are write-only: the page says whether one is set, an empty field keeps it. The same services
as the REST routes (``/voicemail/smtp``, ``/crm/imap``) do the work, so the rules are the same; the IMAP
poller reads the settings at each poll and is woken by the change (no restart).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.crm import mail as crm_mail
from zvonok.crm import schemas as crm_schemas
from zvonok.crm.models import CrmImap
from zvonok.mail import settings as smtp_settings
from zvonok.mail.models import TenantSmtp
from zvonok.org.errors import Conflict
from zvonok.voicemail.schemas import SmtpIn
from zvonok.web.auth import TenantAdminUser
from zvonok.web.forms import schema_errors
from zvonok.web.i18n import N_
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import ADMIN, NavItem, page_router

router = page_router()
NAV = [NavItem("/settings/mail", N_("Mail"), ADMIN, order=61)]
Session = Annotated[AsyncSession, Depends(get_session)]
SECURITY = {"none": N_("None (plain)"), "starttls": N_("STARTTLS"), "tls": N_("TLS (implicit)")}
DONE = {"smtp": N_("The SMTP server is saved."), "smtp_removed": N_("The platform's SMTP server is used again."),
        "imap": N_("The IMAP mailbox is saved: it is read from now on."),
        "imap_removed": N_("The IMAP mailbox is removed: replies are no longer fetched.")}


def _smtp_form(row: TenantSmtp | None) -> dict[str, Any]:
    if row is None:
        return {"host": "", "port": "587", "security": "starttls", "username": "", "sender": "", "has_password": False}
    return {"host": row.host, "port": str(row.port), "security": row.security, "username": row.username or "",
            "sender": row.sender, "has_password": row.password is not None}


def _imap_form(row: CrmImap | None) -> dict[str, Any]:
    if row is None:
        return {"host": "", "port": "993", "security": "tls", "username": "", "folder": "INBOX", "poll_seconds": "",
                "enabled": True, "has_password": False}
    return {"host": row.host, "port": str(row.port), "security": row.security, "username": row.username,
            "folder": row.folder, "poll_seconds": str(row.poll_seconds or ""), "enabled": row.enabled,
            "has_password": bool(row.password)}


async def _page(request: Request, session: AsyncSession, tenant_id: int, *, smtp: dict[str, Any] | None = None,
                imap: dict[str, Any] | None = None, smtp_errors: dict[str, str] | None = None,
                imap_errors: dict[str, str] | None = None, test: crm_schemas.ImapTestOut | None = None,
                status_code: int = 200) -> Response:
    smtp_row = await smtp_settings.smtp_row(session, tenant_id)
    imap_row = await crm_mail.find_imap(session, tenant_id)
    done = request.query_params.get("saved", "")
    return render(request, "settings/mail.html", {
        "smtp": smtp or _smtp_form(smtp_row), "imap": imap or _imap_form(imap_row), "has_smtp": smtp_row is not None,
        "has_imap": imap_row is not None, "imap_state": crm_mail.imap_out(imap_row) if imap_row else None,
        "smtp_errors": smtp_errors or {}, "imap_errors": imap_errors or {}, "test": test,
        "done": DONE.get(done), "security": SECURITY}, status_code=status_code)


@router.get("/settings/mail")
async def mail_settings(request: Request, user: TenantAdminUser, session: Session) -> Response:
    return await _page(request, session, user.tenant)


def _port(value: str) -> int | str:
    value = value.strip()
    return int(value) if value.isdigit() and len(value) <= 6 else value


@router.post("/settings/mail/smtp")
async def save_smtp(request: Request, user: TenantAdminUser, session: Session,
                    host: Annotated[str, Form(max_length=300)] = "", port: Annotated[str, Form(max_length=10)] = "",
                    security: Annotated[str, Form(max_length=10)] = "",
                    username: Annotated[str, Form(max_length=300)] = "",
                    password: Annotated[str, Form(max_length=300)] = "",
                    clear_password: Annotated[str, Form(max_length=5)] = "",
                    sender: Annotated[str, Form(max_length=300)] = "") -> Response:
    _ = gettext_for(request)
    row = await smtp_settings.smtp_row(session, user.tenant)
    form = {"host": host, "port": port, "security": security, "username": username, "sender": sender,
            "has_password": row is not None and row.password is not None}
    try:
        body = SmtpIn(host=host, port=_port(port), security=security, username=username or None,  # type: ignore[arg-type]
                      password=password or None, sender=sender.strip())
    except PydanticValidationError as exc:
        errors = schema_errors(exc, {
            "host": _("A host name or an IP address, without spaces."), "port": _("A port from 1 to 65535."),
            "security": _("Choose from the list."), "sender": _("An e-mail address such as name@example.com."),
            "username": _("At most 254 characters, without line breaks or control characters."),
            "password": _("At most 254 characters, without line breaks or control characters.")}, _("Invalid value."))
        return await _page(request, session, user.tenant, smtp=form, smtp_errors=errors, status_code=422)
    await smtp_settings.put_smtp(session, user.tenant, body, keep_password=not password and clear_password != "1")
    await session.commit()
    return RedirectResponse("/settings/mail?saved=smtp#smtp", status_code=303)


@router.post("/settings/mail/smtp/remove")
async def remove_smtp(user: TenantAdminUser, session: Session) -> Response:
    await smtp_settings.delete_smtp(session, user.tenant)
    await session.commit()
    return RedirectResponse("/settings/mail?saved=smtp_removed#smtp", status_code=303)


@router.post("/settings/mail/imap")
async def save_imap(request: Request, user: TenantAdminUser, session: Session,
                    host: Annotated[str, Form(max_length=300)] = "", port: Annotated[str, Form(max_length=10)] = "",
                    security: Annotated[str, Form(max_length=10)] = "",
                    username: Annotated[str, Form(max_length=300)] = "",
                    password: Annotated[str, Form(max_length=300)] = "",
                    folder: Annotated[str, Form(max_length=300)] = "",
                    poll_seconds: Annotated[str, Form(max_length=10)] = "",
                    enabled: Annotated[str, Form(max_length=5)] = "") -> Response:
    _ = gettext_for(request)
    row = await crm_mail.find_imap(session, user.tenant)
    form = {"host": host, "port": port, "security": security, "username": username, "folder": folder,
            "poll_seconds": poll_seconds, "enabled": enabled == "1", "has_password": row is not None}
    messages = {
        "host": _("A host name or an IP address, without spaces."), "port": _("A port from 1 to 65535."),
        "security": _("Choose from the list."),
        "username": _("Required: at most 254 characters, without line breaks or control characters."),
        "password": _("At most 254 characters, without line breaks or control characters."),
        "folder": _("A folder name in Latin letters, digits, spaces and . _ / & + -"),
        "poll_seconds": _("Empty (the platform's interval) or 30 to 86400 seconds.")}
    try:
        body = crm_schemas.ImapIn(host=host, port=_port(port), security=security, username=username,  # type: ignore[arg-type]
                                  password=password or None, folder=folder.strip() or "INBOX",
                                  poll_seconds=_port(poll_seconds) if poll_seconds.strip() else None,  # type: ignore[arg-type]
                                  enabled=enabled == "1")
        await crm_mail.put_imap(session, user.tenant, body)
    except PydanticValidationError as exc:
        errors = schema_errors(exc, messages, _("Invalid value."))
        return await _page(request, session, user.tenant, imap=form, imap_errors=errors, status_code=422)
    except Conflict:  # a new mailbox without its password
        await session.rollback()
        return await _page(request, session, user.tenant, imap=form,
                           imap_errors={"password": _("A password is needed for a new mailbox.")}, status_code=422)
    await session.commit()
    return RedirectResponse("/settings/mail?saved=imap#imap", status_code=303)


@router.post("/settings/mail/imap/remove")
async def remove_imap(user: TenantAdminUser, session: Session) -> Response:
    await crm_mail.delete_imap(session, user.tenant)
    await session.commit()
    return RedirectResponse("/settings/mail?saved=imap_removed#imap", status_code=303)


@router.post("/settings/mail/imap/test")
async def test_imap(request: Request, user: TenantAdminUser, session: Session) -> Response:
    """Log in to the stored mailbox (a few seconds at most) and show the result on the page."""
    if await crm_mail.find_imap(session, user.tenant) is None:
        return RedirectResponse("/settings/mail#imap", status_code=303)
    result = await crm_mail.test_imap(session, user.tenant)
    return await _page(request, session, user.tenant, test=result)
