"""Voicemail to e-mail with a local SMTP server (aiosmtpd): the message arrives with its WAV attached
(the same audio), subject and body in the company's language; failures are retried with backoff and
end as failed; a company's own SMTP server is used instead of the platform's."""

from __future__ import annotations

import email
import io
import socket
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

import numpy as np
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from test_pstn_support import make_company, ok
from test_voicemail_api import leave, store_of

from zvonok.mail.models import OutboxLetter, TenantSmtp
from zvonok.mail.outbox import Outbox, SmtpServer
from zvonok.media.tones import dominant_frequency
from zvonok.voicemail.mailer import compose_voicemail, report_voicemail
from zvonok.voicemail.models import VoicemailMessage

Api = Any


class Inbox:
    def __init__(self) -> None:
        self.mails: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtpd() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def mailer(api: Api, server: SmtpServer | None, web_url: str | None = None) -> Outbox:
    outbox = Outbox(api.db, server, retry_base=30.0, max_attempts=3)
    files = store_of(api).files
    outbox.register("voicemail", compose_voicemail(files, web_url), report_voicemail(files))
    return outbox


async def company_with_mailbox(api: Api, make_tenant: Any, domain: str, locale: str) -> Any:
    c = await make_company(api, make_tenant, domain)
    await ok(await api.client.patch(f"/api/v1/tenants/{c.id}", headers=api.admin, json={"locale": locale}))
    await ok(await api.client.put(f"{c.base}/extensions/{c.ext_alice}/voicemail", headers=c.headers,
                                  json={"pin": "4711", "email": f"alice@{domain}"}))
    return c


async def email_state(api: Api, message_id: int) -> tuple[str, int, datetime | None]:
    """The outbox letter of a message: its state, attempts and when it is next due ("none": no letter)."""
    async with api.db.session() as session:
        row = (await session.execute(select(OutboxLetter).where(
            OutboxLetter.kind == "voicemail", OutboxLetter.ref_id == message_id))).scalar_one_or_none()
        if row is None:
            return "none", 0, None
        return row.state, row.attempts, row.next_at


def attachment_audio(mail: Message) -> np.ndarray:
    (part,) = [p for p in mail.walk() if p.get_content_type() == "audio/wav"]
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    with wave.open(io.BytesIO(data), "rb") as reader:
        assert (reader.getframerate(), reader.getnchannels()) == (8000, 1)
        return np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")


async def test_message_is_mailed_with_its_audio_in_russian(api: Api, make_tenant: Any,
                                                           smtpd: tuple[Inbox, int]) -> None:
    inbox, port = smtpd
    c = await company_with_mailbox(api, make_tenant, "mail.example", "ru-RU")
    message = await leave(api, c.id, "101", caller="+74951234567", seconds=2.0)
    assert (await email_state(api, message))[0] == "pending"
    job = mailer(api, SmtpServer(host="127.0.0.1", port=port, sender="pbx@mail.example"))
    assert await job.run_once() == 1
    ((sender, rcpts, mail),) = inbox.mails
    assert (sender, rcpts) == ("pbx@mail.example", ["alice@mail.example"])
    subject = str(email.header.make_header(email.header.decode_header(mail["Subject"])))
    assert subject == "Новое голосовое сообщение от Ivan <+74951234567> (2 с)"
    body = next(p for p in mail.walk() if p.get_content_type() == "text/plain").get_payload(decode=True)
    assert isinstance(body, bytes) and "В голосовом ящике 101" in body.decode()
    audio = attachment_audio(mail)
    assert abs(len(audio) / 8000 - 2.0) < 0.01
    assert abs(dominant_frequency(audio) - 600.0) < 5  # the message's own audio (test_voicemail_api.wav_bytes)
    assert (await email_state(api, message))[:2] == ("sent", 1)
    assert await job.run_once() == 0  # sent once only


