"""Voicemail to e-mail: the mail outbox's ``voicemail`` letters (:mod:`zvonok.mail.outbox` sends them).

Storing a message whose mailbox has an address queues a letter in the same transaction
(:meth:`zvonok.voicemail.service.VoicemailStore.store`); :func:`compose_voicemail` writes it when the job
sends it: subject and body from :data:`TEMPLATES` in the company's language (``ru`` or ``en``) with the
caller, the mailbox, the time in the company's time zone and the length, the message attached as WAV,
or as MP3 where the mailbox asks (``attach_format``; encoded by :mod:`zvonok.media.mp3` in a thread).
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.mail.outbox import Attachment, Company, Composer, Draft
from zvonok.media.mp3 import wav_to_mp3
from zvonok.media.prompts import prompt_language
from zvonok.org.models import Extension

from .models import Mailbox, VoicemailMessage
from .service import VoicemailFiles

KIND = "voicemail"

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


def compose_voicemail(files: VoicemailFiles) -> Composer:
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
        path = files.message(msg.path)
        if box.attach_format == "mp3":
            audio = Attachment(filename=f"voicemail-{stamp}.mp3", maintype="audio", subtype="mpeg",
                               data=await asyncio.to_thread(wav_to_mp3, path))
        else:
            audio = Attachment(filename=f"voicemail-{stamp}.wav", maintype="audio", subtype="wav", path=path)
        return Draft(subject=template["subject"].format(**fields), body=template["body"].format(**fields),
                     attachments=(audio,))

    return compose

