"""E-mail on the CRM timeline. Parsing and matching of fetched mail on fixtures in the shapes real clients
write (tests/data/mail: multipart/alternative, Russian encoded-word subjects, quoted-printable,
windows-1251 HTML only, an attachment); then, on SQLite and PostgreSQL, sending through a real local SMTP
server (aiosmtpd) by the job with retries, and replies fetched from a real IMAP server (Dovecot, as an
unprivileged process) onto the client's timeline through REST: matched by our Message-ID and by the
sender's address, unmatched mail ignored, nothing logged twice (also by a new poller after a restart and
after a UIDVALIDITY change). Tenant isolation and least privilege on every new route."""

from __future__ import annotations

import email
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
import test_web
from dovecot_server import Dovecot
from sqlalchemy import insert, select, update
from test_crm import _cdr
from test_crm_deals import _employee
from test_voicemail_mailer import Inbox, free_port, smtpd  # noqa: F401 - the SMTP server fixture
from test_web_crm import _new

from zvonok.crm import mail as crm_mail
from zvonok.crm.imap import ImapPoller, imap_date
from zvonok.crm.mailparse import Inbound, html_to_text, match, parse
from zvonok.crm.models import CrmImap, CrmMessage
from zvonok.mail.outbox import Outbox, SmtpServer
from zvonok.voicemail.models import TenantSmtp

Api = Any
DATA = Path(__file__).resolve().parent.parent / "data" / "mail"


def mailer(db: Any, platform: SmtpServer | None, **options: Any) -> Outbox:
    """The mail outbox job as the server runs it for CRM e-mails."""
    job = Outbox(db, platform, **options)
    job.register(crm_mail.KIND, crm_mail.compose_crm, crm_mail.report_crm)
    return job


def fixture(name: str, our_id: str = "<OUR-MESSAGE-ID@zvonok.example>") -> bytes:
    return (DATA / name).read_bytes().replace(b"<OUR-MESSAGE-ID@zvonok.example>", our_id.encode())


# --- parsing and matching ------------------------------------------------------------------------------
def test_thunderbird_reply_in_russian() -> None:
    mail = parse(fixture("thunderbird_reply_ru.eml"))
    assert mail.subject == "Re: Коммерческое предложение на поставку"
    assert mail.from_addr == "anna.smirnova@romashka.example" and mail.to_addr == "sales@zvonok.example"
    assert mail.message_id == "<b7c1e2f0-5a1d-4c8e-9f3a-2d6e8c1a7b90@romashka.example>"
    assert mail.replies_to == ("<OUR-MESSAGE-ID@zvonok.example>", "<older-thread-1@romashka.example>")
    assert mail.date == datetime(2026, 12, 4, 9, 1, tzinfo=UTC)
    # the text/plain alternative (quoted-printable UTF-8), not the HTML one
    assert mail.text.startswith("Добрый день, Иван!\n\nСпасибо, предложение получили. Готовы обсудить цену")
    assert "> Направляем наше предложение." in mail.text and "<p>" not in mail.text


def test_outlook_html_only_windows_1251() -> None:
    mail = parse(fixture("outlook_html_only.eml"))
    assert mail.subject == "Счёт № 17 от 04.12.2026"
    assert mail.from_addr == "buh@romashka.example" and mail.replies_to == ()
    assert mail.text == "Здравствуйте!\n\nВысылаем счёт «№ 17» на оплату.\nС уважением,\nбухгалтерия"


def test_gmail_alternative_inside_mixed_with_attachment() -> None:
    mail = parse(fixture("gmail_mixed_attachment.eml"))
    assert mail.subject == "Signed contract" and mail.from_addr == "john.doe@acme.example"
    assert mail.text == "Hi,\n\nthe signed contract is attached.\n\nBest regards,\nJohn"
    assert mail.date == datetime(2026, 12, 4, 15, 20, 30, tzinfo=UTC)


def test_cut_message_still_parses_and_body_is_bounded() -> None:
    raw = fixture("gmail_mixed_attachment.eml")
    cut = parse(raw[: raw.index(b"Content-Type: application/pdf")])  # the fetch's bounded prefix
    assert cut.text.startswith("Hi,") and cut.subject == "Signed contract"
    long = b"From: a@b.example\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + "я".encode() * 50_000
    assert len(parse(long, max_body=1000).text) == 1000