async def test_failures_are_retried_then_failed(api: Api, make_tenant: Any) -> None:
    c = await company_with_mailbox(api, make_tenant, "retry.example", "en-US")
    message = await leave(api, c.id, "101")
    job = mailer(api, SmtpServer(host="127.0.0.1", port=free_port()))  # nobody listens there
    now = datetime.now(UTC)
    assert await job.run_once(now) == 1
    state, attempts, next_at = await email_state(api, message)
    assert (state, attempts) == ("pending", 1) and next_at is not None
    assert abs((next_at - now).total_seconds() - 30.0) < 1
    assert await job.run_once(now + timedelta(seconds=10)) == 0  # not due yet
    assert await job.run_once(now + timedelta(seconds=31)) == 1
    state, attempts, next_at = await email_state(api, message)
    assert (state, attempts) == ("pending", 2) and next_at is not None
    assert abs((next_at - now).total_seconds() - 91.0) < 1  # 30 s, then 60 s
    assert await job.run_once(now + timedelta(seconds=92)) == 1
    assert (await email_state(api, message))[:2] == ("failed", 3)
    assert await job.run_once(now + timedelta(days=1)) == 0


async def test_company_smtp_overrides_the_platform_and_english(api: Api, make_tenant: Any,
                                                               smtpd: tuple[Inbox, int]) -> None:
    inbox, port = smtpd
    c = await company_with_mailbox(api, make_tenant, "own.example", "en-US")
    async with api.db.session() as session:
        session.add(TenantSmtp(tenant_id=c.id, host="127.0.0.1", port=port, sender="voicemail@own.example"))
        await session.commit()
    await leave(api, c.id, "101", caller="+79160000000", seconds=3.0)
    job = mailer(api, None)  # no platform server: only the company's
    assert await job.run_once() == 1
    ((sender, _rcpts, mail),) = inbox.mails
    assert sender == "voicemail@own.example"
    assert mail["Subject"] == "New voicemail from Ivan <+79160000000> (3 s)"


async def test_no_server_keeps_it_pending_and_no_address_sends_nothing(api: Api, make_tenant: Any) -> None:
    c = await company_with_mailbox(api, make_tenant, "none.example", "en-US")
    message = await leave(api, c.id, "101")
    assert await mailer(api, None).run_once() == 1
    assert (await email_state(api, message))[:2] == ("pending", 0)
    await ok(await api.client.put(f"{c.base}/extensions/{c.ext_alice}/voicemail", headers=c.headers, json={}))
    other = await leave(api, c.id, "101", seconds=1.5)
    assert (await email_state(api, other))[0] == "none"  # the mailbox has no address any more


async def test_a_mailbox_may_ask_for_mp3(api: Api, make_tenant: Any, smtpd: tuple[Inbox, int]) -> None:
    """attach_format mp3: the attachment is an MP3 (LAME through lameenc) a decoder (miniaudio) reads back
    as the message: its length and its 600 Hz tone (FFT), at a fraction of the WAV's size."""
    import miniaudio

    inbox, port = smtpd
    c = await company_with_mailbox(api, make_tenant, "mp3.example", "en-US")
    url = f"{c.base}/extensions/{c.ext_alice}/voicemail"
    r = await api.client.put(url, headers=c.headers, json={"email": "alice@mp3.example", "attach_format": "ogg"})
    assert r.status_code == 422, r.text  # only wav or mp3
    out = await ok(await api.client.put(url, headers=c.headers, json={"email": "alice@mp3.example",
                                                                        "attach_format": "mp3"}))
    assert out["attach_format"] == "mp3"
    assert (await ok(await api.client.get(url, headers=c.headers)))["attach_format"] == "mp3"
    await leave(api, c.id, "101", caller="+79160000000", seconds=3.0)
    assert await mailer(api, SmtpServer(host="127.0.0.1", port=port)).run_once() == 1
    ((_sender, _rcpts, mail),) = inbox.mails
    assert [p.get_content_type() for p in mail.walk() if p.get_filename()] == ["audio/mpeg"]
    (part,) = [p for p in mail.walk() if p.get_content_type() == "audio/mpeg"]
    assert str(part.get_filename()).endswith(".mp3")
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes) and len(data) < 3.0 * 16000 / 5  # the WAV is 16 kB a second
    decoded = miniaudio.decode(data, output_format=miniaudio.SampleFormat.SIGNED16, nchannels=1, sample_rate=8000)
    audio = np.frombuffer(decoded.samples, dtype=np.int16)
    assert abs(len(audio) / 8000 - 3.0) < 0.2  # the encoder's padding is a few frames at most
    assert abs(dominant_frequency(audio) - 600.0) < 5  # the message's own tone
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 0.2 * 32767  # heard at its level, not near silence


