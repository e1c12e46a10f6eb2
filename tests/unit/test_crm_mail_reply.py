"""Answering a received e-mail from the client's timeline, and the company's mail settings.

Threading headers (RFC 5322 §3.6.4/§3.6.5) as values; then through REST on SQLite and PostgreSQL with a
real SMTP server (aiosmtpd) and a real IMAP server (Dovecot): Anna's mail fetched, answered, the answer
received by the SMTP server with ``Re:`` once, In-Reply-To and References, linked on the timeline to the
mail it answers, and Anna's answer to our answer linked to it in turn. Another tenant's message is a 404,
the settings are the admin's, the IMAP "test" logs in, and a changed poll interval is followed without a
new poller."""

from __future__ import annotations

import email
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import test_web
from dovecot_server import Dovecot
from sqlalchemy import select, update
from test_crm_deals import _employee
from test_crm_mail import _company, _row, _text, dovecot, mailer  # noqa: F401 - the IMAP server fixture
from test_voicemail_mailer import Inbox, smtpd  # noqa: F401 - the SMTP server fixture
from test_web_crm import _new

from zvonok.crm.imap import ImapPoller
from zvonok.crm.mailparse import parse
from zvonok.crm.mailthread import MAX_REFERENCES, parent_references, quoted, reply_references, reply_subject
from zvonok.crm.models import CrmImap, CrmMessage
from zvonok.mail.models import TenantSmtp

Api = Any


# --- the headers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Коммерческое предложение", "Re: Коммерческое предложение"),
        ("Re: Коммерческое предложение", "Re: Коммерческое предложение"),
        ("RE: re:Re : Счёт", "Re: Счёт"),
        ("Re[2]: Re(3): Вопрос", "Re: Вопрос"),
        ("Ответ: Вопрос", "Re: Вопрос"),
        ("  Re:   spaced    out ", "Re: spaced out"),
        (
            "Regarding the contract",
            "Re: Regarding the contract",
        ),  # a word beginning with "re" is not a marker
        ("Fwd: Договор", "Re: Fwd: Договор"),
        ("", "Re:"),
        ("Re:", "Re:"),
    ],
)
def test_reply_subject_has_one_re(subject: str, expected: str) -> None:
    assert reply_subject(subject) == expected


def test_reply_subject_stays_within_the_column() -> None:
    assert len(reply_subject("я" * 500)) == 500


def test_references_of_a_reply() -> None:
    # the parent's References, then its Message-ID (RFC 5322 §3.6.4)
    assert reply_references(["<a@x>", "<b@x>"], "<c@x>") == ["<a@x>", "<b@x>", "<c@x>"]
    assert reply_references([], "<c@x>") == ["<c@x>"]
    assert reply_references(["<a@x>", "<c@x>", "<a@x>"], "<c@x>") == ["<a@x>", "<c@x>"]  # no repeats
    assert reply_references(["<a@x>"], None) == ["<a@x>"]
    # a long thread keeps its root and the newest ids
    long = [f"<{n}@x>" for n in range(40)]
    refs = reply_references(long, "<new@x>")
    assert len(refs) == MAX_REFERENCES and refs[0] == "<0@x>" and refs[-2:] == ["<39@x>", "<new@x>"]


def test_parent_references_fall_back_to_a_single_in_reply_to() -> None:
    assert parent_references(["<a@x>", "<b@x>"], ["<b@x>"]) == ["<a@x>", "<b@x>"]
    assert parent_references([], ["<b@x>"]) == ["<b@x>"]
    assert parent_references([], ["<b@x>", "<c@x>"]) == []  # which one is the parent is unknown
    mail = parse(
        b"From: a@b.example\r\nMessage-ID: <m@b>\r\nIn-Reply-To: <p@z>\r\n"
        b"References: <root@z>\r\n <p@z>\r\n\r\nx\r\n"
    )
    assert mail.references == ("<root@z>", "<p@z>") and mail.replies_to == ("<p@z>", "<root@z>")
    assert parse(b"From: a@b.example\r\nIn-Reply-To: <p@z>\r\n\r\nx\r\n").references == ("<p@z>",)


