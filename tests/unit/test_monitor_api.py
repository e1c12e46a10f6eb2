"""Monitoring's REST: who may ask (the tenant's admins), what a refusal leaves in the audit, the ports on the
database (the supervisor policy, the audit writer)."""

from __future__ import annotations

import time
from typing import Any

from zvonok.monitoring.service import monitor_audit, monitor_policy
from zvonok.telephony.monitor import AuditRecord


async def test_refusals_are_audited_for_the_tenant_asked_about(api: Any, make_tenant: Any) -> None:
    a = await make_tenant("mon-a.example")
    b = await make_tenant("mon-b.example")
    base = f"/api/v1/tenants/{b.id}"
    r = await api.client.post(
        f"{base}/employees",
        headers=b.headers,
        json={"full_name": "Boris", "email": "boris@mon-b.example", "web_password": "boris-password"},
    )
    assert r.status_code == 201, r.text
    r = await api.client.post(
        "/api/v1/auth/login", json={"email": "boris@mon-b.example", "password": "boris-password"}
    )
    employee = {"Authorization": f"Bearer {r.json()['access_token']}"}

    r = await api.client.get(f"{base}/monitor-sessions", headers=a.headers)  # another company's admin
    assert r.status_code == 403, r.text
    r = await api.client.post(f"{base}/monitor-sessions/abc/mode", headers=employee, json={"mode": "barge"})
    assert r.status_code == 403, r.text
    r = await api.client.get(f"{base}/monitor-sessions", headers=b.headers)
    assert r.status_code == 503  # an API-only app: no call engine, no sessions to show
    r = await api.client.post(f"{base}/monitor-sessions/abc/mode", headers=b.headers, json={"mode": "shout"})
    assert r.status_code == 422
    r = await api.client.get(f"{base}/monitor-audit", headers=b.headers)
    assert r.status_code == 200, r.text
    rows = r.json()
    assert [(x["action"], x["via"]) for x in rows] == [("refused", "api"), ("refused", "api")]
    assert "not a supervisor" in rows[0]["detail"] and "/monitor-sessions/abc/mode" in rows[0]["detail"]
    assert "another tenant's account" in rows[1]["detail"]
    r = await api.client.get(f"/api/v1/tenants/{a.id}/monitor-audit", headers=a.headers)
    assert r.json() == []  # A's own audit holds nothing of this
    r = await api.client.get(f"{base}/monitor-audit?limit=0", headers=b.headers)
    assert r.status_code == 422


async def test_policy_and_audit_ports(api: Any, make_tenant: Any) -> None:
    t = await make_tenant("mon-c.example")
    base = f"/api/v1/tenants/{t.id}"
    ids = {}
    for name, role in (("Sveta", "tenant_admin"), ("Artem", "employee"), ("Nobody", None)):
        body: dict[str, Any] = {"full_name": name, "email": f"{name.lower()}@mon-c.example"}
        if role is not None:
            body |= {"web_password": f"{name}-password", "role": role}
        r = await api.client.post(f"{base}/employees", headers=t.headers, json=body)
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    allowed = monitor_policy(api.db)
    assert await allowed(t.id, ids["Sveta"], "722")
    assert not await allowed(t.id, ids["Artem"], "722") and not await allowed(t.id, ids["Nobody"], "722")
    assert not await allowed(t.id, None, "722") and not await allowed(t.id + 1000, ids["Sveta"], "722")
    record = monitor_audit(api.db)
    now = time.time()
    for action, mode in (("start", "listen"), ("mode", "whisper"), ("stop", "whisper")):
        await record(
            AuditRecord(
                tenant_id=t.id,
                session_id="s1",
                call_id="c1",
                supervisor="723",
                agent="722",
                action=action,
                mode=mode,
                via="feature_code",
                at=now,
            )
        )
    r = await api.client.get(f"{base}/monitor-audit", headers=t.headers)
    assert [(x["action"], x["mode"], x["supervisor"], x["agent"], x["session_id"]) for x in r.json()] == [
        ("stop", "whisper", "723", "722", "s1"),
        ("mode", "whisper", "723", "722", "s1"),
        ("start", "listen", "723", "722", "s1"),
    ]
