"""The company admin pages in Chromium against a real server: as the demo admin, create an office, a
department and an employee, give the employee an extension on the extensions page, route a number
(to the extension, then by working hours), create an API token and revoke it; screenshots of each page."""

from __future__ import annotations

import re
import secrets
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from .conftest import Console, harness, log_in

pytestmark = pytest.mark.integration


def rent_a_number(console: Console) -> str:
    """The operator puts a number in the pool and assigns it to the demo company (the platform API)."""
    token = console.server.cli("token", "create", "--name", "browser test").strip()
    e164 = "+7495" + "".join(secrets.choice("0123456789") for _ in range(7))
    api = console.url + "/api/v1/platform/numbers"
    number = harness.http_json(api, token, method="POST", body={"number": e164})
    harness.http_json(f"{api}/{number['id']}/assign", token, method="POST", body={"tenant_id": console.tenant_id})
    return e164


def test_org_numbers_and_tokens(page: Any, console: Console, artifacts: Path) -> None:
    e164 = rent_a_number(console)
    page.on("dialog", lambda dialog: dialog.accept())  # the "are you sure?" of deletions and revocations
    log_in(page, console)

    # --- the organisation: an office, a department in it, an employee in both
    page.click("nav a[href='/org']")
    page.wait_for_url(console.url + "/org")
    assert page.locator("h1").inner_text() == "Organisation"
    # the demo's people: in their office, under their company-wide department's name
    moscow = page.locator("article.office", has_text="Moscow")
    assert "Ivan Petrov" in moscow.locator("li.department.guest", has_text="Sales").inner_text()
    page.click("#new-office-box summary")
    page.fill("#new-office input[name=name]", "Kazan")
    page.fill("#new-office input[name=city]", "Kazan")
    page.click("#new-office button[type=submit]")
    office = page.locator("article.office", has_text="Kazan")
    office.wait_for()
    office_id = (office.get_attribute("id") or "").removeprefix("office-")

    page.click("#new-department-box summary")
    page.fill("#new-department input[name=name]", "Volga sales")
    page.select_option("#new-department select[name=office_id]", office_id)
    page.click("#new-department button[type=submit]")
    office.locator("li.department", has_text="Volga sales").wait_for()

    # a bad email first: the form opens again with the message next to the field
    page.click("#new-employee-box summary")
    page.fill("#new-employee input[name=full_name]", "Rustam Galiev")
    page.fill("#new-employee input[name=email]", "rustam@")
    page.evaluate("document.querySelector('#new-employee input[name=email]').type = 'text'")  # past the browser's check
    page.click("#new-employee button[type=submit]")
    page.wait_for_selector("#new-employee-email-error")
    assert page.locator("#new-employee-email-error").inner_text() == "Not a valid email address."
    assert page.locator("#new-employee input[name=full_name]").input_value() == "Rustam Galiev"
    page.screenshot(path=str(artifacts / "org-employee-error.png"), full_page=True)
    page.fill("#new-employee input[name=email]", f"rustam@{console.domain}")
    page.select_option("#new-employee select[name=office_id]", office_id)
    page.select_option("#new-employee select[name=department_id]", label="Volga sales")
    page.click("#new-employee button[type=submit]")
    employee = office.locator("li.employee", has_text="Rustam Galiev")
    employee.wait_for()
    department = office.locator("li.department", has_text="Volga sales")
    assert department.locator("li.employee", has_text="Rustam Galiev").count() == 1  # nested in it
    page.screenshot(path=str(artifacts / "org-tree.png"), full_page=True)

    # rename the office in place
    office.locator("details.inline-edit summary").first.click()
    office.locator("form.row-form input[name=name]").first.fill("Kazan HQ")
    office.locator("form.row-form button").first.click()
    page.locator("article.office header", has_text="Kazan HQ").wait_for()

    # edit the employee: a phone, and a login as an employee
    page.locator("li.employee", has_text="Rustam Galiev").locator("a", has_text="Edit").click()
    page.wait_for_selector("#edit-employee")
    assert page.locator("select[name=department_id] option:checked").inner_text() == "Volga sales"
    page.fill("#edit-employee input[name=phone]", "+7 843 123-45-67")
    page.select_option("#edit-employee select[name=role]", "employee")
    page.fill("#edit-employee input[name=web_password]", "rustam-secret-1")
    page.screenshot(path=str(artifacts / "employee-edit.png"), full_page=True)
    page.click("#edit-employee button[type=submit]")
    page.wait_for_url(re.compile(r".*/org#employee-\d+$"))
    assert "login" in page.locator("li.employee", has_text="Rustam Galiev").inner_text()

    # --- the employee's extension, on the extensions page
    page.click("nav a[href='/extensions']")
    page.wait_for_url(console.url + "/extensions")
    page.click("summary:has-text('New extension')")
    page.fill("input[name=number]", "301")
    page.fill("input[name=display_name]", "Rustam desk")
    page.select_option("select[name=employee_id]", label="Rustam Galiev")
    page.click("#new-extension button[type=submit]")
    page.wait_for_selector("#created")
    assert "Extension 301 created." in page.locator("#created").inner_text()
    page.goto(console.url + "/extensions?q=301")
    assert "Rustam Galiev" in page.locator("#extension-301").inner_text()

    # --- the number: to the new extension, then by working hours
    page.click("nav a[href='/numbers']")
    page.wait_for_url(console.url + "/numbers")
    row = page.locator("tr", has_text=e164)
    assert "not routed yet" in row.inner_text()
    row.locator("a", has_text="Change").click()
    page.wait_for_selector("#number-form")
    assert page.locator("#schedule").is_hidden()  # only the chosen kind's fields show
    page.select_option("select[name=kind]", "extension")
    page.fill("input[name=target]", "301")
    page.screenshot(path=str(artifacts / "number-edit.png"), full_page=True)
    page.click("#number-form button[type=submit]")
    page.wait_for_selector("#saved")
    assert "extension 301" in page.locator("tr", has_text=e164).inner_text()

    page.locator("tr", has_text=e164).locator("a", has_text="Change").click()
    page.select_option("select[name=kind]", "schedule")
    assert page.locator("#schedule").is_visible() and page.locator("input[name=target]").is_hidden()
    for day in range(5):
        page.check(f"input[name=days][value='{day}']")
    page.fill("input[name=from]", "09:00")
    page.fill("input[name=to]", "18:00")
    page.select_option("select[name=in_kind]", "ring")
    page.fill("input[name=in_target]", "301, 101")
    page.select_option("select[name=out_kind]", "voicemail")
    page.fill("input[name=out_target]", "999")  # no such extension
    page.click("#number-form button[type=submit]")
    page.wait_for_selector("#number-out_target-error")
    assert page.locator("#number-out_target-error").inner_text() == "Extension 999 does not exist."
    assert page.locator("#schedule").is_visible()
    page.screenshot(path=str(artifacts / "number-schedule-error.png"), full_page=True)
    page.fill("input[name=out_target]", "301")
    page.click("#number-form button[type=submit]")
    page.wait_for_selector("#saved")
    routed = page.locator("tr", has_text=e164).inner_text()
    assert re.search(r"Mon, Tue, Wed, Thu, Fri\s+09:00–18:00: extensions 301, 101 at once", routed), routed
    assert "otherwise: voicemail of 301" in routed
    page.screenshot(path=str(artifacts / "numbers.png"), full_page=True)

    # --- an API token: the secret once, then revoked
    page.click("nav a[href='/tokens']")
    page.wait_for_url(console.url + "/tokens")
    page.click("summary:has-text('New token')")
    page.fill("#new-token input[name=name]", "CRM sync")
    page.click("#new-token button[type=submit]")
    page.wait_for_selector("#token-secret")
    secret = page.locator("#token-secret").inner_text()
    me = harness.http_json(console.url + "/api/v1/me", secret)
    assert me["kind"] == "api_token" and me["tenant_id"] == console.tenant_id
    page.screenshot(path=str(artifacts / "token-created.png"), full_page=True)
    page.goto(console.url + "/tokens")
    assert secret not in page.content()
    token_row = page.locator("tbody tr", has_text="CRM sync")
    token_row.locator("button", has_text="Revoke").click()
    page.locator("tbody tr", has_text="CRM sync").locator("[data-state=revoked]").wait_for()
    with pytest.raises(urllib.error.HTTPError) as refused:
        harness.http_json(console.url + "/api/v1/me", secret)
    assert refused.value.code == 401
    page.screenshot(path=str(artifacts / "tokens.png"), full_page=True)

    # --- company settings
    page.click("nav a[href='/settings']")
    page.wait_for_url(console.url + "/settings")
    page.fill("input[name=timezone]", "Mars/Olympus")
    page.click("#settings-form button[type=submit]")
    page.wait_for_selector("#settings-timezone-error")
    page.screenshot(path=str(artifacts / "settings-error.png"), full_page=True)
    page.fill("input[name=timezone]", "Europe/Samara")
    page.click("#settings-form button[type=submit]")
    page.wait_for_selector("#saved")
    assert page.locator("input[name=timezone]").input_value() == "Europe/Samara"


def test_org_tree_in_russian_on_a_phone(browser: Any, console: Console, artifacts: Path) -> None:
    context = browser.new_context(locale="ru-RU", viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        log_in(page, console, english=False)
        page.goto(console.url + "/org")
        assert page.locator("h1").inner_text() == "Структура"
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        page.screenshot(path=str(artifacts / "org-phone-ru.png"), full_page=True)
    finally:
        context.close()
