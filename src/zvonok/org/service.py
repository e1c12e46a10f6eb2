"""Org business logic. The tenant is the first argument after the session in every call; reads go
through :mod:`zvonok.org.scope`. Functions named ``platform_*`` are the only unscoped ones, for the
platform admin (and the SIP edge's domain lookups, which *find* the tenant).

Services flush but never commit: the caller (HTTP route, CLI, demo seeder) owns the transaction, so
events queued with :func:`emit` are delivered only if the whole unit of work commits.

The SIP contract (used by the registrar): :class:`SipCredentials`, :func:`sip_credentials`,
:func:`tenant_by_domain`, :func:`set_extension_password`.

Changing a tenant's ``sip_domain`` is refused (409) while the tenant has extensions: their HA1
values are bound to the old realm and the clear passwords are not kept, so the change would silently
lock every phone out. Delete the extensions (or create a new tenant) first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.org import accounts, events, schemas
from zvonok.org.credentials import generate_sip_password, sip_ha1s
from zvonok.org.errors import Conflict, InUse, NotFound, ValidationError
from zvonok.org.models import Department, Employee, Extension, Office, Tenant
from zvonok.org.scope import (
    check_ref,
    count_in_tenant,
    describe_counts,
    get_in_tenant,
    in_tenant,
    page_in_tenant,
)
from zvonok.storage.db import emit

from . import quotas


# --- SIP contract ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SipCredentials:
    """What a registrar needs to challenge and verify one extension (no clear password exists)."""

    tenant_id: int
    extension_id: int
    number: str
    display_name: str
    realm: str  # the tenant's sip_domain
    ha1_md5: str
    ha1_sha256: str
    max_devices: int
    enabled: bool
    tenant_suspended: bool


@dataclass(frozen=True)
class TenantInfo:
    id: int
    name: str
    sip_domain: str
    timezone: str
    currency: str
    locale: str
    suspended: bool


def _tenant_info(t: Tenant) -> TenantInfo:
    return TenantInfo(t.id, t.name, t.sip_domain, t.timezone, t.currency, t.locale, t.suspended)


async def tenant_by_domain(session: AsyncSession, domain: str) -> TenantInfo | None:
    """Map a SIP request's domain to its tenant (case-insensitive: domains are stored lower-case)."""
    row = (
        await session.execute(select(Tenant).where(Tenant.sip_domain == domain.strip().lower().rstrip(".")))
    ).scalar_one_or_none()
    return _tenant_info(row) if row else None


_CREDENTIAL_COLUMNS = (
    Tenant.id, Extension.id, Extension.number, Extension.display_name, Tenant.sip_domain, Extension.ha1_md5,
    Extension.ha1_sha256, Extension.max_devices, Extension.enabled, Tenant.suspended,
)
# built once: the registrar asks this on every cache miss, and building the ORM expression costs more
# than running it
_CREDENTIALS_BY_NAME = (
    select(*_CREDENTIAL_COLUMNS)
    .select_from(Extension)
    .join(Tenant, Tenant.id == Extension.tenant_id)
    .where(Tenant.sip_domain == bindparam("domain"), Extension.number == bindparam("number"))
)


async def sip_credentials(session: AsyncSession, domain: str, username: str) -> SipCredentials | None:
    """Credentials of extension ``username`` in the tenant owning ``domain``, or None."""
    params = {"domain": domain.strip().lower().rstrip("."), "number": username}
    row = (await session.execute(_CREDENTIALS_BY_NAME, params)).one_or_none()
    return SipCredentials(*row) if row is not None else None


async def platform_all_sip_credentials(session: AsyncSession) -> list[SipCredentials]:
    """Every extension's credentials, all tenants (platform path: the SIP service warms its cache)."""
    stmt = select(*_CREDENTIAL_COLUMNS).select_from(Extension).join(Tenant, Tenant.id == Extension.tenant_id)
    return [SipCredentials(*row) for row in (await session.execute(stmt)).all()]


