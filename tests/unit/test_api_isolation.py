"""Tenant isolation over *every* tenant-scoped route of the app, found from the OpenAPI schema, so
routes added later (by any layer) are covered automatically. Tenant A's admin must get 404 — never
403, never data — for tenant B's objects and collections, and must not be able to create in B. One
exception: supervisor monitoring (``/monitor-…``) refuses another tenant's account with 403, the same for a
tenant that does not exist (the call center issue's rule; zvonok.monitoring.http).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

Api = Any
MONITORING = re.compile(r"^/api/v1/tenants/\{tenant_id\}/monitor-")


async def _cdr_with_recording(api: Api, tenant_id: int) -> int:
    """A CDR whose recording exists, so a leak would answer 200 rather than a coincidental 404."""
    from zvonok.cdr import service as cdr_service
    from zvonok.cdr.state import CallRecord
    from zvonok.telephony.events import CallStarted, Direction, Disposition, HangupSide, Party

    rec = api.settings.data_dir / "recordings" / f"{tenant_id}.wav"
    rec.parent.mkdir(parents=True, exist_ok=True)
    rec.write_bytes(b"RIFF")
    record = CallRecord.started(CallStarted(
        tenant_id=tenant_id, call_id=uuid.uuid4().hex, at=1e9, caller=Party(number="101"), callee_number="102",
        direction=Direction.INTERNAL))
    record.recording_path = rec.name
    finished = record.finish(at=1e9 + 5, disposition=Disposition.ANSWERED, hangup_side=HangupSide.CALLER, cause="n")
    async with api.db.session() as session:
        cdr = await cdr_service.write_cdr(session, tenant_id, finished)
        await session.commit()
    assert cdr is not None
    return cdr.id

# A valid body per collection so a POST would succeed if isolation were broken.
BODIES: dict[str, dict[str, Any]] = {
    "mode": {"mode": "barge"},  # a monitoring session's mode
    "emails": {"to": "victim@b.example", "subject": "Intruder", "body": "Intruder"},  # to a CRM client
    "reply": {"body": "Intruder"},  # to a CRM client's e-mail
    "offices": {"name": "Intruder office"},
    "departments": {"name": "Intruder dept"},
    "employees": {"full_name": "Intruder", "email": "intruder@x.example"},
    "extensions": {"number": "999", "display_name": "Intruder"},
    "tokens": {"name": "intruder"},
    "clients": {"name": "Intruder", "phones": [{"number": "+74950000001"}]},
    "notes": {"text": "intruder"},
    "merge": {"source_id": 1},
    "fields": {"key": "intruder", "label": "Intruder", "kind": "text"},
    "ring-groups": {"number": "600", "name": "Intruder", "members": ["101"]},
    "pipelines": {"name": "Intruder"},
    "stages": {"name": "Intruder"},
    "deals": {"title": "Intruder"},
    "steps": {"stage_id": 1, "step": "Intrude"},
    "move": {"stage_id": 1},
    "payments": {"amount": "1.00", "paid_on": "2026-01-01"},
    "invoices": {"number": "INTRUDER-1", "amount": "1.00", "due_on": "2027-01-01"},
    "tasks": {"title": "Intruder", "due_at": "2026-01-01T00:00:00Z"},
    "queues": {"name": "Intruder", "number": "998"},
    "reasons": {"name": "Intruder"},
    "members": {"employee_ids": []},
    "skills": {"skills": {"x": 1}},
    "pause": {"reason": "Lunch"},
}
PATCHES: dict[str, dict[str, Any]] = {
    "tenants": {"name": "Owned"},
    "imap": {"host": "evil.example", "username": "owned", "password": "owned"},  # the CRM's IMAP mailbox
    "offices": {"name": "Owned"},
    "departments": {"name": "Owned"},
    "employees": {"full_name": "Owned"},
    "extensions": {"display_name": "Owned"},
    "clients": {"name": "Owned"},
    "ring-groups": {"name": "Owned"},
    "pipelines": {"name": "Owned"},
    "stages": {"name": "Owned"},
    "deals": {"title": "Owned"},
    "tasks": {"title": "Owned"},
    "settings": {"callback_minutes": 1},
    "queues": {"name": "Owned"},
    "reasons": {"name": "Owned", "code": "9"},  # a not-ready reason's name and *47 code
    "members": {"employee_ids": []},
    "supervisors": {"employee_ids": []},  # a queue's supervisors
    "skills": {"skills": {"x": 1}},
}


async def _voicemail_message(api: Api, tenant_id: int, extension_id: int) -> int:
    """A mailbox with a message whose audio exists (a leak would answer 200)."""
    from zvonok.telephony.voicemail import NewMessage
    from zvonok.voicemail import schemas as vm_schemas
    from zvonok.voicemail import service as vm_service

    async with api.db.session() as session:
        await vm_service.put_mailbox(session, tenant_id, extension_id, vm_schemas.MailboxIn(pin="1234"))
        await session.commit()
    files = vm_service.VoicemailFiles((api.settings.data_dir / "voicemail").resolve())
    store = vm_service.VoicemailStore(api.db, files)
    async with api.db.session() as session:
        number = (await vm_service.get_mailbox(session, tenant_id, extension_id))[1].number
    box = await store.mailbox(tenant_id, number)
    assert box is not None
    box.directory.mkdir(parents=True, exist_ok=True)
    (box.directory / "m.wav").write_bytes(b"RIFF")
    return await store.store(box, NewMessage(call_id="c", caller_number="+7", caller_name="", duration=2.0,
                                             file=box.directory / "m.wav"))


async def _fax(api: Api, tenant_id: int) -> int:
    """A received fax of the tenant, kept as the engine keeps one (its PDF made from a TIFF)."""
    from zvonok.fax.documents import pdf_to_tiff
    from zvonok.fax.service import FaxFiles, FaxStore

    store = FaxStore(api.db, FaxFiles((api.settings.data_dir / "fax").resolve()))
    fax = await store.begin_receive(tenant_id, call_id="c", remote_number="+7", local_number="+7")
    pdf_to_tiff((Path(__file__).resolve().parents[1] / "data" / "fax" / "two_pages.pdf").read_bytes(), fax.tiff)
    assert await store.finish_receive(tenant_id, fax, None, "test") == 2
    return fax.id


async def _populate(api: Api, t: Any) -> dict[str, Any]:
    """One object of each kind in tenant ``t``; returns path-parameter values."""
    base = f"/api/v1/tenants/{t.id}"

    async def post(kind: str, body: dict[str, Any]) -> int:
        r = await api.client.post(f"{base}/{kind}", headers=t.headers, json=body)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    office = await post("offices", {"name": "HQ"})
    dept = await post("departments", {"name": "Sales", "office_id": office})
    emp = await post("employees", {"full_name": "E", "email": f"e@{t.domain}", "office_id": office})
    ext = await post("extensions", {"number": "101", "display_name": "E", "employee_id": emp})
    token = await post("tokens", {"name": "script"})
    group = await post("ring-groups", {"number": "600", "name": "Sales", "members": ["101"]})
    webhook = await post("webhooks", {"url": "https://hooks.example.com/zvonok"})
    cdr = await _cdr_with_recording(api, t.id)
    r = await api.client.get(f"{base}/cdrs/{cdr}/recording", headers=t.headers)
    assert r.status_code == 200, r.text
    trunk = await post("trunks", {"name": "T", "host": "sip.example"})
    route = await post("routes", {"trunk_id": trunk})
    r = await api.client.post("/api/v1/platform/numbers", headers=api.admin, json={"number": f"+7495{t.id:07d}"})
    assert r.status_code == 201, r.text
    number = int(r.json()["id"])
    menu = await post("ivr-menus", {"name": "Main"})
    r = await api.client.post(f"/api/v1/platform/numbers/{number}/assign", headers=api.admin, json={"tenant_id": t.id})
    assert r.status_code == 200, r.text
    client = await post("crm/clients", {"name": "Client", "phones": [{"number": f"+7495{t.id:07d}"}]})
    field = await post("crm/fields", {"key": "source", "label": "Source", "kind": "text"})
    message = await _voicemail_message(api, t.id, ext)
    r = await api.client.get(f"{base}/voicemail/messages/{message}/audio", headers=t.headers)
    assert r.status_code == 200, r.text
    pipeline = await post("crm/pipelines", {"name": "Sales"})
    r = await api.client.get(f"{base}/crm/pipelines/{pipeline}", headers=t.headers)
    stage = int(r.json()["stages"][0]["id"])
    deal = await post("crm/deals", {"title": "Deal", "pipeline_id": pipeline, "client_id": client})
    payment = await post(f"crm/deals/{deal}/payments", {"amount": "10.00", "paid_on": "2026-01-01"})
    task = await post("crm/tasks", {"title": "Task", "due_at": "2026-01-01T00:00:00Z", "deal_id": deal})
    invoice = await post(f"crm/deals/{deal}/invoices", {"number": f"INV-{t.id}", "amount": "10.00",
                                                         "due_on": "2027-01-01"})
    queue = await post("callcenter/queues", {"name": "Q", "number": "500"})
    fax = await _fax(api, t.id)
    reason = await post("callcenter/reasons", {"name": "Lunch"})
    callback = await _callback_request(api, t.id, queue)
    return {
        "queue_id": queue, "reason_id": reason, "fax_id": fax, "callback_id": callback,
        "client_id": client, "field_id": field, "pipeline_id": pipeline, "stage_id": stage, "deal_id": deal,
        "payment_id": payment, "task_id": task, "invoice_id": invoice,
        "tenant_id": t.id, "office_id": office, "department_id": dept, "employee_id": emp,
        "extension_id": ext, "token_id": token, "cdr_id": cdr, "trunk_id": trunk, "route_id": route,
        "number_id": number, "message_id": message, "kind": "busy", "menu_id": menu, "group_id": group,
        "session_id": "0123456789ab",  # a monitoring session (none runs here: 404 for anyone)
        "webhook_id": webhook,
    }


async def _callback_request(api: Api, tenant_id: int, queue_id: int) -> int:
    """A caller's callback request waiting in the queue, as the call center keeps one."""
    from zvonok.callcenter.models import QueueCallbackRow

    async with api.db.session() as session:
        row = QueueCallbackRow(tenant_id=tenant_id, queue_id=queue_id, call_id=f"cb-{tenant_id}", number="+74951234567",
                               priority=0, joined_at=1.8e9, requested_at=1.8e9, position=1, state="waiting",
                               attempts=0)
        session.add(row)
        await session.commit()
        return row.id


