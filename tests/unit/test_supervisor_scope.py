"""Queue-scoped supervisors, route by route: Sveta supervises the queue Sales (its agent: Alice, 101) and
not Support (Bob, 102). She sees, reports on, acts on and monitors Alice only; every attempt on Bob or on
Support answers 403 (404 for another's monitoring session) with a message and leaves a ``refused`` row in
the audit. Vera, a supervisor assigned to no queue, keeps the whole company, as the admin does. The phone's
``*33`` policy follows the same rule; an agent of another queue on a call of Sales is Sveta's while it lasts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from test_callcenter_api import cc, new_queue, runtime  # noqa: F401  (fixtures)
from test_pstn_support import Company, make_company, ok

from conftest import Api
from zvonok.callcenter.runtime import CallCenterRuntime
from zvonok.callcenter.scope import OUTSIDE
from zvonok.config import Settings
from zvonok.monitoring.service import MonitorPolicy
from zvonok.storage.db import Database
from zvonok.telephony.monitor_matrix import MonitorMode, MonitorSession


@dataclass
class FakeLive:
    session: MonitorSession
    stopped: bool = False


@dataclass
class FakeMonitoring:
    """The running sessions as ``app.state.monitoring`` shows them (the REST reads and switches them)."""

    sessions: dict[str, FakeLive] = field(default_factory=dict)

    def session(self, tenant_id: int, session_id: str) -> FakeLive | None:
        live = self.sessions.get(session_id)
        return live if live is not None and live.session.tenant_id == tenant_id else None

    def of_tenant(self, tenant_id: int) -> list[MonitorSession]:
        return [x.session for x in self.sessions.values() if x.session.tenant_id == tenant_id]

    def switch(self, live: FakeLive, mode: MonitorMode, *, via: str, by: str | None = None) -> bool:
        live.session.switch(mode, 2.0)
        return True

    def stop(self, live: FakeLive, *, via: str, by: str) -> bool:
        live.stopped = True
        return True


@dataclass
class Started:
    call_id: str


@dataclass
class FakeOriginator:
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def start_monitor(
        self, tenant_id: int, supervisor: str, extension: str, mode: MonitorMode, *, requested_by: str = ""
    ) -> Started:
        self.asked.append((supervisor, extension))
        return Started(call_id="sup-call")


@dataclass
class Scoped:
    api: Api
    monitoring: FakeMonitoring
    originator: FakeOriginator


@pytest.fixture
async def scoped(db: Database, settings: Settings, runtime: CallCenterRuntime) -> AsyncIterator[Scoped]:  # noqa: F811
    from conftest import _extra_routers
    from zvonok.api.app import create_app
    from zvonok.org import accounts

    async with db.session() as session:
        created = await accounts.platform_create_api_token(session, "tests")
        await session.commit()
    app = create_app(settings, db, routers=_extra_routers())
    app.state.callcenter = runtime
    monitoring, originator = FakeMonitoring(), FakeOriginator()
    app.state.monitoring = monitoring
    app.state.originator = originator
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://zvonok.test"
    ) as client:
        yield Scoped(
            Api(client=client, db=db, settings=settings, admin_token=created.secret), monitoring, originator
        )


async def _supervisor(
    api: Api, company: Company, name: str, domain: str, ext: str
) -> tuple[int, dict[str, str]]:
    body = {
        "full_name": name,
        "email": f"{name.lower()}@{domain}",
        "web_password": f"{name}-password",
        "role": "supervisor",
    }
    sid = int(
        (
            await ok(
                await api.client.post(f"{company.base}/employees", headers=company.headers, json=body), 201
            )
        )["id"]
    )
    await ok(
        await api.client.post(
            f"{company.base}/extensions",
            headers=company.headers,
            json={"number": ext, "display_name": name, "employee_id": sid},
        ),
        201,
    )
    login = await ok(
        await api.client.post(
            "/api/v1/auth/login", json={"email": f"{name.lower()}@{domain}", "password": f"{name}-password"}
        )
    )
    return sid, {"Authorization": f"Bearer {login['access_token']}"}


async def _refused(api: Api, company: Company) -> list[str]:
    rows = await ok(await api.client.get(f"{company.base}/monitor-audit", headers=company.headers))
    return [r["detail"] for r in rows if r["action"] == "refused"]


async def test_a_queue_supervisor_sees_and_acts_on_their_queues_only(
    scoped: Scoped,
    make_tenant: Any,
    runtime: CallCenterRuntime,  # noqa: F811
) -> None:
    api = scoped.api
    a = await make_company(api, make_tenant, "scope-a.example")
    sveta, sup = await _supervisor(api, a, "Sveta", "scope-a.example", "104")
    vera, wide = await _supervisor(api, a, "Vera", "scope-a.example", "105")
    base = cc(a)
    sales = await new_queue(api, a)
    support = await new_queue(api, a, name="Support", number="501")
    s_url, t_url = f"{base}/queues/{sales['id']}", f"{base}/queues/{support['id']}"
    await ok(await api.client.put(f"{s_url}/members", headers=a.headers, json={"employee_ids": [a.alice]}))
    await ok(await api.client.put(f"{t_url}/members", headers=a.headers, json={"employee_ids": [a.bob]}))
    await ok(await api.client.post(f"{base}/reasons", headers=a.headers, json={"name": "Lunch"}), 201)

    # the assignment: the admin's, supervisors only
    r = await api.client.put(f"{s_url}/supervisors", headers=a.headers, json={"employee_ids": [a.alice]})
    assert r.status_code == 422 and "is not a supervisor" in r.text, r.text
    got = await ok(
        await api.client.put(f"{s_url}/supervisors", headers=a.headers, json={"employee_ids": [sveta]})
    )
    assert got == {"queue_id": sales["id"], "employee_ids": [sveta]}
    r = await api.client.put(f"{s_url}/supervisors", headers=sup, json={"employee_ids": []})
    assert r.status_code == 403  # configuration is the admin's
    assert (await ok(await api.client.get(f"{s_url}/supervisors", headers=sup)))["employee_ids"] == [sveta]
    assert (await ok(await api.client.get(f"{t_url}/supervisors", headers=a.headers)))["employee_ids"] == []
    for employee in (a.alice, a.bob):
        await ok(await api.client.post(f"{base}/agents/{employee}/login", headers=a.headers, json={}))
    await runtime.settled()

    # lists: Sales and Alice only for Sveta; everything for Vera and the admin
    for headers, queues, agents in (
        (sup, [sales["id"]], [a.alice]),
        (wide, [sales["id"], support["id"]], sorted([a.alice, a.bob])),
        (a.headers, [sales["id"], support["id"]], sorted([a.alice, a.bob])),
    ):
        page = await ok(await api.client.get(f"{base}/queues", headers=headers))
        assert ([q["id"] for q in page["items"]], page["total"]) == (queues, len(queues))
        live = await ok(await api.client.get(f"{base}/live", headers=headers))
        assert [q["queue_id"] for q in live["queues"]] == queues
        assert sorted(x["employee_id"] for x in live["agents"]) == agents
        wall = await ok(await api.client.get(f"{base}/wallboard", headers=headers))
        assert [q["queue_id"] for q in wall["queues"]] == queues
        assert sorted(x["employee_id"] for x in wall["agents"]) == agents

    span = {"from": 1_799_990_000, "to": 1_800_000_100}
    # what Sveta may do with Sales and Alice
    for url in (s_url, f"{s_url}/members", f"{base}/agents/{a.alice}", f"{base}/agents/{a.alice}/skills"):
        await ok(await api.client.get(url, headers=sup))
    await ok(
        await api.client.get(f"{base}/reports/queues", headers=sup, params={**span, "queue_id": sales["id"]})
    )
    await ok(
        await api.client.get(f"{base}/reports/agents", headers=sup, params={**span, "agent_id": a.alice})
    )
    state = await ok(
        await api.client.post(f"{base}/agents/{a.alice}/pause", headers=sup, json={"reason": "Lunch"})
    )
    assert state["status"] == "not_ready"

    # ... and not with Support or Bob: 403 with a message, audited, nothing changed
    attempts: list[tuple[str, str, Any, Any]] = [
        ("GET", t_url, None, None),
        ("GET", f"{t_url}/members", None, None),
        ("GET", f"{t_url}/supervisors", None, None),
        ("GET", f"{base}/agents/{a.bob}", None, None),
        ("GET", f"{base}/agents/{a.bob}/skills", None, None),
        ("GET", f"{base}/reports/queues", None, {**span, "queue_id": support["id"]}),
        ("GET", f"{base}/reports/agents", None, {**span, "agent_id": a.bob}),
        ("POST", f"{base}/agents/{a.bob}/pause", {"reason": "Lunch"}, None),
        ("POST", f"{base}/agents/{a.bob}/logout", {}, None),
        ("POST", f"{base}/agents/{a.bob}/unpause", None, None),
        ("POST", f"{base}/agents/{a.bob}/login", {}, None),
    ]
    for method, url, body, params in attempts:
        r = await api.client.request(method, url, headers=sup, json=body, params=params)
        assert r.status_code == 403, f"{method} {url}: {r.status_code} {r.text}"
        assert "outside the queues you supervise" in r.json()["detail"], r.text
        r = await api.client.request(method, url, headers=wide, json=body, params=params)
        assert r.status_code != 403, f"Vera, {method} {url}: {r.status_code} {r.text}"
        if method == "POST" and url.endswith("/logout"):
            await ok(await api.client.post(f"{base}/agents/{a.bob}/login", headers=a.headers, json={}))
    agent = runtime.agent(a.id, a.bob)
    assert agent is not None
    refused = await _refused(api, a)
    assert len(refused) == len(attempts) and all(d.endswith(OUTSIDE) for d in refused), refused
    # the reports leave Support and Bob out of Sveta's answers
    rows = await ok(
        await api.client.get(f"{base}/reports/queues", headers=sup, params={**span, "group": "day"})
    )
    assert {x["queue_id"] for x in rows} <= {sales["id"]}
    rows = await ok(
        await api.client.get(f"{base}/reports/agents", headers=sup, params={**span, "group": "day"})
    )
    assert {x["agent_id"] for x in rows} <= {a.alice}

    # Bob on a call of Sales (a queue he is no member of): Sveta's agent while it lasts
    agent.call_queue = sales["id"]
    await ok(await api.client.get(f"{base}/agents/{a.bob}", headers=sup))
    policy = MonitorPolicy(api.db, runtime)
    assert await policy(a.id, sveta, "102")
    agent.call_queue = None
    assert not await policy(a.id, sveta, "102") and await policy(a.id, sveta, "101")
    assert await policy(a.id, vera, "102") and await policy(a.id, vera, "101")
    assert not await policy(a.id, sveta, "103")  # an extension of nobody's: no agent of Sales


async def test_a_queue_supervisor_monitors_their_agents_only(scoped: Scoped, make_tenant: Any) -> None:
    api = scoped.api
    a = await make_company(api, make_tenant, "scope-m.example")
    sveta, sup = await _supervisor(api, a, "Sveta", "scope-m.example", "104")
    _, wide = await _supervisor(api, a, "Vera", "scope-m.example", "105")
    base = cc(a)
    sales = await new_queue(api, a)
    await ok(
        await api.client.put(
            f"{base}/queues/{sales['id']}/members", headers=a.headers, json={"employee_ids": [a.alice]}
        )
    )
    await ok(
        await api.client.put(
            f"{base}/queues/{sales['id']}/supervisors", headers=a.headers, json={"employee_ids": [sveta]}
        )
    )
    mon = f"{a.base}/monitor-sessions"
    for sid, agent in (("s-alice", "101"), ("s-bob", "102")):
        scoped.monitoring.sessions[sid] = FakeLive(
            MonitorSession(
                id=sid,
                tenant_id=a.id,
                call_id=f"c-{agent}",
                supervisor="105",
                agent=agent,
                mode=MonitorMode.LISTEN,
                started_at=1.0,
            )
        )

    # start: Alice yes (her phone rings Sveta's 104), Bob no
    started = await ok(
        await api.client.post(mon, headers=sup, json={"extension": "101", "mode": "listen"}), 202
    )
    assert (started["supervisor"], started["agent"]) == ("104", "101")
    r = await api.client.post(mon, headers=sup, json={"extension": "102", "mode": "whisper"})
    assert r.status_code == 403 and "no agent of the queues you supervise" in r.json()["detail"], r.text
    assert scoped.originator.asked == [("104", "101")]  # Bob's call was never rung for
    await ok(await api.client.post(mon, headers=wide, json={"extension": "102"}), 202)

    # the sessions: Sveta sees Alice's only, and cannot switch or stop Bob's
    assert [x["id"] for x in await ok(await api.client.get(mon, headers=sup))] == ["s-alice"]
    assert sorted(x["id"] for x in await ok(await api.client.get(mon, headers=wide))) == ["s-alice", "s-bob"]
    r = await api.client.post(f"{mon}/s-bob/mode", headers=sup, json={"mode": "barge"})
    assert r.status_code == 404 and "no monitoring session" in r.json()["detail"], r.text
    r = await api.client.delete(f"{mon}/s-bob", headers=sup)
    assert r.status_code == 404, r.text
    bob = scoped.monitoring.sessions["s-bob"]
    assert bob.session.mode is MonitorMode.LISTEN and not bob.stopped
    got = await ok(await api.client.post(f"{mon}/s-alice/mode", headers=sup, json={"mode": "whisper"}))
    assert got["mode"] == "whisper"
    r = await api.client.delete(f"{mon}/s-alice", headers=sup)
    assert r.status_code == 204 and scoped.monitoring.sessions["s-alice"].stopped

    refused = await _refused(api, a)
    assert len(refused) == 3 and all(d.endswith(OUTSIDE) for d in refused), refused
    assert sorted(d.rsplit(": ", 1)[0] for d in refused) == [
        f"DELETE {mon}/s-bob",
        f"POST {mon}",
        f"POST {mon}/s-bob/mode",
    ]
    # Sveta's audit: her own refusals, nothing about Bob's session by others
    rows = await ok(await api.client.get(f"{a.base}/monitor-audit", headers=sup))
    assert len(rows) == 3 and {r["action"] for r in rows} == {"refused"}


def test_the_websocket_gives_a_queue_supervisor_their_queues_states_only() -> None:
    from zvonok.api.auth import Principal
    from zvonok.api.ws import CallVisibility
    from zvonok.callcenter.events import AgentStateChanged, QueueStateChanged
    from zvonok.org.models import Role

    sveta = Principal(role=Role.SUPERVISOR, tenant_id=1, employee_id=9)
    scoped, wide = CallVisibility(sveta, queues=frozenset({3})), CallVisibility(sveta)
    sales = QueueStateChanged(tenant_id=1, queue_id=3, waiting=1, callbacks=0, longest_wait=2.0)
    support = QueueStateChanged(tenant_id=1, queue_id=4, waiting=5, callbacks=0, longest_wait=9.0)
    alice = AgentStateChanged(tenant_id=1, employee_id=7, status="available", queues=(3, 4))
    bob = AgentStateChanged(tenant_id=1, employee_id=8, status="on_call", queues=(4,))
    herself = AgentStateChanged(tenant_id=1, employee_id=9, status="available", queues=(4,))
    assert [scoped.admit(e) for e in (sales, support, alice, bob, herself)] == [
        [sales],
        [],
        [alice],
        [],
        [herself],
    ]
    assert [wide.admit(e) for e in (sales, support, alice, bob)] == [[sales], [support], [alice], [bob]]
