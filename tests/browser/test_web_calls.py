"""The calls and reports pages in Chromium against a real server that records calls: a demo extension (SIPp) calls a
Moscow number through a SIPp carrier; the call shows up in "calls in progress" while it is up (pushed
over the websocket, no reload), then in the history with its cost; its recording plays (and seeks) in
the detail page's <audio> element. Then the cost report's chart and the monthly statement show it."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import CHROMIUM, Console, harness, log_in

pytestmark = pytest.mark.integration


def _load_calls() -> Any:
    """bench/_calls.py (SIPp in the background), loaded once as the integration tests load it."""
    name = "zvonok_bench_calls"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, harness.ROOT / "bench" / "_calls.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


calls: Any = _load_calls()
CARRIER_HOST = "127.0.0.2"  # a trunk is known by its address: the carrier is not on the phones' 127.0.0.1


@dataclass
class World:
    console: Console
    passwords: dict[str, str]  # the demo extensions' SIP passwords
    carrier_port: int  # the SIPp carrier on 127.0.0.2 that takes the company's calls out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Like conftest's ``console``, with call recording on, and an outside world: a carrier trunk that
    every Russian number (+7...) goes out through, priced 3.00 RUB a minute by the company's plan."""
    if shutil.which("sipp") is None or not Path(CHROMIUM).exists():
        pytest.fail("SIPp and Debian's chromium are needed: `make peers` installs them")
    tmp = tmp_path_factory.mktemp("web_calls")
    domain = f"calls-{secrets.token_hex(3)}.test"
    database_url = os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    server = harness.ZvonokServer(data_dir=tmp / "data", database_url=database_url,
                                  env={"ZVONOK_DEMO_DOMAIN": domain, "ZVONOK_RECORD_CALLS": "true"})
    demo = json.loads(server.cli("demo", "--no-serve", "--json"))
    carrier_port = harness.free_sip_port()
    harness.seed_pstn(tmp / "data", int(demo["tenant_id"]), {
        "tariffs": [{"name": "Retail", "plan": True, "rates": [
            {"prefix": "7", "destination": "Russia", "price": "3.00", "increment": "60/60"}]}],
        "trunks": [{"name": "Carrier", "host": CARRIER_HOST, "port": carrier_port}],
        "routes": [{"prefix": "7", "trunk": "Carrier"}],
        "policies": [{"level": "tenant", "service_class": "international"}],
    }, database_url=database_url)
    server.start()
    try:
        yield World(Console(server=server, url=server.http_url, domain=domain, tenant_id=int(demo["tenant_id"]),
                            admin_login=demo["admin_login"], admin_password=demo["admin_password"],
                            workdir=tmp / "sipp"),
                    {e["number"]: e["password"] for e in demo["extensions"]}, carrier_port)
    finally:
        code = server.stop()
        assert code == 0, f"zvonok serve exited with {code}:\n{server.log_tail()}"


