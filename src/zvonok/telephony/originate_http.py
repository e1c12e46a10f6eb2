"""REST of originated calls (telephony/originate.py): the PBX rings an employee's phone, then dials.

* ``POST /api/v1/calls/originate`` ``{"extension": "101", "to": "+74951234567" | "102"}`` — 202 with the
  call's id; a tenant admin may originate for any extension of their tenant, an employee only for their
  own (403 otherwise); an extension the tenant does not have (another tenant's) is 404, a number that
  cannot be dialed 422 (a message says why), one the employee's calling permissions forbid 403, an
  extension with no registered phone 409 (``reason: not_registered``), a company at its originate limits
  (``originate_max_active`` in progress, ``originate_per_minute`` started) 429 with ``Retry-After``.
* ``GET /api/v1/calls/originate/{call_id}`` — how it goes: ``phase`` (``ringing_employee``, ``dialing``,
  ``connected``, ``ended``, ``failed``) and ``reason`` when it failed (``employee_no_answer`` …; a call a
  stopped server left unfinished: ``server_restarted``). Read from ``originate_requests``
  (zvonok.originates, kept ``originate_keep_days``), so it answers after a restart and on any node; this
  process's own calls answer from memory first (fresher than the last write).
* ``POST /api/v1/tenants/{t}/crm/clients/{id}/call`` ``{"phone_id": 5}`` or ``{"number": "+7…"}`` (one
  of the client's numbers; neither: the first) — click-to-call from the CRM, from the caller's own
  extension (the account's employee's first enabled extension; none: 409). The CDR's callee is the
  client's number, so the call is on the client's timeline.

The tenant is the token's own (a platform admin has none here: 403). The calls are placed by the running
call engine (``app.state.originator``): an API-only process answers 503 to a POST (the status it reads
from the table).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import CurrentPrincipal, Principal, TenantReader
from zvonok.api.deps import get_session
from zvonok.crm.models import CrmPhone
from zvonok.crm.service import get_client
from zvonok.org.models import Extension, Role
from zvonok.originates import store
from zvonok.originates.models import OriginateRequest

from .originate import Originate, OriginateRefused, Originator

router = APIRouter(tags=["calls"])
Session = Annotated[AsyncSession, Depends(get_session)]


class OriginateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    extension: str = Field(min_length=1, max_length=8, pattern=r"^[0-9]+$")
    to: str = Field(min_length=1, max_length=32)


class ClientCallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone_id: int | None = None
    number: str | None = Field(default=None, max_length=32)


class OriginateOut(BaseModel):
    call_id: str
    extension: str
    to: str
    phase: str
    reason: str | None = None


def _out(session: Originate) -> OriginateOut:
    return OriginateOut(call_id=session.call_id, extension=session.extension.number, to=session.target.number,
                        phase=session.phase.value, reason=session.reason)


def _row_out(row: OriginateRequest) -> OriginateOut:
    return OriginateOut(call_id=row.call_id, extension=row.extension, to=row.to_number, phase=row.phase,
                        reason=row.reason)


def requester(principal: Principal) -> str:
    """Who asked, for the journal: the account, else the API token."""
    return f"account:{principal.account_id}" if principal.account_id is not None else \
        f"token:{principal.token_id}" if principal.token_id is not None else ""


def _originator(request: Request) -> Originator:
    originator: Originator | None = getattr(request.app.state, "originator", None)
    if originator is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no call engine in this process")
    return originator


def refused(exc: OriginateRefused) -> JSONResponse:
    """The REST answer to a refused originate (also monitoring's): status, message, stable reason."""
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after is not None else None
    return JSONResponse({"detail": str(exc), "reason": exc.reason}, status_code=exc.status, headers=headers)


def _tenant_of(principal: Principal) -> int:
    if principal.tenant_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a platform account places no company's calls")
    return principal.tenant_id


async def _start(originator: Originator, tenant_id: int, extension: str, to: str, requested_by: str) -> object:
    try:
        session = await originator.start(tenant_id, extension, to, requested_by=requested_by)
    except OriginateRefused as exc:
        return refused(exc)
    return JSONResponse(_out(session).model_dump(), status_code=status.HTTP_202_ACCEPTED)


@router.post("/api/v1/calls/originate", status_code=202, response_model=OriginateOut,
             responses={403: {"description": "another employee's extension, or not allowed to dial the number"},
                        404: {"description": "no such extension in the company"},
                        409: {"description": "the extension has no registered phone"},
                        422: {"description": "a number that cannot be dialed"},
                        429: {"description": "the company is at its originate limits"}})
async def originate(body: OriginateIn, principal: CurrentPrincipal, request: Request) -> object:
    """Ring the employee's phone; when they answer, dial ``to`` and connect them."""
    tenant_id = _tenant_of(principal)
    originator = _originator(request)
    ext = await originator.engine.directory.extension(tenant_id, body.extension)
    if ext is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"extension {body.extension} not found")
    if principal.role is Role.EMPLOYEE and (principal.employee_id is None or ext.employee_id != principal.employee_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "an employee places calls from their own extension only")
    return await _start(originator, tenant_id, body.extension, body.to, requester(principal))


