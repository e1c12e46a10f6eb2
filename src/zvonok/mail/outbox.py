"""The mail outbox job: sends every queued letter (voicemail, fax ...) through SMTP, with retries, never
on a call's path.

How it works: a domain queues a letter with :func:`enqueue` in the transaction that stores what the
letter carries (a voicemail message, a received fax), so a restart loses nothing: the queue is the
``mail_outbox`` table. :class:`Outbox` wakes on :meth:`Outbox.wake` (a committed event says a letter was
queued) or every ``poll`` seconds, takes the due rows (``batch`` at a time, oldest first), asks the
row's composer (registered per ``kind``) for a :class:`Draft` — subject and body in the company's
language, attachments — and sends it through the company's own SMTP server if it set one
(``voicemail_smtp``), else the platform's (``ZVONOK_SMTP_*``); none configured leaves the row pending.
A failure is retried after ``retry_base * 2**(attempts-1)`` seconds (capped at ``retry_max``); after
``max_attempts`` the row is ``failed``. A composer that finds nothing to send (the message was deleted)
answers None: the row is ``dropped``. Sending uses the standard library's ``smtplib`` in a worker thread
(a blocking client is fine off the event loop, and the job is never in a call's way).
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formatdate, make_msgid
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.config import Settings
from zvonok.logs import get_logger
from zvonok.org.models import Tenant
from zvonok.storage.db import Database, emit

from .events import MailQueued
from .models import MAX_RECIPIENTS, OutboxLetter, TenantSmtp

log = get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpServer:
    host: str
    port: int = 25
    username: str | None = None
    password: str | None = None
    security: str = "none"  # none | starttls | tls
    sender: str = "voicemail@localhost"

    @classmethod
    def platform(cls, settings: Settings) -> SmtpServer | None:
        if not settings.smtp_host:
            return None
        return cls(host=settings.smtp_host, port=settings.smtp_port, username=settings.smtp_username,
                   password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                   security=settings.smtp_security, sender=settings.smtp_from)

    @classmethod
    def of(cls, own: TenantSmtp) -> SmtpServer:
        return cls(host=own.host, port=own.port, username=own.username, password=own.password,
                   security=own.security, sender=own.sender)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """A file to attach: its bytes, or a path read when the mail is composed (in the worker thread)."""

    filename: str
    maintype: str
    subtype: str
    data: bytes | None = None
    path: Path | None = None

    def content(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


@dataclass(frozen=True, slots=True, kw_only=True)
class Draft:
    """A letter's content; ``sender``, ``message_id`` and ``date`` where the kind keeps its own (a CRM
    e-mail: its stored From, Message-ID and time), else the server's sender, a new id and now; a reply's
    ``In-Reply-To`` and ``References``."""

    subject: str
    body: str
    attachments: tuple[Attachment, ...] = ()
    sender: str | None = None
    message_id: str | None = None
    date: datetime | None = None
    in_reply_to: str | None = None  # a reply's threading headers (RFC 5322 §3.6.4)
    references: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Company:
    """What a composer needs of the company a letter is for."""

    id: int
    language: str  # its locale, e.g. ru-RU
    zone: ZoneInfo

    def local(self, at: datetime) -> str:
        return at.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")


class Composer(Protocol):
    async def __call__(self, session: AsyncSession, company: Company, ref_id: int) -> Draft | None:
        """The letter about ``ref_id`` of the company (None: it is gone, nothing to send)."""
        ...


class Reporter(Protocol):
    async def __call__(self, session: AsyncSession, letter: OutboxLetter, error: str | None) -> None:
        """After a try (in its transaction): the letter's new state, attempts and next try; the error or None."""
        ...


def enqueue(session: AsyncSession, tenant_id: int, kind: str, ref_id: int, recipients: Iterable[str],
            now: datetime | None = None) -> OutboxLetter | None:
    """Queue a letter in the caller's transaction (nothing when there is nobody to send it to)."""
    to = list(dict.fromkeys(r.strip() for r in recipients if r and r.strip()))[:MAX_RECIPIENTS]
    if not to:
        return None
    row = OutboxLetter(tenant_id=tenant_id, kind=kind, ref_id=ref_id, recipients=",".join(to),
                       state="pending", attempts=0, next_at=now or datetime.now(UTC))
    session.add(row)
    emit(session, MailQueued(tenant_id=tenant_id, kind=kind))
    return row


def compose(draft: Draft, sender: str, to: list[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = draft.sender or sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = draft.subject
    msg["Date"] = format_datetime(draft.date.astimezone(UTC)) if draft.date else formatdate(localtime=False)
    msg["Message-ID"] = draft.message_id or make_msgid(domain="zvonok")
    if draft.in_reply_to:
        msg["In-Reply-To"] = draft.in_reply_to
    if draft.references:
        msg["References"] = " ".join(draft.references)
    msg.set_content(draft.body)
    for part in draft.attachments:
        msg.add_attachment(part.content(), maintype=part.maintype, subtype=part.subtype, filename=part.filename)
    return msg


def send(server: SmtpServer, msg: EmailMessage, timeout: float = 30.0) -> None:
    """Blocking: run it in a thread."""
    smtp: smtplib.SMTP
    if server.security == "tls":
        smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=ssl.create_default_context())
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=timeout)
    with smtp:
        if server.security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        if server.username:
            smtp.login(server.username, server.password or "")
        smtp.send_message(msg)


