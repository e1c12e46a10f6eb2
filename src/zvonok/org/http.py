"""Thin REST routes of the org domain: check access, call the service, commit, shape the answer.

Reads of a tenant's directory need :data:`TenantReader` (any role of that tenant); writes need
:data:`TenantAdmin`. An employee may change only their own extension's SIP password.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import PlatformAdmin, Principal, TenantAdmin, TenantReader
from zvonok.api.deps import Paging, get_session, paging
from zvonok.org import accounts, forwarding, service
from zvonok.org import schemas as s
from zvonok.org.models import Role

router = APIRouter(prefix="/api/v1")
Session = Annotated[AsyncSession, Depends(get_session)]
PageParams = Annotated[Paging, Depends(paging)]
Search = Annotated[str | None, Query(max_length=200, description="Case-insensitive substring search")]


def _no_content() -> Response:
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _page(model: type[BaseModel], rows: Sequence[object], total: int, p: Paging) -> dict[str, object]:
    return {"items": [model.model_validate(r) for r in rows], "total": total, "limit": p.limit, "offset": p.offset}


# --- tenants ---------------------------------------------------------------------------------------
@router.post("/tenants", response_model=s.TenantOut, status_code=201, tags=["tenants"])
async def create_tenant(body: s.TenantCreate, _: PlatformAdmin, session: Session) -> object:
    tenant = await service.platform_create_tenant(session, body)
    await session.commit()
    return tenant


@router.get("/tenants", response_model=s.Page[s.TenantOut], tags=["tenants"])
async def list_tenants(_: PlatformAdmin, session: Session, p: PageParams, q: Search = None) -> object:
    rows, total = await service.platform_list_tenants(session, q=q, limit=p.limit, offset=p.offset)
    return _page(s.TenantOut, rows, total, p)


@router.get("/tenants/{tenant_id}", response_model=s.TenantOut, tags=["tenants"])
async def get_tenant(tenant_id: int, _: TenantReader, session: Session) -> object:
    return await service.get_tenant(session, tenant_id)


@router.patch("/tenants/{tenant_id}", response_model=s.TenantOut, tags=["tenants"])
async def update_tenant(tenant_id: int, body: s.TenantUpdate, who: TenantAdmin, session: Session) -> object:
    platform_only = {"sip_domain", "suspended"} & body.model_fields_set
    if platform_only and not who.is_platform_admin:
        raise HTTPException(403, f"{', '.join(sorted(platform_only))}: only a platform admin may change this")
    tenant = await service.update_tenant(session, tenant_id, body)
    await session.commit()
    return tenant


@router.delete("/tenants/{tenant_id}", status_code=204, tags=["tenants"])
async def delete_tenant(tenant_id: int, who: TenantReader, session: Session) -> Response:
    if not who.is_platform_admin:
        raise HTTPException(403, "only a platform admin may delete a tenant")
    await service.platform_delete_tenant(session, tenant_id)
    await session.commit()
    return _no_content()


# --- offices ---------------------------------------------------------------------------------------
@router.post("/tenants/{tenant_id}/offices", response_model=s.OfficeOut, status_code=201, tags=["offices"])
async def create_office(tenant_id: int, body: s.OfficeCreate, _: TenantAdmin, session: Session) -> object:
    office = await service.create_office(session, tenant_id, body)
    await session.commit()
    return office


@router.get("/tenants/{tenant_id}/offices", response_model=s.Page[s.OfficeOut], tags=["offices"])
async def list_offices(tenant_id: int, _: TenantReader, session: Session, p: PageParams, q: Search = None) -> object:
    rows, total = await service.list_offices(session, tenant_id, q=q, limit=p.limit, offset=p.offset)
    return _page(s.OfficeOut, rows, total, p)


@router.get("/tenants/{tenant_id}/offices/{office_id}", response_model=s.OfficeOut, tags=["offices"])
async def get_office(tenant_id: int, office_id: int, _: TenantReader, session: Session) -> object:
    return await service.get_office(session, tenant_id, office_id)


@router.patch("/tenants/{tenant_id}/offices/{office_id}", response_model=s.OfficeOut, tags=["offices"])
async def update_office(
    tenant_id: int, office_id: int, body: s.OfficeUpdate, _: TenantAdmin, session: Session
) -> object:
    office = await service.update_office(session, tenant_id, office_id, body)
    await session.commit()
    return office


@router.delete("/tenants/{tenant_id}/offices/{office_id}", status_code=204, tags=["offices"])
async def delete_office(tenant_id: int, office_id: int, _: TenantAdmin, session: Session) -> Response:
    await service.delete_office(session, tenant_id, office_id)
    await session.commit()
    return _no_content()


# --- departments -----------------------------------------------------------------------------------
@router.post("/tenants/{tenant_id}/departments", response_model=s.DepartmentOut, status_code=201, tags=["departments"])
async def create_department(tenant_id: int, body: s.DepartmentCreate, _: TenantAdmin, session: Session) -> object:
    dept = await service.create_department(session, tenant_id, body)
    await session.commit()
    return dept


@router.get("/tenants/{tenant_id}/departments", response_model=s.Page[s.DepartmentOut], tags=["departments"])
async def list_departments(
    tenant_id: int,
    _: TenantReader,
    session: Session,
    p: PageParams,
    q: Search = None,
    office_id: int | None = None,
    parent_id: int | None = None,
) -> object:
    rows, total = await service.list_departments(
        session, tenant_id, office_id=office_id, parent_id=parent_id, q=q, limit=p.limit, offset=p.offset
    )
    return _page(s.DepartmentOut, rows, total, p)


@router.get("/tenants/{tenant_id}/departments/{department_id}", response_model=s.DepartmentOut, tags=["departments"])
async def get_department(tenant_id: int, department_id: int, _: TenantReader, session: Session) -> object:
    return await service.get_department(session, tenant_id, department_id)


@router.patch("/tenants/{tenant_id}/departments/{department_id}", response_model=s.DepartmentOut, tags=["departments"])
async def update_department(
    tenant_id: int, department_id: int, body: s.DepartmentUpdate, _: TenantAdmin, session: Session
) -> object:
    dept = await service.update_department(session, tenant_id, department_id, body)
    await session.commit()
    return dept


@router.delete("/tenants/{tenant_id}/departments/{department_id}", status_code=204, tags=["departments"])
async def delete_department(tenant_id: int, department_id: int, _: TenantAdmin, session: Session) -> Response:
    await service.delete_department(session, tenant_id, department_id)
    await session.commit()
    return _no_content()


# --- employees -------------------------------------------------------------------------------------
@router.post("/tenants/{tenant_id}/employees", response_model=s.EmployeeOut, status_code=201, tags=["employees"])
async def create_employee(tenant_id: int, body: s.EmployeeCreate, _: TenantAdmin, session: Session) -> object:
    emp = await service.create_employee(session, tenant_id, body)
    await session.commit()
    return emp


@router.get("/tenants/{tenant_id}/employees", response_model=s.Page[s.EmployeeOut], tags=["employees"])
async def list_employees(
    tenant_id: int,
    _: TenantReader,
    session: Session,
    p: PageParams,
    q: Search = None,
    office_id: int | None = None,
    department_id: int | None = None,
    active: bool | None = None,
) -> object:
    rows, total = await service.list_employees(
        session, tenant_id, office_id=office_id, department_id=department_id, active=active, q=q,
        limit=p.limit, offset=p.offset,
    )
    return _page(s.EmployeeOut, rows, total, p)


@router.get("/tenants/{tenant_id}/employees/{employee_id}", response_model=s.EmployeeOut, tags=["employees"])
async def get_employee(tenant_id: int, employee_id: int, _: TenantReader, session: Session) -> object:
    return await service.get_employee(session, tenant_id, employee_id)


@router.patch("/tenants/{tenant_id}/employees/{employee_id}", response_model=s.EmployeeOut, tags=["employees"])
async def update_employee(
    tenant_id: int, employee_id: int, body: s.EmployeeUpdate, _: TenantAdmin, session: Session
) -> object:
    emp = await service.update_employee(session, tenant_id, employee_id, body)
    await session.commit()
    return emp


@router.delete("/tenants/{tenant_id}/employees/{employee_id}", status_code=204, tags=["employees"])
async def delete_employee(tenant_id: int, employee_id: int, _: TenantAdmin, session: Session) -> Response:
    await service.delete_employee(session, tenant_id, employee_id)
    await session.commit()
    return _no_content()


# --- extensions ------------------------------------------------------------------------------------
@router.post("/tenants/{tenant_id}/extensions", response_model=s.ExtensionCreated, status_code=201, tags=["extensions"])
async def create_extension(tenant_id: int, body: s.ExtensionCreate, _: TenantAdmin, session: Session) -> object:
    ext, generated = await service.create_extension(session, tenant_id, body)
    await session.commit()
    out = s.ExtensionCreated.model_validate(ext)
    return out.model_copy(update={"sip_password": generated})


@router.get("/tenants/{tenant_id}/extensions", response_model=s.Page[s.ExtensionOut], tags=["extensions"])
async def list_extensions(
    tenant_id: int,
    _: TenantReader,
    session: Session,
    p: PageParams,
    q: Search = None,
    office_id: int | None = None,
    employee_id: int | None = None,
    enabled: bool | None = None,
) -> object:
    rows, total = await service.list_extensions(
        session, tenant_id, office_id=office_id, employee_id=employee_id, enabled=enabled, q=q,
        limit=p.limit, offset=p.offset,
    )
    return _page(s.ExtensionOut, rows, total, p)


@router.get("/tenants/{tenant_id}/extensions/{extension_id}", response_model=s.ExtensionOut, tags=["extensions"])
async def get_extension(tenant_id: int, extension_id: int, _: TenantReader, session: Session) -> object:
    return await service.get_extension(session, tenant_id, extension_id)


@router.patch("/tenants/{tenant_id}/extensions/{extension_id}", response_model=s.ExtensionOut, tags=["extensions"])
async def update_extension(
    tenant_id: int, extension_id: int, body: s.ExtensionUpdate, who: TenantReader, session: Session
) -> object:
    if not who.may_administer(tenant_id):
        # An employee may only set the SIP password of an extension assigned to them.
        ext = await service.get_extension(session, tenant_id, extension_id)
        own = who.employee_id is not None and ext.employee_id == who.employee_id
        if not own or body.model_fields_set - {"sip_password"}:
            raise HTTPException(403, "employees may only change the SIP password of their own extension")
    ext = await service.update_extension(session, tenant_id, extension_id, body)
    await session.commit()
    return ext


@router.delete("/tenants/{tenant_id}/extensions/{extension_id}", status_code=204, tags=["extensions"])
async def delete_extension(tenant_id: int, extension_id: int, _: TenantAdmin, session: Session) -> Response:
    await service.delete_extension(session, tenant_id, extension_id)
    await session.commit()
    return _no_content()


# --- call forwarding and DND (an employee: their own extensions only) -----------------------------------
async def _own_or_admin(who: Principal, session: AsyncSession, tenant_id: int, extension_id: int) -> None:
    if who.may_administer(tenant_id):
        return
    ext = await service.get_extension(session, tenant_id, extension_id)
    if who.employee_id is None or ext.employee_id != who.employee_id:
        raise HTTPException(403, "employees may only see and change the forwarding of their own extension")


@router.get("/tenants/{tenant_id}/extensions/{extension_id}/forwarding", response_model=forwarding.ForwardingOut,
            tags=["extensions"])
async def get_forwarding(tenant_id: int, extension_id: int, who: TenantReader, session: Session) -> object:
    await _own_or_admin(who, session, tenant_id, extension_id)
    return await forwarding.get_forwarding(session, tenant_id, extension_id)


@router.put("/tenants/{tenant_id}/extensions/{extension_id}/forwarding", response_model=forwarding.ForwardingOut,
            tags=["extensions"])
async def put_forwarding(tenant_id: int, extension_id: int, body: forwarding.ForwardingIn, who: TenantReader,
                         session: Session) -> object:
    await _own_or_admin(who, session, tenant_id, extension_id)
    out = await forwarding.put_forwarding(session, tenant_id, extension_id, body)
    await session.commit()
    return out


# --- API tokens ------------------------------------------------------------------------------------
@router.post("/tenants/{tenant_id}/tokens", response_model=s.TokenCreated, status_code=201, tags=["tokens"])
async def create_token(tenant_id: int, body: s.TokenCreate, who: TenantAdmin, session: Session) -> object:
    created = await accounts.create_api_token(session, tenant_id, body.name, Role(body.role), account_id=who.owner_id)
    await session.commit()
    return s.TokenCreated(**s.TokenOut.model_validate(created.token).model_dump(), token=created.secret)


@router.get("/tenants/{tenant_id}/tokens", response_model=s.Page[s.TokenOut], tags=["tokens"])
async def list_tokens(tenant_id: int, _: TenantAdmin, session: Session, p: PageParams) -> object:
    rows, total = await accounts.list_api_tokens(session, tenant_id, limit=p.limit, offset=p.offset)
    return _page(s.TokenOut, rows, total, p)


@router.delete("/tenants/{tenant_id}/tokens/{token_id}", status_code=204, tags=["tokens"])
async def revoke_token(tenant_id: int, token_id: int, _: TenantAdmin, session: Session) -> Response:
    await accounts.revoke_api_token(session, tenant_id, token_id)
    await session.commit()
    return _no_content()