@router.get("/api/v1/calls/originate/{call_id}", response_model=OriginateOut)
async def originate_status(call_id: str, principal: CurrentPrincipal, request: Request,
                           session: Session) -> OriginateOut:
    """How an originated call goes (kept ``originate_keep_days``, also across restarts)."""
    tenant_id = _tenant_of(principal)
    originator: Originator | None = getattr(request.app.state, "originator", None)
    live = originator.status(tenant_id, call_id) if originator is not None else None
    employee_id: int | None = None
    out: OriginateOut | None = None
    if live is not None:
        employee_id, out = live.extension.employee_id, _out(live)
    elif (row := await store.find(session, tenant_id, call_id[:64])) is not None:
        employee_id, out = row.employee_id, _row_out(row)
    if out is None or (principal.role is Role.EMPLOYEE
                       and (principal.employee_id is None or employee_id != principal.employee_id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"originated call {call_id} not found")
    return out


async def call_client(session: AsyncSession, originator: Originator, tenant_id: int, employee_id: int | None,
                      client_id: int, *, phone_id: int | None = None, number: str | None = None,
                      requested_by: str = "") -> Originate:
    """Click-to-call (the REST route and the console's button): ring ``employee_id``'s own extension, then
    one of the client's numbers (``phone_id``, ``number``, else the first). A missing client raises the
    CRM's not-found error; the rest :class:`OriginateRefused`."""
    await get_client(session, tenant_id, client_id)  # a missing (or another tenant's) client: not found
    phones = list((await session.execute(
        select(CrmPhone).where(CrmPhone.tenant_id == tenant_id, CrmPhone.client_id == client_id)
        .order_by(CrmPhone.id))).scalars())
    if phone_id is not None:
        chosen = next((p for p in phones if p.id == phone_id), None)
    elif number is not None:
        chosen = next((p for p in phones if p.number == number.strip()), None)
    else:
        chosen = phones[0] if phones else None
    if chosen is None:
        raise OriginateRefused(422, "not_client_number", "not a number of this client")
    extension = None
    if employee_id is not None:
        extension = (await session.execute(
            select(Extension.number).where(Extension.tenant_id == tenant_id, Extension.employee_id == employee_id,
                                           Extension.enabled.is_(True))
            .order_by(Extension.number).limit(1))).scalar_one_or_none()
    if extension is None:
        raise OriginateRefused(409, "no_extension", "your account has no extension to call from")
    return await originator.start(tenant_id, extension, chosen.number, requested_by=requested_by,
                                  client_id=client_id)


@router.post("/api/v1/tenants/{tenant_id}/crm/clients/{client_id}/call", status_code=202,
             response_model=OriginateOut,
             responses={409: {"description": "no extension of yours, or it has no registered phone"},
                        422: {"description": "not a number of this client"}})
async def call_client_route(tenant_id: int, client_id: int, body: ClientCallIn, principal: TenantReader,
                            session: Session, request: Request) -> object:
    """Click-to-call: your phone rings, then the client's number is dialed."""
    await get_client(session, tenant_id, client_id)  # another tenant's client: 404 before anything else
    originator = _originator(request)
    employee_id = principal.employee_id if principal.tenant_id == tenant_id else None
    try:
        found = await call_client(session, originator, tenant_id, employee_id, client_id,
                                  phone_id=body.phone_id, number=body.number, requested_by=requester(principal))
    except OriginateRefused as exc:
        return refused(exc)
    return JSONResponse(_out(found).model_dump(), status_code=status.HTTP_202_ACCEPTED)
