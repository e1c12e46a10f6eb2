"""E-mail on a client's timeline: queueing a message to a client, the job that sends it, the timeline of
calls and e-mails together, and the company's IMAP settings (the poller that fetches replies is
:mod:`zvonok.crm.imap`).

How it works: :func:`queue_email` writes a ``crm_messages`` row (``out``, ``queued``, ``next_at`` = now,
a Message-ID we make) and, in the same transaction, queues a ``crm`` letter in the mail outbox
(:mod:`zvonok.mail.outbox`); nothing is sent in the request. The outbox job sends it with the other
letters (voicemail, fax) through the company's own SMTP server if it set one, else the platform's (one
SMTP configuration per company, not one per feature), with its retries: :func:`compose_crm` writes the
letter from the row (our Message-ID, From, To, subject, body), :func:`report_crm` tells the row of each
try, so its ``status`` goes ``queued`` → ``sent``, or ``failed`` with the last error, ``attempts`` and
``next_at`` following the outbox's.

The timeline is one query over its sources (a UNION of the client's calls, found by number in ``cdrs``,
their ``crm_messages``, and their click-to-calls that failed with no CDR — ``originate_requests`` rows of
the client, zvonok.originates), ordered by time, newest first, so paging is exact.
"""

from __future__ import annotations

import asyncio
import imaplib
from datetime import UTC, datetime
from email.utils import make_msgid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import exists, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.cdr.models import Cdr
from zvonok.mail import outbox
from zvonok.mail.models import OutboxLetter, TenantSmtp
from zvonok.mail.outbox import SmtpServer
from zvonok.org.errors import Conflict, NotFound
from zvonok.org.models import Employee
from zvonok.originates.models import OriginateRequest
from zvonok.storage.db import emit

from . import events, schemas, service
from .imap import ImapAccount, ImapFailure, check_mailbox
from .mailthread import message_ids, reply_references, reply_subject
from .models import CrmImap, CrmMessage

KIND = "crm"  # the mail outbox's kind of letter
MAX_ERROR = 500


# --- sending ----------------------------------------------------------------------------------------------
async def smtp_server(session: AsyncSession, tenant_id: int, platform: SmtpServer | None) -> SmtpServer | None:
    """The company's own SMTP server if it set one, else the platform's (None: no mail can be sent)."""
    own = (await session.execute(select(TenantSmtp).where(TenantSmtp.tenant_id == tenant_id))).scalar_one_or_none()
    return SmtpServer.of(own) if own is not None else platform


def _domain(address: str) -> str:
    domain = address.rpartition("@")[2].strip(" >").lower()
    return domain if domain and all(c.isalnum() or c in ".-" for c in domain) else "zvonok"


async def queue_email(session: AsyncSession, tenant_id: int, client_id: int, body: schemas.EmailIn, *,
                      sender: str, author_employee_id: int | None = None, parent: CrmMessage | None = None,
                      ) -> CrmMessage:
    """``parent``: the message this one answers (its thread's References are carried on)."""
    await service.get_client(session, tenant_id, client_id)  # another tenant's: 404
    now = datetime.now(UTC)
    refs = reply_references(message_ids(parent.thread_refs), parent.message_id) if parent is not None else []
    row = CrmMessage(tenant_id=tenant_id, client_id=client_id, direction="out", from_addr=sender, to_addr=body.to,
                     subject=body.subject, body=body.body, message_id=make_msgid("crm", domain=_domain(sender)),
                     at=now, status="queued", attempts=0, next_at=now, author_employee_id=author_employee_id,
                     in_reply_to_id=parent.id if parent is not None else None, thread_refs=" ".join(refs) or None)
    session.add(row)
    await session.flush()
    outbox.enqueue(session, tenant_id, KIND, row.id, [row.to_addr], now)  # the outbox job sends it
    return row