def test_quoted_text() -> None:
    assert quoted("Добрый день!\n\n> старое\nКонец", "Anna wrote:") == (
        "\n\nAnna wrote:\n> Добрый день!\n>\n>> старое\n> Конец\n"
    )


# --- REST, SMTP and IMAP ----------------------------------------------------------------------------------
ANNA_FIRST = (
    "From: Anna Smirnova <Anna.Smirnova@romashka.example>\r\nTo: sales@x\r\nSubject: Re: Re: Поставка\r\n"
    "Message-ID: <anna-1@romashka.example>\r\nReferences: <root@romashka.example>\r\n"
    "Date: Fri, 04 Dec 2026 09:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    "Когда поставка?\r\n"
)


async def _imap(api: Api, t: Any, crm: str, dovecot: Dovecot, **extra: Any) -> None:  # noqa: F811
    r = await api.client.put(
        f"{crm}/imap",
        headers=t.headers,
        json={
            "host": "127.0.0.1",
            "port": dovecot.port,
            "security": "none",
            "username": dovecot.username,
            "password": dovecot.password,
            **extra,
        },
    )
    assert r.status_code == 200, r.text


async def test_reply_round_trip(api: Api, make_tenant: Any, smtpd: tuple[Inbox, int], dovecot: Dovecot) -> None:  # noqa: F811
    inbox, port = smtpd
    t, crm, anna, _ = await _company(api, make_tenant, port)
    h = t.headers
    await _imap(api, t, crm, dovecot)
    dovecot.append(ANNA_FIRST.encode())
    assert await ImapPoller(api.db).run_once() == 1
    (item,) = (await api.client.get(f"{crm}/clients/{anna}/timeline", headers=h)).json()["items"]
    received = item["email"]
    assert received["direction"] == "in" and received["in_reply_to_id"] is None

    r = await api.client.post(
        f"{crm}/messages/{received['id']}/reply", headers=h, json={"body": "Завтра.\n\n> Когда поставка?"}
    )
    assert r.status_code == 201, r.text
    answer = r.json()
    assert (
        answer["direction"],
        answer["status"],
        answer["to_addr"],
        answer["subject"],
        answer["in_reply_to_id"],
    ) == ("out", "queued", "anna.smirnova@romashka.example", "Re: Поставка", received["id"])
    assert inbox.mails == []  # the outbox job sends it, never the request

    assert await mailer(api.db, None).run_once() == 1
    ((mail_from, rcpt, msg),) = inbox.mails
    assert (mail_from, rcpt) == (f"sales@{t.domain}", ["anna.smirnova@romashka.example"])
    assert str(email.header.make_header(email.header.decode_header(msg["Subject"]))) == "Re: Поставка"
    assert msg["In-Reply-To"] == "<anna-1@romashka.example>"
    assert msg["References"].split() == ["<root@romashka.example>", "<anna-1@romashka.example>"]
    assert msg["Message-ID"] == answer["message_id"]
    assert _text(msg) == "Завтра.\n\n> Когда поставка?\n"

    # on the timeline after (above) the mail it answers, linked to it
    items = [
        i["email"]
        for i in (await api.client.get(f"{crm}/clients/{anna}/timeline", headers=h)).json()["items"]
    ]
    assert [(e["id"], e["status"], e["in_reply_to_id"]) for e in items] == [
        (answer["id"], "sent", received["id"]),
        (received["id"], "received", None),
    ]

    # Anna answers our answer: fetched, linked to it; answering that goes on with the thread
    refs = " ".join(msg["References"].split() + [answer["message_id"]])
    dovecot.append(
        (
            f"From: anna.smirnova@romashka.example\r\nTo: sales@x\r\nSubject: Re: Re: Поставка\r\n"
            f"Message-ID: <anna-2@romashka.example>\r\nIn-Reply-To: {answer['message_id']}\r\n"
            f"References: {refs}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nСпасибо!\r\n"
        ).encode()
    )
    assert await ImapPoller(api.db).run_once() == 1
    items = [
        i["email"]
        for i in (await api.client.get(f"{crm}/clients/{anna}/timeline", headers=h)).json()["items"]
    ]
    second = next(e for e in items if e["message_id"] == "<anna-2@romashka.example>")
    assert second["in_reply_to_id"] == answer["id"]
    r = await api.client.post(f"{crm}/messages/{second['id']}/reply", headers=h, json={"body": "Рады помочь"})
    assert r.status_code == 201 and r.json()["subject"] == "Re: Поставка"
    assert await mailer(api.db, None).run_once() == 1
    last = inbox.mails[-1][2]
    assert last["In-Reply-To"] == "<anna-2@romashka.example>"
    assert last["References"].split() == [
        "<root@romashka.example>",
        "<anna-1@romashka.example>",
        answer["message_id"],
        "<anna-2@romashka.example>",
    ]


