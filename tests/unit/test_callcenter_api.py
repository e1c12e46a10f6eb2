"""The call center's data and control layer: queue CRUD (number space, overflow checks: 422/409), members,
skills and not-ready reasons, tenant isolation (404), agents' login/pause by themself or the admin, the
live view, the runtime's queue log writer (batches, retries, flush at stop) and bus events, and the
historic reports by SQL — equal to :mod:`zvonok.callcenter.kpi` on a scripted log, on both backends."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from test_pstn_support import Company, make_company, ok

from conftest import Api
from zvonok.callcenter import log as ql
from zvonok.callcenter import service
from zvonok.callcenter.center import ContactCenter, Offer
from zvonok.callcenter.events import AgentStateChanged, QueueStateChanged
from zvonok.callcenter.kpi import agent_kpis, queue_kpis
from zvonok.callcenter.log import QueueLogEntry
from zvonok.callcenter.models import CallQueue, QueueLogRow
from zvonok.callcenter.queues import QueueConfig, Strategy
from zvonok.callcenter.reports import agent_report, queue_report
from zvonok.callcenter.runtime import CallCenterRuntime
from zvonok.config import Settings
from zvonok.storage.db import Database


class FakeBus:
    def __init__(self) -> None:
        self.events: list[object] = []

    def publish(self, event: object) -> None:
        self.events.append(event)

    def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def runtime(db: Database) -> AsyncIterator[CallCenterRuntime]:
    rt = CallCenterRuntime(db, FakeBus(), clock=Clock(), wall=lambda: 1_800_000_000.0, flush_delay=0.0,
                           retry_delay=0.01)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


@pytest.fixture
async def api(db: Database, settings: Settings, runtime: CallCenterRuntime) -> AsyncIterator[Api]:
    import httpx

    from conftest import _extra_routers
    from zvonok.api.app import create_app
    from zvonok.org import accounts

    async with db.session() as session:
        created = await accounts.platform_create_api_token(session, "tests")
        await session.commit()
    app = create_app(settings, db, routers=_extra_routers())
    app.state.callcenter = runtime
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://zvonok.test") as client:
        yield Api(client=client, db=db, settings=settings, admin_token=created.secret)


def cc(company: Company) -> str:
    return f"{company.base}/callcenter"


async def new_queue(api: Api, company: Company, **body: Any) -> dict[str, Any]:
    payload = {"name": "Sales", "number": "500", **body}
    return dict(await ok(await api.client.post(f"{cc(company)}/queues", headers=company.headers, json=payload), 201))


# -- queues ------------------------------------------------------------------------------------------
async def test_queue_crud_and_number_space(api: Api, make_tenant: Any) -> None:
    a = await make_company(api, make_tenant, "a.example")
    queue = await new_queue(api, a, strategy="skills", requirements=[{"skill": "english", "min_level": 5}],
                            relaxations=[{"after": 60, "min_level": 0}, {"after": 30, "min_level": 3}],
                            overflow={"kind": "extension", "number": "101"}, max_wait=300)
    assert queue["strategy"] == "skills" and queue["overflow"] == {"kind": "extension", "number": "101"}
    assert [r["after"] for r in queue["relaxations"]] == [30, 60]
    # the overflow extension cannot be deleted while the queue names it
    r = await api.client.delete(f"{a.base}/extensions/{a.ext_alice}", headers=a.headers)
    assert r.status_code == 409 and "queue Sales (500)" in r.text
    post = f"{cc(a)}/queues"
    r = await api.client.post(post, headers=a.headers, json={"name": "Ext", "number": "101"})
    assert r.status_code == 422 and "is an extension" in r.text
    r = await api.client.post(post, headers=a.headers, json={"name": "Other", "number": "500"})
    assert r.status_code == 409
    r = await api.client.post(post, headers=a.headers, json={"name": "Sales", "number": "501"})
    assert r.status_code == 409
    for bad, words in (({"kind": "extension", "number": "199"}, "199 does not exist"),
                       ({"kind": "teleport"}, "unknown destination kind"),
                       ({"kind": "schedule", "default": {"kind": "extension", "number": "101"}}, "schedule"),
                       ({"number": "101"}, "kind"),
                       ({"kind": "queue", "number": "599"}, "overflow.number: queue 599 does not exist"),
                       ({"kind": "conference", "number": "800"}, "overflow.number: conference room 800 does not exist"),
                       ({"kind": "hangup"}, "'hangup' is not available here")):
        r = await api.client.post(post, headers=a.headers, json={"name": "Q2", "number": "502", "overflow": bad})
        assert r.status_code == 422 and words in r.text, (bad, r.text)
    r = await api.client.post(post, headers=a.headers, json={"name": "Q2", "number": "5"})
    assert r.status_code == 422
    r = await api.client.post(post, headers=a.headers, json={"name": "Q2", "number": "502", "ring_timeout": 1})
    assert r.status_code == 422
    r = await api.client.post(post, headers=a.headers, json={
        "name": "Q2", "number": "502", "requirements": [{"skill": "x", "min_level": 1}, {"skill": "x", "min_level": 2}]})
    assert r.status_code == 422
    url = f"{post}/{queue['id']}"
    changed = await ok(await api.client.patch(url, headers=a.headers, json={"wrap_up": 0, "overflow": None,
                                                                          "number": "600"}))
    assert changed["wrap_up"] == 0 and changed["overflow"] is None and changed["number"] == "600"
    r = await api.client.patch(url, headers=a.headers, json={"number": "102"})
    assert r.status_code == 422
    r = await api.client.patch(url, headers=a.headers, json={"strategy": None})
    assert r.status_code == 422
    listed = await ok(await api.client.get(post, headers=a.headers))
    assert listed["total"] == 1
    # the employee may not administer queues
    assert (await api.client.get(post, headers=a.alice_headers)).status_code == 403
    # another tenant: 404, never 403
    b = await make_company(api, make_tenant, "b.example")
    assert (await api.client.get(url, headers=b.headers)).status_code == 404
    assert (await api.client.get(f"{cc(b)}/queues/{queue['id']}", headers=b.headers)).status_code == 404
    assert (await api.client.get(f"{cc(a)}/queues", headers=b.headers)).status_code == 404
    # a's queue (now 600) is no overflow of b's: another tenant's queue "does not exist"
    r = await api.client.post(f"{cc(b)}/queues", headers=b.headers, json={
        "name": "B", "number": "501", "overflow": {"kind": "queue", "number": "600"}})
    assert r.status_code == 422 and "overflow.number: queue 600 does not exist" in r.text, r.text
    theirs = await new_queue(api, b, name="Night", number="601")
    r = await api.client.patch(url, headers=a.headers, json={"overflow": {"kind": "queue", "queue": "Night"}})
    assert r.status_code == 422 and "overflow.queue: queue 'Night' does not exist" in r.text, r.text
    mine = await new_queue(api, a, name="Night", number="602")
    changed = await ok(await api.client.patch(url, headers=a.headers, json={"overflow": {"kind": "queue", "number": "602"}}))
    assert changed["overflow"] == {"kind": "queue", "number": "602"} and theirs["id"] != mine["id"]
    r = await api.client.put(f"{cc(b)}/queues/{queue['id']}/members", headers=b.headers, json={"employee_ids": []})
    assert r.status_code == 404
    await ok(await api.client.delete(url, headers=a.headers), 204)
    assert (await api.client.get(url, headers=a.headers)).status_code == 404


async def test_queue_callback_settings(api: Api, make_tenant: Any, runtime: CallCenterRuntime) -> None:
    a = await make_company(api, make_tenant, "cb.example")
    queue = await new_queue(api, a)
    assert (queue["callback_key"], queue["callback_attempts"], queue["callback_retry"]) == (None, 3, 60)
    assert queue["callback_abroad"] is False  # opted in by the company, never by default
    url = f"{cc(a)}/queues/{queue['id']}"
    for bad in ({"callback_key": "12"}, {"callback_key": "a"}, {"callback_attempts": 0}, {"callback_retry": 5},
                {"callback_attempts": None}):
        r = await api.client.patch(url, headers=a.headers, json=bad)
        assert r.status_code == 422, (bad, r.text)
    changed = await ok(await api.client.patch(url, headers=a.headers, json={
        "callback_key": "*", "callback_attempts": 5, "callback_retry": 120, "callback_abroad": True}))
    assert (changed["callback_key"], changed["callback_attempts"], changed["callback_retry"]) == ("*", 5, 120)
    assert changed["callback_abroad"] is True
    async with api.db.session() as session:
        config = service.queue_config(await service.get_queue(session, a.id, queue["id"]))
    assert (config.callback_key, config.callback_attempts, config.callback_retry, config.number) == (
        "*", 5, 120.0, "500")
    assert config.callback_abroad is True
    r = await api.client.patch(url, headers=a.headers, json={"callback_abroad": None})
    assert r.status_code == 422, r.text  # not a column that may be emptied
    changed = await ok(await api.client.patch(url, headers=a.headers, json={"callback_key": None}))
    assert changed["callback_key"] is None  # no callbacks any more


async def test_queue_vip_numbers(api: Api, make_tenant: Any, runtime: CallCenterRuntime) -> None:
    a = await make_company(api, make_tenant, "vip.example")
    queue = await new_queue(api, a, vip_numbers=[{"number": "+7 (495) 123-45-67", "priority": 5},
                                                  {"prefix": "+7 495", "priority": 2}, {"number": "101", "priority": 3}])
    assert queue["vip_numbers"] == [{"number": "+74951234567", "prefix": None, "priority": 5},
                                    {"number": None, "prefix": "+7495", "priority": 2},
                                    {"number": "101", "prefix": None, "priority": 3}]
    url = f"{cc(a)}/queues/{queue['id']}"
    for bad, words in (([{"number": "+74951234567", "priority": 0}], "greater than or equal to 1"),
                       ([{"number": "+74951234567", "priority": 101}], "less than or equal to 100"),
                       ([{"number": "84951234567", "priority": 1}], "international form"),
                       ([{"prefix": "7495", "priority": 1}], "'+' and 1 to 14 digits"),
                       ([{"number": "+74951234567", "prefix": "+7", "priority": 1}], 'either \\"number\\" or'),
                       ([{"priority": 1}], 'either \\"number\\" or'),
                       ([{"number": "+74951234567"}], "Field required"),
                       ([{"number": "+74951234567", "priority": 1, "vip": True}], "Extra inputs"),
                       ([{"prefix": "+7495", "priority": 1}, {"prefix": "+7495", "priority": 2}], "listed twice"),
                       (None, "may not be null")):
        r = await api.client.patch(url, headers=a.headers, json={"vip_numbers": bad})
        assert r.status_code == 422 and words in r.text, (bad, r.text)
    async with api.db.session() as session:
        row = await service.get_queue(session, a.id, queue["id"])
        assert row.vip_numbers[1] == {"prefix": "+7495", "priority": 2}  # stored without nulls
        config = service.queue_config(row)
    assert (config.vip_priority("+74951234567"), config.vip_priority("74950000000"), config.vip_priority("101"),
            config.vip_priority("+79161234567")) == (5, 2, 3, 0)
    changed = await ok(await api.client.patch(url, headers=a.headers, json={"vip_numbers": [
        {"number": "+79161234567", "priority": 9}]}))
    assert changed["vip_numbers"] == [{"number": "+79161234567", "prefix": None, "priority": 9}]
    # the center's copy follows the change (the runtime reloads on the commit's event)
    await runtime.settled()
    assert runtime.center.queues[queue["id"]].vip_priority("79161234567") == 9
    # another tenant can neither see nor change the list
    b = await make_company(api, make_tenant, "vip-b.example")
    assert (await api.client.get(url, headers=b.headers)).status_code == 404
    assert (await api.client.get(f"{cc(b)}/queues/{queue['id']}", headers=b.headers)).status_code == 404
    r = await api.client.patch(f"{cc(b)}/queues/{queue['id']}", headers=b.headers,
                               json={"vip_numbers": [{"number": "+74990000000", "priority": 1}]})
    assert r.status_code == 404
    assert (await ok(await api.client.get(url, headers=a.headers)))["vip_numbers"] == changed["vip_numbers"]


async def test_members_skills_reasons_and_agent_state(api: Api, make_tenant: Any, runtime: CallCenterRuntime) -> None:
    a = await make_company(api, make_tenant, "a.example")
    b = await make_company(api, make_tenant, "b.example")
    queue = await new_queue(api, a)
    base = cc(a)
    members = f"{base}/queues/{queue['id']}/members"
    r = await api.client.put(members, headers=a.headers, json={"employee_ids": [a.alice, b.alice]})
    assert r.status_code == 422 and str(b.alice) in r.text  # another tenant's employee
    assert (await ok(await api.client.put(members, headers=a.headers, json={"employee_ids": [a.alice, a.alice]}))
            )["employee_ids"] == [a.alice]
    skills = await ok(await api.client.put(f"{base}/agents/{a.alice}/skills", headers=a.headers,
                                           json={"skills": {"english": 7, "sales": 3}}))
    assert skills == {"employee_id": a.alice, "skills": {"english": 7, "sales": 3}, "queue_ids": [queue["id"]]}
    r = await api.client.put(f"{base}/agents/{a.alice}/skills", headers=a.headers, json={"skills": {"english": 11}})
    assert r.status_code == 422
    assert (await api.client.get(f"{base}/agents/{b.alice}/skills", headers=a.headers)).status_code == 404
    await ok(await api.client.post(f"{base}/reasons", headers=a.headers, json={"name": "Lunch"}), 201)
    assert (await api.client.post(f"{base}/reasons", headers=a.headers, json={"name": "Lunch"})).status_code == 409
    await runtime.settled()
    assert queue["id"] in runtime.center.queues

    agent = f"{base}/agents/{a.alice}"
    # Bob is a member of no queue; Alice may not act for Bob; Alice logs herself in
    assert (await api.client.post(f"{base}/agents/{a.bob}/login", headers=a.alice_headers, json={})).status_code == 403
    r = await api.client.post(f"{base}/agents/{a.bob}/login", headers=a.headers, json={})
    assert r.status_code == 422 and "member of no queue" in r.text
    await ok(await api.client.patch(f"{a.base}/employees/{a.bob}", headers=a.headers, json={"active": False}))
    r = await api.client.post(f"{base}/agents/{a.bob}/login", headers=a.headers, json={})
    assert r.status_code == 422 and "deactivated" in r.text
    r = await api.client.post(f"{agent}/login", headers=a.alice_headers, json={"queue_ids": [queue["id"] + 1000]})
    assert r.status_code == 422
    assert (await ok(await api.client.get(agent, headers=a.alice_headers)))["status"] == "offline"
    state = await ok(await api.client.post(f"{agent}/login", headers=a.alice_headers, json={}))
    assert state["status"] == "available" and state["queue_ids"] == [queue["id"]]
    mine = await ok(await api.client.get(agent, headers=a.alice_headers))
    assert (mine["full_name"], mine["status"], mine["since"]) == ("Alice", "available", 1_800_000_000.0)
    assert (await api.client.get(f"{base}/agents/{a.bob}", headers=a.alice_headers)).status_code == 403
    assert runtime.center.agents[a.alice].skills == {"english": 7, "sales": 3}
    r = await api.client.post(f"{agent}/pause", headers=a.alice_headers, json={"reason": "Nap"})
    assert r.status_code == 422 and "not-ready reasons" in r.text
    state = await ok(await api.client.post(f"{agent}/pause", headers=a.headers, json={"reason": "Lunch"}))
    assert state["status"] == "not_ready" and state["reason"] == "Lunch"
    # another tenant's admin: 404 for the agent routes too
    assert (await api.client.post(f"{agent}/unpause", headers=b.headers)).status_code == 404
    live = await ok(await api.client.get(f"{base}/live", headers=a.headers))
    assert live["queues"][0]["agents"] == {"not_ready": 1}
    assert [(x["employee_id"], x["full_name"], x["status"]) for x in live["agents"]] == [(a.alice, "Alice", "not_ready")]
    assert (await ok(await api.client.get(f"{cc(b)}/live", headers=b.headers)))["agents"] == []
    assert (await api.client.get(f"{base}/live", headers=a.alice_headers)).status_code == 403
    await ok(await api.client.post(f"{agent}/unpause", headers=a.alice_headers))
    # a skills change reaches the logged-in agent; removing the membership logs them out of the queue
    await ok(await api.client.put(f"{base}/agents/{a.alice}/skills", headers=a.headers, json={"skills": {"x": 2}}))
    await ok(await api.client.put(members, headers=a.headers, json={"employee_ids": []}))
    await runtime.settled()
    assert runtime.center.agents[a.alice].skills == {"x": 2}
    assert runtime.center.agents[a.alice].status.value == "offline"
    assert (await api.client.post(f"{agent}/pause", headers=a.alice_headers, json={"reason": "Lunch"})).status_code == 409

    bus = runtime.bus
    assert isinstance(bus, FakeBus)
    states = [(e.status, e.reason) for e in bus.events if isinstance(e, AgentStateChanged)]
    assert states == [("available", None), ("not_ready", "Lunch"), ("available", None), ("offline", None)]
    assert all(e.tenant_id == a.id for e in bus.events if isinstance(e, (AgentStateChanged, QueueStateChanged)))
    assert any(isinstance(e, QueueStateChanged) and e.not_ready == 1 for e in bus.events)
    await runtime.flush()
    async with api.db.session() as session:
        rows = (await session.execute(select(QueueLogRow.event, QueueLogRow.tenant_id, QueueLogRow.agent_id)
                                      .order_by(QueueLogRow.id))).tuples().all()
    assert [r[0] for r in rows] == [ql.ADDMEMBER, ql.AGENTSTATUS, ql.PAUSE, ql.AGENTSTATUS, ql.UNPAUSE,
                                    ql.AGENTSTATUS, ql.REMOVEMEMBER, ql.AGENTSTATUS]
    assert {r[1] for r in rows} == {a.id} and {r[2] for r in rows} == {a.alice}


async def test_an_agent_logs_in_to_a_queue_made_a_moment_ago(api: Api, make_tenant: Any,
                                                              runtime: CallCenterRuntime) -> None:
    """The center learns of a new queue from the runtime's reload task, after the commit; a login at once
    waits for it (it got 409 "no queue" when it came first: seen on a loaded machine, made sure of here by a
    reload slowed down)."""
    import asyncio

    reload = runtime.apply_change

    async def slow_reload(event: object) -> None:
        await asyncio.sleep(0.2)
        await reload(event)

    runtime.apply_change = slow_reload  # type: ignore[method-assign]
    a = await make_company(api, make_tenant, "cc-fresh.example")
    base = f"{a.base}/callcenter"
    for n in range(3):
        queue = await ok(await api.client.post(f"{base}/queues", headers=a.headers,
                                               json={"name": f"Fresh {n}", "number": f"55{n}"}), 201)
        await ok(await api.client.put(f"{base}/queues/{queue['id']}/members", headers=a.headers,
                                      json={"employee_ids": [a.alice]}))
        state = await ok(await api.client.post(f"{base}/agents/{a.alice}/login", headers=a.headers,
                                               json={"queue_ids": [queue["id"]]}))
        assert state["status"] == "available" and queue["id"] in state["queue_ids"]


async def test_a_login_does_not_wait_for_ever_behind_other_changes(api: Api, make_tenant: Any,
                                                                   runtime: CallCenterRuntime,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The changes a login waits for are every company's: one company editing without end (here a reload
    that never finishes) must not hold another's logins; past SETTLE_WAIT the login goes on."""
    import asyncio

    from zvonok.callcenter import http as cc_http

    a = await make_company(api, make_tenant, "cc-jam.example")
    base = f"{a.base}/callcenter"
    queue = await ok(await api.client.post(f"{base}/queues", headers=a.headers,
                                           json={"name": "Jam", "number": "560"}), 201)
    await ok(await api.client.put(f"{base}/queues/{queue['id']}/members", headers=a.headers,
                                  json={"employee_ids": [a.alice]}))
    await runtime.settled()
    stuck = asyncio.Event()

    async def never(event: object) -> None:
        await stuck.wait()

    monkeypatch.setattr(runtime, "apply_change", never)
    monkeypatch.setattr(cc_http, "SETTLE_WAIT", 0.2)
    await ok(await api.client.patch(f"{base}/queues/{queue['id']}", headers=a.headers, json={"wrap_up": 5}))
    try:
        state = await asyncio.wait_for(api.client.post(f"{base}/agents/{a.alice}/login", headers=a.headers,
                                                       json={"queue_ids": [queue["id"]]}), 30)
        assert state.status_code == 200 and (await ok(state))["status"] == "available"
    finally:
        stuck.set()


