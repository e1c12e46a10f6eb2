"""The agent's panel (/me/agent) in Chromium against a real server, with a real call.

Anna is an agent of the queue Support, whose number the company's DID reaches from a carrier (SIPp on
127.0.0.2). She opens her panel from the menu, logs in to the queue, goes Not ready for lunch and comes
back. Then a known client calls the DID: her phone (SIPp, registered) rings for four seconds before it
answers, and the panel shows the caller's number and the CRM client's name while it rings and while they
talk; when the caller hangs up, the wrap-up's countdown. Screenshots at desktop and phone width.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import CHROMIUM, harness
from .test_web_calls import calls

pytestmark = pytest.mark.integration

AGENT = "7301"
DID = "+74957656301"
CLIENT = "+79165550101"
QUEUE = "560"
CARRIER = "127.0.0.2"
PASSWORD = "anna-web-password"
RING_MS = 4000  # the agent's phone rings this long before it answers: the panel shows the offer
TALK_MS = 6000  # then the caller talks this long and hangs up


@dataclass
class World:
    server: Any  # harness.ZvonokServer
    url: str
    api: str  # the tenant's REST base
    token: str
    domain: str
    workdir: Path
    agent_id: int
    email: str

    @property
    def target(self) -> str:
        return f"{harness.LOOPBACK}:{self.server.sip_port}"

    def call(self, path: str, body: Any = None, method: str | None = None) -> Any:
        return harness.http_json(self.api + path, self.token, method=method or ("POST" if body is not None else "GET"),
                                 body=body)


def _snapshot_loads(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:  # noqa: S310 - our own loopback server
        for line in answer.read().decode().splitlines():
            if line.startswith("zvonok_routing_snapshot_loads_total "):
                return float(line.split()[1])
    return 0.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if shutil.which("sipp") is None or not Path(CHROMIUM).exists():
        pytest.fail("SIPp and Debian's chromium are needed: `make peers` installs them")
    tmp = tmp_path_factory.mktemp("agent_panel")
    data_dir = tmp / "data"
    database_url = os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(data_dir, domain=f"agent-{secrets.token_hex(3)}.test", numbers=[AGENT],
                          database_url=database_url)
    ids = harness.seed_pstn(data_dir, seeded.tenant_id, {
        "offices": [{"name": "Moscow", "area_code": "495", "timezone": "Europe/Moscow"}],
        "employees": [{"name": "Anna Agent", "office": "Moscow", "extension": AGENT}],
        "trunks": [{"name": "Carrier", "host": CARRIER, "port": harness.free_sip_port()}],
        "numbers": [{"number": DID, "office": "Moscow", "kind": "extension", "destination": {"number": AGENT}}],
    }, database_url=database_url)
    server = harness.ZvonokServer(data_dir=data_dir, database_url=database_url)
    server.start()
    try:
        world = World(server=server, url=server.http_url, api=f"{server.http_url}/api/v1/tenants/{seeded.tenant_id}",
                      token=seeded.token, domain=seeded.domain, workdir=tmp / "sipp",
                      agent_id=ids["employees"]["Anna Agent"], email=f"anna@{seeded.domain}")
        world.workdir.mkdir(parents=True, exist_ok=True)
        world.call(f"/employees/{world.agent_id}", {"email": world.email, "web_password": PASSWORD}, method="PATCH")
        queue = world.call("/callcenter/queues", {"name": "Support", "number": QUEUE, "wrap_up": 20, "ring_timeout": 20})
        world.call(f"/callcenter/queues/{queue['id']}/members", {"employee_ids": [world.agent_id]}, method="PUT")
        world.call("/callcenter/reasons", {"name": "Lunch"})
        world.call("/crm/clients", {"name": "Boris Client", "phones": [{"number": CLIENT}]})
        loads = _snapshot_loads(world.url)
        number_id = next(n["id"] for n in world.call("/numbers?limit=100")["items"] if n["number"] == DID)
        world.call(f"/numbers/{number_id}", {"destination_kind": "queue", "destination": {"number": QUEUE}},
                   method="PATCH")
        deadline = time.monotonic() + 30
        while _snapshot_loads(world.url) <= loads:
            assert time.monotonic() < deadline, "the routing snapshot was not reloaded"
            time.sleep(0.05)
        yield world
    finally:
        assert server.stop() == 0, server.log_tail()


def _agent_phone(world: World) -> Any:
    """The agent's phone: registered; rings RING_MS, answers, and waits for the BYE."""
    scenario = world.workdir / "late_answer.xml"
    text = (harness.SCENARIOS / "call_uas.xml").read_text()
    marker = "  <send retrans=\"500\">"  # the 200 OK follows the 180
    assert text.count(marker) == 1
    scenario.write_text(text.replace(marker, f'  <pause milliseconds="{RING_MS}"/>\n\n{marker}'))
    port = harness.free_sip_port()
    reg = calls.register_port(world.target, workdir=world.workdir, number=AGENT, domain=world.domain, port=port,
                              name=f"register_{AGENT}")
    assert reg.successful == 1, reg.describe()
    return calls.SippProcess(scenario, None, workdir=world.workdir, name=f"phone_{AGENT}", local_port=port,
                             timeout=120, keys={"codec": "8", "codec_name": "PCMA"}, extra=["-s", AGENT]).start()


