"""The CRM's payments CSV import page: a file with a bad line lists every problem by line and records
nothing (all or nothing, as the API); a good file shows the count and the invoices it paid with their
status now; an employee records payments of their own deals only (another's invoice is a line's error),
another company's invoice numbers are not found, an empty upload is refused, and the page is in Russian."""

from __future__ import annotations

import re

import httpx
import test_web
from sqlalchemy import func, select
from test_web import Company, Web, csrf_of, login

from zvonok.crm.models import CrmPayment

web, a, b, admin_a = test_web.web, test_web.a, test_web.b, test_web.admin_a


async def _deal_with_invoice(client: httpx.AsyncClient, title: str, number: str, amount: str) -> int:
    board = await client.get("/crm/deals")
    assert 'href="/crm/deals/payments/import"' in board.text  # the board links to the import
    csrf = csrf_of(board.text)
    r = await client.post("/crm/deals/new", data={"csrf_token": csrf, "title": title, "amount": amount})
    assert r.status_code == 303, r.text
    deal = int(r.headers["location"].rsplit("/", 1)[1])
    r = await client.post(f"/crm/deals/{deal}/invoices", data={
        "csrf_token": csrf, "number": number, "amount": amount, "issued_on": "2026-12-01", "due_on": "2026-12-20"})
    assert r.status_code == 303, r.text
    return deal


async def _payments(web: Web, tenant_id: int) -> int:
    async with web.db.session() as session:
        return int((await session.execute(select(func.count()).select_from(CrmPayment).where(
            CrmPayment.tenant_id == tenant_id))).scalar_one())


async def _upload(client: httpx.AsyncClient, content: bytes, name: str = "statement.csv") -> httpx.Response:
    page = await client.get("/crm/deals/payments/import")
    assert page.status_code == 200
    return await client.post("/crm/deals/payments/import", data={"csrf_token": csrf_of(page.text)},
                             files={"file": (name, content, "text/csv")})


async def test_a_statement_is_imported_all_or_nothing(web: Web, a: Company, b: Company,
                                                      admin_a: httpx.AsyncClient) -> None:
    deal = await _deal_with_invoice(admin_a, "Licences", "P-1", "1000")
    assert 'href="/crm/deals/payments/import"' in (await admin_a.get(f"/crm/deals/{deal}")).text
    await _deal_with_invoice(admin_a, "Support", "P-2", "500")

    bad = (b"invoice_number;amount;paid_at;reference\n"
           b"P-1;400;2026-12-05;BANK-1\n"
           b"NOPE;10;2026-12-05;BANK-2\n"
           b"P-2;500;05.12.2026;BANK-3\n")
    r = await _upload(admin_a, bad, "bad.csv")
    assert r.status_code == 422, r.text
    assert "1 problem in bad.csv; nothing was recorded." in r.text
    rows = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td></tr>", r.text)
    assert rows == [("3", "no invoice &#39;NOPE&#39;")]
    assert await _payments(web, a.id) == 0

    good = bad.replace(b"NOPE;10;2026-12-05;BANK-2\n", b"P-1;100,50;2026-12-06;BANK-2\n")
    r = await _upload(admin_a, good, "good.csv")
    assert r.status_code == 200, r.text
    assert "3 payments recorded from good.csv." in r.text and await _payments(web, a.id) == 3
    table = re.search(r'<table class="striped" id="imported-payments">(.*?)</table>', r.text, re.S)
    assert table is not None and table.group(1).count("<tr>") == 4  # the header and three payments
    assert "BANK-3" in table.group(1) and "Licences" in table.group(1)
    paid = re.search(r'<table class="striped" id="paid-invoices">(.*?)</table>', r.text, re.S)
    assert paid is not None
    p1 = re.search(r">P-1</a>.*?</tr>", paid.group(1), re.S)
    p2 = re.search(r">P-2</a>.*?</tr>", paid.group(1), re.S)
    assert p1 is not None and 'class="inv-status partly_paid">Partly paid<' in p1.group(0)
    assert p2 is not None and 'class="inv-status paid">Paid<' in p2.group(0)

    r = await _upload(admin_a, good, "good.csv")  # the same statement again pays nothing twice
    assert r.status_code == 422 and "3 problems in good.csv; nothing was recorded." in r.text
    assert "reference &#39;BANK-1&#39; of invoice &#39;P-1&#39; is recorded" in r.text
    assert await _payments(web, a.id) == 3

    page = await admin_a.get("/crm/deals/payments/import")
    r = await admin_a.post("/crm/deals/payments/import", data={"csrf_token": csrf_of(page.text)},
                           files={"file": ("empty.csv", b"", "text/csv")})
    assert r.status_code == 422 and "Choose a CSV file with the payments." in r.text
    r = await admin_a.post("/crm/deals/payments/import", files={"file": ("x.csv", good, "text/csv")})
    assert r.status_code == 403  # no CSRF token

    async with web.client() as ivan:  # an employee: their own deals' invoices only
        assert (await login(ivan, a.employee)).status_code == 303
        await _deal_with_invoice(ivan, "Ivan's", "E-1", "300")
        r = await _upload(ivan, b"invoice_number,amount,paid_at\nE-1,300,2026-12-07\nP-1,1,2026-12-07\n")
        assert r.status_code == 422 and "invoice &#39;P-1&#39; is of a deal you do not own" in r.text
        r = await _upload(ivan, b"invoice_number,amount,paid_at\nE-1,300,2026-12-07\n")
        assert r.status_code == 200 and "1 payment recorded from statement.csv." in r.text
    assert await _payments(web, a.id) == 4

    async with web.client() as other:  # company B: A's numbers are not found; the page speaks Russian
        assert (await login(other, b.admin)).status_code == 303
        r = await _upload(other, b"invoice_number,amount,paid_at\nP-1,1,2026-12-08\n")
        assert r.status_code == 422 and "нет счёта &#39;P-1&#39;" in r.text and "Импорт платежей" in r.text
    assert await _payments(web, b.id) == 0