async def test_reply_refusals_and_tenant_isolation(
    api: Api,
    make_tenant: Any,
    smtpd: tuple[Inbox, int],  # noqa: F811
    dovecot: Dovecot,  # noqa: F811
) -> None:
    _, port = smtpd
    a, crm_a, anna, _ = await _company(api, make_tenant, port)
    b, crm_b, _, _ = await _company(api, make_tenant, port)
    await _imap(api, a, crm_a, dovecot)
    dovecot.append(ANNA_FIRST.encode())
    assert await ImapPoller(api.db).run_once() == 1
    (item,) = (await api.client.get(f"{crm_a}/clients/{anna}/timeline", headers=a.headers)).json()["items"]
    received = item["email"]["id"]
    # B answering A's message, by B's URL or by A's: 404 / 403, and nothing queued
    r = await api.client.post(f"{crm_b}/messages/{received}/reply", headers=b.headers, json={"body": "x"})
    assert r.status_code == 404, r.text
    r = await api.client.post(f"{crm_a}/messages/{received}/reply", headers=b.headers, json={"body": "x"})
    assert r.status_code in (403, 404)
    assert (
        await api.client.post(f"{crm_a}/messages/999999/reply", headers=a.headers, json={"body": "x"})
    ).status_code == 404
    for bad in ({"body": ""}, {}, {"body": "x", "to": "evil@x.example"}):
        r = await api.client.post(f"{crm_a}/messages/{received}/reply", headers=a.headers, json=bad)
        assert r.status_code == 422, (bad, r.text)
    # an employee answers; our own (sent) message is not answered
    _, emp = await _employee(api, a, "Olga")
    r = await api.client.post(f"{crm_a}/messages/{received}/reply", headers=emp, json={"body": "Ответ"})
    assert r.status_code == 201, r.text
    r = await api.client.post(
        f"{crm_a}/messages/{r.json()['id']}/reply", headers=a.headers, json={"body": "x"}
    )
    assert r.status_code == 409 and "received" in r.json()["detail"]
    items = (await api.client.get(f"{crm_a}/clients/{anna}/timeline", headers=a.headers)).json()["items"]
    assert len(items) == 2
    # a received mail without a usable sender is not answered (409, not a server error)
    for sender in ("", "a@@b"):
        async with api.db.session() as session:
            await session.execute(update(CrmMessage).where(CrmMessage.id == received).values(from_addr=sender))
            await session.commit()
        r = await api.client.post(f"{crm_a}/messages/{received}/reply", headers=a.headers, json={"body": "x"})
        assert r.status_code == 409 and "sender" in r.json()["detail"], (sender, r.text)


async def test_reply_without_smtp_is_409(api: Api, make_tenant: Any, dovecot: Dovecot) -> None:  # noqa: F811
    t, crm, anna, _ = await _company(api, make_tenant, None)
    await _imap(api, t, crm, dovecot)
    dovecot.append(ANNA_FIRST.encode())
    assert await ImapPoller(api.db).run_once() == 1
    (item,) = (await api.client.get(f"{crm}/clients/{anna}/timeline", headers=t.headers)).json()["items"]
    r = await api.client.post(
        f"{crm}/messages/{item['email']['id']}/reply", headers=t.headers, json={"body": "x"}
    )
    assert r.status_code == 409 and "SMTP" in r.json()["detail"]


