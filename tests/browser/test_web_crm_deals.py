"""The pipeline board in Chromium against a real server with the demo company: the admin adds a deal to
the default pipeline, tries to move it to Won and is refused with the missing checklist step named
("Proposal: step: Send the offer"), ticks the step on the deal's page, and the same move then succeeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import Console, log_in

pytestmark = pytest.mark.integration


def _move_to_won(page: Any, title: str) -> None:
    card = page.locator("article.deal", has_text=title)
    card.locator("select[name=stage_id]").select_option(label="Won")
    card.locator("button[type=submit]").click()
    page.wait_for_load_state()


def test_a_deal_is_refused_a_skipped_step_then_moves(page: Any, console: Console, artifacts: Path) -> None:
    log_in(page, console)

    page.click("nav a[href='/crm/deals']")
    page.wait_for_url(console.url + "/crm/deals")
    page.click("#new-deal summary")
    page.fill("#new-deal input[name=title]", "Licences for Romashka")
    page.fill("#new-deal input[name=amount]", "150000")
    page.click("#new-deal button[type=submit]")
    page.wait_for_selector("#deal-title")
    deal_url = page.url

    page.goto(console.url + "/crm/deals")
    _move_to_won(page, "Licences for Romashka")
    alert = page.locator("#move-error")
    alert.wait_for()
    assert "Proposal: step: Send the offer" in alert.inner_text(), alert.inner_text()
    page.screenshot(path=str(artifacts / "crm-deal-refused.png"), full_page=True)

    page.goto(deal_url)
    page.locator("#checklist button", has_text="Send the offer").click()
    page.wait_for_selector("#checklist button[aria-pressed=true]")
    page.goto(console.url + "/crm/deals")
    _move_to_won(page, "Licences for Romashka")
    won = page.locator("section.column[data-kind=won]")
    won.locator("article.deal", has_text="Licences for Romashka").wait_for()
    assert page.locator("#move-error").count() == 0
    page.screenshot(path=str(artifacts / "crm-deal-won.png"), full_page=True)
