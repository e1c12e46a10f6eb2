"""The CDR REST API: filters, paging, detail, CSV export, recording streaming and its path safety,
and employees seeing only their own calls (both backends)."""

from __future__ import annotations

import csv
import io
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from zvonok.cdr import http as cdr_http
from zvonok.cdr import service as cdr_service
from zvonok.cdr.state import CallRecord
from zvonok.telephony.events import (
    CallStarted,
    Direction,
    Disposition,
    HangupSide,
    LegCreated,
    LegRole,
    Party,
)

Api = Any
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z = 2023-11-15T01:13:20+03:00


async def seed_cdr(
    db: Any, tenant_id: int, caller: Party, callee: Party, *, at: float, talk: float | None = 30.0,
    ring: float = 5.0, disposition: Disposition = Disposition.ANSWERED, direction: Direction = Direction.INTERNAL,
    recording: str | None = None,
) -> int:
    call_id = uuid.uuid4().hex
    record = CallRecord.started(CallStarted(
        tenant_id=tenant_id, call_id=call_id, at=at, caller=caller, callee_number=callee.number, direction=direction))
    record.apply(LegCreated(tenant_id=tenant_id, call_id=call_id, at=at, leg_id="L1", role=LegRole.CALLER, party=caller))
    record.apply(LegCreated(tenant_id=tenant_id, call_id=call_id, at=at + 0.1, leg_id="L2", role=LegRole.CALLEE,
                            party=callee, user_agent="Yealink"))
    if talk is not None:
        record.answered_at, record.answered_leg_id = at + ring, "L2"
    record.recording_path = recording
    end = at + ring + (talk or 0.0)
    finished = record.finish(at=end, disposition=disposition, hangup_side=HangupSide.CALLER, cause="normal_clearing")
    async with db.session() as session:
        cdr = await cdr_service.write_cdr(session, tenant_id, finished)
        await session.commit()
    assert cdr is not None
    return cdr.id


@dataclass
class Company:
    id: int
    headers: dict[str, str]
    alice: Party
    bob: Party
    carol: Party
    alice_headers: dict[str, str]


async def make_company(api: Api, make_tenant: Any, domain: str = "acme.example") -> Company:
    t = await make_tenant(domain)
    r = await api.client.patch(f"/api/v1/tenants/{t.id}", headers=api.admin, json={"timezone": "Europe/Moscow"})
    assert r.status_code == 200, r.text
    base = f"/api/v1/tenants/{t.id}"
    parties = []
    for number, name in (("101", "alice"), ("102", "bob"), ("103", "carol")):
        body: dict[str, Any] = {"full_name": name.title(), "email": f"{name}@{domain}"}
        if name == "alice":
            body["web_password"] = "alice-password"
        emp = (await api.client.post(f"{base}/employees", headers=t.headers, json=body)).json()
        ext = (await api.client.post(f"{base}/extensions", headers=t.headers, json={
            "number": number, "display_name": name.title(), "employee_id": emp["id"]})).json()
        parties.append(Party(number=number, display_name=name.title(), extension_id=ext["id"], employee_id=emp["id"]))
    r = await api.client.post("/api/v1/auth/login", json={"email": f"alice@{domain}", "password": "alice-password"})
    assert r.status_code == 200, r.text
    return Company(t.id, t.headers, *parties, alice_headers={"Authorization": f"Bearer {r.json()['access_token']}"})


async def test_list_filters_and_paging(api: Api, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant)
    customer = Party(number="+74951234567", external=True)
    ids = {
        "a_b": await seed_cdr(api.db, c.id, c.alice, c.bob, at=T0),
        "b_c_busy": await seed_cdr(api.db, c.id, c.bob, c.carol, at=T0 + 3600, talk=None, disposition=Disposition.BUSY),
        "in_a": await seed_cdr(api.db, c.id, customer, c.alice, at=T0 + 7200, direction=Direction.INBOUND),
        "c_out": await seed_cdr(api.db, c.id, c.carol, Party(number="+74957654321", external=True), at=T0 + 86400,
                                direction=Direction.OUTBOUND),
    }
    base = f"/api/v1/tenants/{c.id}/cdrs"

    async def ids_of(**params: Any) -> list[int]:
        r = await api.client.get(base, headers=c.headers, params=params)
        assert r.status_code == 200, r.text
        return [item["id"] for item in r.json()["items"]]

    assert await ids_of() == [ids["c_out"], ids["in_a"], ids["b_c_busy"], ids["a_b"]]  # newest first
    assert await ids_of(disposition="busy") == [ids["b_c_busy"]]
    assert await ids_of(direction="inbound") == [ids["in_a"]]
    assert await ids_of(extension="101") == [ids["in_a"], ids["a_b"]]
    assert await ids_of(extension_id=c.carol.extension_id) == [ids["c_out"], ids["b_c_busy"]]
    # from inclusive, to exclusive; with an offset, or naive = the tenant's zone (Moscow, +03:00).
    assert await ids_of(**{"from": "2023-11-14T22:13:20Z", "to": "2023-11-15T00:13:21+00:00"}) == [
        ids["in_a"], ids["b_c_busy"], ids["a_b"]]
    assert await ids_of(**{"from": "2023-11-15T01:13:21"}) == [ids["c_out"], ids["in_a"], ids["b_c_busy"]]
    assert await ids_of(**{"to": "2023-11-16"}) == [ids["in_a"], ids["b_c_busy"], ids["a_b"]]
    assert await ids_of(extension="101", disposition="busy") == []

    r = await api.client.get(base, headers=c.headers, params={"limit": 2, "offset": 1})
    page = r.json()
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 1)
    assert [i["id"] for i in page["items"]] == [ids["in_a"], ids["b_c_busy"]]
    item = page["items"][0]
    assert (item["caller_number"], item["callee_employee_id"], item["direction"], item["internal"]) == (
        "+74951234567", c.alice.employee_id, "inbound", False)
    assert (item["duration"], item["billsec"], item["cost"], item["has_recording"]) == (35, 30, "0.0000", False)
    assert "recording_path" not in item and "legs" not in item

    for bad in ({"disposition": "lost"}, {"direction": "up"}, {"from": "yesterday"}, {"limit": 0}):
        assert (await api.client.get(base, headers=c.headers, params=bad)).status_code == 422


