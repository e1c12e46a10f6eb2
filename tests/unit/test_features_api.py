"""The feature codes and parked calls over REST, and extensions' pickup group."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx

from zvonok.api.app import create_app
from zvonok.telephony import features_http
from zvonok.telephony.events import Party
from zvonok.telephony.park import ParkedCall, Parking


def _parked(number: str, by: str) -> ParkedCall:
    leg: Any = SimpleNamespace(party=Party(number=number, display_name=f"Caller {number}"))
    call: Any = SimpleNamespace(id=f"call-{number}")
    return ParkedCall(call=call, leg=leg, parked_by=Party(number=by), parked_at=1_700_000_000.0)


async def test_feature_codes_and_parked_calls_per_company(api: Any, make_tenant: Any) -> None:
    a, b = await make_tenant("park-a.example"), await make_tenant("park-b.example")
    app = create_app(api.settings, api.db, routers=[features_http.router])
    parking = Parking(None, timeout=120.0)  # type: ignore[arg-type]  # the lot alone: no calls are placed
    app.state.parking = parking
    for tenant, number, by in ((a.id, "101", "102"), (a.id, "103", "102"), (b.id, "201", "202")):
        item = _parked(number, by)
        parked = parking.lot.park(tenant, "700", item, now=0.0)
        assert parked is not None
        item.slot = parked.slot
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://zvonok.test") as client:
        r = await client.get(f"/api/v1/tenants/{a.id}/feature-codes", headers=a.headers)
        assert r.status_code == 200
        codes = {c["feature"]: c["code"] for c in r.json()}
        assert codes == {"forward_all_on": "*72<number>", "forward_all_off": "*73", "dnd_on": "*78",
                         "dnd_off": "*79", "pickup": "*8", "directed_pickup": "**<ext>", "park": "700",
                         "park_slot": "701-720", "monitor": "*33<ext>", "three_way": "*3",
                         "agent_login": "*45", "agent_login_queue": "*45<queue>", "agent_logout": "*46",
                         "agent_logout_queue": "*46<queue>", "agent_pause": "*47",
                         "agent_pause_reason": "*47<code>"}
        r = await client.get(f"/api/v1/tenants/{a.id}/parked-calls", headers=a.headers)
        assert r.status_code == 200
        assert [(p["slot"], p["number"], p["parked_by"]) for p in r.json()] == [(701, "101", "102"), (702, "103", "102")]
        first = r.json()[0]
        assert first["call_id"] == "call-101" and first["timeout_at"] > first["parked_at"]
        r = await client.get(f"/api/v1/tenants/{b.id}/parked-calls", headers=b.headers)
        assert [(p["slot"], p["number"]) for p in r.json()] == [(701, "201")]  # B's own 701
        r = await client.get(f"/api/v1/tenants/{b.id}/parked-calls", headers=a.headers)
        assert r.status_code in (403, 404)  # another company's parked calls
        app.state.parking = None
        r = await client.get(f"/api/v1/tenants/{a.id}/parked-calls", headers=a.headers)
        assert r.status_code == 503


async def test_extensions_have_a_pickup_group(api: Any, make_tenant: Any) -> None:
    a = await make_tenant("pickup-a.example")
    base = f"/api/v1/tenants/{a.id}/extensions"
    r = await api.client.post(base, headers=a.headers, json={"number": "101", "display_name": "A",
                                                             "pickup_group": "sales"})
    assert r.status_code == 201, r.text
    assert r.json()["pickup_group"] == "sales"
    ext_id = r.json()["id"]
    r = await api.client.post(base, headers=a.headers, json={"number": "102", "display_name": "B"})
    assert r.json()["pickup_group"] is None  # the department's
    r = await api.client.patch(f"{base}/{ext_id}", headers=a.headers, json={"pickup_group": "bad group:1"})
    assert r.status_code == 422
    r = await api.client.patch(f"{base}/{ext_id}", headers=a.headers, json={"pickup_group": ""})
    assert r.status_code == 200 and r.json()["pickup_group"] is None
    r = await api.client.patch(f"{base}/{ext_id}", headers=a.headers, json={"pickup_group": "support-2"})
    assert r.json()["pickup_group"] == "support-2"