async def test_reasons_have_a_phone_code_unique_in_the_company(api: Api, make_tenant: Any) -> None:
    """A not-ready reason's optional ``code`` (1-4 ASCII digits, what an agent dials after ``*47``): created,
    changed, cleared; a malformed one 422 with a message, another reason's in the company 409 (as its name), the
    same code in another company allowed; another company's admin gets 404, an employee 403."""
    a = await make_company(api, make_tenant, "ra.example")
    b = await make_company(api, make_tenant, "rb.example")
    reasons, reasons_b = f"{cc(a)}/reasons", f"{cc(b)}/reasons"
    lunch = await ok(await api.client.post(reasons, headers=a.headers, json={"name": "Lunch", "code": "1"}), 201)
    assert (lunch["name"], lunch["code"]) == ("Lunch", "1")
    training = await ok(await api.client.post(reasons, headers=a.headers, json={"name": "Training"}), 201)
    assert training["code"] is None
    await ok(await api.client.post(reasons, headers=a.headers, json={"name": "Break", "code": None}), 201)
    for bad in ("", "12345", "1a", "*1", " 1", "\u0661", "1\n"):
        r = await api.client.post(reasons, headers=a.headers, json={"name": "Nap", "code": bad})
        assert r.status_code == 422 and "1 to 4 digits" in r.text, bad
        r = await api.client.patch(f"{reasons}/{training['id']}", headers=a.headers, json={"code": bad})
        assert r.status_code == 422 and "1 to 4 digits" in r.text, bad
    r = await api.client.post(reasons, headers=a.headers, json={"name": "Nap", "code": 2})
    assert r.status_code == 422 and "string" in r.text  # a number loses its leading zeros: a string it is
    r = await api.client.post(reasons, headers=a.headers, json={"name": "Nap", "code": "1"})
    assert r.status_code == 409 and "code" in r.json()["detail"] and "Lunch" in r.json()["detail"]
    other = await ok(await api.client.post(reasons_b, headers=b.headers, json={"name": "Lunch", "code": "1"}), 201)

    changed = await ok(await api.client.patch(f"{reasons}/{training['id']}", headers=a.headers, json={"code": "0042"}))
    assert (changed["id"], changed["name"], changed["code"]) == (training["id"], "Training", "0042")
    r = await api.client.patch(f"{reasons}/{training['id']}", headers=a.headers, json={"code": "1"})
    assert r.status_code == 409 and "code" in r.text
    r = await api.client.patch(f"{reasons}/{training['id']}", headers=a.headers, json={"name": "Lunch"})
    assert r.status_code == 409 and "name" in r.text
    r = await api.client.patch(f"{reasons}/{training['id']}", headers=a.headers, json={"name": None})
    assert r.status_code == 422
    r = await api.client.patch(f"{reasons}/{training['id']}", headers=a.headers, json={"color": "red"})
    assert r.status_code == 422
    same = await ok(await api.client.patch(f"{reasons}/{lunch['id']}", headers=a.headers, json={"code": "1"}))
    assert same["code"] == "1"  # its own code again
    renamed = await ok(await api.client.patch(f"{reasons}/{lunch['id']}", headers=a.headers, json={"name": "Dinner"}))
    assert (renamed["name"], renamed["code"]) == ("Dinner", "1")  # the code kept
    listed = await ok(await api.client.get(reasons, headers=a.alice_headers))  # the agents read them
    assert [(x["name"], x["code"]) for x in listed] == [("Break", None), ("Dinner", "1"), ("Training", "0042")]
    cleared = await ok(await api.client.patch(f"{reasons}/{training['id']}", headers=a.headers, json={"code": None}))
    assert cleared["code"] is None
    # another company's reason is not found; an employee changes none
    for who in (b.headers, a.alice_headers):
        r = await api.client.patch(f"{reasons}/{lunch['id']}", headers=who, json={"code": "7"})
        assert r.status_code == (404 if who is b.headers else 403), r.text
    r = await api.client.patch(f"{reasons_b}/{lunch['id']}", headers=b.headers, json={"code": "7"})
    assert r.status_code == 404  # A's reason under B's own address
    assert (await api.client.patch(f"{reasons}/{lunch['id'] + 1000}", headers=a.headers, json={})).status_code == 404
    assert (await api.client.delete(f"{reasons}/{lunch['id']}", headers=b.headers)).status_code == 404
    assert [(x["name"], x["code"]) for x in await ok(await api.client.get(reasons_b, headers=b.headers))] == [
        ("Lunch", "1")]
    assert (await ok(await api.client.get(reasons, headers=a.headers)))[1]["code"] == "1"  # A's untouched
    async with api.db.session() as session:
        found = await service.reason_by_code(session, b.id, "1")
        assert found is not None and found.id == other["id"]
        assert await service.reason_by_code(session, a.id, "42") is None  # "0042" is another code


