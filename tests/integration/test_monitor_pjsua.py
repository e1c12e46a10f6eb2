"""Supervisor listen / whisper / barge with three real phones (pjsua2) and the audio checked by spectrum.

The customer (721) sends 440 Hz, the agent (722) 620 Hz, the supervisor (723, a tenant admin) 1000 Hz.
The customer calls the agent; the supervisor dials ``*33722``. Listen: the supervisor hears 440 + 620,
nobody hears 1000. Key 5 (RFC 4733) → whisper: the agent hears 1000 + 440, the customer only 620. The REST
API → barge: everyone hears everyone. The supervisor hangs up: customer and agent hear each other only,
as before. A plain employee (the agent) dialing ``*33721`` gets 403, and asking the REST API 403 too; every
step is in the audit. Then the same three phones with the customer's call coming through a call-center
queue the agent is logged in to, monitored over REST in whisper mode.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from . import pjsua_fixtures
from .pjsua_fixtures import PhoneFactory, power, window
from .test_calls_softphone import calls_server

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]

CUSTOMER, AGENT, SUPERVISOR = "721", "722", "723"
TONES = {CUSTOMER: 440.0, AGENT: 620.0, SUPERVISOR: 1000.0}
PHASE = 3.0  # seconds of audio per mode
HEARS = {  # mode -> listener -> the parties it hears
    "listen": {CUSTOMER: {AGENT}, AGENT: {CUSTOMER}, SUPERVISOR: {CUSTOMER, AGENT}},
    "whisper": {CUSTOMER: {AGENT}, AGENT: {CUSTOMER, SUPERVISOR}, SUPERVISOR: {CUSTOMER, AGENT}},
    "barge": {CUSTOMER: {AGENT, SUPERVISOR}, AGENT: {CUSTOMER, SUPERVISOR}, SUPERVISOR: {CUSTOMER, AGENT}},
    "after": {CUSTOMER: {AGENT}, AGENT: {CUSTOMER}},
}

pjsua_phones = pjsua_fixtures.pjsua_phones


@pytest.fixture(scope="module")
def monitor_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    with calls_server(tmp_path_factory, "monitor", [CUSTOMER, AGENT, SUPERVISOR], {}) as running:
        yield running


def api(
    server: tuple[Any, Any], path: str, *, token: str | None = None, method: str = "GET", body: Any = None
) -> Any:
    srv, seeded = server
    return harness.http_json(
        f"{srv.http_url}/api/v1/tenants/{seeded.tenant_id}{path}",
        token or seeded.token,
        method=method,
        body=body,
    )


def status_of(server: tuple[Any, Any], path: str, token: str) -> int:
    try:
        api(server, path, token=token)
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200


def login(server: tuple[Any, Any], email: str, password: str) -> str:
    srv, _ = server
    request = urllib.request.Request(
        f"{srv.http_url}/api/v1/auth/login",
        method="POST",
        data=json.dumps({"email": email, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return str(json.loads(response.read())["access_token"])


def give_extension(server: tuple[Any, Any], number: str, name: str, role: str) -> str:
    """An employee with a web login of ``role`` owning extension ``number``; their e-mail."""
    email = f"{name.lower()}@monitor.example"
    employee = api(
        server,
        "/employees",
        method="POST",
        body={"full_name": name, "email": email, "web_password": "pass-" + name, "role": role},
    )
    (ext,) = [e for e in api(server, f"/extensions?q={number}")["items"] if e["number"] == number]
    api(server, f"/extensions/{ext['id']}", method="PATCH", body={"employee_id": employee["id"]})
    return email



def wait_mode(server: tuple[Any, Any], mode: str | None, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The live sessions once they are [one in ``mode``] (or none, for None)."""
    deadline = time.monotonic() + timeout
    while True:
        sessions = api(server, "/monitor-sessions")
        if [s["mode"] for s in sessions] == ([mode] if mode else []):
            return list(sessions)
        assert time.monotonic() < deadline, sessions
        time.sleep(0.1)


