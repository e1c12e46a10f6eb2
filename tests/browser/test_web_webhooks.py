"""Settings → Webhooks in Chromium against a real server (started with ``ZVONOK_WEBHOOKS_ALLOW_PRIVATE``,
as the unit and integration webhook tests do, since the receiver is on loopback): the admin finds the
page in the menu, a URL that is not http(s) is refused with the service's reason, a webhook to a local
HTTP receiver is created (its secret shown once), a test event sent from its deliveries page reaches the
receiver signed with that secret and is listed as delivered with the status code, and the webhook is
switched off from the list."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .conftest import Console, harness, log_in

pytestmark = pytest.mark.integration


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 in a thread: records each POST and answers 200."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            rec.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
            rec.arrived.set()
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The demo company's server, allowed to call webhooks on loopback."""
    tmp = tmp_path_factory.mktemp("web_webhooks")
    domain = f"hooks-{secrets.token_hex(3)}.test"
    server = harness.ZvonokServer(data_dir=tmp / "data", database_url=os.environ.get("ZVONOK_TEST_DATABASE_URL") or None,
                                  env={"ZVONOK_DEMO_DOMAIN": domain, "ZVONOK_WEBHOOKS_ALLOW_PRIVATE": "1"})
    demo = json.loads(server.cli("demo", "--no-serve", "--json"))
    server.start()
    try:
        yield Console(server=server, url=server.http_url, domain=domain, tenant_id=int(demo["tenant_id"]),
                      admin_login=demo["admin_login"], admin_password=demo["admin_password"], workdir=tmp / "sipp")
    finally:
        code = server.stop()
        assert code == 0, f"zvonok serve exited with {code}:\n{server.log_tail()}"


def test_a_webhook_gets_a_signed_test_event(page: Any, console: Console, receiver: Receiver, artifacts: Path) -> None:
    log_in(page, console)
    page.click("nav.sections a[href='/settings/webhooks']")
    page.wait_for_url(console.url + "/settings/webhooks")
    assert "No webhooks yet." in page.locator("#webhooks").inner_text()

    form = page.locator("#webhook-form")
    form.locator("input[name=url]").fill(f"ftp://127.0.0.1:{receiver.port}/hook")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#webhook-errors")
    assert "only http:// and https:// URLs" in page.locator("#webhook-errors").inner_text()
    assert page.locator("#webhooks tbody tr[id^=webhook-]").count() == 0

    url = f"http://127.0.0.1:{receiver.port}/hook"
    form.locator("input[name=url]").fill(url)
    page.click("#webhook-events summary")
    form.locator("input[name=event_types][value=CdrWritten]").check()
    form.locator("input[name=event_types][value=DealChanged]").check()
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#created")
    secret = page.locator("#webhook-secret").inner_text()
    assert len(secret) == 64
    row = page.locator("#webhooks tbody tr", has_text=url)
    assert row.get_attribute("data-status") == "active"
    assert "CdrWritten" in row.locator(".webhook-events").inner_text()
    page.screenshot(path=str(artifacts / "webhooks-created.png"), full_page=True)

    row.locator("a", has_text="Deliveries").click()
    page.wait_for_selector("#webhook-url")
    assert page.locator("#webhook-url").inner_text() == url
    page.click("#webhook-ping button")
    page.wait_for_selector("#webhook-done")
    assert receiver.arrived.wait(30), "the test event never reached the receiver"
    got = receiver.requests[0]
    expected = hmac.new(secret.encode(), got.headers["x-zvonok-timestamp"].encode() + b"." + got.body,
                        hashlib.sha256).hexdigest()
    assert got.headers["x-zvonok-signature"] == f"sha256={expected}"
    assert json.loads(got.body)["type"] == "WebhookPing"

    delivered = page.locator("#deliveries tr[data-state=delivered]")
    deadline = time.monotonic() + 30
    while delivered.count() == 0:  # the job records the answer just after sending
        assert time.monotonic() < deadline, "the delivery never shows as delivered"
        time.sleep(0.3)
        page.click("#webhook-refresh")
        page.wait_for_selector("#deliveries")
    assert delivered.locator(".delivery-status").inner_text() == "200"
    assert delivered.locator(".delivery-attempts").inner_text() == "1"
    assert "WebhookPing" in delivered.inner_text() and "Delivered" in delivered.inner_text()
    page.screenshot(path=str(artifacts / "webhook-deliveries.png"), full_page=True)

    page.click("nav[aria-label=breadcrumb] a[href='/settings/webhooks']")
    row = page.locator("#webhooks tbody tr", has_text=url)
    assert "Delivered" in row.locator(".webhook-last").inner_text() and "HTTP 200" in row.locator(".webhook-last").inner_text()
    row.locator("button", has_text="Switch off").click()
    page.wait_for_selector("#webhooks-done")
    row = page.locator("#webhooks tbody tr", has_text=url)
    assert row.get_attribute("data-status") == "disabled"
    assert row.locator(".webhook-state").inner_text() == "Switched off"
    assert secret not in page.content()  # the secret was shown once

    page.click("button[name=lang][value=ru]")  # the demo company's own language
    page.wait_for_selector("html[lang=ru]")
    assert page.locator("h1").inner_text() == "Вебхуки"
    assert page.locator("#webhooks tbody tr", has_text=url).locator(".webhook-state").inner_text() == "Выключен"
    page.click("#webhook-events summary")
    page.screenshot(path=str(artifacts / "webhooks-ru.png"), full_page=True)


