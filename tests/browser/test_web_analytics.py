"""Reports → Analytics in Chromium against a real server with the demo company: a deal won and paid (REST,
as an integration would) and a call placed by extension 101 (SIPp; no carrier, so it fails, and its CDR is
written all the same); the admin opens the Analytics tab (no export yet), presses "Export now" and, without
a reload, sees the export run and end: the last export's time, kind and size, and the three ready tables
(calls per day by direction, deals won per stage and month, payments per month); the DuckDB file
downloads; a second export is incremental and writes nothing new."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from .conftest import Console, harness, log_in
from .test_web_calls import calls

pytestmark = pytest.mark.integration
SIP_PASSWORD = "analytics-Secret-556"


def _sales(console: Console, token: str) -> None:
    api = f"{console.url}/api/v1/tenants/{console.tenant_id}/crm"
    pipeline = harness.http_json(f"{api}/pipelines", token, method="POST", body={
        "name": "Licences", "stages": [{"name": "Talks"}, {"name": "Signed", "kind": "won"},
                                       {"name": "Gone", "kind": "lost"}]})
    talks, signed = (s["id"] for s in pipeline["stages"][:2])
    deal = harness.http_json(f"{api}/deals", token, method="POST", body={
        "title": "Annual licences", "pipeline_id": pipeline["id"], "stage_id": talks, "amount": "85000"})
    harness.http_json(f"{api}/deals/{deal['id']}/move", token, method="POST", body={"stage_id": signed})
    harness.http_json(f"{api}/deals/{deal['id']}/payments", token, method="POST", body={
        "amount": "40000", "paid_on": date.today().isoformat(), "method": "transfer"})


def _call(console: Console, token: str) -> None:
    """Extension 556 dials a Moscow number; the company has no carrier, so the call fails: one CDR."""
    harness.http_json(f"{console.url}/api/v1/tenants/{console.tenant_id}/extensions", token, method="POST",
                      body={"number": "556", "display_name": "Analytics desk", "sip_password": SIP_PASSWORD})
    harness.run_sipp("call_uac.xml", f"{harness.LOOPBACK}:{console.server.sip_port}", workdir=console.workdir,
                     timeout=60, rows=[calls.caller_row("556", SIP_PASSWORD, console.domain, "84951234567")],
                     auth_uri=f"sip:84951234567@{console.domain}", name="caller_556")


def test_the_admin_exports_and_reads_the_analytics(page: Any, console: Console, artifacts: Path) -> None:
    token = console.server.cli("token", "create", "--name", "analytics").strip().split()[-1]
    _sales(console, token)
    _call(console, token)
    log_in(page, console)
    page.goto(console.url + "/reports")
    page.click("#analytics-tab")
    page.wait_for_url(console.url + "/reports/analytics")
    assert "No export yet." in page.locator("#analytics-never").inner_text()

    page.click("#analytics-export-form button[type=submit]")
    page.wait_for_selector("#analytics[data-running=no] #analytics-last")  # polled in place, then done
    assert page.locator("#analytics-mode").inner_text() == "full rebuild"
    assert page.locator("#analytics-rows-fact_deals").inner_text() == "1 row, written by this export: 1"
    day = page.locator("#analytics-calls tbody tr").all()
    assert len(day) == 1 and day[0].locator("td").all_inner_texts()[1:] == ["0", "1", "0", "1"]  # outbound
    won = page.locator("#analytics-won tbody tr")
    assert won.count() == 1
    cells = won.first.locator("td").all_inner_texts()
    assert cells[1:4] == ["Licences", "Signed", "1"] and "85,000.00" in cells[4], cells
    pay = page.locator("#analytics-payments tbody tr").first.locator("td").all_inner_texts()
    assert pay[1] == "1" and "40,000.00" in pay[2], pay
    page.screenshot(path=str(artifacts / "analytics.png"), full_page=True)

    with page.expect_download() as info:
        page.click("#analytics-download")
    download = info.value
    saved = artifacts / "analytics.duckdb"
    download.save_as(str(saved))
    assert saved.stat().st_size > 0 and download.suggested_filename == "zvonok-analytics.duckdb"

    # again at once: refused in place (the minimum interval), the last export still shown
    page.click("#analytics-export-form button[type=submit]")
    page.wait_for_selector("#analytics-notice")
    assert "try again in 10 min" in page.locator("#analytics-notice").inner_text()
    assert page.locator("#analytics-mode").inner_text() == "full rebuild"
    page.screenshot(path=str(artifacts / "analytics-too-soon.png"), full_page=True)
