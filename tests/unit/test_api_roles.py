"""Least privilege per role, route by route: every route of the app (as ``zvonok serve`` mounts them) is
in :data:`ACCESS`, so a new route fails this test until someone decides who may use it.

An employee may read the company directory (the tenant, offices, departments, colleagues' names and
extensions — a phone book), their own devices, calls, recordings and PIN, and set their own
extension's SIP password. Not trunks, numbers, routes, policies, tariffs, billing, reports, tokens,
other people's devices or calls: those answer 403 (another tenant's things still answer 404).

A supervisor (role ``supervisor``, the call center's) is walked the same way: an employee's rights plus
the :data:`SUPERVISE` routes (monitoring here; the call center's own routes in
tests/unit/test_callcenter_supervisor.py), and no configuration at all.
"""

from __future__ import annotations

import io
import re
import time
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from zvonok.analytics import http as analytics_http
from zvonok.api.app import create_app
from zvonok.api.ws import events_router
from zvonok.bus import LocalBus
from zvonok.cdr import http as cdr_http
from zvonok.cdr import service as cdr_service
from zvonok.cdr.state import CallRecord
from zvonok.conference import http as conference_http
from zvonok.config import Settings
from zvonok.crm import http as crm_http
from zvonok.fax import http as fax_http
from zvonok.ivr import http as ivr_http
from zvonok.monitoring import http as monitoring_http
from zvonok.pstn import http as pstn_http
from zvonok.ringgroup import http as ring_group_http
from zvonok.storage.db import Database
from zvonok.telephony import features_http, hold_music_http
from zvonok.telephony.events import CallStarted, Direction, Disposition, HangupSide, Party
from zvonok.telephony.http import registrations_router
from zvonok.telephony.location import Binding, Location
from zvonok.telephony.park import Parking
from zvonok.telephony.voicemail import NewMessage
from zvonok.voicemail import http as voicemail_http
from zvonok.voicemail.service import VoicemailFiles, VoicemailStore
from zvonok.webhooks import http as webhooks_http

PUBLIC = "public"  # no token needed
ANY = "any"  # any valid token
PLATFORM = "platform"  # platform admins only
ADMIN = "admin"  # the tenant's admins (and platform admins)
MEMBER = "member"  # anyone of the tenant: the directory
OWN = "own"  # anyone of the tenant, an employee for their own things only
SUPERVISE = "supervise"  # the tenant's supervisors and admins: 403 for an employee (audited for monitoring)
# every account of the tenant works with these (the CRM's clients, deals, tasks and e-mails; voicemail):
# not walked here, their own rules (owners, a mailbox's extension, another tenant's 404) are tested in
# test_crm*.py and test_voicemail_api.py
TEAM = "team"

