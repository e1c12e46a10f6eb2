"""Invoices of a deal and payment control: the status follows the payments linked to an invoice, the REST
routes validate (amount > 0, due on or after issue, a 3-letter currency, a unique number) and keep other
tenants out (404), an employee changes the invoices of their own deals only, and the overdue scan makes one
task per overdue invoice (a fake clock; a restart makes no second), closed by the payment that settles it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from zvonok.bus import LocalBus
from zvonok.crm.events import InvoiceOverdue, TaskChanged
from zvonok.crm.invoices import invoice_status
from zvonok.crm.reminders import TaskScheduler
from zvonok.org import accounts
from zvonok.org.models import Employee

Api = Any
PASSWORD = "invoice-password-1"


@pytest.mark.parametrize(("state", "amount", "paid", "status"), [
    ("issued", "100.00", "0.00", "issued"),
    ("issued", "100.00", "0.01", "partly_paid"),
    ("issued", "100.00", "99.99", "partly_paid"),
    ("issued", "100.00", "100.00", "paid"),
    ("issued", "100.00", "150.00", "paid"),  # overpaid is paid
    ("draft", "100.00", "0.00", "draft"),
    ("cancelled", "100.00", "40.00", "cancelled"),
    ("cancelled", "100.00", "100.00", "cancelled"),
])
def test_status_follows_the_payments(state: str, amount: str, paid: str, status: str) -> None:
    assert invoice_status(state, Decimal(amount), Decimal(paid)) == status


async def _employee(api: Api, t: Any, name: str) -> tuple[int, dict[str, str]]:
    base = f"/api/v1/tenants/{t.id}"
    email = f"{name.lower()}@{t.domain}"
    r = await api.client.post(f"{base}/employees", headers=t.headers, json={"full_name": name, "email": email})
    assert r.status_code == 201, r.text
    emp_id = int(r.json()["id"])
    async with api.db.session() as session:
        emp = await session.get(Employee, emp_id)
        assert emp is not None
        await accounts.set_employee_login(session, t.id, emp, PASSWORD, "employee")
        await session.commit()
    r = await api.client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return emp_id, {"Authorization": f"Bearer {r.json()['access_token']}"}


async def _deal(api: Api, make_tenant: Any) -> tuple[Any, str, int]:
    t = await make_tenant(f"inv-{uuid.uuid4().hex[:6]}.example")
    crm = f"/api/v1/tenants/{t.id}/crm"
    r = await api.client.post(f"{crm}/deals", headers=t.headers, json={"title": "Deal", "amount": "1000.00",
                                                                       "currency": "EUR"})
    assert r.status_code == 201, r.text
    return t, crm, int(r.json()["id"])


async def test_invoice_crud_validation_and_payments(api: Api, make_tenant: Any) -> None:
    t, crm, deal = await _deal(api, make_tenant)
    url = f"{crm}/deals/{deal}/invoices"
    r = await api.client.post(url, headers=t.headers, json={"number": "INV-1", "amount": "600.00",
                                                            "issued_on": "2026-12-01", "due_on": "2026-12-15"})
    assert r.status_code == 201, r.text
    inv = r.json()
    assert (inv["currency"], inv["status"], inv["paid"], inv["unpaid"]) == ("EUR", "issued", "0.00", "600.00")
    bad = [({"number": "X", "amount": "0", "due_on": "2026-12-15"}, "amount"),
           ({"number": "X", "amount": "-5", "due_on": "2026-12-15"}, "amount"),
           ({"number": "X", "amount": "5", "issued_on": "2026-12-10", "due_on": "2026-12-09"}, "due_on"),
           ({"number": "X", "amount": "5", "due_on": "2026-12-15", "currency": "EU"}, "currency"),
           ({"number": "X", "amount": "5", "due_on": "2026-12-15", "currency": "E1R"}, "currency"),
           ({"number": "", "amount": "5", "due_on": "2026-12-15"}, "number")]
    for body, field in bad:
        r = await api.client.post(url, headers=t.headers, json=body)
        assert r.status_code == 422, (body, r.text)
        assert field in r.text, r.text
    r = await api.client.post(url, headers=t.headers, json={"number": "INV-1", "amount": "5", "due_on": "2026-12-15"})
    assert r.status_code == 409 and "INV-1" in r.text
    r = await api.client.post(url, headers=t.headers,
                              json={"number": "D-1", "amount": "5", "due_on": "2099-01-01", "draft": True})
    assert r.status_code == 201 and r.json()["status"] == "draft"
    draft = r.json()["id"]

    pay = f"{crm}/invoices/{inv['id']}/payments"
    r = await api.client.post(pay, headers=t.headers, json={"amount": "100.00", "paid_on": "2026-12-05"})
    assert r.status_code == 201, r.text
    assert r.json()["invoice_id"] == inv["id"]
    got = (await api.client.get(f"{crm}/invoices/{inv['id']}", headers=t.headers)).json()
    assert (got["status"], got["paid"], got["unpaid"]) == ("partly_paid", "100.00", "500.00")
    # a deal payment naming the invoice counts too; the deal's paid sums every payment
    r = await api.client.post(f"{crm}/deals/{deal}/payments", headers=t.headers,
                              json={"amount": "500.00", "paid_on": "2026-12-06", "invoice_id": inv["id"]})
    assert r.status_code == 201, r.text
    got = (await api.client.get(f"{crm}/invoices/{inv['id']}", headers=t.headers)).json()
    assert (got["status"], got["unpaid"]) == ("paid", "0.00")
    assert (await api.client.get(f"{crm}/deals/{deal}", headers=t.headers)).json()["paid"] == "600.00"
    # a draft takes no payment until issued
    r = await api.client.post(f"{crm}/invoices/{draft}/payments", headers=t.headers,
                              json={"amount": "1", "paid_on": "2026-12-05"})
    assert r.status_code == 422 and "draft" in r.text
    r = await api.client.patch(f"{crm}/invoices/{draft}", headers=t.headers, json={"draft": False, "amount": "7.50"})
    assert r.status_code == 200 and (r.json()["status"], r.json()["amount"]) == ("issued", "7.50")
    r = await api.client.patch(f"{crm}/invoices/{draft}", headers=t.headers, json={"due_on": "2000-01-01"})
    assert r.status_code == 422 and "due_on" in r.text
    r = await api.client.patch(f"{crm}/invoices/{draft}", headers=t.headers, json={"number": "INV-1"})
    assert r.status_code == 409
    # cancelled: shown so, and changed no more
    r = await api.client.post(f"{crm}/invoices/{draft}/cancel", headers=t.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await api.client.patch(f"{crm}/invoices/{draft}", headers=t.headers, json={"amount": "9"})
    assert r.status_code == 422 and "cancelled" in r.text
    r = await api.client.post(f"{crm}/deals/{deal}/payments", headers=t.headers,
                              json={"amount": "1", "paid_on": "2026-12-06", "invoice_id": draft})
    assert r.status_code == 422 and "cancelled" in r.text
    listed = (await api.client.get(url, headers=t.headers)).json()
    assert [(i["number"], i["status"]) for i in listed] == [("INV-1", "paid"), ("D-1", "cancelled")]
    # removing a payment makes the invoice partly paid again
    pays = (await api.client.get(f"{crm}/deals/{deal}/payments", headers=t.headers)).json()
    last = next(p["id"] for p in pays if p["amount"] == "500.00")
    assert (await api.client.delete(f"{crm}/payments/{last}", headers=t.headers)).status_code == 204
    got = (await api.client.get(f"{crm}/invoices/{inv['id']}", headers=t.headers)).json()
    assert (got["status"], got["paid"]) == ("partly_paid", "100.00")


async def test_employee_access_and_other_tenants(api: Api, make_tenant: Any) -> None:
    t, crm, _ = await _deal(api, make_tenant)
    ivan, ivan_h = await _employee(api, t, "Ivan")
    _, olga_h = await _employee(api, t, "Olga")
    deal = (await api.client.post(f"{crm}/deals", headers=ivan_h, json={"title": "Ivan's"})).json()["id"]
    url = f"{crm}/deals/{deal}/invoices"
    body = {"number": "I-7", "amount": "70", "due_on": "2099-01-01"}
    assert (await api.client.post(url, headers=olga_h, json=body)).status_code == 403
    r = await api.client.post(url, headers=ivan_h, json=body)
    assert r.status_code == 201, r.text
    inv = r.json()["id"]
    assert (await api.client.get(url, headers=olga_h)).status_code == 200  # anyone of the company reads
    assert (await api.client.patch(f"{crm}/invoices/{inv}", headers=olga_h, json={"amount": "1"})).status_code == 403
    assert (await api.client.post(f"{crm}/invoices/{inv}/cancel", headers=olga_h)).status_code == 403
    assert (await api.client.post(f"{crm}/invoices/{inv}/payments", headers=olga_h,
                                  json={"amount": "1", "paid_on": "2026-12-01"})).status_code == 403
    assert (await api.client.post(f"{crm}/invoices/{inv}/payments", headers=ivan_h,
                                  json={"amount": "1", "paid_on": "2026-12-01"})).status_code == 201
    other = await make_tenant(f"other-{uuid.uuid4().hex[:6]}.example")
    ocrm = f"/api/v1/tenants/{other.id}/crm"
    h = other.headers
    assert (await api.client.get(f"{ocrm}/deals/{deal}/invoices", headers=h)).status_code == 404
    assert (await api.client.post(f"{ocrm}/deals/{deal}/invoices", headers=h, json=body | {"number": "Z"})
            ).status_code == 404
    assert (await api.client.get(f"{ocrm}/invoices/{inv}", headers=h)).status_code == 404
    assert (await api.client.patch(f"{ocrm}/invoices/{inv}", headers=h, json={"amount": "1"})).status_code == 404
    assert (await api.client.post(f"{ocrm}/invoices/{inv}/cancel", headers=h)).status_code == 404
    assert (await api.client.post(f"{ocrm}/invoices/{inv}/payments", headers=h,
                                  json={"amount": "1", "paid_on": "2026-12-01"})).status_code == 404
    # the other company may use the same number: numbers are unique per company
    odeal = (await api.client.post(f"{ocrm}/deals", headers=h, json={"title": "Theirs"})).json()["id"]
    assert (await api.client.post(f"{ocrm}/deals/{odeal}/invoices", headers=h, json=body)).status_code == 201
    # a payment of their deal may not name our invoice
    r = await api.client.post(f"{ocrm}/deals/{odeal}/payments", headers=h,
                              json={"amount": "1", "paid_on": "2026-12-01", "invoice_id": inv})
    assert r.status_code == 422 and "invoice_id" in r.text
    assert ivan  # the deal's owner


async def test_overdue_invoice_makes_one_task(api: Api, make_tenant: Any) -> None:
    t, crm, _ = await _deal(api, make_tenant)
    ivan, ivan_h = await _employee(api, t, "Ivan")
    deal = (await api.client.post(f"{crm}/deals", headers=ivan_h, json={"title": "Ivan's", "currency": "RUB"})
            ).json()["id"]
    url = f"{crm}/deals/{deal}/invoices"
    made = {}
    for number, amount, due, draft in (("A-1", "1000.00", "2026-12-10", False), ("A-2", "50.00", "2026-12-10", False),
                                       ("A-3", "80.00", "2026-12-10", True), ("A-4", "90.00", "2026-12-20", False)):
        r = await api.client.post(url, headers=ivan_h, json={"number": number, "amount": amount,
                                                             "issued_on": "2026-12-01", "due_on": due, "draft": draft})
        assert r.status_code == 201, r.text
        made[number] = r.json()["id"]
    for inv, amount in ((made["A-1"], "400.00"), (made["A-2"], "50.00")):  # A-1 partly, A-2 fully paid
        r = await api.client.post(f"{crm}/invoices/{inv}/payments", headers=ivan_h,
                                  json={"amount": amount, "paid_on": "2026-12-05"})
        assert r.status_code == 201
    seen: list[object] = []
    api.db.add_listener(seen.append)
    now = [datetime(2026, 12, 10, 23, 0, tzinfo=UTC)]  # the due day itself: not overdue yet
    bus = LocalBus()
    assert await TaskScheduler(api.db, bus, clock=lambda: now[0]).tick() == 0
    now[0] = datetime(2026, 12, 11, 0, 5, tzinfo=UTC)
    assert await TaskScheduler(api.db, bus, clock=lambda: now[0]).tick() == 1  # A-1 only
    assert await TaskScheduler(api.db, bus, clock=lambda: now[0]).tick() == 0  # "restarted": not again
    now[0] += timedelta(days=30)  # A-4 is overdue too now; A-1 keeps its one task, which escalates as any task
    assert await TaskScheduler(api.db, bus, clock=lambda: now[0]).tick() == 2
    api.db.remove_listener(seen.append)
    overdue = [e for e in seen if isinstance(e, InvoiceOverdue)]
    assert [(e.number, e.unpaid, e.amount, e.currency, e.owner_id, e.deal_id) for e in overdue] == [
        ("A-1", "600.00", "1000.00", "RUB", ivan, deal), ("A-4", "90.00", "90.00", "RUB", ivan, deal)]
    tasks = (await api.client.get(f"{crm}/tasks", headers=ivan_h, params={"deal_id": deal})).json()["items"]
    assert [(x["title"], x["assignee_id"], x["kind"], x["done"]) for x in tasks] == [
        ("Invoice A-1 is overdue: 600.00 of 1000.00 RUB unpaid", ivan, "invoice", False),
        ("Invoice A-4 is overdue: 90.00 of 90.00 RUB unpaid", ivan, "invoice", False)]
    a1 = (await api.client.get(f"{crm}/invoices/{made['A-1']}", headers=ivan_h)).json()
    assert a1["overdue_task_id"] == overdue[0].task_id
    created = [e for e in seen if isinstance(e, TaskChanged) and e.action == "created"]
    assert {e.task_id for e in created} == {e.task_id for e in overdue}
    # a partial payment leaves the task open, the one that settles the invoice closes it
    await api.client.post(f"{crm}/invoices/{made['A-1']}/payments", headers=ivan_h,
                          json={"amount": "100.00", "paid_on": "2026-12-12"})
    assert not (await api.client.get(f"{crm}/tasks/{a1['overdue_task_id']}", headers=ivan_h)).json()["done"]
    await api.client.post(f"{crm}/invoices/{made['A-1']}/payments", headers=ivan_h,
                          json={"amount": "500.00", "paid_on": "2026-12-13"})
    assert (await api.client.get(f"{crm}/tasks/{a1['overdue_task_id']}", headers=ivan_h)).json()["done"]
    # cancelling an overdue invoice closes its task too
    a4 = (await api.client.get(f"{crm}/invoices/{made['A-4']}", headers=ivan_h)).json()
    assert (await api.client.post(f"{crm}/invoices/{made['A-4']}/cancel", headers=ivan_h)).status_code == 200
    assert (await api.client.get(f"{crm}/tasks/{a4['overdue_task_id']}", headers=ivan_h)).json()["done"]
    assert await TaskScheduler(api.db, bus, clock=lambda: now[0]).tick() == 0


DATA = Path(__file__).resolve().parents[1] / "data" / "payments"


async def test_payments_import_is_all_or_nothing(api: Api, make_tenant: Any) -> None:
    t, crm, deal = await _deal(api, make_tenant)
    url = f"{crm}/deals/{deal}/invoices"
    ids = {}
    for number, amount, draft in (("P-1", "1000.00", False), ("P-2", "1000.50", False), ("P-D", "5.00", True)):
        r = await api.client.post(url, headers=t.headers, json={"number": number, "amount": amount,
                                                                "due_on": "2099-01-01", "draft": draft})
        assert r.status_code == 201, r.text
        ids[number] = r.json()["id"]
    csv_headers = t.headers | {"Content-Type": "text/csv"}
    r = await api.client.post(f"{crm}/payments/import", headers=csv_headers, content=(DATA / "bad.csv").read_bytes())
    assert r.status_code == 422, r.text
    errors = [(e["line"], e["message"]) for e in r.json()["errors"]]
    assert [line for line, _ in errors] == [2, 3, 4, 5, 6, 8], errors
    assert "amount '0'" in errors[0][1] and "no invoice 'NOPE'" in errors[1][1] and "2026-13-05" in errors[2][1]
    assert "formula" in errors[3][1] and "draft" in errors[4][1] and "line 7" in errors[5][1]
    assert r.json()["detail"] == "6 errors in the file; nothing was imported"
    assert (await api.client.get(f"{crm}/deals/{deal}/payments", headers=t.headers)).json() == []  # nothing
    r = await api.client.post(f"{crm}/payments/import", headers=t.headers,
                              files={"file": ("statement.csv", (DATA / "good.csv").read_bytes(), "text/csv")})
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 3
    p1 = (await api.client.get(f"{crm}/invoices/{ids['P-1']}", headers=t.headers)).json()
    p2 = (await api.client.get(f"{crm}/invoices/{ids['P-2']}", headers=t.headers)).json()
    assert (p1["status"], p1["paid"]) == ("partly_paid", "500.00")
    assert (p2["status"], p2["paid"]) == ("paid", "1000.50")
    pays = (await api.client.get(f"{crm}/deals/{deal}/payments", headers=t.headers)).json()
    assert sorted((p["paid_on"], p["note"]) for p in pays) == [
        ("2026-12-05", "BANK-001"), ("2026-12-06", "BANK-002"), ("2026-12-07", "")]
    # the same statement again: its references are recorded, nothing is paid twice
    r = await api.client.post(f"{crm}/payments/import", headers=csv_headers, content=(DATA / "good.csv").read_bytes())
    assert r.status_code == 422 and [e["line"] for e in r.json()["errors"]] == [2, 3], r.text
    # an employee imports payments of their own deals only
    _, olga_h = await _employee(api, t, "Olga")
    r = await api.client.post(f"{crm}/payments/import", headers=olga_h | {"Content-Type": "text/csv"},
                              content=b"invoice_number,amount,paid_at\nP-1,1,2026-12-08\n")
    assert r.status_code == 422 and "do not own" in r.text
    # another company's numbers are not ours
    other = await make_tenant(f"other-{uuid.uuid4().hex[:6]}.example")
    r = await api.client.post(f"/api/v1/tenants/{other.id}/crm/payments/import",
                              headers=other.headers | {"Content-Type": "text/csv"},
                              content=b"invoice_number,amount,paid_at\nP-1,1,2026-12-08\n")
    assert r.status_code == 422 and "no invoice 'P-1'" in r.text


async def test_a_deleted_overdue_task_is_not_made_again(api: Api, make_tenant: Any) -> None:
    t, crm, deal = await _deal(api, make_tenant)
    r = await api.client.post(f"{crm}/deals/{deal}/invoices", headers=t.headers, json={
        "number": "Q-1", "amount": "10", "issued_on": "2026-11-01", "due_on": "2026-11-02"})
    assert r.status_code == 201, r.text
    invoice = r.json()["id"]
    now = datetime(2026, 11, 5, tzinfo=UTC)
    assert await TaskScheduler(api.db, LocalBus(), clock=lambda: now).tick() == 1
    task = (await api.client.get(f"{crm}/invoices/{invoice}", headers=t.headers)).json()["overdue_task_id"]
    assert task is not None
    assert (await api.client.delete(f"{crm}/tasks/{task}", headers=t.headers)).status_code == 204
    assert await TaskScheduler(api.db, LocalBus(), clock=lambda: now + timedelta(days=1)).tick() == 0
    got = (await api.client.get(f"{crm}/invoices/{invoice}", headers=t.headers)).json()
    assert (got["overdue_task_id"], got["status"]) == (None, "issued")
