"""A queue supervisor starts monitoring from the wallboard in Chromium, against a real server and SIPp phones.

Olga (104) is a supervisor assigned to the queue Sales, whose agent is Ivan (101); Maria (102) is Support's
agent. Maria calls Ivan (SIPp caller, SIPp callee that answers). Olga's wallboard shows Ivan on a call with
Listen / Whisper / Barge buttons, and not Maria (another queue's). Her first Listen says her phone is not
registered; once her phone (a SIPp callee that answers) is registered, Listen rings it, the page says so,
and the running session appears with its mode; Whisper switches it, Stop ends it (her phone gets the BYE).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import Console, harness
from .test_web_calls import calls
from .test_web_crawl import _json_request, _log_in

pytestmark = pytest.mark.integration

PASSWORD = "olga-web-password"


def _phone(console: Console, number: str, password: str) -> Any:
    """Register ``number`` from a free port and answer its calls there (SIPp's callee, BYE awaited)."""
    target = f"{harness.LOOPBACK}:{console.server.sip_port}"
    port = harness.free_sip_port()
    reg = calls.register_port(
        target,
        workdir=console.workdir,
        number=number,
        domain=console.domain,
        port=port,
        password=password,
        name=f"register_{number}",
    )
    assert reg.successful == 1, reg.describe()
    return calls.SippProcess(
        "call_uas.xml",
        None,
        workdir=console.workdir,
        name=f"phone_{number}",
        local_port=port,
        timeout=120,
        keys={"codec": "8", "codec_name": "PCMA"},
        extra=["-s", number],
    ).start()


def test_a_supervisor_listens_from_the_wallboard(page: Any, console: Console, artifacts: Path) -> None:
    demo = json.loads(console.server.cli("demo", "--no-serve", "--json"))
    token = demo["api_token"]
    passwords = {e["number"]: e["password"] for e in demo["extensions"]}
    base = f"{console.url}/api/v1/tenants/{console.tenant_id}"
    people = {
        e["full_name"]: e["id"] for e in _json_request(f"{base}/employees?limit=100", token=token)["items"]
    }
    ivan, maria, olga = people["Ivan Petrov"], people["Maria Sidorova"], people["Olga Ivanova"]
    _json_request(
        f"{base}/employees/{olga}", "PATCH", token, {"role": "supervisor", "web_password": PASSWORD}
    )
    cc = f"{base}/callcenter"
    queues = {}
    for name, number, agent in (("Sales", "560", ivan), ("Support", "561", maria)):
        queues[name] = _json_request(f"{cc}/queues", "POST", token, {"name": name, "number": number})["id"]
        _json_request(f"{cc}/queues/{queues[name]}/members", "PUT", token, {"employee_ids": [agent]})
        _json_request(f"{cc}/agents/{agent}/login", "POST", token, {})
    _json_request(f"{cc}/queues/{queues['Sales']}/supervisors", "PUT", token, {"employee_ids": [olga]})

    desk = _phone(console, "101", passwords["101"])
    target = f"{harness.LOOPBACK}:{console.server.sip_port}"
    caller = calls.SippProcess(
        "call_uac.xml",
        target,
        workdir=console.workdir,
        name="caller_102",
        timeout=120,
        rows=[calls.caller_row("102", passwords["102"], console.domain, "101")],
        auth_uri=f"sip:101@{console.domain}",
        extra=["-d", "60000"],
    ).start()
    supervisor = None
    try:
        _log_in(page, console, f"olga.ivanova@{console.domain}", PASSWORD)
        page.click("button[name=lang][value=en]")  # the demo company speaks Russian
        page.wait_for_selector("html[lang=en]")
        page.goto(console.url + "/callcenter/wallboard")
        listen = page.locator(f"#wall-agent-{ivan} button[name=mode][value=listen]")
        listen.wait_for(timeout=30_000)  # Ivan's call is up: he is busy, and the buttons are there
        assert "On another call" in page.locator(f"#wall-agent-{ivan}").inner_text()
        assert page.locator(f"#wall-agent-{maria}").count() == 0  # Support's agent is not Olga's
        assert page.locator(f"#wall-queue-{queues['Support']}").count() == 0
        assert page.locator(f"#wall-queue-{queues['Sales']}").count() == 1

        listen.click()  # her phone is not registered yet
        message = page.locator("#monitor-message")
        message.wait_for()
        assert "Your phone (104) is not registered" in message.inner_text()
        assert message.get_attribute("role") == "alert"
        page.screenshot(path=str(artifacts / "wallboard-monitor-error.png"), full_page=True)

        supervisor = _phone(console, "104", passwords["104"])
        page.locator(f"#wall-agent-{ivan} button[name=mode][value=listen]").click()
        page.wait_for_selector("#monitor-message[role=status]")
        assert "Your phone (104) is ringing" in page.locator("#monitor-message").inner_text()
        row = page.locator("#monitor-sessions tbody tr")
        row.wait_for(timeout=30_000)  # answered: the session runs (the body reloads every second)
        assert row.get_attribute("data-mode") == "listen"
        assert (
            "101" in row.inner_text() and "Ivan Petrov" in row.inner_text() and "Listen" in row.inner_text()
        )
        page.screenshot(path=str(artifacts / "wallboard-monitor.png"), full_page=True)

        page.locator("#monitor-sessions button[name=mode][value=whisper]").click()
        page.wait_for_selector("#monitor-sessions tbody tr[data-mode=whisper]")
        page.click("#monitor-sessions button[data-action=stop]")
        page.wait_for_url(console.url + "/callcenter/wallboard")
        page.wait_for_selector("#monitor-sessions", state="detached", timeout=20_000)
        assert supervisor.wait_for("SuccessfulCall(C)", 1, timeout=20), supervisor.stats()  # the BYE came
        audit = _json_request(f"{base}/monitor-audit", token=token)
        assert [(x["action"], x["mode"], x["via"]) for x in audit if x["action"] != "refused"][:3] == [
            ("stop", "whisper", "web"),
            ("mode", "whisper", "web"),
            ("start", "listen", "api"),
        ]
        page.set_viewport_size({"width": 375, "height": 800})
        page.screenshot(path=str(artifacts / "wallboard-monitor-phone.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
    finally:
        caller.kill()
        desk.kill()
        if supervisor is not None:
            supervisor.kill()