# --- helpers ---------------------------------------------------------------------------------------
async def _flush(session: AsyncSession, conflict: str) -> None:
    """Flush; a constraint race that slipped past the pre-checks still becomes a clean 409."""
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(conflict) from None


def apply_changes(obj: Any, changes: dict[str, Any], non_null: set[str]) -> list[str]:
    """Set the changed attributes of a row (a PATCH body); the names that changed. ``non_null`` fields
    may not be set to null (ValidationError)."""
    changed = []
    for name, value in changes.items():
        if value is None and name in non_null:
            raise ValidationError(f"{name}: may not be null", field=name)
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed.append(name)
    return changed


# --- tenants ---------------------------------------------------------------------------------------
async def platform_create_tenant(session: AsyncSession, data: schemas.TenantCreate) -> Tenant:
    await _check_domain_free(session, data.sip_domain)
    tenant = Tenant(**data.model_dump())
    session.add(tenant)
    await _flush(session, f"sip_domain {data.sip_domain} is already in use")
    emit(session, events.TenantCreated(tenant_id=tenant.id, sip_domain=tenant.sip_domain))
    return tenant


async def platform_list_tenants(
    session: AsyncSession, *, q: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[Tenant], int]:
    stmt = select(Tenant)
    if q:
        needle = q.lower()
        stmt = stmt.where(
            func.lower(Tenant.name).contains(needle, autoescape=True)
            | Tenant.sip_domain.contains(needle, autoescape=True)
        )
    total = int((await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one())
    rows = (await session.execute(stmt.order_by(Tenant.id).limit(limit).offset(offset))).scalars().all()
    return list(rows), total


async def platform_delete_tenant(session: AsyncSession, tenant_id: int) -> None:
    """Delete a company and, by ``ON DELETE CASCADE``, everything it owns."""
    tenant = await get_tenant(session, tenant_id)
    domain = tenant.sip_domain
    await session.delete(tenant)
    await session.flush()
    emit(session, events.TenantDeleted(tenant_id=tenant_id, sip_domain=domain))


async def get_tenant(session: AsyncSession, tenant_id: int) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"tenant {tenant_id} not found")
    return tenant


async def update_tenant(session: AsyncSession, tenant_id: int, data: schemas.TenantUpdate) -> Tenant:
    tenant = await get_tenant(session, tenant_id)
    changes = data.model_dump(exclude_unset=True)
    new_domain = changes.get("sip_domain")
    if new_domain is not None and new_domain != tenant.sip_domain:
        await _check_domain_free(session, new_domain)
        if await count_in_tenant(session, Extension, tenant_id):
            raise Conflict(
                "sip_domain cannot change while the tenant has extensions: their SIP passwords are stored "
                "as digests bound to the domain (realm); delete the extensions first",
                field="sip_domain",
            )
    changed = apply_changes(tenant, changes, non_null=set(changes))
    await _flush(session, f"sip_domain {new_domain} is already in use")
    if changed:
        emit(session, events.TenantChanged(tenant_id=tenant_id, fields=tuple(changed)))
    return tenant


async def _check_domain_free(session: AsyncSession, domain: str) -> None:
    if await tenant_by_domain(session, domain) is not None:
        raise Conflict(f"sip_domain {domain} is already in use", field="sip_domain")


# --- offices ---------------------------------------------------------------------------------------
async def create_office(session: AsyncSession, tenant_id: int, data: schemas.OfficeCreate) -> Office:
    await quotas.check(session, tenant_id, "offices", Office)
    await _check_office_name(session, tenant_id, data.name)
    office = Office(tenant_id=tenant_id, **data.model_dump())
    session.add(office)
    await _flush(session, f"office name {data.name!r} already exists")
    emit(session, events.EntityChanged(tenant_id=tenant_id, entity="office", entity_id=office.id, action="created"))
    return office