async def test_an_agent_pauses_from_the_phone_with_its_companys_reason_of_the_code(
        api: Api, make_tenant: Any, runtime: CallCenterRuntime) -> None:
    """``*47<code>`` through the real desk and database: the company's reason of that code (another company's
    same code names its own), unknown codes refused, a change of reason while paused."""
    from zvonok.callcenter.desk import CenterDesk
    from zvonok.telephony.agent_codes import AgentCode, AgentOutcome, AgentRequest

    a = await make_company(api, make_tenant, "pa.example")
    b = await make_company(api, make_tenant, "pb.example")
    queue = await new_queue(api, a)
    await ok(await api.client.put(f"{cc(a)}/queues/{queue['id']}/members", headers=a.headers,
                                  json={"employee_ids": [a.alice]}))
    await ok(await api.client.post(f"{cc(a)}/reasons", headers=a.headers, json={"name": "Lunch", "code": "1"}), 201)
    await ok(await api.client.post(f"{cc(a)}/reasons", headers=a.headers, json={"name": "Training", "code": "2"}), 201)
    await ok(await api.client.post(f"{cc(b)}/reasons", headers=b.headers, json={"name": "Obed", "code": "3"}), 201)
    await runtime.settled()
    await ok(await api.client.post(f"{cc(a)}/agents/{a.alice}/login", headers=a.alice_headers, json={}))
    desk = CenterDesk(runtime)
    assert await desk.reason_for_code(b.id, "3") == "Obed"

    def pause(code: str) -> AgentRequest:
        return AgentRequest(AgentCode.PAUSE, reason_code=code)

    assert await desk.agent_code(a.id, a.alice, pause("3")) is AgentOutcome.UNKNOWN_REASON  # B's code
    assert runtime.center.agents[a.alice].status.value == "available"
    assert await desk.agent_code(a.id, a.alice, pause("1")) is AgentOutcome.PAUSED
    state = await ok(await api.client.get(f"{cc(a)}/agents/{a.alice}", headers=a.alice_headers))
    assert (state["status"], state["reason"]) == ("not_ready", "Lunch")
    assert await desk.agent_code(a.id, a.alice, pause("2")) is AgentOutcome.PAUSED
    assert runtime.center.agents[a.alice].reason == "Training"
    assert await desk.agent_code(a.id, a.alice, AgentRequest(AgentCode.PAUSE)) is AgentOutcome.RESUMED
    assert await desk.agent_code(a.id, a.bob, pause("1")) is AgentOutcome.NOT_LOGGED_IN


