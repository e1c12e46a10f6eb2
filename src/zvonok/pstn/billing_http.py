"""Thin REST routes of the money side: tariffs and their rates (platform admins), a tenant's billing
plan, cost reports and the monthly statement (tenant admins). Included in :data:`zvonok.pstn.http.router`.

Rates are replaced as a whole deck: ``PUT /api/v1/platform/tariffs/{tariff_id}/rates`` with the CSV as
the body (``text/csv``) or as the field ``file`` of a ``multipart/form-data`` upload. A deck with any bad
row answers 422 with every ``{line, message}`` and changes nothing.

Report periods: ``from`` inclusive, ``to`` exclusive; a date or a time without an offset is read in the
tenant's time zone; the default is the current month.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import PlatformAdmin, TenantAdmin, TenantReader
from zvonok.api.deps import Paging, get_session, paging
from zvonok.billing.statement import month_bounds
from zvonok.org import service as org_service
from zvonok.org.schemas import Page
from zvonok.pstn import reports, service
from zvonok.pstn import schemas as s

router = APIRouter()  # paths under /api/v1: zvonok.pstn.http.router includes it with that prefix
Session = Annotated[AsyncSession, Depends(get_session)]
PageParams = Annotated[Paging, Depends(paging)]
# the rate deck is the one upload: zvonok.api.limits.BodyLimit gives this route settings.http_max_upload
RATES_UPLOAD = ("PUT", "/api/v1/platform/tariffs/[^/]+/rates")
_CSV_TYPES = {"", "text/csv", "text/plain", "application/csv", "application/octet-stream", "application/vnd.ms-excel"}


def _page(model: type[BaseModel], rows: Sequence[object], total: int, p: Paging) -> dict[str, object]:
    return {"items": [model.model_validate(r) for r in rows], "total": total, "limit": p.limit, "offset": p.offset}


def _no_content() -> Response:
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _csv(text: str, filename: str) -> Response:
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# --- tariffs and rates -----------------------------------------------------------------------------
async def _tariffs_out(session: AsyncSession, rows: Sequence[Any]) -> list[s.TariffOut]:
    counts = await service.rate_counts(session, [t.id for t in rows])
    return [s.TariffOut.model_validate(t).model_copy(update={"rate_count": counts.get(t.id, 0)}) for t in rows]


@router.get("/platform/tariffs", response_model=Page[s.TariffOut], tags=["tariffs"])
async def list_tariffs(_: PlatformAdmin, session: Session, p: PageParams, tenant_id: int | None = None) -> object:
    rows, total = await service.platform_list_tariffs(session, tenant_id=tenant_id, limit=p.limit, offset=p.offset)
    return {"items": await _tariffs_out(session, rows), "total": total, "limit": p.limit, "offset": p.offset}


@router.post("/platform/tariffs", response_model=s.TariffOut, status_code=201, tags=["tariffs"])
async def create_tariff(body: s.TariffCreate, _: PlatformAdmin, session: Session) -> object:
    tariff = await service.platform_create_tariff(session, body)
    await session.commit()
    return tariff


@router.get("/platform/tariffs/{tariff_id}", response_model=s.TariffOut, tags=["tariffs"])
async def get_tariff(tariff_id: int, _: PlatformAdmin, session: Session) -> object:
    return (await _tariffs_out(session, [await service.platform_get_tariff(session, tariff_id)]))[0]


@router.patch("/platform/tariffs/{tariff_id}", response_model=s.TariffOut, tags=["tariffs"])
async def update_tariff(tariff_id: int, body: s.TariffUpdate, _: PlatformAdmin, session: Session) -> object:
    tariff = await service.platform_update_tariff(session, tariff_id, body)
    await session.commit()
    return (await _tariffs_out(session, [tariff]))[0]


@router.delete("/platform/tariffs/{tariff_id}", status_code=204, tags=["tariffs"])
async def delete_tariff(tariff_id: int, _: PlatformAdmin, session: Session) -> Response:
    await service.platform_delete_tariff(session, tariff_id)
    await session.commit()
    return _no_content()


@router.get("/platform/tariffs/{tariff_id}/rates", response_model=Page[s.RateOut], tags=["tariffs"])
async def list_rates(
    tariff_id: int, _: PlatformAdmin, session: Session, p: PageParams,
    prefix: Annotated[str | None, Query(max_length=16, description="Rates whose prefix starts with this")] = None,
) -> object:
    rows, total = await service.list_rates(session, tariff_id, prefix=prefix, limit=p.limit, offset=p.offset)
    return _page(s.RateOut, rows, total, p)


_RATES_BODY = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string"}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}},
}}}


@router.put("/platform/tariffs/{tariff_id}/rates", response_model=s.RatesImported, tags=["tariffs"],
            openapi_extra=_RATES_BODY,
            responses={422: {"description": "Every bad row: {detail, errors: [{line, message}]}; nothing imported"}})
async def import_rates(tariff_id: int, _: PlatformAdmin, session: Session, request: Request) -> object:
    """Replace all rates of the tariff with a CSV deck (see :mod:`zvonok.billing.rates_csv` for the
    format), in one transaction: a file with any bad row changes nothing."""
    await service.platform_get_tariff(session, tariff_id)
    result = await service.replace_rates(session, tariff_id, await _rates_file(request))
    if not result.ok:
        errors = [{"line": e.line, "message": e.message} for e in result.errors]
        detail = f"{len(errors)} error{'' if len(errors) == 1 else 's'} in the rate file; nothing was imported"
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)
    await session.commit()
    return s.RatesImported(imported=len(result.rates))


async def _rates_file(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media != "multipart/form-data" and media not in _CSV_TYPES:
        raise HTTPException(415, f"send the rates as text/csv or as a multipart/form-data upload, not {media}")
    body = await request.body()  # its size is bounded by the BodyLimit middleware (413)
    return _multipart_file(content_type, body) if media == "multipart/form-data" else body


def _multipart_file(content_type: str, body: bytes) -> bytes:
    """The uploaded file of a multipart/form-data body (field ``file``, else the first file part).
    The stdlib's MIME parser does it: no multipart dependency for one upload route."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise HTTPException(400, "malformed multipart/form-data body")
    parts = [part for part in message.iter_parts() if part.get_filename() is not None
             or part.get_param("name", header="content-disposition") == "file"]
    named = [part for part in parts if part.get_param("name", header="content-disposition") == "file"]
    for part in named or parts:
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            return payload
    raise HTTPException(400, "the multipart/form-data body has no file (send it as the field 'file')")


