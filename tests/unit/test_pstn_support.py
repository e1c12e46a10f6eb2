"""Helpers shared by the ``test_pstn_*`` modules (no tests here): the API with the pstn router mounted,
a company with offices, a department, employees and extensions, and CDR rows written directly."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from zvonok.config import Settings
from zvonok.storage.db import Database

Api = Any


def fake_dns(monkeypatch: Any, names: dict[str, str]) -> dict[str, str]:
    """Trunk host names resolving to the given addresses (the dict may change later: a tenant re-points
    its name); other names resolve for real (the database's host, say)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in names:
            family = socket.AF_INET6 if ":" in names[host] else socket.AF_INET
            return [(family, socket.SOCK_DGRAM, 17, "", (names[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


@dataclass
class PstnApi:
    """Like the conftest ``Api`` (``make_tenant`` works with it) plus the committed events."""

    client: httpx.AsyncClient
    db: Database
    settings: Settings
    admin_token: str
    app: Any
    events: list[object] = field(default_factory=list)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


@asynccontextmanager
async def pstn_api(db: Database, settings: Settings) -> AsyncIterator[PstnApi]:
    from zvonok.api.app import create_app
    from zvonok.cdr import http as cdr_http
    from zvonok.org import accounts
    from zvonok.pstn import http as pstn_http
    from zvonok.telephony.http import registrations_router
    from zvonok.telephony.location import Location

    async with db.session() as session:
        created = await accounts.platform_create_api_token(session, "tests")
        await session.commit()
    app = create_app(settings, db, routers=[registrations_router(Location()), cdr_http.router, pstn_http.router])
    seen: list[object] = []
    db.add_listener(seen.append)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://zvonok.test") as client:
            yield PstnApi(client, db, settings, created.secret, app, seen)
    finally:
        db.remove_listener(seen.append)


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


@dataclass
class Company:
    id: int
    base: str
    headers: dict[str, str]  # tenant admin
    office: int
    office2: int
    dept: int
    alice: int  # employee with a login, extension 101, office/dept
    bob: int  # employee, extension 102
    ext_alice: int
    alice_headers: dict[str, str]


async def make_company(api: Api, make_tenant: Any, domain: str, timezone: str = "Europe/Moscow") -> Company:
    t = await make_tenant(domain)
    await ok(await api.client.patch(f"/api/v1/tenants/{t.id}", headers=api.admin,
                                    json={"timezone": timezone, "currency": "RUB"}))
    base = f"/api/v1/tenants/{t.id}"

    async def post(kind: str, body: dict[str, Any]) -> int:
        return int((await ok(await api.client.post(f"{base}/{kind}", headers=t.headers, json=body), 201))["id"])

    office = await post("offices", {"name": "Moscow", "area_code": "495"})
    office2 = await post("offices", {"name": "Saint Petersburg", "area_code": "812"})
    dept = await post("departments", {"name": "Sales", "office_id": office})
    alice = await post("employees", {"full_name": "Alice", "email": f"alice@{domain}", "office_id": office,
                                     "department_id": dept, "web_password": "alice-password",
                                     "phone": "+7 495 765-43-21"})
    bob = await post("employees", {"full_name": "Bob", "email": f"bob@{domain}", "office_id": office2})
    ext_alice = await post("extensions", {"number": "101", "display_name": "Alice", "employee_id": alice})
    await post("extensions", {"number": "102", "display_name": "Bob", "employee_id": bob})
    await post("extensions", {"number": "103", "display_name": "Desk"})
    login = await ok(await api.client.post("/api/v1/auth/login",
                                           json={"email": f"alice@{domain}", "password": "alice-password"}))
    return Company(t.id, base, t.headers, office, office2, dept, alice, bob, ext_alice,
                   {"Authorization": f"Bearer {login['access_token']}"})


async def add_number(api: Api, number: str, tenant_id: int | None = None, fee: str = "0") -> dict[str, Any]:
    created: dict[str, Any] = await ok(await api.client.post(
        "/api/v1/platform/numbers", headers=api.admin, json={"number": number, "monthly_fee": fee}), 201)
    if tenant_id is not None:
        created = await ok(await api.client.post(f"/api/v1/platform/numbers/{created['id']}/assign",
                                                 headers=api.admin, json={"tenant_id": tenant_id}))
    return created


async def insert_cdr(
    db: Database, tenant_id: int, *, at: datetime, cost: str, billed: int, klass: str | None = "local",
    office: int | None = None, dept: int | None = None, employee: int | None = None,
) -> None:
    """One finished outside call, written straight into ``cdrs`` with the given price and attribution."""
    from zvonok.cdr.models import Cdr

    async with db.session() as session:
        session.add(Cdr(
            tenant_id=tenant_id, call_id=uuid.uuid4().hex, direction="outbound", internal=False,
            dialed_number="84951234567", caller_number="101", caller_name="Alice", callee_number="+74951234567",
            callee_name="", caller_office_id=office, caller_department_id=dept, caller_employee_id=employee,
            started_at=at, answered_at=at + timedelta(seconds=5) if billed else None,
            ended_at=at + timedelta(seconds=5 + billed), duration=5 + billed, billsec=billed, disposition="answered",
            hangup_side="caller", cause="normal_clearing", cost=Decimal(cost), currency="RUB", billed_seconds=billed,
            destination_class=klass,
        ))
        await session.commit()
