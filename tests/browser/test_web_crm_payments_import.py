"""The CRM's payments import in Chromium against a real server with the demo company: the admin issues two
invoices on a deal, follows the board's link to the import page, uploads a statement with one bad line
(the line's error is listed and no payment is recorded), then the corrected statement (the payments and
the invoices they paid are listed, and the deal's page shows them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import Console, log_in

pytestmark = pytest.mark.integration

BAD = ("invoice_number;amount;paid_at;reference\n"
       "IMP-1;40000;2026-12-01;BANK-77\n"
       "IMP-2;abc;2026-12-02;BANK-78\n"
       "IMP-2;25000;02.12.2026;BANK-79\n")
GOOD = BAD.replace("IMP-2;abc;2026-12-02;BANK-78\n", "IMP-1;20000;2026-12-02;BANK-78\n")


def _upload(page: Any, path: Path) -> None:
    page.set_input_files("#payments-import-form input[name=file]", str(path))
    page.click("#payments-import-form button[type=submit]")
    page.wait_for_selector("#import-result")


def test_a_statement_with_a_bad_line_then_a_good_one(page: Any, console: Console, artifacts: Path,
                                                       tmp_path: Path) -> None:
    log_in(page, console)
    page.goto(console.url + "/crm/deals")
    page.click("#new-deal summary")
    page.fill("#new-deal input[name=title]", "Annual licences")
    page.fill("#new-deal input[name=amount]", "85000")
    page.click("#new-deal button[type=submit]")
    page.wait_for_selector("#deal-title")
    deal_url = page.url
    for number, amount in (("IMP-1", "60000"), ("IMP-2", "25000")):
        form = page.locator("#invoice-form")
        form.locator("input[name=number]").fill(number)
        form.locator("input[name=amount]").fill(amount)
        form.locator("input[name=due_on]").fill("2026-12-31")
        form.locator("button[type=submit]").click()
        page.locator("#invoices tr", has_text=number).wait_for()

    page.goto(console.url + "/crm/deals")
    page.click("#payments-import-link")
    page.wait_for_selector("#payments-import-form")

    bad, good = tmp_path / "statement-bad.csv", tmp_path / "statement.csv"
    bad.write_text(BAD, encoding="utf-8")
    good.write_text(GOOD, encoding="utf-8")
    _upload(page, bad)
    result = page.locator("#import-result")
    assert "1 problem in statement-bad.csv; nothing was recorded." in result.inner_text()
    rows = page.locator("#rejected tbody tr")
    assert rows.count() == 1
    assert rows.locator("td").first.inner_text() == "3"
    assert "amount 'abc' is not a sum of money above 0" in rows.locator("td").last.inner_text()
    page.screenshot(path=str(artifacts / "crm-payments-import-errors.png"), full_page=True)

    _upload(page, good)
    assert "3 payments recorded from statement.csv." in page.locator("#import-result").inner_text()
    payments = page.locator("#imported-payments tbody tr")
    assert payments.count() == 3
    assert "BANK-78" in payments.nth(1).inner_text() and "Annual licences" in payments.nth(1).inner_text()
    imp1 = page.locator("#paid-invoices tbody tr", has_text="IMP-1")
    imp2 = page.locator("#paid-invoices tbody tr", has_text="IMP-2")
    assert imp1.locator("mark.inv-status").inner_text() == "Paid"
    assert imp2.locator("mark.inv-status").inner_text() == "Paid"
    page.screenshot(path=str(artifacts / "crm-payments-import.png"), full_page=True)

    page.goto(deal_url)
    table = page.locator("#payments table").inner_text()
    assert "BANK-77" in table and "BANK-78" in table and "BANK-79" in table
    assert "BANK-" not in page.locator("#invoices").inner_text()  # the invoices, not their notes
    assert page.locator("#invoices mark.inv-status.paid").count() == 2