async def wait_woken(wake: asyncio.Event, stopping: asyncio.Event, timeout: float) -> None:
    """Until ``wake`` or ``stopping`` is set or ``timeout`` seconds pass; ``wake`` is cleared."""
    waiter = asyncio.ensure_future(wake.wait())
    stopper = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for task in (waiter, stopper):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    wake.clear()


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


class Outbox:
    def __init__(self, db: Database, platform: SmtpServer | None, *, poll: float = 30.0, batch: int = 20,
                 max_attempts: int = 5, retry_base: float = 30.0, retry_max: float = 3600.0) -> None:
        self.db = db
        self.platform = platform
        self.poll = poll
        self.batch = batch
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.composers: dict[str, Composer] = {}
        self.reporters: dict[str, Reporter] = {}
        self._wake = asyncio.Event()

    def register(self, kind: str, composer: Composer, reporter: Reporter | None = None) -> None:
        """``reporter``: told of each try, for a kind that shows its letters' state elsewhere (the CRM)."""
        self.composers[kind] = composer
        if reporter is not None:
            self.reporters[kind] = reporter

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                while await self.run_once() >= self.batch:
                    pass  # a full batch: more may be due
            except Exception:  # noqa: BLE001 - the job goes on; the rows stay pending
                log.exception("mail outbox failed")
            await wait_woken(self._wake, stopping, self.poll)

    async def run_once(self, now: datetime | None = None) -> int:
        """Send what is due; how many letters were tried."""
        now = now or datetime.now(UTC)
        async with self.db.session() as session:
            # the platform's job over every tenant: each letter goes with its own tenant's settings
            due = (await session.execute(
                select(OutboxLetter.id, OutboxLetter.tenant_id)
                .where(OutboxLetter.state == "pending", OutboxLetter.next_at <= now,
                       OutboxLetter.kind.in_(tuple(self.composers)))
                .order_by(OutboxLetter.next_at, OutboxLetter.id).limit(self.batch))).all()
        for letter_id, tenant_id in due:
            await self._one(tenant_id, letter_id, now)
        return len(due)

    async def _one(self, tenant_id: int, letter_id: int, now: datetime) -> None:
        async with self.db.session() as session:
            row = (await session.execute(
                select(OutboxLetter, Tenant, TenantSmtp)
                .join(Tenant, Tenant.id == OutboxLetter.tenant_id)
                .outerjoin(TenantSmtp, TenantSmtp.tenant_id == OutboxLetter.tenant_id)
                .where(OutboxLetter.tenant_id == tenant_id, OutboxLetter.id == letter_id))).first()
            if row is None:
                return
            letter, tenant, own = row
            server = SmtpServer.of(own) if own is not None else self.platform
            if server is None:
                return  # nowhere to send from: stays pending until a server is configured
            company = Company(id=tenant.id, language=tenant.locale, zone=_zone(tenant.timezone))
            error: str | None = None
            try:
                draft = await self.composers[letter.kind](session, company, letter.ref_id)
                if draft is None:
                    letter.state = "dropped"
                    await session.commit()
                    return
                mail = await asyncio.to_thread(compose, draft, server.sender, letter.recipients.split(","))
                await asyncio.to_thread(send, server, mail)
            # a file gone or unreadable (OSError, ValueError) is retried as a server that did not answer is
            except (OSError, ValueError, smtplib.SMTPException) as exc:
                error = str(exc) or type(exc).__name__
                letter.attempts += 1
                letter.last_error = error[:200]
                if letter.attempts >= self.max_attempts:
                    letter.state = "failed"
                    log.warning("e-mail failed for good", tenant=tenant_id, kind=letter.kind, ref=letter.ref_id,
                                attempts=letter.attempts, error=str(exc))
                else:
                    delay = min(self.retry_max, self.retry_base * 2 ** (letter.attempts - 1))
                    letter.next_at = now + timedelta(seconds=delay)
                    log.info("e-mail failed, will retry", tenant=tenant_id, kind=letter.kind, ref=letter.ref_id,
                             attempts=letter.attempts, retry_in=delay, error=str(exc))
            else:
                letter.state = "sent"
                letter.attempts += 1
                letter.sent_at = datetime.now(UTC)
                log.info("e-mail sent", tenant=tenant_id, kind=letter.kind, ref=letter.ref_id)
            reporter = self.reporters.get(letter.kind)
            if reporter is not None:
                await reporter(session, letter, error)
            await session.commit()
