"""E-mail in the CRM in Chromium against a real server (the demo company, in Russian), a real SMTP server
(aiosmtpd, as the platform's ``ZVONOK_SMTP_*``) and a real IMAP server (Dovecot as an unprivileged
process, tests/unit/dovecot_server.py): the admin writes to a client from the card's form, the server's
job sends it (the SMTP server receives it), the card shows it as sent; the client's reply is delivered
into the company's mailbox (IMAP APPEND, In-Reply-To our Message-ID), the server's poller fetches it and
it appears on the card's timeline and in the REST timeline, newest first."""

from __future__ import annotations

import contextlib
import email
import importlib.util
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from .conftest import Console, harness, log_in

pytestmark = pytest.mark.integration
_spec = importlib.util.spec_from_file_location(
    "zvonok_dovecot_server", Path(__file__).resolve().parents[1] / "unit" / "dovecot_server.py")
assert _spec is not None and _spec.loader is not None
dovecot_server = sys.modules.get(_spec.name) or importlib.util.module_from_spec(_spec)
if _spec.name not in sys.modules:
    sys.modules[_spec.name] = dovecot_server
    _spec.loader.exec_module(dovecot_server)


class Inbox:
    def __init__(self) -> None:
        self.mails: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.mails.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@dataclass
class World:
    console: Console
    token: str
    inbox: Inbox
    imap: Any  # dovecot_server.Dovecot
    smtp_port: int


@contextlib.contextmanager
def servers(tmp: Path) -> Iterator[World]:
    """The server with the demo company, the SMTP server (the platform's) and the IMAP server."""
    domain = f"mail-{secrets.token_hex(3)}.test"
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=harness.free_port())
    smtp.start()
    imap = dovecot_server.Dovecot()
    imap.start()
    server = harness.ZvonokServer(data_dir=tmp / "data", database_url=os.environ.get("ZVONOK_TEST_DATABASE_URL") or None,
                                  env={"ZVONOK_DEMO_DOMAIN": domain, "ZVONOK_SMTP_HOST": "127.0.0.1",
                                       "ZVONOK_SMTP_PORT": str(smtp.port), "ZVONOK_SMTP_FROM": f"sales@{domain}",
                                       "ZVONOK_CRM_IMAP_POLL": "1"})
    try:
        demo = json.loads(server.cli("demo", "--no-serve", "--json"))
        server.start()
        try:
            yield World(Console(server=server, url=server.http_url, domain=domain, tenant_id=int(demo["tenant_id"]),
                                admin_login=demo["admin_login"], admin_password=demo["admin_password"],
                                workdir=tmp / "sipp"), demo["api_token"], inbox, imap, smtp.port)
        finally:
            code = server.stop()
            assert code == 0, f"zvonok serve exited with {code}:\n{server.log_tail()}"
    finally:
        imap.stop()
        smtp.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with servers(tmp_path_factory.mktemp("web_crm_mail")) as found:
        yield found


def _until(check: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_write_to_a_client_and_see_the_reply(page: Any, world: World, artifacts: Path) -> None:
    console, token = world.console, world.token
    api = f"{console.url}/api/v1/tenants/{console.tenant_id}/crm"
    client = harness.http_json(f"{api}/clients", token, method="POST", body={
        "name": "Анна Смирнова", "phones": [{"number": "+74951234567"}], "emails": ["Anna@Romashka.example"]})
    imap = harness.http_json(f"{api}/imap", token, method="PUT", body={
        "host": "127.0.0.1", "port": world.imap.port, "security": "none", "username": world.imap.username,
        "password": world.imap.password})
    assert imap["has_password"] and "password" not in imap

    log_in(page, console, english=False)
    card_url = f"{console.url}/crm/{client['id']}"
    page.goto(card_url)
    assert page.locator("#write-email h2").inner_text() == "Написать письмо"  # the demo company speaks Russian
    form = page.locator("#email-form")
    assert form.locator("input[name=to]").input_value() == "anna@romashka.example"
    form.locator("input[name=subject]").fill("Коммерческое предложение")
    form.locator("textarea[name=body]").fill("Здравствуйте, Анна!\nНаправляем наше предложение.")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#mail-result")
    sent_row = page.locator("#timeline-rows tr.email.out")
    assert sent_row.count() == 1 and "Коммерческое предложение" in sent_row.inner_text()

    # the server's job sent it through the platform's SMTP server (woken by the queued e-mail)
    (mail,) = _until(lambda: world.inbox.mails, "the e-mail at the SMTP server")
    assert mail["To"] == "anna@romashka.example" and mail["From"] == f"sales@{console.domain}"
    ours = mail["Message-ID"]

    def sent() -> bool:
        page.reload()
        return "Отправлено" in page.locator("#timeline-rows tr.email.out .mail-status").inner_text()

    _until(sent, "the card to show the e-mail as sent")

    # Anna replies; her mail lands in the company's mailbox, the poller fetches it
    reply = (f"From: =?UTF-8?B?0JDQvdC90LA=?= <anna@romashka.example>\r\nTo: sales@{console.domain}\r\n"
             f"Subject: =?UTF-8?B?UmU6INCa0L7QvNC80LXRgNGH0LXRgdC60L7QtSDQv9GA0LXQtNC70L7QttC10L3QuNC1?=\r\n"
             f"Message-ID: <reply-{secrets.token_hex(4)}@romashka.example>\r\nIn-Reply-To: {ours}\r\n"
             f"References: {ours}\r\nDate: {email.utils.formatdate()}\r\nMIME-Version: 1.0\r\n"
             "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
             "=D0=A1=D0=BF=D0=B0=D1=81=D0=B8=D0=B1=D0=BE, =D0=BF=D0=BE=D0=BB=D1=83=D1=87=D0=B8=D0=BB=D0=B8.\r\n")
    world.imap.append(reply.encode())

    def received() -> bool:
        page.reload()
        return page.locator("#timeline-rows tr.email.in").count() == 1

    _until(received, "the reply on the card")
    row = page.locator("#timeline-rows tr.email.in")
    assert "anna@romashka.example" in row.inner_text() and "Re: Коммерческое предложение" in row.inner_text()
    assert "Получено" in row.inner_text()
    row.locator("summary").click()
    assert row.locator("pre.mail-body").inner_text() == "Спасибо, получили."
    page.screenshot(path=str(artifacts / "crm-mail.png"), full_page=True)

    timeline = harness.http_json(f"{api}/clients/{client['id']}/timeline", token)
    assert [(i["kind"], i["email"]["direction"]) for i in timeline["items"]] == [("email", "in"), ("email", "out")]
    state = harness.http_json(f"{api}/imap", token)
    assert state["last_uid"] == 1 and state["last_error"] is None