def test_listen_whisper_barge_heard_by_each_phone(
    monitor_server: tuple[Any, Any], pjsua_phones: PhoneFactory
) -> None:
    srv, seeded = monitor_server
    give_extension(monitor_server, SUPERVISOR, "Svetlana", "tenant_admin")
    agent_email = give_extension(monitor_server, AGENT, "Artem", "employee")
    proxy = f"127.0.0.1:{srv.sip_port}"
    phones = {}
    for number, tone in TONES.items():
        phones[number] = p = pjsua_phones(number, tone=tone)
        p.register(number, harness.password_for(number), seeded.domain, proxy)
    customer, agent, supervisor = phones[CUSTOMER], phones[AGENT], phones[SUPERVISOR]

    c_call = customer.call(f"sip:{AGENT}@{seeded.domain}")
    a_call = agent.wait_incoming()
    agent.answer(a_call)
    customer.wait_state(c_call, "CONFIRMED")
    agent.wait_state(a_call, "CONFIRMED")

    # a plain employee may not monitor: by phone (403) nor by REST (403); both audited
    spy = agent.call(f"sip:*33{CUSTOMER}@{seeded.domain}")
    ended = agent.wait_ended(spy)
    refused = [
        e
        for e in agent.history
        if e.get("event") == "call_state" and e.get("call") == spy and e.get("state") == "DISCONNECTED"
    ]
    assert refused and refused[-1]["last_status"] == 403, (ended, refused)
    assert (
        status_of(monitor_server, "/monitor-sessions", login(monitor_server, agent_email, "pass-Artem"))
        == 403
    )

    s_call = supervisor.call(f"sip:*33{AGENT}@{seeded.domain}")
    supervisor.wait_state(s_call, "CONFIRMED")
    (session,) = wait_mode(monitor_server, "listen")
    assert (session["supervisor"], session["agent"]) == (SUPERVISOR, AGENT)
    marks = {"listen": time.monotonic()}
    time.sleep(PHASE)
    supervisor.dtmf(s_call, "5")  # ChanSpy's whisper key
    wait_mode(monitor_server, "whisper")
    marks["whisper"] = time.monotonic()
    time.sleep(PHASE)
    switched = api(
        monitor_server, f"/monitor-sessions/{session['id']}/mode", method="POST", body={"mode": "barge"}
    )
    assert switched["mode"] == "barge"
    marks["barge"] = time.monotonic()
    time.sleep(PHASE)
    supervisor_left = time.monotonic()
    supervisor.hangup(s_call)
    supervisor.wait_ended(s_call)
    wait_mode(monitor_server, None)
    marks["after"] = time.monotonic()
    time.sleep(PHASE)
    marks["end"] = time.monotonic()
    customer.hangup(c_call)
    customer.wait_ended(c_call)
    agent.wait_ended(a_call)
    end_of = {CUSTOMER: marks["end"], AGENT: marks["end"], SUPERVISOR: supervisor_left}  # each one's hang-up
    recordings = {
        CUSTOMER: customer.recording(c_call),
        AGENT: agent.recording(a_call),
        SUPERVISOR: supervisor.recording(s_call),
    }
    order = ["listen", "whisper", "barge", "after", "end"]
    for mode, listeners in HEARS.items():
        start, stop = marks[mode], marks[order[order.index(mode) + 1]]
        if mode == "barge":
            stop = supervisor_left
        for listener, heard in listeners.items():
            end = end_of[listener]
            # from 0.7 s after the switch to 0.4 s before the next one, counted back from the hang-up
            samples = window(recordings[listener], end - start - 0.7, end - stop + 0.4)
            pw = {n: power(samples, f) for n, f in TONES.items() if n != listener}
            loud = [pw[n] for n in heard]
            assert min(loud) > 1e5, (mode, listener, pw)
            for other in set(pw) - heard:
                assert pw[other] < min(loud) / 50, (mode, listener, other, pw)

    audit = api(monitor_server, "/monitor-audit")
    steps = [(a["action"], a["mode"], a["via"]) for a in reversed(audit) if a["session_id"] == session["id"]]
    assert steps == [
        ("start", "listen", "feature_code"),
        ("mode", "whisper", "dtmf"),
        ("mode", "barge", "api"),
        ("stop", "barge", "system"),
    ], audit
    refusals = [(a["supervisor"], a["agent"], a["via"]) for a in audit if a["action"] == "refused"]
    assert (AGENT, CUSTOMER, "feature_code") in refusals, audit
    assert any(via == "api" for _, _, via in refusals), audit