async def test_settings_validation_roles_and_test_login(api: Api, make_tenant: Any, dovecot: Dovecot) -> None:  # noqa: F811
    t, crm, _, _ = await _company(api, make_tenant, None)
    h = t.headers
    base = crm.removesuffix("/crm")
    smtp = {
        "host": "smtp.example",
        "port": 587,
        "security": "starttls",
        "username": "sales",
        "password": "pw",
        "sender": "sales@x.example",
    }
    for bad in (
        {**smtp, "username": "sales\r\nRCPT TO:<x@evil>"},
        {**smtp, "host": "smtp.example\nx"},
        {**smtp, "host": "a b"},
        {**smtp, "password": "p\x00w"},
        {**smtp, "port": 70000},
    ):
        r = await api.client.put(f"{base}/voicemail/smtp", headers=h, json=bad)
        assert r.status_code == 422, (bad, r.text)
    imap = {
        "host": "127.0.0.1",
        "port": dovecot.port,
        "security": "none",
        "username": dovecot.username,
        "password": dovecot.password,
    }
    for bad in (
        {**imap, "username": "crm\r\nA1 LOGOUT"},
        {**imap, "poll_seconds": 5},
        {**imap, "poll_seconds": 100_000},
        {**imap, "host": "h\tx"},
    ):
        r = await api.client.put(f"{crm}/imap", headers=h, json=bad)
        assert r.status_code == 422, (bad, r.text)
    # no mailbox yet: nothing to test
    assert (await api.client.post(f"{crm}/imap/test", headers=h)).status_code == 404
    await _imap(api, t, crm, dovecot, poll_seconds=300)
    dovecot.append(ANNA_FIRST.encode())
    r = await api.client.post(f"{crm}/imap/test", headers=h)
    assert r.status_code == 200 and r.json() == {"ok": True, "messages": 1, "error": None}
    got = (await api.client.get(f"{crm}/imap", headers=h)).json()
    assert got["poll_seconds"] == 300 and got["has_password"] and dovecot.password not in str(got)
    # a wrong password: the result says so, never echoing it
    r = await api.client.put(f"{crm}/imap", headers=h, json={**imap, "password": "wrong-secret"})
    assert r.status_code == 200
    r = await api.client.post(f"{crm}/imap/test", headers=h)
    assert r.status_code == 200 and r.json()["ok"] is False and "login" in r.json()["error"]
    assert "wrong-secret" not in r.text
    # the password left out is kept
    await _imap(api, t, crm, dovecot)
    r = await api.client.put(
        f"{crm}/imap", headers=h, json={k: v for k, v in imap.items() if k != "password"}
    )
    assert (
        r.status_code == 200 and (await api.client.post(f"{crm}/imap/test", headers=h)).json()["ok"] is True
    )
    # an employee neither tests, reads nor sets the mail settings
    _, emp = await _employee(api, t, "Olga")
    for method, url in (
        ("POST", f"{crm}/imap/test"),
        ("GET", f"{crm}/imap"),
        ("PUT", f"{crm}/imap"),
        ("GET", f"{base}/voicemail/smtp"),
        ("PUT", f"{base}/voicemail/smtp"),
    ):
        r = await api.client.request(
            method, url, headers=emp, json=imap if "imap" in url else smtp if method == "PUT" else None
        )
        assert r.status_code == 403, (method, url, r.text)


async def test_poller_follows_the_interval_without_restart(api: Api, make_tenant: Any, dovecot: Dovecot) -> None:  # noqa: F811
    t, crm, anna, _ = await _company(api, make_tenant, None)
    await _imap(api, t, crm, dovecot, poll_seconds=600)
    poller = ImapPoller(api.db, poll=60.0)
    now = datetime.now(UTC)
    assert await poller.run_once(now) == 0  # never read: due at once
    async with api.db.session() as session:
        polled = (
            await session.execute(select(CrmImap.polled_at).where(CrmImap.tenant_id == t.id))
        ).scalar_one()
    assert polled is not None
    dovecot.append(ANNA_FIRST.encode())
    assert t.id not in await poller.due(polled + timedelta(seconds=300))
    assert poller.next_wait == 60.0  # the platform's tick is the longest sleep
    assert await poller.run_once(polled + timedelta(seconds=300)) == 0  # not due: Dovecot's mail waits
    assert t.id in await poller.due(polled + timedelta(seconds=601))
    # the admin shortens the interval: the same poller reads at once (a change clears polled_at) ...
    await _imap(api, t, crm, dovecot, poll_seconds=30)
    assert await poller.run_once(polled + timedelta(seconds=301)) == 1
    # ... and then every 30 s, waking in time for it
    async with api.db.session() as session:
        polled = (
            await session.execute(select(CrmImap.polled_at).where(CrmImap.tenant_id == t.id))
        ).scalar_one()
    assert t.id not in await poller.due(polled + timedelta(seconds=10))
    assert 1.0 <= poller.next_wait <= 20.0
    assert t.id in await poller.due(polled + timedelta(seconds=31))
    # disabled: never read
    await _imap(api, t, crm, dovecot, enabled=False)
    assert t.id not in await poller.due(polled + timedelta(days=1))
    assert (
        len((await api.client.get(f"{crm}/clients/{anna}/timeline", headers=t.headers)).json()["items"]) == 1
    )
    _ = uuid, _row


