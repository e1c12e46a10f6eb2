"""Mailboxes and messages in one tenant (the tenant is the first argument after the session), their files,
and the port the call engine reads and writes them through (:class:`VoicemailStore`, no SQL in telephony).

Files live under ``<data_dir>/voicemail/<tenant>/<mailbox>/``: a message is ``<call id>.wav`` (the
caller's leg, 8 kHz mono 16-bit) and the row keeps its path relative to ``<data_dir>/voicemail``; the
greetings are ``greeting-busy.wav`` and ``greeting-unavailable.wav``, uploaded WAV/MP3 converted to
8 kHz as music on hold is (:func:`zvonok.media.hold_music.convert`). Services flush but never commit;
each change of a mailbox's messages queues a :class:`~zvonok.voicemail.events.MailboxChanged`
delivered after the commit (MWI, e-mail).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.mail.outbox import enqueue
from zvonok.media.hold_music import HoldMusicError, convert, write_wav
from zvonok.org.errors import NotFound, ValidationError
from zvonok.org.models import Extension
from zvonok.org.pins import hash_pin_in_thread
from zvonok.org.scope import get_in_tenant
from zvonok.storage.db import Database, emit
from zvonok.telephony.voicemail import MailboxInfo, MessageInfo, NewMessage

from . import schemas
from .events import MailboxChanged
from .models import Mailbox, VoicemailMessage

GREETING_KINDS = ("busy", "unavailable")
MAX_GREETING_SECONDS = 60.0
MAX_GREETING_UPLOAD = 16 * 1024 * 1024


class VoicemailFiles:
    """Where mailboxes keep their files (``<data_dir>/voicemail``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mailbox_dir(self, tenant_id: int, mailbox_id: int) -> Path:
        return self.root / str(int(tenant_id)) / str(int(mailbox_id))

    def greeting(self, tenant_id: int, mailbox_id: int, kind: str) -> Path:
        if kind not in GREETING_KINDS:
            raise ValueError(f"no greeting {kind!r}")
        return self.mailbox_dir(tenant_id, mailbox_id) / f"greeting-{kind}.wav"

    def message(self, stored: str) -> Path:
        path = (self.root / stored).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError("a message path outside the voicemail directory")
        return path

    def relative(self, path: Path) -> str:
        return str(path.resolve().relative_to(self.root.resolve()))


# -- mailboxes ---------------------------------------------------------------------------------------------
async def _counts(session: AsyncSession, tenant_id: int, mailbox_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(new, old) messages by mailbox: new = unread in the inbox, old = the rest (RFC 3842's words)."""
    if not mailbox_ids:
        return {}
    rows = (await session.execute(
        select(VoicemailMessage.mailbox_id, VoicemailMessage.read, func.count())
        .where(VoicemailMessage.tenant_id == tenant_id, VoicemailMessage.mailbox_id.in_(mailbox_ids))
        .group_by(VoicemailMessage.mailbox_id, VoicemailMessage.read))).all()
    counts: dict[int, list[int]] = {}
    for mailbox_id, read, count in rows:
        counts.setdefault(mailbox_id, [0, 0])[1 if read else 0] += int(count)
    return {k: (v[0], v[1]) for k, v in counts.items()}


async def counts(session: AsyncSession, tenant_id: int, mailbox_id: int) -> tuple[int, int]:
    return (await _counts(session, tenant_id, [mailbox_id])).get(mailbox_id, (0, 0))


async def mailbox_out(session: AsyncSession, box: Mailbox, number: str) -> schemas.MailboxOut:
    new, old = await counts(session, box.tenant_id, box.id)
    return schemas.MailboxOut(id=box.id, tenant_id=box.tenant_id, extension_id=box.extension_id, number=number,
                              enabled=box.enabled, has_pin=box.pin_hash is not None, email=box.email,
                              attach_format=box.attach_format, email_audio=box.email_audio,
                              delete_after_email=box.delete_after_email,
                              max_message_seconds=box.max_message_seconds, silence_seconds=box.silence_seconds,
                              greeting_busy=box.greeting_busy, greeting_unavailable=box.greeting_unavailable,
                              new_messages=new, old_messages=old)


async def get_mailbox(session: AsyncSession, tenant_id: int, extension_id: int) -> tuple[Mailbox, Extension]:
    """The mailbox of an extension of the tenant (NotFound when it has none, or is another tenant's)."""
    ext = await get_in_tenant(session, Extension, tenant_id, extension_id, "extension")
    box = (await session.execute(select(Mailbox).where(Mailbox.tenant_id == tenant_id,
                                                       Mailbox.extension_id == ext.id))).scalar_one_or_none()
    if box is None:
        raise NotFound(f"extension {extension_id} has no mailbox")
    return box, ext


async def put_mailbox(session: AsyncSession, tenant_id: int, extension_id: int,
                      data: schemas.MailboxIn) -> tuple[Mailbox, Extension]:
    """Create or replace an extension's mailbox settings (the PIN is kept when left out)."""
    ext = await get_in_tenant(session, Extension, tenant_id, extension_id, "extension")
    box = (await session.execute(select(Mailbox).where(Mailbox.tenant_id == tenant_id,
                                                       Mailbox.extension_id == ext.id))).scalar_one_or_none()
    if box is None:
        box = Mailbox(tenant_id=tenant_id, extension_id=ext.id)
        session.add(box)
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    box.enabled = data.enabled
    box.email = data.email
    box.attach_format = data.attach_format
    box.email_audio = data.email_audio
    box.delete_after_email = data.delete_after_email
    box.max_message_seconds = data.max_message_seconds
    box.silence_seconds = data.silence_seconds
    if "pin" in changes:
        box.pin_hash = await hash_pin_in_thread(data.pin) if data.pin else None
    await session.flush()
    emit(session, MailboxChanged(tenant_id=tenant_id, mailbox_id=box.id, extension_id=ext.id))
    return box, ext


async def delete_mailbox(session: AsyncSession, files: VoicemailFiles, tenant_id: int, extension_id: int) -> Path:
    """Delete the mailbox and its messages' rows; its directory, returned, is the caller's to remove once
    the deletion is committed (:func:`remove_tree`)."""
    box, ext = await get_mailbox(session, tenant_id, extension_id)
    directory = files.mailbox_dir(tenant_id, box.id)
    await session.delete(box)
    await session.flush()
    emit(session, MailboxChanged(tenant_id=tenant_id, mailbox_id=box.id, extension_id=ext.id))
    return directory


def remove_tree(directory: Path) -> None:
    """A mailbox's directory (its files only: nothing nests). Blocking: run it in a thread."""
    if directory.is_dir():
        for path in directory.iterdir():
            path.unlink(missing_ok=True)
        directory.rmdir()


async def store_greeting(session: AsyncSession, files: VoicemailFiles, tenant_id: int, extension_id: int,
                         kind: str, data: bytes | None) -> Mailbox:
    """Upload (WAV/MP3/FLAC/Ogg, converted to 8 kHz mono) or, with ``data`` None, remove a greeting."""
    if kind not in GREETING_KINDS:
        raise NotFound(f"no greeting {kind!r}")
    box, _ext = await get_mailbox(session, tenant_id, extension_id)
    path = files.greeting(tenant_id, box.id, kind)
    if data is None:
        await asyncio.to_thread(path.unlink, True)
        setattr(box, f"greeting_{kind}", False)
    else:
        if len(data) > MAX_GREETING_UPLOAD:
            raise ValidationError("file: larger than 16 MiB", field="file")
        try:
            samples = await asyncio.to_thread(convert, data)
        except HoldMusicError as exc:
            raise ValidationError(f"file: {exc}", field="file") from None
        samples = samples[: int(MAX_GREETING_SECONDS * 8000)]
        await asyncio.to_thread(write_wav, path, samples)
        setattr(box, f"greeting_{kind}", True)
    await session.flush()
    return box


async def greeting_file(session: AsyncSession, files: VoicemailFiles, tenant_id: int, extension_id: int,
                        kind: str) -> Path:
    """The uploaded or recorded greeting ``kind`` of an extension's mailbox (NotFound: none, the built-in)."""
    if kind not in GREETING_KINDS:
        raise NotFound(f"no greeting {kind!r}")
    box, _ext = await get_mailbox(session, tenant_id, extension_id)
    path = files.greeting(tenant_id, box.id, kind)
    if not getattr(box, f"greeting_{kind}") or not await asyncio.to_thread(path.is_file):
        raise NotFound(f"mailbox of extension {extension_id} has no {kind} greeting of its own")
    return path


# -- messages ----------------------------------------------------------------------------------------------
def message_out(msg: VoicemailMessage, number: str) -> schemas.MessageOut:
    return schemas.MessageOut(id=msg.id, mailbox_id=msg.mailbox_id, number=number, caller_number=msg.caller_number,
                              caller_name=msg.caller_name, received_at=msg.received_at, duration=msg.duration,
                              read=msg.read, folder=msg.folder)  # type: ignore[arg-type]


async def list_messages(session: AsyncSession, tenant_id: int, *, extension_ids: Collection[int] | None = None,
                        limit: int, offset: int) -> tuple[list[tuple[VoicemailMessage, str]], int]:
    """Messages of the tenant (of these extensions' mailboxes if given), newest first, with the number."""
    where = [VoicemailMessage.tenant_id == tenant_id]
    if extension_ids is not None:
        where.append(Mailbox.extension_id.in_(list(extension_ids)))
    base = (select(VoicemailMessage, Extension.number)
            .join(Mailbox, Mailbox.id == VoicemailMessage.mailbox_id)
            .join(Extension, Extension.id == Mailbox.extension_id).where(*where))
    total = int((await session.execute(select(func.count()).select_from(base.subquery()))).scalar_one())
    rows = (await session.execute(base.order_by(VoicemailMessage.received_at.desc(), VoicemailMessage.id.desc())
                                  .limit(limit).offset(offset))).all()
    return [(row[0], row[1]) for row in rows], total


async def get_message(session: AsyncSession, tenant_id: int, message_id: int, *,
                      extension_ids: Collection[int] | None = None) -> tuple[VoicemailMessage, Mailbox, str]:
    """One message of the tenant (of these extensions' mailboxes if given); NotFound otherwise."""
    stmt = (select(VoicemailMessage, Mailbox, Extension.number)
            .join(Mailbox, Mailbox.id == VoicemailMessage.mailbox_id)
            .join(Extension, Extension.id == Mailbox.extension_id)
            .where(VoicemailMessage.tenant_id == tenant_id, VoicemailMessage.id == message_id))
    if extension_ids is not None:
        stmt = stmt.where(Mailbox.extension_id.in_(list(extension_ids)))
    row = (await session.execute(stmt)).first()
    if row is None:
        raise NotFound(f"message {message_id} not found")
    return row[0], row[1], row[2]


async def update_message(session: AsyncSession, tenant_id: int, message_id: int, *, read: bool | None = None,
                         folder: str | None = None,
                         extension_ids: Collection[int] | None = None) -> tuple[VoicemailMessage, str]:
    msg, box, number = await get_message(session, tenant_id, message_id, extension_ids=extension_ids)
    if read is not None:
        msg.read = read
    if folder is not None:
        msg.folder = folder
    await session.flush()
    emit(session, MailboxChanged(tenant_id=tenant_id, mailbox_id=box.id, extension_id=box.extension_id))
    return msg, number


async def delete_message(session: AsyncSession, files: VoicemailFiles, tenant_id: int, message_id: int, *,
                         extension_ids: Collection[int] | None = None) -> Path:
    """Delete the row; its file, returned, is the caller's to remove once the deletion is committed."""
    msg, box, _number = await get_message(session, tenant_id, message_id, extension_ids=extension_ids)
    path = files.message(msg.path)
    await session.delete(msg)
    await session.flush()
    emit(session, MailboxChanged(tenant_id=tenant_id, mailbox_id=box.id, extension_id=box.extension_id))
    return path


async def mailbox_counts_by_extension(session: AsyncSession, tenant_id: int, extension_id: int) -> tuple[int, int] | None:
    """(new, old) of an extension's mailbox, None without one (MWI)."""
    box_id = (await session.execute(select(Mailbox.id).where(
        Mailbox.tenant_id == tenant_id, Mailbox.extension_id == extension_id, Mailbox.enabled))).scalar_one_or_none()
    if box_id is None:
        return None
    return await counts(session, tenant_id, box_id)


# -- the call engine's port ----------------------------------------------------------------------------
class VoicemailStore:
    """:class:`~zvonok.telephony.voicemail.MailboxPort` on the database and the data directory."""

    def __init__(self, db: Database, files: VoicemailFiles) -> None:
        self.db = db
        self.files = files

    def _info(self, box: Mailbox, number: str) -> MailboxInfo:
        greetings = {kind: self.files.greeting(box.tenant_id, box.id, kind) for kind in GREETING_KINDS
                     if getattr(box, f"greeting_{kind}")}
        return MailboxInfo(id=box.id, tenant_id=box.tenant_id, number=number, extension_id=box.extension_id,
                           enabled=box.enabled, pin_hash=box.pin_hash, max_message_seconds=box.max_message_seconds,
                           silence_seconds=box.silence_seconds, greetings=greetings,
                           directory=self.files.mailbox_dir(box.tenant_id, box.id))

    async def mailbox(self, tenant_id: int, number: str) -> MailboxInfo | None:
        async with self.db.session() as session:
            row = (await session.execute(
                select(Mailbox, Extension.number).join(Extension, Extension.id == Mailbox.extension_id)
                .where(Mailbox.tenant_id == tenant_id, Extension.tenant_id == tenant_id,
                       Extension.number == number))).first()
        return self._info(row[0], row[1]) if row is not None else None

    async def store(self, box: MailboxInfo, message: NewMessage) -> int:
        async with self.db.session() as session:
            msg = VoicemailMessage(tenant_id=box.tenant_id, mailbox_id=box.id, caller_number=message.caller_number[:64],
                                   caller_name=message.caller_name[:200], received_at=datetime.now(UTC),
                                   duration=message.duration, path=self.files.relative(message.file),
                                   call_id=message.call_id)
            email = (await session.execute(select(Mailbox.email).where(
                Mailbox.tenant_id == box.tenant_id, Mailbox.id == box.id))).scalar_one_or_none()
            session.add(msg)
            await session.flush()
            if email:  # voicemail to e-mail: the outbox's job sends it, never the call
                enqueue(session, box.tenant_id, "voicemail", msg.id, [email])
            emit(session, MailboxChanged(tenant_id=box.tenant_id, mailbox_id=box.id, extension_id=box.extension_id,
                                         new_message_id=msg.id))
            await session.commit()
            return msg.id

    async def messages(self, box: MailboxInfo) -> list[MessageInfo]:
        """Inbox before saved, unread first, newest first within each."""
        async with self.db.session() as session:
            rows = (await session.execute(select(VoicemailMessage).where(
                VoicemailMessage.tenant_id == box.tenant_id, VoicemailMessage.mailbox_id == box.id))).scalars().all()
        rows = sorted(rows, key=lambda m: (m.folder != "inbox", m.read, -m.received_at.timestamp(), -m.id))
        return [MessageInfo(id=m.id, path=self.files.message(m.path), folder=m.folder, read=m.read) for m in rows]

    async def update(self, box: MailboxInfo, message_id: int, *, read: bool | None = None,
                     folder: str | None = None) -> None:
        async with self.db.session() as session:
            try:
                await update_message(session, box.tenant_id, message_id, read=read, folder=folder,
                                     extension_ids=[box.extension_id])
            except NotFound:
                return
            await session.commit()

    async def save_greeting(self, box: MailboxInfo, kind: str, file: Path) -> None:
        target = self.files.greeting(box.tenant_id, box.id, kind)
        await asyncio.to_thread(os.replace, file, target)
        async with self.db.session() as session:
            row = (await session.execute(select(Mailbox).where(Mailbox.tenant_id == box.tenant_id,
                                                               Mailbox.id == box.id))).scalar_one_or_none()
            if row is not None:
                setattr(row, f"greeting_{kind}", True)
                await session.commit()

    async def delete(self, box: MailboxInfo, message_id: int) -> None:
        async with self.db.session() as session:
            try:
                path = await delete_message(session, self.files, box.tenant_id, message_id,
                                            extension_ids=[box.extension_id])
            except NotFound:
                return
            await session.commit()
        await asyncio.to_thread(path.unlink, True)


def mwi_counts(db: Database) -> Callable[[int, int], Awaitable[tuple[int, int] | None]]:
    """The MWI adapter's port: (new, old) of an extension's mailbox, None without an enabled one."""

    async def counts(tenant_id: int, extension_id: int) -> tuple[int, int] | None:
        async with db.session() as session:
            return await mailbox_counts_by_extension(session, tenant_id, extension_id)

    return counts