def body_of(mail: Message) -> str:
    body = next(p for p in mail.walk() if p.get_content_type() == "text/plain").get_payload(decode=True)
    assert isinstance(body, bytes)
    return body.decode()


async def message_exists(api: Api, message_id: int) -> bool:
    async with api.db.session() as session:
        return (await session.get(VoicemailMessage, message_id)) is not None


async def test_link_only_mails_no_audio_and_keeps_the_message(api: Api, make_tenant: Any,
                                                                smtpd: tuple[Inbox, int]) -> None:
    inbox, port = smtpd
    c = await company_with_mailbox(api, make_tenant, "link.example", "ru-RU")
    url = f"{c.base}/extensions/{c.ext_alice}/voicemail"
    out = await ok(await api.client.put(url, headers=c.headers, json={"email": "alice@link.example",
                                                                        "email_audio": "link"}))
    assert (out["email_audio"], out["delete_after_email"]) == ("link", False)
    message = await leave(api, c.id, "101", seconds=2.0)
    job = mailer(api, SmtpServer(host="127.0.0.1", port=port), web_url="https://pbx.link.example/")
    assert await job.run_once() == 1
    ((_sender, _rcpts, mail),) = inbox.mails
    assert [p for p in mail.walk() if p.get_filename()] == []  # no attachment at all
    body = body_of(mail)
    assert f"https://pbx.link.example/me#voicemail-message-{message}" in body
    assert "веб-портале" in body and "во вложении" not in body
    assert await message_exists(api, message)


async def test_delete_after_email_removes_the_message_once_sent(api: Api, make_tenant: Any,
                                                                 smtpd: tuple[Inbox, int]) -> None:
    inbox, port = smtpd
    c = await company_with_mailbox(api, make_tenant, "del.example", "en-US")
    url = f"{c.base}/extensions/{c.ext_alice}/voicemail"
    await ok(await api.client.put(url, headers=c.headers, json={"email": "alice@del.example",
                                                                  "delete_after_email": True}))
    message = await leave(api, c.id, "101", seconds=2.0)
    box = await store_of(api).mailbox(c.id, "101")
    assert box is not None
    (wav,) = [p for p in box.directory.glob("call-*.wav")]
    # not sent (nobody listens): the message stays
    assert await mailer(api, SmtpServer(host="127.0.0.1", port=free_port())).run_once() == 1
    assert await message_exists(api, message) and wav.exists()
    job = mailer(api, SmtpServer(host="127.0.0.1", port=port))
    assert await job.run_once(datetime.now(UTC) + timedelta(minutes=5)) == 1
    ((_sender, _rcpts, mail),) = inbox.mails
    assert abs(len(attachment_audio(mail)) / 8000 - 2.0) < 0.01  # the recording went with the letter
    assert not await message_exists(api, message)
    assert not wav.exists()
    assert (await email_state(api, message))[0] == "sent"
    # a mailbox without it keeps its messages after the e-mail
    await ok(await api.client.put(url, headers=c.headers, json={"email": "alice@del.example"}))
    kept = await leave(api, c.id, "101", seconds=1.0)
    assert await job.run_once() == 1
    assert await message_exists(api, kept)


async def test_delete_after_email_needs_an_address_and_the_recording(api: Api, make_tenant: Any) -> None:
    c = await company_with_mailbox(api, make_tenant, "val.example", "en-US")
    url = f"{c.base}/extensions/{c.ext_alice}/voicemail"
    for body, words in (({"delete_after_email": True}, "needs an e-mail address"),
                        ({"email": "a@val.example", "email_audio": "link", "delete_after_email": True},
                         "must carry the recording"),
                        ({"email": "a@val.example", "email_audio": "mp3"}, "email_audio")):
        r = await api.client.put(url, headers=c.headers, json=body)
        assert r.status_code == 422 and words in r.text, (body, r.text)
    assert (await ok(await api.client.get(url, headers=c.headers)))["delete_after_email"] is False
