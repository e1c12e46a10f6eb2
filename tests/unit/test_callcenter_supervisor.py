"""The supervisor role on the call center's routes, one by one: a supervisor sees the queues, live state,
the wallboard and the reports of their own company, changes every agent's status, and changes no
configuration (403, nothing changed); an employee gets 403 outside their own agent state; another
company's supervisor gets 404 everywhere. Also: the phone's monitoring policy and the websocket's view."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from test_callcenter_api import api, cc, new_queue, runtime  # noqa: F401  (fixtures)
from test_pstn_support import Company, make_company, ok

from conftest import Api
from zvonok.callcenter import http as callcenter_http
from zvonok.callcenter.runtime import CallCenterRuntime
from zvonok.monitoring.service import monitor_policy

# What a supervisor may do with each call-center route (every route must be here).
CONFIG = {"create_queue", "update_queue", "delete_queue", "put_members", "put_skills", "create_reason",
          "update_reason", "delete_reason", "put_queue_supervisors"}  # a supervisor changes none of it
READ = {"list_queues", "get_queue", "get_members", "get_skills", "list_reasons", "live", "wallboard_state",
        "queue_report", "agent_report", "agent_state", "get_queue_supervisors", "list_callbacks"}
ACT = {"login", "logout", "pause", "unpause"}  # on any agent of the company
CANCEL = {"cancel_callback"}  # a callback request of their queues: test_callcenter_api.py's callback tests


async def _supervisor(api: Api, company: Company, domain: str) -> tuple[int, dict[str, str]]:  # noqa: F811
    body = {"full_name": "Sveta", "email": f"sveta@{domain}", "web_password": "sveta-password",
            "role": "supervisor"}
    sveta = int((await ok(await api.client.post(f"{company.base}/employees", headers=company.headers,
                                                json=body), 201))["id"])
    login = await ok(await api.client.post("/api/v1/auth/login",
                                           json={"email": f"sveta@{domain}", "password": "sveta-password"}))
    return sveta, {"Authorization": f"Bearer {login['access_token']}"}


async def test_each_call_center_route_for_a_supervisor(
    api: Api, make_tenant: Any, runtime: CallCenterRuntime  # noqa: F811
) -> None:
    a = await make_company(api, make_tenant, "sup-a.example")
    b = await make_company(api, make_tenant, "sup-b.example")
    sveta, sup = await _supervisor(api, a, "sup-a.example")
    _, other_sup = await _supervisor(api, b, "sup-b.example")
    me = await ok(await api.client.get("/api/v1/me", headers=sup))
    assert (me["role"], me["tenant_id"], me["employee_id"]) == ("supervisor", a.id, sveta)
    queue = await new_queue(api, a)
    base = cc(a)
    await ok(await api.client.put(f"{base}/queues/{queue['id']}/members", headers=a.headers,
                                  json={"employee_ids": [a.alice]}))
    reason = await ok(await api.client.post(f"{base}/reasons", headers=a.headers, json={"name": "Lunch"}), 201)
    await runtime.settled()

    names = {str(r.name) for r in callcenter_http.router.routes if isinstance(r, APIRoute)}
    every = CONFIG | READ | ACT | CANCEL
    assert names == every, f"decide what a supervisor may do: {names ^ every}"

    q, agent = f"{base}/queues/{queue['id']}", f"{base}/agents/{a.alice}"
    span = {"from": 1_700_000_000, "to": 1_700_086_400}
    config = [("POST", f"{base}/queues", {"name": "Support", "number": "501"}),
              ("PATCH", q, {"name": "Renamed"}), ("DELETE", q, None),
              ("PUT", f"{q}/members", {"employee_ids": []}), ("PUT", f"{q}/supervisors", {"employee_ids": [sveta]}),
              ("PUT", f"{agent}/skills", {"skills": {"english": 9}}),
              ("POST", f"{base}/reasons", {"name": "Nap"}), ("PATCH", f"{base}/reasons/{reason['id']}", {"code": "1"}),
              ("DELETE", f"{base}/reasons/{reason['id']}", None)]
    reads = [f"{base}/queues", q, f"{q}/members", f"{q}/supervisors", f"{agent}/skills", f"{base}/reasons", f"{base}/live",
             f"{base}/wallboard", f"{base}/reports/queues", f"{base}/reports/agents", agent, f"{q}/callbacks"]
    assert len(config) == len(CONFIG) and len(reads) == len(READ)

    for method, url, body in config:
        r = await api.client.request(method, url, headers=sup, json=body)
        assert r.status_code == 403, f"{method} {url}: {r.status_code} {r.text}"
        r = await api.client.request(method, url, headers=other_sup, json=body)
        assert r.status_code == 404, f"another company's supervisor: {method} {url}: {r.status_code}"
    # nothing changed
    assert (await ok(await api.client.get(q, headers=a.headers)))["name"] == "Sales"
    assert (await ok(await api.client.get(f"{q}/members", headers=a.headers)))["employee_ids"] == [a.alice]
    assert [(x["name"], x["code"]) for x in await ok(await api.client.get(f"{base}/reasons", headers=a.headers))] == [
        ("Lunch", None)]
    assert (await ok(await api.client.get(f"{base}/queues", headers=a.headers)))["total"] == 1

    for url in reads:
        params = span if "/reports/" in url else None
        r = await api.client.get(url, headers=sup, params=params)
        assert r.status_code == 200, f"GET {url}: {r.status_code} {r.text}"
        r = await api.client.get(url, headers=other_sup, params=params)
        assert r.status_code == 404, f"another company's supervisor: GET {url}: {r.status_code}"
        r = await api.client.get(url, headers=a.alice_headers, params=params)
        own = url in (agent, f"{base}/reasons")  # her own state, the reasons she may pause with
        assert r.status_code == (200 if own else 403), f"employee: GET {url}: {r.status_code} {r.text}"

    # the supervisor runs Alice's day: log in, pause, ready, log out; Alice may not do it to Sveta
    for action, body, status in (("login", {}, "available"), ("pause", {"reason": "Lunch"}, "not_ready"),
                                 ("unpause", None, "available"), ("logout", {}, "offline")):
        r = await api.client.post(f"{agent}/{action}", headers=other_sup, json=body)
        assert r.status_code == 404, f"another company's supervisor: {action}: {r.status_code}"
        state = await ok(await api.client.post(f"{agent}/{action}", headers=sup, json=body))
        assert state["status"] == status if action != "logout" else True, (action, state)
        r = await api.client.post(f"{base}/agents/{sveta}/{action}", headers=a.alice_headers, json=body)
        assert r.status_code == 403, f"employee acting for the supervisor: {action}: {r.status_code}"
    assert runtime.agent(a.id, a.alice) is None or runtime.agent(a.id, a.alice).status.value == "offline"  # type: ignore[union-attr]
    wall = await ok(await api.client.get(f"{base}/wallboard", headers=sup))
    assert [x["queue_id"] for x in wall["queues"]] == [queue["id"]]


async def test_phone_monitoring_policy_and_websocket_view_of_a_supervisor(api: Api, make_tenant: Any) -> None:  # noqa: F811
    from zvonok.api.auth import Principal
    from zvonok.api.ws import CallVisibility
    from zvonok.callcenter.events import AgentStateChanged, QueueStateChanged
    from zvonok.org.models import Role
    from zvonok.telephony.events import CallStarted, Direction, Party

    a = await make_company(api, make_tenant, "sup-c.example")
    sveta, _ = await _supervisor(api, a, "sup-c.example")
    allowed = monitor_policy(api.db)
    assert await allowed(a.id, sveta, "101")  # *33<ext> from Sveta's phone
    assert not await allowed(a.id, a.alice, "101") and not await allowed(a.id + 1000, sveta, "101")
    # demoted to an employee: no more monitoring
    await ok(await api.client.patch(f"{a.base}/employees/{sveta}", headers=a.headers, json={"role": "employee"}))
    assert not await allowed(a.id, sveta, "101")

    view = CallVisibility(Principal(role=Role.SUPERVISOR, tenant_id=a.id, employee_id=sveta))
    someone = AgentStateChanged(tenant_id=a.id, employee_id=a.alice, status="available")
    queue = QueueStateChanged(tenant_id=a.id, queue_id=3, waiting=2, callbacks=0, longest_wait=4.0, available=1)
    assert view.admit(someone) == [someone] and view.admit(queue) == [queue]  # the wallboard's events
    call = CallStarted(tenant_id=a.id, call_id="c1", at=1.0, caller=Party(number="101", employee_id=a.alice),
                       callee_number="102", direction=Direction.INTERNAL)
    assert view.admit(call) == []  # a colleague's call: as for an employee, not every call of the company