def test_broken_headers_are_no_crash() -> None:
    mail = parse(b"From: <<<\r\nSubject: =?bogus-charset?q?x?=\r\nDate: yesterday\r\nMessage-ID: none\r\n"
                 b"Content-Type: text/plain; charset=x-unknown\r\n\r\nhello\r\n")
    assert (mail.from_addr, mail.message_id, mail.date) == ("", None, None)
    assert mail.text == "hello"
    assert parse(b"").text == ""


def test_html_to_text() -> None:
    assert html_to_text("<style>p{}</style><p>One&nbsp;&amp; two</p><ul><li>a</li><li>b</li></ul>"
                        "<script>x()</script>three") == "One & two\n\na\n\nb\n\nthree"


def test_match_conversation_outranks_address() -> None:
    reply = Inbound(from_addr="shared@office.example", to_addr="", message_id="<r@x>",
                    replies_to=("<ours-1@zvonok>", "<older@x>"), subject="", date=None, text="")
    by_address = {"shared@office.example": 7}
    assert match(reply, {"<ours-1@zvonok>": 3}, by_address) == 3
    assert match(reply, {}, by_address) == 7
    assert match(reply, {}, {}) is None
    assert match(Inbound(from_addr="", to_addr="", message_id=None, replies_to=(), subject="", date=None, text=""),
                 {}, {"": 1}) is None


def test_imap_date_is_locale_free() -> None:
    assert imap_date(datetime(2026, 3, 5, tzinfo=UTC)) == "5-Mar-2026"


# --- the API with real SMTP and IMAP servers ------------------------------------------------------------
@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _company(api: Api, make_tenant: Any, smtp_port: int | None) -> tuple[Any, str, int, int]:
    """A tenant with its own SMTP server, Anna (two e-mails, a phone) and Boris: (tenant, crm url, anna, boris)."""
    t = await make_tenant(f"mail-{uuid.uuid4().hex[:6]}.example")
    base = f"/api/v1/tenants/{t.id}"
    if smtp_port is not None:
        r = await api.client.put(f"{base}/voicemail/smtp", headers=t.headers, json={
            "host": "127.0.0.1", "port": smtp_port, "sender": f"sales@{t.domain}"})
        assert r.status_code == 200, r.text
    r = await api.client.post(f"{base}/crm/clients", headers=t.headers, json={
        "name": "Анна Смирнова", "phones": [{"number": "+74951234567"}],
        "emails": ["Anna.Smirnova@Romashka.example", "buh@romashka.example"]})
    assert r.status_code == 201, r.text
    anna = r.json()["id"]
    r = await api.client.post(f"{base}/crm/clients", headers=t.headers, json={"name": "Борис", "emails": ["boris@b.example"]})
    assert r.status_code == 201, r.text
    return t, base + "/crm", anna, r.json()["id"]


async def test_send_by_the_job_and_timeline(api: Api, make_tenant: Any, smtpd: tuple[Inbox, int]) -> None:  # noqa: F811
    inbox, port = smtpd
    t, crm, anna, _ = await _company(api, make_tenant, port)
    h = t.headers
    before = await _cdr(api, t.id, "+74951234567", "101", at=datetime.now(UTC).timestamp() - 3600)
    r = await api.client.post(f"{crm}/clients/{anna}/emails", headers=h, json={
        "to": "anna.smirnova@romashka.example", "subject": "Коммерческое предложение",
        "body": "Здравствуйте, Анна!\nНаправляем наше предложение."})
    assert r.status_code == 201, r.text
    sent = r.json()
    assert sent["status"] == "queued" and sent["direction"] == "out" and sent["from_addr"] == f"sales@{t.domain}"
    assert sent["message_id"].startswith("<") and sent["message_id"].endswith(f"@{t.domain}>")
    assert inbox.mails == []  # never in the request

    job = mailer(api.db, None)
    assert await job.run_once() == 1
    ((mail_from, rcpt, msg),) = inbox.mails
    assert (mail_from, rcpt) == (f"sales@{t.domain}", ["anna.smirnova@romashka.example"])
    assert msg["Message-ID"] == sent["message_id"]
    assert str(email.header.make_header(email.header.decode_header(msg["Subject"]))) == "Коммерческое предложение"
    assert _text(msg) == "Здравствуйте, Анна!\nНаправляем наше предложение.\n"
    assert await job.run_once() == 0  # sent once

    after = await _cdr(api, t.id, "101", "+74951234567", at=datetime.now(UTC).timestamp() + 60)
    r = await api.client.get(f"{crm}/clients/{anna}/timeline", headers=h)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(i["kind"], (i["call"] or i["email"])["id"]) for i in items] == [
        ("call", after), ("email", sent["id"]), ("call", before)]
    assert items[1]["email"]["status"] == "sent" and items[1]["email"]["sent_at"]
    assert r.json()["total"] == 3
    r = await api.client.get(f"{crm}/clients/{anna}/timeline", headers=h, params={"limit": 1, "offset": 1})
    assert [i["kind"] for i in r.json()["items"]] == ["email"]
    r = await api.client.get(f"{crm}/clients/{anna}/emails", headers=h)
    assert [e["id"] for e in r.json()["items"]] == [sent["id"]]


