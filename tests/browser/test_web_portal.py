"""The employee portal and the operator's pages in Chromium against a real server.

An employee resets their SIP password on /me, registers SIPp with the new one and sees the device come
online on the page; sets an access-number PIN. The platform admin creates a company with its first
admin, adds numbers to the pool and assigns one to the company.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import Console, harness
from .test_web_crawl import Users, _log_in, logins  # noqa: F401 - the fixture that gives the employee a login

pytestmark = pytest.mark.integration


def test_employee_resets_the_sip_password_and_registers_with_it(
        page: Any, console: Console, logins: Users, artifacts: Path) -> None:  # noqa: F811
    _log_in(page, console, *logins["employee"])
    page.click("nav a[href='/me']")
    page.wait_for_url(console.url + "/me")
    card = page.locator("#phone-101")
    assert card.locator("svg.qr[role=img]").is_visible()
    assert card.locator("[data-state]").get_attribute("data-state") == "offline"
    assert card.locator("input[id^=domain-]").input_value() == console.domain

    page.once("dialog", lambda dialog: dialog.accept())  # "phones using the current password will stop working"
    card.locator("form.reset button").click()
    page.wait_for_selector("#new-password-101")
    password = page.locator("#new-password-101 code").inner_text().strip()
    assert len(password) >= 12
    line = page.locator("#phone-101 textarea.line").first.input_value()
    assert f";auth_pass={password};" in line and f"sip:101@{console.domain}" in line
    page.screenshot(path=str(artifacts / "portal-new-password.png"), full_page=True)

    port = harness.free_sip_port()
    result = console.register("101", password, local_port=port)
    assert result.successful == 1, result.describe()
    online = page.locator("#phone-101 [data-state=online]")
    online.wait_for(timeout=30_000)  # the cell reloads itself every few seconds
    assert "SIPp-zvonok" in page.locator("#phone-101 .devices-cell").inner_text()
    assert page.locator("#phone-101 ul.devices").count() == 1  # the reloaded cell replaced, not added to
    page.screenshot(path=str(artifacts / "portal-online.png"), full_page=True)
    result = console.register("101", password, local_port=port, scenario="unregister.xml")
    assert result.successful == 1, result.describe()

    page.fill("#pin-new", "4827")
    page.fill("#pin-confirm", "4827")
    page.click("#pin-form button[type=submit]")
    page.wait_for_selector("#pin-done")
    # the PIN is never shown back (the visible text and every form value: a random token may hold the digits)
    assert "4827" not in page.inner_text("body")
    assert all(v != "4827" for v in page.eval_on_selector_all("input", "els => els.map(e => e.value)"))
    page.screenshot(path=str(artifacts / "portal-pin-set.png"), full_page=True)


def test_operator_creates_a_company_and_assigns_it_a_number(
        page: Any, console: Console, logins: Users, artifacts: Path) -> None:  # noqa: F811
    _log_in(page, console, *logins["operator"])
    page.click("nav a[href='/operator/companies']")
    page.wait_for_url(console.url + "/operator/companies")
    page.click("summary:has-text('New company')")
    page.fill("#f-name", "Browser Test Ltd")
    page.fill("#f-sip_domain", "not a domain")
    page.fill("#f-admin_email", "boss@browser.test")
    page.click("#new-company button[type=submit]")
    page.wait_for_selector("#f-sip_domain[aria-invalid=true]")
    page.screenshot(path=str(artifacts / "operator-company-errors.png"), full_page=True)
    page.fill("#f-sip_domain", "browser.test")
    page.fill("#f-timezone", "Europe/Moscow")
    page.fill("#f-currency", "RUB")
    page.select_option("#f-locale", "ru-RU")
    page.click("#new-company button[type=submit]")
    page.wait_for_selector("#created")
    assert "boss@browser.test" in page.locator("#created").inner_text()
    assert re.search(r"\S{12,}", page.locator("#created code").inner_text())
    page.screenshot(path=str(artifacts / "operator-companies.png"), full_page=True)

    page.click("nav a[href='/operator/numbers']")
    page.wait_for_url(console.url + "/operator/numbers")
    page.click("summary:has-text('Add numbers')")
    page.fill("#f-numbers", "+7 495 700-00-01\n+7 495 700-00-02")
    page.fill("#f-fee", "150.00")
    page.click("#add-numbers button[type=submit]")
    page.wait_for_selector("#done")
    row = page.locator("#number-74957000001")
    row.locator("select[name=tenant_id]").select_option(label="Browser Test Ltd (browser.test)")
    row.locator("button[type=submit]").click()
    page.wait_for_selector("#number-74957000001 button:has-text('Release')")
    assert "Browser Test Ltd" in page.locator("#number-74957000001").inner_text()
    page.goto(console.url + "/operator/numbers")
    assert "free" in page.locator("#number-74957000002").inner_text()
    page.screenshot(path=str(artifacts / "operator-numbers.png"), full_page=True)
    page.set_viewport_size({"width": 375, "height": 812})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=str(artifacts / "operator-numbers-phone.png"), full_page=True)