async def list_offices(
    session: AsyncSession, tenant_id: int, *, q: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[Office], int]:
    return await page_in_tenant(
        session, Office, tenant_id, q=q, q_columns=(Office.name, Office.city), order_by=(Office.id,),
        limit=limit, offset=offset,
    )


async def get_office(session: AsyncSession, tenant_id: int, office_id: int) -> Office:
    return await get_in_tenant(session, Office, tenant_id, office_id, "office")


async def update_office(
    session: AsyncSession, tenant_id: int, office_id: int, data: schemas.OfficeUpdate
) -> Office:
    office = await get_office(session, tenant_id, office_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("name") not in (None, office.name):
        await _check_office_name(session, tenant_id, changes["name"])
    if apply_changes(office, changes, non_null={"name"}):
        await _flush(session, f"office name {office.name!r} already exists")
        emit(session, events.EntityChanged(tenant_id=tenant_id, entity="office", entity_id=office_id, action="updated"))
    return office


async def delete_office(session: AsyncSession, tenant_id: int, office_id: int) -> None:
    office = await get_office(session, tenant_id, office_id)
    refs = {
        "employee": await count_in_tenant(session, Employee, tenant_id, Employee.office_id == office_id),
        "extension": await count_in_tenant(session, Extension, tenant_id, Extension.office_id == office_id),
        "department": await count_in_tenant(session, Department, tenant_id, Department.office_id == office_id),
    }
    if any(refs.values()):
        raise InUse(f"office {office_id} is in use by {describe_counts(refs)}")
    await _run_delete_hooks(session, tenant_id, "office", office_id)
    await session.delete(office)
    await session.flush()
    emit(session, events.EntityChanged(tenant_id=tenant_id, entity="office", entity_id=office_id, action="deleted"))


async def _check_office_name(session: AsyncSession, tenant_id: int, name: str) -> None:
    if await count_in_tenant(session, Office, tenant_id, Office.name == name):
        raise Conflict(f"office name {name!r} already exists", field="name")


# --- departments -----------------------------------------------------------------------------------
async def create_department(session: AsyncSession, tenant_id: int, data: schemas.DepartmentCreate) -> Department:
    await quotas.check(session, tenant_id, "departments", Department)
    await check_ref(session, Office, tenant_id, data.office_id, "office_id", "office")
    await check_ref(session, Department, tenant_id, data.parent_id, "parent_id", "department")
    dept = Department(tenant_id=tenant_id, **data.model_dump())
    session.add(dept)
    await session.flush()
    emit(session, events.EntityChanged(tenant_id=tenant_id, entity="department", entity_id=dept.id, action="created"))
    return dept


async def list_departments(
    session: AsyncSession,
    tenant_id: int,
    *,
    office_id: int | None = None,
    parent_id: int | None = None,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Department], int]:
    where = []
    if office_id is not None:
        where.append(Department.office_id == office_id)
    if parent_id is not None:
        where.append(Department.parent_id == parent_id)
    return await page_in_tenant(
        session, Department, tenant_id, where=where, q=q, q_columns=(Department.name,),
        order_by=(Department.id,), limit=limit, offset=offset,
    )


async def get_department(session: AsyncSession, tenant_id: int, department_id: int) -> Department:
    return await get_in_tenant(session, Department, tenant_id, department_id, "department")


async def update_department(
    session: AsyncSession, tenant_id: int, department_id: int, data: schemas.DepartmentUpdate
) -> Department:
    dept = await get_department(session, tenant_id, department_id)
    changes = data.model_dump(exclude_unset=True)
    if "office_id" in changes:
        await check_ref(session, Office, tenant_id, changes["office_id"], "office_id", "office")
    if changes.get("parent_id") is not None:
        await _check_no_cycle(session, tenant_id, department_id, changes["parent_id"])
    if apply_changes(dept, changes, non_null={"name"}):
        await session.flush()
        emit(session, events.EntityChanged(tenant_id=tenant_id, entity="department", entity_id=department_id, action="updated"))
    return dept


