"""The web console's calls and reports pages: history filters and pages, CSV export, a call's details,
the recording with byte ranges, who may see which call, the calls in progress from the call engine,
cost reports and the monthly statement."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import test_web
from test_web import Company, Web, login

from zvonok.cdr import service as cdr_service
from zvonok.cdr.state import CallRecord
from zvonok.org import schemas, service
from zvonok.sip.peer import Peer
from zvonok.telephony.b2bua import CallEngine, _new_session
from zvonok.telephony.call import Call, Leg
from zvonok.telephony.events import (
    CallRouted,
    CallStarted,
    Direction,
    Disposition,
    FaxFinished,
    HangupSide,
    LegCreated,
    LegRole,
    Party,
)

# test_web's fixtures: the app with the pages, companies A and B, A's admin logged in
web, a, b, admin_a = test_web.web, test_web.a, test_web.b, test_web.admin_a
NOW = time.time()
DAY = 86_400.0


async def seed(web: Web, tenant_id: int, caller: Party, callee: Party, *, at: float, talk: float = 30.0,
               disposition: Disposition = Disposition.ANSWERED, direction: Direction = Direction.INTERNAL,
               price: str | None = None, recording: str | None = None, fax: tuple[int, str] | None = None) -> int:
    """A finished call written by the CDR service, as the call engine's events would have it."""
    call_id = uuid.uuid4().hex
    record = CallRecord.started(CallStarted(tenant_id=tenant_id, call_id=call_id, at=at, caller=caller,
                                            callee_number=callee.number, direction=direction))
    record.apply(LegCreated(tenant_id=tenant_id, call_id=call_id, at=at, leg_id="L1", role=LegRole.CALLER,
                            party=caller))
    if price is not None:
        record.apply(CallRouted(tenant_id=tenant_id, call_id=call_id, at=at, destination_class="mobile",
                                number=callee.number, price_per_minute=price, increment="60/60", currency="RUB",
                                rate_destination="Mobile"))
    record.apply(LegCreated(tenant_id=tenant_id, call_id=call_id, at=at + 0.1, leg_id="L2", role=LegRole.CALLEE,
                            party=callee, user_agent="Yealink T46"))
    if disposition is Disposition.ANSWERED:
        record.answered_at, record.answered_leg_id = at + 2, "L2"
    record.recording_path = recording
    if fax is not None:
        record.apply(FaxFinished(tenant_id=tenant_id, call_id=call_id, at=at + 1, fax_id=1, direction="in",
                                 ok=True, pages=fax[0], result=fax[1]))
    finished = record.finish(at=at + 2 + (talk if disposition is Disposition.ANSWERED else 0),
                             disposition=disposition, hangup_side=HangupSide.CALLER, cause="normal_clearing")
    async with web.db.session() as session:
        cdr = await cdr_service.write_cdr(session, tenant_id, finished)
        await session.commit()
    assert cdr is not None
    return cdr.id


class Calls:
    """Company A's directory parties and its calls: Ivan (the employee who logs in) and Olga."""

    def __init__(self, ivan: Party, olga: Party) -> None:
        self.ivan, self.olga = ivan, olga
        self.ids: dict[str, int] = {}


@pytest.fixture
async def calls(web: Web, a: Company) -> Calls:
    async with web.db.session() as session:
        ivan_ext = await service.get_extension(session, a.id, a.extension_id)
        olga = await service.create_employee(session, a.id, schemas.EmployeeCreate(full_name="Olga",
                                                                                   email="olga@a.example"))
        olga_ext, _ = await service.create_extension(
            session, a.id, schemas.ExtensionCreate(number="102", display_name="Olga Smirnova", employee_id=olga.id))
        await session.commit()
    c = Calls(Party(number="101", display_name="Ivan desk", extension_id=ivan_ext.id,
                    employee_id=ivan_ext.employee_id),
              Party(number="102", display_name="Olga Smirnova", extension_id=olga_ext.id, employee_id=olga.id))
    outside = Party(number="+79161234567", display_name="=HYPERLINK(\"http://evil\")", external=True)
    c.ids["ivan_olga"] = await seed(web, a.id, c.ivan, c.olga, at=NOW - 3 * DAY)
    c.ids["olga_out"] = await seed(web, a.id, c.olga, Party(number="+74951112233", external=True),
                                   at=NOW - 2 * DAY, talk=125, direction=Direction.OUTBOUND, price="2.50")
    c.ids["in_busy"] = await seed(web, a.id, outside, c.olga, at=NOW - DAY, disposition=Disposition.BUSY,
                                  direction=Direction.INBOUND)
    c.ids["ivan_out"] = await seed(web, a.id, c.ivan, Party(number="+74957654321", external=True),
                                   at=NOW - 3600, talk=45, direction=Direction.OUTBOUND, price="1.20",
                                   recording=f"{a.id}/ivan.wav")
    return c