# --- the console: the card's Reply form, the mail settings page -------------------------------------------
web, a, b, admin_a = test_web.web, test_web.a, test_web.b, test_web.admin_a


async def test_card_reply_form(web: test_web.Web, a: test_web.Company, b: test_web.Company,
                               admin_a: httpx.AsyncClient, smtpd: tuple[Inbox, int], dovecot: Dovecot) -> None:  # noqa: F811
    inbox, port = smtpd
    async with web.db.session() as session:
        session.add(TenantSmtp(tenant_id=a.id, host="127.0.0.1", port=port, security="none", sender="sales@a.example"))
        session.add(CrmImap(tenant_id=a.id, host="127.0.0.1", port=dovecot.port, security="none",
                            username=dovecot.username, password=dovecot.password, last_uid=0,
                            since=datetime.now(UTC) - timedelta(days=1)))
        await session.commit()
    r = await _new(admin_a, name="Анна Смирнова", emails="anna.smirnova@romashka.example")
    client_id = int(r.headers["location"].rsplit("/", 1)[1])
    dovecot.append(ANNA_FIRST.encode())
    assert await ImapPoller(web.db).run_once() == 1
    async with web.db.session() as session:
        received = (await session.execute(select(CrmMessage))).scalar_one()
    card = await admin_a.get(f"/crm/{client_id}")
    assert f'action="/crm/{client_id}/emails/{received.id}/reply"' in card.text
    assert "&gt; Когда поставка?" in card.text and "anna.smirnova@romashka.example wrote:" in card.text
    form = {"csrf_token": test_web.csrf_of(card.text), "body": "Завтра.\r\n\r\n> Когда поставка?"}
    r = await admin_a.post(f"/crm/{client_id}/emails/{received.id}/reply", data=form)
    assert r.status_code == 303 and r.headers["location"] == f"/crm/{client_id}?mail=reply_queued#timeline"
    assert await mailer(web.db, None).run_once() == 1
    ((_, rcpt, msg),) = inbox.mails
    assert rcpt == ["anna.smirnova@romashka.example"] and msg["In-Reply-To"] == "<anna-1@romashka.example>"
    card = await admin_a.get(f"/crm/{client_id}", params={"mail": "reply_queued"})
    assert "The answer is queued" in card.text and f'href="#timeline-email-{received.id}"' in card.text
    # our answer has no Reply form of its own (only received e-mails are answered)
    assert card.text.count('class="reply-form"') == 1
    r = await admin_a.post(f"/crm/{client_id}/emails/{received.id}/reply", data={**form, "body": ""})
    assert r.headers["location"] == f"/crm/{client_id}?mail=reply_invalid#timeline"
    card = await admin_a.get(f"/crm/{client_id}", params={"mail": "reply_invalid"})
    assert 'id="reply-error"' in card.text and 'id="mail-error"' not in card.text
    # under another client's URL, or from another company: 404, nothing sent
    r = await _new(admin_a, name="Борис", emails="boris@b.example")
    boris = int(r.headers["location"].rsplit("/", 1)[1])
    assert (await admin_a.post(f"/crm/{boris}/emails/{received.id}/reply", data=form)).status_code == 404
    async with web.client() as other:
        assert (await test_web.login(other, b.admin)).status_code == 303
        page = await other.get("/crm")
        r = await other.post(f"/crm/{client_id}/emails/{received.id}/reply",
                             data={**form, "csrf_token": test_web.csrf_of(page.text)})
        assert r.status_code == 404
    assert len(inbox.mails) == 1


