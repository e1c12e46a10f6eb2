"""Tenant isolation over every tenant route of the pstn router, found from the app's schema so routes
added later are covered: tenant A's admin (and employee) get 404 — never 403, never data — for tenant
B's URLs and for B's objects under A's own URL, with valid bodies and with empty ones (as the app-wide
walker in test_api_isolation sends), and B's data is unchanged afterwards. (A's employee, under A's own
URL, may get 403 for a write: that is decided by the role before any object is looked up.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_pstn_support import Company, PstnApi, add_number, make_company, ok, pstn_api

from zvonok.config import Settings
from zvonok.storage.db import Database

TRUNK = {"name": "Intruder", "host": "sip.intruder.example"}


@pytest.fixture
async def api(db: Database, settings: Settings) -> AsyncIterator[PstnApi]:
    async with pstn_api(db, settings) as a:
        yield a


async def _populate(api: PstnApi, c: Company, number: str) -> dict[str, int]:
    trunk = await ok(await api.client.post(f"{c.base}/trunks", headers=c.headers, json=TRUNK), 201)
    route = await ok(await api.client.post(f"{c.base}/routes", headers=c.headers, json={"trunk_id": trunk["id"]}), 201)
    n = await add_number(api, number, c.id)
    await ok(await api.client.put(f"{c.base}/policies/tenant", headers=c.headers, json={"caller_id": number}), 201)
    await ok(await api.client.put(f"{c.base}/policies/employee/{c.alice}", headers=c.headers, json={}), 201)
    await ok(await api.client.put(f"{c.base}/employees/{c.alice}/pin", headers=c.headers, json={"pin": "8362"}))
    return {"tenant_id": c.id, "trunk_id": trunk["id"], "route_id": route["id"], "number_id": n["id"],
            "office_id": c.office, "department_id": c.dept, "employee_id": c.alice}


def _ours(path: str) -> bool:
    """A tenant route of the pstn router (found in the app's schema, so new ones are walked too)."""
    match = re.match(r"^/api/v1/tenants/\{tenant_id\}/(\w+)", path)
    return match is not None and (match.group(1) in _AREAS or path.endswith("/pin"))


_AREAS = {"trunks", "numbers", "routes", "policies", "billing", "reports"}


def _fill(path: str, values: dict[str, int]) -> str:
    def sub(m: re.Match[str]) -> str:
        assert m.group(1) in values, f"give a sample value for {{{m.group(1)}}} ({path})"
        return str(values[m.group(1)])

    return re.sub(r"\{(\w+)\}", sub, path)


VALID_BODIES: dict[str, dict[str, Any]] = {
    "trunks": TRUNK, "routes": {"prefix": "7"}, "pin": {"pin": "5937"}, "billing": {"tariff_id": None},
    "numbers": {"office_id": None}, "tenant": {"service_class": "international"},
    "office": {"service_class": "international"}, "department": {"service_class": "international"},
    "employee": {"service_class": "international"},
}


async def _snapshot(api: PstnApi, c: Company) -> list[Any]:
    out = []
    for path in ("trunks", "routes", "numbers", "policies", "billing", f"employees/{c.alice}/pin"):
        out.append(await ok(await api.client.get(f"{c.base}/{path}", headers=api.admin)))
    return out


async def test_tenant_a_cannot_touch_tenant_b(api: PstnApi, make_tenant: Any) -> None:
    a = await make_company(api, make_tenant, "a.example")
    b = await make_company(api, make_tenant, "b.example")
    a_ids = await _populate(api, a, "+74951110000")
    b_ids = await _populate(api, b, "+74952220000")
    before = await _snapshot(api, b)
    paths = {path: ops for path, ops in api.app.openapi()["paths"].items() if _ours(path)}
    assert len(paths) == 17, sorted(paths)
    checked = 0
    for path, ops in paths.items():
        parts = [p for p in path.split("/") if p and not p.startswith("{")]
        variants = [_fill(path, b_ids)]
        if re.search(r"\{(?!tenant_id)\w+\}", path):
            variants.append(_fill(path, {**b_ids, "tenant_id": a.id}))
        for method in (m.upper() for m in ops):
            bodies: list[dict[str, Any] | None] = [None]
            if method in ("POST", "PUT", "PATCH"):
                body = dict(VALID_BODIES.get(parts[-1], {}))
                if parts[-1] == "routes":
                    body["trunk_id"] = b_ids["trunk_id"]
                bodies = [body, {}]
            for own_tenant, url in enumerate(variants):
                for body in bodies:
                    for who in (a.headers, a.alice_headers):
                        r = await api.client.request(method, url, headers=who, json=body)
                        # in A's own tenant an employee may get 403 for a write: the role, not B's object, decides
                        allowed = (404, 403) if own_tenant and who is a.alice_headers else (404,)
                        assert r.status_code in allowed, f"{method} {url} {body} -> {r.status_code} {r.text}"
                        checked += 1
    assert checked >= 100
    assert await _snapshot(api, b) == before
    # A's own objects answer (the 404s above are not a blanket failure)
    for path in ("trunks/{trunk_id}", "routes/{route_id}", "numbers/{number_id}", "policies/employee/{employee_id}",
                 "employees/{employee_id}/pin"):
        await ok(await api.client.get(_fill(f"/api/v1/tenants/{{tenant_id}}/{path}", a_ids), headers=a.headers))
