"""A trunk's T.38 mode through the REST API: accept by default, offer or off when set, bad values 422,
and the routing snapshot the call engine reads carries it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_pstn_support import PstnApi, make_company, ok, pstn_api

from zvonok.config import Settings
from zvonok.pstn.loader import load_snapshot
from zvonok.storage.db import Database

TRUNK = {"name": "Carrier", "host": "203.0.113.9", "inbound_addresses": ["203.0.113.9"]}


@pytest.fixture
async def api(db: Database, settings: Settings) -> AsyncIterator[PstnApi]:
    async with pstn_api(db, settings) as a:
        yield a


async def test_t38_mode_defaults_to_accept_and_can_be_changed(api: PstnApi, make_tenant: Any, db: Database) -> None:
    c = await make_company(api, make_tenant, "t38.example")
    trunk = await ok(await api.client.post(f"{c.base}/trunks", headers=c.headers, json=TRUNK), 201)
    assert trunk["t38"] == "accept"
    url = f"{c.base}/trunks/{trunk['id']}"
    assert (await ok(await api.client.patch(url, headers=c.headers, json={"t38": "offer"})))["t38"] == "offer"
    assert (await ok(await api.client.get(url, headers=c.headers)))["t38"] == "offer"
    assert (await load_snapshot(db)).trunks[trunk["id"]].t38 == "offer"
    for bad in ({"t38": "maybe"}, {"t38": None}):
        r = await api.client.patch(url, headers=c.headers, json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert (await ok(await api.client.get(url, headers=c.headers)))["t38"] == "offer"  # unchanged
    created = await ok(await api.client.post(f"{c.base}/trunks", headers=c.headers,
                                             json={**TRUNK, "name": "No fax relay", "t38": "off"}), 201)
    assert created["t38"] == "off"
    assert (await load_snapshot(db)).trunks[created["id"]].t38 == "off"
