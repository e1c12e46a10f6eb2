"""The call center's admin forms in Chromium against a real server (the demo company's admin): an agent is
given skills with proficiencies on the agents page, a queue that needs skills is created through the "New
queue" form (a malformed requirement is refused on the form first), its requirements and members are
changed on its own page, and each step is checked as stored through the REST API. A not-ready reason gets the
code an agent dials after *47.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import Console, log_in
from .test_web_crawl import _json_request

pytestmark = pytest.mark.integration


def test_queue_with_skill_requirements_and_agent_skills_through_the_forms(
        page: Any, console: Console, artifacts: Path) -> None:
    token = json.loads(console.server.cli("demo", "--no-serve", "--json"))["api_token"]
    base = f"{console.url}/api/v1/tenants/{console.tenant_id}"
    people = {e["full_name"]: e["id"] for e in _json_request(f"{base}/employees?limit=100", token=token)["items"]}
    ivan, maria = people["Ivan Petrov"], people["Maria Sidorova"]
    log_in(page, console)

    # skills: a new skill with a proficiency for Ivan, a malformed one refused on his row
    page.goto(console.url + "/callcenter/agents")
    row = page.locator(f"#agent-{ivan}")
    row.locator("input[name=skills]").fill("english:11")
    row.locator("button:has-text('Save')").click()
    page.wait_for_selector(f"#agent-{ivan} .field-error")
    assert "levels 1 to 10" in page.locator(f"#agent-{ivan}").inner_text()
    row = page.locator(f"#agent-{ivan}")
    row.locator("input[name=skills]").fill("english:7, sales:3")
    row.locator("button:has-text('Save')").click()
    page.wait_for_url(f"{console.url}/callcenter/agents#agent-{ivan}")
    assert page.locator(f"#agent-{ivan} input[name=skills]").input_value() == "english:7, sales:3"
    stored = _json_request(f"{base}/callcenter/agents/{ivan}/skills", token=token)
    assert stored["skills"] == {"english": 7, "sales": 3}, stored
    page.locator(f"#agent-{ivan}").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "callcenter-agent-skills.png"), full_page=True)

    # a queue that needs English 5, through the New queue form
    page.goto(console.url + "/callcenter/queues")
    page.click("summary:has-text('New queue')")
    form = page.locator("#new-queue")
    form.locator("input[name=name]").fill("English line")
    form.locator("input[name=number]").fill("570")
    form.locator("select[name=strategy]").select_option("skills")
    form.locator("input[name=ring_timeout]").fill("25")
    form.locator("input[name=wrap_up]").fill("15")
    form.locator("input[name=requirements]").fill("english")  # no level: refused, the form kept
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#new-queue input[name=requirements][aria-invalid=true]")
    assert "name:level pairs" in page.locator("#new-queue").inner_text()
    assert page.locator("#new-queue input[name=name]").input_value() == "English line"
    page.screenshot(path=str(artifacts / "callcenter-queue-form-error.png"), full_page=True)
    page.locator("#new-queue input[name=requirements]").fill("english:5")
    page.locator("#new-queue button[type=submit]").click()
    page.wait_for_url(f"{console.url}/callcenter/queues#queue-*")
    queues = _json_request(f"{base}/callcenter/queues?limit=100", token=token)["items"]
    (queue,) = [q for q in queues if q["number"] == "570"]
    assert (queue["name"], queue["strategy"], queue["ring_timeout"], queue["wrap_up"]) == (
        "English line", "skills", 25, 15), queue
    assert queue["requirements"] == [{"skill": "english", "min_level": 5}], queue
    assert "English line" in page.locator(f"#queue-{queue['id']}").inner_text()

    # its own page: a second requirement, and Ivan and Maria as its members
    page.click(f"#queue-{queue['id']} a")
    page.wait_for_url(f"{console.url}/callcenter/queues/{queue['id']}")
    assert page.locator("#edit-queue input[name=requirements]").input_value() == "english:5"
    page.locator("#edit-queue input[name=requirements]").fill("english:5, sales:2")
    page.locator("#edit-queue button[type=submit]").click()
    page.wait_for_url(f"{console.url}/callcenter/queues#queue-{queue['id']}")
    page.goto(f"{console.url}/callcenter/queues/{queue['id']}")
    for employee_id in (ivan, maria):
        page.check(f"#queue-members input[name=employee_id][value='{employee_id}']")
    page.click("#queue-members button[type=submit]")
    page.wait_for_url(f"{console.url}/callcenter/queues/{queue['id']}")
    assert page.locator(f"#queue-members input[value='{ivan}']").is_checked()
    page.screenshot(path=str(artifacts / "callcenter-queue-edit.png"), full_page=True)
    stored = _json_request(f"{base}/callcenter/queues/{queue['id']}", token=token)
    assert stored["requirements"] == [{"skill": "english", "min_level": 5}, {"skill": "sales", "min_level": 2}], stored
    members = _json_request(f"{base}/callcenter/queues/{queue['id']}/members", token=token)
    assert sorted(members["employee_ids"]) == sorted([ivan, maria]), members
    assert _json_request(f"{base}/callcenter/agents/{ivan}/skills", token=token)["queue_ids"] == [queue["id"]]


def test_a_not_ready_reason_gets_its_phone_code_through_the_forms(page: Any, console: Console, artifacts: Path) -> None:
    """A reason added with its *47 code on the agents page, a code that is not 1-4 digits refused on the reason's
    own row (the others untouched), then changed there."""
    log_in(page, console)
    page.goto(console.url + "/callcenter/agents")
    form = page.locator("#new-reason")
    form.locator("input[name=name]").fill("Coaching")
    form.locator("input[name=code]").fill("31")
    form.locator("button[type=submit]").click()
    page.wait_for_url(f"{console.url}/callcenter/agents#reasons")
    row = page.locator("form.row-form", has=page.locator("mark", has_text="Coaching"))
    assert row.locator("input[name=code]").input_value() == "31"
    row_id = row.get_attribute("id")
    row.locator("input[name=code]").fill("31x")
    row.locator("button[type=submit]").click()
    page.wait_for_selector(f"#{row_id} .field-error")
    assert "1 to 4 digits" in page.locator(f"#{row_id}").inner_text()
    assert page.locator(f"#{row_id} input[name=code]").input_value() == "31x"  # as typed
    assert page.locator("form.row-form .field-error").count() == 1
    page.locator(f"#{row_id}").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "callcenter-reason-code-error.png"), full_page=True)
    page.locator(f"#{row_id} input[name=code]").fill("32")
    page.locator(f"#{row_id} button[type=submit]").click()
    page.wait_for_url(f"{console.url}/callcenter/agents#{row_id}")
    assert page.locator(f"#{row_id} input[name=code]").input_value() == "32"
    page.screenshot(path=str(artifacts / "callcenter-reason-codes.png"), full_page=True)
    page.set_viewport_size({"width": 375, "height": 800})
    page.locator("#new-reason").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "callcenter-reason-codes-phone.png"), full_page=True)
