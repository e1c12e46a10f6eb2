"""The CRM on SQLite and PostgreSQL: clients with phones normalized to E.164 by the owner's office rules,
duplicates (409 naming the client), custom fields checked on write (422), search by a part of a number
and by Russian and English words (stemmed), merge keeping phones, notes and calls, the call timeline
(calls before the client existed included), the screen-pop card, and the screen pop itself from the bus
to the websocket's view of the ringing employee."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from zvonok.api.auth import Principal
from zvonok.api.ws import CallVisibility
from zvonok.bus import LocalBus, deserialize, serialize
from zvonok.cdr import service as cdr_service
from zvonok.cdr.state import CallRecord
from zvonok.crm import service
from zvonok.crm.events import ScreenPop
from zvonok.crm.screenpop import ScreenPopper
from zvonok.org.models import Role
from zvonok.telephony.events import (
    CallEnded,
    CallStarted,
    Direction,
    Disposition,
    HangupSide,
    LegCreated,
    LegRole,
    Party,
)

Api = Any


async def _cdr(api: Api, tenant_id: int, caller: str, callee: str, *, at: float = 1.7e9,
               caller_employee: int | None = None, callee_employee: int | None = None,
               recording: str | None = None) -> int:
    call_id = uuid.uuid4().hex
    record = CallRecord.started(CallStarted(
        tenant_id=tenant_id, call_id=call_id, at=at,
        caller=Party(number=caller, employee_id=caller_employee, external=caller_employee is None),
        callee_number=callee, direction=Direction.INBOUND if caller.startswith("+") else Direction.OUTBOUND))
    record.recording_path = recording
    if callee_employee is not None:
        record.apply(LegCreated(tenant_id=tenant_id, call_id=call_id, at=at, leg_id="b", role=LegRole.CALLEE,
                                party=Party(number=callee, employee_id=callee_employee)))
    finished = record.finish(at=at + 30, disposition=Disposition.ANSWERED, hangup_side=HangupSide.CALLER,
                             cause="normal_clearing")
    async with api.db.session() as session:
        cdr = await cdr_service.write_cdr(session, tenant_id, finished)
        await session.commit()
    assert cdr is not None
    return cdr.id


async def _company(api: Api, make_tenant: Any) -> tuple[Any, str, int]:
    """A tenant with a Moscow office (area code 495) and an employee there: (tenant, base url, employee)."""
    t = await make_tenant(f"crm-{uuid.uuid4().hex[:6]}.example")
    base = f"/api/v1/tenants/{t.id}"
    r = await api.client.post(f"{base}/offices", headers=t.headers, json={"name": "Moscow", "area_code": "495"})
    assert r.status_code == 201, r.text
    r = await api.client.post(f"{base}/employees", headers=t.headers,
                              json={"full_name": "Ivan Petrov", "office_id": r.json()["id"]})
    assert r.status_code == 201, r.text
    return t, base + "/crm", r.json()["id"]


async def test_clients_phones_duplicates_fields(api: Api, make_tenant: Any) -> None:
    t, crm, ivan = await _company(api, make_tenant)
    h = t.headers
    r = await api.client.post(f"{crm}/clients", headers=h, json={"kind": "company", "name": "Ромашка ООО",
                                                                "phones": [{"number": "+7 (495) 100-00-00"}]})
    assert r.status_code == 201, r.text
    company = r.json()["id"]
    # a local number written for the owner's Moscow office; the 8-prefixed mobile; duplicates in one body fold
    r = await api.client.post(f"{crm}/clients", headers=h, json={
        "name": "Анна Смирнова", "company_id": company, "owner_id": ivan,
        "phones": [{"number": "123-45-67", "label": "work"}, {"number": "8 916 555-44-33"},
                   {"number": "+74951234567"}],
        "emails": ["Anna@Romashka.example"], "tags": ["vip", "vip", "opt"], "note": "Обсудили поставки"})
    assert r.status_code == 201, r.text
    anna = r.json()
    assert [p["number"] for p in anna["phones"]] == ["+74951234567", "+79165554433"]
    assert anna["phones"][0]["label"] == "work"
    assert anna["emails"] == ["anna@romashka.example"] and anna["tags"] == ["vip", "opt"]
    assert anna["company_name"] == "Ромашка ООО" and anna["owner_name"] == "Ivan Petrov"

    # duplicates: by number in another form, by e-mail in another case -> 409 naming Anna; nothing written
    for body, field in (({"name": "X", "phones": [{"number": "8 (495) 123-45-67"}]}, "phones"),
                        ({"name": "X", "emails": ["ANNA@romashka.example"]}, "emails")):
        r = await api.client.post(f"{crm}/clients", headers=h, json=body)
        assert r.status_code == 409, r.text
        assert r.json()["client_id"] == anna["id"] and r.json()["client_name"] == "Анна Смирнова"
        assert r.json()["field"] == field and "Анна Смирнова" in r.json()["detail"]
    r = await api.client.get(f"{crm}/clients", headers=h)
    assert r.json()["total"] == 2

    # clear 422s
    bad = [({"name": "X", "phones": [{"number": "hello"}]}, "phones[0].number"),
           ({"name": "X", "phones": [{"number": "112"}]}, "phones[0].number"),
           ({"name": "X", "owner_id": 999_999}, "owner_id"),
           ({"name": "X", "company_id": anna["id"]}, "company_id"),
           ({"name": "X", "fields": {"nope": 1}}, "fields.nope"),
           ({"name": "X", "unknown": 1}, "unknown"),
           ({"name": ""}, "name")]
    for body, where in bad:
        r = await api.client.post(f"{crm}/clients", headers=h, json=body)
        assert r.status_code == 422, (body, r.text)
        assert where in str(r.json()["detail"]), (where, r.text)

    # custom fields: admin defines, every write is checked
    for field in ({"key": "budget", "label": "Budget", "kind": "number"},
                  {"key": "since", "label": "Client since", "kind": "date"},
                  {"key": "source", "label": "Source", "kind": "choice", "choices": ["web", "call"]},
                  {"key": "inn", "label": "INN", "kind": "text"}):
        r = await api.client.post(f"{crm}/fields", headers=h, json=field)
        assert r.status_code == 201, r.text
    r = await api.client.post(f"{crm}/fields", headers=h, json={"key": "x", "label": "X", "kind": "choice"})
    assert r.status_code == 422
    r = await api.client.post(f"{crm}/fields", headers=h, json={"key": "budget", "label": "B", "kind": "text"})
    assert r.status_code == 409
    for fields, where in (({"budget": "a lot"}, "fields.budget"), ({"since": "31.01.2026"}, "fields.since"),
                          ({"source": "mail"}, "fields.source"), ({"budget": True}, "fields.budget")):
        r = await api.client.patch(f"{crm}/clients/{anna['id']}", headers=h, json={"fields": fields})
        assert r.status_code == 422 and where in r.text, r.text
    r = await api.client.patch(f"{crm}/clients/{anna['id']}", headers=h,
                               json={"fields": {"budget": 150000.5, "since": "2026-01-31", "source": "call",
                                                "inn": "7701234567"}})
    assert r.status_code == 200, r.text
    assert r.json()["fields"] == {"budget": 150000.5, "since": "2026-01-31", "source": "call", "inn": "7701234567"}
    r = await api.client.patch(f"{crm}/clients/{anna['id']}", headers=h, json={"fields": {"inn": None}})
    assert "inn" not in r.json()["fields"] and r.json()["fields"]["budget"] == 150000.5
    # a phone of the company taken by a change answers 409 too
    r = await api.client.patch(f"{crm}/clients/{anna['id']}", headers=h, json={"phones": [{"number": "+74951000000"}]})
    assert r.status_code == 409 and r.json()["client_id"] == company


@pytest.mark.parametrize("query, expected", [
    ("45-67", {"Анна Смирнова"}),               # any part of a number
    ("+7 916", {"Анна Смирнова"}),
    ("100-00", {"Ромашка ООО"}),
    ("ромашки", {"Ромашка ООО", "Анна Смирнова"}),  # Russian stemming; a person is found by their company
    ("поставка", {"Анна Смирнова"}),               # a word of a note, in another form
    ("смирн", {"Анна Смирнова"}),                  # a part of a word
    ("calls", {"John Smith"}),                    # English stemming: "calling" in the note
    ("smith pipes", {"John Smith"}),              # every word must match
    ("smith ромашка", set()),
    ("romashka.example", {"Анна Смирнова"}),       # e-mails are words too
    ("999", set()),
    ("петрову", {"Олег Петров"}),                  # a surname in another case: its stem is longer
    ("петровым олег", {"Олег Петров"}),
])
async def test_search(api: Api, make_tenant: Any, query: str, expected: set[str]) -> None:
    t, crm, _ = await _company(api, make_tenant)
    h = t.headers
    company = (await api.client.post(f"{crm}/clients", headers=h, json={
        "kind": "company", "name": "Ромашка ООО", "phones": [{"number": "+74951000000"}]})).json()["id"]
    for body in ({"name": "Анна Смирнова", "company_id": company, "phones": [{"number": "+74951234567"},
                                                                            {"number": "+79165554433"}],
                  "emails": ["anna@romashka.example"], "note": "Обсудили поставки"},
                 {"name": "John Smith", "phones": [{"number": "+12025550123"}], "note": "Pipes. Keeps calling."},
                 {"name": "Олег Петров"}):
        r = await api.client.post(f"{crm}/clients", headers=h, json=body)
        assert r.status_code == 201, r.text
    other, other_crm, _ = await _company(api, make_tenant)  # another tenant's twin is never found
    r = await api.client.post(f"{other_crm}/clients", headers=other.headers,
                              json={"name": "Анна Смирнова", "phones": [{"number": "+74951234567"}],
                                    "note": "Обсудили поставки ромашки"})
    assert r.status_code == 201
    r = await api.client.get(f"{crm}/clients", headers=h, params={"q": query})
    assert r.status_code == 200, r.text
    assert {c["name"] for c in r.json()["items"]} == expected
    assert r.json()["total"] == len(expected)


async def test_search_follows_changes_and_renames(api: Api, make_tenant: Any) -> None:
    t, crm, _ = await _company(api, make_tenant)
    h = t.headers
    company = (await api.client.post(f"{crm}/clients", headers=h, json={"kind": "company", "name": "Vector"})).json()
    person = (await api.client.post(f"{crm}/clients", headers=h, json={"name": "Oleg",
                                                                       "company_id": company["id"]})).json()
    r = await api.client.patch(f"{crm}/clients/{company['id']}", headers=h, json={"name": "Горизонт"})
    assert r.status_code == 200
    names = [c["name"] for c in (await api.client.get(f"{crm}/clients", headers=h,
                                                      params={"q": "горизонта"})).json()["items"]]
    assert sorted(names) == ["Oleg", "Горизонт"]
    assert (await api.client.get(f"{crm}/clients", headers=h, params={"q": "vector"})).json()["total"] == 0
    r = await api.client.post(f"{crm}/clients/{person['id']}/notes", headers=h, json={"text": "Wants a discount"})
    assert r.status_code == 201
    found = (await api.client.get(f"{crm}/clients", headers=h, params={"q": "discounts"})).json()["items"]
    assert [c["id"] for c in found] == [person["id"]]
    assert (await api.client.delete(f"{crm}/clients/{person['id']}", headers=h)).status_code == 204
    assert (await api.client.get(f"{crm}/clients", headers=h, params={"q": "discount"})).json()["total"] == 0


async def test_number_search_follows_phone_changes(api: Api, make_tenant: Any) -> None:
    """The digits index (SQLite: a trigram table kept by triggers; PostgreSQL: pg_trgm) sees every change."""
    t, crm, _ = await _company(api, make_tenant)
    h = t.headers

    async def found(fragment: str) -> list[int]:
        r = await api.client.get(f"{crm}/clients", headers=h, params={"q": fragment})
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["items"]]

    anna = (await api.client.post(f"{crm}/clients", headers=h, json={
        "name": "Anna", "phones": [{"number": "+74951234567"}]})).json()["id"]
    oleg = (await api.client.post(f"{crm}/clients", headers=h, json={
        "name": "Oleg", "phones": [{"number": "+74957654321"}]})).json()["id"]
    assert await found("4567") == [anna] and await found("495") == [anna, oleg] and await found("7654") == [oleg]
    r = await api.client.patch(f"{crm}/clients/{anna}", headers=h, json={"phones": [{"number": "+79169998877"}]})
    assert r.status_code == 200, r.text
    assert await found("4567") == [] and await found("99988") == [anna]
    assert (await api.client.delete(f"{crm}/clients/{oleg}", headers=h)).status_code == 204
    assert await found("7654") == [] and await found("495") == []


async def test_bulk_indexing_finds_as_one_by_one(api: Api, make_tenant: Any) -> None:
    """``put_new`` (imports, bench/crm.py) writes the same rows as ``put``: both backends find alike."""
    from zvonok.crm.search import index_for

    t, crm, _ = await _company(api, make_tenant)
    ids = [(await api.client.post(f"{crm}/clients", headers=t.headers, json={"name": name})).json()["id"]
           for name in ("Пётр Смирнов", "Calling Card")]
    async with api.db.session() as session:
        index = index_for(session)
        for client_id in ids:
            await index.drop(session, client_id)
        await index.put_new(session, t.id, [(ids[0], "Пётр Смирнов\nООО Ромашка"), (ids[1], "Calling Card")])
        await index.put_new(session, t.id, [])
        await session.commit()
    for query, expected in (("ромашки", [ids[0]]), ("смирнову", [ids[0]]), ("calls", [ids[1]]), ("петр", [ids[0]])):
        async with api.db.session() as session:
            assert await service.search_ids(session, t.id, query) == expected, query


async def test_timeline_merge_and_card(api: Api, make_tenant: Any) -> None:
    t, crm, ivan = await _company(api, make_tenant)
    h = t.headers
    rec = api.settings.data_dir / "recordings" / "in.wav"
    rec.parent.mkdir(parents=True, exist_ok=True)
    rec.write_bytes(b"RIFF")
    # calls before the clients exist: one in, one out (the number without "+" as some trunks write it)
    first = await _cdr(api, t.id, "+74951234567", "101", at=1.7e9, callee_employee=ivan, recording="in.wav")
    second = await _cdr(api, t.id, "101", "79165554433", at=1.7e9 + 100, caller_employee=ivan)
    await _cdr(api, t.id, "+74959999999", "101", at=1.7e9 + 200)  # someone else's
    anna = (await api.client.post(f"{crm}/clients", headers=h, json={
        "name": "Анна", "phones": [{"number": "+74951234567"}]})).json()
    dup = (await api.client.post(f"{crm}/clients", headers=h, json={
        "name": "Anna S.", "phones": [{"number": "+79165554433"}], "emails": ["a@x.example"], "tags": ["opt"],
        "note": "second card"})).json()
    r = await api.client.get(f"{crm}/clients/{anna['id']}/calls", headers=h)
    assert r.status_code == 200, r.text
    calls = r.json()["items"]
    assert [c["id"] for c in calls] == [first]
    assert calls[0]["client_number"] == "+74951234567" and calls[0]["employee_name"] == "Ivan Petrov"
    assert calls[0]["detail_url"] == f"/calls/{first}" and calls[0]["recording_url"] == f"/calls/{first}/recording"

    # merge: the second card's phone (so its call), e-mail, note and tag move; the card is gone
    r = await api.client.post(f"{crm}/clients/{anna['id']}/merge", headers=h, json={"source_id": dup["id"]})
    assert r.status_code == 200, r.text
    merged = r.json()
    assert [p["number"] for p in merged["phones"]] == ["+74951234567", "+79165554433"]
    assert merged["emails"] == ["a@x.example"] and merged["tags"] == ["opt"]
    assert (await api.client.get(f"{crm}/clients/{dup['id']}", headers=h)).status_code == 404
    calls = (await api.client.get(f"{crm}/clients/{anna['id']}/calls", headers=h)).json()
    assert [c["id"] for c in calls["items"]] == [second, first] and calls["total"] == 2
    assert calls["items"][0]["client_number"] == "+79165554433" and calls["items"][0]["recording_url"] is None
    notes = [n["text"] for n in (await api.client.get(f"{crm}/clients/{anna['id']}/notes", headers=h)).json()]
    assert "second card" in notes and any(str(dup["id"]) in n and "Anna S." in n for n in notes)
    found = (await api.client.get(f"{crm}/clients", headers=h, params={"q": "second"})).json()["items"]
    assert [c["id"] for c in found] == [anna["id"]]
    r = await api.client.post(f"{crm}/clients/{anna['id']}/merge", headers=h, json={"source_id": anna["id"]})
    assert r.status_code == 422
    r = await api.client.post(f"{crm}/clients/{anna['id']}/merge", headers=h, json={"source_id": dup["id"]})
    assert r.status_code == 422 and "source_id" in r.text

    # the screen-pop card: known (last calls, newest first) and unknown numbers
    card = (await api.client.get(f"{crm}/card", headers=h, params={"number": "+79165554433"})).json()
    assert card["client_id"] == anna["id"] and card["name"] == "Анна"
    assert [c["cdr_id"] for c in card["last_calls"]] == [second, first]
    card = (await api.client.get(f"{crm}/card", headers=h, params={"number": "+74950000000"})).json()
    assert card["client_id"] is None and card["number"] == "+74950000000"


async def test_employee_sees_the_calls_but_opens_only_their_own(db: Any, api: Api, make_tenant: Any) -> None:
    t, crm, ivan = await _company(api, make_tenant)
    async with db.session() as session:
        client = await service.create_client(session, t.id, service.schemas.ClientCreate(
            name="Анна", phones=[service.schemas.PhoneIn(number="+74951234567")]))
        await session.commit()
        mine = await _cdr(api, t.id, "+74951234567", "101", callee_employee=ivan)
        theirs = await _cdr(api, t.id, "+74951234567", "102", at=1.8e9)
        rows, total = await service.timeline(session, t.id, client.id, service.Viewer(False, ivan))
    assert total == 2
    assert {r.id: r.detail_url for r in rows} == {mine: f"/calls/{mine}", theirs: None}


async def test_screen_pop_reaches_the_ringing_employee(db: Any, api: Api, make_tenant: Any) -> None:
    t, _crm, ivan = await _company(api, make_tenant)
    async with db.session() as session:
        await service.create_client(session, t.id, service.schemas.ClientCreate(
            name="Анна Смирнова", owner_id=ivan, phones=[service.schemas.PhoneIn(number="+74951234567")]))
        await session.commit()
    await _cdr(api, t.id, "+74951234567", "101", callee_employee=ivan)
    bus = LocalBus()
    popper = ScreenPopper(db, bus)
    popper.start()
    views = {who: CallVisibility(Principal(role=role, tenant_id=t.id, employee_id=emp))
             for who, role, emp in (("ivan", Role.EMPLOYEE, ivan), ("colleague", Role.EMPLOYEE, ivan + 1000),
                                    ("admin", Role.TENANT_ADMIN, None))}
    got: dict[str, list[ScreenPop]] = {who: [] for who in views}
    arrived = asyncio.Event()

    async def websocket(event: object) -> None:  # what each viewer's socket would send
        for who, view in views.items():
            got[who] += [e for e in view.admit(deserialize(serialize(event))) if isinstance(e, ScreenPop)]
        if got["ivan"]:
            arrived.set()

    sub = bus.subscribe(websocket, event_types=(ScreenPop,))
    try:
        for call, number in (("known", "+74951234567"), ("lead", "+74957654321")):
            arrived.clear()
            for who in got:
                got[who].clear()
            invite = time.time()  # the engine publishes CallStarted as it takes the INVITE
            bus.publish(CallStarted(tenant_id=t.id, call_id=call, at=invite, direction=Direction.INBOUND,
                                    caller=Party(number=number, external=True), callee_number="101"))
            for leg in ("a", "b"):  # two phones of Ivan ring: one pop
                bus.publish(LegCreated(tenant_id=t.id, call_id=call, at=invite, leg_id=leg, role=LegRole.CALLEE,
                                       party=Party(number="101", employee_id=ivan)))
            await asyncio.wait_for(arrived.wait(), 10)
            delay = (time.time() - invite) * 1000
            print(f"screen pop ({call}): {delay:.1f} ms from the INVITE's CallStarted to the employee's socket")
            await asyncio.sleep(0.05)
            assert len(got["ivan"]) == 1 and got["colleague"] == [] and got["admin"] == []
            card = got["ivan"][0].card
            assert card.number == number and got["ivan"][0].call_id == call
            if call == "known":
                assert card.name == "Анна Смирнова" and card.owner == "Ivan Petrov" and len(card.last_calls) == 1
            else:
                assert card.client_id is None and card.name == ""
            bus.publish(CallEnded(tenant_id=t.id, call_id=call, at=invite + 1, disposition=Disposition.CANCELLED,
                                  hangup_side=HangupSide.CALLER, cause="cancelled"))
        # a colleague's internal call pops nothing
        bus.publish(CallStarted(tenant_id=t.id, call_id="internal", at=time.time(), direction=Direction.INTERNAL,
                                caller=Party(number="102", employee_id=ivan + 1), callee_number="101"))
        bus.publish(LegCreated(tenant_id=t.id, call_id="internal", at=time.time(), leg_id="c", role=LegRole.CALLEE,
                               party=Party(number="101", employee_id=ivan)))
        await asyncio.sleep(0.2)
        assert got["ivan"] and all(p.call_id != "internal" for p in got["ivan"])
    finally:
        await sub.close()
        await popper.stop()
        await bus.close()


async def test_employees_use_the_crm_but_define_no_fields(api: Api, make_tenant: Any) -> None:
    t, crm, ivan = await _company(api, make_tenant)
    r = await api.client.patch(f"/api/v1/tenants/{t.id}/employees/{ivan}", headers=t.headers,
                               json={"email": f"ivan@{t.domain}", "web_password": "ivan-password-1"})
    assert r.status_code == 200, r.text
    r = await api.client.post("/api/v1/auth/login", json={"email": f"ivan@{t.domain}", "password": "ivan-password-1"})
    assert r.status_code == 200, r.text
    h = {"Authorization": f"Bearer {r.json()['access_token']}"}
    r = await api.client.post(f"{crm}/clients", headers=h, json={"name": "Lead", "phones": [{"number": "+74951110000"}]})
    assert r.status_code == 201, r.text
    client = r.json()["id"]
    r = await api.client.post(f"{crm}/clients/{client}/notes", headers=h, json={"text": "called"})
    assert r.status_code == 201 and r.json()["author_employee_id"] == ivan
    assert (await api.client.get(f"{crm}/clients", headers=h, params={"q": "lead"})).json()["total"] == 1
    assert (await api.client.get(f"{crm}/fields", headers=h)).status_code == 200
    r = await api.client.post(f"{crm}/fields", headers=h, json={"key": "x", "label": "X", "kind": "text"})
    assert r.status_code == 403
    other, other_crm, _ = await _company(api, make_tenant)
    assert (await api.client.get(f"{other_crm}/clients", headers=h)).status_code == 404
    assert (await api.client.get(f"{crm}/clients/{client}", headers=other.headers)).status_code == 404
