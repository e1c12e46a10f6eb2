"""Voicemail to e-mail: a background job that mails each new message (the WAV attached) to its mailbox's
address, never on the call path.

How it works: storing a message whose mailbox has an address marks the row ``email_state='pending'``
with ``email_next_at`` = now (:meth:`zvonok.voicemail.service.VoicemailStore.store`); the queue is the
table itself, so a restart loses nothing. :class:`VoicemailMailer` wakes on a new message (``wake()``, from
the committed :class:`~zvonok.voicemail.events.MailboxChanged`) or every ``poll`` seconds, takes the due
rows (``batch`` at a time, oldest first), and sends each through the company's own SMTP server if it set
one (``voicemail_smtp``), else the platform's (``ZVONOK_SMTP_*``); none configured leaves the row pending.
A failure is retried after ``retry_base * 2**attempts`` seconds (capped at ``retry_max``), and after
``max_attempts`` the row is ``failed``. Sending uses the standard library's ``smtplib`` in a worker thread
(a blocking client is fine off the event loop, and the job is never in a call's way).

Subject and body come from :data:`TEMPLATES` in the company's language (its locale: ``ru`` or ``en``),
with the caller, the mailbox, the time in the company's time zone and the length.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from zvonok.config import Settings
from zvonok.logs import get_logger
from zvonok.media.prompts import prompt_language
from zvonok.org.models import Extension, Tenant
from zvonok.storage.db import Database

from .models import Mailbox, TenantSmtp, VoicemailMessage
from .service import VoicemailFiles

log = get_logger(__name__)

TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "subject": "New voicemail from {caller} ({seconds} s)",
        "body": "You have a new voicemail message in mailbox {mailbox}.\n\n"
                "From: {caller}\nReceived: {time}\nLength: {seconds} s\n\n"
                "The recording is attached. Dial *97 from your phone to listen to your messages.\n",
    },
    "ru": {
        "subject": "Новое голосовое сообщение от {caller} ({seconds} с)",
        "body": "В голосовом ящике {mailbox} новое сообщение.\n\n"
                "От: {caller}\nПолучено: {time}\nДлительность: {seconds} с\n\n"
                "Запись во вложении. Чтобы прослушать сообщения с телефона, наберите *97.\n",
    },
}


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Letter:
    to: str
    language: str
    mailbox: str
    caller: str
    received: datetime  # in the company's time zone
    seconds: float
    attachment: Path


def compose(letter: Letter, sender: str) -> EmailMessage:
    """The e-mail of one message: the template of the language, the WAV attached."""
    template = TEMPLATES.get(prompt_language(letter.language), TEMPLATES["en"])
    fields = {"caller": letter.caller, "mailbox": letter.mailbox, "time": letter.received.strftime("%Y-%m-%d %H:%M"),
              "seconds": f"{letter.seconds:.0f}"}
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = letter.to
    msg["Subject"] = template["subject"].format(**fields)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="zvonok")
    msg.set_content(template["body"].format(**fields))
    msg.add_attachment(letter.attachment.read_bytes(), maintype="audio", subtype="wav",
                       filename=f"voicemail-{letter.received.strftime('%Y%m%d-%H%M%S')}.wav")
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


class VoicemailMailer:
    def __init__(self, db: Database, files: VoicemailFiles, platform: SmtpServer | None, *, poll: float = 30.0,
                 batch: int = 20, max_attempts: int = 5, retry_base: float = 30.0, retry_max: float = 3600.0) -> None:
        self.db = db
        self.files = files
        self.platform = platform
        self.poll = poll
        self.batch = batch
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                while await self.run_once() >= self.batch:
                    pass  # a full batch: more may be due
            except Exception:  # noqa: BLE001 - the job goes on; the rows stay pending
                log.exception("voicemail mailer failed")
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stopping.wait())
            await asyncio.wait({waiter, stopper}, timeout=self.poll, return_when=asyncio.FIRST_COMPLETED)
            for task in (waiter, stopper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._wake.clear()

    async def run_once(self, now: datetime | None = None) -> int:
        """Send what is due; how many rows were tried."""
        now = now or datetime.now(UTC)
        async with self.db.session() as session:
            # the platform's job over every tenant: each row is sent with its own tenant's settings
            due = (await session.execute(
                select(VoicemailMessage.id, VoicemailMessage.tenant_id).where(
                    VoicemailMessage.email_state == "pending", VoicemailMessage.email_next_at <= now)
                .order_by(VoicemailMessage.email_next_at, VoicemailMessage.id).limit(self.batch))).all()
        for message_id, tenant_id in due:
            await self._one(tenant_id, message_id, now)
        return len(due)

    async def _one(self, tenant_id: int, message_id: int, now: datetime) -> None:
        async with self.db.session() as session:
            row = (await session.execute(
                select(VoicemailMessage, Mailbox, Extension.number, Tenant, TenantSmtp)
                .join(Mailbox, Mailbox.id == VoicemailMessage.mailbox_id)
                .join(Extension, Extension.id == Mailbox.extension_id)
                .join(Tenant, Tenant.id == VoicemailMessage.tenant_id)
                .outerjoin(TenantSmtp, TenantSmtp.tenant_id == VoicemailMessage.tenant_id)
                .where(VoicemailMessage.tenant_id == tenant_id, VoicemailMessage.id == message_id))).first()
            if row is None:
                return
            msg, box, number, tenant, own = row
            if not box.email:
                msg.email_state = "none"
                await session.commit()
                return
            server = (SmtpServer(host=own.host, port=own.port, username=own.username, password=own.password,
                                 security=own.security, sender=own.sender) if own is not None else self.platform)
            if server is None:
                return  # nowhere to send from: stays pending until a server is configured
            try:
                zone = ZoneInfo(tenant.timezone)
            except (KeyError, ValueError):
                zone = ZoneInfo("UTC")
            caller = f"{msg.caller_name} <{msg.caller_number}>" if msg.caller_name else msg.caller_number
            letter = Letter(to=box.email, language=tenant.locale, mailbox=number, caller=caller or "?",
                            received=msg.received_at.astimezone(zone), seconds=msg.duration,
                            attachment=self.files.message(msg.path))
            try:
                email = await asyncio.to_thread(compose, letter, server.sender)
                await asyncio.to_thread(send, server, email)
            except (OSError, smtplib.SMTPException) as exc:
                msg.email_attempts += 1
                if msg.email_attempts >= self.max_attempts:
                    msg.email_state = "failed"
                    log.warning("voicemail e-mail failed for good", tenant=tenant_id, message=message_id,
                                attempts=msg.email_attempts, error=str(exc))
                else:
                    delay = min(self.retry_max, self.retry_base * 2 ** (msg.email_attempts - 1))
                    msg.email_next_at = now + timedelta(seconds=delay)
                    log.info("voicemail e-mail failed, will retry", tenant=tenant_id, message=message_id,
                             attempts=msg.email_attempts, retry_in=delay, error=str(exc))
            else:
                msg.email_state = "sent"
                msg.email_attempts += 1
                log.info("voicemail e-mailed", tenant=tenant_id, message=message_id)
            await session.commit()
