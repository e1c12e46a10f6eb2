"""Replies by IMAP (RFC 3501): each company's mailbox is read for new mail, and what belongs to a client
(:func:`zvonok.crm.mailparse.match`) is logged on their timeline; the rest is ignored.

How it works: :class:`ImapPoller` wakes every ``poll`` seconds (sooner when a company set a shorter
interval of its own, ``poll_seconds``; a company with a longer one is read when it is due), or at once
when a company's settings change (:class:`~zvonok.crm.events.ImapChanged`: the settings are read from
the database at each poll, so a change needs no restart), and reads each due mailbox in turn with the
standard library's blocking ``imaplib`` in a worker thread (:func:`fetch_new`): SELECT the folder
read-only (nothing is marked seen), ``UID SEARCH UID <last+1>:* SINCE <day>``, then at most ``batch``
messages, each as a bounded prefix of its bytes (``BODY.PEEK[]<0.max_fetch>``: a large attachment is
never read whole). Back on the loop the messages are parsed and matched, and the matched ones are
written in the same transaction that moves the mailbox's ``last_uid``: a message is logged once,
restart or not. A folder whose UIDVALIDITY changed (RFC 3501 §2.3.1.1: its UIDs mean other messages
now) is read again from ``since``; the unique Message-ID per tenant keeps what was logged from being
logged twice. A failure (connection, login, folder) is kept in ``last_error`` for the admin, without the
password, and the next poll tries again.
"""

from __future__ import annotations

import asyncio
import imaplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.logs import get_logger
from zvonok.mail.outbox import wait_woken
from zvonok.storage.db import Database

from .mailparse import Inbound, match, parse
from .models import CrmEmail, CrmImap, CrmMessage

log = get_logger(__name__)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class ImapFailure(Exception):
    """The server refused a step (login, select, search): the message says which."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ImapAccount:
    host: str
    port: int
    security: str  # none | starttls | tls
    username: str
    password: str
    folder: str = "INBOX"


@dataclass(frozen=True, slots=True)
class Fetched:
    uidvalidity: int
    messages: list[tuple[int, bytes]]  # (uid, the message's first max_fetch bytes), by UID


def imap_date(day: datetime) -> str:
    """RFC 3501 ``date`` (``4-Dec-2026``), independent of the process's locale."""
    return f"{day.day}-{MONTHS[day.month - 1]}-{day.year}"


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(typ: str, data: Sequence[object], step: str) -> None:
    if typ != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise ImapFailure(f"{step}: {typ} {detail}".strip()[:300])


def _login(account: ImapAccount, timeout: float) -> imaplib.IMAP4:
    conn: imaplib.IMAP4
    if account.security == "tls":
        conn = imaplib.IMAP4_SSL(account.host, account.port, ssl_context=ssl.create_default_context(),
                                 timeout=timeout)
    else:
        conn = imaplib.IMAP4(account.host, account.port, timeout=timeout)
    try:
        if account.security == "starttls":
            conn.starttls(ssl.create_default_context())
        try:
            conn.login(account.username, account.password)
        except imaplib.IMAP4.error as exc:
            raise ImapFailure(f"login refused: {exc}") from None
    except BaseException:
        _logout(conn)
        raise
    return conn


def _logout(conn: imaplib.IMAP4) -> None:
    try:
        conn.logout()
    except (OSError, imaplib.IMAP4.error):
        pass


def check_mailbox(account: ImapAccount, *, timeout: float = 10.0) -> int:
    """Blocking: log in and open the folder read-only, as a poll would, and read nothing (the settings
    page's "Test connection"); the folder's message count. Raises :class:`ImapFailure` or ``OSError``."""
    conn = _login(account, timeout)
    try:
        typ, data = conn.select(_quoted(account.folder), readonly=True)
        _check(typ, data, f"select {account.folder}")
        first = data[0] if data else b"0"
        return int(first) if isinstance(first, bytes) and first.strip().isdigit() else 0
    finally:
        _logout(conn)


