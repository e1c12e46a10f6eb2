"""Thin REST routes of the outside world: check access, call the service, commit, shape the answer.

Tenant URLs (``/api/v1/tenants/{tenant_id}/...``) need :data:`TenantAdmin`, reads too: trunks (carrier
hosts, usernames), numbers, routes and policies are the company's configuration, not an employee's
business (least privilege; tests/unit/test_api_roles.py holds the table per route); another tenant's
objects answer 404 exactly like missing ones. Platform URLs
(``/api/v1/platform/...``: the operator's trunks and routes, the number pool, tariffs) need a platform
admin. Exceptions, each said where it applies: a number's ``monthly_fee``/``enabled`` and a tenant's
billing plan are the platform admin's; an employee may set their own PIN; cost reports are for admins.

Trunk status comes from the running call engine through ``app.state.trunk_status`` (see
:class:`TrunkStatusProvider`); the composition root sets it, an API-only process answers 503.

Policies have one URL per level: ``.../policies/tenant``, ``.../policies/office/{office_id}``,
``.../policies/department/{department_id}``, ``.../policies/employee/{employee_id}`` (GET, PUT = create
or replace, DELETE). Tariffs, rates, billing plans and reports are in :mod:`zvonok.pstn.billing_http`,
included in :data:`router`: mounting ``router`` mounts the whole outside-world API.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Mapping, Sequence
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import PlatformAdmin, Principal, TenantAdmin, TenantReader
from zvonok.api.deps import Paging, get_session, paging
from zvonok.org import service as org_service
from zvonok.org.models import Role
from zvonok.org.schemas import Page
from zvonok.pstn import billing_http, policies, service
from zvonok.pstn import schemas as s

router = APIRouter(prefix="/api/v1")
Session = Annotated[AsyncSession, Depends(get_session)]
PageParams = Annotated[Paging, Depends(paging)]


class TrunkStatusProvider(Protocol):
    """What ``app.state.trunk_status`` must be for ``GET .../trunks/{trunk_id}/status``.

    Called with the id of a trunk the caller may see (already checked), it returns the engine's view of
    it: a mapping with ``registered`` (bool; None when the trunk does not register), ``last_error``
    (str or None), ``active_calls`` (int) and any other facts worth showing (never the password) — or
    None when the engine has not loaded that trunk (disabled, or not reloaded yet). It may be a
    coroutine function. Unset or None: the route answers 503 "status unavailable".
    """

    def __call__(self, trunk_id: int) -> Mapping[str, Any] | None | Awaitable[Mapping[str, Any] | None]: ...


def _no_content() -> Response:
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _page(model: type[BaseModel], rows: Sequence[object], total: int, p: Paging) -> dict[str, object]:
    return {"items": [model.model_validate(r) for r in rows], "total": total, "limit": p.limit, "offset": p.offset}


# --- trunks ----------------------------------------------------------------------------------------
async def _trunk_status(request: Request, trunk_id: int) -> s.TrunkStatus:
    provider: TrunkStatusProvider | None = getattr(request.app.state, "trunk_status", None)
    if provider is None:
        raise HTTPException(503, "status unavailable: no call engine runs in this process")
    found = provider(trunk_id)
    facts = await found if inspect.isawaitable(found) else found
    if facts is None:
        return s.TrunkStatus(trunk_id=trunk_id, loaded=False)
    return s.TrunkStatus.model_validate({"loaded": True, **facts, "trunk_id": trunk_id})


@router.get("/tenants/{tenant_id}/trunks", response_model=Page[s.TrunkOut], tags=["trunks"])
async def list_trunks(tenant_id: int, _: TenantAdmin, session: Session, p: PageParams) -> object:
    rows, total = await service.list_trunks(session, tenant_id, limit=p.limit, offset=p.offset)
    return _page(s.TrunkOut, rows, total, p)


@router.post("/tenants/{tenant_id}/trunks", response_model=s.TrunkOut, status_code=201, tags=["trunks"])
async def create_trunk(tenant_id: int, body: s.TrunkCreate, who: TenantAdmin, session: Session) -> object:
    trunk = await service.create_trunk(session, tenant_id, body, platform_admin=who.is_platform_admin)
    await session.commit()
    return trunk


@router.get("/tenants/{tenant_id}/trunks/{trunk_id}", response_model=s.TrunkOut, tags=["trunks"])
async def get_trunk(tenant_id: int, trunk_id: int, _: TenantAdmin, session: Session) -> object:
    return await service.get_trunk(session, tenant_id, trunk_id)


@router.patch("/tenants/{tenant_id}/trunks/{trunk_id}", response_model=s.TrunkOut, tags=["trunks"])
async def update_trunk(tenant_id: int, trunk_id: int, body: s.TrunkUpdate, who: TenantAdmin,
                       session: Session) -> object:
    trunk = await service.update_trunk(session, tenant_id, trunk_id, body, platform_admin=who.is_platform_admin)
    await session.commit()
    return trunk


@router.delete("/tenants/{tenant_id}/trunks/{trunk_id}", status_code=204, tags=["trunks"])
async def delete_trunk(tenant_id: int, trunk_id: int, _: TenantAdmin, session: Session) -> Response:
    await service.delete_trunk(session, tenant_id, trunk_id)
    await session.commit()
    return _no_content()


@router.get("/tenants/{tenant_id}/trunks/{trunk_id}/status", response_model=s.TrunkStatus, tags=["trunks"])
async def trunk_status(tenant_id: int, trunk_id: int, _: TenantAdmin, session: Session, request: Request) -> object:
    await service.get_trunk(session, tenant_id, trunk_id)
    return await _trunk_status(request, trunk_id)


@router.get("/platform/trunks", response_model=Page[s.TrunkOut], tags=["platform"])
async def list_platform_trunks(_: PlatformAdmin, session: Session, p: PageParams) -> object:
    rows, total = await service.list_trunks(session, None, limit=p.limit, offset=p.offset)
    return _page(s.TrunkOut, rows, total, p)


@router.post("/platform/trunks", response_model=s.TrunkOut, status_code=201, tags=["platform"])
async def create_platform_trunk(body: s.TrunkCreate, _: PlatformAdmin, session: Session) -> object:
    trunk = await service.create_trunk(session, None, body)
    await session.commit()
    return trunk


@router.get("/platform/trunks/{trunk_id}", response_model=s.TrunkOut, tags=["platform"])
async def get_platform_trunk(trunk_id: int, _: PlatformAdmin, session: Session) -> object:
    return await service.get_trunk(session, None, trunk_id)


@router.patch("/platform/trunks/{trunk_id}", response_model=s.TrunkOut, tags=["platform"])
async def update_platform_trunk(trunk_id: int, body: s.TrunkUpdate, _: PlatformAdmin, session: Session) -> object:
    trunk = await service.update_trunk(session, None, trunk_id, body)
    await session.commit()
    return trunk


@router.delete("/platform/trunks/{trunk_id}", status_code=204, tags=["platform"])
async def delete_platform_trunk(trunk_id: int, _: PlatformAdmin, session: Session) -> Response:
    await service.delete_trunk(session, None, trunk_id)
    await session.commit()
    return _no_content()


@router.get("/platform/trunks/{trunk_id}/status", response_model=s.TrunkStatus, tags=["platform"])
async def platform_trunk_status(trunk_id: int, _: PlatformAdmin, session: Session, request: Request) -> object:
    await service.get_trunk(session, None, trunk_id)
    return await _trunk_status(request, trunk_id)


# --- phone numbers ---------------------------------------------------------------------------------
@router.post("/platform/numbers", response_model=s.NumberOut, status_code=201, tags=["platform"])
async def create_number(body: s.NumberCreate, _: PlatformAdmin, session: Session) -> object:
    number = await service.platform_create_number(session, body)
    await session.commit()
    return number


@router.get("/platform/numbers", response_model=Page[s.NumberOut], tags=["platform"])
async def list_pool(
    _: PlatformAdmin, session: Session, p: PageParams,
    free: Annotated[bool | None, Query(description="true: not assigned; false: assigned")] = None,
    tenant_id: int | None = None, q: Annotated[str | None, Query(max_length=32)] = None,
) -> object:
    rows, total = await service.platform_list_numbers(session, free=free, tenant_id=tenant_id, q=q,
                                                      limit=p.limit, offset=p.offset)
    return _page(s.NumberOut, rows, total, p)


@router.get("/platform/numbers/{number_id}", response_model=s.NumberOut, tags=["platform"])
async def get_pool_number(number_id: int, _: PlatformAdmin, session: Session) -> object:
    return await service.platform_get_number(session, number_id)


@router.patch("/platform/numbers/{number_id}", response_model=s.NumberOut, tags=["platform"])
async def update_pool_number(number_id: int, body: s.NumberPoolUpdate, _: PlatformAdmin, session: Session) -> object:
    number = await service.platform_update_number(session, number_id, body)
    await session.commit()
    return number


@router.delete("/platform/numbers/{number_id}", status_code=204, tags=["platform"])
async def delete_pool_number(number_id: int, _: PlatformAdmin, session: Session) -> Response:
    await service.platform_delete_number(session, number_id)
    await session.commit()
    return _no_content()


@router.post("/platform/numbers/{number_id}/assign", response_model=s.NumberOut, tags=["platform"])
async def assign_number(number_id: int, body: s.NumberAssign, _: PlatformAdmin, session: Session) -> object:
    number = await service.platform_assign_number(session, number_id, body.tenant_id)
    await session.commit()
    return number


@router.post("/platform/numbers/{number_id}/release", response_model=s.NumberOut, tags=["platform"])
async def release_number(number_id: int, _: PlatformAdmin, session: Session) -> object:
    number = await service.platform_release_number(session, number_id)
    await session.commit()
    return number


@router.get("/tenants/{tenant_id}/numbers", response_model=Page[s.NumberOut], tags=["numbers"])
async def list_numbers(
    tenant_id: int, _: TenantAdmin, session: Session, p: PageParams, office_id: int | None = None
) -> object:
    rows, total = await service.list_numbers(session, tenant_id, office_id=office_id, limit=p.limit, offset=p.offset)
    return _page(s.NumberOut, rows, total, p)


@router.get("/tenants/{tenant_id}/numbers/{number_id}", response_model=s.NumberOut, tags=["numbers"])
async def get_number(tenant_id: int, number_id: int, _: TenantAdmin, session: Session) -> object:
    return await service.get_number(session, tenant_id, number_id)


@router.patch("/tenants/{tenant_id}/numbers/{number_id}", response_model=s.NumberOut, tags=["numbers"])
async def update_number(
    tenant_id: int, number_id: int, body: s.NumberUpdate, who: TenantAdmin, session: Session
) -> object:
    platform_only = {"monthly_fee", "enabled"} & body.model_fields_set
    if platform_only and not who.is_platform_admin:
        raise HTTPException(403, f"{', '.join(sorted(platform_only))}: only a platform admin may change this")
    number = await service.update_number(session, tenant_id, number_id, body)
    await session.commit()
    return number


# --- outbound routes -------------------------------------------------------------------------------
@router.get("/tenants/{tenant_id}/routes", response_model=Page[s.RouteOut], tags=["routes"])
async def list_routes(tenant_id: int, _: TenantAdmin, session: Session, p: PageParams) -> object:
    rows, total = await service.list_routes(session, tenant_id, limit=p.limit, offset=p.offset)
    return _page(s.RouteOut, rows, total, p)


@router.post("/tenants/{tenant_id}/routes", response_model=s.RouteOut, status_code=201, tags=["routes"])
async def create_route(tenant_id: int, body: s.RouteCreate, _: TenantAdmin, session: Session) -> object:
    route = await service.create_route(session, tenant_id, body)
    await session.commit()
    return route


@router.get("/tenants/{tenant_id}/routes/{route_id}", response_model=s.RouteOut, tags=["routes"])
async def get_route(tenant_id: int, route_id: int, _: TenantAdmin, session: Session) -> object:
    return await service.get_route(session, tenant_id, route_id)


@router.patch("/tenants/{tenant_id}/routes/{route_id}", response_model=s.RouteOut, tags=["routes"])
async def update_route(tenant_id: int, route_id: int, body: s.RouteUpdate, _: TenantAdmin, session: Session) -> object:
    route = await service.update_route(session, tenant_id, route_id, body)
    await session.commit()
    return route


@router.delete("/tenants/{tenant_id}/routes/{route_id}", status_code=204, tags=["routes"])
async def delete_route(tenant_id: int, route_id: int, _: TenantAdmin, session: Session) -> Response:
    await service.delete_route(session, tenant_id, route_id)
    await session.commit()
    return _no_content()


@router.get("/platform/routes", response_model=Page[s.RouteOut], tags=["platform"])
async def list_platform_routes(_: PlatformAdmin, session: Session, p: PageParams) -> object:
    rows, total = await service.list_routes(session, None, limit=p.limit, offset=p.offset)
    return _page(s.RouteOut, rows, total, p)


@router.post("/platform/routes", response_model=s.RouteOut, status_code=201, tags=["platform"])
async def create_platform_route(body: s.RouteCreate, _: PlatformAdmin, session: Session) -> object:
    route = await service.create_route(session, None, body)
    await session.commit()
    return route


@router.get("/platform/routes/{route_id}", response_model=s.RouteOut, tags=["platform"])
async def get_platform_route(route_id: int, _: PlatformAdmin, session: Session) -> object:
    return await service.get_route(session, None, route_id)


@router.patch("/platform/routes/{route_id}", response_model=s.RouteOut, tags=["platform"])
async def update_platform_route(route_id: int, body: s.RouteUpdate, _: PlatformAdmin, session: Session) -> object:
    route = await service.update_route(session, None, route_id, body)
    await session.commit()
    return route


@router.delete("/platform/routes/{route_id}", status_code=204, tags=["platform"])
async def delete_platform_route(route_id: int, _: PlatformAdmin, session: Session) -> Response:
    await service.delete_route(session, None, route_id)
    await session.commit()
    return _no_content()


# --- outbound policies -----------------------------------------------------------------------------
async def _put_policy(
    session: AsyncSession, response: Response, tenant_id: int, level: str, ref_id: int | None, body: s.PolicyIn
) -> object:
    row, created = await policies.put_policy(session, tenant_id, level, ref_id, body)
    await session.commit()
    response.status_code = 201 if created else 200
    return row


async def _delete_policy(session: AsyncSession, tenant_id: int, level: str, ref_id: int | None) -> Response:
    await policies.delete_policy(session, tenant_id, level, ref_id)
    await session.commit()
    return _no_content()


@router.get("/tenants/{tenant_id}/policies", response_model=Page[s.PolicyOut], tags=["policies"])
async def list_policies(
    tenant_id: int, _: TenantAdmin, session: Session, p: PageParams, level: s.PolicyLevelName | None = None
) -> object:
    rows, total = await policies.list_policies(session, tenant_id, level=level, limit=p.limit, offset=p.offset)
    return _page(s.PolicyOut, rows, total, p)


@router.get("/tenants/{tenant_id}/policies/tenant", response_model=s.PolicyOut, tags=["policies"])
async def get_tenant_policy(tenant_id: int, _: TenantAdmin, session: Session) -> object:
    return await policies.get_policy(session, tenant_id, "tenant", None)


@router.put("/tenants/{tenant_id}/policies/tenant", response_model=s.PolicyOut, tags=["policies"],
            responses={201: {"description": "Created"}})
async def put_tenant_policy(
    tenant_id: int, body: s.PolicyIn, _: TenantAdmin, session: Session, response: Response
) -> object:
    return await _put_policy(session, response, tenant_id, "tenant", None, body)


@router.delete("/tenants/{tenant_id}/policies/tenant", status_code=204, tags=["policies"])
async def delete_tenant_policy(tenant_id: int, _: TenantAdmin, session: Session) -> Response:
    return await _delete_policy(session, tenant_id, "tenant", None)


@router.get("/tenants/{tenant_id}/policies/office/{office_id}", response_model=s.PolicyOut, tags=["policies"])
async def get_office_policy(tenant_id: int, office_id: int, _: TenantAdmin, session: Session) -> object:
    return await policies.get_policy(session, tenant_id, "office", office_id)


@router.put("/tenants/{tenant_id}/policies/office/{office_id}", response_model=s.PolicyOut, tags=["policies"],
            responses={201: {"description": "Created"}})
async def put_office_policy(
    tenant_id: int, office_id: int, body: s.PolicyIn, _: TenantAdmin, session: Session, response: Response
) -> object:
    return await _put_policy(session, response, tenant_id, "office", office_id, body)


@router.delete("/tenants/{tenant_id}/policies/office/{office_id}", status_code=204, tags=["policies"])
async def delete_office_policy(tenant_id: int, office_id: int, _: TenantAdmin, session: Session) -> Response:
    return await _delete_policy(session, tenant_id, "office", office_id)


@router.get("/tenants/{tenant_id}/policies/department/{department_id}", response_model=s.PolicyOut, tags=["policies"])
async def get_department_policy(tenant_id: int, department_id: int, _: TenantAdmin, session: Session) -> object:
    return await policies.get_policy(session, tenant_id, "department", department_id)


@router.put("/tenants/{tenant_id}/policies/department/{department_id}", response_model=s.PolicyOut,
            tags=["policies"], responses={201: {"description": "Created"}})
async def put_department_policy(
    tenant_id: int, department_id: int, body: s.PolicyIn, _: TenantAdmin, session: Session, response: Response
) -> object:
    return await _put_policy(session, response, tenant_id, "department", department_id, body)


@router.delete("/tenants/{tenant_id}/policies/department/{department_id}", status_code=204, tags=["policies"])
async def delete_department_policy(tenant_id: int, department_id: int, _: TenantAdmin, session: Session) -> Response:
    return await _delete_policy(session, tenant_id, "department", department_id)


@router.get("/tenants/{tenant_id}/policies/employee/{employee_id}", response_model=s.PolicyOut, tags=["policies"])
async def get_employee_policy(tenant_id: int, employee_id: int, _: TenantAdmin, session: Session) -> object:
    return await policies.get_policy(session, tenant_id, "employee", employee_id)


@router.put("/tenants/{tenant_id}/policies/employee/{employee_id}", response_model=s.PolicyOut, tags=["policies"],
            responses={201: {"description": "Created"}})
async def put_employee_policy(
    tenant_id: int, employee_id: int, body: s.PolicyIn, _: TenantAdmin, session: Session, response: Response
) -> object:
    return await _put_policy(session, response, tenant_id, "employee", employee_id, body)


@router.delete("/tenants/{tenant_id}/policies/employee/{employee_id}", status_code=204, tags=["policies"])
async def delete_employee_policy(tenant_id: int, employee_id: int, _: TenantAdmin, session: Session) -> Response:
    return await _delete_policy(session, tenant_id, "employee", employee_id)


# --- PINs ------------------------------------------------------------------------------------------
async def pin_keeper(tenant_id: int, employee_id: int, who: TenantReader, session: Session) -> Principal:
    """A tenant admin, or the employee's own login; the employee must be the tenant's (404 first, as a
    dependency, so a body error never tells whether another tenant's employee exists)."""
    await org_service.get_employee(session, tenant_id, employee_id)
    own = who.role in (Role.EMPLOYEE, Role.SUPERVISOR) and who.employee_id is not None and who.employee_id == employee_id
    if not (own or who.may_administer(tenant_id)):
        raise HTTPException(403, "only a tenant admin or the employee themself may manage this PIN")
    return who


PinKeeper = Annotated[Principal, Depends(pin_keeper)]


def _pin_out(tenant_id: int, employee_id: int, row: Any) -> s.PinOut:
    return s.PinOut(tenant_id=tenant_id, employee_id=employee_id, has_pin=row is not None,
                    skip_for_caller_id=bool(row and row.skip_for_caller_id), updated_at=row.updated_at if row else None)


@router.get("/tenants/{tenant_id}/employees/{employee_id}/pin", response_model=s.PinOut, tags=["pins"])
async def get_pin(tenant_id: int, employee_id: int, _: PinKeeper, session: Session) -> object:
    return _pin_out(tenant_id, employee_id, await policies.get_pin(session, tenant_id, employee_id))


@router.put("/tenants/{tenant_id}/employees/{employee_id}/pin", response_model=s.PinOut, tags=["pins"])
async def set_pin(tenant_id: int, employee_id: int, body: s.PinIn, who: PinKeeper, session: Session) -> object:
    if body.skip_for_caller_id is not None and not who.may_administer(tenant_id):
        raise HTTPException(403, "skip_for_caller_id: only an admin may change this")
    row = await policies.set_pin(session, tenant_id, employee_id, body.pin, skip_for_caller_id=body.skip_for_caller_id)
    await session.commit()
    return _pin_out(tenant_id, employee_id, row)


@router.delete("/tenants/{tenant_id}/employees/{employee_id}/pin", status_code=204, tags=["pins"])
async def delete_pin(tenant_id: int, employee_id: int, _: PinKeeper, session: Session) -> Response:
    await policies.delete_pin(session, tenant_id, employee_id)
    await session.commit()
    return _no_content()


# tariffs, rates, billing plans and reports live in their own module; mounted with everything else
router.include_router(billing_http.router)