def _text(msg: Message) -> str:
    payload = msg.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(msg.get_content_charset() or "utf-8").replace("\r\n", "\n")


async def test_send_failures_retry_then_fail(api: Api, make_tenant: Any) -> None:
    closed = free_port()  # nothing listens there
    t, crm, anna, _ = await _company(api, make_tenant, closed)
    r = await api.client.post(f"{crm}/clients/{anna}/emails", headers=t.headers, json={
        "to": "someone.else@other.example", "subject": "Hi", "body": "Text"})
    assert r.status_code == 201, r.text
    message = r.json()["id"]
    job = mailer(api.db, None, max_attempts=3, retry_base=30.0)
    now = datetime.now(UTC)
    assert await job.run_once(now) == 1
    row = await _row(api, message)
    assert (row.status, row.attempts, row.next_at) == ("queued", 1, now + timedelta(seconds=30)) and row.error
    assert await job.run_once(now + timedelta(seconds=10)) == 0  # not due yet
    assert await job.run_once(now + timedelta(seconds=31)) == 1
    row = await _row(api, message)
    assert (row.attempts, row.next_at) == (2, now + timedelta(seconds=31 + 60))
    assert await job.run_once(now + timedelta(seconds=100)) == 1
    row = await _row(api, message)
    assert (row.status, row.attempts, row.next_at) == ("failed", 3, None)
    r = await api.client.get(f"{crm}/clients/{anna}/emails", headers=t.headers)
    assert r.json()["items"][0]["status"] == "failed" and r.json()["items"][0]["error"]


async def _row(api: Api, message_id: int) -> CrmMessage:
    async with api.db.session() as session:
        return (await session.execute(select(CrmMessage).where(CrmMessage.id == message_id))).scalar_one()


async def test_bad_input_and_no_smtp(api: Api, make_tenant: Any) -> None:
    t, crm, anna, _ = await _company(api, make_tenant, None)  # no SMTP: the platform has none either
    h = t.headers
    body = {"to": "anna.smirnova@romashka.example", "subject": "Hi", "body": "Text"}
    r = await api.client.post(f"{crm}/clients/{anna}/emails", headers=h, json=body)
    assert r.status_code == 409 and "SMTP" in r.json()["detail"]
    for bad in ({**body, "to": "not an address"}, {**body, "subject": "two\r\nBcc: x@evil.example"},
                {**body, "subject": ""}, {**body, "body": ""}, {**body, "extra": 1}):
        r = await api.client.post(f"{crm}/clients/{anna}/emails", headers=h, json=bad)
        assert r.status_code == 422, (bad, r.text)
    r = await api.client.post(f"{crm}/clients/999999/emails", headers=h, json=body)
    assert r.status_code == 404
    for bad_imap in ({"host": "x y", "username": "u", "password": "p"},
                     {"host": "h", "username": "u", "password": "p", "folder": 'IN"BOX'},
                     {"host": "h", "username": "u", "password": "p", "port": 0},
                     {"host": "h", "username": "u", "password": "p", "security": "ssl3"}):
        r = await api.client.put(f"{crm}/imap", headers=h, json=bad_imap)
        assert r.status_code == 422, (bad_imap, r.text)
    r = await api.client.put(f"{crm}/imap", headers=h, json={"host": "h", "username": "u"})
    assert r.status_code == 409  # a new mailbox needs its password


