"""Fax to e-mail through the one mail outbox: a received fax is mailed (PDF attached, its pages those
received) to the fax destination's addresses, in the company's language, through a local SMTP server
(aiosmtpd); a fax with no addresses or no pages queues nothing; failures are retried; a voicemail letter
and a fax letter go out through the same job."""

from __future__ import annotations

import email
import email.header
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

from sqlalchemy import select
from test_pstn_support import make_company, ok
from test_voicemail_api import leave, store_of
from test_voicemail_mailer import Inbox, free_port, smtpd  # noqa: F401 - the SMTP server fixture

from zvonok.fax.documents import pdf_page_images, pdf_to_tiff
from zvonok.fax.endpoint import FaxResult
from zvonok.fax.mailer import compose_fax
from zvonok.fax.models import FaxDocument
from zvonok.fax.service import FaxFiles, FaxStore
from zvonok.mail.events import MailQueued
from zvonok.mail.models import OutboxLetter
from zvonok.mail.outbox import Outbox, SmtpServer
from zvonok.voicemail.mailer import compose_voicemail

Api = Any

PDF = (Path(__file__).resolve().parents[1] / "data" / "fax" / "two_pages.pdf").read_bytes()
OK = FaxResult(code=0, text="OK", pages_tx=0, pages_rx=2, remote_ident="+74991234567", bit_rate=14400, ecm=True)


def _files(api: Api) -> FaxFiles:
    return FaxFiles((api.settings.data_dir / "fax").resolve())


def outbox(api: Api, server: SmtpServer | None) -> Outbox:
    job = Outbox(api.db, server, retry_base=30.0, max_attempts=2)
    job.register("fax", compose_fax(_files(api)))
    job.register("voicemail", compose_voicemail(store_of(api).files))
    return job


async def receive(api: Api, tenant_id: int, emails: tuple[str, ...], *, pages: bool = True,
                  result: FaxResult | None = OK) -> int:
    store = FaxStore(api.db, _files(api))
    fax = await store.begin_receive(tenant_id, call_id=f"c-{datetime.now(UTC).timestamp()}",
                                    remote_number="+74991234567", local_number="+74957650001", emails=emails)
    if pages:
        pdf_to_tiff(PDF, fax.tiff)
    await store.finish_receive(tenant_id, fax, result, result.text if result else "no fax call")
    return fax.id


async def letters(api: Api, tenant_id: int) -> list[OutboxLetter]:
    async with api.db.session() as session:
        return list((await session.execute(select(OutboxLetter).where(OutboxLetter.tenant_id == tenant_id)
                                            .order_by(OutboxLetter.id))).scalars())


def attachment(mail: Message, content_type: str) -> tuple[str, bytes]:
    (part,) = [p for p in mail.walk() if p.get_content_type() == content_type]
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return str(part.get_filename()), data


def subject(mail: Message) -> str:
    return str(email.header.make_header(email.header.decode_header(mail["Subject"])))


async def test_a_received_fax_is_mailed_as_pdf_in_the_company_language(
        api: Api, make_tenant: Any, smtpd: tuple[Inbox, int]) -> None:  # noqa: F811
    inbox, port = smtpd
    c = await make_company(api, make_tenant, "faxmail.example")
    await ok(await api.client.patch(f"/api/v1/tenants/{c.id}", headers=api.admin, json={"locale": "ru-RU"}))
    seen: list[object] = []
    api.db.add_listener(seen.append)
    fax_id = await receive(api, c.id, ("office@faxmail.example", "boss@faxmail.example"))
    assert MailQueued(tenant_id=c.id, kind="fax") in seen  # wakes the job after the commit
    (letter,) = await letters(api, c.id)
    assert (letter.kind, letter.ref_id, letter.state) == ("fax", fax_id, "pending")

    job = outbox(api, SmtpServer(host="127.0.0.1", port=port, sender="fax@faxmail.example"))
    assert await job.run_once() == 1
    ((sender, rcpts, mail),) = inbox.mails
    assert (sender, rcpts) == ("fax@faxmail.example", ["office@faxmail.example", "boss@faxmail.example"])
    assert subject(mail) == "Факс от +74991234567 (2 стр.)"
    body = next(p for p in mail.walk() if p.get_content_type() == "text/plain").get_payload(decode=True)
    assert isinstance(body, bytes) and "На номер +74957650001 пришёл факс" in body.decode()
    assert "Страниц: 2" in body.decode()
    name, pdf = attachment(mail, "application/pdf")
    assert name.startswith("fax-") and name.endswith(".pdf") and pdf.startswith(b"%PDF")
    assert len(pdf_page_images(pdf)) == 2  # the pages of the fax, as received
    r = await api.client.get(f"{c.base}/faxes/{fax_id}.pdf", headers=c.headers)
    assert r.status_code == 200 and r.content == pdf  # the same document the API serves
    assert [(x.state, x.attempts) for x in await letters(api, c.id)] == [("sent", 1)]
    assert await job.run_once() == 0  # sent once only


async def test_no_addresses_or_no_pages_queue_nothing(api: Api, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "nofaxmail.example")
    await receive(api, c.id, ())
    await receive(api, c.id, ("office@nofaxmail.example",), pages=False, result=None)
    assert await letters(api, c.id) == []


async def test_fax_letters_are_retried_then_failed_and_deleted_ones_dropped(api: Api, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "retryfax.example")
    await receive(api, c.id, ("office@retryfax.example",))
    job = outbox(api, SmtpServer(host="127.0.0.1", port=free_port()))  # nobody listens there
    now = datetime.now(UTC)
    assert await job.run_once(now) == 1
    (letter,) = await letters(api, c.id)
    assert (letter.state, letter.attempts) == ("pending", 1) and letter.last_error
    assert abs((letter.next_at - now).total_seconds() - 30.0) < 1
    assert await job.run_once(now + timedelta(seconds=10)) == 0  # not due yet
    assert await job.run_once(now + timedelta(seconds=31)) == 1
    assert [(x.state, x.attempts) for x in await letters(api, c.id)] == [("failed", 2)]

    second = await receive(api, c.id, ("office@retryfax.example",))
    async with api.db.session() as session:  # the document is gone before its letter went
        await session.delete(await session.get(FaxDocument, second))
        await session.commit()
    assert await job.run_once(now + timedelta(days=1)) == 1
    assert [x.state for x in await letters(api, c.id)] == ["failed", "dropped"]


async def test_voicemail_and_fax_share_the_outbox(api: Api, make_tenant: Any, smtpd: tuple[Inbox, int]) -> None:  # noqa: F811
    inbox, port = smtpd
    c = await make_company(api, make_tenant, "both.example")
    await ok(await api.client.put(f"{c.base}/extensions/{c.ext_alice}/voicemail", headers=c.headers,
                                  json={"email": "alice@both.example"}))
    await leave(api, c.id, "101", caller="+79160000000", seconds=1.0)
    await receive(api, c.id, ("office@both.example",))
    assert await outbox(api, SmtpServer(host="127.0.0.1", port=port)).run_once() == 2
    assert sorted(rcpts[0] for _s, rcpts, _m in inbox.mails) == ["alice@both.example", "office@both.example"]
    assert sorted(m.get_content_type() for _s, _r, mail in inbox.mails for m in mail.walk()
                  if m.get_filename()) == ["application/pdf", "audio/wav"]
