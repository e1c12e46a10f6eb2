"""A demo company to try Zvonok with a softphone in a minute.

Only HA1 digests and password hashes are in the database, so the generated demo secrets are kept in
``<data_dir>/demo-credentials.json`` (mode 0600) and reused: seeding again changes nothing and shows
the same passwords. If the file is lost, the secrets are regenerated and written into the database.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.config import Settings
from zvonok.org import accounts, schemas, service
from zvonok.org.credentials import (
    generate_sip_password,
    generate_web_password,
    hash_password,
    sip_ha1s,
    token_hash,
    verify_password,
)
from zvonok.org.errors import NotFound
from zvonok.org.models import Account, ApiToken, Department, Employee, Office, Role
from zvonok.storage.db import Database

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "demo-credentials.json"

_OFFICES = [("Moscow", "Moscow", "495"), ("Saint Petersburg", "Saint Petersburg", "812")]
_DEPARTMENTS = ["Sales", "Support"]
# (number, full name, email local part, office, department)
_EMPLOYEES = [
    ("101", "Ivan Petrov", "ivan.petrov", "Moscow", "Sales"),
    ("102", "Maria Sidorova", "maria.sidorova", "Moscow", "Support"),
    ("103", "Alexei Smirnov", "alexei.smirnov", "Saint Petersburg", "Sales"),
    ("104", "Olga Ivanova", "olga.ivanova", "Saint Petersburg", "Support"),
]


@dataclass(frozen=True)
class DemoExtension:
    number: str
    name: str
    password: str


@dataclass(frozen=True)
class DemoInfo:
    tenant_id: int
    domain: str
    extensions: list[DemoExtension] = field(default_factory=list)
    admin_login: str = ""
    admin_password: str = ""
    api_token: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        log.warning("unreadable %s; demo secrets will be regenerated", path)
        return {}
    return data if isinstance(data, dict) else {}


def _save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


async def seed_demo(db: Database, settings: Settings) -> DemoInfo:
    """Create (or find) the demo company and return how to use it. Idempotent."""
    path = settings.data_dir / CREDENTIALS_FILE
    stored = _load(path)
    secrets: dict[str, Any] = {
        "domain": settings.demo_domain,
        "extensions": dict(stored.get("extensions") or {}),
        "admin_password": stored.get("admin_password"),
        "api_token": stored.get("api_token"),
    }
    async with db.session() as session:
        info = await _seed(session, settings.demo_domain, secrets)
        await session.commit()
    if secrets != stored:
        _save(path, secrets)
    return info


async def _seed(session: AsyncSession, domain: str, secrets: dict[str, Any]) -> DemoInfo:
    tenant_info = await service.tenant_by_domain(session, domain)
    if tenant_info is None:
        tenant = await service.platform_create_tenant(
            session,
            schemas.TenantCreate(
                name="Demo", sip_domain=domain, timezone="Europe/Moscow", currency="RUB", locale="ru-RU"
            ),
        )
        tenant_id = tenant.id
        log.info("created demo tenant %s", domain)
    else:
        tenant_id = tenant_info.id

    offices = {o.name: o for o in (await session.execute(select(Office).where(Office.tenant_id == tenant_id))).scalars()}
    for name, city, area in _OFFICES:
        if name not in offices:
            offices[name] = await service.create_office(
                session, tenant_id, schemas.OfficeCreate(name=name, city=city, area_code=area)
            )
    depts = {d.name: d for d in (await session.execute(select(Department).where(Department.tenant_id == tenant_id))).scalars()}
    for name in _DEPARTMENTS:
        if name not in depts:
            depts[name] = await service.create_department(session, tenant_id, schemas.DepartmentCreate(name=name))

    ext_secrets: dict[str, str] = secrets["extensions"]
    result: list[DemoExtension] = []
    for number, full_name, local, office, dept in _EMPLOYEES:
        email = f"{local}@{domain}"
        emp = (
            await session.execute(select(Employee).where(Employee.tenant_id == tenant_id, Employee.email == email))
        ).scalar_one_or_none()
        if emp is None:
            emp = await service.create_employee(
                session, tenant_id,
                schemas.EmployeeCreate(
                    full_name=full_name, email=email, office_id=offices[office].id, department_id=depts[dept].id
                ),
            )
        password = ext_secrets.get(number) or generate_sip_password()
        ext_secrets[number] = password
        try:
            ext = await service.get_extension_by_number(session, tenant_id, number)
        except NotFound:
            await service.create_extension(
                session, tenant_id,
                schemas.ExtensionCreate(
                    number=number, display_name=full_name, employee_id=emp.id, office_id=offices[office].id,
                    sip_password=password,
                ),
            )
        else:
            if (ext.ha1_md5, ext.ha1_sha256) != sip_ha1s(number, domain, password):
                await service.set_extension_password(session, tenant_id, ext.id, password)
        result.append(DemoExtension(number=number, name=full_name, password=password))

    admin_email = f"admin@{domain}"
    admin = (await session.execute(select(Account).where(Account.email == admin_email))).scalar_one_or_none()
    admin_password = secrets["admin_password"] or generate_web_password()
    secrets["admin_password"] = admin_password
    if admin is None:
        admin = await accounts.platform_create_account(
            session, email=admin_email, password=admin_password, role=Role.TENANT_ADMIN, tenant_id=tenant_id
        )
    elif not await verify_password(admin_password, admin.password_hash):
        admin.password_hash = await hash_password(admin_password)

    token_secret = secrets["api_token"]
    live = None
    if token_secret:
        live = (
            await session.execute(
                select(ApiToken).where(ApiToken.secret_hash == token_hash(token_secret), ApiToken.revoked_at.is_(None))
            )
        ).scalar_one_or_none()
    if live is None:
        created = await accounts.create_api_token(session, tenant_id, "demo", Role.TENANT_ADMIN, account_id=admin.id)
        token_secret = created.secret
        secrets["api_token"] = token_secret

    return DemoInfo(
        tenant_id=tenant_id, domain=domain, extensions=result, admin_login=admin_email,
        admin_password=admin_password, api_token=token_secret,
    )
