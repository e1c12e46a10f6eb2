"""Callback requests across a restart of a real server, in Chromium: two requests left in the queue's table
while the server was down (one waiting, one whose customer was being dialed) are back in the queue's line
after the start — the wallboard's live list has them in their order, the dialed one waiting again — the agent
sees them on their agent panel (/me/agent), and the admin cancels one with its button on the agents page.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import zvonok.storage.models  # noqa: F401 - every table, for the foreign keys
from zvonok.callcenter.models import QueueCallbackRow
from zvonok.config import Settings
from zvonok.storage.db import Database

from .conftest import Console
from .test_web_crawl import Users, _json_request, _log_in, logins  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


async def _leave_requests(url: str, tenant_id: int, queue_id: int, now: float) -> None:
    db = Database(url)
    try:
        async with db.session() as session:
            for n, (state, waited, attempts) in enumerate((("dialing", 300, 0), ("waiting", 120, 1)), 1):
                session.add(QueueCallbackRow(
                    tenant_id=tenant_id, queue_id=queue_id, call_id=f"before-restart-{n}", number=f"+7495123000{n}",
                    priority=0, joined_at=now - waited, requested_at=now - waited + 20, position=n, state=state,
                    attempts=attempts, last_result="no_answer" if attempts else None))
            await session.commit()
    finally:
        await db.dispose()


def test_callback_requests_survive_a_restart_and_show_on_the_agents_pages(
        page: Any, console: Console, logins: Users, artifacts: Path) -> None:  # noqa: F811
    base = f"{console.url}/api/v1/tenants/{console.tenant_id}/callcenter"
    token = logins.api_token
    queue = _json_request(f"{base}/queues", "POST", token, {"name": "Support", "number": "560", "callback_key": "*"})
    _json_request(f"{base}/queues/{queue['id']}/members", "PUT", token, {"employee_ids": [logins.employee_id]})

    server = console.server
    assert server.stop() == 0
    url = Settings(data_dir=server.data_dir, database_url=server.database_url).resolved_database_url()
    with ThreadPoolExecutor(1) as thread:  # Playwright's own event loop runs in this one
        thread.submit(asyncio.run, _leave_requests(url, console.tenant_id, queue["id"], time.time())).result()
    server.start()

    # back in the running center's line, in their order; the one being dialed is waiting again
    board = _json_request(f"{base}/wallboard", token=token)
    assert [(c["number"], c["position"], c["attempts"]) for c in board["callbacks"]] == [
        ("+74951230001", 1, 0), ("+74951230002", 2, 1)]
    listed = _json_request(f"{base}/queues/{queue['id']}/callbacks", token=token)["items"]
    assert [(c["number"], c["state"], c["position"]) for c in listed] == [
        ("+74951230001", "waiting", 1), ("+74951230002", "waiting", 2)]

    # the agent's panel lists them, read-only
    employee, password = logins["employee"]
    _log_in(page, console, employee, password)
    page.goto(console.url + "/me/agent")
    if page.locator("html").get_attribute("lang") != "en":
        page.click("button[name=lang][value=en]")
        page.wait_for_selector("html[lang=en]")
    section = page.locator("#callbacks")
    rows = section.locator("tbody tr")
    assert rows.count() == 2
    assert "+74951230001" in rows.nth(0).inner_text() and "Support (560)" in rows.nth(0).inner_text()
    assert "+74951230002" in rows.nth(1).inner_text() and "(no answer)" in rows.nth(1).inner_text()
    assert section.locator("button").count() == 0
    section.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "agent-panel-callbacks.png"), full_page=True)
    page.context.clear_cookies()

    # the admin cancels the first one on the agents page
    _log_in(page, console, console.admin_login, console.admin_password)
    page.goto(console.url + "/callcenter/agents")
    if page.locator("html").get_attribute("lang") != "en":
        page.click("button[name=lang][value=en]")
        page.wait_for_selector("html[lang=en]")
    first = listed[0]["id"]
    page.click(f"#callback-{first} button")
    page.wait_for_url(console.url + "/callcenter/agents#callbacks")
    assert page.locator(f"#callback-{first}").count() == 0
    assert page.locator(f"#callback-{listed[1]['id']}").count() == 1
    page.locator("#callbacks").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "agents-callbacks.png"), full_page=True)
    board = _json_request(f"{base}/wallboard", token=token)
    assert [c["number"] for c in board["callbacks"]] == ["+74951230002"]