async def test_detail_has_legs(api: Api, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant)
    cdr_id = await seed_cdr(api.db, c.id, c.alice, c.bob, at=T0, recording="x.wav")
    r = await api.client.get(f"/api/v1/tenants/{c.id}/cdrs/{cdr_id}", headers=c.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["has_recording"] is True and "recording_path" not in body
    assert [(leg["leg_id"], leg["role"], leg["number"], leg["user_agent"]) for leg in body["legs"]] == [
        ("L1", "caller", "101", ""), ("L2", "callee", "102", "Yealink")]
    assert body["started_at"] == "2023-11-14T22:13:20Z" and body["answered_at"] == "2023-11-14T22:13:25Z"
    r = await api.client.get(f"/api/v1/tenants/{c.id}/cdrs/987654", headers=c.headers)
    assert r.status_code == 404


async def test_csv_export(api: Api, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant)
    evil = Party(number="+74951234567", display_name="=HYPERLINK(\"http://x\")", external=True)
    first = await seed_cdr(api.db, c.id, evil, c.alice, at=T0, direction=Direction.INBOUND)
    await seed_cdr(api.db, c.id, c.bob, c.carol, at=T0 + 10, talk=None, disposition=Disposition.NO_ANSWER)
    r = await api.client.get(f"/api/v1/tenants/{c.id}/cdrs.csv", headers=c.headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["disposition"] for row in rows] == ["no_answer", "answered"]
    assert list(rows[0]) == list(cdr_http.CSV_COLUMNS)
    row = rows[1]
    assert (row["id"], row["caller_number"], row["caller_name"], row["callee_number"]) == (
        str(first), "+74951234567", "'=HYPERLINK(\"http://x\")", "101")
    assert (row["started_at"], row["answered_at"], row["duration"], row["billsec"], row["currency"]) == (
        "2023-11-14T22:13:20+00:00", "2023-11-14T22:13:25+00:00", "35", "30", "USD")
    assert rows[0]["answered_at"] == "" and rows[0]["sip_status"] == ""
    # Same filters as the list.
    r = await api.client.get(f"/api/v1/tenants/{c.id}/cdrs.csv", headers=c.headers, params={"direction": "inbound"})
    assert [row["id"] for row in csv.DictReader(io.StringIO(r.text))] == [str(first)]
    # Nothing matching: just the header.
    r = await api.client.get(f"/api/v1/tenants/{c.id}/cdrs.csv", headers=c.headers, params={"disposition": "busy"})
    assert r.text.strip() == ",".join(cdr_http.CSV_COLUMNS)


async def test_csv_export_streams_many_batches(api: Api, make_tenant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    c = await make_company(api, make_tenant)
    for i in range(7):  # several share a start time: keyset paging must not skip or repeat any
        await seed_cdr(api.db, c.id, c.alice, c.bob, at=T0 + (i // 3))
    real = cdr_service.iter_cdrs

    def small_batches(*args: Any, **kwargs: Any) -> Any:
        return real(*args, **{**kwargs, "batch": 2})

    monkeypatch.setattr(cdr_service, "iter_cdrs", small_batches)
    r = await api.client.get(f"/api/v1/tenants/{c.id}/cdrs.csv", headers=c.headers)
    listed = (await api.client.get(f"/api/v1/tenants/{c.id}/cdrs", headers=c.headers)).json()["items"]
    assert [row["id"] for row in csv.DictReader(io.StringIO(r.text))] == [str(i["id"]) for i in listed]
    assert len(listed) == 7


async def test_recording_download_and_path_safety(api: Api, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant)
    data_dir = api.settings.data_dir
    rec_dir = data_dir / "recordings" / str(c.id)
    rec_dir.mkdir(parents=True)
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4
    (rec_dir / "call.wav").write_bytes(wav)
    (data_dir / "secret.txt").write_text("top secret")
    os.symlink(data_dir / "secret.txt", rec_dir / "link.wav")
    base = f"/api/v1/tenants/{c.id}/cdrs"

    ok_rel = await seed_cdr(api.db, c.id, c.alice, c.bob, at=T0, recording=f"{c.id}/call.wav")
    ok_abs = await seed_cdr(api.db, c.id, c.alice, c.bob, at=T0, recording=str(rec_dir / "call.wav"))
    for cdr_id in (ok_rel, ok_abs):
        r = await api.client.get(f"{base}/{cdr_id}/recording", headers=c.headers)
        assert r.status_code == 200, r.text
        assert r.content == wav and r.headers["content-type"] == "audio/wav"

    bad = [
        f"{c.id}/../../secret.txt",  # climbs out
        str(data_dir / "secret.txt"),  # absolute, outside
        "/etc/passwd",
        f"{c.id}/link.wav",  # a symlink inside pointing outside
        f"{c.id}/missing.wav",
        str(c.id),  # a directory
        "a\x00b",
        None,  # no recording at all
    ]
    for path in bad:
        cdr_id = await seed_cdr(api.db, c.id, c.alice, c.bob, at=T0, recording=path)
        r = await api.client.get(f"{base}/{cdr_id}/recording", headers=c.headers)
        assert r.status_code == 404, path
        assert "secret" not in r.text


async def test_employee_sees_only_own_calls(api: Api, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant)
    rec_dir = api.settings.data_dir / "recordings"
    rec_dir.mkdir(parents=True)
    (rec_dir / "r.wav").write_bytes(b"RIFF")
    mine_out = await seed_cdr(api.db, c.id, c.alice, c.bob, at=T0, recording="r.wav")
    mine_in = await seed_cdr(api.db, c.id, c.carol, c.alice, at=T0 + 1)
    other = await seed_cdr(api.db, c.id, c.bob, c.carol, at=T0 + 2, recording="r.wav")
    base = f"/api/v1/tenants/{c.id}/cdrs"
    h = c.alice_headers

    r = await api.client.get(base, headers=h)
    assert [i["id"] for i in r.json()["items"]] == [mine_in, mine_out] and r.json()["total"] == 2
    r = await api.client.get(base, headers=h, params={"extension": "103"})
    assert [i["id"] for i in r.json()["items"]] == [mine_in]
    assert (await api.client.get(f"{base}/{mine_in}", headers=h)).status_code == 200
    assert (await api.client.get(f"{base}/{other}", headers=h)).status_code == 404
    assert (await api.client.get(f"{base}/{mine_out}/recording", headers=h)).status_code == 200
    assert (await api.client.get(f"{base}/{other}/recording", headers=h)).status_code == 404
    rows = list(csv.DictReader(io.StringIO((await api.client.get(f"{base}.csv", headers=h)).text)))
    assert [row["id"] for row in rows] == [str(mine_in), str(mine_out)]
    # The admin sees all three; an employee-role API token (not a person) sees none.
    assert (await api.client.get(base, headers=c.headers)).json()["total"] == 3
    r = await api.client.post(f"/api/v1/tenants/{c.id}/tokens", headers=c.headers, json={"name": "e", "role": "employee"})
    token = {"Authorization": f"Bearer {r.json()['token']}"}
    assert (await api.client.get(base, headers=token)).json()["total"] == 0


async def test_other_tenant_and_no_auth(api: Api, make_tenant: Any) -> None:
    a = await make_company(api, make_tenant, "a.example")
    b = await make_company(api, make_tenant, "b.example")
    b_cdr = await seed_cdr(api.db, b.id, b.alice, b.bob, at=T0)
    for path in (f"/api/v1/tenants/{b.id}/cdrs", f"/api/v1/tenants/{b.id}/cdrs.csv",
                 f"/api/v1/tenants/{b.id}/cdrs/{b_cdr}", f"/api/v1/tenants/{a.id}/cdrs/{b_cdr}",
                 f"/api/v1/tenants/{a.id}/cdrs/{b_cdr}/recording"):
        assert (await api.client.get(path, headers=a.headers)).status_code == 404, path
        assert (await api.client.get(path)).status_code == 401, path
    r = await api.client.get(f"/api/v1/tenants/{a.id}/cdrs", headers=a.headers, params={"extension_id": b.alice.extension_id})
    assert r.json()["total"] == 0


def test_cdr_time_helpers() -> None:
    assert datetime.fromtimestamp(T0, UTC).isoformat() == "2023-11-14T22:13:20+00:00"