ACCESS: dict[str, str] = {
    "openapi": PUBLIC, "swagger_ui_html": PUBLIC, "swagger_ui_redirect": PUBLIC, "redoc_html": PUBLIC,
    "healthz": PUBLIC, "metrics": PUBLIC, "login": PUBLIC,
    "me": ANY,
    "create_tenant": PLATFORM, "list_tenants": PLATFORM, "delete_tenant": PLATFORM,
    "get_tenant": MEMBER, "update_tenant": ADMIN,
    "create_office": ADMIN, "list_offices": MEMBER, "get_office": MEMBER, "update_office": ADMIN,
    "delete_office": ADMIN,
    "create_department": ADMIN, "list_departments": MEMBER, "get_department": MEMBER,
    "update_department": ADMIN, "delete_department": ADMIN,
    "create_employee": ADMIN, "list_employees": MEMBER, "get_employee": MEMBER, "update_employee": ADMIN,
    "delete_employee": ADMIN,
    "create_extension": ADMIN, "list_extensions": MEMBER, "get_extension": MEMBER, "update_extension": OWN,
    "delete_extension": ADMIN,
    "create_token": ADMIN, "list_tokens": ADMIN, "revoke_token": ADMIN,
    "list_registrations": OWN, "tenant_events": OWN,
    "list_cdrs": OWN, "export_cdrs": OWN, "get_cdr": OWN, "get_recording": OWN,
    "list_trunks": ADMIN, "create_trunk": ADMIN, "get_trunk": ADMIN, "update_trunk": ADMIN,
    "delete_trunk": ADMIN, "trunk_status": ADMIN,
    "list_platform_trunks": PLATFORM, "create_platform_trunk": PLATFORM, "get_platform_trunk": PLATFORM,
    "update_platform_trunk": PLATFORM, "delete_platform_trunk": PLATFORM, "platform_trunk_status": PLATFORM,
    "create_number": PLATFORM, "list_pool": PLATFORM, "get_pool_number": PLATFORM,
    "update_pool_number": PLATFORM, "delete_pool_number": PLATFORM, "assign_number": PLATFORM,
    "release_number": PLATFORM,
    "list_numbers": ADMIN, "get_number": ADMIN, "update_number": ADMIN,
    "list_routes": ADMIN, "create_route": ADMIN, "get_route": ADMIN, "update_route": ADMIN, "delete_route": ADMIN,
    "list_platform_routes": PLATFORM, "create_platform_route": PLATFORM, "get_platform_route": PLATFORM,
    "update_platform_route": PLATFORM, "delete_platform_route": PLATFORM,
    "list_policies": ADMIN,
    "get_tenant_policy": ADMIN, "put_tenant_policy": ADMIN, "delete_tenant_policy": ADMIN,
    "get_office_policy": ADMIN, "put_office_policy": ADMIN, "delete_office_policy": ADMIN,
    "get_department_policy": ADMIN, "put_department_policy": ADMIN, "delete_department_policy": ADMIN,
    "get_employee_policy": ADMIN, "put_employee_policy": ADMIN, "delete_employee_policy": ADMIN,
    "get_pin": OWN, "set_pin": OWN, "delete_pin": OWN,
    "list_tariffs": PLATFORM, "create_tariff": PLATFORM, "get_tariff": PLATFORM, "update_tariff": PLATFORM,
    "delete_tariff": PLATFORM, "list_rates": PLATFORM, "import_rates": PLATFORM, "export_rates": PLATFORM,
    "get_billing": ADMIN, "set_billing": PLATFORM,
    "cost_report": ADMIN, "cost_report_csv": ADMIN, "statement": ADMIN,
    "create_conference": ADMIN, "list_conferences": ADMIN, "get_conference": ADMIN, "update_conference": ADMIN,
    "delete_conference": ADMIN, "list_conference_members": ADMIN, "mute_conference_member": ADMIN,
    "unmute_conference_member": ADMIN, "kick_conference_member": ADMIN,
    "create_ring_group": ADMIN, "list_ring_groups": ADMIN, "get_ring_group": ADMIN, "update_ring_group": ADMIN,
    "delete_ring_group": ADMIN,
    "get_hold_music": ADMIN, "put_hold_music": ADMIN, "delete_hold_music": ADMIN, "get_hold_music_audio": ADMIN,
    "list_feature_codes": MEMBER, "list_parked_calls": MEMBER,  # what colleagues dial to take a parked call
    "create_ivr_menu": ADMIN, "list_ivr_menus": ADMIN, "get_ivr_menu": ADMIN, "update_ivr_menu": ADMIN,
    "delete_ivr_menu": ADMIN, "put_ivr_greeting": ADMIN, "delete_ivr_greeting": ADMIN, "get_ivr_greeting": ADMIN,
    "get_forwarding": OWN, "put_forwarding": OWN,
    "list_faxes": ADMIN, "get_fax": ADMIN, "get_fax_pdf": ADMIN, "send_fax": ADMIN,
    # voicemail: an employee uses and sets their own mailbox (not another's); admins set up and remove any
    "get_mailbox": OWN, "put_mailbox": OWN, "delete_mailbox": ADMIN, "put_greeting": OWN, "get_greeting": OWN,
    "delete_greeting": OWN, "list_messages": OWN, "get_message": OWN, "get_message_audio": OWN,
    "patch_message": OWN, "delete_message": OWN, "get_smtp": ADMIN, "put_smtp": ADMIN, "delete_smtp": ADMIN,
    # supervisor monitoring (telephony/monitor.py): supervisors and admins; an employee's attempt is audited
    "list_sessions": SUPERVISE, "switch_mode": SUPERVISE, "list_audit": SUPERVISE, "start_session": SUPERVISE,
    "stop_session": SUPERVISE,
    # the CRM (crm/http.py, sales_http.py, mail_http.py): the company's settings are the admins'
    "import_clients": ADMIN, "export_clients": ADMIN, "create_field": ADMIN, "delete_field": ADMIN,
    "create_pipeline": ADMIN, "update_pipeline": ADMIN, "delete_pipeline": ADMIN, "add_stage": ADMIN,
    "update_stage": ADMIN, "delete_stage": ADMIN, "put_settings": ADMIN,
    "get_imap": ADMIN, "put_imap": ADMIN, "delete_imap": ADMIN, "test_imap": ADMIN,
    "create_client": TEAM, "list_clients": TEAM, "get_client": TEAM, "update_client": TEAM, "delete_client": TEAM,
    "merge_clients": TEAM, "list_notes": TEAM, "add_note": TEAM, "client_calls": TEAM, "screen_card": TEAM,
    "list_fields": TEAM, "list_pipelines": TEAM, "get_pipeline": TEAM, "create_deal": TEAM, "list_deals": TEAM,
    "get_deal": TEAM, "update_deal": TEAM, "delete_deal": TEAM, "set_step": TEAM, "move_deal": TEAM,
    "deal_history": TEAM, "list_payments": TEAM, "add_payment": TEAM, "delete_payment": TEAM, "create_task": TEAM,
    "list_invoices": TEAM, "create_invoice": TEAM, "get_invoice": TEAM, "update_invoice": TEAM,
    "cancel_invoice": TEAM, "pay_invoice": TEAM, "import_payments": TEAM,
    "get_payment_hook": ADMIN, "enable_payment_hook": ADMIN, "disable_payment_hook": ADMIN, "notify_payment": PUBLIC,
    "list_tasks": TEAM, "get_task": TEAM, "update_task": TEAM, "delete_task": TEAM, "get_settings": TEAM,
    "get_dashboard": TEAM, "send_email": TEAM, "reply": TEAM, "list_emails": TEAM, "client_timeline": TEAM,
    # outgoing webhooks (webhooks/http.py): the company's integrations are the admins'
    "create_webhook": ADMIN, "list_webhooks": ADMIN, "get_webhook": ADMIN, "update_webhook": ADMIN,
    "delete_webhook": ADMIN, "list_webhook_deliveries": ADMIN, "ping_webhook": ADMIN,
    # the analytics store (analytics/http.py): the whole company's calls, deals and payments
    "start_analytics_export": ADMIN, "get_analytics_export": ADMIN, "download_analytics_export": ADMIN,
}
# Bodies for the routes an employee may change (their own things).
OWN_BODIES: dict[str, Any] = {
    "update_extension": {"sip_password": "olga-new-sip-pw"}, "set_pin": {"pin": "4826"},
    "put_forwarding": {"dnd": True}, "switch_mode": {"mode": "listen"},
    "start_session": {"extension": "101", "mode": "listen"}, "put_mailbox": {"pin": "2468"},
    "patch_message": {"read": True}, "put_greeting": b"",  # bytes: sent as the raw body (filled in below)
}


