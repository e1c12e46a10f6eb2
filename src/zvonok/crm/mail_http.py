"""REST routes of e-mail on the timeline under ``/api/v1/tenants/{tenant_id}/crm``: write to a client
(``POST /clients/{id}/emails``: queued, sent by the job, never in the request), a client's e-mails and
their timeline of calls and e-mails together, and the company's IMAP mailbox for replies (the admin's;
the password is write-only). Another tenant's clients answer 404, as missing ones do; no SMTP server
configured answers 409. A received e-mail is answered with ``POST /messages/{id}/reply`` (in its
thread); ``POST /imap/test`` logs in to the stored mailbox."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import TenantAdmin, TenantReader
from zvonok.api.deps import Paging, get_session, get_settings, paging
from zvonok.cdr.models import Cdr
from zvonok.cdr.service import recording_file
from zvonok.config import Settings
from zvonok.mail.outbox import SmtpServer
from zvonok.org.schemas import Page

from . import mail
from . import schemas as s
from .http import viewer_of

router = APIRouter()
Session = Annotated[AsyncSession, Depends(get_session)]
PageParams = Annotated[Paging, Depends(paging)]
Cfg = Annotated[Settings, Depends(get_settings)]


@router.post("/clients/{client_id}/emails", response_model=s.EmailOut, status_code=201,
             responses={409: {"description": "No SMTP server is configured (the company's nor the platform's)"}})
async def send_email(tenant_id: int, client_id: int, body: s.EmailIn, who: TenantReader, session: Session,
                     settings: Cfg) -> object:
    """Queue an e-mail to the client (to one of their addresses or any other); the sending job sends it
    with retries: ``status`` goes from ``queued`` to ``sent``, or ``failed`` with ``error``."""
    row = await mail.queue_for_client(session, tenant_id, client_id, body, SmtpServer.platform(settings),
                                      author_employee_id=who.employee_id)
    await session.commit()
    return mail.email_out(row)


@router.post("/messages/{message_id}/reply", response_model=s.EmailOut, status_code=201,
             responses={404: {"description": "No such e-mail of this company"},
                        409: {"description": "Not a received e-mail, or no SMTP server is configured"}})
async def reply(tenant_id: int, message_id: int, body: s.ReplyIn, who: TenantReader, session: Session,
                settings: Cfg) -> object:
    """Answer a received e-mail of the timeline: queued to its sender with ``Re:`` its subject and the
    thread's ``In-Reply-To`` / ``References``; ``in_reply_to_id`` links it to the e-mail it answers."""
    row = await mail.queue_reply(session, tenant_id, message_id, body, SmtpServer.platform(settings),
                                 author_employee_id=who.employee_id)
    await session.commit()
    return mail.email_out(row)


@router.get("/clients/{client_id}/emails", response_model=Page[s.EmailOut])
async def list_emails(tenant_id: int, client_id: int, _: TenantReader, session: Session, p: PageParams) -> object:
    rows, total = await mail.list_emails(session, tenant_id, client_id, limit=p.limit, offset=p.offset)
    return {"items": [mail.email_out(r) for r in rows], "total": total, "limit": p.limit, "offset": p.offset}


@router.get("/clients/{client_id}/timeline", response_model=Page[s.TimelineItem])
async def client_timeline(tenant_id: int, client_id: int, who: TenantReader, session: Session, p: PageParams,
                          settings: Cfg) -> object:
    """The client's calls and e-mails (sent and received), newest first."""

    def recorded(cdr: Cdr) -> bool:
        return recording_file(settings.data_dir, cdr.recording_path) is not None

    rows, total = await mail.timeline(session, tenant_id, client_id, viewer_of(who), has_recording=recorded,
                                      limit=p.limit, offset=p.offset)
    return {"items": rows, "total": total, "limit": p.limit, "offset": p.offset}


@router.get("/imap", response_model=s.ImapOut)
async def get_imap(tenant_id: int, _: TenantAdmin, session: Session) -> object:
    return mail.imap_out(await mail.get_imap(session, tenant_id))


@router.put("/imap", response_model=s.ImapOut)
async def put_imap(tenant_id: int, body: s.ImapIn, _: TenantAdmin, session: Session) -> object:
    row = await mail.put_imap(session, tenant_id, body)
    await session.commit()
    return mail.imap_out(row)


@router.delete("/imap", status_code=204)
async def delete_imap(tenant_id: int, _: TenantAdmin, session: Session) -> Response:
    await mail.delete_imap(session, tenant_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/imap/test", response_model=s.ImapTestOut)
async def test_imap(tenant_id: int, _: TenantAdmin, session: Session) -> object:
    """Log in to the stored mailbox and open its folder, reading nothing (a few seconds at most)."""
    return await mail.test_imap(session, tenant_id)
