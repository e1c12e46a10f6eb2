"""The agent's panel (/me/agent) against a running center: the menu entry for queue members only, log in to
a queue and out, Not ready with a reason and back, the caller offered and then on the line with the CRM
client's name, the wrap-up countdown, the callback requests (moved here from /me), another company's
employee seeing nothing of it, and the page in Russian.

Fixtures come from test_web.py (a company per test with an admin and an employee login).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from test_web import Company, Web, a, admin_a, b, csrf_of, login, web  # noqa: F401 - fixtures

from zvonok.callcenter import schemas as cc_schemas
from zvonok.callcenter import service as cc_service
from zvonok.callcenter.runtime import CallCenterRuntime
from zvonok.crm import schemas as crm_schemas
from zvonok.crm import service as crm_service
from zvonok.org.models import Employee

PANEL = "/me/agent"


@pytest.fixture
async def live(web: Web) -> AsyncIterator[CallCenterRuntime]:  # noqa: F811
    runtime = CallCenterRuntime(web.db, flush_delay=0.0)
    await runtime.start()
    app: Any = web.app
    app.state.callcenter = runtime
    try:
        yield runtime
    finally:
        await runtime.stop()


async def _employee_of(web: Web, tenant_id: int) -> int:  # noqa: F811
    async with web.db.session() as session:
        return int((await session.execute(select(Employee.id).where(Employee.tenant_id == tenant_id))).scalar_one())


async def _queue(web: Web, tenant_id: int, employee_id: int | None, *, name: str = "Support",  # noqa: F811
                 number: str = "700", wrap_up: int = 30) -> int:
    async with web.db.session() as session:
        queue = await cc_service.create_queue(session, tenant_id, cc_schemas.QueueCreate(
            name=name, number=number, strategy="ring_all", wrap_up=wrap_up))
        if employee_id is not None:
            await cc_service.set_queue_members(session, tenant_id, queue.id, [employee_id])
        await cc_service.create_reason(session, tenant_id, "Lunch")
        await session.commit()
        return int(queue.id)


async def _post(client: httpx.AsyncClient, url: str, data: dict[str, Any]) -> httpx.Response:
    html = (await client.get(PANEL)).text
    return await client.post(url, data={**data, "csrf_token": csrf_of(html)})


async def test_an_agent_works_from_the_panel(web: Web, a: Company, b: Company,  # noqa: F811
                                             live: CallCenterRuntime) -> None:
    ivan = await _employee_of(web, a.id)
    async with web.client() as employee:
        assert (await login(employee, a.employee)).status_code == 303
        home = (await employee.get("/me")).text
        assert 'href="/me/agent"' not in home  # in no queue: no menu entry, no link
        assert "You are a member of no queue" in (await employee.get(PANEL)).text

        queue_id = await _queue(web, a.id, ivan)
        async with web.db.session() as session:
            await crm_service.create_client(session, a.id, crm_schemas.ClientCreate(
                name="Anna Client", phones=[crm_schemas.PhoneIn(number="+74951234567")]))
            await session.commit()
        await live.settled()
        home = (await employee.get("/me")).text
        assert home.count('href="/me/agent"') == 2  # the menu entry and the portal's link
        page = (await employee.get(PANEL)).text
        assert 'id="agent-status">Offline<' in page and f'id="agent-queue-{queue_id}" data-logged-in="false"' in page
        assert 'hx-get="/me/agent/state"' in page and "every 1s" in page and "zv-AgentStateChanged" in page
        assert "No callback requests are waiting." in page and 'id="agent-pause"' not in page

        # pausing before logging in: refused on the page
        r = await _post(employee, f"{PANEL}/pause", {"reason": "Lunch"})
        assert r.status_code == 409 and "You are not logged in to any queue." in r.text
        r = await _post(employee, f"{PANEL}/login", {"queue_id": str(queue_id)})
        assert r.status_code == 303 and r.headers["location"] == PANEL
        assert live.center.agents[ivan].status.value == "available" and live.center.agents[ivan].queues == {queue_id}
        state = (await employee.get(f"{PANEL}/state")).text
        assert 'id="agent-status">Available<' in state and 'id="agent-clock"' in state
        controls = (await employee.get(f"{PANEL}/controls")).text
        assert 'data-logged-in="true"' in controls and "<option>Lunch</option>" in controls

        r = await _post(employee, f"{PANEL}/pause", {"reason": "Nap"})
        assert r.status_code == 409 and "Choose one of the company&#39;s not-ready reasons." in r.text
        assert (await _post(employee, f"{PANEL}/pause", {"reason": "Lunch"})).status_code == 303
        state = (await employee.get(f"{PANEL}/state")).text
        assert 'id="agent-status">Not ready<' in state and "(Lunch)" in state
        assert 'id="agent-ready"' in (await employee.get(f"{PANEL}/controls")).text
        assert (await _post(employee, f"{PANEL}/unpause", {})).status_code == 303
        assert live.center.agents[ivan].status.value == "available"

        # a caller offered (ringing), then on the line: the number and the CRM client
        live.feed(lambda c, now: c.join("call-1", queue_id, now, number="+74951234567"))
        assert live.center.agents[ivan].status.value == "ringing"
        state = (await employee.get(f"{PANEL}/state")).text
        assert "Your phone rings for" in state and 'id="agent-caller-number">+74951234567<' in state
        assert "Anna Client" in state and 'href="/crm/' in state
        live.feed(lambda c, now: c.offer_answered("call-1", ivan, now))
        state = (await employee.get(f"{PANEL}/state")).text
        assert "On the line" in state and "+74951234567" in state and "Anna Client" in state
        # a pause asked during the call waits for its end and its wrap-up
        assert (await _post(employee, f"{PANEL}/pause", {"reason": "Lunch"})).status_code == 303
        assert "Not ready after this call (Lunch)." in (await employee.get(f"{PANEL}/state")).text
        assert (await _post(employee, f"{PANEL}/unpause", {})).status_code == 303  # stay available after all
        live.feed(lambda c, now: c.call_ended("call-1", now, by_agent=True))
        state = (await employee.get(f"{PANEL}/state")).text
        assert 'id="agent-status">Wrap-up<' in state and ("new calls in 0:30" in state or "new calls in 0:29" in state)
        assert 'id="agent-caller"' not in state
        # a stranger's number: no client, a link to create one
        live.feed(lambda c, now: c.handle_timer(now + 31))
        live.feed(lambda c, now: c.join("call-2", queue_id, now, number="+74959999999"))
        state = (await employee.get(f"{PANEL}/state")).text
        assert "+74959999999" in state and 'href="/crm/new?phone=%2B74959999999"' in state
        live.feed(lambda c, now: c.caller_left("call-2", now))

        # callback requests: listed here, read-only (no longer on /me)
        live.feed(lambda c, now: c.join("cb-1", queue_id, now, number="+74951112231"))
        live.feed(lambda c, now: c.request_callback("cb-1", now))
        live.feed(lambda c, now: c.pause(ivan, "Lunch", now))
        await live.flush()
        page = (await employee.get(PANEL)).text
        assert 'id="callbacks"' in page and "+74951112231" in page and "Support (700)" in page and "/cancel" not in page
        assert 'id="callbacks"' not in (await employee.get("/me")).text

        # another company's employee: their own (empty) panel, nothing of Ivan's; no way to name another agent
        ivan_b = await _employee_of(web, b.id)
        queue_b = await _queue(web, b.id, ivan_b, name="Other", number="701")
        await live.settled()
        async with web.client() as other:
            assert (await login(other, b.employee)).status_code == 303
            theirs = (await other.get(f"{PANEL}/state")).text
            assert 'data-status="offline"' in theirs and "+7495" not in theirs
            page = (await other.get(PANEL)).text
            assert "Support" not in page and "+74951112231" not in page and f'id="agent-queue-{queue_b}"' in page
            r = await _post(other, f"{PANEL}/login", {"queue_id": str(queue_id)})  # a queue of company a
            assert r.status_code == 409 and "Вы не состоите в этой очереди." in r.text  # company b speaks Russian
            assert live.center.agents[ivan].queues == {queue_id}
            assert ivan_b not in live.center.agents

        assert (await _post(employee, f"{PANEL}/logout", {})).status_code == 303
        assert live.center.agents[ivan].status.value == "offline"
        assert (await _post(employee, f"{PANEL}/dance", {})).status_code == 404


async def test_the_panel_without_a_running_center_and_in_russian(web: Web, b: Company) -> None:  # noqa: F811
    ivan = await _employee_of(web, b.id)
    await _queue(web, b.id, ivan)
    async with web.client() as employee:
        assert (await login(employee, b.employee)).status_code == 303
        page = (await employee.get(PANEL)).text
        assert "Панель оператора" in page and "Колл-центр не работает в этом процессе" in page
        r = await _post(employee, f"{PANEL}/login", {})
        assert r.status_code == 409 and "Колл-центр не работает" in r.text


async def test_an_admin_without_an_employee_has_no_panel(web: Web, admin_a: httpx.AsyncClient) -> None:  # noqa: F811
    assert (await admin_a.get(PANEL)).status_code == 404
    assert 'href="/me/agent"' not in (await admin_a.get("/")).text