async def _check_no_cycle(session: AsyncSession, tenant_id: int, department_id: int, parent_id: int) -> None:
    await check_ref(session, Department, tenant_id, parent_id, "parent_id", "department")
    current: int | None = parent_id
    while current is not None:
        if current == department_id:
            raise ValidationError("parent_id: a department cannot be inside itself", field="parent_id")
        current = (await get_department(session, tenant_id, current)).parent_id


async def delete_department(session: AsyncSession, tenant_id: int, department_id: int) -> None:
    dept = await get_department(session, tenant_id, department_id)
    refs = {
        "employee": await count_in_tenant(session, Employee, tenant_id, Employee.department_id == department_id),
        "sub-department": await count_in_tenant(
            session, Department, tenant_id, Department.parent_id == department_id
        ),
    }
    if any(refs.values()):
        raise InUse(f"department {department_id} is in use by {describe_counts(refs)}")
    await _run_delete_hooks(session, tenant_id, "department", department_id)
    await session.delete(dept)
    await session.flush()
    emit(session, events.EntityChanged(tenant_id=tenant_id, entity="department", entity_id=department_id, action="deleted"))


# --- employees -------------------------------------------------------------------------------------
async def create_employee(session: AsyncSession, tenant_id: int, data: schemas.EmployeeCreate) -> Employee:
    await quotas.check(session, tenant_id, "employees", Employee)
    await check_ref(session, Office, tenant_id, data.office_id, "office_id", "office")
    await check_ref(session, Department, tenant_id, data.department_id, "department_id", "department")
    if data.email:
        await _check_employee_email(session, tenant_id, data.email)
    emp = Employee(tenant_id=tenant_id, **data.model_dump(exclude={"web_password", "role"}))
    session.add(emp)
    await _flush(session, f"employee email {data.email} already exists")
    if data.web_password is not None:
        await accounts.set_employee_login(session, tenant_id, emp, data.web_password, data.role)
    emit(session, events.EntityChanged(tenant_id=tenant_id, entity="employee", entity_id=emp.id, action="created"))
    return emp


async def list_employees(
    session: AsyncSession,
    tenant_id: int,
    *,
    office_id: int | None = None,
    department_id: int | None = None,
    active: bool | None = None,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Employee], int]:
    where = []
    if office_id is not None:
        where.append(Employee.office_id == office_id)
    if department_id is not None:
        where.append(Employee.department_id == department_id)
    if active is not None:
        where.append(Employee.active == active)
    return await page_in_tenant(
        session, Employee, tenant_id, where=where, q=q,
        q_columns=(Employee.full_name, Employee.email, Employee.phone), order_by=(Employee.id,),
        limit=limit, offset=offset,
    )


async def get_employee(session: AsyncSession, tenant_id: int, employee_id: int) -> Employee:
    return await get_in_tenant(session, Employee, tenant_id, employee_id, "employee")


async def update_employee(
    session: AsyncSession, tenant_id: int, employee_id: int, data: schemas.EmployeeUpdate
) -> Employee:
    emp = await get_employee(session, tenant_id, employee_id)
    changes = data.model_dump(exclude_unset=True)
    password = changes.pop("web_password", None)
    role = changes.pop("role", None)
    if "office_id" in changes:
        await check_ref(session, Office, tenant_id, changes["office_id"], "office_id", "office")
    if "department_id" in changes:
        await check_ref(session, Department, tenant_id, changes["department_id"], "department_id", "department")
    if changes.get("email") not in (None, emp.email):
        await _check_employee_email(session, tenant_id, changes["email"])
    changed = apply_changes(emp, changes, non_null={"full_name", "active"})
    await _flush(session, f"employee email {emp.email} already exists")
    if password is not None or role is not None or "email" in changed:
        await accounts.update_employee_login(session, tenant_id, emp, password, role)
    if "active" in changed and not emp.active:
        await accounts.revoke_employee_access(session, tenant_id, employee_id)
    if changed:
        emit(session, events.EntityChanged(tenant_id=tenant_id, entity="employee", entity_id=employee_id, action="updated"))
    return emp