async def queue_for_client(session: AsyncSession, tenant_id: int, client_id: int, body: schemas.EmailIn,
                           platform: SmtpServer | None, *, author_employee_id: int | None) -> CrmMessage:
    """:func:`queue_email` from the company's sender address; 409 when no SMTP server is configured."""
    await service.get_client(session, tenant_id, client_id)
    server = await smtp_server(session, tenant_id, platform)
    if server is None:
        raise Conflict("no SMTP server is configured: set the company's (voicemail SMTP) or the platform's")
    return await queue_email(session, tenant_id, client_id, body, sender=server.sender,
                             author_employee_id=author_employee_id)


async def get_message(session: AsyncSession, tenant_id: int, message_id: int) -> CrmMessage:
    row = (await session.execute(select(CrmMessage).where(
        CrmMessage.tenant_id == tenant_id, CrmMessage.id == message_id))).scalar_one_or_none()
    if row is None:
        raise NotFound("no such e-mail")  # another tenant's too
    return row


async def queue_reply(session: AsyncSession, tenant_id: int, message_id: int, body: schemas.ReplyIn,
                      platform: SmtpServer | None, *, author_employee_id: int | None) -> CrmMessage:
    """An answer to a received e-mail: to its sender, ``Re:`` its subject, in its thread (In-Reply-To and
    References, :mod:`zvonok.crm.mailthread`), on the same client's timeline. 404: no such message of
    this tenant; 409: not a received one, or no SMTP server."""
    parent = await get_message(session, tenant_id, message_id)
    if parent.direction != "in":
        raise Conflict("only a received e-mail can be answered", field="message_id")
    if not parent.from_addr:
        raise Conflict("the e-mail names no sender to answer", field="message_id")
    server = await smtp_server(session, tenant_id, platform)
    if server is None:
        raise Conflict("no SMTP server is configured: set the company's (voicemail SMTP) or the platform's")
    try:
        letter = schemas.EmailIn(to=parent.from_addr, subject=reply_subject(parent.subject), body=body.body)
    except ValidationError:  # an address the parser let through that is not one we send to
        raise Conflict("the e-mail's sender cannot be written to", field="message_id") from None
    return await queue_email(session, tenant_id, parent.client_id, letter, sender=server.sender,
                             author_employee_id=author_employee_id, parent=parent)


async def _queued(session: AsyncSession, tenant_id: int, message_id: int) -> CrmMessage | None:
    return (await session.execute(select(CrmMessage).where(
        CrmMessage.tenant_id == tenant_id, CrmMessage.id == message_id,
        CrmMessage.status == "queued"))).scalar_one_or_none()


async def compose_crm(session: AsyncSession, company: outbox.Company, ref_id: int) -> outbox.Draft | None:
    """The outbox's ``crm`` letter: the stored message as written, with our Message-ID, From and time."""
    row = await _queued(session, company.id, ref_id)
    if row is None:
        return None  # gone with its client, or no longer queued
    refs = message_ids(row.thread_refs)  # a reply's References end with the message it answers
    return outbox.Draft(subject=row.subject, body=row.body, sender=row.from_addr,
                        message_id=row.message_id or make_msgid("crm"), date=row.at,
                        in_reply_to=refs[-1] if refs else None, references=tuple(refs))


async def report_crm(session: AsyncSession, letter: OutboxLetter, error: str | None) -> None:
    """Each try of a ``crm`` letter onto its message: queued (next try), sent, or failed with the error."""
    row = await _queued(session, letter.tenant_id, letter.ref_id)
    if row is None:
        return
    row.attempts = letter.attempts
    if letter.state == "sent":
        row.status, row.sent_at, row.next_at, row.error = "sent", letter.sent_at, None, None
    elif letter.state == "failed":
        row.status, row.next_at, row.error = "failed", None, (error or letter.last_error)[:MAX_ERROR]
    elif letter.state == "pending":
        row.next_at, row.error = letter.next_at, (error or letter.last_error)[:MAX_ERROR]


# --- reading ----------------------------------------------------------------------------------------------
def email_out(row: CrmMessage) -> schemas.EmailOut:
    return schemas.EmailOut(
        id=row.id, client_id=row.client_id, direction=row.direction,  # type: ignore[arg-type]
        from_addr=row.from_addr, to_addr=row.to_addr, subject=row.subject, body=row.body, message_id=row.message_id,
        at=row.at, sent_at=row.sent_at, status=row.status, error=row.error,  # type: ignore[arg-type]
        attempts=row.attempts, author_employee_id=row.author_employee_id, in_reply_to_id=row.in_reply_to_id)


