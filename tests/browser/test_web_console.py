"""The web console in Chromium against a real server: log in as the demo admin, switch languages,
create an extension, register SIPp to it and watch its state change on the page without a reload."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import Console, harness

pytestmark = pytest.mark.integration


def log_in(page: Any, console: Console, password: str | None = None) -> None:
    page.goto(console.url + "/")
    assert page.url.startswith(console.url + "/login")
    page.fill("#email", console.admin_login)
    page.fill("#password", password or console.admin_password)
    page.click("main form button[type=submit]")


def test_log_in_switch_language_and_see_registrations_live(page: Any, console: Console, artifacts: Path) -> None:
    page.goto(console.url + "/login")
    assert page.locator("h1").inner_text() == "Log in"
    page.screenshot(path=str(artifacts / "login.png"))
    log_in(page, console)
    page.wait_for_url(console.url + "/")
    # the demo company's language is Russian
    assert page.locator("html").get_attribute("lang") == "ru"
    assert page.locator("nav a[href='/extensions']").inner_text() == "Внутренние номера"
    page.screenshot(path=str(artifacts / "home-ru.png"))

    page.click("button[name=lang][value=en]")
    page.wait_for_selector("html[lang=en]")
    page.click("nav a[href='/extensions']")
    page.wait_for_url(console.url + "/extensions")
    assert page.locator("h1").inner_text() == "Extensions"
    assert page.locator("#extension-101").count() == 1  # the demo's extensions

    # create an extension with a password of our own, for SIPp
    page.click("summary:has-text('New extension')")
    page.fill("input[name=number]", "555")
    page.fill("input[name=display_name]", "Browser test phone")
    page.fill("input[name=sip_password]", "browser-secret-555")
    page.click("#new-extension button[type=submit]")
    page.wait_for_selector("#created")
    assert "Extension 555 created." in page.locator("#created").inner_text()
    page.goto(console.url + "/extensions")
    cell = page.locator("#extension-555 td[id^=devices-]")
    assert cell.locator("[data-state]").get_attribute("data-state") == "offline"
    page.wait_for_selector("[data-live-events][data-live-state=open]")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    port = harness.free_sip_port()
    result = console.register("555", "browser-secret-555", local_port=port)
    assert result.successful == 1, result.describe()
    online = cell.locator("[data-state=online]")
    online.wait_for()
    assert "1 device online" in online.inner_text()
    assert "SIPp-zvonok" in cell.inner_text()
    assert page.evaluate("window.__sameDocument") is True
    page.screenshot(path=str(artifacts / "extensions-en.png"), full_page=True)

    page.click("button[name=lang][value=ru]")
    page.wait_for_selector("html[lang=ru]")
    assert page.locator("h1").inner_text() == "Внутренние номера"
    assert re.search(r"1 устройство в сети", page.locator("#extension-555").inner_text())
    page.wait_for_selector("[data-live-events][data-live-state=open]")
    page.evaluate("window.__sameDocument = true")

    result = console.register("555", "browser-secret-555", local_port=port, scenario="unregister.xml")
    assert result.successful == 1, result.describe()
    page.locator("#extension-555 [data-state=offline]").wait_for()
    assert page.locator("#extension-555").inner_text().count("Не в сети") == 1
    assert page.evaluate("window.__sameDocument") is True
    page.screenshot(path=str(artifacts / "extensions-ru.png"), full_page=True)


def test_log_out_and_a_wrong_password(page: Any, console: Console, artifacts: Path) -> None:
    log_in(page, console, password="not the password")
    page.wait_for_selector("[role=alert]")
    assert page.locator("[role=alert]").inner_text() == "Wrong email or password."
    page.screenshot(path=str(artifacts / "login-failed.png"))
    log_in(page, console)
    page.wait_for_url(console.url + "/")
    page.click("details.dropdown summary")
    page.click("form[action='/logout'] button")
    page.wait_for_url(re.compile(r".*/login$"))
    page.goto(console.url + "/extensions")
    assert "/login?next=/extensions" in page.url


def test_a_page_on_a_phone_screen(browser: Any, console: Console, artifacts: Path) -> None:
    context = browser.new_context(locale="en-US", viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        log_in(page, console)
        page.wait_for_url(console.url + "/")
        page.goto(console.url + "/extensions")
        assert page.locator("#extension-101").is_visible()
        # nothing wider than the screen but the table, which scrolls inside its box
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        page.screenshot(path=str(artifacts / "extensions-phone.png"), full_page=True)
    finally:
        context.close()
