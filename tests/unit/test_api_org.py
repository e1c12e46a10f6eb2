"""CRUD, paging, filtering and business-rule errors of the org REST API."""

from __future__ import annotations

from typing import Any

Api = Any  # the conftest fixture type (tests is not a package)


async def _post(api: Api, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = await api.client.post(path, json=body, headers=headers or api.admin)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_tenant_crud(api: Api) -> None:
    t = await _post(api, "/api/v1/tenants", {
        "name": "Acme", "sip_domain": "Acme.Example.com", "timezone": "Europe/Moscow", "currency": "rub", "locale": "ru-RU",
    })
    assert (t["sip_domain"], t["currency"], t["suspended"]) == ("acme.example.com", "RUB", False)
    r = await api.client.get(f"/api/v1/tenants/{t['id']}", headers=api.admin)
    assert r.json()["name"] == "Acme"
    r = await api.client.patch(f"/api/v1/tenants/{t['id']}", headers=api.admin, json={"name": "Acme Ltd", "suspended": True})
    assert r.status_code == 200 and r.json()["name"] == "Acme Ltd" and r.json()["suspended"] is True
    r = await api.client.get("/api/v1/tenants", headers=api.admin)
    assert r.json()["total"] == 1 and r.json()["items"][0]["id"] == t["id"]
    r = await api.client.post("/api/v1/tenants", headers=api.admin, json={"name": "Dup", "sip_domain": "ACME.example.com"})
    assert r.status_code == 409 and "acme.example.com" in r.json()["detail"]
    r = await api.client.delete(f"/api/v1/tenants/{t['id']}", headers=api.admin)
    assert r.status_code == 204
    r = await api.client.get(f"/api/v1/tenants/{t['id']}", headers=api.admin)
    assert r.status_code == 404


async def test_validation_names_the_field(api: Api) -> None:
    cases = [
        ({"name": "X", "sip_domain": "x.example", "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "X", "sip_domain": "x.example", "currency": "RUBLE"}, "currency"),
        ({"name": "X", "sip_domain": "x.example", "locale": "russian"}, "locale"),
        ({"name": "X", "sip_domain": "not a domain"}, "sip_domain"),
        ({"sip_domain": "x.example"}, "name"),
    ]
    for body, field in cases:
        r = await api.client.post("/api/v1/tenants", headers=api.admin, json=body)
        assert r.status_code == 422, body
        assert r.json()["detail"][0]["loc"][-1] == field


async def test_office_department_employee_extension_crud(api: Api, make_tenant: Any) -> None:
    t = await make_tenant("crud.example")
    base = f"/api/v1/tenants/{t.id}"
    h = t.headers
    office = await _post(api, f"{base}/offices", {"name": "Moscow", "city": "Moscow", "area_code": "495"}, h)
    dept = await _post(api, f"{base}/departments", {"name": "Sales", "office_id": office["id"]}, h)
    emp = await _post(api, f"{base}/employees", {
        "full_name": "Ivan Petrov", "email": "Ivan@Crud.example", "office_id": office["id"], "department_id": dept["id"],
    }, h)
    assert emp["email"] == "ivan@crud.example"
    ext = await _post(api, f"{base}/extensions", {
        "number": "101", "display_name": "Ivan", "employee_id": emp["id"], "office_id": office["id"],
    }, h)
    assert len(ext["sip_password"]) == 12 and "ha1_md5" not in ext
    ext2 = await _post(api, f"{base}/extensions", {"number": "102", "display_name": "Desk", "sip_password": "given-pass"}, h)
    assert ext2["sip_password"] is None

    for kind, obj, patch, key in [
        ("offices", office, {"address": "Tverskaya 1"}, "address"),
        ("departments", dept, {"name": "Sales & Marketing"}, "name"),
        ("employees", emp, {"phone": "+7 495 123-45-67"}, "phone"),
        ("extensions", ext, {"display_name": "Ivan P.", "max_devices": 2}, "display_name"),
    ]:
        r = await api.client.get(f"{base}/{kind}/{obj['id']}", headers=h)
        assert r.status_code == 200 and r.json()["id"] == obj["id"]
        r = await api.client.patch(f"{base}/{kind}/{obj['id']}", headers=h, json=patch)
        assert r.status_code == 200, r.text
        assert r.json()[key] == patch[key]
        r = await api.client.get(f"{base}/{kind}", headers=h)
        assert r.status_code == 200 and r.json()["total"] >= 1
    r = await api.client.get(f"{base}/extensions/{ext['id']}", headers=h)
    assert "sip_password" not in r.json()

    # Delete in dependency order; each parent is refused while referenced.
    r = await api.client.delete(f"{base}/offices/{office['id']}", headers=h)
    assert r.status_code == 409
    assert r.json()["detail"] == f"office {office['id']} is in use by 1 employee, 1 extension, 1 department"
    r = await api.client.delete(f"{base}/employees/{emp['id']}", headers=h)
    assert r.status_code == 409 and "1 extension" in r.json()["detail"]
    r = await api.client.delete(f"{base}/departments/{dept['id']}", headers=h)
    assert r.status_code == 409 and "1 employee" in r.json()["detail"]
    for kind, obj in [("extensions", ext), ("employees", emp), ("departments", dept), ("offices", office)]:
        r = await api.client.delete(f"{base}/{kind}/{obj['id']}", headers=h)
        assert r.status_code == 204, r.text
        r = await api.client.get(f"{base}/{kind}/{obj['id']}", headers=h)
        assert r.status_code == 404 and r.json()["detail"] == f"{kind[:-1]} {obj['id']} not found"


async def test_extension_rules(api: Api, make_tenant: Any) -> None:
    t = await make_tenant("ext.example")
    base = f"/api/v1/tenants/{t.id}/extensions"
    await _post(api, base, {"number": "101", "display_name": "A"}, t.headers)
    r = await api.client.post(base, headers=t.headers, json={"number": "101", "display_name": "B"})
    assert r.status_code == 409 and r.json() == {"detail": "extension number 101 already exists"}
    for bad in ["1", "123456789", "10a"]:
        r = await api.client.post(base, headers=t.headers, json={"number": bad, "display_name": "B"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "number"]
    r = await api.client.post(base, headers=t.headers, json={"number": "105", "display_name": "B", "employee_id": 999999})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "employee_id"]
    r = await api.client.post(base, headers=t.headers, json={"number": "105", "display_name": "B", "sip_password": "short"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "sip_password"]
    r = await api.client.patch(f"{base}/1", headers=t.headers, json={"number": "555"})
    assert r.status_code == 422  # the number is the SIP username: not changeable


async def test_extension_delete_blocked_by_reference_hook(api: Api, make_tenant: Any) -> None:
    from zvonok.org import service

    t = await make_tenant("hook.example")
    ext = await _post(api, f"/api/v1/tenants/{t.id}/extensions", {"number": "300", "display_name": "Q"}, t.headers)

    async def did_points_here(session: Any, tenant_id: int, extension_id: int) -> list[str]:
        return ["DID +74951234567"] if extension_id == ext["id"] else []

    service.extension_references.append(did_points_here)
    try:
        r = await api.client.delete(f"/api/v1/tenants/{t.id}/extensions/{ext['id']}", headers=t.headers)
        assert r.status_code == 409
        assert r.json() == {"detail": "extension 300 is in use by DID +74951234567"}
    finally:
        service.extension_references.remove(did_points_here)


async def test_paging_and_filtering(api: Api, make_tenant: Any) -> None:
    t = await make_tenant("page.example")
    base = f"/api/v1/tenants/{t.id}"
    o1 = await _post(api, f"{base}/offices", {"name": "One"}, t.headers)
    o2 = await _post(api, f"{base}/offices", {"name": "Two"}, t.headers)
    for i in range(12):
        await _post(api, f"{base}/extensions", {
            "number": f"{200 + i}", "display_name": f"Agent {i}", "office_id": (o1 if i % 2 else o2)["id"],
            "sip_password": "password-1",
        }, t.headers)
    r = await api.client.get(f"{base}/extensions?limit=5&offset=10", headers=t.headers)
    page = r.json()
    assert (page["total"], page["limit"], page["offset"]) == (12, 5, 10)
    assert [e["number"] for e in page["items"]] == ["210", "211"]
    r = await api.client.get(f"{base}/extensions?office_id={o1['id']}", headers=t.headers)
    assert r.json()["total"] == 6
    r = await api.client.get(f"{base}/extensions?q=agent 1", headers=t.headers)
    assert {e["display_name"] for e in r.json()["items"]} == {"Agent 1", "Agent 10", "Agent 11"}
    r = await api.client.get(f"{base}/extensions?q=205", headers=t.headers)
    assert [e["number"] for e in r.json()["items"]] == ["205"]
    r = await api.client.get(f"{base}/extensions?q=%25", headers=t.headers)  # LIKE wildcards are literal
    assert r.json()["total"] == 0
    r = await api.client.get(f"{base}/extensions?limit=501", headers=t.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]
    r = await api.client.get(f"{base}/offices?q=tw", headers=t.headers)
    assert [o["name"] for o in r.json()["items"]] == ["Two"]


async def test_health_metrics_docs(api: Api) -> None:
    r = await api.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await api.client.get("/metrics")
    assert r.status_code == 200 and "zvonok_sip_messages_in_total" in r.text
    r = await api.client.get("/docs")
    assert r.status_code == 200
    r = await api.client.get("/openapi.json")
    assert "/api/v1/tenants/{tenant_id}/extensions" in r.json()["paths"]


async def test_health_reports_the_bus_between_nodes(api: Api) -> None:
    """Several nodes (issue 14): NATS away is reported, but the node stays in service (200): it still
    takes calls and registrations."""
    app = api.client._transport.app  # type: ignore[attr-defined]
    connected = [False]
    app.state.bus_connected = lambda: connected[0]  # what zvonok.server sets with ZVONOK_BUS_URL
    r = await api.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "degraded", "bus": "down"}
    connected[0] = True
    r = await api.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "bus": "up"}


async def test_patch_null_and_unknown_fields(api: Api, make_tenant: Any) -> None:
    t = await make_tenant("patch.example")
    office = await _post(api, f"/api/v1/tenants/{t.id}/offices", {"name": "HQ", "city": "Kazan"}, t.headers)
    url = f"/api/v1/tenants/{t.id}/offices/{office['id']}"
    r = await api.client.patch(url, headers=t.headers, json={"name": None})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "name"]
    r = await api.client.patch(url, headers=t.headers, json={"colour": "red"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "colour"]
    r = await api.client.patch(url, headers=t.headers, json={"city": None})  # nullable: clears it
    assert r.status_code == 200 and r.json()["city"] is None and r.json()["name"] == "HQ"
    r = await api.client.post(f"/api/v1/tenants/{t.id}/offices", headers=t.headers, json={"name": "HQ"})
    assert r.status_code == 409 and r.json() == {"detail": "office name 'HQ' already exists"}


async def test_names_that_become_sip_display_names_refuse_control_characters(api: Api, make_tenant: Any) -> None:
    """An extension's display name, an employee's or an office's name is a caller name in From headers:
    a line break in it would add a header of the sender's choosing (a spoofed P-Asserted-Identity)."""
    t = await make_tenant("names.example")
    base = f"/api/v1/tenants/{t.id}"
    office = await _post(api, f"{base}/offices", {"name": "Main"}, t.headers)
    emp = await _post(api, f"{base}/employees", {"full_name": "Anna"}, t.headers)
    ext = await _post(api, f"{base}/extensions", {"number": "101", "display_name": "Anna"}, t.headers)
    hostile = "Anna\r\nP-Asserted-Identity: <sip:+74950000000@carrier.example>"
    for path, field in [(f"offices/{office['id']}", "name"), (f"employees/{emp['id']}", "full_name"),
                        (f"extensions/{ext['id']}", "display_name")]:
        r = await api.client.patch(f"{base}/{path}", headers=t.headers, json={field: hostile})
        assert r.status_code == 422, (path, r.text)
        detail = r.json()["detail"][0]
        assert detail["loc"] == ["body", field] and "control characters" in detail["msg"], detail
    r = await api.client.post(f"{base}/extensions", headers=t.headers, json={"number": "102", "display_name": "B\nX"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "display_name"]
    for other in ("Anna\x85X", "Anna\u2028X"):  # a C1 NEL, a Unicode line separator: line breaks elsewhere
        r = await api.client.patch(f"{base}/employees/{emp['id']}", headers=t.headers, json={"full_name": other})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "full_name"], r.text
    # quotes and backslashes are fine: they are escaped when written into a message
    r = await api.client.patch(f"{base}/extensions/{ext['id']}", headers=t.headers,
                               json={"display_name": 'Anna "the boss" \\'})
    assert r.status_code == 200 and r.json()["display_name"] == 'Anna "the boss" \\'
