"""The supervisor's wallboard in Chromium against a real server: a queue's tile and the agents grid, and
the page following an agent's state by itself (websocket event → body reload) when the agent is paused
and logged out elsewhere (the REST API here, the agent's own panel or phone alike).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import Console
from .test_web_crawl import Users, _json_request, _log_in, logins  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


def test_wallboard_follows_an_agent_live(page: Any, console: Console, logins: Users, artifacts: Path) -> None:  # noqa: F811
    base = f"{console.url}/api/v1/tenants/{console.tenant_id}/callcenter"
    token = logins.api_token
    queue = _json_request(f"{base}/queues", "POST", token, {"name": "Support", "number": "560", "service_level": 20})
    _json_request(f"{base}/queues/{queue['id']}/members", "PUT", token, {"employee_ids": [logins.employee_id]})
    _json_request(f"{base}/reasons", "POST", token, {"name": "Lunch"})
    _json_request(f"{base}/agents/{logins.employee_id}/login", "POST", token, {})

    _log_in(page, console, console.admin_login, console.admin_password)
    page.goto(console.url + "/callcenter/wallboard")
    page.click("button[name=lang][value=en]")
    page.wait_for_selector("html[lang=en]")
    page.wait_for_selector("#live[data-live-state=open]")
    tile = page.locator(f"#wall-queue-{queue['id']}")
    assert "Support" in tile.inner_text() and tile.locator("[data-figure=waiting]").inner_text() == "0"
    row = page.locator(f"#wall-agent-{logins.employee_id}")
    page.wait_for_function(
        f"document.querySelector('#wall-queue-{queue['id']} [data-figure=available]').textContent === '1'")
    assert row.locator("[data-status]").get_attribute("data-status") == "available"
    page.screenshot(path=str(artifacts / "wallboard.png"), full_page=True)

    _json_request(f"{base}/agents/{logins.employee_id}/pause", "POST", token, {"reason": "Lunch"})
    page.wait_for_selector(f"#wall-agent-{logins.employee_id} [data-status=not_ready]")
    assert "(Lunch)" in page.locator(f"#wall-agent-{logins.employee_id}").inner_text()
    assert tile.locator("[data-figure=not_ready]").inner_text() == "1"
    _json_request(f"{base}/agents/{logins.employee_id}/logout", "POST", token, {})
    page.wait_for_selector(f"#wall-agent-{logins.employee_id} [data-status=offline]")
    page.set_viewport_size({"width": 375, "height": 800})
    page.screenshot(path=str(artifacts / "wallboard-phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
