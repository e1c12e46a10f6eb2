"""Clients' CSV import and export through the REST API: every bad row reported with its line and nothing
imported, duplicates by phone skipped (in the base) or refused (twice in the file), Windows-1251 and
UTF-16 files, binary junk refused, 10 000 rows in one import, the export streamed with custom fields and
formula injection escaped, and an export imported back is all duplicates."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import httpx

from zvonok.api.app import create_app
from zvonok.crm import http as crm_http
from zvonok.crm.clients_csv import safe_cell

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


def test_safe_cell() -> None:
    assert safe_cell("=1+2") == "'=1+2"
    assert safe_cell("@SUM(A1)") == "'@SUM(A1)"
    assert safe_cell("+74951234567") == "+74951234567"
    assert safe_cell("-5") == "-5"
    assert safe_cell("+cmd|' /C calc'!A0") == "'+cmd|' /C calc'!A0"
    assert safe_cell("\tx") == "'\tx"
    assert safe_cell("Иван") == "Иван"