def wav_bytes(seconds: float = 0.5, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(b"\x10\x00" * int(seconds * rate))
    return out.getvalue()


async def _message(db: Database, settings: Settings, tenant_id: int, number: str, caller: str) -> int:
    """A voicemail message in the mailbox of ``number``, as the engine leaves one."""
    store = VoicemailStore(db, VoicemailFiles((settings.data_dir / "voicemail").resolve()))
    box = await store.mailbox(tenant_id, number)
    assert box is not None
    box.directory.mkdir(parents=True, exist_ok=True)
    path = box.directory / f"{caller}.wav"
    path.write_bytes(wav_bytes())
    return await store.store(box, NewMessage(call_id=caller, caller_number=caller, caller_name="", duration=0.5,
                                             file=path))


@dataclass
class Setup:
    client: httpx.AsyncClient
    app: Any
    location: Location


@pytest.fixture
async def setup(db: Database, settings: Settings) -> AsyncIterator[Setup]:
    """The app with every router ``zvonok serve`` mounts, and a location we can fill."""
    location = Location()
    app = create_app(settings, db, routers=[
        registrations_router(location), cdr_http.router, events_router(LocalBus()), pstn_http.router,
        conference_http.router, hold_music_http.router, features_http.router, ivr_http.router, ring_group_http.router,
        fax_http.router, monitoring_http.router, crm_http.router, crm_http.hooks_router, voicemail_http.router,
        webhooks_http.router, analytics_http.router])
    app.state.parking = Parking(None)  # type: ignore[arg-type]  # the lot alone: no call engine here
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://zvonok.test") as client:
        yield Setup(client, app, location)


async def _cdr(db: Database, settings: Settings, tenant_id: int, caller: Party, callee: str) -> int:
    rec = settings.data_dir / "recordings" / f"{uuid.uuid4().hex}.wav"
    rec.parent.mkdir(parents=True, exist_ok=True)
    rec.write_bytes(b"RIFF")
    record = CallRecord.started(CallStarted(
        tenant_id=tenant_id, call_id=uuid.uuid4().hex, at=1e9, caller=caller, callee_number=callee,
        direction=Direction.INTERNAL))
    record.recording_path = rec.name
    finished = record.finish(at=1e9 + 5, disposition=Disposition.ANSWERED, hangup_side=HangupSide.CALLER, cause="n")
    async with db.session() as session:
        cdr = await cdr_service.write_cdr(session, tenant_id, finished)
        await session.commit()
    assert cdr is not None
    return cdr.id


def _fill(path: str, values: dict[str, int | str]) -> str:
    def sub(m: re.Match[str]) -> str:
        assert m.group(1) in values, f"give a sample value for {{{m.group(1)}}} ({path})"
        return str(values[m.group(1)])

    return re.sub(r"\{(\w+)\}", sub, path)


@pytest.mark.parametrize("role", ["employee", "supervisor"])
async def test_each_route_gives_an_employee_only_what_is_theirs(
    setup: Setup, db: Database, settings: Settings, api: Any, role: str
) -> None:
    client = setup.client
    platform = api.admin
    r = await client.post("/api/v1/tenants", headers=platform, json={"name": "Roles", "sip_domain": "roles.example"})
    tid = r.json()["id"]
    base = f"/api/v1/tenants/{tid}"
    r = await client.post(f"{base}/tokens", headers=platform, json={"name": "admin"})
    admin = {"Authorization": f"Bearer {r.json()['token']}"}

    async def post(path: str, body: dict[str, Any], headers: dict[str, str] = admin) -> int:
        r = await client.post(path, headers=headers, json=body)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    office = await post(f"{base}/offices", {"name": "HQ"})
    dept = await post(f"{base}/departments", {"name": "Sales"})
    olga = await post(f"{base}/employees", {"full_name": "Olga", "email": "olga@roles.example",
                                            "web_password": "olga-password", "role": role})
    petr = await post(f"{base}/employees", {"full_name": "Petr", "email": "petr@roles.example"})
    olga_ext = await post(f"{base}/extensions", {"number": "101", "display_name": "Olga", "employee_id": olga})
    petr_ext = await post(f"{base}/extensions", {"number": "102", "display_name": "Petr", "employee_id": petr})
    token = await post(f"{base}/tokens", {"name": "script"})
    trunk = await post(f"{base}/trunks", {"name": "T", "host": "sip.carrier.example", "username": "acme"})
    route = await post(f"{base}/routes", {"trunk_id": trunk})
    number = await post("/api/v1/platform/numbers", {"number": "+74950000001"}, platform)
    r = await client.post(f"/api/v1/platform/numbers/{number}/assign", headers=platform, json={"tenant_id": tid})
    assert r.status_code == 200, r.text
    tariff = await post("/api/v1/platform/tariffs", {"name": "Retail"}, platform)
    menu = await post(f"{base}/ivr-menus", {"name": "Main"})
    r = await client.put(f"{base}/employees/{petr}/pin", headers=admin, json={"pin": "8362"})
    assert r.status_code == 200, r.text
    olga_cdr = await _cdr(db, settings, tid, Party(number="101", employee_id=olga, extension_id=olga_ext), "102")
    petr_cdr = await _cdr(db, settings, tid, Party(number="102", employee_id=petr, extension_id=petr_ext), "7777123")
    now = time.time()
    for ext, host in ((olga_ext, "192.0.2.1"), (petr_ext, "198.51.100.7")):
        setup.location.put(Binding(
            tenant_id=tid, extension_id=ext, aor=f"{ext}@roles.example", contact=f"sip:{ext}@{host}",
            expires_at=now + 600, registered_at=now, source=f"udp:{host}:5060", user_agent=f"Phone of {ext}"))

    for ext in (olga_ext, petr_ext):
        r = await client.put(f"{base}/extensions/{ext}/voicemail", headers=admin, json={"pin": "1357"})
        assert r.status_code == 200, r.text
    olga_message = await _message(db, settings, tid, "101", "+74950000101")
    petr_message = await _message(db, settings, tid, "102", "7777123")

    r = await client.post("/api/v1/auth/login", json={"email": "olga@roles.example", "password": "olga-password"})
    emp = {"Authorization": f"Bearer {r.json()['access_token']}"}
    common = {"tenant_id": tid, "office_id": office, "department_id": dept, "token_id": token, "trunk_id": trunk,
              "route_id": route, "number_id": number, "tariff_id": tariff, "room_id": 1, "call_id": 1,
              "menu_id": menu, "group_id": 1, "fax_id": 1, "session_id": 1,
              "field_id": 1, "pipeline_id": 1, "stage_id": 1, "webhook_id": 1}
    own = {**common, "employee_id": olga, "extension_id": olga_ext, "cdr_id": olga_cdr, "message_id": olga_message,
           "kind": "busy"}
    others = {**common, "employee_id": petr, "extension_id": petr_ext, "cdr_id": petr_cdr,
              "message_id": petr_message, "kind": "busy"}

    routes = list(iter_route_contexts(setup.app.routes))
    unclassified = sorted(str(rc.name) for rc in routes if rc.name not in ACCESS)
    assert not unclassified, f"decide who may use these routes (ACCESS): {unclassified}"
    walked = 0
    for rc in routes:
        level = ACCESS[str(rc.name)]
        if not isinstance(rc.original_route, APIRoute) or level in (PUBLIC, TEAM):
            continue  # the websocket's own-calls view is tested in test_ws.py
        for method in sorted(rc.methods or ()):
            walked += 1
            path = str(rc.path)
            body = OWN_BODIES.get(str(rc.name), {}) if method in ("POST", "PUT", "PATCH") else None
            if body == b"":
                body = wav_bytes()

            async def call(
                values: dict[str, int | str], path: str = path, method: str = method, body: Any = body
            ) -> httpx.Response:
                if isinstance(body, bytes):
                    return await client.request(method, _fill(path, values), headers=emp, content=body)
                return await client.request(method, _fill(path, values), headers=emp, json=body)

            what = f"{method} {path} as {role}"
            if level == SUPERVISE:
                r = await call(own)
                if role == "employee":
                    assert r.status_code == 403, f"{what}: {r.status_code} {r.text}"
                else:  # the audit, or no call engine (503) / no such session (404) in this API-only app
                    assert r.status_code in (200, 404, 503), f"{what}: {r.status_code} {r.text}"
                    assert r.status_code != 404 or "monitoring session" in r.text, what
            elif level in (PLATFORM, ADMIN):
                r = await call(own)
                assert r.status_code == 403, f"{what}: {r.status_code} {r.text}"
                assert set(r.json()) == {"detail"}, what
                if level == PLATFORM:
                    r = await client.request(method, _fill(path, own), headers=admin, json={} if method != "GET" else None)
                    assert r.status_code == 403, f"tenant admin: {what}: {r.status_code} {r.text}"
            elif level in (ANY, MEMBER):
                assert method == "GET", f"{what}: an employee may only read the directory"
                r = await call(own)
                assert r.status_code == 200, f"{what}: {r.status_code} {r.text}"
                if "{" in path.removeprefix("/api/v1/tenants/{tenant_id}"):
                    r = await call(others)  # a colleague's directory entry is in the phone book
                    assert r.status_code == 200, f"{what}: {r.status_code} {r.text}"
            else:
                r = await call(own)
                assert r.status_code in (200, 204), f"{what}: {r.status_code} {r.text}"
                if re.search(r"\{(employee_id|extension_id|cdr_id|message_id)\}", path):
                    r = await call(others)
                    assert r.status_code in (403, 404), f"{what}, a colleague's: {r.status_code} {r.text}"
                else:  # a list: only Olga's things in it
                    text = r.text
                    assert "198.51.100.7" not in text and f"Phone of {petr_ext}" not in text, f"{what}: {text}"
                    assert "7777123" not in text, f"{what}: a colleague's call: {text}"
    assert walked >= 90
    r = await client.get(f"{base}/monitor-audit", headers=admin)
    refused = [x["detail"] for x in r.json() if x["action"] == "refused"]
    if role == "employee":  # each of her five tries at monitoring (list, start, switch, stop, audit), and why
        assert len(refused) == 5 and all(d.endswith(": not a supervisor") for d in refused), refused
    else:
        assert refused == []

    # What Olga does see of her own: her phone and her call.
    r = await client.get(f"{base}/registrations", headers=emp)
    assert [b["extension_id"] for b in r.json()["items"]] == [olga_ext]
    r = await client.get(f"{base}/cdrs", headers=emp)
    assert [c["id"] for c in r.json()["items"]] == [olga_cdr]
    # An admin sees everyone's devices.
    r = await client.get(f"{base}/registrations", headers=admin)
    assert sorted(b["extension_id"] for b in r.json()["items"]) == sorted([olga_ext, petr_ext])
