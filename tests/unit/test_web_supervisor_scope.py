"""The web console for a queue-scoped supervisor: the admin assigns Sveta to the queue Sales on its form;
Sveta's wallboard and agents page show Sales' agent Ivan and not Support's Petr; the Listen / Whisper /
Barge buttons of Ivan's call ring her phone (the page says so, or why not: no engine, no phone of hers,
her phone not registered, Ivan not on a call); Petr's buttons, sessions and statuses answer 403, audited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select
from test_supervisor_scope import FakeLive, FakeMonitoring
from test_web import PASSWORD, Company, Web, a, admin_a, csrf_of, login, web  # noqa: F401 - fixtures
from test_web_callcenter import live  # noqa: F401 - the running call center, a fixture
from test_web_calls import engine_with_calls

from zvonok.callcenter.models import CallQueue
from zvonok.callcenter.runtime import CallCenterRuntime
from zvonok.monitoring.models import MonitorAudit
from zvonok.org import schemas
from zvonok.org import service as org_service
from zvonok.org.models import Employee
from zvonok.telephony.events import Party
from zvonok.telephony.monitor_matrix import MonitorMode, MonitorSession
from zvonok.telephony.originate import OriginateRefused


@dataclass
class Originator:
    refuse: OriginateRefused | None = None
    asked: list[tuple[str, str, MonitorMode]] = field(default_factory=list)

    async def start_monitor(
        self, tenant_id: int, supervisor: str, extension: str, mode: MonitorMode
    ) -> object:
        self.asked.append((supervisor, extension, mode))
        if self.refuse is not None:
            raise self.refuse
        return object()


async def _post(client: httpx.AsyncClient, page: str, url: str, data: dict[str, Any]) -> httpx.Response:
    html = (await client.get(page)).text
    return await client.post(url, data={**data, "csrf_token": csrf_of(html)})


async def test_a_queue_supervisor_on_the_web(
    web: Web,  # noqa: F811
    a: Company,  # noqa: F811
    admin_a: httpx.AsyncClient,  # noqa: F811
    live: CallCenterRuntime,  # noqa: F811
) -> None:
    app: Any = web.app
    for name, role in (("Sveta", "supervisor"), ("Petr", "employee")):
        r = await _post(
            admin_a,
            "/org",
            "/org/employees",
            {"full_name": name, "email": f"{name.lower()}@a.example", "role": role, "web_password": PASSWORD},
        )
        assert r.status_code == 303, r.text
    async with web.db.session() as session:
        ids = dict(
            (await session.execute(select(Employee.full_name, Employee.id).where(Employee.tenant_id == a.id)))
            .tuples()
            .all()
        )
        await org_service.create_extension(
            session, a.id, schemas.ExtensionCreate(number="102", display_name="Petr", employee_id=ids["Petr"])
        )
        await session.commit()
    ivan, petr, sveta = ids["Ivan"], ids["Petr"], ids["Sveta"]
    queues = {}
    for name, number, member in (("Sales", "700", ivan), ("Support", "701", petr)):
        r = await _post(
            admin_a,
            "/callcenter/queues",
            "/callcenter/queues",
            {
                "name": name,
                "number": number,
                "strategy": "ring_all",
                "ring_timeout": "20",
                "wrap_up": "5",
                "max_wait": "",
                "service_level": "30",
                "requirements": "",
            },
        )
        assert r.status_code == 303, r.text
        async with web.db.session() as session:
            queues[name] = (
                await session.execute(select(CallQueue.id).where(CallQueue.name == name))
            ).scalar_one()
        edit = f"/callcenter/queues/{queues[name]}"
        assert (
            await _post(admin_a, edit, f"{edit}/members", {"employee_id": str(member)})
        ).status_code == 303
    sales = f"/callcenter/queues/{queues['Sales']}"
    form = (await admin_a.get(sales)).text.split('id="queue-supervisors"')[1]  # only supervisors to choose
    assert f'value="{sveta}"' in form and f'value="{petr}"' not in form
    r = await _post(admin_a, sales, f"{sales}/supervisors", {"employee_id": str(petr)})
    assert r.status_code == 422  # no supervisor
    assert (
        await _post(admin_a, sales, f"{sales}/supervisors", {"employee_id": str(sveta)})
    ).status_code == 303
    assert f'value="{sveta}" checked' in (await admin_a.get(sales)).text.split('id="queue-supervisors"')[1]
    await live.settled()
    for employee, queue in ((ivan, "Sales"), (petr, "Support")):
        live.login(a.id, employee, [queues[queue]], {})
    await live.settled()
    for employee in (ivan, petr):
        live.center.agents[employee].busy_elsewhere = True  # each on a call of their own

    async with web.client() as sup:
        assert (await login(sup, "sveta@a.example")).status_code == 303
        body = (await sup.get("/callcenter/wallboard/body")).text
        assert (
            f'id="wall-queue-{queues["Sales"]}"' in body
            and f'id="wall-queue-{queues["Support"]}"' not in body
        )
        assert f'id="wall-agent-{ivan}"' in body and f'id="wall-agent-{petr}"' not in body
        assert 'action="/callcenter/wallboard/monitor"' not in body  # no call engine: no buttons
        page = (await sup.get("/callcenter/agents")).text
        assert f'id="agent-{ivan}"' in page and f'id="agent-{petr}"' not in page
        r = await _post(sup, "/callcenter/agents", f"/callcenter/agents/{petr}/logout", {})
        assert r.status_code == 403 and live.center.agents[petr].status.value == "available"

        wall = "/callcenter/wallboard"
        r = await _post(sup, wall, f"{wall}/monitor", {"employee_id": str(ivan), "mode": "listen"})
        assert r.status_code == 503 and "Monitoring is not available" in r.text
        monitoring, originator = FakeMonitoring(), Originator()
        app.state.monitoring, app.state.originator = monitoring, originator
        body = (await sup.get("/callcenter/wallboard/body")).text
        assert f'<input type="hidden" name="employee_id" value="{ivan}">' in body
        assert f'<input type="hidden" name="employee_id" value="{petr}">' not in body
        r = await _post(sup, wall, f"{wall}/monitor", {"employee_id": str(ivan), "mode": "listen"})
        assert r.status_code == 409 and "You have no extension" in r.text
        async with web.db.session() as session:
            await org_service.create_extension(
                session, a.id, schemas.ExtensionCreate(number="104", display_name="Sveta", employee_id=sveta)
            )
            await session.commit()
        r = await _post(sup, wall, f"{wall}/monitor", {"employee_id": str(petr), "mode": "listen"})
        assert r.status_code == 403 and originator.asked == []
        r = await _post(sup, wall, f"{wall}/monitor", {"employee_id": str(ivan), "mode": "whisper"})
        assert (
            r.status_code == 202
            and "Your phone (104) is ringing" in r.text
            and 'id="monitor-message"' in r.text
        )
        assert originator.asked == [("104", "101", MonitorMode.WHISPER)]
        originator.refuse = OriginateRefused(409, "not_registered", "extension 104 has no registered phone")
        r = await _post(sup, wall, f"{wall}/monitor", {"employee_id": str(ivan), "mode": "listen"})
        assert (
            r.status_code == 409
            and "Your phone (104) is not registered" in r.text
            and 'role="alert"' in r.text
        )
        originator.refuse = OriginateRefused(
            404, "nothing_to_monitor", "extension 101 has no call to monitor now"
        )
        r = await _post(sup, wall, f"{wall}/monitor", {"employee_id": str(ivan), "mode": "listen"})
        assert r.status_code == 404 and "Ivan is not on a call now." in r.text

        # the running sessions: Ivan's with its buttons, not Petr's
        for sid, agent in (("s-ivan", "101"), ("s-petr", "102")):
            monitoring.sessions[sid] = FakeLive(
                MonitorSession(
                    id=sid,
                    tenant_id=a.id,
                    call_id=f"c-{agent}",
                    supervisor="104",
                    agent=agent,
                    mode=MonitorMode.LISTEN,
                    started_at=1.0,
                )
            )
        body = (await sup.get("/callcenter/wallboard/body")).text
        assert 'id="monitor-session-s-ivan"' in body and "s-petr" not in body
        assert f'<input type="hidden" name="employee_id" value="{ivan}">' not in body  # monitored already
        r = await _post(sup, wall, f"{wall}/monitor/s-petr/mode", {"mode": "barge"})
        assert r.status_code == 403 and monitoring.sessions["s-petr"].session.mode is MonitorMode.LISTEN
        r = await _post(sup, wall, f"{wall}/monitor/s-petr/stop", {})
        assert r.status_code == 403 and not monitoring.sessions["s-petr"].stopped
        r = await _post(sup, wall, f"{wall}/monitor/s-ivan/mode", {"mode": "barge"})
        assert r.status_code == 303 and monitoring.sessions["s-ivan"].session.mode is MonitorMode.BARGE
        r = await _post(sup, wall, f"{wall}/monitor/s-ivan/stop", {})
        assert r.status_code == 303 and monitoring.sessions["s-ivan"].stopped
        # calls in progress: Ivan's, not Petr's
        engine = engine_with_calls(
            a.id,
            [
                (
                    Party(number="101", display_name="Ivan", employee_id=ivan, extension_id=1),
                    Party(number="+74990000001", display_name="Customer A", external=True),
                    True,
                ),
                (
                    Party(number="102", display_name="Petr", employee_id=petr, extension_id=2),
                    Party(number="+74990000002", display_name="Customer B", external=True),
                    True,
                ),
            ],
        )
        app.state.active_calls = engine.active_calls
        rows = (await sup.get("/calls/live/rows")).text
        assert rows.count('<tr id="live-') == 1 and "Customer A" in rows and "Customer B" not in rows
    async with web.client() as admin:  # the admin: everyone
        assert (await login(admin, a.admin)).status_code == 303
        body = (await admin.get("/callcenter/wallboard/body")).text
        assert f'id="wall-agent-{petr}"' in body and 'id="monitor-session-s-petr"' in body
        rows = (await admin.get("/calls/live/rows")).text
        assert rows.count('<tr id="live-') == 2
    async with web.db.session() as session:
        refused = list(
            (
                await session.scalars(
                    select(MonitorAudit.detail).where(
                        MonitorAudit.tenant_id == a.id, MonitorAudit.action == "refused"
                    )
                )
            ).all()
        )
    assert len(refused) == 4 and all(d.endswith("outside the supervisor's queues") for d in refused), refused