@router.get("/platform/tariffs/{tariff_id}/rates.csv", response_class=Response, tags=["tariffs"],
            responses={200: {"content": {"text/csv": {}}, "description": "The deck, importable as it is"}})
async def export_rates(tariff_id: int, _: PlatformAdmin, session: Session) -> Response:
    rows = await service.all_rates(session, tariff_id)
    return _csv(reports.rates_csv(rows), f"tariff-{tariff_id}-rates.csv")


# --- billing plan ----------------------------------------------------------------------------------
@router.get("/tenants/{tenant_id}/billing", response_model=s.BillingOut, tags=["billing"])
async def get_billing(tenant_id: int, _: TenantReader, session: Session) -> object:
    return await service.get_billing(session, tenant_id)


@router.put("/tenants/{tenant_id}/billing", response_model=s.BillingOut, tags=["billing"])
async def set_billing(tenant_id: int, body: s.BillingIn, who: TenantReader, session: Session) -> object:
    if not who.is_platform_admin:
        raise HTTPException(403, "only a platform admin may choose a tenant's tariff")
    out = await service.platform_set_billing(session, tenant_id, body.tariff_id)
    await session.commit()
    return out


# --- reports ---------------------------------------------------------------------------------------
GroupBy = Literal["office", "department", "employee", "destination_class", "day"]


async def _tenant_zone(session: AsyncSession, tenant_id: int) -> str:
    return (await org_service.get_tenant(session, tenant_id)).timezone


async def _cost_lines(
    session: AsyncSession, tenant_id: int, from_: datetime | None, to: datetime | None, group_by: str
) -> tuple[datetime, datetime, list[reports.CostLine], reports.CostLine]:
    zone_name = await _tenant_zone(session, tenant_id)
    zone = ZoneInfo(zone_name)
    if from_ is None:
        now = datetime.now(zone)
        start = month_bounds(now.year, now.month, zone_name)[0]
    else:
        start = from_ if from_.tzinfo is not None else from_.replace(tzinfo=zone)
    if to is None:
        local = start.astimezone(zone)
        end = month_bounds(local.year, local.month, zone_name)[1]
    else:
        end = to if to.tzinfo is not None else to.replace(tzinfo=zone)
    lines, total = await reports.cost_lines(session, tenant_id, start=start, end=end, group_by=group_by,
                                            time_zone=zone_name)
    return start, end, lines, total


From = Annotated[datetime | None, Query(alias="from", description="started_at >= from (a date or a time; "
                                         "without an offset: in the tenant's zone). Default: this month's start")]
To = Annotated[datetime | None, Query(description="started_at < to. Default: the end of the month of from")]


@router.get("/tenants/{tenant_id}/reports/costs", response_model=s.CostReport, tags=["reports"])
async def cost_report(
    tenant_id: int, _: TenantAdmin, session: Session, from_: From = None, to: To = None, group_by: GroupBy = "office"
) -> object:
    """Charged calls (billed seconds or a cost) summed per group, with totals."""
    start, end, lines, total = await _cost_lines(session, tenant_id, from_, to, group_by)
    tenant = await org_service.get_tenant(session, tenant_id)
    totals = total.out()
    return s.CostReport(group_by=group_by, start=start, end=end, currency=await reports.tenant_currency(session, tenant),
                        rows=[line.out() for line in lines],
                        totals=s.CostTotals(calls=totals.calls, minutes=totals.minutes, cost=totals.cost))


@router.get("/tenants/{tenant_id}/reports/costs.csv", response_class=Response, tags=["reports"],
            responses={200: {"content": {"text/csv": {}}, "description": "key,name,calls,minutes,cost + a Total row"}})
async def cost_report_csv(
    tenant_id: int, _: TenantAdmin, session: Session, from_: From = None, to: To = None, group_by: GroupBy = "office"
) -> Response:
    _start, _end, lines, total = await _cost_lines(session, tenant_id, from_, to, group_by)
    return _csv(reports.costs_csv(lines, total), f"costs-tenant-{tenant_id}-by-{group_by}.csv")


@router.get("/tenants/{tenant_id}/reports/statement", response_model=s.StatementOut, tags=["reports"])
async def statement(
    tenant_id: int, _: TenantAdmin, session: Session,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    month: Annotated[int | None, Query(ge=1, le=12)] = None,
) -> object:
    """The month's calls, minutes and costs by destination class, and the numbers rented now."""
    local = datetime.now(ZoneInfo(await _tenant_zone(session, tenant_id)))
    return await reports.statement(session, tenant_id, year or local.year, month or local.month)