def fetch_new(account: ImapAccount, uidvalidity: int | None, last_uid: int, since: datetime, *, batch: int = 50,
              max_fetch: int = 512 * 1024, timeout: float = 30.0) -> Fetched:
    """Blocking: the messages after ``last_uid`` (all since ``since`` when the folder's UIDVALIDITY is not
    ``uidvalidity``), at most ``batch``, oldest first. Run it in a thread."""
    conn = _login(account, timeout)
    try:
        typ, data = conn.select(_quoted(account.folder), readonly=True)
        _check(typ, data, f"select {account.folder}")
        # imaplib keeps the untagged OK [UIDVALIDITY n] of the SELECT as its value alone
        found = [v for v in conn.response("UIDVALIDITY")[1] if isinstance(v, bytes) and v.strip().isdigit()]
        if not found:
            raise ImapFailure("the server named no UIDVALIDITY")
        validity = int(found[-1])
        if validity != uidvalidity:
            last_uid = 0
        typ, data = conn.uid("SEARCH", f"UID {last_uid + 1}:* SINCE {imap_date(since)}")
        _check(typ, data, "search")
        # "n:*" names the last message even when its UID is below n (RFC 3501 §6.4.8): filter
        uids = sorted(u for u in (int(x) for x in b" ".join(d for d in data if isinstance(d, bytes)).split())
                      if u > last_uid)[:batch]
        messages = []
        for uid in uids:
            typ, data = conn.uid("FETCH", str(uid), f"(BODY.PEEK[]<0.{max_fetch}>)")
            _check(typ, data, f"fetch {uid}")
            items: Sequence[object] = data
            raw = next((part[1] for part in items if isinstance(part, tuple) and len(part) == 2), None)
            messages.append((uid, raw if isinstance(raw, bytes) else b""))
        return Fetched(validity, messages)
    finally:
        _logout(conn)


