"""The Settings → Webhooks page: the admin creates a webhook (its secret shown once, as the API's POST
does), sees it listed with its last delivery, sends a test event, switches it off and on and deletes it;
a refused URL (not http(s), an address inside the platform's network) or event type, and the quota,
show the service's reason on the page (422, nothing stored); an employee gets 403, another company's
webhook is a 404 page, a form without its CSRF token is refused, and the page is in Russian."""

from __future__ import annotations

import re

import httpx
import pytest
import test_web
from sqlalchemy import func, select
from test_web import Company, Web, csrf_of, login

from zvonok.crm.models import CrmSettings
from zvonok.org import quotas
from zvonok.webhooks.models import Webhook

web, a, b, admin_a = test_web.web, test_web.a, test_web.b, test_web.admin_a


async def _count(web: Web, tenant_id: int) -> int:
    async with web.db.session() as session:
        return int((await session.execute(select(func.count()).select_from(Webhook).where(
            Webhook.tenant_id == tenant_id))).scalar_one())


async def test_the_admin_manages_webhooks(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    page = await admin_a.get("/settings/webhooks")
    assert page.status_code == 200 and "No webhooks yet." in page.text
    assert '<a href="/settings/webhooks"' in (await admin_a.get("/")).text  # in the menu
    csrf = csrf_of(page.text)

    for url, reason in [("ftp://hooks.example.com/x", "only http:// and https:// URLs"),
                        ("https://127.0.0.1:8443/x", "127.0.0.1 is a loopback, link-local or private address"),
                        ("http://localhost/x", "localhost is this machine"),
                        ("https://user:pw@hooks.example.com/", "no user name or password in the URL")]:
        r = await admin_a.post("/settings/webhooks", data={"csrf_token": csrf, "url": url})
        assert r.status_code == 422 and reason in r.text, (url, r.text)
        assert 'id="webhook-errors"' in r.text and f'value="{url.replace("&", "&amp;")}"' in r.text
    r = await admin_a.post("/settings/webhooks", data={"csrf_token": csrf, "url": "https://hooks.example.com/z",
                                                       "event_types": ["CallStarted", "NoSuchEvent"]})
    assert r.status_code == 422 and "&#39;NoSuchEvent&#39; is not an event type" in r.text
    assert 'value="CallStarted" checked' in r.text  # the choice is kept
    r = await admin_a.post("/settings/webhooks", data={"csrf_token": csrf, "url": ""})
    assert r.status_code == 422 and "Required: an http:// or https:// URL" in r.text
    assert await _count(web, a.id) == 0

    r = await admin_a.post("/settings/webhooks", data={"csrf_token": csrf, "url": "https://hooks.example.com/z",
                                                       "event_types": ["CallStarted", "CdrWritten"]})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    shown = re.search(r'<code id="webhook-secret">([0-9a-f]{64})</code>', r.text)
    assert shown is not None
    async with web.db.session() as session:
        hook = (await session.execute(select(Webhook).where(Webhook.tenant_id == a.id))).scalar_one()
    assert hook.secret == shown.group(1) and hook.event_types == ["CallStarted", "CdrWritten"] and hook.enabled
    page = await admin_a.get("/settings/webhooks")
    assert hook.secret not in page.text  # shown once
    row = re.search(rf'<tr id="webhook-{hook.id}" data-status="active">(.*?)</tr>', page.text, re.S)
    assert row is not None and "https://hooks.example.com/z" in row.group(1) and "<code>CdrWritten</code>" in row.group(1)
    assert "None yet" in row.group(1)

    r = await admin_a.post(f"/settings/webhooks/{hook.id}/ping", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == f"/settings/webhooks/{hook.id}?done=pinged"
    detail = await admin_a.get(r.headers["location"])
    assert "A test event is queued" in detail.text
    assert re.search(r'data-state="pending">.*?<code>WebhookPing</code>.*?Pending', detail.text, re.S)
    page = await admin_a.get("/settings/webhooks")
    row = re.search(rf'<tr id="webhook-{hook.id}"[^>]*>(.*?)</tr>', page.text, re.S)
    assert row is not None and "Pending" in row.group(1)  # the last delivery

    r = await admin_a.post(f"/settings/webhooks/{hook.id}/enable", data={"csrf_token": csrf, "on": "0"})
    assert r.status_code == 303
    page = await admin_a.get(r.headers["location"])
    assert f'<tr id="webhook-{hook.id}" data-status="disabled">' in page.text and "The webhook is switched off." in page.text
    detail = await admin_a.get(f"/settings/webhooks/{hook.id}")
    assert 'id="webhook-ping"' not in detail.text
    r = await admin_a.post(f"/settings/webhooks/{hook.id}/ping", data={"csrf_token": csrf})
    assert r.status_code == 422 and "the webhook is disabled: enable it first" in r.text
    r = await admin_a.post(f"/settings/webhooks/{hook.id}/enable", data={"csrf_token": csrf, "on": "1"})
    page = await admin_a.get(r.headers["location"])
    assert f'<tr id="webhook-{hook.id}" data-status="active">' in page.text

    r = await admin_a.post(f"/settings/webhooks/{hook.id}/delete", data={})  # no CSRF token
    assert r.status_code == 403
    r = await admin_a.post(f"/settings/webhooks/{hook.id}/delete", data={"csrf_token": csrf})
    assert r.status_code == 303 and await _count(web, a.id) == 0
    assert (await admin_a.get(f"/settings/webhooks/{hook.id}")).status_code == 404


async def test_the_quota_is_shown_on_the_page(web: Web, a: Company, admin_a: httpx.AsyncClient,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(quotas._limits, "webhooks", 2)
    page = await admin_a.get("/settings/webhooks")
    csrf = csrf_of(page.text)
    for n in range(2):
        r = await admin_a.post("/settings/webhooks", data={"csrf_token": csrf, "url": f"https://h{n}.example.com/"})
        assert r.status_code == 200, r.text
    r = await admin_a.post("/settings/webhooks", data={"csrf_token": csrf, "url": "https://h3.example.com/"})
    assert r.status_code == 422 and "webhooks: the company has 2, the platform allows 2" in r.text
    assert "2 of 2 webhooks." in r.text and await _count(web, a.id) == 2


async def test_roles_and_other_companies(web: Web, a: Company, b: Company, admin_a: httpx.AsyncClient) -> None:
    page = await admin_a.get("/settings/webhooks")
    r = await admin_a.post("/settings/webhooks", data={"csrf_token": csrf_of(page.text),
                                                       "url": "https://hooks.example.com/a"})
    hook = int(re.findall(r'<tr id="webhook-(\d+)"', r.text)[0])
    async with web.client() as ivan:
        assert (await login(ivan, a.employee)).status_code == 303
        assert (await ivan.get("/settings/webhooks")).status_code == 403
        assert (await ivan.get(f"/settings/webhooks/{hook}")).status_code == 403
        assert "/settings/webhooks" not in (await ivan.get("/")).text
        csrf = csrf_of((await ivan.get("/")).text)
        r = await ivan.post(f"/settings/webhooks/{hook}/delete", data={"csrf_token": csrf})
        assert r.status_code == 403
    async with web.client() as other:
        assert (await login(other, b.admin)).status_code == 303
        page = await other.get("/settings/webhooks")
        assert page.status_code == 200 and "hooks.example.com" not in page.text
        assert "Вебхуки" in page.text and "Новый вебхук" in page.text  # company B speaks Russian
        csrf = csrf_of(page.text)
        assert (await other.get(f"/settings/webhooks/{hook}")).status_code == 404
        for action, data in [("delete", {}), ("enable", {"on": "0"}), ("ping", {})]:
            r = await other.post(f"/settings/webhooks/{hook}/{action}", data={"csrf_token": csrf, **data})
            assert r.status_code == 404, action
    assert await _count(web, a.id) == 1
    async with web.db.session() as session:
        assert (await session.get(Webhook, hook)).enabled  # type: ignore[union-attr]


async def test_payment_notifications_switched_on_renewed_and_off(web: Web, a: Company, b: Company,
                                                                  admin_a: httpx.AsyncClient) -> None:
    """The incoming side on the same page: on (a URL and its secret, the secret shown once), a new URL and
    secret (the old URL's key is gone), off; an employee cannot, another company's page shows none of it."""
    page = await admin_a.get("/settings/webhooks")
    assert 'id="payment-hook-on"' in page.text and 'id="payment-hook-url"' not in page.text
    csrf = csrf_of(page.text)
    r = await admin_a.post("/settings/webhooks/payments", data={"csrf_token": csrf})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    secret = re.search(r'<code id="payment-hook-secret">([0-9a-f]{64})</code>', r.text)
    url = re.search(r'<code id="payment-hook-url">(http://[^<]+/api/v1/hooks/payments/([\w-]+))</code>', r.text)
    assert secret is not None and url is not None

    async def stored() -> tuple[str | None, str | None]:
        async with web.db.session() as session:
            row = (await session.execute(select(CrmSettings).where(CrmSettings.tenant_id == a.id))).scalar_one()
            return row.payment_hook_key, row.payment_hook_secret

    assert await stored() == (url.group(2), secret.group(1))  # what the provider is given is what is checked
    page = await admin_a.get("/settings/webhooks")
    assert secret.group(1) not in page.text and url.group(1) in page.text  # the secret shown once, the URL kept
    r = await admin_a.post("/settings/webhooks/payments", data={"csrf_token": csrf})
    renewed = re.search(r'<code id="payment-hook-url">[^<]+/payments/([\w-]+)</code>', r.text)
    assert renewed is not None and renewed.group(1) != url.group(2) and (await stored())[0] == renewed.group(1)
    async with web.client() as ivan:
        assert (await login(ivan, a.employee)).status_code == 303
        r = await ivan.post("/settings/webhooks/payments/off", data={"csrf_token": csrf_of((await ivan.get("/")).text)})
        assert r.status_code == 403
    async with web.client() as other:
        assert (await login(other, b.admin)).status_code == 303
        page = await other.get("/settings/webhooks")
        assert renewed.group(1) not in page.text and 'id="payment-hook-on"' in page.text
        assert "Уведомления об оплатах" in page.text
    assert (await stored())[0] == renewed.group(1)
    r = await admin_a.post("/settings/webhooks/payments/off", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/settings/webhooks?done=payments_off#payment-hook"
    assert await stored() == (None, None)
    assert "Payment notifications are switched off" in (await admin_a.get(r.headers["location"])).text
    r = await admin_a.post("/settings/webhooks/payments", data={})  # no CSRF token
    assert r.status_code == 403 and await stored() == (None, None)