async def test_mail_settings_page(web: test_web.Web, a: test_web.Company, b: test_web.Company,
                                  admin_a: httpx.AsyncClient, dovecot: Dovecot) -> None:  # noqa: F811
    page = await admin_a.get("/settings/mail")
    assert page.status_code == 200 and 'id="smtp-form"' in page.text and 'id="imap-test"' not in page.text
    csrf = test_web.csrf_of(page.text)
    smtp = {"csrf_token": csrf, "host": "smtp.a.example", "port": "587", "security": "starttls",
            "username": "sales", "password": "smtp-secret", "sender": "sales@a.example"}
    for bad, field in (({**smtp, "host": "smtp a"}, "host"), ({**smtp, "username": "a\tb"}, "username"),
                       ({**smtp, "port": "99999"}, "port"), ({**smtp, "sender": "nope"}, "sender")):
        r = await admin_a.post("/settings/mail/smtp", data=bad)
        assert r.status_code == 422 and f'id="smtp-{field}-error"' in r.text, field
    r = await admin_a.post("/settings/mail/smtp", data=smtp)
    assert r.status_code == 303
    page = await admin_a.get("/settings/mail")
    assert "smtp-secret" not in page.text and "A password is set." in page.text and 'value="smtp.a.example"' in page.text
    r = await admin_a.post("/settings/mail/smtp", data={**smtp, "password": ""})  # kept
    async with web.db.session() as session:
        row = (await session.execute(select(TenantSmtp).where(TenantSmtp.tenant_id == a.id))).scalar_one()
        assert (row.host, row.password) == ("smtp.a.example", "smtp-secret")

    imap = {"csrf_token": csrf, "host": "127.0.0.1", "port": str(dovecot.port), "security": "none",
            "username": dovecot.username, "password": "", "folder": "INBOX", "poll_seconds": "", "enabled": "1"}
    r = await admin_a.post("/settings/mail/imap", data=imap)  # a new mailbox needs its password
    assert r.status_code == 422 and 'id="imap-password-error"' in r.text
    for bad, field in (({**imap, "poll_seconds": "5"}, "poll_seconds"), ({**imap, "username": "x\ny"}, "username"),
                       ({**imap, "folder": 'IN"BOX'}, "folder")):
        r = await admin_a.post("/settings/mail/imap", data={**bad, "password": "p"})
        assert r.status_code == 422 and f'id="imap-{field}-error"' in r.text, field
    r = await admin_a.post("/settings/mail/imap", data={**imap, "password": dovecot.password, "poll_seconds": "120"})
    assert r.status_code == 303
    r = await admin_a.post("/settings/mail/imap/test", data={"csrf_token": csrf})
    assert r.status_code == 200 and 'id="imap-test-result"' in r.text and "Connected" in r.text
    assert dovecot.password not in r.text and 'value="120"' in r.text
    async with web.db.session() as session:
        row_imap = (await session.execute(select(CrmImap).where(CrmImap.tenant_id == a.id))).scalar_one()
        assert (row_imap.password, row_imap.poll_seconds) == (dovecot.password, 120)
    r = await admin_a.post("/settings/mail/imap", data={**imap, "password": "wrong"})
    r = await admin_a.post("/settings/mail/imap/test", data={"csrf_token": csrf})
    assert "Connection failed" in r.text and "login" in r.text

    # an employee gets no page; another company's admin sees only its own (Russian) settings
    async with web.client() as client:
        assert (await test_web.login(client, a.employee)).status_code == 303
        assert (await client.get("/settings/mail")).status_code == 403
        home = await client.get("/crm")
        r = await client.post("/settings/mail/imap/test", data={"csrf_token": test_web.csrf_of(home.text)})
        assert r.status_code == 403
    async with web.client() as other:
        assert (await test_web.login(other, b.admin)).status_code == 303
        page = await other.get("/settings/mail")
        assert "smtp.a.example" not in page.text and "Исходящая почта" in page.text