async def test_runtime_offers_calls_and_keeps_the_log_through_write_failures(
        api: Api, make_tenant: Any, runtime: CallCenterRuntime) -> None:
    a = await make_company(api, make_tenant, "a.example")
    queue = await new_queue(api, a, ring_timeout=10, wrap_up=0)
    await ok(await api.client.put(f"{cc(a)}/queues/{queue['id']}/members", headers=a.headers,
                                  json={"employee_ids": [a.alice]}))
    await runtime.settled()
    actions: list[object] = []
    runtime.action_handlers.append(actions.append)
    await ok(await api.client.post(f"{cc(a)}/agents/{a.alice}/login", headers=a.alice_headers, json={}))
    real_write = runtime._write_batch
    failures = 0

    async def flaky(size: int) -> bool:
        nonlocal failures
        if failures < 2:
            failures += 1
            return False
        return await real_write(size)

    runtime._write_batch = flaky  # type: ignore[method-assign]
    assert runtime.feed(lambda c, now: c.join("call-1", queue["id"], now, number="+74950000001"))
    assert actions == [Offer(call_id="call-1", queue_id=queue["id"], agent_id=a.alice, number="+74950000001")]
    # the ring timeout is armed on the loop (one timer)
    assert runtime._timer is not None
    clock = runtime.clock
    assert isinstance(clock, Clock)
    clock.now += 4
    runtime.feed(lambda c, now: c.offer_answered("call-1", a.alice, now))
    clock.now += 30
    runtime.feed(lambda c, now: c.call_ended("call-1", now, by_agent=False))
    assert runtime.center.agents[a.alice].status.value == "available"
    # the employee is deactivated: logged out of every queue
    await ok(await api.client.patch(f"{a.base}/employees/{a.alice}", headers=a.headers, json={"active": False}))
    await runtime.settled()
    assert runtime.center.agents[a.alice].status.value == "offline" and not runtime.center.agents[a.alice].queues
    await runtime.stop()  # flushes what is left, through the two failures
    assert failures == 2 and not runtime.backlog
    async with api.db.session() as session:
        events = list((await session.execute(select(QueueLogRow.event).where(QueueLogRow.call_id == "call-1")
                                             .order_by(QueueLogRow.id))).scalars())
        data = (await session.execute(select(QueueLogRow.data).where(QueueLogRow.event == ql.COMPLETECALLER))).scalar_one()
        removed = len((await session.execute(select(QueueLogRow.id).where(QueueLogRow.event == ql.REMOVEMEMBER))).all())
    assert events == [ql.ENTERQUEUE, ql.CONNECT, ql.COMPLETECALLER]
    assert removed == 1
    assert data["hold"] == 4.0 and data["talk"] == 30.0


# -- reports -----------------------------------------------------------------------------------------
DAY0 = 1_799_971_200.0  # a UTC midnight: 2027-01-15


def scripted_log(q1: int, q2: int, tenant_id: int) -> list[QueueLogEntry]:
    """Two queues sharing three agents over a few 15-minute buckets: answers, an unanswered offer,
    abandons, a timeout overflow, a full queue, a callback, pauses and wrap-up."""
    c = ContactCenter(rng=random.Random(1), wall_offset=DAY0)
    c.set_queue(QueueConfig(id=q1, tenant_id=tenant_id, strategy=Strategy.LONGEST_IDLE, wrap_up=30, ring_timeout=15,
                            service_level=20, max_wait=600, max_waiting=3), 0)
    c.set_queue(QueueConfig(id=q2, tenant_id=tenant_id, strategy=Strategy.FEWEST_CALLS, wrap_up=10,
                            service_level=30, weight=1), 0)
    log: list[QueueLogEntry] = []

    def step(at: float, fn: Any) -> None:
        fn(c, at)
        for action in c.take_actions():
            if isinstance(action, Offer):
                offers.append(action)
        log.extend(c.take_log())

    offers: list[Offer] = []
    step(0, lambda c, t: c.login(1, [q1, q2], t))
    step(2, lambda c, t: c.login(2, [q1], t))
    step(5, lambda c, t: c.login(3, [q2], t))
    step(100, lambda c, t: c.join("a", q1, t, number="1"))
    step(110, lambda c, t: c.offer_answered("a", offers[-1].agent_id, t))
    step(130, lambda c, t: c.join("b", q1, t, number="2"))
    step(131, lambda c, t: c.join("c", q2, t, number="3"))
    step(140, lambda c, t: c.offer_answered("c", offers[-1].agent_id, t))
    step(160, lambda c, t: c.pause(3, "Lunch", t))
    step(200, lambda c, t: c.call_ended("a", t, by_agent=True))
    step(250, lambda c, t: c.handle_timer(t))
    for n in range(6):
        step(300 + n, lambda c, t, n=n: c.join(f"w{n}", q1, t, number=str(10 + n)))
    step(320, lambda c, t: c.caller_left("w0", t))
    step(330, lambda c, t: c.request_callback("w1", t))
    step(600, lambda c, t: c.call_ended("c", t, by_agent=False))
    for t in (615.0, 640.0, 700.0, 900.0, 1000.0, 1200.0):
        step(t, lambda c, t: c.handle_timer(t))
    for o in list(offers):
        if o.call_id in c.waiting and o.agent_id in c.waiting[o.call_id].offered:
            step(1210, lambda c, t, o=o: c.offer_answered(o.call_id, o.agent_id, t))
            break
    step(1500, lambda c, t: c.unpause(3, t))
    step(1800, lambda c, t: c.logout(2, None, t))
    step(2400, lambda c, t: c.handle_timer(t))
    step(3000, lambda c, t: c.logout(1, None, t))
    step(3100, lambda c, t: c.logout(3, None, t))
    return log