def test_a_call_live_then_in_the_history_and_the_reports(page: Any, world: World, artifacts: Path) -> None:
    console = world.console
    target = f"{harness.LOOPBACK}:{console.server.sip_port}"
    log_in(page, console)
    page.click("nav a[href='/calls']")
    page.wait_for_url(console.url + "/calls")
    assert page.locator("h1").inner_text() == "Calls"
    page.click("nav.tabs a[href='/calls/live']")
    page.wait_for_url(console.url + "/calls/live")
    page.wait_for_selector("[data-live-events][data-live-state=open]")
    assert page.locator("#live-none").count() == 1
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    # Ivan (101) calls a Moscow number; the carrier answers; Ivan hangs up 8 s later
    carrier = calls.SippProcess("carrier_answer.xml", None, workdir=console.workdir, name="carrier",
                                local_port=world.carrier_port, timeout=60, keys={"codec": "8", "codec_name": "PCMA"},
                                extra=["-i", CARRIER_HOST]).start()
    caller = calls.SippProcess(
        "call_uac.xml", target, workdir=console.workdir, name="caller_101", timeout=60,
        rows=[calls.caller_row("101", world.passwords["101"], console.domain, "84951234567")],
        auth_uri=f"sip:84951234567@{console.domain}", extra=["-d", "8000"],
    ).start()
    try:
        row = page.locator("#live-rows tr[data-state=answered]")
        row.wait_for(timeout=20_000)
        assert "101" in row.inner_text() and "+74951234567" in row.inner_text()
        assert "Talking" in row.inner_text() and "Outbound" in row.inner_text()
        # the talk time ticks in the browser
        page.wait_for_function("/^0:0[2-9]$/.test(document.querySelector('#live-rows [data-since]').textContent)")
        page.screenshot(path=str(artifacts / "calls-live.png"), full_page=True)
        result = caller.wait(timeout=40)
        assert result.successful == 1, result.describe()
        assert carrier.wait_for("SuccessfulCall(C)", 1, timeout=10), carrier.stats()
    finally:
        caller.kill()
        carrier.kill()
    page.locator("#live-none").wait_for(timeout=15_000)  # the call ended: the row went by itself
    assert page.evaluate("window.__sameDocument") is True

    # the history: the CDR is written just after the call ends
    for _ in range(30):
        page.goto(console.url + "/calls")
        if page.locator("#call-rows tr[id^=call-]").count():
            break
        page.wait_for_timeout(500)
    first = page.locator("#call-rows tr[id^=call-]").first
    text = first.inner_text()
    assert "101" in text and "+74951234567" in text and "Answered" in text
    assert first.locator("td.cost").inner_text() == "RUB3.00"  # one started minute at 3.00
    # the filters: an internal call it is not; then who, direction and cost find it
    page.select_option("select[name=direction]", "internal")
    page.click("#call-filters button[type=submit]")
    page.wait_for_selector("#call-rows td[colspan]")
    page.select_option("select[name=direction]", "outbound")
    page.fill("input[name=q]", "4951234")
    page.fill("input[name=cost_min]", "2.5")
    page.click("#call-filters button[type=submit]")
    page.locator("#call-rows tr[id^=call-]").first.wait_for()
    page.screenshot(path=str(artifacts / "calls-history.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.screenshot(path=str(artifacts / "calls-history-narrow.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 860})

    # the details, and the recording playing in the browser (it asks for byte ranges)
    page.locator("#call-rows tr[id^=call-] td a").first.click()
    page.wait_for_selector("#call-detail")
    audio = page.locator("audio#recording-player")
    assert audio.count() == 1
    page.wait_for_function("document.getElementById('recording-player').readyState >= 1", timeout=15_000)
    duration = page.evaluate("document.getElementById('recording-player').duration")
    assert duration > 5, duration  # 8 s of talk
    page.evaluate("document.getElementById('recording-player').currentTime = 4")  # a seek
    page.wait_for_function("document.getElementById('recording-player').readyState >= 2", timeout=15_000)
    page.screenshot(path=str(artifacts / "calls-detail.png"), full_page=True)
    check_reports(page, console, artifacts)


def check_reports(page: Any, console: Console, artifacts: Path) -> None:
    """The cost report's chart and table, and the monthly statement, with the call just made."""
    page.click("nav a[href='/reports']")
    page.wait_for_url(console.url + "/reports")
    page.select_option("select[name=group_by]", "day")
    page.click("#report-form button[type=submit]")
    page.wait_for_selector("#report-chart canvas")  # uPlot drew its chart
    assert page.locator("#report-table tbody tr").count() >= 1
    assert page.locator("#report-total").inner_text().split()[-1] == "RUB3.00"
    page.select_option("select[name=group_by]", "employee")
    page.click("#report-form button[type=submit]")
    page.wait_for_selector("#report-chart canvas")
    assert "Ivan Petrov" in page.locator("#report-table tbody").inner_text()
    page.screenshot(path=str(artifacts / "reports-employee.png"), full_page=True)
    page.select_option("select[name=group_by]", "day")
    page.click("#report-form button[type=submit]")
    page.wait_for_selector("#report-chart canvas")
    page.screenshot(path=str(artifacts / "reports-costs.png"), full_page=True)
    page.click("nav.tabs a[href='/reports/statement']")
    page.wait_for_selector("#statement-total")
    page.click("button[name=lang][value=ru]")
    page.wait_for_selector("html[lang=ru]")
    assert page.locator("#statement-total .figure").inner_text() == "3,00\xa0₽"
    page.screenshot(path=str(artifacts / "reports-statement-ru.png"), full_page=True)
