"""Org service rules and the SIP contract the registrar depends on."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.config import Settings
from zvonok.org import schemas, service
from zvonok.org.demo import seed_demo
from zvonok.org.errors import Conflict, InUse, NotFound, ValidationError
from zvonok.org.models import Account, ApiToken, Employee, Extension
from zvonok.storage.db import Database


async def _tenant(session: AsyncSession, domain: str = "demo.zvonok.local") -> int:
    t = await service.platform_create_tenant(session, schemas.TenantCreate(name="T", sip_domain=domain))
    return t.id


async def test_sip_credentials_ha1(db: Database) -> None:
    async with db.session() as session:
        tid = await _tenant(session)
        ext, generated = await service.create_extension(
            session, tid, schemas.ExtensionCreate(number="101", display_name="Ivan", sip_password="pw-secret")
        )
        assert generated is None
        await session.commit()
    async with db.session() as session:
        creds = await service.sip_credentials(session, "DEMO.Zvonok.Local", "101")
        assert creds is not None
        assert creds.ha1_md5 == hashlib.md5(b"101:demo.zvonok.local:pw-secret").hexdigest()
        assert creds.ha1_sha256 == hashlib.sha256(b"101:demo.zvonok.local:pw-secret").hexdigest()
        assert (creds.tenant_id, creds.extension_id, creds.number, creds.realm) == (tid, ext.id, "101", "demo.zvonok.local")
        assert (creds.max_devices, creds.enabled, creds.tenant_suspended, creds.display_name) == (5, True, False, "Ivan")
        assert await service.sip_credentials(session, "demo.zvonok.local", "102") is None
        assert await service.sip_credentials(session, "other.example", "101") is None
        info = await service.tenant_by_domain(session, "Demo.Zvonok.LOCAL")
        assert info is not None and info.id == tid
        assert await service.tenant_by_domain(session, "nope.example") is None

        await service.set_extension_password(session, tid, ext.id, "another-pw")
        await session.commit()
        creds = await service.sip_credentials(session, "demo.zvonok.local", "101")
        assert creds is not None
        assert creds.ha1_md5 == hashlib.md5(b"101:demo.zvonok.local:another-pw").hexdigest()


async def test_generated_sip_password_and_no_cleartext(db: Database) -> None:
    async with db.session() as session:
        tid = await _tenant(session)
        ext, generated = await service.create_extension(
            session, tid, schemas.ExtensionCreate(number="200", display_name="X")
        )
        await session.commit()
    assert generated is not None and len(generated) == 12
    assert ext.ha1_md5 == hashlib.md5(f"200:demo.zvonok.local:{generated}".encode()).hexdigest()
    assert generated not in repr(ext.__dict__)


async def test_domain_change_refused_while_extensions_exist(db: Database) -> None:
    async with db.session() as session:
        tid = await _tenant(session)
        await service.update_tenant(session, tid, schemas.TenantUpdate(sip_domain="new.example"))
        ext, _ = await service.create_extension(session, tid, schemas.ExtensionCreate(number="10", display_name="X"))
        with pytest.raises(Conflict, match="sip_domain"):
            await service.update_tenant(session, tid, schemas.TenantUpdate(sip_domain="newer.example"))
        await service.delete_extension(session, tid, ext.id)
        await service.update_tenant(session, tid, schemas.TenantUpdate(sip_domain="newer.example"))


async def test_tenant_scoping_in_service(db: Database) -> None:
    async with db.session() as session:
        a = await _tenant(session, "a.example")
        b = await _tenant(session, "b.example")
        office = await service.create_office(session, a, schemas.OfficeCreate(name="HQ"))
        with pytest.raises(NotFound):
            await service.get_office(session, b, office.id)
        with pytest.raises(ValidationError, match="office_id"):
            await service.create_employee(session, b, schemas.EmployeeCreate(full_name="E", office_id=office.id))
        # Same extension number in two tenants is fine.
        await service.create_extension(session, a, schemas.ExtensionCreate(number="101", display_name="A"))
        await service.create_extension(session, b, schemas.ExtensionCreate(number="101", display_name="B"))
        with pytest.raises(Conflict, match="extension number 101 already exists"):
            await service.create_extension(session, a, schemas.ExtensionCreate(number="101", display_name="A2"))


async def test_department_cycle_and_in_use(db: Database) -> None:
    async with db.session() as session:
        tid = await _tenant(session)
        top = await service.create_department(session, tid, schemas.DepartmentCreate(name="Top"))
        sub = await service.create_department(session, tid, schemas.DepartmentCreate(name="Sub", parent_id=top.id))
        with pytest.raises(ValidationError, match="parent_id"):
            await service.update_department(session, tid, top.id, schemas.DepartmentUpdate(parent_id=sub.id))
        with pytest.raises(InUse, match="1 sub-department"):
            await service.delete_department(session, tid, top.id)


async def test_extension_reference_hook(db: Database) -> None:
    async def fake_ring_group(session: AsyncSession, tenant_id: int, extension_id: int) -> list[str]:
        return ["ring group 'Sales'"]

    async with db.session() as session:
        tid = await _tenant(session)
        ext, _ = await service.create_extension(session, tid, schemas.ExtensionCreate(number="11", display_name="X"))
        service.extension_references.append(fake_ring_group)
        try:
            with pytest.raises(InUse, match="extension 11 is in use by ring group 'Sales'"):
                await service.delete_extension(session, tid, ext.id)
        finally:
            service.extension_references.remove(fake_ring_group)
        await service.delete_extension(session, tid, ext.id)


async def _counts(db: Database) -> dict[str, int]:
    from sqlalchemy import func, select

    out = {}
    async with db.session() as session:
        for model in (Employee, Extension, Account, ApiToken):
            out[model.__name__] = (await session.execute(select(func.count()).select_from(model))).scalar_one()
    return out


async def test_seed_demo_idempotent(db: Database, settings: Settings) -> None:
    first = await seed_demo(db, settings)
    counts = await _counts(db)
    second = await seed_demo(db, settings)
    assert first == second
    assert await _counts(db) == counts == {"Employee": 4, "Extension": 4, "Account": 1, "ApiToken": 1}
    assert [e.number for e in first.extensions] == ["101", "102", "103", "104"]
    assert all(len(e.password) == 12 for e in first.extensions)
    path: Path = settings.data_dir / "demo-credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["api_token"] == first.api_token
    async with db.session() as session:
        creds = await service.sip_credentials(session, settings.demo_domain, "101")
        assert creds is not None
        pw = first.extensions[0].password
        assert creds.ha1_md5 == hashlib.md5(f"101:demo.zvonok.local:{pw}".encode()).hexdigest()
        tenant = await service.tenant_by_domain(session, "demo.zvonok.local")
        assert tenant is not None and (tenant.timezone, tenant.currency, tenant.locale) == ("Europe/Moscow", "RUB", "ru-RU")

    # Losing the secrets file regenerates them and makes the database agree again.
    path.unlink()
    third = await seed_demo(db, settings)
    assert third.extensions[0].password != pw
    assert await _counts(db) == {**counts, "ApiToken": 2}
    async with db.session() as session:
        creds = await service.sip_credentials(session, settings.demo_domain, "101")
        assert creds is not None
        assert creds.ha1_md5 == hashlib.md5(f"101:demo.zvonok.local:{third.extensions[0].password}".encode()).hexdigest()