def row_ids(html: str) -> set[int]:
    return {int(n) for n in re.findall(r'<tr id="call-(\d+)"', html)}


@pytest.fixture
async def ivan(web: Web, a: Company) -> AsyncIterator[httpx.AsyncClient]:
    async with web.client() as client:
        assert (await login(client, a.employee)).status_code == 303
        yield client


async def test_filters_narrow_the_rows(calls: Calls, admin_a: httpx.AsyncClient) -> None:
    ids = calls.ids
    page = await admin_a.get("/calls")
    assert page.status_code == 200 and row_ids(page.text) == set(ids.values())
    assert "4 calls" in page.text

    async def shown(**params: str) -> set[int]:
        r = await admin_a.get("/calls", params=params)
        assert r.status_code == 200, r.text
        return row_ids(r.text)

    assert await shown(direction="outbound") == {ids["olga_out"], ids["ivan_out"]}
    assert await shown(disposition="busy") == {ids["in_busy"]}
    assert await shown(q="olga") == {ids["ivan_olga"], ids["olga_out"], ids["in_busy"]}  # by name
    assert await shown(q="7654") == {ids["ivan_out"]}  # part of a number
    assert await shown(q="100%") == set()  # LIKE wildcards are literal
    assert await shown(cost_min="1") == {ids["olga_out"], ids["ivan_out"]}
    assert await shown(cost_min="0.5", cost_max="2,00") == {ids["ivan_out"]}  # a comma works as the point
    def local_day(epoch: float) -> str:  # the form's dates are days in the tenant's zone
        return datetime.fromtimestamp(epoch, ZoneInfo("Europe/Moscow")).date().isoformat()

    assert await shown(**{"from": local_day(NOW - 2 * DAY)}) == {ids["olga_out"], ids["in_busy"], ids["ivan_out"]}
    assert await shown(**{"from": local_day(NOW - 3 * DAY), "to": local_day(NOW - 2 * DAY)}) == {
        ids["ivan_olga"], ids["olga_out"]}  # the end day is included
    assert await shown(direction="outbound", cost_max="2") == {ids["ivan_out"]}


async def test_bad_filters_are_a_form_error(calls: Calls, admin_a: httpx.AsyncClient) -> None:
    r = await admin_a.get("/calls", params={"from": "31.01.2026", "cost_min": "lots", "direction": "sideways"})
    assert r.status_code == 422
    assert "A date like 2026-01-31." in r.text and "An amount like 12.50." in r.text
    assert 'aria-invalid="true"' in r.text and row_ids(r.text) == set()
    r = await admin_a.get("/calls", params={"from": "2026-02-01", "to": "2026-01-01"})
    assert r.status_code == 422 and "The end is before the start." in r.text
    assert (await admin_a.get("/calls.csv", params={"cost_max": "NaN"})).status_code == 422
    assert (await admin_a.get("/calls", params={"page": "0"})).status_code == 422


