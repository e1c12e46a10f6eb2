"""The deal page's invoices: the owner adds one (a bad one is refused with the reason), records a payment
against it (the status badge follows), cancels it; a colleague's deal shows no forms and refuses the posts
(403), another company's invoice is a 404 page, and the section is in Russian for a Russian company."""

from __future__ import annotations

import re
from pathlib import Path

import test_web
from test_web import Company, Web, csrf_of, login

import zvonok.web
from zvonok.crm import deals, schemas

web, a, b = test_web.web, test_web.a, test_web.b


async def test_invoices_on_the_deal_page(web: Web, a: Company, b: Company) -> None:
    async with web.client() as ivan:
        assert (await login(ivan, a.employee)).status_code == 303
        board = await ivan.get("/crm/deals")
        r = await ivan.post("/crm/deals/new", data={"csrf_token": csrf_of(board.text), "title": "Licences",
                                                     "amount": "1000"})
        assert r.status_code == 303, r.text
        deal = int(r.headers["location"].rsplit("/", 1)[1])
        page = await ivan.get(f"/crm/deals/{deal}")
        assert 'id="invoice-form"' in page.text and "No invoices yet." in page.text
        csrf = csrf_of(page.text)
        r = await ivan.post(f"/crm/deals/{deal}/invoices", data={
            "csrf_token": csrf, "number": "INV-9", "amount": "600", "issued_on": "2026-12-10", "due_on": "2026-12-01"})
        assert r.status_code == 422 and "is before the issue date" in r.text
        r = await ivan.post(f"/crm/deals/{deal}/invoices", data={
            "csrf_token": csrf, "number": "INV-9", "amount": "0", "issued_on": "2026-12-01", "due_on": "2026-12-20"})
        assert r.status_code == 422 and "amount" in r.text
        r = await ivan.post(f"/crm/deals/{deal}/invoices", data={
            "csrf_token": csrf, "number": "INV-9", "amount": "600,50", "issued_on": "2026-12-01",
            "due_on": "2026-12-20"})
        assert r.status_code == 303, r.text
        page = await ivan.get(f"/crm/deals/{deal}")
        row = re.search(r'<tr id="invoice-(\d+)">(.*?)</tr>', page.text, re.S)
        assert row is not None and "INV-9" in row.group(2) and 'class="inv-status issued">Issued<' in row.group(2)
        invoice = int(row.group(1))
        assert f'<option value="{invoice}">INV-9' in page.text  # the payment form offers it
        r = await ivan.post(f"/crm/deals/{deal}/payments", data={"csrf_token": csrf, "amount": "100",
                                                                 "paid_on": "2026-12-05", "method": "card",
                                                                 "invoice_id": str(invoice)})
        assert r.status_code == 303, r.text
        page = await ivan.get(f"/crm/deals/{deal}")
        assert 'class="inv-status partly_paid">Partly paid<' in page.text
        r = await ivan.post(f"/crm/deals/{deal}/invoices", data={
            "csrf_token": csrf, "number": "INV-9", "amount": "5", "issued_on": "2026-12-01", "due_on": "2026-12-20"})
        assert r.status_code == 422 and "INV-9" in r.text and "exists" in r.text
        r = await ivan.post(f"/crm/deals/{deal}/invoices/{invoice}/cancel", data={"csrf_token": csrf})
        assert r.status_code == 303
        page = await ivan.get(f"/crm/deals/{deal}")
        assert 'class="inv-status cancelled">Cancelled<' in page.text
        assert f'<option value="{invoice}">' not in page.text  # a cancelled invoice takes no payment
    async with web.client() as admin:  # the admin's own deal: the employee sees it without the forms
        assert (await login(admin, a.admin)).status_code == 303
        board = await admin.get("/crm/deals")
        r = await admin.post("/crm/deals/new", data={"csrf_token": csrf_of(board.text), "title": "Admin's"})
        theirs = int(r.headers["location"].rsplit("/", 1)[1])
    async with web.client() as ivan:
        assert (await login(ivan, a.employee)).status_code == 303
        page = await ivan.get(f"/crm/deals/{theirs}")
        assert page.status_code == 200 and 'id="invoice-form"' not in page.text
        r = await ivan.post(f"/crm/deals/{theirs}/invoices", data={
            "csrf_token": csrf_of(page.text), "number": "X-1", "amount": "5", "issued_on": "2026-12-01",
            "due_on": "2026-12-20"})
        assert r.status_code == 403
    async with web.db.session() as session:
        their_deal = await deals.create_deal(session, b.id, schemas.DealCreate(title="Сделка"),
                                             deals.Actor(admin=True))
        await session.commit()
    async with web.client() as other:  # company B (Russian): A's invoice is a 404, its own page in Russian
        assert (await login(other, b.admin)).status_code == 303
        page = await other.get(f"/crm/deals/{their_deal.id}")
        assert "Счета" in page.text and "Счетов пока нет." in page.text and "Выставить счёт" in page.text
        r = await other.post(f"/crm/deals/{deal}/invoices/{invoice}/cancel", data={"csrf_token": csrf_of(page.text)})
        assert r.status_code == 404
        r = await other.post(f"/crm/deals/{their_deal.id}/invoices/{invoice}/cancel",
                             data={"csrf_token": csrf_of(page.text)})
        assert r.status_code == 404


def test_invoice_translations() -> None:
    text = (Path(zvonok.web.__file__).parent / "locale" / "ru" / "LC_MESSAGES" / "messages.po").read_text("utf-8")
    for msgid in ("Invoices", "Add the invoice", "Partly paid", "Draft", "Issued", "Cancel the invoice", "past due"):
        entry = re.search(r'msgid "' + re.escape(msgid) + r'"\nmsgstr "(.+)"', text)
        assert entry is not None and entry.group(1), msgid