async def list_emails(session: AsyncSession, tenant_id: int, client_id: int, *, limit: int = 50,
                      offset: int = 0) -> tuple[list[CrmMessage], int]:
    await service.get_client(session, tenant_id, client_id)
    where = (CrmMessage.tenant_id == tenant_id, CrmMessage.client_id == client_id)
    total = int((await session.execute(select(func.count()).select_from(CrmMessage).where(*where))).scalar_one())
    rows = await session.execute(select(CrmMessage).where(*where).order_by(CrmMessage.at.desc(), CrmMessage.id.desc())
                                 .limit(limit).offset(offset))
    return list(rows.scalars().all()), total


async def timeline(session: AsyncSession, tenant_id: int, client_id: int, viewer: service.Viewer, *,
                   has_recording: Any = None, limit: int = 50,
                   offset: int = 0) -> tuple[list[schemas.TimelineItem], int]:
    """The client's calls, e-mails and failed click-to-calls, newest first (one UNION, so pages are exact)."""
    await service.get_client(session, tenant_id, client_id)
    numbers = await service.client_numbers(session, tenant_id, client_id)
    mails = select(literal("email").label("kind"), CrmMessage.id.label("id"), CrmMessage.at.label("at")).where(
        CrmMessage.tenant_id == tenant_id, CrmMessage.client_id == client_id)
    # a click-to-call that failed before it was a call (no CDR of its call id); with a CDR, the call is there
    attempts = select(literal("click_to_call").label("kind"), OriginateRequest.id.label("id"),
                      OriginateRequest.created_at.label("at")).where(
        OriginateRequest.tenant_id == tenant_id, OriginateRequest.client_id == client_id,
        OriginateRequest.phase == "failed",
        ~exists(select(Cdr.id).where(Cdr.tenant_id == tenant_id, Cdr.call_id == OriginateRequest.call_id)))
    parts: list[Any] = [mails, attempts]
    if numbers:
        parts.append(select(literal("call").label("kind"), Cdr.id.label("id"), Cdr.started_at.label("at"))
                     .where(*service.calls_where(tenant_id, numbers)))
    both = union_all(*parts).subquery()
    total = int((await session.execute(select(func.count()).select_from(both))).scalar_one())
    page = (await session.execute(select(both.c.kind, both.c.id).order_by(both.c.at.desc(), both.c.kind, both.c.id.desc())
                                  .limit(limit).offset(offset))).tuples().all()
    call_ids = [i for k, i in page if k == "call"]
    mail_ids = [i for k, i in page if k == "email"]
    attempt_ids = [i for k, i in page if k == "click_to_call"]
    calls: dict[int, schemas.CallOut] = {}
    if call_ids:
        cdrs = (await session.execute(select(Cdr).where(Cdr.tenant_id == tenant_id, Cdr.id.in_(call_ids)))).scalars().all()
        calls = {c.id: c for c in await service.calls_out(session, tenant_id, numbers, list(cdrs), viewer, has_recording)}
    messages: dict[int, CrmMessage] = {}
    if mail_ids:
        messages = {m.id: m for m in (await session.execute(select(CrmMessage).where(
            CrmMessage.tenant_id == tenant_id, CrmMessage.id.in_(mail_ids)))).scalars()}
    tried: dict[int, schemas.ClickToCallOut] = {}
    if attempt_ids:
        tried = {a.id: a for a in await _click_to_calls(session, tenant_id, attempt_ids)}
    out: list[schemas.TimelineItem] = []
    for kind, ident in page:
        if kind == "call" and ident in calls:
            out.append(schemas.TimelineItem(kind="call", at=calls[ident].started_at, call=calls[ident]))
        elif kind == "email" and ident in messages:
            out.append(schemas.TimelineItem(kind="email", at=messages[ident].at, email=email_out(messages[ident])))
        elif kind == "click_to_call" and ident in tried:
            out.append(schemas.TimelineItem(kind="click_to_call", at=tried[ident].at, click_to_call=tried[ident]))
    return out, total