def _api(console: Console, method: str, path: str, token: str | None = None, body: Any = None,
         headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(console.url + path, data=data, method=method, headers={
        "Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_a_payment_provider_pays_an_invoice_through_the_url_on_the_page(page: Any, console: Console,
                                                                          artifacts: Path) -> None:
    """Payment notifications switched on from the page: a notification signed with the secret shown there,
    POSTed to the URL shown there, pays the invoice on the real server (a copy pays nothing twice)."""
    status, login = _api(console, "POST", "/api/v1/auth/login",
                         body={"email": console.admin_login, "password": console.admin_password})
    assert status == 200, login
    token, crm = login["access_token"], f"/api/v1/tenants/{console.tenant_id}/crm"
    status, deal = _api(console, "POST", f"{crm}/deals", token, {"title": "Hook deal", "amount": "700.00"})
    assert status == 201, deal
    status, invoice = _api(console, "POST", f"{crm}/deals/{deal['id']}/invoices", token,
                           {"number": "HOOK-1", "amount": "700.00", "due_on": "2099-01-01"})
    assert status == 201, invoice

    log_in(page, console)
    page.goto(console.url + "/settings/webhooks")
    page.click("#payment-hook-on")
    page.wait_for_selector("#payment-hook-secret")
    secret = page.locator("#payment-hook-secret").inner_text().strip()
    url = page.locator("#payment-hook-url").inner_text().strip()
    page.locator("#payment-hook").screenshot(path=str(artifacts / "payment-hook-on.png"))
    assert url.startswith(console.url + "/api/v1/hooks/payments/") and len(secret) == 64

    body = json.dumps({"invoice_number": "HOOK-1", "amount": "700.00", "paid_at": "2026-12-04",
                       "reference": "PSP-1"}).encode()
    timestamp = str(int(time.time()))
    signature = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    path = url.removeprefix(console.url)
    signed = {"X-Zvonok-Timestamp": timestamp, "X-Zvonok-Signature": signature}
    status, paid = _api(console, "POST", path, raw=body, headers=signed)
    assert status == 201 and paid["duplicate"] is False, paid
    status, again = _api(console, "POST", path, raw=body, headers=signed)
    assert status == 200 and again == paid | {"duplicate": True}
    status, wrong = _api(console, "POST", path, raw=body, headers=signed | {"X-Zvonok-Signature": "sha256=00"})
    assert status == 401, wrong
    status, now = _api(console, "GET", f"{crm}/invoices/{invoice['id']}", token)
    assert (now["status"], now["paid"]) == ("paid", "700.00"), now

    page.click("#payment-hook-off")
    page.wait_for_selector("#payment-hook-on")
    status, _ = _api(console, "POST", path, raw=body, headers=signed)
    assert status == 401  # off: the URL takes nothing