async def test_tenant_isolation_and_roles(api: Api, make_tenant: Any, smtpd: tuple[Inbox, int]) -> None:  # noqa: F811
    _, port = smtpd
    a, crm_a, anna, _ = await _company(api, make_tenant, port)
    b, crm_b, _, _ = await _company(api, make_tenant, port)
    r = await api.client.put(f"{crm_a}/imap", headers=a.headers, json={
        "host": "imap.a.example", "port": 143, "security": "none", "username": "sales", "password": "hunter2"})
    assert r.status_code == 200, r.text
    assert "hunter2" not in r.text and r.json()["has_password"] is True
    r = await api.client.get(f"{crm_a}/imap", headers=a.headers)
    assert "hunter2" not in r.text and r.json()["host"] == "imap.a.example"
    # B: A's client id under B's own URL is 404 like a missing one; A's URLs are not B's to use
    body = {"to": "x@y.example", "subject": "Hi", "body": "Text"}
    for method, url, json in (("POST", f"{crm_b}/clients/{anna}/emails", body),
                              ("GET", f"{crm_b}/clients/{anna}/emails", None),
                              ("GET", f"{crm_b}/clients/{anna}/timeline", None),
                              ("GET", f"{crm_b}/imap", None)):
        r = await api.client.request(method, url, headers=b.headers, json=json)
        assert r.status_code == 404, (url, r.text)
    for method, url in (("GET", f"{crm_a}/imap"), ("PUT", f"{crm_a}/imap"), ("DELETE", f"{crm_a}/imap"),
                        ("GET", f"{crm_a}/clients/{anna}/timeline"), ("POST", f"{crm_a}/clients/{anna}/emails")):
        r = await api.client.request(method, url, headers=b.headers,
                                     json={"host": "evil.example", "username": "x", "password": "y"}
                                     if method == "PUT" else body if method == "POST" else None)
        assert r.status_code in (403, 404), (method, url, r.status_code)
        assert "hunter2" not in r.text and "imap.a.example" not in r.text
    # an employee writes to clients and reads the timeline, but neither reads nor sets the IMAP mailbox
    _, emp = await _employee(api, a, "Olga")
    r = await api.client.post(f"{crm_a}/clients/{anna}/emails", headers=emp, json=body)
    assert r.status_code == 201, r.text
    assert (await api.client.get(f"{crm_a}/clients/{anna}/timeline", headers=emp)).status_code == 200
    for method in ("GET", "PUT", "DELETE"):
        r = await api.client.request(method, f"{crm_a}/imap", headers=emp,
                                     json={"host": "h", "username": "u"} if method == "PUT" else None)
        assert r.status_code == 403, (method, r.text)
    async with api.db.session() as session:
        row = (await session.execute(select(CrmImap).where(CrmImap.tenant_id == a.id))).scalar_one()
        assert (row.host, row.password) == ("imap.a.example", "hunter2")