async def delete_employee(session: AsyncSession, tenant_id: int, employee_id: int) -> None:
    """Delete an employee (their login goes too); refused while extensions are assigned to them."""
    emp = await get_employee(session, tenant_id, employee_id)
    refs = {"extension": await count_in_tenant(session, Extension, tenant_id, Extension.employee_id == employee_id)}
    if any(refs.values()):
        raise InUse(f"employee {employee_id} is in use by {describe_counts(refs)}")
    await _run_delete_hooks(session, tenant_id, "employee", employee_id)
    await accounts.revoke_employee_access(session, tenant_id, employee_id)  # its tokens outlive the row
    await session.delete(emp)
    await session.flush()
    emit(session, events.EntityChanged(tenant_id=tenant_id, entity="employee", entity_id=employee_id, action="deleted"))


async def _check_employee_email(session: AsyncSession, tenant_id: int, email: str) -> None:
    if await count_in_tenant(session, Employee, tenant_id, Employee.email == email):
        raise Conflict(f"employee email {email} already exists", field="email")


# --- extensions ------------------------------------------------------------------------------------
# Other domains register here what goes with a deleted office, department or employee (its outbound
# policy, its PIN...): hook(session, tenant_id, entity, entity_id), run before the row is deleted.
EntityDeleted = Callable[[AsyncSession, int, str, int], Awaitable[None]]
entity_deleted_hooks: list[EntityDeleted] = []


async def _run_delete_hooks(session: AsyncSession, tenant_id: int, entity: str, entity_id: int) -> None:
    for hook in entity_deleted_hooks:
        await hook(session, tenant_id, entity, entity_id)


# Other domains register here what makes an extension undeletable (a DID, a ring group, a queue...).
# A hook returns human-readable descriptions of the references it finds, e.g. ["DID +74951234567"].
ExtensionReference = Callable[[AsyncSession, int, int], Awaitable[list[str]]]
extension_references: list[ExtensionReference] = []

# Other domains register here the numbers they hold in a tenant's internal number space (ring groups...):
# claim(session, tenant_id, number) -> what holds it ("ring group 600") or None. No extension (nor conference
# room) is created with a claimed number: a caller dialing it would reach only one of the two.
NumberClaim = Callable[[AsyncSession, int, str], Awaitable[str | None]]
number_claims: list[NumberClaim] = []


async def number_claimed(session: AsyncSession, tenant_id: int, number: str) -> str | None:
    for claim in number_claims:
        if (holder := await claim(session, tenant_id, number)) is not None:
            return holder
    return None


async def create_extension(
    session: AsyncSession, tenant_id: int, data: schemas.ExtensionCreate
) -> tuple[Extension, str | None]:
    """Create an extension. Returns it and the generated SIP password (None when one was given)."""
    await quotas.check(session, tenant_id, "extensions", Extension)
    tenant = await get_tenant(session, tenant_id)
    await check_ref(session, Employee, tenant_id, data.employee_id, "employee_id", "employee")
    await check_ref(session, Office, tenant_id, data.office_id, "office_id", "office")
    if await count_in_tenant(session, Extension, tenant_id, Extension.number == data.number):
        raise Conflict(f"extension number {data.number} already exists", field="number")
    if (holder := await number_claimed(session, tenant_id, data.number)) is not None:
        raise Conflict(f"number: {data.number} is already {holder}", field="number")
    generated = generate_sip_password() if data.sip_password is None else None
    password = data.sip_password if data.sip_password is not None else generated
    assert password is not None
    md5, sha256 = sip_ha1s(data.number, tenant.sip_domain, password)
    ext = Extension(
        tenant_id=tenant_id,
        ha1_md5=md5,
        ha1_sha256=sha256,
        **data.model_dump(exclude={"sip_password"}),
    )
    session.add(ext)
    await _flush(session, f"extension number {data.number} already exists")
    emit(session, events.ExtensionCreated(tenant_id=tenant_id, extension_id=ext.id, number=ext.number))
    return ext, generated


