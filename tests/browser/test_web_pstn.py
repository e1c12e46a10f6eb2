"""The outside-world pages in Chromium against a real server: log in as the demo admin, create a trunk
and watch its state cell come from the running call engine (polled, no reload), create an outbound
route, set an employee's PIN and a spending limit. Screenshots of each page go to the artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import Console
from .test_web_console import log_in

pytestmark = pytest.mark.integration


def test_trunk_route_pin_and_limit(page: Any, console: Console, artifacts: Path) -> None:
    log_in(page, console)
    page.wait_for_url(console.url + "/")
    page.click("button[name=lang][value=en]")
    page.wait_for_selector("html[lang=en]")

    page.click("nav a[href='/trunks']")
    page.wait_for_url(console.url + "/trunks")
    assert page.locator("h1").inner_text() == "Trunks"
    page.click("summary:has-text('New trunk')")
    page.fill("#new-trunk input[name=name]", "Browser Carrier")
    page.fill("#new-trunk input[name=host]", "bad host\n")
    page.click("#new-trunk button[type=submit]")
    page.wait_for_selector("#host-error")  # the API's host check, on the form
    assert "A host name or an IP address" in page.locator("#host-error").inner_text()
    page.screenshot(path=str(artifacts / "pstn-trunk-error.png"), full_page=True)

    page.fill("#new-trunk input[name=host]", "192.0.2.77")
    page.fill("#new-trunk input[name=max_calls]", "10")
    page.click("#new-trunk button[type=submit]")
    page.wait_for_selector("#done")
    row = page.locator("tr:has-text('Browser Carrier')")
    assert row.count() == 1
    page.evaluate("window.__sameDocument = true")
    # the engine loads the new trunk after the change is announced; the polled cell then says so
    row.locator(".status [data-state=not_registering]").wait_for(timeout=30_000)
    assert page.evaluate("window.__sameDocument") is True
    assert "Not registering" in row.locator(".status").inner_text()
    page.screenshot(path=str(artifacts / "pstn-trunks.png"), full_page=True)

    page.click("nav a[href='/routes']")
    page.wait_for_url(console.url + "/routes")
    page.click("summary:has-text('New route')")
    page.fill("#new-route input[name=prefix]", "+7495")
    page.select_option("#new-route select[name=trunk_id]", label="Browser Carrier")
    page.click("#new-route button[type=submit]")
    page.wait_for_selector("#done")
    assert "+7495…" in page.locator("#routes").inner_text()
    assert "Browser Carrier" in page.locator("#routes").inner_text()
    page.screenshot(path=str(artifacts / "pstn-routes.png"), full_page=True)

    page.click("nav a[href='/pins']")
    page.wait_for_url(console.url + "/pins")
    first = page.locator("#pins tbody tr").first
    assert first.locator("[data-state=unset]").count() == 1
    first.locator("input[name=pin]").fill("4826")
    first.locator("button:has-text('Set PIN')").click()
    page.wait_for_selector("#done")
    assert page.locator("#pins tbody tr").first.locator("[data-state=set]").count() == 1
    assert "4826" not in page.content()
    page.screenshot(path=str(artifacts / "pstn-pins.png"), full_page=True)

    page.click("nav a[href='/billing']")
    page.wait_for_url(console.url + "/billing")
    company = page.locator("#limit-tenant")
    company.locator("input[name=monthly_limit]").fill("5000")
    company.locator("button").click()
    page.wait_for_selector("#done")
    assert page.locator("#limit-tenant input[name=monthly_limit]").input_value() == "5000.00"
    page.screenshot(path=str(artifacts / "pstn-billing.png"), full_page=True)

    page.click("nav a[href='/permissions']")
    page.wait_for_url(console.url + "/permissions")
    page.screenshot(path=str(artifacts / "pstn-permissions.png"), full_page=True)


def test_operator_imports_a_rate_deck_with_a_progress_bar(page: Any, console: Console, artifacts: Path,
                                                          tmp_path: Path) -> None:
    email, password = "ops@operator.test", "operator-browser-pw"
    console.server.cli("admin", "create", "--email", email, "--password", password)
    deck = tmp_path / "retail.csv"  # big enough for the bar to be seen moving: 40,000 generated rates
    deck.write_text("prefix;destination;rate\n" + "".join(f"{7_000_000 + i};Dest {i};{i % 97},{i % 10}5\n"
                                                           for i in range(40_000)), encoding="utf-8")

    page.goto(console.url + "/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("main form button[type=submit]")
    page.wait_for_url(console.url + "/")
    page.click("nav a[href='/operator/tariffs']")
    page.wait_for_url(console.url + "/operator/tariffs")
    page.click("summary:has-text('New tariff')")
    page.fill("#new-tariff input[name=name]", "Retail")
    page.click("#new-tariff button[type=submit]")
    page.wait_for_url(console.url + "/operator/tariffs/*")

    page.set_input_files("#import-rates input[type=file]", str(deck))
    page.click("#import-rates button[type=submit]")
    page.wait_for_selector("#import-progress")  # the first answer: the job is queued, not yet run
    page.screenshot(path=str(artifacts / "pstn-tariff-import-progress.png"), full_page=True)
    page.wait_for_selector("#import-result", timeout=120_000)
    assert "40000 rates imported from retail.csv" in page.locator("#import-result").inner_text()
    page.reload()
    assert "40000 rates" in page.locator("hgroup").inner_text()
    page.screenshot(path=str(artifacts / "pstn-tariff.png"), full_page=True)

    bad = tmp_path / "bad.csv"
    bad.write_text("prefix,destination,rate\n7,Russia,1\nabc,Nowhere,1\n44,UK,-1\n", encoding="utf-8")
    page.set_input_files("#import-rates input[type=file]", str(bad))
    page.click("#import-rates button[type=submit]")
    page.wait_for_selector("#import[data-stage=rejected]", timeout=60_000)
    assert page.locator("#rejected tbody tr").count() == 2
    page.screenshot(path=str(artifacts / "pstn-tariff-rejected.png"), full_page=True)