def test_monitoring_started_over_rest_rings_the_supervisor_first(
    monitor_server: tuple[Any, Any], pjsua_phones: PhoneFactory
) -> None:
    """``POST .../monitor-sessions`` (telephony/originate.py): the platform rings the supervisor's phone;
    answered, it joins the agent's call straight in whisper mode: the agent hears the supervisor, the
    customer does not, the supervisor hears both. The customer's call comes through a call-center queue
    the agent is logged in to (the test above: a direct call)."""
    srv, seeded = monitor_server
    owners = {}
    for number, name, role in ((SUPERVISOR, "Svetlana", "tenant_admin"), (AGENT, "Artem", "employee")):
        (ext,) = [e for e in api(monitor_server, f"/extensions?q={number}")["items"] if e["number"] == number]
        if ext["employee_id"] is None:  # (the test above gave them their employees, when it ran)
            give_extension(monitor_server, number, name, role)
            (ext,) = [e for e in api(monitor_server, f"/extensions?q={number}")["items"] if e["number"] == number]
        owners[number] = ext["employee_id"]
    queue = api(monitor_server, "/callcenter/queues", method="POST",
                body={"name": "Support", "number": "790", "wrap_up": 0, "ring_timeout": 20})
    api(monitor_server, f"/callcenter/queues/{queue['id']}/members", method="PUT",
        body={"employee_ids": [owners[AGENT]]})
    api(monitor_server, f"/callcenter/agents/{owners[AGENT]}/login", method="POST", body={})
    proxy = f"127.0.0.1:{srv.sip_port}"
    phones = {}
    for number, tone in TONES.items():
        phones[number] = p = pjsua_phones(number, tone=tone)
        p.register(number, harness.password_for(number), seeded.domain, proxy)
    customer, agent, supervisor = phones[CUSTOMER], phones[AGENT], phones[SUPERVISOR]
    c_call = customer.call(f"sip:790@{seeded.domain}")  # into the queue: the agent is offered the call
    a_call = agent.wait_incoming()
    agent.answer(a_call)
    customer.wait_state(c_call, "CONFIRMED")
    agent.wait_state(a_call, "CONFIRMED")
    deadline = time.monotonic() + 15
    while api(monitor_server, f"/callcenter/agents/{owners[AGENT]}")["status"] != "on_call":
        assert time.monotonic() < deadline, "the agent never got the queue call"
        time.sleep(0.1)

    started = api(monitor_server, "/monitor-sessions", method="POST",
                  body={"extension": AGENT, "supervisor": SUPERVISOR, "mode": "whisper"})
    assert (started["supervisor"], started["agent"], started["mode"]) == (SUPERVISOR, AGENT, "whisper")
    s_call = supervisor.wait_incoming()
    supervisor.answer(s_call)
    supervisor.wait_state(s_call, "CONFIRMED")
    (session,) = wait_mode(monitor_server, "whisper")
    assert (session["supervisor"], session["agent"]) == (SUPERVISOR, AGENT)
    joined = time.monotonic()
    time.sleep(PHASE)
    supervisor_left = time.monotonic()
    supervisor.hangup(s_call)
    supervisor.wait_ended(s_call)
    wait_mode(monitor_server, None)
    time.sleep(1.0)
    end = time.monotonic()
    customer.hangup(c_call)
    customer.wait_ended(c_call)
    agent.wait_ended(a_call)
    recordings = {CUSTOMER: customer.recording(c_call), AGENT: agent.recording(a_call),
                  SUPERVISOR: supervisor.recording(s_call)}
    end_of = {CUSTOMER: end, AGENT: end, SUPERVISOR: supervisor_left}
    for listener, heard in HEARS["whisper"].items():
        samples = window(recordings[listener], end_of[listener] - joined - 0.7, end_of[listener] - supervisor_left + 0.4)
        pw = {n: power(samples, f) for n, f in TONES.items() if n != listener}
        loud = [pw[n] for n in heard]
        assert min(loud) > 1e5, (listener, pw)
        for other in set(pw) - heard:
            assert pw[other] < min(loud) / 50, (listener, other, pw)
    status = harness.http_json(f"{srv.http_url}/api/v1/calls/originate/{started['call_id']}", seeded.token)
    assert status["phase"] == "ended", status
    audit = api(monitor_server, "/monitor-audit")
    steps = [(a["action"], a["mode"], a["via"]) for a in reversed(audit) if a["session_id"] == session["id"]]
    assert steps == [("start", "whisper", "api"), ("stop", "whisper", "system")], audit
