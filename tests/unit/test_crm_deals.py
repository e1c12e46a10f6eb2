"""The CRM's sales process: a deal cannot move past a stage whose required fields (deal, custom deal and
client fields) or checklist steps are missing (422 naming each), won and lost, the stage history, payments
(paid / remaining), tasks (overdue first), the missed call's call-back task, reminders and escalation from
the database's state (a restart repeats none), who may change what (the owner / assignee or an admin), and
another tenant's ids (404)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from zvonok.api.auth import Principal
from zvonok.api.ws import CallVisibility
from zvonok.bus import LocalBus
from zvonok.cdr import service as cdr_service
from zvonok.cdr.events import CdrWritten
from zvonok.cdr.models import Cdr
from zvonok.cdr.state import CallRecord
from zvonok.crm import dashboard, tasks
from zvonok.crm.events import DealChanged, TaskDue, TaskEscalated
from zvonok.crm.reminders import TaskScheduler
from zvonok.org import accounts
from zvonok.org.models import Employee, Role
from zvonok.telephony.events import (
    CallStarted,
    Direction,
    Disposition,
    HangupSide,
    LegCreated,
    LegRole,
    Party,
)

Api = Any
PASSWORD = "deal-password-1"


async def _employee(api: Api, t: Any, name: str, *, role: str = "employee") -> tuple[int, dict[str, str]]:
    """An employee with a login: (id, bearer headers)."""
    base = f"/api/v1/tenants/{t.id}"
    email = f"{name.lower()}@{t.domain}"
    r = await api.client.post(f"{base}/employees", headers=t.headers, json={"full_name": name, "email": email})
    assert r.status_code == 201, r.text
    emp_id = r.json()["id"]
    async with api.db.session() as session:
        emp = await session.get(Employee, emp_id)
        assert emp is not None
        await accounts.set_employee_login(session, t.id, emp, PASSWORD, role)
        await session.commit()
    r = await api.client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return emp_id, {"Authorization": f"Bearer {r.json()['access_token']}"}


async def _tenant(api: Api, make_tenant: Any) -> tuple[Any, str]:
    t = await make_tenant(f"deals-{uuid.uuid4().hex[:6]}.example")
    return t, f"/api/v1/tenants/{t.id}/crm"


async def _pipeline(api: Api, t: Any, crm: str) -> dict[str, Any]:
    r = await api.client.post(f"{crm}/fields", headers=t.headers,
                              json={"key": "budget_ok", "label": "Budget confirmed", "kind": "choice",
                                    "choices": ["yes", "no"], "entity": "deal"})
    assert r.status_code == 201, r.text
    r = await api.client.post(f"{crm}/fields", headers=t.headers,
                              json={"key": "inn", "label": "INN", "kind": "text"})
    assert r.status_code == 201, r.text
    r = await api.client.post(f"{crm}/pipelines", headers=t.headers, json={"name": "Sales", "currency": "RUB", "stages": [
        {"name": "New", "probability": 10, "goal": "Find the need", "required_fields": ["client_id"]},
        {"name": "Qualified", "probability": 40, "required_fields": ["amount", "fields.budget_ok", "client.inn"],
         "required_steps": ["Call the decision maker"]},
        {"name": "Proposal", "probability": 70, "required_steps": ["Send the offer", "Get feedback"]},
        {"name": "Won", "kind": "won", "probability": 100},
        {"name": "Lost", "kind": "lost"}]})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _stage(p: dict[str, Any], name: str) -> int:
    return int(next(s["id"] for s in p["stages"] if s["name"] == name))


async def test_a_deal_cannot_skip_a_step(api: Api, make_tenant: Any) -> None:
    t, crm = await _tenant(api, make_tenant)
    p = await _pipeline(api, t, crm)
    assert [s["name"] for s in p["stages"]] == ["New", "Qualified", "Proposal", "Won", "Lost"]
    ivan, ivan_h = await _employee(api, t, "Ivan")
    r = await api.client.post(f"{crm}/clients", headers=ivan_h, json={"name": "Ромашка", "owner_id": ivan})
    client = r.json()["id"]
    r = await api.client.post(f"{crm}/deals", headers=ivan_h, json={"title": "Licences", "pipeline_id": p["id"]})
    assert r.status_code == 201, r.text
    deal = r.json()
    assert (deal["owner_id"], deal["stage_name"], deal["currency"], deal["missing"]) == (ivan, "New", "RUB", ["client_id"])
    url = f"{crm}/deals/{deal['id']}"

    # New needs the client; jumping to Proposal also passes Qualified: everything missing is named
    r = await api.client.post(f"{url}/move", headers=ivan_h, json={"stage_id": _stage(p, "Proposal")})
    assert r.status_code == 422
    assert r.json()["missing"] == ["New: client_id", "Qualified: amount", "Qualified: fields.budget_ok",
                                   "Qualified: client.inn", "Qualified: step: Call the decision maker"]
    assert "cannot move to 'Proposal'" in r.json()["detail"]
    r = await api.client.patch(url, headers=ivan_h, json={"client_id": client, "amount": "150000.50",
                                                          "fields": {"budget_ok": "maybe"}})
    assert r.status_code == 422 and "fields.budget_ok" in r.text  # a deal field is checked like a client's
    r = await api.client.patch(url, headers=ivan_h, json={"client_id": client, "amount": "150000.50",
                                                          "fields": {"budget_ok": "yes"}})
    assert r.status_code == 200, r.text
    r = await api.client.post(f"{url}/move", headers=ivan_h, json={"stage_id": _stage(p, "Qualified")})
    assert r.status_code == 200 and r.json()["stage_name"] == "Qualified"
    r = await api.client.post(f"{url}/move", headers=ivan_h, json={"stage_id": _stage(p, "Proposal")})
    assert r.status_code == 422
    assert r.json()["missing"] == ["Qualified: client.inn", "Qualified: step: Call the decision maker"]
    # a step that is not the stage's is refused; the client's field is filled on the client
    r = await api.client.post(f"{url}/steps", headers=ivan_h, json={"stage_id": _stage(p, "Qualified"), "step": "Lunch"})
    assert r.status_code == 422
    r = await api.client.post(f"{url}/steps", headers=ivan_h,
                              json={"stage_id": _stage(p, "Qualified"), "step": "Call the decision maker"})
    assert r.status_code == 200 and r.json()["missing"] == ["client.inn"]
    assert (await api.client.patch(f"{crm}/clients/{client}", headers=ivan_h,
                                   json={"fields": {"inn": "7700000000"}})).status_code == 200
    r = await api.client.post(f"{url}/move", headers=ivan_h, json={"stage_id": _stage(p, "Proposal")})
    assert r.status_code == 200, r.text
    assert r.json()["probability"] == 70
    # won passes every open stage: Proposal's two steps
    r = await api.client.post(f"{url}/move", headers=ivan_h, json={"stage_id": _stage(p, "Won")})
    assert r.status_code == 422 and r.json()["missing"] == ["Proposal: step: Send the offer", "Proposal: step: Get feedback"]
    for step in ("Send the offer", "Get feedback"):
        await api.client.post(f"{url}/steps", headers=ivan_h, json={"stage_id": _stage(p, "Proposal"), "step": step})
    r = await api.client.post(f"{url}/move", headers=ivan_h, json={"stage_id": _stage(p, "Won")})
    assert r.status_code == 200 and r.json()["stage_kind"] == "won" and r.json()["closed_at"] is not None
    # back is always allowed (reopens); lost needs a reason, from anywhere
    r = await api.client.post(f"{url}/move", headers=ivan_h, json={"stage_id": _stage(p, "New")})
    assert r.status_code == 200 and r.json()["closed_at"] is None
    r = await api.client.post(f"{url}/move", headers=ivan_h, json={"stage_id": _stage(p, "Lost")})
    assert r.status_code == 422 and "lost_reason" in r.text
    r = await api.client.post(f"{url}/move", headers=ivan_h, json={"stage_id": _stage(p, "Lost"),
                                                                  "lost_reason": "Chose a competitor"})
    assert r.status_code == 200 and r.json()["lost_reason"] == "Chose a competitor"

    r = await api.client.get(f"{url}/history", headers=t.headers)
    names = {s["id"]: s["name"] for s in p["stages"]}
    assert [(names.get(m["from_stage_id"]), names[m["to_stage_id"]]) for m in r.json()] == [
        (None, "New"), ("New", "Qualified"), ("Qualified", "Proposal"), ("Proposal", "Won"), ("Won", "New"),
        ("New", "Lost")]
    assert {m["employee_name"] for m in r.json()} == {"Ivan"}


async def test_pipeline_rules_and_default(api: Api, make_tenant: Any) -> None:
    t, crm = await _tenant(api, make_tenant)
    # a required field that is not defined; a pipeline without won
    r = await api.client.post(f"{crm}/pipelines", headers=t.headers, json={"name": "X", "stages": [
        {"name": "A", "required_fields": ["fields.nope"]}, {"name": "W", "kind": "won"}, {"name": "L", "kind": "lost"}]})
    assert r.status_code == 422 and "fields.nope" in r.text
    r = await api.client.post(f"{crm}/pipelines", headers=t.headers, json={"name": "X", "stages": [{"name": "A"}]})
    assert r.status_code == 422
    # the first deal makes the default pipeline
    r = await api.client.post(f"{crm}/deals", headers=t.headers, json={"title": "First"})
    assert r.status_code == 201 and r.json()["stage_name"] == "New"
    pipelines = (await api.client.get(f"{crm}/pipelines", headers=t.headers)).json()
    assert [s["name"] for s in pipelines[0]["stages"]] == ["New", "Qualified", "Proposal", "Won", "Lost"]
    stage = pipelines[0]["stages"][0]["id"]
    assert (await api.client.delete(f"{crm}/stages/{stage}", headers=t.headers)).status_code == 409  # has a deal
    r = await api.client.patch(f"{crm}/stages/{stage}", headers=t.headers, json={"required_steps": ["Say hello"]})
    assert r.status_code == 200 and r.json()["required_steps"] == ["Say hello"]


async def test_payments_paid_and_remaining(api: Api, make_tenant: Any) -> None:
    t, crm = await _tenant(api, make_tenant)
    r = await api.client.post(f"{crm}/deals", headers=t.headers, json={"title": "Deal", "amount": "1000.00"})
    url = f"{crm}/deals/{r.json()['id']}"
    for amount in ("300.10", "200.00"):
        r = await api.client.post(f"{url}/payments", headers=t.headers,
                                  json={"amount": amount, "paid_on": "2026-12-01", "method": "card", "note": "n"})
        assert r.status_code == 201, r.text
    assert (await api.client.post(f"{url}/payments", headers=t.headers,
                                  json={"amount": "0", "paid_on": "2026-12-01"})).status_code == 422
    deal = (await api.client.get(url, headers=t.headers)).json()
    assert (deal["paid"], deal["remaining"]) == ("500.10", "499.90")
    pays = (await api.client.get(f"{url}/payments", headers=t.headers)).json()
    assert [p["amount"] for p in pays] == ["300.10", "200.00"]
    assert (await api.client.delete(f"{crm}/payments/{pays[0]['id']}", headers=t.headers)).status_code == 204
    assert (await api.client.get(url, headers=t.headers)).json()["paid"] == "200.00"


async def test_roles_and_tenant_isolation(api: Api, make_tenant: Any) -> None:
    t, crm = await _tenant(api, make_tenant)
    ivan, ivan_h = await _employee(api, t, "Ivan")
    olga, olga_h = await _employee(api, t, "Olga")
    r = await api.client.post(f"{crm}/deals", headers=ivan_h, json={"title": "Ivan's"})
    deal = r.json()["id"]
    url = f"{crm}/deals/{deal}"
    # Olga reads Ivan's deal but may not change, move, pay or delete it; nor create one for him
    assert (await api.client.get(url, headers=olga_h)).status_code == 200
    assert (await api.client.patch(url, headers=olga_h, json={"title": "Mine"})).status_code == 403
    stage = (await api.client.get(url, headers=olga_h)).json()["stage_id"]
    assert (await api.client.post(f"{url}/move", headers=olga_h, json={"stage_id": stage})).status_code == 403
    assert (await api.client.post(f"{url}/payments", headers=olga_h,
                                  json={"amount": "1", "paid_on": "2026-12-01"})).status_code == 403
    assert (await api.client.delete(url, headers=olga_h)).status_code == 403
    assert (await api.client.post(f"{crm}/deals", headers=olga_h,
                                  json={"title": "x", "owner_id": ivan})).status_code == 403
    assert (await api.client.patch(url, headers=ivan_h, json={"owner_id": olga})).status_code == 403  # admin's
    assert (await api.client.patch(url, headers=t.headers, json={"owner_id": olga})).status_code == 200
    assert (await api.client.patch(url, headers=olga_h, json={"title": "Olga's now"})).status_code == 200
    # pipelines and settings are the admin's
    assert (await api.client.post(f"{crm}/pipelines", headers=olga_h, json={"name": "Mine"})).status_code == 403
    assert (await api.client.put(f"{crm}/settings", headers=olga_h, json={"callback_minutes": 5})).status_code == 403
    # tasks: the assignee or the author changes one
    due = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = await api.client.post(f"{crm}/tasks", headers=t.headers, json={"title": "Ring", "due_at": due,
                                                                       "assignee_id": ivan, "deal_id": deal})
    assert r.status_code == 201, r.text
    task = r.json()["id"]
    assert (await api.client.patch(f"{crm}/tasks/{task}", headers=olga_h, json={"done": True})).status_code == 403
    r = await api.client.patch(f"{crm}/tasks/{task}", headers=ivan_h, json={"done": True})
    assert r.status_code == 200 and r.json()["done"] and r.json()["done_at"]
    # another tenant: 404 for everything, 422 for its ids given as references
    other = await make_tenant(f"other-{uuid.uuid4().hex[:6]}.example")
    ocrm = f"/api/v1/tenants/{other.id}/crm"
    assert (await api.client.get(f"{ocrm}/deals/{deal}", headers=other.headers)).status_code == 404
    assert (await api.client.get(f"{ocrm}/tasks/{task}", headers=other.headers)).status_code == 404
    assert (await api.client.post(f"{ocrm}/deals/{deal}/move", headers=other.headers,
                                  json={"stage_id": stage})).status_code == 404
    assert (await api.client.post(f"{ocrm}/tasks", headers=other.headers,
                                  json={"title": "x", "due_at": due, "deal_id": deal})).status_code == 422
    assert (await api.client.get(f"{crm}/deals", headers=other.headers)).status_code == 404


async def _missed(api: Api, tenant_id: int, caller: str, callee_employee: int | None, *,
                  disposition: Disposition = Disposition.NO_ANSWER, at: float) -> int:
    call_id = uuid.uuid4().hex
    record = CallRecord.started(CallStarted(tenant_id=tenant_id, call_id=call_id, at=at,
                                            caller=Party(number=caller, external=True), callee_number="101",
                                            direction=Direction.INBOUND))
    if callee_employee is not None:
        record.apply(LegCreated(tenant_id=tenant_id, call_id=call_id, at=at, leg_id="b", role=LegRole.CALLEE,
                                party=Party(number="101", employee_id=callee_employee)))
    finished = record.finish(at=at + 20, disposition=disposition, hangup_side=HangupSide.CALLER, cause="no_answer")
    async with api.db.session() as session:
        cdr = await cdr_service.write_cdr(session, tenant_id, finished)
        await session.commit()
    assert cdr is not None
    return cdr.id


async def test_missed_call_makes_a_call_back_task(api: Api, make_tenant: Any) -> None:
    t, crm = await _tenant(api, make_tenant)
    ivan, ivan_h = await _employee(api, t, "Ivan")
    olga, _ = await _employee(api, t, "Olga")
    r = await api.client.post(f"{crm}/clients", headers=t.headers, json={
        "name": "Known", "owner_id": olga, "phones": [{"number": "+74951112233"}]})
    assert r.status_code == 201
    assert (await api.client.put(f"{crm}/settings", headers=t.headers,
                                 json={"callback_minutes": 30, "escalate_hours": 2})).status_code == 200
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC).timestamp()
    known = await _missed(api, t.id, "+74951112233", ivan, at=at)  # a client's call: to the client's owner
    unknown = await _missed(api, t.id, "+74959998877", ivan, at=at, disposition=Disposition.CANCELLED)
    answered = await _missed(api, t.id, "+74959998877", ivan, at=at, disposition=Disposition.ANSWERED)
    nobody = await _missed(api, t.id, "+74950000000", None, at=at)  # no client, nobody rung: no task

    bus = LocalBus()
    scheduler = TaskScheduler(api.db, bus)
    for cdr_id in (known, unknown, answered, nobody, known):  # the same CdrWritten twice: one task
        await scheduler.handle(CdrWritten(tenant_id=t.id, call_id="x", cdr_id=cdr_id))
    r = await api.client.get(f"{crm}/tasks", headers=t.headers)
    items = r.json()["items"]
    assert [(i["title"], i["assignee_id"], i["kind"], i["number"]) for i in items] == [
        ("Call back Known", olga, "call_back", "+74951112233"), ("Call back +74959998877", ivan, "call_back",
                                                                 "+74959998877")]
    assert items[0]["due_at"].startswith("2026-12-01T10:30:20")  # the call ended at 10:00:20, + 30 min
    assert items[0]["client_name"] == "Known" and items[1]["client_id"] is None
    mine = (await api.client.get(f"{crm}/tasks", headers=ivan_h, params={"assignee_id": ivan})).json()
    assert [i["number"] for i in mine["items"]] == ["+74959998877"]


async def test_cdr_written_says_whether_a_call_was_missed_and_only_those_cdrs_are_read(
        api: Api, make_tenant: Any) -> None:
    t, crm = await _tenant(api, make_tenant)
    ivan, _ = await _employee(api, t, "Ivan")
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC).timestamp()
    missed = await _missed(api, t.id, "+74959998877", ivan, at=at)
    answered = await _missed(api, t.id, "+74959998877", ivan, at=at, disposition=Disposition.ANSWERED)
    async with api.db.session() as session:
        written = [cdr_service.cdr_written(cdr) for cdr in [await session.get(Cdr, i) for i in (missed, answered)]
                   if cdr is not None]
    assert [(e.cdr_id, e.missed) for e in written] == [(missed, True), (answered, False)]
    sessions = 0
    real = api.db.session

    def counted() -> Any:
        nonlocal sessions
        sessions += 1
        return real()

    api.db.session = counted  # type: ignore[method-assign]
    try:
        scheduler = TaskScheduler(api.db, LocalBus())
        await scheduler.handle(written[1])  # answered: nothing to read
        assert sessions == 0
        await scheduler.handle(written[0])
        assert sessions == 1
    finally:
        api.db.session = real  # type: ignore[method-assign]
    items = (await api.client.get(f"{crm}/tasks", headers=t.headers)).json()["items"]
    assert [i["number"] for i in items] == ["+74959998877"]


async def test_reminders_and_escalation_survive_a_restart(api: Api, make_tenant: Any) -> None:
    t, crm = await _tenant(api, make_tenant)
    ivan, _ = await _employee(api, t, "Ivan")
    boss, _ = await _employee(api, t, "Boss", role="tenant_admin")
    assert (await api.client.put(f"{crm}/settings", headers=t.headers,
                                 json={"callback_minutes": 60, "escalate_hours": 3})).status_code == 200
    due = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    for title, when in (("Due", due), ("Later", datetime.now(UTC) + timedelta(days=30))):
        r = await api.client.post(f"{crm}/tasks", headers=t.headers,
                                  json={"title": title, "due_at": when.isoformat(), "assignee_id": ivan})
        assert r.status_code == 201
    bus = LocalBus()
    seen: list[object] = []
    api.db.add_listener(seen.append)  # the events committed with the marks
    now = [due - timedelta(minutes=1)]
    scheduler = TaskScheduler(api.db, bus, clock=lambda: now[0])
    assert await scheduler.tick() == 0  # not due yet
    now[0] = due + timedelta(minutes=1)
    assert await scheduler.tick() == 1  # the reminder
    assert await TaskScheduler(api.db, bus, clock=lambda: now[0]).tick() == 0  # "restarted": not again
    now[0] = due + timedelta(hours=3, minutes=1)
    assert await TaskScheduler(api.db, bus, clock=lambda: now[0]).tick() == 1  # the escalation, once
    assert await TaskScheduler(api.db, bus, clock=lambda: now[0]).tick() == 0
    async with api.db.session() as session:
        assert await tasks.escalation_targets(session, t.id, ivan) == (boss,)
    api.db.remove_listener(seen.append)
    notes = [e for e in seen if isinstance(e, TaskDue | TaskEscalated)]
    assert [(type(e).__name__, e.title, e.assignee_id) for e in notes] == [("TaskDue", "Due", ivan),
                                                                          ("TaskEscalated", "Due", ivan)]
    assert isinstance(notes[1], TaskEscalated) and notes[1].notify_employee_ids == (boss,)
    assert notes[0].due_at == due.timestamp()
    overdue = (await api.client.get(f"{crm}/tasks", headers=t.headers, params={"overdue": "true"})).json()
    assert [i["title"] for i in overdue["items"]] == ["Due"] and overdue["items"][0]["overdue"]
    # the websocket's view: the reminder to the assignee, the escalation to the boss, neither to others
    due_event = TaskDue(tenant_id=t.id, task_id=1, assignee_id=ivan, title="Due", due_at=0.0)
    escalated = TaskEscalated(tenant_id=t.id, task_id=1, assignee_id=ivan, title="Due", due_at=0.0,
                              notify_employee_ids=(boss,))

    def view(employee_id: int) -> CallVisibility:
        return CallVisibility(Principal(role=Role.EMPLOYEE, tenant_id=t.id, employee_id=employee_id, account_id=1))

    assert view(ivan).admit(due_event) == [due_event] and view(ivan).admit(escalated) == []
    assert view(boss).admit(escalated) == [escalated] and view(boss).admit(due_event) == []
    moved = DealChanged(tenant_id=t.id, deal_id=1, action="moved", stage_id=2, owner_id=ivan)
    assert view(ivan).admit(moved) == [moved] and view(boss).admit(moved) == []
    admin = CallVisibility(Principal(role=Role.TENANT_ADMIN, tenant_id=t.id, account_id=2))
    assert admin.admit(moved) == [moved] and admin.admit(escalated) == [escalated]


async def test_dashboard(api: Api, make_tenant: Any) -> None:
    t, crm = await _tenant(api, make_tenant)
    ivan, _ = await _employee(api, t, "Ivan")
    p = await _pipeline(api, t, crm)
    r = await api.client.post(f"{crm}/clients", headers=t.headers, json={"name": "C", "fields": {"inn": "1"}})
    client = r.json()["id"]
    ids = []
    for amount in ("100.00", "250.00"):
        r = await api.client.post(f"{crm}/deals", headers=t.headers, json={
            "title": "D", "pipeline_id": p["id"], "client_id": client, "amount": amount, "owner_id": ivan,
            "fields": {"budget_ok": "yes"}})
        ids.append(r.json()["id"])
    r = await api.client.post(f"{crm}/deals/{ids[0]}/move", headers=t.headers, json={"stage_id": _stage(p, "Qualified")})
    assert r.status_code == 200
    await _missed(api, t.id, "+74951234567", ivan, at=datetime.now(UTC).timestamp() - 60)
    async with api.db.session() as session:
        board = await dashboard.build(session, t.id, p["id"])
    by = {s.name: s for s in board.stages}
    assert (by["New"].deals, str(by["New"].amount), by["New"].reached, by["New"].conversion) == (1, "250.00", 2, 50.0)
    assert (by["Qualified"].deals, str(by["Qualified"].amount)) == (1, "100.00")
    assert [(c.name, c.calls, c.answered) for c in board.calls] == [("Ivan", 1, 0)]
    r = await api.client.get(f"{crm}/dashboard", headers=t.headers, params={"pipeline_id": p["id"]})
    assert r.status_code == 200 and r.json()["won_this_month"] == 0