class ImapPoller:
    """One per process, over every company's mailbox (module docstring)."""

    def __init__(self, db: Database, *, poll: float = 60.0, batch: int = 50, max_fetch: int = 512 * 1024,
                 timeout: float = 30.0) -> None:
        self.db = db
        self.poll = poll
        self.batch = batch
        self.max_fetch = max_fetch
        self.timeout = timeout
        self.next_wait = poll
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.run_once()
            except Exception:  # noqa: BLE001 - the job goes on; the next poll tries again
                log.exception("crm imap poller failed")
                self.next_wait = self.poll
            await wait_woken(self._wake, stopping, self.next_wait)

    async def due(self, now: datetime) -> list[int]:
        """The enabled mailboxes to read now: those on the platform's interval, those whose own interval
        (``poll_seconds``) has passed since their last read, and those never read (a changed setting
        clears ``polled_at``). Sets :attr:`next_wait`, the seconds until the next one is due."""
        async with self.db.session() as session:
            rows = (await session.execute(select(CrmImap.tenant_id, CrmImap.poll_seconds, CrmImap.polled_at)
                                          .where(CrmImap.enabled.is_(True)).order_by(CrmImap.tenant_id))).tuples().all()
        tenants: list[int] = []
        wait = self.poll
        for tenant_id, interval, polled_at in rows:
            if interval is None or polled_at is None:
                tenants.append(tenant_id)
                continue
            left = (polled_at + timedelta(seconds=interval) - now).total_seconds()
            if left <= 0:
                tenants.append(tenant_id)
                left = interval
            wait = min(wait, max(1.0, left))
        self.next_wait = wait
        return tenants

    async def run_once(self, now: datetime | None = None) -> int:
        """Read every due mailbox once (until a batch comes back short); how many messages were logged."""
        tenants = await self.due(now or datetime.now(UTC))
        logged = 0
        for tenant_id in tenants:
            while True:
                count, more = await self.poll_tenant(tenant_id)
                logged += count
                if not more:
                    break
        return logged

    async def poll_tenant(self, tenant_id: int) -> tuple[int, bool]:
        """One batch of one company's mailbox: (messages logged, whether a full batch came back)."""
        async with self.db.session() as session:
            row = (await session.execute(select(CrmImap).where(CrmImap.tenant_id == tenant_id))).scalar_one_or_none()
            if row is None or not row.enabled:
                return 0, False
            account = ImapAccount(host=row.host, port=row.port, security=row.security, username=row.username,
                                  password=row.password, folder=row.folder)
            state = (row.uidvalidity, row.last_uid, row.since - timedelta(days=1), row.updated_at)
        try:
            fetched = await asyncio.to_thread(fetch_new, account, state[0], state[1], state[2], batch=self.batch,
                                              max_fetch=self.max_fetch, timeout=self.timeout)
            parsed = await asyncio.to_thread(lambda: [(uid, parse(raw)) for uid, raw in fetched.messages])
        except (OSError, imaplib.IMAP4.error, ImapFailure) as exc:
            error = (str(exc) or type(exc).__name__)[:500]
            log.info("crm imap poll failed", tenant=tenant_id, error=error)
            async with self.db.session() as session:
                row = (await session.execute(select(CrmImap).where(CrmImap.tenant_id == tenant_id))).scalar_one_or_none()
                if row is not None and row.updated_at == state[3]:
                    row.last_error, row.polled_at = error, datetime.now(UTC)
                    await session.commit()
            return 0, False
        async with self.db.session() as session:
            row = (await session.execute(select(CrmImap).where(CrmImap.tenant_id == tenant_id))).scalar_one_or_none()
            if row is None or row.updated_at != state[3]:
                return 0, False  # changed while we read: the next poll reads the new mailbox
            logged = await self._log(session, tenant_id, [m for _, m in parsed])
            if fetched.uidvalidity != row.uidvalidity:
                row.uidvalidity, row.last_uid = fetched.uidvalidity, 0
            if fetched.messages:
                row.last_uid = max(row.last_uid, max(uid for uid, _ in fetched.messages))
            row.polled_at, row.last_error = datetime.now(UTC), None
            # the poll's own bookkeeping must not look like a change of the settings to the next poll
            row.updated_at = state[3]
            await session.commit()
        if logged:
            log.info("crm replies logged", tenant=tenant_id, count=logged)
        return logged, len(fetched.messages) >= self.batch

    async def _log(self, session: AsyncSession, tenant_id: int, mails: list[Inbound]) -> int:
        if not mails:
            return 0
        refs = {i for m in mails for i in m.replies_to}
        ours: dict[str, int] = {}
        ours_at: dict[str, datetime] = {}
        ours_id: dict[str, int] = {}
        if refs:
            for ident, msgid, owner, sent in (await session.execute(
                    select(CrmMessage.id, CrmMessage.message_id, CrmMessage.client_id, CrmMessage.at).where(
                        CrmMessage.tenant_id == tenant_id, CrmMessage.message_id.in_(refs)))).tuples():
                if msgid is not None:
                    ours[msgid] = owner
                    ours_at[msgid] = sent
                    ours_id[msgid] = ident
        senders = {m.from_addr for m in mails if m.from_addr}
        by_address = dict((await session.execute(select(CrmEmail.address, CrmEmail.client_id).where(
            CrmEmail.tenant_id == tenant_id, CrmEmail.address.in_(senders)))).tuples().all()) if senders else {}
        ids = {m.message_id for m in mails if m.message_id}
        seen = set((await session.execute(select(CrmMessage.message_id).where(
            CrmMessage.tenant_id == tenant_id, CrmMessage.message_id.in_(ids)))).scalars()) if ids else set()
        now = datetime.now(UTC)
        logged = 0
        for mail in mails:
            client_id = match(mail, ours, by_address)
            if client_id is None or (mail.message_id is not None and mail.message_id in seen):
                continue
            if mail.message_id is not None:
                seen.add(mail.message_id)
            at = min(mail.date, now) if mail.date is not None else now
            # a Date header counts whole seconds: a reply written within the second of our message reads as
            # older than it. Such a reply goes just after the message it answers (a Date further back is the
            # sender's clock, kept as it is)
            answered = max((ours_at[r] for r in mail.replies_to if r in ours_at), default=None)
            if answered is not None and answered - timedelta(seconds=1) < at <= answered:
                at = answered + timedelta(microseconds=1)
            # the thread: the nearest message it answers that we have (In-Reply-To first), of the same client
            parent = next((ours_id[r] for r in mail.replies_to if r in ours_id and ours[r] == client_id), None)
            session.add(CrmMessage(tenant_id=tenant_id, client_id=client_id, direction="in", from_addr=mail.from_addr,
                                   to_addr=mail.to_addr, subject=mail.subject, body=mail.text,
                                   message_id=mail.message_id, at=at, status="received", attempts=0,
                                   in_reply_to_id=parent, thread_refs=" ".join(mail.references) or None))
            logged += 1
        await session.flush()
        return logged
