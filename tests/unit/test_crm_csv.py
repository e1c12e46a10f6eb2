"""Clients' CSV import and export through the REST API: every bad row reported with its line and nothing
imported, duplicates by phone skipped (in the base) or refused (twice in the file), Windows-1251 and
UTF-16 files, binary junk refused, 10 000 rows in one import (clients inserted a few statements a batch, not
one per row), every phone, e-mail, note, search document and company link of a multi-batch import on the row
it came from, the export streamed with custom fields and formula injection escaped, and an export imported
back is all duplicates."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import httpx
from sqlalchemy import event, select

from zvonok.api.app import create_app
from zvonok.crm import http as crm_http
from zvonok.crm.clients_csv import safe_cell
from zvonok.crm.models import CrmClient, CrmEmail, CrmNote, CrmPhone
from zvonok.crm.transfer import BATCH

Api = Any


async def _company(api: Api, make_tenant: Any) -> tuple[Any, str, int]:
    t = await make_tenant(f"csv-{uuid.uuid4().hex[:6]}.example")
    base = f"/api/v1/tenants/{t.id}"
    r = await api.client.post(
        f"{base}/offices", headers=t.headers, json={"name": "Moscow", "area_code": "495"}
    )
    assert r.status_code == 201, r.text
    r = await api.client.post(
        f"{base}/employees",
        headers=t.headers,
        json={"full_name": "Ivan Petrov", "office_id": r.json()["id"], "email": "ivan@x.ru"},
    )
    assert r.status_code == 201, r.text
    return t, base + "/crm", r.json()["id"]


async def _import(api: Api, crm: str, t: Any, body: bytes, *, multipart: bool = False) -> Any:
    if multipart:
        return await api.client.post(
            f"{crm}/clients/import", headers=t.headers, files={"file": ("clients.csv", body, "text/csv")}
        )
    return await api.client.post(
        f"{crm}/clients/import", headers={**t.headers, "content-type": "text/csv"}, content=body
    )


async def test_import_rows_errors_duplicates_and_export(api: Api, make_tenant: Any) -> None:
    t, crm, ivan = await _company(api, make_tenant)
    h = t.headers
    r = await api.client.post(
        f"{crm}/fields",
        headers=h,
        json={"key": "segment", "label": "Segment", "kind": "choice", "choices": ["A", "B"]},
    )
    assert r.status_code == 201, r.text
    r = await api.client.post(
        f"{crm}/fields", headers=h, json={"key": "since", "label": "Since", "kind": "date"}
    )
    assert r.status_code == 201, r.text
    r = await api.client.post(
        f"{crm}/clients", headers=h, json={"name": "Existing", "phones": [{"number": "+74957770000"}]}
    )
    existing = r.json()["id"]

    bad = (
        "name;kind;phones;emails;owner;segment;since\n"
        "Анна;person;123-45-67;anna@x.ru;Ivan Petrov;A;2026-01-31\n"
        ";person;+74951112233;;;;\n"
        "Боб;robot;not a phone;bob@;Nobody;C;31.01.2026\n"
        "Вера;person;8 495 123-45-67;;;;\n"
    ).encode()
    r = await _import(api, crm, t, bad)
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert {e["line"] for e in errors} == {3, 4, 5}
    # line 5's number is line 2's: "123-45-67" of an owner in Moscow and "8 495 123-45-67" are one number
    assert {"line": 5, "message": "phone +74951234567 already on line 2"} in errors
    messages = " | ".join(e["message"] for e in errors if e["line"] == 4)
    for part in (
        "kind 'robot'",
        "'bob@' is not an e-mail",
        "no employee 'Nobody'",
        "segment must be one of A, B",
        "since is not a date",
    ):
        assert part in messages, messages
    assert (await api.client.get(f"{crm}/clients", headers=h)).json()["total"] == 1  # nothing imported

    # the same number written twice (local with the owner's area code, and 8-prefixed): line 3 names line 2
    twice = "name,owner,phones\nАнна,ivan@x.ru,123-45-67\nВера,,8 495 123-45-67\n".encode()
    r = await _import(api, crm, t, twice)
    assert r.status_code == 422
    assert r.json()["errors"] == [{"line": 3, "message": "phone +74951234567 already on line 2"}]

    good = (
        "name,kind,company,owner,phones,emails,tags,note,segment\n"
        "Ромашка,company,,,+7 495 100-00-00,,vip,,A\n"
        'Анна,person,ромашка,Ivan Petrov,"123-45-67, +79161234567",anna@x.ru,"vip, new",Звонить утром,B\n'
        "Old friend,person,,,+7 495 777-00-00,,,,\n"
        '=HYPERLINK("http://evil"),person,,,+74950000001,,,,\n'
    ).encode("cp1251")
    r = await _import(api, crm, t, good, multipart=True)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "created": 3,
        "duplicates": [{"line": 4, "client_id": existing, "value": "+74957770000"}],
    }
    found = (await api.client.get(f"{crm}/clients", headers=h, params={"q": "утром"})).json()["items"]
    assert [c["name"] for c in found] == ["Анна"]
    anna = found[0]
    assert (
        anna["owner_id"] == ivan and anna["company_name"] == "Ромашка" and anna["fields"] == {"segment": "B"}
    )
    assert [p["number"] for p in anna["phones"]] == ["+74951234567", "+79161234567"]
    assert anna["tags"] == ["vip", "new"]

    r = await api.client.get(f"{crm}/clients.csv", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == [
        "kind",
        "name",
        "company",
        "owner",
        "phones",
        "emails",
        "tags",
        "note",
        "segment",
        "since",
    ]
    by_name = {row[1]: row for row in rows[1:]}
    assert by_name["Анна"][2:7] == [
        "Ромашка",
        "Ivan Petrov",
        "+74951234567, +79161234567",
        "anna@x.ru",
        "vip, new",
    ]
    assert by_name["Анна"][8] == "B"
    assert '\'=HYPERLINK("http://evil")' in by_name  # a formula is text in a spreadsheet
    # the export imports back: every row is a duplicate, the formula's name comes back as it was
    r = await _import(api, crm, t, r.content)
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 0 and len(r.json()["duplicates"]) == 4


async def test_hostile_files(api: Api, make_tenant: Any) -> None:
    t, crm, _ = await _company(api, make_tenant)
    r = await _import(api, crm, t, bytes(range(256)) * 10)
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"line": 1, "message": "the file is not UTF-8, UTF-16 or Windows-1251 text"}
    ]
    r = await _import(api, crm, t, b"")
    assert r.json()["errors"][0]["message"] == "the file is empty"
    r = await _import(api, crm, t, b"who,what\n1,2\n")
    assert r.json()["errors"][0]["message"] == "the header must name the column name"
    r = await _import(api, crm, t, b"name,colour\nA,red\n")
    assert r.json()["errors"] == [{"line": 1, "message": "unknown column 'colour'"}]
    r = await _import(api, crm, t, b'name,phones\n"unterminated,+74951112233\n')
    assert r.status_code == 422 and "unreadable CSV" in r.json()["errors"][0]["message"]
    r = await api.client.post(
        f"{crm}/clients/import", headers={**t.headers, "content-type": "image/png"}, content=b"x"
    )
    assert r.status_code == 415
    # UTF-16 with a BOM (Excel's "Unicode text"), tab-separated
    r = await _import(api, crm, t, "name\tphones\nЁлка\t+74952223344\n".encode("utf-16"))
    assert r.status_code == 200 and r.json()["created"] == 1
    # past the upload limit: 413 (a server with a 64 KiB limit: the same middleware as the 64 MiB default)
    small = create_app(
        api.settings.model_copy(update={"http_max_upload": 65536}), api.db, routers=[crm_http.router]
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=small), base_url="http://zvonok.test"
    ) as client:
        huge = b"name\n" + b"x,\n" * 40_000
        r = await client.post(
            f"{crm}/clients/import", headers={**t.headers, "content-type": "text/csv"}, content=huge
        )
        assert r.status_code == 413
        r = await client.post(
            f"{crm}/clients/import", headers=t.headers, files={"file": ("clients.csv", huge, "text/csv")}
        )
        assert r.status_code == 413


async def test_ten_thousand_rows(api: Api, make_tenant: Any) -> None:
    t, crm, _ = await _company(api, make_tenant)
    lines = ["name;phones;emails;tags"] + [f"Клиент {i};+7916{i:07d};c{i}@x.ru;bulk" for i in range(10_000)]
    r = await _import(api, crm, t, "\n".join(lines).encode())
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 10_000
    r = await api.client.get(f"{crm}/clients", headers=t.headers, params={"q": "9160009999"})
    assert [c["name"] for c in r.json()["items"]] == ["Клиент 9999"]
    r = await api.client.get(f"{crm}/clients.csv", headers=t.headers)
    assert r.content.decode("utf-8-sig").count("\r\n") == 10_001


async def test_import_inserts_clients_a_few_statements_a_batch(api: Api, make_tenant: Any) -> None:
    # SQLite cannot order a multi-row INSERT's RETURNING rows: asked to, SQLAlchemy sends an INSERT per row
    t, crm, _ = await _company(api, make_tenant)
    count = 1200
    lines = ["name,phones"] + [f"Клиент {i},+7916{i:07d}" for i in range(count)]
    inserts: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CRM_CLIENTS"):
            inserts.append(statement)

    event.listen(api.db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        r = await _import(api, crm, t, "\n".join(lines).encode())
    finally:
        event.remove(api.db.engine.sync_engine, "before_cursor_execute", seen)
    assert r.status_code == 200, r.text
    assert r.json()["created"] == count
    batches = -(-count // BATCH)
    assert 0 < len(inserts) <= 3 * batches, len(inserts)


async def test_import_links_land_on_their_rows(api: Api, make_tenant: Any) -> None:
    """Companies and their people over several batches, each with its own phones (none, one or two),
    e-mails and notes: every one read back on the client of its row (ids are mapped back to rows)."""
    t, crm, _ = await _company(api, make_tenant)
    r = await api.client.post(
        f"{crm}/clients",
        headers=t.headers,
        json={"name": "Старая фирма", "kind": "company", "phones": [{"number": "+74950000000"}]},
    )
    assert r.status_code == 201, r.text
    old_firm = r.json()["id"]
    lines = ["name,kind,company,phones,emails,note"]
    lines.append("Старая фирма,company,,+7 495 000-00-00,,")  # a duplicate: its people join the existing one
    phones: dict[str, set[str]] = {}
    emails: dict[str, set[str]] = {}
    notes: dict[str, str] = {}
    company_of: dict[str, str | None] = {}
    companies = 2 * BATCH + 50
    for c in range(companies):
        firm = f"Фирма x{c:04d}"  # not a prefix of its people's numbers: they are searched below
        own = {f"+7495{c:07d}"} if c % 4 else set()  # every fourth company without a phone
        phones[firm], emails[firm], company_of[firm] = own, set(), None
        lines.append(f"{firm},company,,{', '.join(sorted(own))},,")
        for p in (2 * c, 2 * c + 1):
            name = f"Клиент {p:04d}"
            own = {f"+7916{p:07d}", f"+7925{p:07d}"}
            own = set(sorted(own)[: p % 3])  # none, one or two
            mails = {f"p{p}@x.ru"} if p % 5 else set()
            note = f"Звонить клиенту {p:04d}" if p % 2 else ""
            firm_of = firm if p % 7 else ("Старая фирма" if p % 14 == 0 else None)
            phones[name], emails[name], company_of[name] = own, mails, firm_of
            if note:
                notes[name] = note
            lines.append(f'{name},person,{(firm_of or "").lower()},"{", ".join(sorted(own))}",'
                         f'{"".join(mails)},{note}')
    r = await _import(api, crm, t, "\n".join(lines).encode())
    assert r.status_code == 200, r.text
    assert r.json()["created"] == len(phones)
    assert r.json()["duplicates"] == [{"line": 2, "client_id": old_firm, "value": "+74950000000"}]

    async with api.db.session() as session:
        ids = dict(
            (await session.execute(select(CrmClient.name, CrmClient.id).where(CrmClient.tenant_id == t.id)))
            .tuples()
            .all()
        )
        names = {v: k for k, v in ids.items()}
        assert len(ids) == len(phones) + 1

        async def read(column: Any, model: Any) -> dict[str, set[str]]:
            out: dict[str, set[str]] = {name: set() for name in phones}
            for client_id, value in (
                (await session.execute(select(model.client_id, column).where(model.tenant_id == t.id)))
                .tuples()
                .all()
            ):
                if client_id != old_firm:
                    out[names[client_id]].add(value)
            return out

        assert await read(CrmPhone.number, CrmPhone) == phones
        assert await read(CrmEmail.address, CrmEmail) == emails
        assert await read(CrmNote.text, CrmNote) == {n: {notes[n]} if n in notes else set() for n in phones}
        links = (
            await session.execute(select(CrmClient.name, CrmClient.company_id).where(CrmClient.tenant_id == t.id))
        ).tuples().all()
        assert {n: names[i] if i else None for n, i in links if n != "Старая фирма"} == company_of
    for p in (0, 1, BATCH - 1, BATCH, BATCH + 1, 2 * BATCH + 3, 2 * companies - 1):  # the search documents
        r = await api.client.get(f"{crm}/clients", headers=t.headers, params={"q": f"Клиент {p:04d}"})
        assert [c["name"] for c in r.json()["items"]] == [f"Клиент {p:04d}"], p


def test_safe_cell() -> None:
    assert safe_cell("=1+2") == "'=1+2"
    assert safe_cell("@SUM(A1)") == "'@SUM(A1)"
    assert safe_cell("+74951234567") == "+74951234567"
    assert safe_cell("-5") == "-5"
    assert safe_cell("+cmd|' /C calc'!A0") == "'+cmd|' /C calc'!A0"
    assert safe_cell("\tx") == "'\tx"
    assert safe_cell("Иван") == "Иван"
