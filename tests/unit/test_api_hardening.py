"""Small hardening of the HTTP API: ids and times out of range are 4xx (never 500) on every route, 422s
never echo what was sent, /metrics only for the allowed networks (and token), private files on disk."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from zvonok.api.app import create_app
from zvonok.config import Settings
from zvonok.storage.db import Database

Api = Any
HUGE = str(2**64)


async def test_every_route_answers_4xx_for_ids_out_of_range(api: Api, make_tenant: Any) -> None:
    t = await make_tenant("ids.example")
    paths = api.client._transport.app.openapi()["paths"]
    checked = 0
    for path, ops in paths.items():
        if "{" not in path or path.startswith("/api/v1/hooks/"):
            continue  # (a payment provider's URL carries a key, not an id: any wrong key is one same 401)
        for method in ops:
            for bad in (HUGE, "0", "-1"):
                # Every id huge (or 0, -1), and the tenant's own id with the other ids bad.
                urls = [re.sub(r"\{\w+\}", bad, path)]
                if re.search(r"\{(?!tenant_id)\w+\}", path):
                    urls.append(re.sub(r"\{(?!tenant_id)\w+\}", bad, path).replace("{tenant_id}", str(t.id)))
                for url in urls:
                    r = await api.client.request(method.upper(), url, headers=api.admin, json={})
                    assert r.status_code == 422, f"{method.upper()} {url} -> {r.status_code} {r.text}"
                    checked += 1
    assert checked > 300
    base = f"/api/v1/tenants/{t.id}"
    for query in ({"office_id": HUGE}, {"employee_id": "-5"}):
        r = await api.client.get(f"{base}/extensions", headers=api.admin, params=query)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][0] == "query", r.text
    r = await api.client.get(f"{base}/cdrs", headers=api.admin, params={"extension_id": HUGE})
    assert r.status_code == 422, r.text
    # Ordinary ids still reach the routes.
    assert (await api.client.get(f"{base}/offices/{2**31 - 1}", headers=api.admin)).status_code == 404
    assert (await api.client.get(f"{base}/offices/{2**31}", headers=api.admin)).status_code == 422


async def test_times_out_of_range_are_422(api: Api, make_tenant: Any) -> None:
    t = await make_tenant("dates.example")
    base = f"/api/v1/tenants/{t.id}"
    for path in ("/cdrs", "/cdrs.csv", "/reports/costs", "/reports/costs.csv"):
        for query in ({"from": "0001-01-01"}, {"to": "9999-12-31T23:00:00"}, {"from": "0001-01-01T00:00:00+00:00"}):
            r = await api.client.get(base + path, headers=api.admin, params=query)
            assert r.status_code == 422, f"{path} {query}: {r.status_code} {r.text}"
        r = await api.client.get(base + path, headers=api.admin, params={"from": "2026-01-01", "to": "2026-02-01"})
        assert r.status_code == 200, f"{path}: {r.text}"


async def test_validation_errors_never_echo_what_was_sent(api: Api, make_tenant: Any) -> None:
    t = await make_tenant("echo.example")
    base = f"/api/v1/tenants/{t.id}"
    secret = "s3cret-" + "x" * 300
    cases = [
        ("POST", "/api/v1/auth/login", {"email": "a@echo.example", "password": secret}),
        ("POST", f"{base}/employees", {"full_name": "A", "email": "a@echo.example", "web_password": secret}),
        ("POST", f"{base}/extensions", {"number": "10", "display_name": "A", "sip_password": secret}),
        ("POST", f"{base}/trunks", {"name": "T", "host": "h.example", "password": secret, "port": "x"}),
    ]
    for method, url, body in cases:
        r = await api.client.request(method, url, headers=t.headers, json=body)
        assert r.status_code == 422, f"{url}: {r.status_code} {r.text}"
        assert "s3cret" not in r.text and r.json()["detail"][0]["loc"], r.text
        assert all("input" not in err for err in r.json()["detail"])


async def test_metrics_for_allowed_networks_and_token(db: Database, settings: Settings) -> None:
    async def get(app: Any, client: str, headers: dict[str, str] | None = None) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://zvonok.test") as c:
            return await c.get("/metrics", headers=headers)

    app = create_app(settings, db)
    assert (await get(app, "127.0.0.1")).status_code == 200
    assert (await get(app, "::1")).status_code == 200
    assert (await get(app, "192.0.2.9")).status_code == 403
    tight = create_app(
        settings.model_copy(update={"metrics_allow": ["192.0.2.0/24"], "metrics_token": "scrape-me"}), db)
    assert (await get(tight, "127.0.0.1", {"Authorization": "Bearer scrape-me"})).status_code == 403
    r = await get(tight, "192.0.2.9")
    assert r.status_code == 401 and "# TYPE" not in r.text
    assert (await get(tight, "192.0.2.9", {"Authorization": "Bearer wrong"})).status_code == 401
    r = await get(tight, "192.0.2.9", {"Authorization": "Bearer scrape-me"})
    assert r.status_code == 200 and "# TYPE" in r.text


def test_metrics_networks_are_checked_at_start() -> None:
    with pytest.raises(pydantic.ValidationError, match="metrics_allow"):
        Settings(metrics_allow=["10.0.0.0/8", "not-a-network"])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_data_directory_and_database_are_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "fresh" / "data")
    settings.prepare_data_dir()
    assert _mode(settings.data_dir) == 0o700
    settings.resolved_secret_key()
    assert _mode(settings.data_dir / "secret.key") == 0o600
    db = Database(settings.resolved_database_url())
    try:
        await db.upgrade()
    finally:
        await db.dispose()
    for name in ("zvonok.db", "zvonok.db-wal", "zvonok.db-shm"):
        if (settings.data_dir / name).exists():
            assert _mode(settings.data_dir / name) == 0o600, name

    # An existing data directory and database file left readable by others are tightened.
    old = tmp_path / "old"
    old.mkdir(mode=0o755)
    (old / "zvonok.db").touch(mode=0o644)
    old.chmod(0o755)
    (old / "zvonok.db").chmod(0o644)
    settings = Settings(data_dir=old)
    settings.prepare_data_dir()
    db = Database(settings.resolved_database_url())
    await db.dispose()
    assert (_mode(old), _mode(old / "zvonok.db")) == (0o700, 0o600)


def _id_fields(schema: dict[str, Any], components: dict[str, Any], seen: frozenset[str] = frozenset()) -> list[str]:
    """The top-level fields of a request body that hold ids (``*_id`` integers, ``*_ids`` lists of them)."""
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return [] if name in seen else _id_fields(components[name], components, seen | {name})
    found = []
    for field, prop in schema.get("properties", {}).items():
        kinds = [prop, *prop.get("anyOf", []), *prop.get("allOf", [])]
        if (field == "id" or field.endswith("_id")) and any(k.get("type") == "integer" for k in kinds):
            found.append(field)
        elif field.endswith("_ids") and any(k.get("items", {}).get("type") == "integer" for k in kinds):
            found.append(field)
    return found


async def test_ids_out_of_range_in_a_body_are_422(api: Api, make_tenant: Any) -> None:
    """An id beyond the INTEGER columns in a JSON body (an employee's office_id of 2**64) reached the
    driver as an overflow: a 500 (found by a hostile tenant admin on a live server)."""
    t = await make_tenant("bodyids.example")
    base = f"/api/v1/tenants/{t.id}"
    office = (await api.client.post(f"{base}/offices", headers=t.headers, json={"name": "HQ"})).json()
    emp = (await api.client.post(f"{base}/employees", headers=t.headers, json={"full_name": "Anna"})).json()
    ext = (await api.client.post(f"{base}/extensions", headers=t.headers,
                                 json={"number": "101", "display_name": "Anna"})).json()
    trunk = (await api.client.post(f"{base}/trunks", headers=t.headers,
                                   json={"name": "C", "host": "192.0.2.1"})).json()
    # the objects the fuzzing found, each with a real row behind its URL
    cases = [
        ("POST", f"{base}/employees", {"full_name": "B"}, ["office_id", "department_id"]),
        ("PATCH", f"{base}/employees/{emp['id']}", {}, ["office_id", "department_id"]),
        ("POST", f"{base}/extensions", {"number": "102", "display_name": "B"}, ["employee_id", "office_id"]),
        ("PATCH", f"{base}/extensions/{ext['id']}", {}, ["employee_id", "office_id"]),
        ("POST", f"{base}/trunks", {"name": "D", "host": "192.0.2.2"}, ["buy_tariff_id", "office_id"]),
        ("PATCH", f"{base}/trunks/{trunk['id']}", {}, ["buy_tariff_id", "office_id"]),
        ("POST", f"{base}/routes", {"prefix": "7"}, ["trunk_id"]),
        ("POST", f"{base}/departments", {"name": "Sales", "office_id": office["id"]}, ["parent_id", "office_id"]),
    ]
    for method, url, body, fields in cases:
        for field in fields:
            for bad in (2**64, -(2**64), 2**40):
                r = await api.client.request(method, url, headers=t.headers, json={**body, field: bad})
                assert r.status_code == 422, f"{method} {url} {field}={bad}: {r.status_code} {r.text}"
                assert field in r.json()["detail"][0]["loc"], r.text
    # every route whose body names an id: never a 500, whatever the path's ids
    spec = api.client._transport.app.openapi()
    components = spec["components"]["schemas"]
    checked = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if not content or path.startswith("/api/v1/hooks/"):
                continue
            url = re.sub(r"\{\w+\}", "1", path).replace("/tenants/1", f"/tenants/{t.id}", 1)
            for field in _id_fields(content["schema"], components):
                value: Any = [2**64] if field.endswith("_ids") else 2**64
                r = await api.client.request(method.upper(), url, headers=api.admin, json={field: value})
                assert r.status_code == 422, f"{method.upper()} {url} {field}: {r.status_code} {r.text}"
                checked += 1
    assert checked > 20
    # ordinary ids (and none) still reach the routes
    r = await api.client.patch(f"{base}/employees/{emp['id']}", headers=t.headers, json={"office_id": office["id"]})
    assert r.status_code == 200 and r.json()["office_id"] == office["id"], r.text
    r = await api.client.patch(f"{base}/employees/{emp['id']}", headers=t.headers, json={"office_id": None})
    assert r.status_code == 200 and r.json()["office_id"] is None, r.text


async def test_a_nul_character_anywhere_is_422(api: Api, make_tenant: Any) -> None:
    """PostgreSQL cannot store a NUL in text: an IVR prompt, an office's address or a webhook's URL with one
    was 201 on SQLite and a 500 on PostgreSQL (found by a hostile tenant admin)."""
    t = await make_tenant("nul.example")
    base = f"/api/v1/tenants/{t.id}"
    for url, body, field in [
        (f"{base}/ivr-menus", {"name": "Main", "prompt_text": "Hello\x00"}, "prompt_text"),
        (f"{base}/offices", {"name": "HQ", "address": "Tverskaya 1\x00"}, "address"),
        (f"{base}/webhooks", {"url": "https://hooks.example.com/a\x00b"}, "url"),
        (f"{base}/offices", {"name": "HQ", "address\x00": "x"}, "address\x00"),
    ]:
        r = await api.client.post(url, headers=t.headers, json=body)
        assert r.status_code == 422, f"{url} {body}: {r.status_code} {r.text}"
        assert r.json()["detail"][0]["loc"] == ["body", field], r.text
    r = await api.client.get(f"{base}/employees", headers=t.headers, params={"q": "An\x00na"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "q"], r.text
    assert (await api.client.get(f"{base}/offices", headers=t.headers)).json()["total"] == 0
    # the same text without it is fine
    r = await api.client.post(f"{base}/offices", headers=t.headers, json={"name": "HQ", "address": "Tverskaya 1"})
    assert r.status_code == 201, r.text