async def test_reports_equal_kpi_on_a_scripted_log(db: Database) -> None:
    from zvonok.org.models import Tenant

    async with db.session() as session:
        tenant = Tenant(name="R", sip_domain="r.example", timezone="UTC", currency="RUB", locale="ru")
        session.add(tenant)
        await session.flush()
        q1 = CallQueue(tenant_id=tenant.id, name="One", number="500", service_level=20, requirements=[],
                       relaxations=[])
        q2 = CallQueue(tenant_id=tenant.id, name="Two", number="501", service_level=30, requirements=[],
                       relaxations=[])
        session.add_all([q1, q2])
        await session.commit()
        tenant_id, ids = tenant.id, (q1.id, q2.id)
    log = scripted_log(*ids, tenant_id)
    events = {e.event for e in log}
    assert {ql.CONNECT, ql.ABANDON, ql.FULL, ql.CALLBACK, ql.EXITWITHTIMEOUT, ql.COMPLETEAGENT, ql.COMPLETECALLER,
            ql.RINGNOANSWER, ql.PAUSE} <= events, events
    async with db.session() as session:
        session.add_all(QueueLogRow(at=e.at, tenant_id=tenant_id, queue_id=e.queue_id, call_id=e.call_id,
                                    agent_id=e.agent_id, event=e.event, data=dict(e.data)) for e in log)
        await session.commit()

    def within(start: float, size: float) -> list[QueueLogEntry]:
        return [e for e in log if start <= e.at < start + size]

    end = DAY0 + 86400
    for group, size, offset in (("15min", 900, 0), ("hour", 3600, 0), ("day", 86400, 0), ("day", 86400, 10800),
                                ("15min", 900, 19800)):  # UTC, Moscow (+3), India (+5:30)
        async with db.session() as session:
            q_rows = await queue_report(session, tenant_id, start=DAY0, end=end, group=group, utc_offset=offset)
            a_rows = await agent_report(session, tenant_id, start=DAY0, end=end, group=group, utc_offset=offset)
        seen = {(r.start, r.queue_id) for r in q_rows}
        expected = {((e.at + offset) // size * size - offset, e.queue_id) for e in log if e.queue_id is not None}
        assert seen == expected, group
        for row in q_rows:
            sl = 20.0 if row.queue_id == ids[0] else 30.0
            want = queue_kpis(within(row.start, size), row.queue_id, service_level=sl)
            got = {k: v for k, v in row.model_dump().items() if k not in ("start", "queue_id")}
            assert got == {k: getattr(want, k) for k in got}, (group, row)
        for arow in a_rows:
            want_a = agent_kpis(within(arow.start, size), arow.agent_id)
            got_a = {k: v for k, v in arow.model_dump().items() if k not in ("start", "agent_id")}
            assert got_a == {k: getattr(want_a, k) for k in got_a}, (group, arow)
        assert {r.agent_id for r in a_rows} == {1, 2, 3}
        if group == "day":
            assert [r.start for r in q_rows] == [DAY0 - offset] * 2
            day = q_rows[0]
            assert day.answered >= 1 and day.abandoned >= 1 and day.overflowed >= 1 and day.refused >= 1


async def test_report_routes_csv_and_checks(api: Api, make_tenant: Any) -> None:
    a = await make_company(api, make_tenant, "a.example")
    b = await make_company(api, make_tenant, "b.example")
    queue = await new_queue(api, a)
    async with api.db.session() as session:
        session.add_all([
            QueueLogRow(at=DAY0 + 10, tenant_id=a.id, queue_id=queue["id"], call_id="x", event=ql.ENTERQUEUE, data={}),
            QueueLogRow(at=DAY0 + 15, tenant_id=a.id, queue_id=queue["id"], call_id="x", agent_id=a.alice,
                        event=ql.CONNECT, data={"hold": 5.0, "ring": 2.0}),
            QueueLogRow(at=DAY0 + 4000, tenant_id=a.id, queue_id=queue["id"], call_id="y", event=ql.ENTERQUEUE,
                        data={}),
            QueueLogRow(at=DAY0 + 4000, tenant_id=b.id, queue_id=None, agent_id=b.alice, event=ql.AGENTSTATUS,
                        data={"from": "available", "to": "offline", "seconds": 8.0}),
        ])
        await session.commit()
    url = f"{cc(a)}/reports/queues"
    params: dict[str, Any] = {"from": DAY0, "to": DAY0 + 86400, "group": "hour"}
    rows = await ok(await api.client.get(url, headers=a.headers, params=params))
    assert [(r["start"], r["offered"], r["answered"], r["service_level"]) for r in rows] == [
        (DAY0, 1, 1, 1.0), (DAY0 + 3600, 1, 0, None)]
    # days begin at the tenant's midnight (Europe/Moscow: 21:00 UTC)
    rows = await ok(await api.client.get(url, headers=a.headers, params={**params, "group": "day"}))
    assert [(r["start"], r["offered"]) for r in rows] == [(DAY0 - 3 * 3600, 2)]
    r = await api.client.get(url, headers=a.headers, params={**params, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(r.text)))
    assert table[0][:3] == ["start", "queue_id", "offered"] and len(table) == 3 and table[2][9] == ""
    assert (await api.client.get(url, headers=a.headers, params={**params, "group": "week"})).status_code == 422
    assert (await api.client.get(url, headers=a.headers, params={**params, "to": DAY0})).status_code == 422
    assert (await api.client.get(url, headers=a.alice_headers, params=params)).status_code == 403
    assert (await api.client.get(url, headers=b.headers, params=params)).status_code == 404
    # tenant B sees its own agent's row only, and none of A's queue
    agents = await ok(await api.client.get(f"{cc(b)}/reports/agents", headers=b.headers, params=params))
    assert [(x["agent_id"], x["available_time"]) for x in agents] == [(b.alice, 8.0)]
    r = await api.client.get(f"{cc(b)}/reports/queues", headers=b.headers, params={**params, "queue_id": queue["id"]})
    assert r.status_code == 404
    assert await ok(await api.client.get(f"{cc(b)}/reports/queues", headers=b.headers, params=params)) == []




def test_websocket_gives_agent_state_to_the_agent_and_admins_only() -> None:
    from zvonok.api.auth import Principal
    from zvonok.api.ws import STREAMED_TYPES, CallVisibility
    from zvonok.org.models import Role

    mine = AgentStateChanged(tenant_id=1, employee_id=5, status="available", queues=(3,))
    other = AgentStateChanged(tenant_id=1, employee_id=6, status="available")
    queue = QueueStateChanged(tenant_id=1, queue_id=3, waiting=2, callbacks=0, longest_wait=4.0, available=1)
    assert AgentStateChanged in STREAMED_TYPES and QueueStateChanged in STREAMED_TYPES
    employee = CallVisibility(Principal(role=Role.EMPLOYEE, tenant_id=1, employee_id=5))
    assert employee.admit(mine) == [mine] and employee.admit(other) == [] and employee.admit(queue) == []
    admin = CallVisibility(Principal(role=Role.TENANT_ADMIN, tenant_id=1))
    assert admin.admit(other) == [other] and admin.admit(queue) == [queue]
    from zvonok.bus import deserialize, serialize

    assert deserialize(serialize(mine)) == mine and deserialize(serialize(queue)) == queue


async def test_runtime_timer_fires_on_the_loop_and_queue_changes_reach_the_center(db: Database) -> None:
    import asyncio

    from zvonok.callcenter.center import CancelOffer
    from zvonok.callcenter.events import QueueChanged
    from zvonok.org.models import Tenant

    async with db.session() as session:
        tenant = Tenant(name="T", sip_domain="t.example", timezone="UTC", currency="RUB", locale="ru")
        session.add(tenant)
        await session.flush()
        queue = CallQueue(tenant_id=tenant.id, name="Q", number="500", requirements=[], relaxations=[], wrap_up=0)
        session.add(queue)
        await session.commit()
        tenant_id, queue_id = tenant.id, queue.id
    runtime = CallCenterRuntime(db, FakeBus(), flush_delay=0.0)  # the real monotonic clock
    await runtime.start()
    try:
        assert runtime.center.queues[queue_id].tenant_id == tenant_id
        # a short ring time set on the core directly (the API asks at least 5 s)
        config = runtime.center.queues[queue_id]
        runtime.center.set_queue(QueueConfig(id=queue_id, tenant_id=tenant_id, ring_timeout=0.05, retry=60,
                                             wrap_up=0), runtime.clock())
        actions: list[object] = []
        runtime.action_handlers.append(actions.append)
        runtime.login(tenant_id, 42, [queue_id], {})
        runtime.feed(lambda c, now: c.join("call-t", queue_id, now, number="1"))
        assert isinstance(actions[0], Offer)
        async with asyncio.timeout(10):
            while not any(isinstance(x, CancelOffer) for x in actions):
                await asyncio.sleep(0.02)
        assert runtime.center.agents[42].missed == 1 and "call-t" in runtime.center.waiting
        # the queue is deleted elsewhere: its caller leaves for the overflow, its agent goes offline
        async with db.session() as session:
            await session.delete(await session.get(CallQueue, queue_id))
            await session.commit()
        await runtime.apply_change(QueueChanged(tenant_id=tenant_id, queue_id=queue_id, action="deleted"))
        assert queue_id not in runtime.center.queues and not runtime.center.waiting
        assert runtime.center.agents[42].status.value == "offline"
        assert config.name == "Q"
    finally:
        await runtime.stop()
    async with db.session() as session:
        events = list((await session.execute(select(QueueLogRow.event).where(QueueLogRow.call_id == "call-t")
                                             .order_by(QueueLogRow.id))).scalars())
    assert events == [ql.ENTERQUEUE, ql.RINGNOANSWER, ql.EXITEMPTY]


async def test_concurrent_flushes_write_each_entry_once(db: Database) -> None:
    import asyncio

    from zvonok.org.models import Tenant

    async with db.session() as session:
        tenant = Tenant(name="T", sip_domain="t.example", timezone="UTC", currency="RUB", locale="ru")
        session.add(tenant)
        await session.commit()
        tenant_id = tenant.id
    runtime = CallCenterRuntime(db, batch_size=7)  # not started: no background writer, only the flushes
    runtime.backlog = [{"at": DAY0 + n, "tenant_id": tenant_id, "queue_id": None, "call_id": None, "agent_id": 1,
                        "event": ql.PAUSE, "data": {"reason": str(n)}} for n in range(50)]
    await asyncio.gather(runtime.flush(), runtime.flush(), runtime.flush())
    async with db.session() as session:
        reasons = list((await session.execute(select(QueueLogRow.data).order_by(QueueLogRow.at))).scalars())
    assert [r["reason"] for r in reasons] == [str(n) for n in range(50)]


async def _tenant_and_queue(db: Database) -> tuple[int, int]:
    """A company with one queue (500): their ids."""
    from zvonok.org.models import Tenant

    async with db.session() as session:
        tenant = Tenant(name="T", sip_domain="t.example", timezone="UTC", currency="RUB", locale="ru")
        session.add(tenant)
        await session.flush()
        queue = CallQueue(tenant_id=tenant.id, name="Q", number="500", requirements=[], relaxations=[])
        session.add(queue)
        await session.commit()
        return tenant.id, queue.id


async def test_stopping_while_the_writer_commits_waits_for_it_instead_of_cutting_it_short(db: Database) -> None:
    """stop() while the background writer commits a batch: before, the writer was cancelled there. The commit
    went through but the batch stayed in the backlog, so stop() wrote it again (a caller entered the queue
    twice in the log, on both databases); and on SQLite a transaction cut short kept the write lock, so that
    stop()'s own writes waited SQLite's 5 s busy timeout per try (a unit test took 25 s on a loaded machine)."""
    import asyncio

    from sqlalchemy import event

    _tenant_id, queue_id = await _tenant_and_queue(db)
    committing = asyncio.Event()

    def before(_conn: Any) -> None:
        committing.set()

    event.listen(db.engine.sync_engine, "commit", before)
    runtime = CallCenterRuntime(db, flush_delay=0.0, retry_delay=0.01)
    await runtime.start()
    try:
        for n in range(3):
            committing.clear()
            runtime.feed(lambda c, now, n=n: c.join(f"call-{n}", queue_id, now, number=str(n)))
            await asyncio.wait_for(committing.wait(), 30)
    finally:
        await runtime.stop()  # during the commit of the third caller's entry
        event.remove(db.engine.sync_engine, "commit", before)
    assert runtime.write_failures == 0 and runtime.backlog == []
    async with db.session() as session:
        calls = list((await session.execute(select(QueueLogRow.call_id).where(QueueLogRow.event == ql.ENTERQUEUE)
                                            .order_by(QueueLogRow.id))).scalars())
    assert calls == ["call-0", "call-1", "call-2"]


async def test_deleted_tenant_leaves_the_center_and_its_unwritten_log_is_dropped(db: Database) -> None:
    from zvonok.org.events import TenantDeleted
    from zvonok.org.models import Tenant

    tenant_id, queue_id = await _tenant_and_queue(db)
    runtime = CallCenterRuntime(db, flush_delay=0.0)
    await runtime.start()
    try:
        runtime.feed(lambda c, now: c.join("call-d", queue_id, now, number="1"))
        await runtime.flush()
        async with db.session() as session:
            await session.delete(await session.get(Tenant, tenant_id))
            await session.commit()
        await runtime.apply_change(TenantDeleted(tenant_id=tenant_id, sip_domain="t.example"))
        assert queue_id not in runtime.center.queues and not runtime.center.waiting
        assert runtime.backlog == []  # its EXITEMPTY could never be written (the tenant's rows are gone)
    finally:
        await runtime.stop()
    assert runtime.write_failures == 0


async def test_a_row_refused_for_good_does_not_hold_back_the_others(db: Database) -> None:
    from zvonok.org.models import Tenant

    async with db.session() as session:
        tenant = Tenant(name="T", sip_domain="t.example", timezone="UTC", currency="RUB", locale="ru")
        session.add(tenant)
        await session.commit()
        tenant_id = tenant.id
    runtime = CallCenterRuntime(db)
    runtime.backlog = [{"at": DAY0 + n, "tenant_id": tenant_id if n != 1 else tenant_id + 999, "queue_id": None,
                        "call_id": None, "agent_id": 1, "event": ql.PAUSE, "data": {"reason": str(n)}}
                       for n in range(3)]
    await runtime.flush()
    async with db.session() as session:
        reasons = list((await session.execute(select(QueueLogRow.data).order_by(QueueLogRow.at))).scalars())
    assert [r["reason"] for r in reasons] == ["0", "2"] and runtime.backlog == []


async def test_wallboard_live_state_and_todays_kpis(api: Api, make_tenant: Any, runtime: CallCenterRuntime) -> None:
    a = await make_company(api, make_tenant, "a.example")
    b = await make_company(api, make_tenant, "b.example")
    queue = await new_queue(api, a, ring_timeout=10, wrap_up=0, service_level=20)
    await ok(await api.client.put(f"{cc(a)}/queues/{queue['id']}/members", headers=a.headers,
                                  json={"employee_ids": [a.alice]}))
    await runtime.settled()
    await ok(await api.client.post(f"{cc(a)}/agents/{a.alice}/login", headers=a.alice_headers, json={}))
    clock = runtime.clock
    assert isinstance(clock, Clock)
    qid = queue["id"]
    # call-1: answered after 5 s, 60 s talk; 10 s idle; call-2: abandoned after 30 s; call-3: waiting now, 12 s so far
    runtime.feed(lambda c, now: c.join("call-1", qid, now, number="+74950000001"))
    clock.now += 5
    runtime.feed(lambda c, now: c.offer_answered("call-1", a.alice, now))
    clock.now += 60
    runtime.feed(lambda c, now: c.call_ended("call-1", now, by_agent=True))
    clock.now += 10  # idle
    runtime.feed(lambda c, now: c.join("call-2", qid, now, number="+74950000002"))
    clock.now += 30
    runtime.feed(lambda c, now: c.caller_left("call-2", now))
    runtime.feed(lambda c, now: c.join("call-3", qid, now, number="+74950000003"))
    clock.now += 12
    await runtime.flush()
    url = f"{cc(a)}/wallboard"
    board = await ok(await api.client.get(url, headers=a.headers))
    [q] = board["queues"]
    assert (q["queue_id"], q["waiting"], q["longest_wait"]) == (qid, 1, 12.0)
    assert (q["offered"], q["answered"], q["abandoned"]) == (3, 1, 1)
    assert q["asa"] == 5.0 and q["abandon_rate"] == 1 / 3 and q["service_level"] == 0.5
    [agent] = board["agents"]
    assert agent["employee_id"] == a.alice and agent["calls"] == 1 and agent["talk_time"] == 60.0
    # busy: 5 ringing + 60 talking + 30 ringing + 12 ringing now (not logged yet); available: 10
    assert agent["occupancy"] == pytest.approx(107 / 117) and agent["in_status"] == 12.0
    assert agent["status"] == "ringing" and q["occupancy"] == agent["occupancy"]
    assert board["day_start"] <= board["at"] < board["day_start"] + 86400
    # supervisors only, and of their own company
    assert (await api.client.get(url, headers=a.alice_headers)).status_code == 403
    assert (await api.client.get(f"{cc(b)}/wallboard", headers=b.headers)).json()["queues"] == []
    assert (await api.client.get(url, headers=b.headers)).status_code in (403, 404)
    # a callback request holding a place behind call-3: listed with its place (not counted as waiting)
    runtime.feed(lambda c, now: c.join("call-4", qid, now, number="+74950000004"))
    clock.now += 3
    runtime.feed(lambda c, now: c.request_callback("call-4", now))
    runtime.feed(lambda c, now: c.caller_left("call-4", now))
    board = await ok(await api.client.get(url, headers=a.headers))
    assert board["queues"][0]["waiting"] == 1 and board["queues"][0]["callbacks"] == 1
    assert board["callbacks"] == [{"queue_id": qid, "number": "+74950000004", "position": 2, "waiting": 3.0,
                                   "attempts": 0, "retry_in": 0.0, "ringing": False}]


async def test_callback_requests_listed_and_cancelled_by_supervisors_of_their_queue(
        api: Api, make_tenant: Any, runtime: CallCenterRuntime) -> None:
    a = await make_company(api, make_tenant, "cb-a.example")
    b = await make_company(api, make_tenant, "cb-b.example")
    sales = await new_queue(api, a, wrap_up=0)
    support = await new_queue(api, a, name="Support", number="501")
    other = await new_queue(api, b)
    await runtime.settled()
    body = {"full_name": "Sveta", "email": "sveta@cb-a.example", "web_password": "sveta-password",
            "role": "supervisor"}
    sveta = (await ok(await api.client.post(f"{a.base}/employees", headers=a.headers, json=body), 201))["id"]
    await ok(await api.client.put(f"{cc(a)}/queues/{support['id']}/supervisors", headers=a.headers,
                                  json={"employee_ids": [sveta]}))  # Sveta supervises Support only
    login = await ok(await api.client.post("/api/v1/auth/login",
                                           json={"email": "sveta@cb-a.example", "password": "sveta-password"}))
    sup = {"Authorization": f"Bearer {login['access_token']}"}
    clock = runtime.clock
    assert isinstance(clock, Clock)
    for n, queue in ((1, sales), (2, sales), (3, support), (4, other)):
        runtime.feed(lambda c, now, n=n, q=queue["id"]: c.join(f"call-{n}", q, now, number=f"+7495000000{n}"))
        clock.now += 1
        runtime.feed(lambda c, now, n=n: c.request_callback(f"call-{n}", now))
    clock.now += 10
    await runtime.flush()
    url = f"{cc(a)}/queues/{sales['id']}/callbacks"
    page = await ok(await api.client.get(url, headers=a.headers))
    assert page["total"] == 2
    assert [(x["number"], x["state"], x["position"], x["attempts"]) for x in page["items"]] == [
        ("+74950000001", "waiting", 1, 0), ("+74950000002", "waiting", 2, 0)]
    first, second = page["items"]
    assert first["requested_at"] - first["joined_at"] == 1.0 and first["joined_at"] < second["joined_at"]
    # an employee may not; another company's admin sees nothing of it; a queue supervisor: their queues only
    assert (await api.client.get(url, headers=a.alice_headers)).status_code == 403
    assert (await api.client.get(url, headers=b.headers)).status_code == 404
    assert (await api.client.get(url.replace(f"/tenants/{a.id}/", f"/tenants/{b.id}/"),
                                 headers=b.headers)).status_code == 404
    assert (await api.client.get(url, headers=sup)).status_code == 403
    [mine] = (await ok(await api.client.get(f"{cc(a)}/queues/{support['id']}/callbacks", headers=sup)))["items"]
    r = await api.client.delete(f"{cc(a)}/callbacks/{first['id']}", headers=sup)
    assert r.status_code == 403 and "outside the queues you supervise" in r.text
    [theirs] = (await ok(await api.client.get(f"{cc(b)}/queues/{other['id']}/callbacks", headers=b.headers)))["items"]
    for headers, path in ((a.headers, f"{cc(a)}/callbacks/{theirs['id']}"), (b.headers, f"{cc(b)}/callbacks/{first['id']}"),
                          (a.headers, f"{cc(a)}/callbacks/999999"), (a.alice_headers, f"{cc(a)}/callbacks/{theirs['id']}")):
        r = await api.client.delete(path, headers=headers)
        assert r.status_code in ((403, 404) if headers is a.alice_headers else (404,)), (path, r.text)
    assert (await api.client.delete(f"{cc(a)}/callbacks/{first['id']}", headers=a.alice_headers)).status_code == 403
    assert "call-4" in runtime.center.waiting  # nothing of company B's was touched

    # the supervisor cancels Support's request; the admin cancels the first of Sales: out of the line at once
    r = await api.client.delete(f"{cc(a)}/callbacks/{mine['id']}", headers=sup)
    assert r.status_code == 204, r.text
    r = await api.client.delete(f"{cc(a)}/callbacks/{first['id']}", headers=a.headers)
    assert r.status_code == 204, r.text
    assert "call-1" not in runtime.center.waiting and "call-3" not in runtime.center.waiting
    assert [c.call_id for c in runtime.callbacks(a.id, sales["id"])] == ["call-2"]
    page = await ok(await api.client.get(url, headers=a.headers))
    assert [(x["number"], x["position"]) for x in page["items"]] == [("+74950000002", 1)]
    done = await ok(await api.client.get(url, headers=a.headers, params={"finished": "true"}))
    assert {x["number"]: (x["state"], x["last_result"]) for x in done["items"]} == {
        "+74950000001": ("cancelled", "cancelled"), "+74950000002": ("waiting", None)}
    r = await api.client.delete(f"{cc(a)}/callbacks/{first['id']}", headers=a.headers)
    assert r.status_code == 409 and "already cancelled" in r.text
    # while its customer is being called it cannot be cancelled
    await ok(await api.client.put(f"{cc(a)}/queues/{sales['id']}/members", headers=a.headers,
                                  json={"employee_ids": [a.alice]}))
    await runtime.settled()
    await ok(await api.client.post(f"{cc(a)}/agents/{a.alice}/login", headers=a.alice_headers, json={}))
    assert runtime.feed(lambda c, now: c.offer_answered("call-2", a.alice, now))
    r = await api.client.delete(f"{cc(a)}/callbacks/{second['id']}", headers=a.headers)
    assert r.status_code == 409 and "being called now" in r.text
    await runtime.flush()
    assert [x["state"] for x in (await ok(await api.client.get(url, headers=a.headers)))["items"]] == ["dialing"]


async def test_the_desk_keeps_agents_extensions_until_one_of_the_company_changes(
        api: Api, make_tenant: Any, runtime: CallCenterRuntime) -> None:
    """Every offer needs the agent's extensions: read once, kept until an extension, employee or the company
    changes (an event, from this process or another); a change the database never announced is not seen."""
    from sqlalchemy import update

    from zvonok.callcenter.desk import CenterDesk
    from zvonok.org.models import Extension

    a = await make_company(api, make_tenant, "desk.example")
    b = await make_company(api, make_tenant, "desk-b.example")
    desk = CenterDesk(runtime)
    assert await desk.agent_extensions(a.id, a.alice) == ["101"]
    assert await desk.agent_extensions(b.id, b.alice) == ["101"]
    async with api.db.session() as session:  # behind the API's back: no event, the desk keeps what it read
        await session.execute(update(Extension).where(Extension.id == a.ext_alice).values(number="109"))
        await session.commit()
    assert await desk.agent_extensions(a.id, a.alice) == ["101"]
    await ok(await api.client.post(f"{a.base}/extensions", headers=a.headers,
                                   json={"number": "104", "display_name": "Alice 2", "employee_id": a.alice}), 201)
    assert await desk.agent_extensions(a.id, a.alice) == ["104", "109"]  # read again after the event
    await ok(await api.client.patch(f"{a.base}/extensions/{a.ext_alice}", headers=a.headers, json={"enabled": False}))
    assert await desk.agent_extensions(a.id, a.alice) == ["104"]
    assert await desk.agent_extensions(b.id, b.alice) == ["101"]  # the other company unchanged


async def test_the_desk_finds_a_companys_queue_by_number_or_name_in_the_centers_copy(
        api: Api, make_tenant: Any, runtime: CallCenterRuntime) -> None:
    """A caller entering a queue: found in the center's queues (kept current by the committed events), the
    number before a name, never another company's; a deleted queue is gone."""
    from zvonok.callcenter.desk import CenterDesk

    a = await make_company(api, make_tenant, "deskq.example")
    b = await make_company(api, make_tenant, "deskq-b.example")
    sales = await new_queue(api, a, name="Sales", number="500", callback_key="1")
    support = await new_queue(api, a, name="500x", number="501")
    other = await new_queue(api, b, name="Sales", number="500")
    await runtime.settled()
    desk = CenterDesk(runtime)
    found = await desk.queue(a.id, "500")
    assert found is not None and (found.id, found.number, found.name, found.callback_key) == (
        sales["id"], "500", "Sales", "1")
    found_b = await desk.queue(b.id, "Sales")  # an older destination names the queue
    assert found_b is not None and found_b.id == other["id"]
    assert (await desk.queue(a.id, "501")).id == support["id"]  # type: ignore[union-attr]
    assert await desk.queue(a.id, "502") is None
    await ok(await api.client.delete(f"{cc(a)}/queues/{sales['id']}", headers=a.headers), 204)
    await runtime.settled()
    assert await desk.queue(a.id, "500") is None
    assert (await desk.queue(b.id, "500")).id == other["id"]  # type: ignore[union-attr]


async def test_the_wallboard_every_second_on_the_websocket_to_supervisors_of_their_queues_only(
        api: Api, make_tenant: Any, runtime: CallCenterRuntime) -> None:
    import asyncio

    from test_ws import WsClient, mount, secret

    from zvonok.bus import LocalBus

    a = await make_company(api, make_tenant, "wb-a.example")
    b = await make_company(api, make_tenant, "wb-b.example")
    sales = await new_queue(api, a, wrap_up=0)
    support = await new_queue(api, a, name="Support", number="501")
    await new_queue(api, b)
    await ok(await api.client.put(f"{cc(a)}/queues/{sales['id']}/members", headers=a.headers,
                                  json={"employee_ids": [a.alice]}))
    body = {"full_name": "Sveta", "email": "sveta@wb-a.example", "web_password": "sveta-password",
            "role": "supervisor"}
    sveta = (await ok(await api.client.post(f"{a.base}/employees", headers=a.headers, json=body), 201))["id"]
    await ok(await api.client.put(f"{cc(a)}/queues/{support['id']}/supervisors", headers=a.headers,
                                  json={"employee_ids": [sveta]}))  # Sveta supervises Support only
    login = await ok(await api.client.post("/api/v1/auth/login",
                                           json={"email": "sveta@wb-a.example", "password": "sveta-password"}))
    await runtime.settled()
    await ok(await api.client.post(f"{cc(a)}/agents/{a.alice}/login", headers=a.alice_headers, json={}))
    runtime.feed(lambda c, now: c.join("call-1", sales["id"], now, number="+74950000001"))
    clock = runtime.clock
    assert isinstance(clock, Clock)
    clock.now += 7
    await runtime.flush()
    bus = LocalBus(close_timeout=0.1)
    app = mount(api, bus, wallboard_interval=0.05)
    path = f"/api/v1/tenants/{a.id}/events"
    sockets = {who: WsClient(app, path, query_token=token, query="wallboard=1") for who, token in (
        ("admin", secret(a.headers)), ("admin2", secret(a.headers)), ("sveta", login["access_token"]),
        ("alice", secret(a.alice_headers)))}
    other = WsClient(app, f"/api/v1/tenants/{b.id}/events", query_token=secret(b.headers), query="wallboard=1")
    try:
        for ws in (*sockets.values(), other):
            assert await ws.connect() == "websocket.accept"

        async def boards(ws: WsClient, n: int) -> list[dict[str, Any]]:
            got = []
            while len(got) < n:
                event = await ws.event()
                if event["type"] == "Wallboard":
                    got.append(event)
            return got

        # the admin's board is the REST wallboard's, and comes again each interval
        rest = await ok(await api.client.get(f"{cc(a)}/wallboard", headers=a.headers))
        first, second = await boards(sockets["admin"], 2)
        assert first["queues"] == second["queues"] == rest["queues"]
        assert [(q["name"], q["waiting"], q["longest_wait"]) for q in first["queues"]] == [
            ("Sales", 1, 7.0), ("Support", 0, 0.0)]
        assert [(x["employee_id"], x["status"]) for x in first["agents"]] == [(a.alice, "ringing")]
        clock.now += 5  # the figures move with the live state
        runtime.feed(lambda c, now: c.caller_left("call-1", now))
        for _ in range(200):
            [board] = await boards(sockets["admin2"], 1)
            if board["queues"][0]["abandoned"] == 1:
                break
        assert (board["queues"][0]["waiting"], board["queues"][0]["offered"]) == (0, 1)
        # a queue supervisor: Support and its agents only; another company: its own queue only
        [seen] = await boards(sockets["sveta"], 1)
        assert [q["name"] for q in seen["queues"]] == ["Support"] and seen["agents"] == []
        [theirs] = await boards(other, 1)
        assert [(q["queue_id"] != sales["id"], q["offered"]) for q in theirs["queues"]] == [(True, 0)]
        # an employee asking gets her own agent events, never the board
        bus.publish(AgentStateChanged(tenant_id=a.id, employee_id=a.alice, status="available", queues=(sales["id"],)))
        assert (await sockets["alice"].event())["type"] == "AgentStateChanged"
        await asyncio.sleep(0.3)
        frames = []
        while not sockets["alice"].from_app.empty():
            frames.append(json.loads(sockets["alice"].from_app.get_nowait()["text"]))
        assert frames == []
        # two admin sockets every 0.05 s for a while: the board is computed about once per 0.9 s, not per socket
        feed = app.state.wallboard_feed
        assert feed.computed < 20
    finally:
        for ws in (*sockets.values(), other):
            await ws.disconnect()
        await bus.close()


async def test_the_wallboard_feed_shares_one_computation_per_tenant_and_scope(
        api: Api, make_tenant: Any, runtime: CallCenterRuntime, db: Database) -> None:
    import asyncio

    from zvonok.callcenter.wallboard import WallboardFeed

    a = await make_company(api, make_tenant, "wf-a.example")
    queue = await new_queue(api, a, wrap_up=0)
    await runtime.settled()
    clock = Clock()
    feed = WallboardFeed(db, runtime, max_age=1.0, forget_after=30.0, clock=clock)
    boards = await asyncio.gather(*(feed.get(a.id) for _ in range(5)))
    assert feed.computed == 1 and all(b is boards[0] for b in boards)
    assert [q.queue_id for q in boards[0].queues] == [queue["id"]]
    assert [q.queue_id for q in (await feed.get(a.id, frozenset())).queues] == []  # a scope of its own
    assert feed.computed == 2
    clock.now += 1.5  # older than max_age: computed again
    await feed.get(a.id)
    assert feed.computed == 3
    clock.now += 31  # nobody asked for a while: forgotten
    await feed.get(a.id)
    assert set(feed._boards) == {(a.id, None)} and feed.computed == 4


async def test_a_queue_rings_back_or_plays_music_as_its_admin_says(
        api: Api, make_tenant: Any, runtime: CallCenterRuntime) -> None:
    from zvonok.callcenter.desk import CenterDesk

    a = await make_company(api, make_tenant, "hs-a.example")
    queue = await new_queue(api, a)
    assert queue["hold_sound"] == "music"  # the default
    url = f"{cc(a)}/queues/{queue['id']}"
    r = await api.client.patch(url, headers=a.headers, json={"hold_sound": "silence"})
    assert r.status_code == 422 and "hold_sound" in r.text
    r = await api.client.post(f"{cc(a)}/queues", headers=a.headers, json={"name": "Q2", "number": "502",
                                                                          "hold_sound": None})
    assert r.status_code == 422
    changed = await ok(await api.client.patch(url, headers=a.headers, json={"hold_sound": "ringback"}))
    assert changed["hold_sound"] == "ringback"
    await runtime.settled()
    desk = CenterDesk(runtime)  # what the call engine is told: ring back
    ref = await desk.queue(a.id, "500")
    assert ref is not None and ref.ringback
    await ok(await api.client.patch(url, headers=a.headers, json={"hold_sound": "music"}))
    await runtime.settled()
    ref = await desk.queue(a.id, "500")
    assert ref is not None and not ref.ringback
    b = await make_company(api, make_tenant, "hs-b.example")  # another company can neither see nor change it
    assert (await api.client.patch(url, headers=b.headers, json={"hold_sound": "ringback"})).status_code == 404
