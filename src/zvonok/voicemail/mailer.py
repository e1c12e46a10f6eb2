"""Voicemail to e-mail: the mail outbox's ``voicemail`` letters (:mod:`zvonok.mail.outbox` sends them).

Storing a message whose mailbox has an address queues a letter in the same transaction
(:meth:`zvonok.voicemail.service.VoicemailStore.store`); :func:`compose_voicemail` writes it when the job
sends it: subject and body from :data:`TEMPLATES` in the company's language (``ru`` or ``en``) with the
caller, the mailbox, the time in the company's time zone and the length, the message attached as WAV,
or as MP3 where the mailbox asks (``attach_format``; encoded by :mod:`zvonok.media.mp3` in a thread).

A mailbox with ``email_audio = "link"`` gets no attachment: the body says where to listen (the web
portal's ``/me`` page, under ``ZVONOK_WEB_URL`` when it is set). A mailbox with ``delete_after_email``
loses the message once its letter went (:func:`report_voicemail`, the outbox's reporter for the kind:
the row in the outbox's transaction, the file after it, as a deletion through the API does).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.logs import get_logger
from zvonok.mail.models import OutboxLetter
from zvonok.mail.outbox import Attachment, Company, Composer, Draft, Reporter
from zvonok.media.mp3 import wav_to_mp3
from zvonok.media.prompts import prompt_language
from zvonok.org.models import Extension

from .models import Mailbox, VoicemailMessage
from .service import VoicemailFiles, delete_message

log = get_logger(__name__)
KIND = "voicemail"

TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "subject": "New voicemail from {caller} ({seconds} s)",
        "body": "You have a new voicemail message in mailbox {mailbox}.\n\n"
                "From: {caller}\nReceived: {time}\nLength: {seconds} s\n\n",
        "attached": "The recording is attached. Dial *97 from your phone to listen to your messages.\n",
        "link": "Listen to it in the web portal: {link}\nor dial *97 from your phone.\n",
    },
    "ru": {
        "subject": "Новое голосовое сообщение от {caller} ({seconds} с)",
        "body": "В голосовом ящике {mailbox} новое сообщение.\n\n"
                "От: {caller}\nПолучено: {time}\nДлительность: {seconds} с\n\n",
        "attached": "Запись во вложении. Чтобы прослушать сообщения с телефона, наберите *97.\n",
        "link": "Прослушать его можно на веб-портале: {link}\nили с телефона, набрав *97.\n",
    },
}


def compose_voicemail(files: VoicemailFiles, web_url: str | None = None) -> Composer:
    """``web_url``: the portal's public address, for the link of a mailbox that wants no attachment."""

    async def compose(session: AsyncSession, company: Company, ref_id: int) -> Draft | None:
        row = (await session.execute(
            select(VoicemailMessage, Mailbox, Extension.number)
            .join(Mailbox, Mailbox.id == VoicemailMessage.mailbox_id)
            .join(Extension, Extension.id == Mailbox.extension_id)
            .where(VoicemailMessage.tenant_id == company.id, VoicemailMessage.id == ref_id))).first()
        if row is None:
            return None  # deleted before it went
        msg, box, number = row
        template = TEMPLATES.get(prompt_language(company.language), TEMPLATES["en"])
        caller = f"{msg.caller_name} <{msg.caller_number}>" if msg.caller_name else msg.caller_number
        fields = {"caller": caller or "?", "mailbox": number, "time": company.local(msg.received_at),
                  "seconds": f"{msg.duration:.0f}"}
        stamp = msg.received_at.astimezone(company.zone).strftime("%Y%m%d-%H%M%S")
        body = template["body"].format(**fields)
        if box.email_audio == "link":
            link = f"{web_url.rstrip('/')}/me#voicemail-message-{msg.id}" if web_url else "/me"
            return Draft(subject=template["subject"].format(**fields), body=body + template["link"].format(link=link))
        path = files.message(msg.path)
        if box.attach_format == "mp3":
            audio = Attachment(filename=f"voicemail-{stamp}.mp3", maintype="audio", subtype="mpeg",
                               data=await asyncio.to_thread(wav_to_mp3, path))
        else:
            audio = Attachment(filename=f"voicemail-{stamp}.wav", maintype="audio", subtype="wav", path=path)
        return Draft(subject=template["subject"].format(**fields), body=body + template["attached"],
                     attachments=(audio,))

    return compose


def report_voicemail(files: VoicemailFiles) -> Reporter:
    """After each try of a voicemail letter: once it is sent, a mailbox with ``delete_after_email`` loses
    the message (the row now, in the outbox's transaction; the file in a thread)."""

    async def report(session: AsyncSession, letter: OutboxLetter, error: str | None) -> None:
        if letter.state != "sent":
            return
        row = (await session.execute(
            select(Mailbox.delete_after_email & (Mailbox.email_audio == "attach"), Mailbox.extension_id)
            .join(VoicemailMessage, VoicemailMessage.mailbox_id == Mailbox.id)
            .where(VoicemailMessage.tenant_id == letter.tenant_id, VoicemailMessage.id == letter.ref_id))).first()
        if row is None or not row[0]:
            return
        path: Path = await delete_message(session, files, letter.tenant_id, letter.ref_id, extension_ids=[row[1]])
        # the letter with the recording is out: a file left behind by a failed commit is only disk space
        await asyncio.to_thread(path.unlink, True)
        log.info("voicemail deleted after e-mail", tenant=letter.tenant_id, message=letter.ref_id)

    return report