async def test_replies_fetched_by_imap(api: Api, make_tenant: Any, smtpd: tuple[Inbox, int],  # noqa: F811
                                       dovecot: Dovecot) -> None:
    inbox, port = smtpd
    t, crm, anna, boris = await _company(api, make_tenant, port)
    h = t.headers
    r = await api.client.post(f"{crm}/clients/{anna}/emails", headers=h, json={
        "to": "anna.smirnova@romashka.example", "subject": "Коммерческое предложение", "body": "Предложение"})
    ours = r.json()
    assert await mailer(api.db, None).run_once() == 1
    r = await api.client.put(f"{crm}/imap", headers=h, json={
        "host": "127.0.0.1", "port": dovecot.port, "security": "none", "username": dovecot.username,
        "password": dovecot.password})
    assert r.status_code == 200, r.text

    # the reply (by In-Reply-To), a letter from Anna's other address (by From), and two from no client
    dovecot.append(fixture("thunderbird_reply_ru.eml", ours["message_id"]))
    dovecot.append(fixture("outlook_html_only.eml"))
    dovecot.append(fixture("newsletter.eml"))
    dovecot.append(fixture("gmail_mixed_attachment.eml"))
    poller = ImapPoller(api.db, poll=1.0)
    assert await poller.run_once() == 2
    r = await api.client.get(f"{crm}/clients/{anna}/timeline", headers=h)
    items = [i["email"] for i in r.json()["items"]]
    by_subject = {e["subject"]: e for e in items}
    assert set(by_subject) == {"Коммерческое предложение", "Re: Коммерческое предложение на поставку",
                               "Счёт № 17 от 04.12.2026"}
    reply = by_subject["Re: Коммерческое предложение на поставку"]
    assert (reply["direction"], reply["status"], reply["from_addr"]) == ("in", "received",
                                                                         "anna.smirnova@romashka.example")
    assert reply["body"].startswith("Добрый день, Иван!") and reply["at"].startswith("2026-12-04T09:01:00")
    assert by_subject["Счёт № 17 от 04.12.2026"]["body"].startswith("Здравствуйте!")
    r = await api.client.get(f"{crm}/imap", headers=h)
    state = r.json()
    assert state["last_uid"] == 4 and state["uidvalidity"] and state["last_error"] is None
    assert dovecot.password not in r.text

    # nothing twice: the same poller, a new one (a restart), and a UIDVALIDITY the server changed
    assert await poller.run_once() == 0
    assert await ImapPoller(api.db).run_once() == 0
    async with api.db.session() as session:
        await session.execute(update(CrmImap).where(CrmImap.tenant_id == t.id).values(uidvalidity=1))
        await session.commit()
    assert await ImapPoller(api.db).run_once() == 0
    assert (await api.client.get(f"{crm}/imap", headers=h)).json()["last_uid"] == 4

    # a later letter by address, to Boris (case-insensitive); a reply to Boris's thread by References
    later = (b"From: BORIS@B.example\r\nTo: sales@x\r\nSubject: =?utf-8?q?=D0=92=D0=BE=D0=BF=D1=80=D0=BE=D1=81?=\r\n"
             b"Message-ID: <later@b.example>\r\nContent-Type: text/plain; charset=utf-8\r\n"
             b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=D0=95=D1=81=D1=82=D1=8C =D0=B2=D0=BE=D0=BF=D1=80=D0=BE=D1=81\r\n")
    dovecot.append(later)
    assert await ImapPoller(api.db).run_once() == 1
    r = await api.client.get(f"{crm}/clients/{boris}/timeline", headers=h)
    (only,) = r.json()["items"]
    assert (only["email"]["subject"], only["email"]["body"]) == ("Вопрос", "Есть вопрос")
    assert len(inbox.mails) == 1


async def test_a_reply_within_our_messages_second_goes_after_it(api: Api, make_tenant: Any,
                                                                smtpd: tuple[Inbox, int], dovecot: Dovecot) -> None:  # noqa: F811
    """A Date header counts whole seconds: Anna's reply dated the second our e-mail went out (so, read
    literally, before it) is still shown after it; a Date further back is kept as it is (the fixture's
    09:01 in test_replies_fetched_by_imap)."""
    _inbox, port = smtpd
    t, crm, anna, _boris = await _company(api, make_tenant, port)
    h = t.headers
    r = await api.client.post(f"{crm}/clients/{anna}/emails", headers=h, json={
        "to": "anna.smirnova@romashka.example", "subject": "Счёт", "body": "Счёт во вложении"})
    ours = r.json()
    assert await mailer(api.db, None).run_once() == 1
    async with api.db.session() as session:
        sent_at = (await session.execute(select(CrmMessage.at).where(CrmMessage.id == ours["id"]))).scalar_one()
    sent_at = sent_at.replace(microsecond=max(sent_at.microsecond, 1))  # our time inside its second
    async with api.db.session() as session:
        await session.execute(update(CrmMessage).where(CrmMessage.id == ours["id"]).values(at=sent_at))
        await session.commit()
    date = email.utils.format_datetime(sent_at.replace(microsecond=0))  # the second we sent it in
    reply = (f"From: anna.smirnova@romashka.example\r\nTo: sales@x\r\nSubject: Re: Счёт\r\n"
             f"Message-ID: <r-{uuid.uuid4().hex}@romashka.example>\r\nIn-Reply-To: {ours['message_id']}\r\n"
             f"Date: {date}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nСпасибо\r\n").encode()
    dovecot.append(reply)
    r = await api.client.put(f"{crm}/imap", headers=h, json={
        "host": "127.0.0.1", "port": dovecot.port, "security": "none", "username": dovecot.username,
        "password": dovecot.password})
    assert r.status_code == 200, r.text
    assert await ImapPoller(api.db, poll=1.0).run_once() == 1
    items = (await api.client.get(f"{crm}/clients/{anna}/timeline", headers=h)).json()["items"]
    assert [(i["email"]["direction"], i["email"]["subject"]) for i in items] == [("in", "Re: Счёт"), ("out", "Счёт")]
    assert datetime.fromisoformat(items[0]["email"]["at"]) > sent_at


async def test_imap_failures_are_kept_for_the_admin(api: Api, make_tenant: Any, dovecot: Dovecot) -> None:
    t, crm, _, _ = await _company(api, make_tenant, None)
    r = await api.client.put(f"{crm}/imap", headers=t.headers, json={
        "host": "127.0.0.1", "port": dovecot.port, "security": "none", "username": dovecot.username,
        "password": "wrong-password"})
    assert r.status_code == 200
    assert await ImapPoller(api.db).run_once() == 0
    state = (await api.client.get(f"{crm}/imap", headers=t.headers)).json()
    assert "login" in state["last_error"] and "wrong-password" not in state["last_error"]
    assert state["uidvalidity"] is None and state["last_uid"] == 0
    # the right password: the error is gone at the next poll
    r = await api.client.put(f"{crm}/imap", headers=t.headers, json={
        "host": "127.0.0.1", "port": dovecot.port, "security": "none", "username": dovecot.username,
        "password": dovecot.password, "folder": "INBOX"})
    assert r.json()["last_error"] is None
    await ImapPoller(api.db).run_once()
    state = (await api.client.get(f"{crm}/imap", headers=t.headers)).json()
    assert state["last_error"] is None and state["uidvalidity"]


# --- the console: the card's form and the e-mails on its timeline ----------------------------------------
web, a, b, admin_a = test_web.web, test_web.a, test_web.b, test_web.admin_a


async def test_card_writes_an_email_and_shows_it(web: test_web.Web, a: test_web.Company, b: test_web.Company,
                                                 admin_a: httpx.AsyncClient, smtpd: tuple[Inbox, int]) -> None:  # noqa: F811
    inbox, port = smtpd
    async with web.db.session() as session:
        session.add(TenantSmtp(tenant_id=a.id, host="127.0.0.1", port=port, security="none", sender="sales@a.example"))
        await session.commit()
    r = await _new(admin_a, name="Анна Смирнова", phones="+7 495 123-45-67", emails="anna@romashka.example")
    client_id = int(r.headers["location"].rsplit("/", 1)[1])
    card = await admin_a.get(f"/crm/{client_id}")
    assert 'id="email-form"' in card.text and 'value="anna@romashka.example"' in card.text
    form = {"csrf_token": test_web.csrf_of(card.text), "to": "anna@romashka.example", "subject": "Предложение <b>",
            "body": "Строка 1\r\nСтрока 2"}
    r = await admin_a.post(f"/crm/{client_id}/emails", data=form)
    assert r.status_code == 303 and r.headers["location"] == f"/crm/{client_id}?mail=queued#timeline"
    async with web.db.session() as session:
        (row,) = (await session.execute(select(CrmMessage))).scalars().all()
    assert (row.status, row.body, row.author_employee_id) == ("queued", "Строка 1\nСтрока 2", None)
    card = await admin_a.get(f"/crm/{client_id}", params={"mail": "queued"})
    assert f'id="timeline-email-{row.id}"' in card.text and 'id="mail-result"' in card.text
    assert "Предложение &lt;b&gt;" in card.text and "Queued" in card.text
    assert await mailer(web.db, None).run_once() == 1 and len(inbox.mails) == 1
    card = await admin_a.get(f"/crm/{client_id}")
    assert ">Sent<" in card.text and "E-mail sent" in card.text

    for bad in ({**form, "to": "nope"}, {**form, "subject": ""}, {**form, "body": ""}):
        r = await admin_a.post(f"/crm/{client_id}/emails", data=bad)
        assert r.headers["location"] == f"/crm/{client_id}?mail=invalid#write-email"
    card = await admin_a.get(f"/crm/{client_id}", params={"mail": "invalid"})
    assert 'id="mail-error"' in card.text

    async with web.client() as other:  # another company's admin (Russian): the client is a 404 page
        assert (await test_web.login(other, b.admin)).status_code == 303
        page = await other.get("/crm")
        assert (await other.get(f"/crm/{client_id}")).status_code == 404
        r = await other.post(f"/crm/{client_id}/emails", data={**form, "csrf_token": test_web.csrf_of(page.text)})
        assert r.status_code == 404
        r = await _new(other, name="Борис", emails="boris@b.example")
        own = int(r.headers["location"].rsplit("/", 1)[1])
        card = await other.get(f"/crm/{own}")
        assert "Написать письмо" in card.text and "Отправить письмо" in card.text
        r = await other.post(f"/crm/{own}/emails", data={**form, "csrf_token": test_web.csrf_of(card.text)})
        assert r.headers["location"] == f"/crm/{own}?mail=nosmtp#write-email"  # B has no SMTP server
        card = await other.get(f"/crm/{own}", params={"mail": "nosmtp"})
        assert "Не настроен почтовый сервер" in card.text
    assert len(inbox.mails) == 1


async def test_queued_before_the_outbox_are_sent_by_it(fresh_db: Any, smtpd: tuple[Inbox, int]) -> None:  # noqa: F811
    """Migration 0034: an e-mail still queued under the CRM's own job of before gets its ``crm`` letter
    (a sent one and a received one do not) and the outbox sends it with our Message-ID."""
    from zvonok.crm.models import CrmClient
    from zvonok.mail.models import OutboxLetter
    from zvonok.org.models import Tenant
    from zvonok.storage.db import Database, run_migrations

    inbox, port = smtpd
    db = Database(fresh_db.url)
    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(run_migrations, "0031")  # 0034 changes no table
        async with db.session() as session:
            tenant = Tenant(name="T", sip_domain="t.example", timezone="UTC", currency="RUB", locale="ru")
            session.add(tenant)
            await session.flush()
            client = CrmClient(tenant_id=tenant.id, kind="person", name="Анна")
            session.add_all([client, TenantSmtp(tenant_id=tenant.id, host="127.0.0.1", port=port, security="none",
                                                sender="sales@t.example")])
            await session.flush()
            # by Core, naming the columns of 0031 only (the ORM would write the thread's columns of 0036)
            await session.execute(insert(CrmMessage.__table__), [dict(
                tenant_id=tenant.id, client_id=client.id, direction=d, from_addr="sales@t.example",
                to_addr="anna@r.example", subject=f"S {status}", body="Текст", at=at, message_id=f"<{status}@t.example>",
                status=status, attempts=n, next_at=at, error="timed out" if n else None)
                for d, status, n in (("out", "queued", 2), ("out", "sent", 1), ("in", "received", 0))])
            await session.commit()
            queued = (await session.execute(select(CrmMessage.id).where(
                CrmMessage.message_id == "<queued@t.example>"))).scalar_one()
        async with db.engine.begin() as conn:
            await conn.run_sync(run_migrations, "head")
        async with db.session() as session:
            letters = (await session.execute(select(OutboxLetter))).scalars().all()
        assert [(x.kind, x.ref_id, x.recipients, x.state, x.attempts, x.last_error) for x in letters] == [
            ("crm", queued, "anna@r.example", "pending", 2, "timed out")]
        assert await mailer(db, None).run_once() == 1
        ((_, rcpt, msg),) = inbox.mails
        assert rcpt == ["anna@r.example"] and msg["Message-ID"] == "<queued@t.example>"
        async with db.session() as session:
            row = (await session.execute(select(CrmMessage).where(CrmMessage.id == queued))).scalar_one()
        assert (row.status, row.attempts, row.next_at, row.error) == ("sent", 3, None, None) and row.sent_at
    finally:
        await db.dispose()
