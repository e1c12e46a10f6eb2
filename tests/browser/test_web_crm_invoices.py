"""A deal's invoices in Chromium against a real server with the demo company: the admin adds a deal, issues
an invoice that is already past its due day, records part of it as paid with the payment form (choosing
the invoice), and sees the status badge say "Partly paid" and "past due"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import Console, log_in

pytestmark = pytest.mark.integration


def test_an_invoice_is_issued_and_partly_paid(page: Any, console: Console, artifacts: Path) -> None:
    log_in(page, console)

    page.goto(console.url + "/crm/deals")
    page.click("#new-deal summary")
    page.fill("#new-deal input[name=title]", "Support contract")
    page.fill("#new-deal input[name=amount]", "90000")
    page.click("#new-deal button[type=submit]")
    page.wait_for_selector("#deal-title")

    form = page.locator("#invoice-form")
    form.locator("input[name=number]").fill("2026-0042")
    form.locator("input[name=amount]").fill("90000")
    form.locator("input[name=issued_on]").fill("2026-01-10")
    form.locator("input[name=due_on]").fill("2026-01-20")
    form.locator("button[type=submit]").click()
    row = page.locator("#invoices tr", has_text="2026-0042")
    row.wait_for()
    assert "Issued" in row.locator("mark.inv-status").last.inner_text()
    assert row.locator("mark.overdue").inner_text() == "past due"

    pay = page.locator("#payment-form")
    pay.locator("input[name=amount]").fill("30000")
    choice = pay.locator("select[name=invoice_id] option", has_text="2026-0042")
    pay.locator("select[name=invoice_id]").select_option(choice.get_attribute("value"))
    pay.locator("button[type=submit]").click()
    page.wait_for_load_state()
    row = page.locator("#invoices tr", has_text="2026-0042")
    badge = row.locator("mark.inv-status.partly_paid")
    badge.wait_for()
    assert badge.inner_text() == "Partly paid"
    assert "2026-0042" in page.locator("#payments table").inner_text()
    page.locator("#invoices").screenshot(path=str(artifacts / "crm-invoices.png"))
