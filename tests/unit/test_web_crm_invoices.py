"""The deal page's invoices: the owner adds one (a bad one is refused with the reason), records a payment
against it (the status badge follows), cancels it; a colleague's deal shows no forms and refuses the posts
(403), another company's invoice is a 404 page, and the section is in Russian for a Russian company. The
client card's price history lists the invoices of the client's deals, newest first."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import test_web
from test_web import Company, Web, csrf_of, login

import zvonok.web
from zvonok.crm import deals, invoices, schemas, service

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


async def test_price_history_on_the_client_card(web: Web, a: Company) -> None:
    async with web.db.session() as session:
        client = await service.create_client(session, a.id, schemas.ClientCreate(name="Ромашка"))
        other = await service.create_client(session, a.id, schemas.ClientCreate(name="Other"))
        admin = deals.Actor(admin=True)
        old = await deals.create_deal(session, a.id, schemas.DealCreate(title="Licences 2025", client_id=client.id,
                                                                        currency="RUB"), admin)
        new = await deals.create_deal(session, a.id, schemas.DealCreate(title="Licences 2026", client_id=client.id,
                                                                        currency="RUB"), admin)
        theirs = await deals.create_deal(session, a.id, schemas.DealCreate(title="Not theirs", client_id=other.id),
                                         admin)
        for deal, number, amount, issued in ((old, "H-1", "900.00", date(2025, 3, 1)),
                                             (new, "H-2", "1200.00", date(2026, 3, 1)),
                                             (theirs, "H-3", "5.00", date(2026, 4, 1))):
            await invoices.create_invoice(session, a.id, deal.id, schemas.InvoiceCreate(
                number=number, amount=Decimal(amount), issued_on=issued, due_on=issued + timedelta(days=10)), admin)
        h1 = (await invoices.list_invoices(session, a.id, old.id))[0]
        await invoices.record_payment(session, a.id, h1.id, schemas.InvoicePaymentIn(
            amount=Decimal("900.00"), paid_on=date(2025, 3, 5)), admin)
        await session.commit()
    async with web.client() as ivan:
        assert (await login(ivan, a.employee)).status_code == 303
        card = await ivan.get(f"/crm/{client.id}")
        assert card.status_code == 200
        section = re.search(r'<section id="price-history">(.*?)</section>', card.text, re.S)
        assert section is not None
        rows = re.findall(r"<tr><td>([\d-]+)</td>.*?>([^<]+)</a></td><td>([^<]+)</td>.*?inv-status (\w+)",
                          section.group(1), re.S)
        assert rows == [("2026-03-01", "Licences 2026", "H-2", "issued"), ("2025-03-01", "Licences 2025", "H-1", "paid")]
        assert "H-3" not in section.group(1)
        card = await ivan.get(f"/crm/{other.id}")
        assert "H-3" in card.text and "H-1" not in card.text
