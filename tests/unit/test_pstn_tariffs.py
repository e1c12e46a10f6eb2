"""Tariffs, their rate decks (CSV import all-or-nothing, export, paging), tenants' billing plans and
:func:`zvonok.pstn.service.load_tariff` (both backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from test_pstn_support import PstnApi, make_company, ok, pstn_api

from zvonok.config import Settings
from zvonok.pstn import service
from zvonok.pstn.events import PstnChanged
from zvonok.storage.db import Database

DECK = (
    "prefix;destination;rate;connection_fee;increment;minimum;rate_peak\n"
    "7495;Moscow;1,50;0;60/60;;2,00\n"
    "7812;Saint Petersburg;2.25;0.10;1/1;30;\n"
    "79;Russia mobile;3;;30/6;;4.5\n"
    "+44;United Kingdom;12.5;;;;\n"
)
PEAK = {"name": "peak", "start": "08:00", "end": "20:00", "weekdays": [4, 3, 2, 1, 0]}


@pytest.fixture
async def api(db: Database, settings: Settings) -> AsyncIterator[PstnApi]:
    async with pstn_api(db, settings) as a:
        yield a


async def _tariff(api: PstnApi, **extra: Any) -> dict[str, Any]:
    body = {"name": "Retail", "currency": "rub", "time_zone": "Europe/Moscow", "periods": [PEAK], **extra}
    tariff: dict[str, Any] = await ok(await api.client.post("/api/v1/platform/tariffs", headers=api.admin, json=body), 201)
    return tariff


async def _import(api: PstnApi, tariff_id: int, text: str | bytes, content_type: str = "text/csv") -> Any:
    return await api.client.put(f"/api/v1/platform/tariffs/{tariff_id}/rates", content=text,
                                headers={**api.admin, "Content-Type": content_type})


async def _rates(api: PstnApi, tariff_id: int, **params: Any) -> dict[str, Any]:
    page: dict[str, Any] = await ok(await api.client.get(f"/api/v1/platform/tariffs/{tariff_id}/rates",
                                                         headers=api.admin, params=params))
    return page


async def test_tariff_crud_and_validation(api: PstnApi, make_tenant: Any) -> None:
    t = await _tariff(api)
    assert (t["currency"], t["periods"], t["default_period"], t["tenant_id"], t["rate_count"]) == (
        "RUB", [{**PEAK, "weekdays": [0, 1, 2, 3, 4]}], "offpeak", None, 0)
    url = f"/api/v1/platform/tariffs/{t['id']}"
    assert (await ok(await api.client.patch(url, headers=api.admin, json={"name": "Retail 2025"})))["name"] == "Retail 2025"
    listed = await ok(await api.client.get("/api/v1/platform/tariffs", headers=api.admin))
    assert [x["name"] for x in listed["items"]] == ["Retail 2025"]
    bad: list[tuple[dict[str, Any], str]] = [
        ({"periods": [{**PEAK, "end": "07:00"}]}, "end 07:00:00 is not after start 08:00:00"),
        ({"periods": [{**PEAK, "start": "8am"}]}, "is not a time HH:MM"),
        ({"periods": [{**PEAK, "weekdays": [7]}]}, "less than or equal to 6"),
        ({"periods": [{**PEAK, "name": "Peak Hours"}]}, "String should match pattern"),
        ({"currency": "rubles"}, "not an ISO 4217 currency code"),
        ({"time_zone": "Mars/Olympus"}, "unknown IANA time zone"),
        ({"tenant_id": 987654}, "tenant_id: tenant 987654 does not exist"),
    ]
    for change, message in bad:
        r = await api.client.post("/api/v1/platform/tariffs", headers=api.admin, json={"name": "X", **change})
        assert r.status_code == 422 and message in r.json()["detail"][0]["msg"], (change, r.text)
    c = await make_company(api, make_tenant, "t.example")
    for method, path in (("GET", "/api/v1/platform/tariffs"), ("DELETE", url), ("GET", f"{url}/rates")):
        assert (await api.client.request(method, path, headers=c.headers)).status_code == 403
    await ok(await api.client.delete(url, headers=api.admin), 204)
    assert (await api.client.get(url, headers=api.admin)).status_code == 404


async def test_rates_import_list_export(api: PstnApi) -> None:
    t = await _tariff(api)
    api.events.clear()
    assert await ok(await _import(api, t["id"], DECK.encode("cp1251"))) == {"imported": 4}
    assert api.events == [PstnChanged(tenant_id=None, what="rates")]
    page = await _rates(api, t["id"])
    assert [r["prefix"] for r in page["items"]] == ["44", "7495", "7812", "79"] and page["total"] == 4
    assert page["items"][1] == {"prefix": "7495", "destination": "Moscow", "price": "1.5000", "connection_fee": "0.0000",
                                "increment": "60/60", "minimum": 0, "period_prices": {"peak": "2.0000"}}
    assert [r["prefix"] for r in (await _rates(api, t["id"], prefix="+78"))["items"]] == ["7812"]
    assert [r["prefix"] for r in (await _rates(api, t["id"], prefix="7", limit=1, offset=1))["items"]] == ["7812"]
    assert (await ok(await api.client.get(f"/api/v1/platform/tariffs/{t['id']}", headers=api.admin)))["rate_count"] == 4

    r = await api.client.get(f"/api/v1/platform/tariffs/{t['id']}/rates.csv", headers=api.admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text.splitlines() == [
        "prefix,destination,rate,connection_fee,increment,minimum,rate_peak",
        "44,United Kingdom,12.5,0,60/60,0,",
        "7495,Moscow,1.5,0,60/60,0,2",
        "7812,Saint Petersburg,2.25,0.1,1/1,30,",
        "79,Russia mobile,3,0,30/6,0,4.5",
    ]
    # the export is a valid deck: imported into another tariff it gives the same rates
    copy = await _tariff(api, name="Copy")
    assert await ok(await _import(api, copy["id"], r.content)) == {"imported": 4}
    assert (await _rates(api, copy["id"]))["items"] == page["items"]

    pure = await _load(api, t["id"])
    assert (pure.name, pure.currency, len(pure), pure.time_zone) == ("Retail", "RUB", 4, "Europe/Moscow")
    mobile = pure.lookup("+79161234567")
    assert mobile is not None and (mobile.destination, str(mobile.increment)) == ("Russia mobile", "30/6")
    monday_noon = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # 12:00 in Moscow
    assert pure.price_at(mobile, monday_noon) == ("peak", Decimal("4.5"))
    assert pure.periods[0].start == time(8) and pure.period_at(datetime(2025, 3, 8, 9, tzinfo=UTC)) == "offpeak"


async def _load(api: PstnApi, tariff_id: int) -> Any:
    async with api.db.session() as session:
        return await service.load_tariff(session, tariff_id)


async def test_bad_deck_changes_nothing(api: PstnApi) -> None:
    t = await _tariff(api)
    await ok(await _import(api, t["id"], DECK))
    before = await _rates(api, t["id"])
    api.events.clear()
    bad = (
        "prefix,destination,rate,increment\n"
        "7495,Moscow,1.10,60/60\n"
        "74x,Broken,1,60/60\n"
        "7812,,abc,60/60\n"
        "7495,Moscow again,1,60/60\n"
        "7499,Moscow 2,1,sixty\n"
    )
    r = await _import(api, t["id"], bad)
    assert r.status_code == 422
    assert r.json() == {"detail": "5 errors in the rate file; nothing was imported", "errors": [
        {"line": 3, "message": "prefix '74x' is not 1 to 15 digits"},
        {"line": 4, "message": "destination is empty"},
        {"line": 4, "message": "rate 'abc' is not a non-negative number such as 1.25 or 1,25"},
        {"line": 5, "message": "prefix 7495 already on line 2"},
        {"line": 6, "message": "increment 'sixty' is not of the form first/next, e.g. 60/60 or 1/1"},
    ]}
    assert await _rates(api, t["id"]) == before and api.events == []
    for body, line, message in [("", 1, "the file is empty"), ("a,b\n1,2\n", 1, "the header must name the columns "
                                                                             "prefix, destination, rate")]:
        r = await _import(api, t["id"], body)
        assert r.status_code == 422 and r.json()["errors"] == [{"line": line, "message": message}]
    r = await _import(api, t["id"], '{"prefix": "7"}', "application/json")
    assert r.status_code == 415
    assert await _rates(api, t["id"]) == before
    assert (await _import(api, 987654, DECK)).status_code == 404


async def test_multipart_upload(api: PstnApi) -> None:
    t = await _tariff(api)
    r = await api.client.put(f"/api/v1/platform/tariffs/{t['id']}/rates", headers=api.admin,
                             data={"comment": "March deck"}, files={"file": ("rates.csv", DECK.encode("utf-8-sig"), "text/csv")})
    assert await ok(r) == {"imported": 4}
    assert [x["destination"] for x in (await _rates(api, t["id"]))["items"]] == [
        "United Kingdom", "Moscow", "Saint Petersburg", "Russia mobile"]
    r = await api.client.put(f"/api/v1/platform/tariffs/{t['id']}/rates", headers=api.admin,
                             files={"comment": (None, b"no file here")})
    assert r.status_code == 400 and r.json()["detail"] == (
        "the multipart/form-data body has no file (send it as the field 'file')")
    assert (await _rates(api, t["id"]))["total"] == 4


async def test_billing_plan(api: PstnApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "bill.example")
    other = await make_company(api, make_tenant, "other.example")
    t = await _tariff(api)
    own = await _tariff(api, name="Other's", tenant_id=other.id)
    url = f"{c.base}/billing"
    assert (await api.client.get(url, headers=c.alice_headers)).status_code == 403  # an admin's business
    assert await ok(await api.client.get(url, headers=c.headers)) == {
        "tenant_id": c.id, "tariff_id": None, "tariff_name": None, "currency": None}
    r = await api.client.put(url, headers=c.headers, json={"tariff_id": t["id"]})
    assert r.status_code == 403 and r.json()["detail"] == "only a platform admin may choose a tenant's tariff"
    r = await api.client.put(url, headers=api.admin, json={"tariff_id": own["id"]})
    assert r.status_code == 422 and r.json()["detail"][0]["msg"] == f"tariff_id: tariff {own['id']} does not exist"
    api.events.clear()
    assert await ok(await api.client.put(url, headers=api.admin, json={"tariff_id": t["id"]})) == {
        "tenant_id": c.id, "tariff_id": t["id"], "tariff_name": "Retail", "currency": "RUB"}
    assert api.events == [PstnChanged(tenant_id=c.id, what="billing")]
    assert (await ok(await api.client.get(url, headers=c.headers)))["tariff_id"] == t["id"]
    await ok(await _import(api, t["id"], DECK))
    async with api.db.session() as session:
        plan = await service.tenant_tariff(session, c.id)
        assert plan is not None and plan.lookup("74951234567") is not None
        assert await service.tenant_tariff(session, other.id) is None
    r = await api.client.delete(f"/api/v1/platform/tariffs/{t['id']}", headers=api.admin)
    assert r.status_code == 409 and r.json()["detail"] == f"tariff {t['id']} is in use by 1 tenant plan"
    await ok(await api.client.put(url, headers=api.admin, json={"tariff_id": None}))
    await ok(await api.client.delete(f"/api/v1/platform/tariffs/{t['id']}", headers=api.admin), 204)
