"""The call center's admin pages: queues (create, 422 on the form, edit, members, delete), agents (skills,
a reason, log in / pause / unpause / log out through the running center), another company's ids (404)
and the employee kept out (403).

Fixtures come from test_web.py (a company per test with an admin and an employee login).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from test_web import PASSWORD, Company, Web, a, admin_a, b, csrf_of, login, web  # noqa: F401 - fixtures

from zvonok.callcenter.models import CallQueue
from zvonok.callcenter.runtime import CallCenterRuntime
from zvonok.org.models import Employee
from zvonok.web.pages.callcenter import parse_skills


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


async def _post(client: httpx.AsyncClient, page: str, url: str, data: dict[str, Any]) -> httpx.Response:
    html = (await client.get(page)).text
    return await client.post(url, data={**data, "csrf_token": csrf_of(html)})


def test_parse_skills() -> None:
    assert parse_skills(" english:7, sales : 3 ,") == {"english": 7, "sales": 3}
    for bad in ("english", "english:x", ":3"):
        with pytest.raises(ValueError):
            parse_skills(bad)


async def test_queue_and_agent_pages(web: Web, a: Company, b: Company, admin_a: httpx.AsyncClient,  # noqa: F811
                                     live: CallCenterRuntime) -> None:
    page = await admin_a.get("/callcenter/queues")
    assert page.status_code == 200 and "No queues yet." in page.text and 'href="/callcenter/agents"' in page.text
    form = {"name": "Support", "number": "101", "strategy": "ring_all", "ring_timeout": "20", "wrap_up": "5",
            "max_wait": "", "service_level": "30", "requirements": "english:5"}
    r = await _post(admin_a, "/callcenter/queues", "/callcenter/queues", form)
    assert r.status_code == 422 and "is an extension" in r.text and 'value="Support"' in r.text
    r = await _post(admin_a, "/callcenter/queues", "/callcenter/queues", {**form, "number": "700", "ring_timeout": "1"})
    assert r.status_code == 422 and "Seconds, from 5 to 300." in r.text
    r = await _post(admin_a, "/callcenter/queues", "/callcenter/queues", {**form, "number": "700"})
    assert r.status_code == 303, r.text
    async with web.db.session() as session:
        queue = (await session.execute(select(CallQueue))).scalar_one()
        ivan = (await session.execute(select(Employee.id).where(Employee.tenant_id == a.id))).scalar_one()
        ivan_b = (await session.execute(select(Employee.id).where(Employee.tenant_id == b.id))).scalar_one()
    assert queue.strategy == "ring_all" and queue.max_wait is None and queue.service_level == 30
    assert queue.requirements == [{"skill": "english", "min_level": 5}]
    assert (queue.callback_key, queue.callback_attempts, queue.callback_retry) == (None, 3, 60)
    edit = f"/callcenter/queues/{queue.id}"
    r = await _post(admin_a, edit, edit, {**form, "number": "700", "callback_key": "x"})
    assert r.status_code == 422 and "One key: a digit, * or #." in r.text
    assert 'name="callback_abroad">' in (await admin_a.get(edit)).text  # not checked by default
    r = await _post(admin_a, edit, edit, {**form, "number": "700", "callback_key": "9", "callback_attempts": "2",
                                          "callback_retry": "300", "callback_abroad": "on"})
    assert r.status_code == 303
    page = await admin_a.get(edit)
    assert '<option value="9" selected>' in page.text and 'value="300"' in page.text
    assert 'name="callback_abroad" checked>' in page.text
    r = await _post(admin_a, edit, edit, {**form, "requirements": "english"})
    assert r.status_code == 422 and "name:level pairs" in r.text
    r = await _post(admin_a, edit, edit, {**form, "number": "700", "vip_numbers": "+7 495 123-45-67:10, +7495*:5, 102:3"})
    assert r.status_code == 303, r.text
    async with web.db.session() as session:
        stored = (await session.execute(select(CallQueue.vip_numbers))).scalar_one()
    assert stored == [{"number": "+74951234567", "priority": 10}, {"prefix": "+7495", "priority": 5},
                      {"number": "102", "priority": 3}]
    assert 'value="+74951234567:10, +7495*:5, 102:3"' in (await admin_a.get(edit)).text
    for bad in ("+74951234567", "+74951234567:0", "84951234567:5", "7495*:5", "+7495*:5, +7495*:6"):
        r = await _post(admin_a, edit, edit, {**form, "number": "700", "vip_numbers": bad})
        assert r.status_code == 422 and "each with :priority from 1 to 100" in r.text, bad
    r = await _post(admin_a, edit, edit, {**form, "number": "701", "max_wait": "120", "requirements": "english:2"})
    assert r.status_code == 303
    r = await _post(admin_a, edit, f"{edit}/members", {"employee_id": str(ivan)})
    assert r.status_code == 303
    page = await admin_a.get(edit)
    assert 'value="701"' in page.text and 'value="120"' in page.text and 'value="english:2"' in page.text and f'value="{ivan}" checked' in page.text
    r = await _post(admin_a, edit, f"{edit}/members", {"employee_id": str(ivan_b)})
    assert r.status_code == 422  # another company's employee

    agents = "/callcenter/agents"
    r = await _post(admin_a, agents, f"{agents}/{ivan}/skills", {"skills": "english:11"})
    assert r.status_code == 422 and "levels 1 to 10" in r.text
    assert (await _post(admin_a, agents, f"{agents}/{ivan}/skills", {"skills": "english:7"})).status_code == 303
    assert (await _post(admin_a, agents, "/callcenter/reasons", {"name": "Lunch"})).status_code == 303
    await live.settled()
    assert (await _post(admin_a, agents, f"{agents}/{ivan}/login", {})).status_code == 303
    assert live.center.agents[ivan].skills == {"english": 7}
    live.feed(lambda c, now: c.join("call-w", queue.id, now, number="1"))
    page = await admin_a.get("/callcenter/queues")
    assert 'data-waiting="1"' in page.text
    await live.flush()
    for url in ("/callcenter/wallboard", "/callcenter/wallboard/body"):
        board = await admin_a.get(url)
        assert board.status_code == 200 and 'data-figure="waiting">1<' in board.text, url
        assert 'data-figure="offered">1<' in board.text and f'id="wall-agent-{ivan}"' in board.text
    assert 'hx-get="/callcenter/wallboard/body"' in (await admin_a.get("/callcenter/wallboard")).text
    live.feed(lambda c, now: c.caller_left("call-w", now))
    page = await admin_a.get(agents)
    assert 'data-status="available"' in page.text and "english:7" in page.text and "<mark>Lunch</mark>" in page.text
    r = await _post(admin_a, agents, f"{agents}/{ivan}/pause", {"reason": "Nap"})
    assert r.status_code == 422 and "not-ready reasons" in r.text
    assert (await _post(admin_a, agents, f"{agents}/{ivan}/pause", {"reason": "Lunch"})).status_code == 303
    page = await admin_a.get(agents)
    assert 'data-status="not_ready"' in page.text and "(Lunch)" in page.text
    assert (await _post(admin_a, agents, f"{agents}/{ivan}/unpause", {})).status_code == 303
    assert (await _post(admin_a, agents, f"{agents}/{ivan}/logout", {})).status_code == 303
    assert live.center.agents[ivan].status.value == "offline"
    # another company's ids: 404; the employee: 403
    assert (await admin_a.get(f"/callcenter/queues/{queue.id + 1000}")).status_code == 404
    assert (await _post(admin_a, agents, f"{agents}/{ivan_b}/login", {})).status_code == 404
    async with web.client() as employee:
        assert (await login(employee, a.employee)).status_code == 303
        assert (await employee.get(agents)).status_code == 403
        assert (await employee.get("/callcenter/wallboard/body")).status_code == 403
    r = await _post(admin_a, edit, f"{edit}/delete", {})
    assert r.status_code == 303
    assert "No queues yet." in (await admin_a.get("/callcenter/queues")).text


async def test_a_supervisor_runs_agents_and_sees_the_wallboard_but_changes_no_configuration(
        web: Web, a: Company, admin_a: httpx.AsyncClient, live: CallCenterRuntime) -> None:  # noqa: F811
    # the users page offers the role; the list marks it
    assert 'value="supervisor"' in (await admin_a.get("/org")).text
    r = await _post(admin_a, "/org", "/org/employees", {"full_name": "Sveta", "email": "sveta@a.example",
                                                        "role": "supervisor", "web_password": PASSWORD})
    assert r.status_code == 303, r.text
    assert '<mark class="role">supervisor</mark>' in (await admin_a.get("/org")).text
    r = await _post(admin_a, "/callcenter/queues", "/callcenter/queues", {
        "name": "Support", "number": "700", "strategy": "ring_all", "ring_timeout": "20", "wrap_up": "5",
        "max_wait": "", "service_level": "30", "requirements": ""})
    assert r.status_code == 303
    async with web.db.session() as session:
        queue = (await session.execute(select(CallQueue))).scalar_one()
        ivan = (await session.execute(select(Employee.id).where(Employee.tenant_id == a.id,
                                                                Employee.full_name != "Sveta"))).scalar_one()
    edit = f"/callcenter/queues/{queue.id}"
    assert (await _post(admin_a, edit, f"{edit}/members", {"employee_id": str(ivan)})).status_code == 303
    assert (await _post(admin_a, "/callcenter/agents", "/callcenter/reasons", {"name": "Lunch"})).status_code == 303
    await live.settled()

    agents = "/callcenter/agents"
    async with web.client() as sup:
        assert (await login(sup, "sveta@a.example")).status_code == 303
        home = (await sup.get("/")).text
        for href in ("/callcenter/wallboard", "/callcenter/agents", "/calls", "/me"):
            assert f'href="{href}"' in home, href
        for href in ("/callcenter/queues", "/trunks", "/org", "/tokens", "/numbers"):
            assert f'href="{href}"' not in home, href
        for url in ("/callcenter/wallboard", "/callcenter/wallboard/body", "/calls/live", agents):
            assert (await sup.get(url)).status_code == 200, url
        page = (await sup.get(agents)).text
        assert f'action="/callcenter/agents/{ivan}/login"' in page
        assert "/skills" not in page and 'id="new-reason"' not in page and f'href="{edit}"' not in page
        for url in ("/callcenter/queues", edit, "/trunks", "/org", "/tokens", "/extensions"):
            assert (await sup.get(url)).status_code == 403, url
        for url, data in ((f"{agents}/{ivan}/skills", {"skills": "english:9"}), ("/callcenter/reasons", {"name": "Nap"}),
                          (f"{edit}/delete", {}), (f"{edit}/members", {"employee_id": str(ivan)})):
            assert (await _post(sup, agents, url, data)).status_code == 403, url
        # agents' statuses: log in, pause, ready, log out
        assert (await _post(sup, agents, f"{agents}/{ivan}/login", {})).status_code == 303
        assert live.center.agents[ivan].status.value == "available"
        assert (await _post(sup, agents, f"{agents}/{ivan}/pause", {"reason": "Lunch"})).status_code == 303
        assert live.center.agents[ivan].status.value == "not_ready"
        assert 'data-status="not_ready"' in (await sup.get(agents)).text
        assert (await _post(sup, agents, f"{agents}/{ivan}/unpause", {})).status_code == 303
        assert (await _post(sup, agents, f"{agents}/{ivan}/logout", {})).status_code == 303
        assert live.center.agents[ivan].status.value == "offline"
        # a callback request holding its place is listed on the wallboard
        assert 'id="wall-callbacks"' not in (await sup.get("/callcenter/wallboard/body")).text
        live.feed(lambda c, now: c.join("cb-1", queue.id, now, number="+74951112233"))
        live.feed(lambda c, now: c.request_callback("cb-1", now))
        body = (await sup.get("/callcenter/wallboard/body")).text
        assert 'id="wall-callbacks"' in body and "+74951112233" in body and "Support" in body
    async with web.db.session() as session:
        assert (await session.execute(select(CallQueue.id))).scalars().all() == [queue.id]


async def test_pages_in_russian(web: Web, b: Company) -> None:  # noqa: F811
    async with web.client() as admin_b:
        assert (await login(admin_b, b.admin)).status_code == 303
        page = await admin_b.get("/callcenter/queues")
        assert "Очередей пока нет." in page.text and "Новая очередь" in page.text
        page = await admin_b.get("/callcenter/agents")
        assert "Причины неготовности" in page.text and "Операторы" in page.text
        page = await admin_b.get("/callcenter/wallboard")
        assert "Табло" in page.text and "Колл-центр не работает в этом процессе" in page.text


async def test_callback_requests_on_the_agents_page_and_the_employees_own(
        web: Web, a: Company, b: Company, admin_a: httpx.AsyncClient, live: CallCenterRuntime) -> None:  # noqa: F811
    r = await _post(admin_a, "/callcenter/queues", "/callcenter/queues", {
        "name": "Support", "number": "700", "strategy": "ring_all", "ring_timeout": "20", "wrap_up": "5",
        "max_wait": "", "service_level": "30", "requirements": ""})
    assert r.status_code == 303
    async with web.db.session() as session:
        queue = (await session.execute(select(CallQueue))).scalar_one()
        ivan = (await session.execute(select(Employee.id).where(Employee.tenant_id == a.id))).scalar_one()
    async with web.client() as employee:
        assert (await login(employee, a.employee)).status_code == 303
        assert 'id="callbacks"' not in (await employee.get("/me/agent")).text  # in no queue: no such section
        edit = f"/callcenter/queues/{queue.id}"
        assert (await _post(admin_a, edit, f"{edit}/members", {"employee_id": str(ivan)})).status_code == 303
        await live.settled()
        assert "No callback requests are waiting." in (await employee.get("/me/agent")).text
        for n in (1, 2):
            live.feed(lambda c, now, n=n: c.join(f"cb-{n}", queue.id, now, number=f"+7495111223{n}"))
            live.feed(lambda c, now, n=n: c.request_callback(f"cb-{n}", now))
        await live.flush()
        mine = (await employee.get("/me/agent")).text  # the agent's panel
        assert 'id="callbacks"' in mine and mine.index("+74951112231") < mine.index("+74951112232")
        assert "Support (700)" in mine and "/cancel" not in mine  # read-only for the agent
        page = (await admin_a.get("/callcenter/agents")).text
        ids = [int(x) for x in re.findall(r'id="callback-(\d+)"', page)]
        assert len(ids) == 2 and page.count('action="/callcenter/callbacks/') == 2
        # the employee may not cancel; another company's admin gets the 404 page
        assert (await _post(employee, "/me", f"/callcenter/callbacks/{ids[0]}/cancel", {})).status_code == 403
    async with web.client() as admin_b:
        assert (await login(admin_b, b.admin)).status_code == 303
        r = await _post(admin_b, "/callcenter/agents", f"/callcenter/callbacks/{ids[0]}/cancel", {})
        assert r.status_code == 404
    assert "cb-1" in live.center.waiting
    r = await _post(admin_a, "/callcenter/agents", f"/callcenter/callbacks/{ids[0]}/cancel", {})
    assert r.status_code == 303 and r.headers["location"] == "/callcenter/agents#callbacks"
    assert "cb-1" not in live.center.waiting and "cb-2" in live.center.waiting
    page = (await admin_a.get("/callcenter/agents")).text
    assert f'id="callback-{ids[0]}"' not in page and f'id="callback-{ids[1]}"' in page
    r = await _post(admin_a, "/callcenter/agents", f"/callcenter/callbacks/{ids[0]}/cancel", {})
    assert r.status_code == 409 and "no longer waiting" in r.text


async def test_not_ready_reasons_get_a_phone_code_on_the_agents_page(
        web: Web, a: Company, b: Company, admin_a: httpx.AsyncClient) -> None:  # noqa: F811
    """A reason's ``*47`` code: given when the reason is added, set, changed or cleared on its row (422 with the
    message on the form: not 1-4 digits, or another reason's); another company's reason is the 404 page; a
    supervisor sees the codes and changes none."""
    from zvonok.callcenter.models import NotReadyReason

    agents = "/callcenter/agents"
    assert "dials *47 and a reason" in (await admin_a.get(agents)).text
    assert (await _post(admin_a, agents, "/callcenter/reasons", {"name": "Lunch", "code": " 1 "})).status_code == 303
    assert (await _post(admin_a, agents, "/callcenter/reasons", {"name": "Training", "code": ""})).status_code == 303
    for bad in ("12345", "1a", "1"):  # the last one Lunch's
        r = await _post(admin_a, agents, "/callcenter/reasons", {"name": "Nap", "code": bad})
        assert r.status_code == 422 and "A code is 1 to 4 digits that no other reason has" in r.text, bad
        assert 'value="Nap"' in r.text and f'value="{bad}"' in r.text  # the form as typed
    r = await _post(admin_a, agents, "/callcenter/reasons", {"name": "Lunch", "code": "5"})
    assert r.status_code == 422 and "A reason needs a new name" in r.text
    async with web.db.session() as session:
        rows = {r.name: r for r in (await session.execute(select(NotReadyReason))).scalars()}
    assert {name: r.code for name, r in rows.items()} == {"Lunch": "1", "Training": None}
    lunch, training = rows["Lunch"].id, rows["Training"].id
    page = (await admin_a.get(agents)).text
    assert f'action="/callcenter/reasons/{lunch}"' in page and 'value="1"' in page and "<mark>Lunch</mark>" in page

    r = await _post(admin_a, agents, f"/callcenter/reasons/{training}", {"code": "22"})
    assert r.status_code == 303 and r.headers["location"] == f"{agents}#reason-{training}"
    for bad in ("1", "x"):
        r = await _post(admin_a, agents, f"/callcenter/reasons/{training}", {"code": bad})
        assert r.status_code == 422, bad
        row = r.text[r.text.index(f'id="reason-{training}"'):]
        assert row.index("A code is 1 to 4 digits") < row.index("</form>"), bad  # on that reason's row
        assert row.index(f'value="{bad}"') < row.index("</form>"), bad  # as typed
    assert (await _post(admin_a, agents, f"/callcenter/reasons/{lunch}", {"code": ""})).status_code == 303
    async with web.db.session() as session:
        codes = dict((await session.execute(select(NotReadyReason.name, NotReadyReason.code))).tuples().all())
    assert codes == {"Lunch": None, "Training": "22"}

    async with web.client() as admin_b:
        assert (await login(admin_b, b.admin)).status_code == 303
        r = await _post(admin_b, agents, f"/callcenter/reasons/{training}", {"code": "7"})
        assert r.status_code == 404  # another company's reason
        assert (await _post(admin_b, agents, "/callcenter/reasons", {"name": "Обед", "code": "22"})).status_code == 303
        r = await _post(admin_b, agents, "/callcenter/reasons", {"name": "Отдых", "code": "x"})
        assert r.status_code == 422 and "Код: от 1 до 4 цифр" in r.text
    async with web.db.session() as session:
        assert (await session.get(NotReadyReason, training)).code == "22"  # type: ignore[union-attr]

    r = await _post(admin_a, "/org", "/org/employees", {"full_name": "Sveta", "email": "sveta@a.example",
                                                        "role": "supervisor", "web_password": PASSWORD})
    assert r.status_code == 303, r.text
    async with web.client() as sup:
        assert (await login(sup, "sveta@a.example")).status_code == 303
        page = (await sup.get(agents)).text
        assert "<mark>Training</mark> <kbd>*4722</kbd>" in page and "<mark>Lunch</mark> " in page
        assert 'action="/callcenter/reasons/' not in page
        assert (await _post(sup, agents, f"/callcenter/reasons/{training}", {"code": "3"})).status_code == 403
