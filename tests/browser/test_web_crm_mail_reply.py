"""The company's mail settings page and the Reply button of a client's timeline in Chromium, against a real
server (the demo company, in Russian), a real SMTP server (aiosmtpd) and a real IMAP server (Dovecot):
the admin sets the company's SMTP server and IMAP mailbox on the page (the password never shown back),
tests the login, the poller reads Anna's letter with the new settings (no restart), the admin answers it
from the card's Reply form with her text quoted, and the SMTP server receives the answer in her thread."""

from __future__ import annotations

import email
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import harness, log_in
from .test_web_crm_mail import World, _until, servers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with servers(tmp_path_factory.mktemp("web_crm_mail_reply")) as found:  # this module's own servers
        yield found


def test_mail_settings_and_reply(page: Any, world: World, artifacts: Path) -> None:
    console, token = world.console, world.token
    api = f"{console.url}/api/v1/tenants/{console.tenant_id}/crm"
    client = harness.http_json(f"{api}/clients", token, method="POST", body={
        "name": "Анна Смирнова", "emails": ["anna@romashka.example"]})
    # Anna's letter is already in the mailbox the admin is about to set
    world.imap.append((f"From: =?UTF-8?B?0JDQvdC90LA=?= <anna@romashka.example>\r\nTo: sales@{console.domain}\r\n"
                       "Subject: =?UTF-8?B?UmU6INCf0L7RgdGC0LDQstC60LA=?=\r\n"
                       f"Message-ID: <anna-{secrets.token_hex(4)}@romashka.example>\r\n"
                       "References: <root@romashka.example>\r\n"
                       f"Date: {email.utils.formatdate()}\r\nMIME-Version: 1.0\r\n"
                       "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                       "Когда будет поставка?\r\n").encode())

    log_in(page, console, english=False)
    page.goto(console.url + "/settings/mail")
    assert page.locator("h1").inner_text() == "Настройки почты"

    smtp = page.locator("#smtp-form")
    smtp.locator("input[name=host]").fill("127.0.0.1 ")
    smtp.locator("input[name=port]").fill("99999")
    smtp.locator("select[name=security]").select_option("none")
    smtp.locator("input[name=sender]").fill(f"office@{console.domain}")
    smtp.locator("button[type=submit]").click()
    assert "Порт от 1 до 65535" in page.locator("#smtp-port-error").inner_text()  # refused, the form kept
    smtp = page.locator("#smtp-form")
    assert smtp.locator("input[name=sender]").input_value() == f"office@{console.domain}"
    smtp.locator("input[name=port]").fill(str(world.smtp_port))
    smtp.locator("button[type=submit]").click()
    assert page.locator("#mail-saved").inner_text() == "SMTP-сервер сохранён."

    imap = page.locator("#imap-form")
    imap.locator("input[name=host]").fill("127.0.0.1")
    imap.locator("input[name=port]").fill(str(world.imap.port))
    imap.locator("select[name=security]").select_option("none")
    imap.locator("input[name=username]").fill(world.imap.username)
    imap.locator("input[name=password]").fill(world.imap.password)
    imap.locator("input[name=poll_seconds]").fill("60")
    imap.locator("button[type=submit]").click()
    assert page.locator("#mail-saved").inner_text() == "IMAP-ящик сохранён: теперь он читается."
    assert world.imap.password not in page.content()
    assert page.locator("#imap-password-state").inner_text() == "Пароль задан."
    page.locator("#imap-test button").click()
    assert page.locator("#imap-test-result").inner_text() == "Подключение успешно: в папке писем: 1."
    page.screenshot(path=str(artifacts / "mail-settings.png"), full_page=True)

    # the poller follows the new settings: Anna's letter on her card
    card_url = f"{console.url}/crm/{client['id']}"

    def received() -> bool:
        page.goto(card_url)
        return page.locator("#timeline-rows tr.email.in").count() == 1

    _until(received, "Anna's letter on the card")
    reply = page.locator("#timeline-rows details.mail-reply")
    reply.locator("summary").click()
    form = reply.locator("form.reply-form")
    assert "Тема: Re: Поставка" in form.inner_text()
    text = form.locator("textarea[name=body]").input_value()
    assert "anna@romashka.example пишет:\n> Когда будет поставка?" in text
    form.locator("textarea[name=body]").fill("Завтра, до обеда." + text)
    page.screenshot(path=str(artifacts / "crm-reply-form.png"), full_page=True)
    form.locator("button[type=submit]").click()
    assert page.locator("#mail-result").inner_text() == "Ответ поставлен в очередь и скоро будет отправлен."

    answer = _until(lambda: [m for m in world.inbox.mails if m["In-Reply-To"]], "the answer at the SMTP server")[0]
    assert answer["To"] == "anna@romashka.example" and answer["From"] == f"office@{console.domain}"
    assert str(email.header.make_header(email.header.decode_header(answer["Subject"]))) == "Re: Поставка"
    assert answer["References"].split() == ["<root@romashka.example>", answer["In-Reply-To"]]
    payload = answer.get_payload(decode=True)
    assert isinstance(payload, bytes) and payload.decode("utf-8").startswith("Завтра, до обеда.")
    page.reload()
    out = page.locator("#timeline-rows tr.email.out")
    assert "Re: Поставка" in out.inner_text() and "↳ Ответ на письмо" in out.inner_text()
    assert page.locator("form.reply-form").count() == 1  # our answer is not answered from here
    page.screenshot(path=str(artifacts / "crm-reply.png"), full_page=True)