async def _click_to_calls(session: AsyncSession, tenant_id: int, ids: list[int]) -> list[schemas.ClickToCallOut]:
    rows = (await session.execute(
        select(OriginateRequest, Employee.full_name)
        .outerjoin(Employee, (Employee.id == OriginateRequest.employee_id) & (Employee.tenant_id == tenant_id))
        .where(OriginateRequest.tenant_id == tenant_id, OriginateRequest.id.in_(ids)))).tuples().all()
    return [schemas.ClickToCallOut(id=row.id, call_id=row.call_id, at=row.created_at, extension=row.extension,
                                   client_number=row.to_number, employee_name=name, phase=row.phase,
                                   reason=row.reason) for row, name in rows]


# --- the company's IMAP mailbox -----------------------------------------------------------------------------
def imap_out(row: CrmImap) -> schemas.ImapOut:
    return schemas.ImapOut(host=row.host, port=row.port, security=row.security, username=row.username,
                           has_password=bool(row.password), folder=row.folder, enabled=row.enabled,
                           uidvalidity=row.uidvalidity, last_uid=row.last_uid, polled_at=row.polled_at,
                           last_error=row.last_error, poll_seconds=row.poll_seconds)


async def find_imap(session: AsyncSession, tenant_id: int) -> CrmImap | None:
    return (await session.execute(select(CrmImap).where(CrmImap.tenant_id == tenant_id))).scalar_one_or_none()


async def get_imap(session: AsyncSession, tenant_id: int) -> CrmImap:
    row = await find_imap(session, tenant_id)
    if row is None:
        raise NotFound("no IMAP mailbox is set for replies")
    return row


async def put_imap(session: AsyncSession, tenant_id: int, body: schemas.ImapIn) -> CrmImap:
    """Set the mailbox; another server, account or folder is read afresh (from today's mail)."""
    row = (await session.execute(select(CrmImap).where(CrmImap.tenant_id == tenant_id))).scalar_one_or_none()
    if row is None:
        if body.password is None:
            raise Conflict("a password is needed for a new IMAP mailbox", field="password")
        row = CrmImap(tenant_id=tenant_id, last_uid=0, since=datetime.now(UTC))
        session.add(row)
    elif (row.host, row.port, row.username, row.folder) != (body.host, body.port, body.username, body.folder):
        row.uidvalidity, row.last_uid, row.since = None, 0, datetime.now(UTC)
    row.host, row.port, row.security, row.username = body.host, body.port, body.security, body.username
    row.folder, row.enabled, row.last_error = body.folder, body.enabled, None
    row.poll_seconds, row.polled_at = body.poll_seconds, None  # read at the next wake, not after the old interval
    if body.password is not None:
        row.password = body.password
    await session.flush()
    emit(session, events.ImapChanged(tenant_id=tenant_id))
    return row


async def delete_imap(session: AsyncSession, tenant_id: int) -> None:
    row = (await session.execute(select(CrmImap).where(CrmImap.tenant_id == tenant_id))).scalar_one_or_none()
    if row is not None:
        await session.delete(row)
        await session.flush()


async def test_imap(session: AsyncSession, tenant_id: int, *, timeout: float = 10.0) -> schemas.ImapTestOut:
    """Log in to the stored mailbox as the poller would (its folder opened read-only, nothing read)."""
    row = await get_imap(session, tenant_id)
    account = ImapAccount(host=row.host, port=row.port, security=row.security, username=row.username,
                          password=row.password, folder=row.folder)
    try:
        count = await asyncio.to_thread(check_mailbox, account, timeout=timeout)
    except (OSError, imaplib.IMAP4.error, ImapFailure) as exc:
        error = str(exc) or type(exc).__name__
        return schemas.ImapTestOut(ok=False, error=(error.replace(row.password, "***") if row.password else error)[:300])
    return schemas.ImapTestOut(ok=True, messages=count)
