"""Per-company limits on configured objects (zvonok.org.quotas): the create past the limit answers 409 with
the figures and changes nothing; another company is not affected; deleting makes room; the limits come
from ``ZVONOK_TENANT_QUOTAS`` and unknown kinds are refused at start."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import Api
from zvonok.config import Settings
from zvonok.org import quotas


@pytest.fixture
def low_limits() -> Iterator[None]:
    quotas.configure({"extensions": 2, "ivr_menus": 1, "api_tokens": 2})
    try:
        yield
    finally:
        quotas.configure(None)


async def test_a_company_stops_at_its_limits_and_others_do_not(api: Api, make_tenant: Any,
                                                             low_limits: None) -> None:
    a = await make_tenant("quota-a.example")
    b = await make_tenant("quota-b.example")
    base_a, base_b = f"/api/v1/tenants/{a.id}", f"/api/v1/tenants/{b.id}"
    made = [await api.client.post(f"{base_a}/extensions", headers=a.headers, json={"number": str(n), "display_name": f"User {n}"})
            for n in (201, 202, 203)]
    assert [r.status_code for r in made] == [201, 201, 409], [r.text for r in made]
    assert "extensions: the company has 2, the platform allows 2" in made[2].json()["detail"]
    listed = (await api.client.get(f"{base_a}/extensions", headers=a.headers)).json()
    assert sorted(e["number"] for e in listed["items"]) == ["201", "202"]  # nothing half-made
    # another company has its own count
    r = await api.client.post(f"{base_b}/extensions", headers=b.headers, json={"number": "201", "display_name": "B"})
    assert r.status_code == 201, r.text
    # deleting one makes room again
    assert (await api.client.delete(f"{base_a}/extensions/{made[0].json()['id']}", headers=a.headers)).status_code == 204
    assert (await api.client.post(f"{base_a}/extensions", headers=a.headers, json={"number": "203", "display_name": "C"})).status_code == 201
    # the same on the other kinds: one menu, then 409
    menu = {"name": "Main", "keys": {"1": {"kind": "extension", "number": "202"}}}
    assert (await api.client.post(f"{base_a}/ivr-menus", headers=a.headers, json=menu)).status_code == 201
    r = await api.client.post(f"{base_a}/ivr-menus", headers=a.headers, json={**menu, "name": "Second"})
    assert r.status_code == 409 and "ivr_menus" in r.text
    # tokens count while not revoked (make_tenant made one: the admin's)
    r = await api.client.post(f"{base_a}/tokens", headers=a.headers, json={"name": "ci", "role": "employee"})
    assert r.status_code == 201, r.text
    r = await api.client.post(f"{base_a}/tokens", headers=a.headers, json={"name": "more", "role": "employee"})
    assert r.status_code == 409 and "api_tokens" in r.text


def test_limits_come_from_the_settings_and_unknown_kinds_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZVONOK_TENANT_QUOTAS", '{"extensions": 20000, "queues": 5}')
    settings = Settings()
    assert settings.tenant_quotas == {"extensions": 20000, "queues": 5}
    try:
        quotas.configure(settings.tenant_quotas)
        assert quotas.limit("extensions") == 20000 and quotas.limit("queues") == 5
        assert quotas.limit("ring_groups") == quotas.DEFAULTS["ring_groups"]
        with pytest.raises(ValueError, match="unknown kinds"):
            quotas.configure({"extensoins": 1})
    finally:
        quotas.configure(None)
    assert quotas.limit("extensions") == quotas.DEFAULTS["extensions"]
