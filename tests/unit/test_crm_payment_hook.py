"""Payments by webhook (zvonok.crm.payment_hook): the company admin turns it on and gets a URL and a secret;
a signed notification records a payment of an issued invoice (it becomes paid, its events go out), a copy of
it records nothing twice (200, duplicate), and a URL nobody knows, a wrong or missing signature, a stale
timestamp or the secret of another company all get one and the same 401. A signed notification that cannot
be recorded gets 422 and the reason; turning it off or on again retires the old URL."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from zvonok.crm import payment_hook
from zvonok.webhooks.delivery import signature

Api = Any


def _signed(secret: str, body: dict[str, Any] | bytes, *, at: float | None = None) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    timestamp = str(int(time.time() if at is None else at))
    return raw, {"Content-Type": "application/json", "X-Zvonok-Timestamp": timestamp,
                 "X-Zvonok-Signature": signature(secret, timestamp, raw)}


async def _company(api: Api, make_tenant: Any) -> tuple[Any, str, dict[str, int]]:
    t = await make_tenant(f"hook-{uuid.uuid4().hex[:6]}.example")
    crm = f"/api/v1/tenants/{t.id}/crm"
    r = await api.client.post(f"{crm}/deals", headers=t.headers, json={"title": "Deal", "amount": "900.00"})
    assert r.status_code == 201, r.text
    deal = r.json()["id"]
    ids = {}
    for number, draft in (("H-1", False), ("H-D", True)):
        r = await api.client.post(f"{crm}/deals/{deal}/invoices", headers=t.headers,
                                  json={"number": number, "amount": "900.00", "due_on": "2099-01-01", "draft": draft})
        assert r.status_code == 201, r.text
        ids[number] = r.json()["id"]
    return t, crm, ids


async def test_a_signed_notification_pays_the_invoice_once(api: Api, make_tenant: Any) -> None:
    t, crm, ids = await _company(api, make_tenant)
    r = await api.client.get(f"{crm}/payment-hook", headers=t.headers)
    assert r.json() == {"enabled": False, "path": None}
    r = await api.client.post(f"{crm}/payment-hook", headers=t.headers)
    assert r.status_code == 201, r.text
    path, secret = r.json()["path"], r.json()["secret"]
    assert path.startswith("/api/v1/hooks/payments/") and len(secret) == 64
    assert (await api.client.get(f"{crm}/payment-hook", headers=t.headers)).json() == {"enabled": True, "path": path}

    payment = {"invoice_number": "H-1", "amount": "400.00", "paid_at": "2026-12-04", "reference": "PSP-77"}
    raw, headers = _signed(secret, payment)
    r = await api.client.post(path, content=raw, headers=headers)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["invoice_number"] == "H-1" and first["duplicate"] is False
    inv = (await api.client.get(f"{crm}/invoices/{ids['H-1']}", headers=t.headers)).json()
    assert (inv["status"], inv["paid"]) == ("partly_paid", "400.00")
    # the provider sends it again (it did not see our answer): nothing is paid twice
    r = await api.client.post(path, content=raw, headers=headers)
    assert r.status_code == 200 and r.json() == first | {"duplicate": True}, r.text
    # the rest, with another reference, settles the invoice
    raw, headers = _signed(secret, payment | {"amount": "500", "reference": "PSP-78", "paid_at": "05.12.2026"})
    assert (await api.client.post(path, content=raw, headers=headers)).status_code == 201
    inv = (await api.client.get(f"{crm}/invoices/{ids['H-1']}", headers=t.headers)).json()
    assert (inv["status"], inv["paid"]) == ("paid", "900.00")
    pays = (await api.client.get(f"{crm}/deals/{inv['deal_id']}/payments", headers=t.headers)).json()
    assert sorted((p["paid_on"], p["amount"], p["note"]) for p in pays) == [
        ("2026-12-04", "400.00", "PSP-77"), ("2026-12-05", "500.00", "PSP-78")]

    # signed, but nothing to record: the reason
    for body, reason in ((payment | {"invoice_number": "NOPE", "reference": "x1"}, "no invoice 'NOPE'"),
                         (payment | {"invoice_number": "H-D", "reference": "x2"}, "draft"),
                         (payment | {"amount": "-3", "reference": "x3"}, "amount"),
                         (payment | {"paid_at": "2026-13-01", "reference": "x4"}, "paid_at"),
                         (payment | {"reference": "=HYPERLINK(1)"}, "formula"),
                         ({k: v for k, v in payment.items() if k != "reference"}, "reference"),
                         (payment | {"extra": "1"}, "unknown field"),
                         (b"[1, 2]", "JSON object"), (b"\xff", "not JSON")):
        raw, headers = _signed(secret, body)
        r = await api.client.post(path, content=raw, headers=headers)
        assert r.status_code == 422 and reason in r.json()["detail"], (body, r.text)
    assert len((await api.client.get(f"{crm}/deals/{inv['deal_id']}/payments", headers=t.headers)).json()) == 2


async def test_nobody_learns_whether_a_url_exists(api: Api, make_tenant: Any) -> None:
    t, crm, _ = await _company(api, make_tenant)
    other, other_crm, _ = await _company(api, make_tenant)
    path, secret = (r := (await api.client.post(f"{crm}/payment-hook", headers=t.headers)).json())["path"], r["secret"]
    other_secret = (await api.client.post(f"{other_crm}/payment-hook", headers=other.headers)).json()["secret"]
    payment = {"invoice_number": "H-1", "amount": "1", "paid_at": "2026-12-04", "reference": "R"}
    raw, good = _signed(secret, payment)
    attempts = [
        ("/api/v1/hooks/payments/" + "x" * 32, good),  # a URL nobody has
        ("/api/v1/hooks/payments/" + "x" * 400, good),
        (path, {k: v for k, v in good.items() if k != "X-Zvonok-Signature"}),
        (path, {k: v for k, v in good.items() if k != "X-Zvonok-Timestamp"}),
        (path, good | {"X-Zvonok-Signature": "sha256=" + "0" * 64}),
        (path, _signed(other_secret, payment)[1]),  # another company's secret
        (path, _signed(secret, payment, at=time.time() - 2 * payment_hook.MAX_SKEW)[1]),  # replayed later
        (path, good | {"X-Zvonok-Timestamp": "1e9"}),
    ]
    answers = []
    for url, headers in attempts:
        r = await api.client.post(url, content=raw, headers=headers)
        answers.append((r.status_code, r.text))
    assert set(answers) == {(401, json.dumps(payment_hook_http_detail(), separators=(",", ":")))}, answers
    # off: the URL is gone; on again: a new URL, the old one is unknown
    assert (await api.client.delete(f"{crm}/payment-hook", headers=t.headers)).status_code == 204
    assert (await api.client.post(path, content=raw, headers=good)).status_code == 401
    again = (await api.client.post(f"{crm}/payment-hook", headers=t.headers)).json()
    assert again["path"] != path
    assert (await api.client.post(path, content=raw, headers=_signed(again["secret"], payment)[1])).status_code == 401
    # another company's admin gets 404 (an employee's 403: test_api_roles.py)
    for method in ("GET", "POST", "DELETE"):
        r = await api.client.request(method, f"{crm}/payment-hook", headers=other.headers)
        assert r.status_code == 404, (method, r.text)
    assert (await api.client.get(f"{crm}/payment-hook", headers=t.headers)).json()["path"] == again["path"]


def payment_hook_http_detail() -> dict[str, str]:
    from zvonok.crm.payment_hook_http import UNAUTHORIZED

    return UNAUTHORIZED