def _fill(path: str, values: dict[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        assert name in values, f"isolation test: give a sample value for path parameter {{{name}}} ({path})"
        return str(values[name])

    return re.sub(r"\{(\w+)\}", sub, path)


def _body(path: str, method: str) -> dict[str, Any] | None:
    parts = [p for p in path.split("/") if p and not p.startswith("{")]
    kind = parts[-1]
    if method == "post":
        return BODIES.get(kind, {})
    if method in ("patch", "put"):
        return PATCHES.get(kind, {})
    return None


async def _snapshot(api: Api, values: dict[str, Any]) -> list[Any]:
    out = []
    base = f"/api/v1/tenants/{values['tenant_id']}"
    for kind in ("", "/offices", "/departments", "/employees", "/extensions", "/tokens", "/cdrs", "/crm/clients",
                 "/crm/fields", "/voicemail/messages",
                 "/ring-groups", "/crm/pipelines", "/crm/deals", "/crm/tasks", "/crm/settings",
                 "/callcenter/queues", "/callcenter/reasons", "/faxes", "/webhooks",
                 f"/callcenter/queues/{values['queue_id']}/callbacks"):
        r = await api.client.get(base + kind, headers=api.admin)
        assert r.status_code == 200
        out.append(r.json())
    return out


async def test_tenant_a_cannot_touch_tenant_b(api: Api, make_tenant: Any) -> None:
    a = await make_tenant("a.example")
    b = await make_tenant("b.example")
    a_ids = await _populate(api, a)
    b_ids = await _populate(api, b)
    before = await _snapshot(api, b_ids)

    paths = api.client._transport.app.openapi()["paths"]
    scoped = {p: ops for p, ops in paths.items() if "{tenant_id}" in p}
    assert len(scoped) >= 11, sorted(scoped)
    assert "/api/v1/tenants/{tenant_id}/cdrs/{cdr_id}/recording" in scoped
    checked = 0
    for path, ops in scoped.items():
        # B's tenant with B's objects, and A's own tenant with B's object ids.
        variants = [_fill(path, b_ids)]
        if re.search(r"\{(?!tenant_id)\w+\}", path):
            variants.append(_fill(path, {**b_ids, "tenant_id": a.id}))
        for method in ops:
            for number, url in enumerate(variants):
                r = await api.client.request(method.upper(), url, headers=a.headers, json=_body(path, method))
                expected = 403 if number == 0 and MONITORING.match(path) else 404  # (A's own tenant: B's ids 404)
                assert r.status_code == expected, f"{method.upper()} {url} -> {r.status_code} {r.text}"
                checked += 1
    assert checked >= 25

    assert await _snapshot(api, b_ids) == before
    # A's own objects still work with A's token (the 404s above are not a blanket failure).
    r = await api.client.get(_fill("/api/v1/tenants/{tenant_id}/extensions/{extension_id}", a_ids), headers=a.headers)
    assert r.status_code == 200
    r = await api.client.get(f"/api/v1/tenants/{a.id}/extensions", headers=a.headers)
    assert {e["tenant_id"] for e in r.json()["items"]} == {a.id}


async def test_missing_tenant_and_foreign_tenant_look_the_same(api: Api, make_tenant: Any) -> None:
    a = await make_tenant("a.example")
    b = await make_tenant("b.example")
    foreign = await api.client.get(f"/api/v1/tenants/{b.id}/offices", headers=a.headers)
    missing = await api.client.get("/api/v1/tenants/987654/offices", headers=a.headers)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"].replace(str(b.id), "N") == missing.json()["detail"].replace("987654", "N")
    # monitoring answers 403 to both, word for word
    foreign = await api.client.get(f"/api/v1/tenants/{b.id}/monitor-sessions", headers=a.headers)
    missing = await api.client.get("/api/v1/tenants/987654/monitor-sessions", headers=a.headers)
    assert foreign.status_code == missing.status_code == 403 and foreign.json() == missing.json()