def _close_screen_pop(page: Any) -> None:
    """The CRM's screen pop (a modal dialog) opens on the agent's page too when their phone rings."""
    if page.locator("#screen-pop[open]").count():
        page.click("#screen-pop [data-pop-close]")


def test_an_agent_works_a_real_call_from_the_panel(page: Any, world: World, artifacts: Path) -> None:
    page.goto(world.url + "/login")
    page.fill("#email", world.email)
    page.fill("#password", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(world.url + "/")
    if page.locator("html").get_attribute("lang") != "en":
        page.click("button[name=lang][value=en]")
        page.wait_for_selector("html[lang=en]")
    page.click("nav.sections a[href='/me/agent']")  # the menu has the panel for an agent
    page.wait_for_url(world.url + "/me/agent")
    page.wait_for_selector("#live[data-live-state=open]")
    status = page.locator("#agent-status")
    assert status.inner_text() == "Offline"
    page.click("#agent-queues button:has-text('Log in')")
    page.wait_for_url(world.url + "/me/agent")
    assert status.inner_text() == "Available"
    assert page.locator("#agent-queues li").get_attribute("data-logged-in") == "true"
    page.wait_for_function("document.getElementById('agent-clock').textContent !== '0:00'")  # the clock runs
    page.screenshot(path=str(artifacts / "agent-panel.png"), full_page=True)

    page.select_option("#agent-reason-choice", "Lunch")
    page.click("#agent-not-ready")
    page.wait_for_selector("#agent-status.not_ready")
    assert "(Lunch)" in page.locator("#agent-state").inner_text()
    page.screenshot(path=str(artifacts / "agent-panel-not-ready.png"), full_page=True)
    page.click("#agent-ready")
    page.wait_for_selector("#agent-status.available")
    agent = world.call(f"/callcenter/agents/{world.agent_id}")
    assert agent["status"] == "available", agent

    phone = _agent_phone(world)
    caller = calls.SippProcess("carrier_call_in.xml", world.target, workdir=world.workdir, name="client_call",
                               timeout=60, rows=[[DID.lstrip("+"), CLIENT.lstrip("+")]],
                               extra=["-i", CARRIER, "-mi", CARRIER, "-d", str(TALK_MS)]).start()
    try:
        # offered: the phone rings, the panel names the caller (the websocket's event reloads it at once)
        page.wait_for_selector("#agent-status.ringing", timeout=15_000)
        card = page.locator("#agent-caller")
        assert "Your phone rings for" in card.inner_text() and "Support" in card.inner_text()
        assert CLIENT.lstrip("+") in page.locator("#agent-caller-number").inner_text()
        assert page.locator("#agent-caller-client a").inner_text() == "Boris Client"
        _close_screen_pop(page)
        page.screenshot(path=str(artifacts / "agent-panel-ringing.png"), full_page=True)
        # answered: on the line with the same caller
        page.wait_for_selector("#agent-status.on_call", timeout=15_000)
        assert "On the line" in card.inner_text() and "Boris Client" in card.inner_text()
        _close_screen_pop(page)
        page.screenshot(path=str(artifacts / "agent-panel-on-call.png"), full_page=True)
        client = page.locator("#agent-caller-client a").get_attribute("href")
        # the caller hangs up: wrap-up, counting down
        page.wait_for_selector("#agent-status.wrap_up", timeout=20_000)
        assert page.locator("#agent-caller").count() == 0
        first = page.locator("#agent-wrap-up").inner_text()
        assert "new calls in 0:" in first, first
        page.wait_for_function(f"document.getElementById('agent-wrap-up').textContent !== {json.dumps(first)}")
        _close_screen_pop(page)
        page.screenshot(path=str(artifacts / "agent-panel-wrap-up.png"), full_page=True)
        assert caller.wait_for("SuccessfulCall(C)", 1, timeout=20), caller.stats()
    finally:
        caller.kill()
        phone.kill()
    assert client is not None and client.startswith("/crm/")
    page.set_viewport_size({"width": 375, "height": 800})
    page.screenshot(path=str(artifacts / "agent-panel-phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.click("#agent-queues button:has-text('Log out')")
    page.wait_for_selector("#agent-status.offline")
