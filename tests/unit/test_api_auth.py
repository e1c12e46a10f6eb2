"""Login, tokens, roles, and that no secret is ever stored in clear."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlalchemy import String, select

from zvonok.api.login_guard import LoginGuard
from zvonok.org import accounts
from zvonok.org.models import Role
from zvonok.storage.models import metadata

Api = Any


async def _account(api: Api, email: str, password: str, role: Role, tenant_id: int | None) -> None:
    async with api.db.session() as session:
        await accounts.platform_create_account(session, email=email, password=password, role=role, tenant_id=tenant_id)
        await session.commit()


async def _login(api: Api, email: str, password: str) -> Any:
    return await api.client.post("/api/v1/auth/login", json={"email": email, "password": password})


@pytest.mark.usefixtures("production_hash_cost")  # the timing comparison needs the real argon2 cost
async def test_login_failures_are_identical(api: Api, make_tenant: Any) -> None:
    t = await make_tenant("login.example")
    await _account(api, "boss@login.example", "correct horse", Role.TENANT_ADMIN, t.id)

    timings = {}
    responses = {}
    for case, email, pw in [("wrong", "boss@login.example", "wrong pass"), ("unknown", "ghost@login.example", "wrong pass")]:
        start = time.perf_counter()
        responses[case] = await _login(api, email, pw)
        timings[case] = time.perf_counter() - start
    wrong, unknown = responses["wrong"], responses["unknown"]
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "invalid email or password"}
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")
    # Both paths run one argon2 verification; allow generous jitter, catch a skipped hash (10x faster).
    assert timings["unknown"] > timings["wrong"] / 4, timings

    ok = await _login(api, "BOSS@login.example", "correct horse")
    assert ok.status_code == 200
    token = ok.json()["access_token"]
    me = await api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json() == {
        "kind": "account", "id": me.json()["id"], "role": "tenant_admin", "tenant_id": t.id, "employee_id": None,
        "email": "boss@login.example", "name": None,
    }
    r = await api.client.get(f"/api/v1/tenants/{t.id}/offices", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200


async def test_bad_credentials_get_401(api: Api) -> None:
    for headers in [{}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Bearer zv_not-a-token"},
                    {"Authorization": "Basic dXNlcjpwdw=="}]:
        r = await api.client.get("/api/v1/me", headers=headers)
        assert r.status_code == 401, headers
    r = await api.client.get("/api/v1/me", headers=api.admin)
    assert r.json()["kind"] == "api_token" and r.json()["role"] == "platform_admin"


async def test_token_lifecycle_and_revocation(api: Api, make_tenant: Any) -> None:
    t = await make_tenant("tok.example")
    base = f"/api/v1/tenants/{t.id}/tokens"
    r = await api.client.post(base, headers=t.headers, json={"name": "ci", "role": "employee"})
    created = r.json()
    assert r.status_code == 201 and created["token"].startswith("zv_") and created["token"].startswith(created["prefix"])
    reader = {"Authorization": f"Bearer {created['token']}"}
    assert (await api.client.get(f"/api/v1/tenants/{t.id}/offices", headers=reader)).status_code == 200
    listed = (await api.client.get(base, headers=t.headers)).json()
    assert listed["total"] == 2 and all("token" not in item for item in listed["items"])
    assert created["token"] not in str(listed)
    r = await api.client.delete(f"{base}/{created['id']}", headers=t.headers)
    assert r.status_code == 204
    assert (await api.client.get("/api/v1/me", headers=reader)).status_code == 401
    r = await api.client.post(base, headers=t.headers, json={"name": "x", "role": "platform_admin"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "role"]


async def test_no_secret_stored_in_clear(api: Api, make_tenant: Any) -> None:
    t = await make_tenant("secret.example")
    base = f"/api/v1/tenants/{t.id}"
    secrets = [api.admin_token, t.headers["Authorization"].removeprefix("Bearer ")]
    r = await api.client.post(f"{base}/extensions", headers=t.headers, json={"number": "10", "display_name": "A"})
    secrets.append(r.json()["sip_password"])
    await api.client.post(f"{base}/extensions", headers=t.headers, json={"number": "11", "display_name": "B", "sip_password": "sip-Secret-11"})
    secrets.append("sip-Secret-11")
    r = await api.client.post(f"{base}/employees", headers=t.headers, json={
        "full_name": "W", "email": "w@secret.example", "web_password": "web-Secret-99"})
    assert r.status_code == 201, r.text
    secrets.append("web-Secret-99")
    r = await api.client.post(f"{base}/tokens", headers=t.headers, json={"name": "n"})
    secrets.append(r.json()["token"])

    dump: list[str] = []
    async with api.db.session() as session:
        for table in metadata.sorted_tables:
            cols = [c for c in table.columns if isinstance(c.type, String)]
            if cols:
                for row in (await session.execute(select(*cols))).all():
                    dump.extend(str(v) for v in row if v is not None)
    blob = "\n".join(dump)
    for secret in secrets:
        assert secret and secret not in blob


async def test_roles(api: Api, make_tenant: Any) -> None:
    t = await make_tenant("roles.example")
    base = f"/api/v1/tenants/{t.id}"
    emp = (await api.client.post(f"{base}/employees", headers=t.headers, json={
        "full_name": "Olga", "email": "olga@roles.example", "web_password": "olga-password"})).json()
    own = (await api.client.post(f"{base}/extensions", headers=t.headers, json={
        "number": "20", "display_name": "Olga", "employee_id": emp["id"]})).json()
    other = (await api.client.post(f"{base}/extensions", headers=t.headers, json={
        "number": "21", "display_name": "Desk"})).json()
    r = await _login(api, "olga@roles.example", "olga-password")
    olga = {"Authorization": f"Bearer {r.json()['access_token']}"}
    me = (await api.client.get("/api/v1/me", headers=olga)).json()
    assert (me["role"], me["employee_id"]) == ("employee", emp["id"])

    assert (await api.client.get(f"{base}/extensions", headers=olga)).status_code == 200
    assert (await api.client.post(f"{base}/offices", headers=olga, json={"name": "X"})).status_code == 403
    r = await api.client.patch(f"{base}/extensions/{own['id']}", headers=olga, json={"sip_password": "my-new-password"})
    assert r.status_code == 200
    r = await api.client.patch(f"{base}/extensions/{own['id']}", headers=olga, json={"display_name": "Boss"})
    assert r.status_code == 403
    r = await api.client.patch(f"{base}/extensions/{other['id']}", headers=olga, json={"sip_password": "my-new-password"})
    assert r.status_code == 403
    assert (await api.client.get(f"{base}/tokens", headers=olga)).status_code == 403

    # Tenant admins: no platform operations, no domain/suspension changes.
    assert (await api.client.get("/api/v1/tenants", headers=t.headers)).status_code == 403
    r = await api.client.post("/api/v1/tenants", headers=t.headers, json={"name": "X", "sip_domain": "x.example"})
    assert r.status_code == 403
    r = await api.client.patch(base, headers=t.headers, json={"suspended": False})
    assert r.status_code == 403 and "suspended" in r.json()["detail"]
    r = await api.client.patch(base, headers=t.headers, json={"locale": "en-GB"})
    assert r.status_code == 200
    assert (await api.client.delete(base, headers=t.headers)).status_code == 403

    # Promote Olga; role is re-read from the database on each request.
    r = await api.client.patch(f"{base}/employees/{emp['id']}", headers=t.headers, json={"role": "tenant_admin"})
    assert r.status_code == 200
    assert (await api.client.post(f"{base}/offices", headers=olga, json={"name": "X"})).status_code == 201


async def test_access_ends_with_its_reason(api: Api, make_tenant: Any) -> None:
    """Deactivation, demotion, deletion and a password change end login tokens and the account's API
    tokens at once, including tokens minted by those tokens."""
    t = await make_tenant("revoke.example")
    base = f"/api/v1/tenants/{t.id}"

    async def employee(name: str, role: str) -> dict[str, str]:
        r = await api.client.post(f"{base}/employees", headers=t.headers, json={
            "full_name": name, "email": f"{name}@revoke.example", "web_password": f"{name}-password", "role": role})
        assert r.status_code == 201, r.text
        r = await _login(api, f"{name}@revoke.example", f"{name}-password")
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    async def ok(headers: dict[str, str]) -> bool:
        r = await api.client.get("/api/v1/me", headers=headers)
        assert r.status_code in (200, 401), r.text
        return r.status_code == 200

    async def emp_id(name: str) -> int:
        r = await api.client.get(f"{base}/employees", headers=t.headers, params={"q": name})
        return int(r.json()["items"][0]["id"])

    # Deactivation: the login token stops, and no new login.
    anna = await employee("anna", "employee")
    assert await ok(anna)
    r = await api.client.patch(f"{base}/employees/{await emp_id('anna')}", headers=t.headers, json={"active": False})
    assert r.status_code == 200
    assert not await ok(anna)
    assert (await _login(api, "anna@revoke.example", "anna-password")).status_code == 401

    # Password change: old login tokens stop, the new password works.
    boris = await employee("boris", "employee")
    boris_id = await emp_id("boris")
    r = await api.client.patch(f"{base}/employees/{boris_id}", headers=t.headers, json={"web_password": "boris-new-pw"})
    assert r.status_code == 200
    assert not await ok(boris)
    assert (await _login(api, "boris@revoke.example", "boris-new-pw")).status_code == 200

    # Demotion: an admin's API tokens (and the tokens those minted) are revoked with its login tokens.
    vera = await employee("vera", "tenant_admin")
    vera_id = await emp_id("vera")
    r = await api.client.post(f"{base}/tokens", headers=vera, json={"name": "vera-script"})
    script = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await api.client.post(f"{base}/tokens", headers=script, json={"name": "minted"})
    minted = {"Authorization": f"Bearer {r.json()['token']}"}
    assert await ok(script) and await ok(minted)
    r = await api.client.patch(f"{base}/employees/{vera_id}", headers=t.headers, json={"role": "employee"})
    assert r.status_code == 200
    assert not await ok(vera) and not await ok(script) and not await ok(minted)
    assert (await api.client.post(f"{base}/tokens", headers=script, json={"name": "x"})).status_code == 401
    r = await _login(api, "vera@revoke.example", "vera-password")
    assert (await api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})).json()[
        "role"] == "employee"

    # Deletion: the API tokens of the deleted account's employee are revoked too.
    gleb = await employee("gleb", "tenant_admin")
    r = await api.client.post(f"{base}/tokens", headers=gleb, json={"name": "gleb-script"})
    gleb_script = {"Authorization": f"Bearer {r.json()['token']}"}
    assert await ok(gleb_script)
    r = await api.client.delete(f"{base}/employees/{await emp_id('gleb')}", headers=t.headers)
    assert r.status_code == 204, r.text
    assert not await ok(gleb) and not await ok(gleb_script)

    # The tenant's own admin token (not created by any of them) is untouched.
    assert await ok(t.headers)


async def test_login_is_throttled_per_account_and_per_address(api: Api, make_tenant: Any) -> None:
    """Guessing stops at the limit with 429 + Retry-After, even for the right password, and the answer
    is the same whether the account exists or not."""
    t = await make_tenant("guard.example")
    await _account(api, "boss@guard.example", "correct horse", Role.TENANT_ADMIN, t.id)
    await _account(api, "clerk@guard.example", "clerk password", Role.EMPLOYEE, t.id)
    limit = api.settings.login_fail_limit
    answers = {}
    for email in ("boss@guard.example", "ghost@guard.example"):
        for _ in range(limit + 1):
            assert (await _login(api, email, "wrong guess")).status_code == 401
        r = await _login(api, email.upper(), "correct horse")
        assert r.status_code == 429, r.text
        assert 0 < int(r.headers["retry-after"]) <= api.settings.login_ban_time
        answers[email] = (r.json(), r.headers["retry-after"])
    assert answers["boss@guard.example"] == answers["ghost@guard.example"]
    assert (await _login(api, "clerk@guard.example", "clerk password")).status_code == 200  # others unaffected

    # Per address: many names from one address, then even a right password from there waits.
    app = api.client._transport.app
    app.state.login_guard = LoginGuard(api.settings.model_copy(update={"login_address_fail_limit": 3}))
    for i in range(4):
        assert (await _login(api, f"user{i}@guard.example", "wrong guess")).status_code == 401
    r = await _login(api, "clerk@guard.example", "clerk password")
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    elsewhere = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("192.0.2.9", 40000)),
                                  base_url="http://zvonok.test")
    async with elsewhere:
        r = await elsewhere.post("/api/v1/auth/login", json={"email": "clerk@guard.example", "password": "clerk password"})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("fresh_db", ["sqlite"], indirect=True)  # one writer at a time is SQLite's own limit
async def test_a_busy_database_never_fails_a_request_for_the_last_used_stamp(api: Api) -> None:
    import sqlite3

    from zvonok.org.models import ApiToken

    headers = {"Authorization": f"Bearer {api.admin_token}"}
    path = api.db.engine.url.database
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock longer than the wait
    try:
        r = await api.client.get("/api/v1/me", headers=headers)
        assert r.status_code == 200, r.text
    finally:
        blocker.rollback()
        blocker.close()
    async with api.db.session() as session:
        assert (await session.execute(select(ApiToken.last_used_at))).scalars().all() == [None]
    assert (await api.client.get("/api/v1/me", headers=headers)).status_code == 200
    async with api.db.session() as session:  # once the database is free, the stamp is written
        assert None not in (await session.execute(select(ApiToken.last_used_at))).scalars().all()
