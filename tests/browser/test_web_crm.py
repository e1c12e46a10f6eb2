"""The CRM in Chromium against a real server with the demo company: Ivan (extension 101, logged in as an
employee) creates a client with a Moscow number, calls that number (SIPp as 101, out through a SIPp
carrier), finds the client by a part of the number and sees the call on the card's timeline with its
recording player. Then the client calls the company's number (a real INVITE from the carrier, ringing
Ivan's SIPp phone): Ivan's page pops the client's card by itself; the delay from the INVITE to the
popup is printed."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from .conftest import CHROMIUM, Console, harness
from .test_web_calls import CARRIER_HOST, calls

pytestmark = pytest.mark.integration
DID = "+74957654321"  # the company's number: rings extension 101
CLIENT = "+74951234567"
IVAN_PASSWORD = "ivan-web-password-1"


@dataclass
class World:
    console: Console
    passwords: dict[str, str]
    carrier_port: int
    ivan_email: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if shutil.which("sipp") is None or not Path(CHROMIUM).exists():
        pytest.fail("SIPp and Debian's chromium are needed: `make peers` installs them")
    tmp = tmp_path_factory.mktemp("web_crm")
    domain = f"crm-{secrets.token_hex(3)}.test"
    database_url = os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    server = harness.ZvonokServer(data_dir=tmp / "data", database_url=database_url,
                                  env={"ZVONOK_DEMO_DOMAIN": domain, "ZVONOK_RECORD_CALLS": "true"})
    demo = json.loads(server.cli("demo", "--no-serve", "--json"))
    tenant_id = int(demo["tenant_id"])
    carrier_port = harness.free_sip_port()
    harness.seed_pstn(tmp / "data", tenant_id, {
        "tariffs": [{"name": "Retail", "plan": True, "rates": [
            {"prefix": "7", "destination": "Russia", "price": "3.00", "increment": "60/60"}]}],
        "trunks": [{"name": "Carrier", "host": CARRIER_HOST, "port": carrier_port}],
        "routes": [{"prefix": "7", "trunk": "Carrier"}],
        "numbers": [{"number": DID, "kind": "extension", "destination": {"number": "101"}}],
        "policies": [{"level": "tenant", "service_class": "international"}],
    }, database_url=database_url)
    server.start()
    try:
        api = f"{server.http_url}/api/v1/tenants/{tenant_id}"
        ext = next(e for e in harness.http_json(f"{api}/extensions", demo["api_token"])["items"] if e["number"] == "101")
        ivan = harness.http_json(f"{api}/employees/{ext['employee_id']}", demo["api_token"], method="PATCH",
                                 body={"web_password": IVAN_PASSWORD})
        yield World(Console(server=server, url=server.http_url, domain=domain, tenant_id=tenant_id,
                            admin_login=demo["admin_login"], admin_password=demo["admin_password"],
                            workdir=tmp / "sipp"),
                    {e["number"]: e["password"] for e in demo["extensions"]}, carrier_port, ivan["email"])
    finally:
        code = server.stop()
        assert code == 0, f"zvonok serve exited with {code}:\n{server.log_tail()}"


def test_a_client_their_calls_and_the_screen_pop(page: Any, world: World, artifacts: Path) -> None:
    console = world.console
    target = f"{harness.LOOPBACK}:{console.server.sip_port}"
    page.goto(console.url + "/login")
    page.fill("#email", world.ivan_email)
    page.fill("#password", IVAN_PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(console.url + "/")
    page.click("button[name=lang][value=en]")  # the demo company speaks Russian
    page.wait_for_selector("html[lang=en]")

    # a new client with a Moscow number written the local way round
    page.click("nav a[href='/crm']")
    page.wait_for_url(console.url + "/crm")
    page.click("#new-client")
    page.fill("#client-name", "Anna Smirnova")
    page.fill("#client-phones", "+7 (495) 123-45-67")
    page.fill("#client-emails", "anna@romashka.example")
    page.click("#save-client")
    page.wait_for_selector("#client-title")
    assert page.locator("#client-phones .phone").inner_text().strip() == CLIENT
    card_url = page.url

    # Ivan calls her: 101 dials 8 495 123-45-67, the carrier answers, 3 s of talk
    carrier = calls.SippProcess("carrier_answer.xml", None, workdir=console.workdir, name="carrier",
                                local_port=world.carrier_port, timeout=60, keys={"codec": "8", "codec_name": "PCMA"},
                                extra=["-i", CARRIER_HOST]).start()
    try:
        result = harness.run_sipp("call_uac.xml", target, workdir=console.workdir, timeout=60,
                                  rows=[calls.caller_row("101", world.passwords["101"], console.domain, "84951234567")],
                                  auth_uri=f"sip:84951234567@{console.domain}", extra=["-d", "3000"],
                                  name="caller_101")
        assert result.successful == 1, result.describe()
        assert carrier.wait_for("SuccessfulCall(C)", 1, timeout=10), carrier.stats()
    finally:
        carrier.kill()

    # found by a part of the number; the call is on her card, with its recording
    page.goto(console.url + "/crm")
    page.fill("#client-search input[name=q]", "123-45")
    page.click("#client-search button[type=submit]")
    page.wait_for_url("**/crm?q=123-45**")
    rows = page.locator("#client-rows tbody tr")
    assert rows.count() == 1 and "Anna Smirnova" in rows.first.inner_text()
    rows.first.locator("a").click()
    page.wait_for_url(card_url)
    for _ in range(30):  # the CDR is written just after the call ends
        if page.locator("#timeline-rows tbody tr").count():
            break
        page.wait_for_timeout(500)
        page.reload()
    row = page.locator("#timeline-rows tbody tr").first
    text = row.inner_text()
    assert CLIENT in text and "Outbound" in text and "Answered" in text, text
    player = row.locator("audio")
    assert player.count() == 1
    duration = page.evaluate("""async () => { const a = document.querySelector('#timeline-rows audio');
        a.preload = 'metadata'; a.load();
        await new Promise(r => { a.onloadedmetadata = r; setTimeout(r, 10000); }); return a.duration; }""")
    assert duration and duration > 2, duration
    page.screenshot(path=str(artifacts / "crm-card.png"), full_page=True)

    # Anna calls the company's number: Ivan's phone rings and his page pops her card
    page.goto(console.url + "/crm")
    page.wait_for_selector("[data-live-events][data-live-state=open]", state="attached")
    port = harness.free_sip_port()
    reg = calls.register_port(target, workdir=console.workdir, number="101", domain=console.domain, port=port,
                              password=world.passwords["101"], name="register_101")
    assert reg.successful == 1, reg.describe()
    desk = calls.SippProcess("call_uas.xml", None, workdir=console.workdir, name="desk_101", local_port=port,
                             timeout=60, keys={"codec": "8", "codec_name": "PCMA"}, extra=["-s", "101"]).start()
    page.evaluate("window.__pops = []; document.body.addEventListener('zv-ScreenPop', "
                  "e => window.__pops.push([Date.now() / 1000, e.detail]))")
    inbound = None
    try:
        invite = time.monotonic()
        inbound = calls.SippProcess("carrier_call_in.xml", target, workdir=console.workdir, name="carrier_in",
                                    rows=[[DID.lstrip("+"), CLIENT.lstrip("+")]], timeout=60,
                                    extra=["-i", CARRIER_HOST, "-mi", CARRIER_HOST, "-d", "1500"]).start()
        page.wait_for_selector("#screen-pop[open]", timeout=15_000)
        popped = time.monotonic() - invite
        (received, event), = page.evaluate("window.__pops")
        # invite_at: the server's clock when it took the INVITE (CallStarted); the browser shares the clock
        print(f"screen pop: card ready {(event['at'] - event['invite_at']) * 1000:.1f} ms after the INVITE, "
              f"in Chromium {(received - event['invite_at']) * 1000:.1f} ms after it "
              f"({popped * 1000:.0f} ms after SIPp was started)")
        assert event["card"]["name"] == "Anna Smirnova" and event["invite_at"] <= event["at"]
        pop = page.locator("#screen-pop")
        assert "Anna Smirnova" in pop.inner_text() and "Ivan" in pop.inner_text()  # she is Ivan's client
        assert pop.locator("#screen-pop-open").get_attribute("href") == card_url.removeprefix(console.url)
        assert pop.locator("[data-pop-calls] li").count() == 1
        assert "Answered" in pop.locator("[data-pop-calls] li").inner_text()
        page.screenshot(path=str(artifacts / "crm-screen-pop.png"), full_page=False)
        assert inbound.wait_for("SuccessfulCall(C)", 1, timeout=20), inbound.stats()
        assert desk.wait_for("SuccessfulCall(C)", 1, timeout=10), desk.stats()
    finally:
        desk.kill()
        if inbound is not None:
            inbound.kill()


def test_the_call_button_rings_ivans_phone_then_the_client(page: Any, world: World, artifacts: Path) -> None:
    """Click-to-call (telephony/originate.py): Ivan's phone (SIPp as 101) rings first and answers, then the
    client's number goes out through the carrier; the card says so, and the call lands on her timeline."""
    console = world.console
    target = f"{harness.LOOPBACK}:{console.server.sip_port}"
    page.goto(console.url + "/login")
    page.fill("#email", world.ivan_email)
    page.fill("#password", IVAN_PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(console.url + "/")
    page.click("button[name=lang][value=en]")
    page.wait_for_selector("html[lang=en]")
    page.goto(console.url + "/crm/new")
    page.fill("#client-name", "Boris Romashkin")
    page.fill("#client-phones", "+7 (495) 765-43-99")
    page.click("#save-client")
    page.wait_for_selector("#client-title")
    card_url = page.url
    number = "+74957654399"
    port = harness.free_sip_port()
    reg = calls.register_port(target, workdir=console.workdir, number="101", domain=console.domain, port=port,
                              password=world.passwords["101"], name="register_101_click")
    assert reg.successful == 1, reg.describe()
    # Ivan's phone answers and hangs up a second later; the carrier answers at once
    desk = calls.SippProcess("call_uas_bye.xml", None, workdir=console.workdir, name="desk_101_click", local_port=port,
                             timeout=60, keys={"codec": "8", "codec_name": "PCMA"}, extra=["-s", "101"]).start()
    carrier = calls.SippProcess("carrier_answer.xml", None, workdir=console.workdir, name="carrier_click",
                                local_port=world.carrier_port, timeout=60, keys={"codec": "8", "codec_name": "PCMA"},
                                extra=["-i", CARRIER_HOST]).start()
    try:
        button = page.locator("#client-phones .call-button")
        assert button.count() == 1 and button.get_attribute("aria-label") == f"Call {number}"
        button.click()
        page.wait_for_selector("#call-status")
        status = page.locator("#call-status").inner_text()
        assert "Your phone is ringing" in status and number in status, status
        assert desk.wait_for("SuccessfulCall(C)", 1, timeout=30), desk.stats()
        assert carrier.wait_for("SuccessfulCall(C)", 1, timeout=30), carrier.stats()
    finally:
        desk.kill()
        carrier.kill()
    page.goto(card_url)
    for _ in range(30):  # the CDR is written just after the call ends
        if page.locator("#timeline-rows tbody tr").count():
            break
        page.wait_for_timeout(500)
        page.reload()
    text = page.locator("#timeline-rows tbody tr").first.inner_text()
    assert number in text and "Outbound" in text and "Answered" in text, text
    page.screenshot(path=str(artifacts / "crm-click-to-call.png"), full_page=True)


def test_a_click_to_call_that_never_became_a_call_is_on_the_card(page: Any, world: World, artifacts: Path) -> None:
    """A click-to-call that failed before any call (here: as zvonok.originates keeps one whose phone was
    not registered) is a row of the client's timeline, in English and in Russian."""
    import asyncio
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    console = world.console
    page.goto(console.url + "/login")
    page.fill("#email", world.ivan_email)
    page.fill("#password", IVAN_PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(console.url + "/")
    page.click("button[name=lang][value=en]")
    page.wait_for_selector("html[lang=en]")
    page.goto(console.url + "/crm/new")
    page.fill("#client-name", "Vera Lastochkina")
    page.fill("#client-phones", "+7 (495) 765-43-88")
    page.click("#save-client")
    page.wait_for_selector("#client-title")
    client_id = int(page.url.split("#")[0].rstrip("/").rsplit("/", 1)[1])
    url = console.server.database_url or f"sqlite+aiosqlite:///{(console.server.data_dir / 'zvonok.db').resolve()}"

    async def journaled() -> None:
        now = datetime.now(UTC)
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(
                    "INSERT INTO originate_requests (tenant_id, call_id, kind, requested_by, extension, to_number,"
                    " client_id, phase, reason, created_at, finished_at, updated_at) VALUES (:t, :c, 'call', '',"
                    " '101', '+74957654388', :client, 'failed', 'not_registered', :at, :at, :at)"),
                    {"t": console.tenant_id, "c": uuid.uuid4().hex, "client": client_id,
                     "at": now if console.server.database_url else now.replace(tzinfo=None)})  # (SQLite: naive UTC)
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as pool:  # (Playwright's loop runs in this thread)
        pool.submit(asyncio.run, journaled()).result()
    page.reload()
    row = page.locator("#timeline-rows tr.click-to-call")
    assert row.count() == 1
    assert "Click-to-call: the employee's phone was not registered" in row.inner_text()
    assert "+74957654388" in row.inner_text()
    page.screenshot(path=str(artifacts / "crm-click-to-call-failed.png"), full_page=True)
    page.click("button[name=lang][value=ru]")
    page.wait_for_selector("html[lang=ru]")
    assert "Звонок из CRM: телефон сотрудника не был зарегистрирован" in page.locator(
        "#timeline-rows tr.click-to-call").inner_text()