async def test_csv_export_has_the_filtered_rows_defused(calls: Calls, admin_a: httpx.AsyncClient) -> None:
    page = await admin_a.get("/calls", params={"direction": "inbound"})
    link = re.search(r'href="(/calls\.csv\?[^"]*)"', page.text)
    assert link and "direction=inbound" in link.group(1)
    r = await admin_a.get(link.group(1).replace("&amp;", "&"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="calls.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(row["id"]) for row in rows] == [calls.ids["in_busy"]]
    assert rows[0]["caller_name"] == "'=HYPERLINK(\"http://evil\")"  # no formula for spreadsheets
    assert rows[0]["caller_number"] == "+79161234567"  # a number stays a number
    everything = list(csv.DictReader(io.StringIO((await admin_a.get("/calls.csv")).text)))
    costs = {int(row["id"]): row["cost"] for row in everything}
    assert len(everything) == 4 and costs[calls.ids["olga_out"]] == "7.5000"  # 3 minutes at 2.50


async def test_detail_and_recording_with_ranges(web: Web, a: Company, calls: Calls,
                                                admin_a: httpx.AsyncClient) -> None:
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 40
    folder = web.settings.data_dir / "recordings" / str(a.id)
    folder.mkdir(parents=True)
    (folder / "ivan.wav").write_bytes(wav)
    cdr_id = calls.ids["ivan_out"]
    page = await admin_a.get(f"/calls/{cdr_id}")
    assert page.status_code == 200
    assert f'<audio controls preload="metadata" src="/calls/{cdr_id}/recording"' in page.text
    assert "+74957654321" in page.text and "Yealink T46" in page.text
    assert re.search(r'id="call-cost">RUB\xa01\.20|id="call-cost">₽1\.20|id="call-cost">RUB1\.20', page.text), \
        page.text[page.text.find("call-cost"):][:80]

    whole = await admin_a.get(f"/calls/{cdr_id}/recording")
    assert whole.status_code == 200 and whole.content == wav
    assert whole.headers["content-type"] == "audio/wav" and whole.headers["accept-ranges"] == "bytes"
    part = await admin_a.get(f"/calls/{cdr_id}/recording", headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == wav[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(wav)}"
    tail = await admin_a.get(f"/calls/{cdr_id}/recording", headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == wav[-16:]
    beyond = await admin_a.get(f"/calls/{cdr_id}/recording", headers={"Range": f"bytes={len(wav) + 10}-"})
    assert beyond.status_code == 416

    # a call without a recording: no player, and the route is a 404 page
    other = calls.ids["ivan_olga"]
    assert "<audio" not in (await admin_a.get(f"/calls/{other}")).text
    assert (await admin_a.get(f"/calls/{other}/recording")).status_code == 404


async def test_an_employee_sees_only_own_calls(web: Web, a: Company, calls: Calls,
                                               ivan: httpx.AsyncClient) -> None:
    (web.settings.data_dir / "recordings" / str(a.id)).mkdir(parents=True)
    (web.settings.data_dir / "recordings" / str(a.id) / "ivan.wav").write_bytes(b"RIFF....WAVE")
    page = await ivan.get("/calls")
    assert page.status_code == 200 and "Your calls." in page.text
    assert row_ids(page.text) == {calls.ids["ivan_olga"], calls.ids["ivan_out"]}
    # filters cannot widen it
    assert row_ids((await ivan.get("/calls", params={"q": "olga"})).text) == {calls.ids["ivan_olga"]}
    exported = list(csv.DictReader(io.StringIO((await ivan.get("/calls.csv")).text)))
    assert {int(row["id"]) for row in exported} == {calls.ids["ivan_olga"], calls.ids["ivan_out"]}
    assert (await ivan.get(f"/calls/{calls.ids['ivan_out']}/recording")).status_code == 200
    for theirs in ("olga_out", "in_busy"):
        r = await ivan.get(f"/calls/{calls.ids[theirs]}")
        assert r.status_code == 404 and "Page not found" in r.text
    # another employee's call with a recording on disk: still 404
    olga_rec = await seed(web, a.id, calls.olga, Party(number="+74950000000", external=True), at=NOW - 60,
                          recording=f"{a.id}/ivan.wav")
    assert (await ivan.get(f"/calls/{olga_rec}/recording")).status_code == 404
    assert (await ivan.get("/reports")).status_code == 403


async def test_another_company_sees_none_of_it(web: Web, a: Company, b: Company, calls: Calls) -> None:
    (web.settings.data_dir / "recordings" / str(a.id)).mkdir(parents=True)
    (web.settings.data_dir / "recordings" / str(a.id) / "ivan.wav").write_bytes(b"RIFF....WAVE")
    async with web.client() as client:
        assert (await login(client, b.admin)).status_code == 303
        page = await client.get("/calls")
        assert page.status_code == 200 and row_ids(page.text) == set()
        for cdr_id in calls.ids.values():
            assert (await client.get(f"/calls/{cdr_id}")).status_code == 404
        assert (await client.get(f"/calls/{calls.ids['ivan_out']}/recording")).status_code == 404
        assert list(csv.DictReader(io.StringIO((await client.get("/calls.csv")).text))) == []


async def test_pages_need_a_login(web: Web, a: Company) -> None:
    async with web.client() as client:
        for path in ("/calls", "/calls.csv", "/calls/live", "/calls/1", "/calls/1/recording", "/reports",
                     "/reports/statement"):
            r = await client.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path


# --- calls in progress --------------------------------------------------------------------------------
def engine_with_calls(tenant_id: int, parties: list[tuple[Party, Party, bool]]) -> CallEngine:
    """A call engine (nothing sent: no SIP stack is needed to read its calls) holding calls in progress."""
    engine = CallEngine(sip=None, media=None, auth=None, location=None, directory=None, bus=None)  # type: ignore[arg-type]
    peer = Peer(transport="udp", host="192.0.2.10", port=5060)
    for caller, callee, answered in parties:
        call = Call(id=uuid.uuid4().hex, tenant_id=tenant_id, direction=Direction.INTERNAL, started_at=NOW - 42)
        call.caller = Leg(id="c" + call.id[:6], role=LegRole.CALLER, call=call, party=caller, peer=peer,
                          session=_new_session())
        fork = Leg(id="f" + call.id[:6], role=LegRole.CALLEE, call=call, party=callee, peer=peer,
                   session=_new_session())
        call.forks.append(fork)
        if answered:
            call.callee, call.answered_at = fork, NOW - 40
        engine.calls[call.id] = call
    return engine


async def test_calls_in_progress_come_from_the_engine(web: Web, a: Company, b: Company, calls: Calls,
                                                      admin_a: httpx.AsyncClient, ivan: httpx.AsyncClient) -> None:
    stranger = Party(number="+74991234567", display_name="Stranger", external=True)
    engine = engine_with_calls(a.id, [(calls.ivan, calls.olga, True), (stranger, calls.olga, False)])
    engine.calls.update(engine_with_calls(b.id, [(Party(number="555", display_name="B caller"),
                                                  Party(number="556"), True)]).calls)
    empty = await admin_a.get("/calls/live")
    assert empty.status_code == 200 and "No calls right now." in empty.text  # no engine in this app yet
    web.app.state.active_calls = engine.active_calls  # type: ignore[attr-defined]

    page = await admin_a.get("/calls/live")
    assert page.status_code == 200 and "data-live-events" in page.text
    assert "zv-CallEnded from:body" in page.text and "/static/calls.js" in page.text
    assert page.text.count('<tr id="live-') == 2 and "B caller" not in page.text
    assert 'data-state="answered"' in page.text and 'data-state="ringing"' in page.text
    assert "Stranger" in page.text and "Talking" in page.text and "Ringing" in page.text
    rows = await admin_a.get("/calls/live/rows")
    assert rows.status_code == 200 and "<html" not in rows.text and rows.text.count('<tr id="live-') == 2

    mine = await ivan.get("/calls/live/rows")  # Ivan is a party of the first call only
    assert mine.text.count('<tr id="live-') == 1 and "Stranger" not in mine.text

    for call in list(engine.calls.values()):
        call.ended = True  # ended calls are never shown, even before the engine drops them
    assert "No calls right now." in (await admin_a.get("/calls/live/rows")).text


def test_engine_snapshots_are_copies_in_start_order() -> None:
    alice, bob = Party(number="101", employee_id=7), Party(number="102", employee_id=8)
    engine = engine_with_calls(1, [(alice, bob, False)])
    first = next(iter(engine.calls.values()))
    first.started_at = NOW - 10
    engine.calls.update(engine_with_calls(1, [(bob, alice, True)]).calls)  # started at NOW - 42
    snaps = engine.active_calls(1)
    assert [s.caller.number for s in snaps] == ["102", "101"]
    assert [s.state for s in snaps] == ["answered", "ringing"]
    assert snaps[1].callees == (bob,) and snaps[1].involves(8) and not snaps[1].involves(9)
    assert engine.active_calls(2) == []
    first.forks[0].held = True
    first.answered_at = NOW
    assert engine.active_calls(1)[1].state == "on_hold"


# --- reports ------------------------------------------------------------------------------------------
async def test_cost_report_by_employee_and_day(calls: Calls, admin_a: httpx.AsyncClient) -> None:
    start = datetime.fromtimestamp(NOW - 5 * DAY, UTC).date().isoformat()
    end = datetime.fromtimestamp(NOW + DAY, UTC).date().isoformat()
    r = await admin_a.get("/reports", params={"group_by": "employee", "from": start, "to": end})
    assert r.status_code == 200, r.text
    assert re.search(r'<tr id="line-\d+">\s*<td>Olga</td>', r.text) and "Ivan" in r.text
    assert "RUB" in r.text or "₽" in r.text
    chart = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', r.text, re.S)
    assert chart, "no chart data"
    data: Any = __import__("json").loads(chart.group(1))
    assert sorted(data["labels"]) == ["Ivan", "Olga"] and sorted(data["costs"]) == [1.2, 7.5]
    assert "/static/vendor/uPlot.iife.min.js" in r.text

    by_day = await admin_a.get("/reports", params={"group_by": "day", "from": start, "to": end})
    assert by_day.status_code == 200 and by_day.text.count('<tr id="line-') == 7  # every day of the range

    bad = await admin_a.get("/reports", params={"group_by": "planet", "from": "x"})
    assert bad.status_code == 422 and "A date like 2026-01-31." in bad.text


async def test_monthly_statement(calls: Calls, admin_a: httpx.AsyncClient) -> None:
    month = datetime.fromtimestamp(NOW - 3600, UTC).strftime("%Y-%m")
    r = await admin_a.get("/reports/statement", params={"month": month})
    assert r.status_code == 200
    assert re.search(r"<td>Mobile</td><td class=\"num\">[12]</td>", r.text), r.text
    assert 'id="statement-total"' in r.text and "RUB" in r.text
    assert "Next month" not in r.text  # the months to come have no statement yet
    by_employee = r.text[r.text.index('id="statement-by-employee"'):]
    by_employee = by_employee[:by_employee.index("</table>")]
    assert "Ivan" in by_employee and "RUB1.20" in by_employee  # the calls placed this month, by who
    earlier = await admin_a.get("/reports/statement", params={"month": "2024-02"})
    assert earlier.status_code == 200 and "No charged calls in this month." in earlier.text
    assert "?month=2024-01" in earlier.text and "?month=2024-03" in earlier.text
    for bad in ("2026-13", "1999-12", "soon"):
        r = await admin_a.get("/reports/statement", params={"month": bad})
        assert r.status_code == 422 and "A month like 2026-01." in r.text, bad
    # money and minutes in the reader's locale
    token = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', r.text)
    assert token
    await admin_a.post("/lang", data={"lang": "ru", "next": "/", "csrf_token": token.group(1)})
    ru = await admin_a.get("/reports/statement", params={"month": month})
    assert "Ежемесячная выписка" in ru.text and re.search(r"\d,\d\d\xa0₽", ru.text)


async def test_pages_keep_the_filters(calls: Calls, admin_a: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from zvonok.web.pages import calls as calls_page

    monkeypatch.setattr(calls_page, "PAGE", 2)
    first = await admin_a.get("/calls", params={"q": "olga"})  # 3 calls: pages of 2
    assert "Page 1 of 2" in first.text and len(row_ids(first.text)) == 2
    link = re.search(r'<a href="\?([^"]*page=2[^"]*)">Next</a>', first.text)
    assert link and "q=olga" in link.group(1)
    second = await admin_a.get("/calls?" + link.group(1).replace("&amp;", "&"))
    assert "Page 2 of 2" in second.text
    assert row_ids(first.text) | row_ids(second.text) == {calls.ids["ivan_olga"], calls.ids["olga_out"],
                                                          calls.ids["in_busy"]}
    # newest first across the pages
    assert calls.ids["in_busy"] in row_ids(first.text) and row_ids(second.text) == {calls.ids["ivan_olga"]}


async def test_supervisor_buttons_on_calls_in_progress(web: Web, a: Company, calls: Calls,
                                                       admin_a: httpx.AsyncClient, ivan: httpx.AsyncClient) -> None:
    """A tenant admin sees listen / whisper / barge on a call a supervisor monitors (its mode pressed) and a
    hint to dial *33<ext> on the others; pressing a button switches the session; an employee sees none."""
    from zvonok.telephony.monitor import LiveMonitor, Monitoring
    from zvonok.telephony.monitor_matrix import MonitorMode, MonitorSession

    ivan_ext = Party(number=calls.ivan.number, display_name="Ivan", extension_id=11, employee_id=calls.ivan.employee_id)
    olga_ext = Party(number=calls.olga.number, display_name="Olga", extension_id=12, employee_id=calls.olga.employee_id)
    engine = engine_with_calls(a.id, [(ivan_ext, olga_ext, True), (olga_ext, ivan_ext, True)])
    audited: list[Any] = []

    async def allowed(tenant_id: int, employee_id: int | None, target: str | None) -> bool:
        return True

    async def audit(record: Any) -> None:
        audited.append(record)

    monitoring = Monitoring(engine, allowed=allowed, audit=audit)
    monitored, other = engine.calls.values()
    assert monitored.caller is not None and monitored.callee is not None
    session = MonitorSession(id="s1", tenant_id=a.id, call_id=monitored.id, supervisor="199", agent=olga_ext.number,
                             mode=MonitorMode.LISTEN, started_at=NOW)
    sup_call = Call(id="sup", tenant_id=a.id, direction=Direction.INTERNAL, started_at=NOW)
    monitoring.sessions["s1"] = LiveMonitor(session=session, supervisor_call=sup_call, call=monitored,
                                            agent=monitored.callee, customer=monitored.caller)
    web.app.state.active_calls = engine.active_calls  # type: ignore[attr-defined]
    web.app.state.monitoring = monitoring  # type: ignore[attr-defined]
    try:
        page = await admin_a.get("/calls/live")
        assert page.status_code == 200 and "Supervise" in page.text
        assert page.text.count('action="/calls/live/monitor/s1"') == 1
        assert re.search(r'value="listen" class=""\s+aria-pressed="true"', page.text), page.text
        assert f"Dial *33{ivan_ext.number} to listen" in page.text  # the other call: the agent's code
        token = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
        assert token
        r = await admin_a.post("/calls/live/monitor/s1", data={"mode": "whisper", "csrf_token": token.group(1)})
        assert r.status_code == 303 and r.headers["location"] == "/calls/live"
        assert session.mode is MonitorMode.WHISPER
        r = await admin_a.post("/calls/live/monitor/s1", data={"mode": "shout", "csrf_token": token.group(1)})
        assert r.status_code == 422
        r = await admin_a.post("/calls/live/monitor/nope", data={"mode": "barge", "csrf_token": token.group(1)})
        assert r.status_code == 404
        assert re.search(r'value="whisper" class=""\s+aria-pressed="true"', (await admin_a.get("/calls/live")).text)
        mine = await ivan.get("/calls/live")  # an employee: no supervising column, no buttons
        assert "Supervise" not in mine.text and "/calls/live/monitor/" not in mine.text
        r = await ivan.post("/calls/live/monitor/s1", data={"mode": "barge", "csrf_token": token.group(1)})
        assert r.status_code in (403, 303) and session.mode is MonitorMode.WHISPER
        await asyncio.sleep(0)
        assert [(x.action, x.mode, x.via) for x in audited] == [("mode", "whisper", "web")]
    finally:
        del web.app.state.monitoring  # type: ignore[attr-defined]


async def test_a_fax_call_shows_its_pages_and_result(web: Web, a: Company, calls: Calls,
                                                     admin_a: httpx.AsyncClient) -> None:
    sender = Party(number="+74991234567", external=True)
    cdr_id = await seed(web, a.id, sender, calls.olga, at=NOW - 60, direction=Direction.INBOUND, fax=(2, "OK"))
    listing = await admin_a.get("/calls")
    row = listing.text[listing.text.find(f'id="call-{cdr_id}"'):]
    assert 'title="OK">fax, 2 p.</small>' in row[:row.find("</tr>")]
    plain = calls.ids["ivan_olga"]
    row = listing.text[listing.text.find(f'id="call-{plain}"'):]
    assert "fax," not in row[:row.find("</tr>")]  # other calls say nothing of fax
    detail = await admin_a.get(f"/calls/{cdr_id}")
    assert '<dd id="call-fax">2 pages <small>(OK)</small></dd>' in detail.text
    assert 'id="call-fax"' not in (await admin_a.get(f"/calls/{plain}")).text
