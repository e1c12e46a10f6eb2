"""The console's CRM pages: a new client (prefilled from a number), duplicates with a link to the client
that has the number, search by a part of the number and by words, the card with its call timeline and
recording player, notes, editing, custom fields (admins), another company's client (404), the screen
pop's dialog on an employee's pages, and the Russian translation."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import httpx
import test_web
from test_web import Company, Web, csrf_of, login

import zvonok.web
from zvonok.cdr import service as cdr_service
from zvonok.cdr.state import CallRecord
from zvonok.originates.models import OriginateRequest
from zvonok.telephony.events import CallStarted, Direction, Disposition, HangupSide, Party

web, a, b, admin_a = test_web.web, test_web.a, test_web.b, test_web.admin_a


async def _call(web: Web, tenant_id: int, caller: str, *, recording: str | None = None) -> int:
    record = CallRecord.started(CallStarted(tenant_id=tenant_id, call_id=uuid.uuid4().hex, at=time.time() - 3600,
                                            caller=Party(number=caller, external=True), callee_number="101",
                                            direction=Direction.INBOUND))
    record.recording_path = recording
    finished = record.finish(at=time.time() - 3500, disposition=Disposition.ANSWERED, hangup_side=HangupSide.CALLER,
                             cause="normal_clearing")
    async with web.db.session() as session:
        cdr = await cdr_service.write_cdr(session, tenant_id, finished)
        await session.commit()
    assert cdr is not None
    return cdr.id


async def _new(client: httpx.AsyncClient, **data: str) -> httpx.Response:
    page = await client.get("/crm/new")
    return await client.post("/crm/new", data={"csrf_token": csrf_of(page.text), **data})


async def test_clients_search_card_and_timeline(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    rec = web.settings.data_dir / "recordings" / "c.wav"
    rec.parent.mkdir(parents=True, exist_ok=True)
    rec.write_bytes(b"RIFF")
    call = await _call(web, a.id, "+74951234567", recording="c.wav")  # before the client exists
    page = await admin_a.get("/crm/new", params={"phone": "+74951234567"})
    assert page.status_code == 200 and "+74951234567</textarea>" in page.text
    r = await _new(admin_a, name="Анна Смирнова", phones="+7 495 123-45-67\n8 916 555 44 33",
                   emails="anna@romashka.example", tags="vip, opt", note="Обсудили поставки")
    assert r.status_code == 303, r.text
    client_id = int(r.headers["location"].rsplit("/", 1)[1])

    # a duplicate: 409 with a link to Anna, nothing created
    r = await _new(admin_a, name="Anna again", phones="84951234567")
    assert r.status_code == 409
    assert f'href="/crm/{client_id}" id="duplicate-link"' in r.text and "Анна Смирнова" in r.text
    r = await _new(admin_a, name="", phones="not a phone")
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text

    for q in ("4567", "+7 916", "поставка", "смирнову"[:6]):
        r = await admin_a.get("/crm", params={"q": q})
        assert r.status_code == 200
        assert f'id="client-{client_id}"' in r.text, q
    r = await admin_a.get("/crm", params={"q": "nobody"})
    assert "no-clients" in r.text

    card = await admin_a.get(f"/crm/{client_id}")
    assert card.status_code == 200
    assert "+74951234567" in card.text and "+79165554433" in card.text and "Обсудили поставки" in card.text
    assert f'id="timeline-{call}"' in card.text and f'src="/calls/{call}/recording"' in card.text
    assert f'href="/calls/{call}"' in card.text
    r = await admin_a.post(f"/crm/{client_id}/notes", data={"csrf_token": csrf_of(card.text), "text": "Call back"})
    assert r.status_code == 303
    assert "Call back" in (await admin_a.get(f"/crm/{client_id}")).text

    # edit: a phone taken away takes its calls with it
    edit = await admin_a.get(f"/crm/{client_id}/edit")
    r = await admin_a.post(f"/crm/{client_id}/edit", data={"csrf_token": csrf_of(edit.text), "name": "Анна",
                                                           "phones": "+79165554433", "emails": "", "tags": ""})
    assert r.status_code == 303, r.text
    card = await admin_a.get(f"/crm/{client_id}")
    assert "no-calls" in card.text and "<h1 id=\"client-title\">Анна</h1>" in card.text
    r = await admin_a.post(f"/crm/{client_id}/delete", data={"csrf_token": csrf_of(card.text)})
    assert r.status_code == 303 and (await admin_a.get(f"/crm/{client_id}")).status_code == 404


async def test_fields_isolation_roles_and_russian(web: Web, a: Company, b: Company,
                                                  admin_a: httpx.AsyncClient) -> None:
    page = await admin_a.get("/crm/fields")
    r = await admin_a.post("/crm/fields", data={"csrf_token": csrf_of(page.text), "key": "budget",
                                                "label": "Budget", "kind": "number"})
    assert r.status_code == 303
    r = await admin_a.post("/crm/fields", data={"csrf_token": csrf_of(page.text), "key": "Bad Key",
                                                "label": "X", "kind": "text"})
    assert r.status_code == 422
    form = await admin_a.get("/crm/new")
    assert 'name="f_budget"' in form.text
    r = await _new(admin_a, name="Oleg", f_budget="lots")
    assert r.status_code == 422 and "number expected" in r.text
    r = await _new(admin_a, name="Oleg", f_budget="1 500,5")
    assert r.status_code == 303
    oleg = int(r.headers["location"].rsplit("/", 1)[1])
    assert "1500.5" in (await admin_a.get(f"/crm/{oleg}")).text

    async with web.client() as other:  # company B's admin: A's client is a 404 page; Russian labels
        assert (await login(other, b.admin)).status_code == 303
        assert (await other.get(f"/crm/{oleg}")).status_code == 404
        assert (await other.get(f"/crm/{oleg}/edit")).status_code == 404
        listing = await other.get("/crm")
        assert "Клиенты" in listing.text and "Oleg" not in listing.text
    async with web.client() as ivan:  # an employee uses the CRM, not its field definitions; has the pop dialog
        assert (await login(ivan, a.employee)).status_code == 303
        listing = await ivan.get("/crm")
        assert listing.status_code == 200 and "Oleg" in listing.text
        assert 'id="screen-pop"' in listing.text and "/static/screenpop.js" in listing.text
        assert (await ivan.get("/crm/fields")).status_code == 403
        assert 'href="/crm/fields"' not in listing.text
    # the admin of the demo is no employee: no screen pop on their pages
    assert 'id="screen-pop"' not in (await admin_a.get("/crm")).text


async def test_navigation_and_translations_complete(admin_a: httpx.AsyncClient) -> None:
    home = await admin_a.get("/")
    assert re.search(r'href="/crm"[^>]*>Clients<', home.text)
    assert re.search(r'href="/crm/fields"[^>]*>Client fields<', home.text)
    text = (Path(zvonok.web.__file__).parent / "locale" / "ru" / "LC_MESSAGES" / "messages.po").read_text("utf-8")
    for msgid in ("Clients", "New client", "Incoming call", "No calls from or to these numbers yet."):
        entry = re.search(r'msgid "' + re.escape(msgid) + r'"\nmsgstr "(.+)"', text)
        assert entry is not None and entry.group(1), msgid



async def test_a_failed_click_to_call_on_the_card(web: Web, a: Company, b: Company, admin_a: httpx.AsyncClient) -> None:
    r = await _new(admin_a, name="Roga", phones="+7 495 111-22-33")
    assert r.status_code == 303, r.text
    client_id = int(r.headers["location"].rsplit("/", 1)[1])
    async with web.db.session() as session:  # what zvonok.originates wrote of a call whose phone was not registered
        for tenant_id in (a.id, b.id):  # (b's row names a's client: never shown to a)
            session.add(OriginateRequest(tenant_id=tenant_id, call_id=uuid.uuid4().hex, kind="call", requested_by="",
                                         extension="101", to_number="+74951112233", client_id=client_id,
                                         phase="failed", reason="not_registered" if tenant_id == a.id else "busy"))
        await session.commit()
    card = await admin_a.get(f"/crm/{client_id}")
    assert card.status_code == 200
    rows = re.findall(r'<tr id="timeline-click-\d+" class="click-to-call">(.*?)</tr>', card.text, re.S)
    assert len(rows) == 1 and "+74951112233" in rows[0]
    assert "Click-to-call: the employee's phone was not registered" in rows[0]
    assert "client busy" not in card.text


async def test_csv_import_and_export_pages(web: Web, a: Company, b: Company, admin_a: httpx.AsyncClient) -> None:
    page = await admin_a.get("/crm/import")
    assert page.status_code == 200 and 'id="import-form"' in page.text
    token = csrf_of(page.text)
    bad = "name,phones\n,+74951112233\nБоб,+7 916 000\n".encode()
    r = await admin_a.post("/crm/import", data={"csrf_token": token}, files={"file": ("c.csv", bad, "text/csv")})
    assert r.status_code == 422
    assert "<td>2</td><td>name is empty</td>" in r.text and "<td>3</td><td>&#39;+7 916 000&#39; is not" in r.text
    good = "name,phones,tags\nБоб,+7 916 000 00 01,=cmd|' /C calc'!A0\n".encode()
    r = await admin_a.post("/crm/import", data={"csrf_token": token}, files={"file": ("c.csv", good, "text/csv")})
    assert r.status_code == 200 and "1 client imported from c.csv." in r.text
    r = await admin_a.post("/crm/import", data={"csrf_token": token}, files={"file": ("c.csv", good, "text/csv")})
    assert r.status_code == 200 and "1 row skipped" in r.text and "+79160000001" in r.text
    export = await admin_a.get("/crm/export.csv")
    assert export.status_code == 200 and "'=cmd|' /C calc'!A0" in export.text  # text, not a formula
    assert 'href="/crm/import"' in (await admin_a.get("/crm")).text

    async with web.client() as other:  # company B's admin reads the row errors in Russian
        await login(other, b.admin)
        page = await other.get("/crm/import")
        r = await other.post("/crm/import", data={"csrf_token": csrf_of(page.text)},
                             files={"file": ("c.csv", bad, "text/csv")})
        assert r.status_code == 422 and "имя не заполнено" in r.text
    async with web.client() as ivan:  # an employee neither imports nor exports the base
        await login(ivan, a.employee)
        assert (await ivan.get("/crm/import")).status_code == 403
        assert (await ivan.get("/crm/export.csv")).status_code == 403