async def list_extensions(
    session: AsyncSession,
    tenant_id: int,
    *,
    office_id: int | None = None,
    employee_id: int | None = None,
    enabled: bool | None = None,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Extension], int]:
    where = []
    if office_id is not None:
        where.append(Extension.office_id == office_id)
    if employee_id is not None:
        where.append(Extension.employee_id == employee_id)
    if enabled is not None:
        where.append(Extension.enabled == enabled)
    return await page_in_tenant(
        session, Extension, tenant_id, where=where, q=q,
        q_columns=(Extension.number, Extension.display_name), order_by=(Extension.number,),
        limit=limit, offset=offset,
    )


async def extension_ids_of(session: AsyncSession, tenant_id: int, employee_id: int | None) -> set[int]:
    """The extensions assigned to an employee (none for ``None``: a token that is no employee)."""
    if employee_id is None:
        return set()
    stmt = select(Extension.id).where(Extension.tenant_id == tenant_id, Extension.employee_id == employee_id)
    return set((await session.execute(stmt)).scalars())


async def get_extension(session: AsyncSession, tenant_id: int, extension_id: int) -> Extension:
    return await get_in_tenant(session, Extension, tenant_id, extension_id, "extension")


async def get_extension_by_number(session: AsyncSession, tenant_id: int, number: str) -> Extension:
    ext = (
        await session.execute(in_tenant(Extension, tenant_id).where(Extension.number == number))
    ).scalar_one_or_none()
    if ext is None:
        raise NotFound(f"extension {number} not found")
    return ext


async def update_extension(
    session: AsyncSession, tenant_id: int, extension_id: int, data: schemas.ExtensionUpdate
) -> Extension:
    ext = await get_extension(session, tenant_id, extension_id)
    changes = data.model_dump(exclude_unset=True)
    password = changes.pop("sip_password", None)
    if "employee_id" in changes:
        await check_ref(session, Employee, tenant_id, changes["employee_id"], "employee_id", "employee")
    if "office_id" in changes:
        await check_ref(session, Office, tenant_id, changes["office_id"], "office_id", "office")
    changed = apply_changes(ext, changes, non_null={"display_name", "max_devices", "enabled"})
    if password is not None:
        tenant = await get_tenant(session, tenant_id)
        ext.ha1_md5, ext.ha1_sha256 = sip_ha1s(ext.number, tenant.sip_domain, password)
        changed.append("sip_password")
    if changed:
        await session.flush()
        creds = bool({"sip_password", "enabled", "max_devices"} & set(changed))
        emit(
            session,
            events.ExtensionChanged(
                tenant_id=tenant_id, extension_id=ext.id, number=ext.number, fields=tuple(changed),
                credentials_changed=creds,
            ),
        )
    return ext


async def set_extension_password(session: AsyncSession, tenant_id: int, extension_id: int, password: str) -> None:
    """Replace an extension's SIP password (stored only as HA1 for the tenant's realm)."""
    await update_extension(session, tenant_id, extension_id, schemas.ExtensionUpdate(sip_password=password))


async def delete_extension(session: AsyncSession, tenant_id: int, extension_id: int) -> None:
    ext = await get_extension(session, tenant_id, extension_id)
    found: list[str] = []
    for hook in extension_references:
        found.extend(await hook(session, tenant_id, extension_id))
    if found:
        raise InUse(f"extension {ext.number} is in use by {', '.join(found)}")
    number = ext.number
    await session.delete(ext)
    await session.flush()
    emit(session, events.ExtensionDeleted(tenant_id=tenant_id, extension_id=extension_id, number=number))
