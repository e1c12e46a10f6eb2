"""Thin REST routes of the CDR domain (any role of the tenant may read; an employee sees only the calls
where they were caller or callee, an admin all of the tenant's).

``from`` / ``to`` filter on ``started_at`` (``from`` inclusive, ``to`` exclusive); a time without an
offset is read in the tenant's time zone. ``extension`` matches the caller's or callee's number,
``extension_id`` the caller's or callee's extension.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import Principal, TenantReader
from zvonok.api.deps import Moment, Paging, get_db, get_session, get_settings, paging
from zvonok.cdr import service
from zvonok.cdr.schemas import CSV_COLUMNS, CdrDetail, CdrPage
from zvonok.config import Settings
from zvonok.org.models import Tenant
from zvonok.storage.db import Database
from zvonok.telephony.events import Direction, Disposition

router = APIRouter(prefix="/api/v1/tenants/{tenant_id}", tags=["cdrs"])
Session = Annotated[AsyncSession, Depends(get_session)]
PageParams = Annotated[Paging, Depends(paging)]


def viewer_of(principal: Principal) -> service.Viewer:
    if not principal.is_admin:  # an employee or a supervisor: their own calls
        return service.Viewer.employee(principal.employee_id)
    return service.Viewer.admin()


async def cdr_filter(
    tenant_id: int,
    session: Session,
    from_: Annotated[Moment | None, Query(alias="from", description="started_at >= from (ISO 8601)")] = None,
    to: Annotated[Moment | None, Query(description="started_at < to (ISO 8601)")] = None,
    extension: Annotated[str | None, Query(max_length=64, description="Caller or callee number")] = None,
    extension_id: Annotated[int | None, Query(description="Caller or callee extension id")] = None,
    disposition: Disposition | None = None,
    direction: Direction | None = None,
) -> service.CdrFilter:
    if (from_ is not None and from_.tzinfo is None) or (to is not None and to.tzinfo is None):
        tz = await _tenant_zone(session, tenant_id)
        from_ = from_.replace(tzinfo=tz) if from_ is not None and from_.tzinfo is None else from_
        to = to.replace(tzinfo=tz) if to is not None and to.tzinfo is None else to
    return service.CdrFilter(
        since=from_, until=to, extension=extension, extension_id=extension_id,
        disposition=disposition.value if disposition else None, direction=direction.value if direction else None,
    )


async def _tenant_zone(session: AsyncSession, tenant_id: int) -> ZoneInfo:
    tenant = await session.get(Tenant, tenant_id)
    try:
        return ZoneInfo(tenant.timezone if tenant else "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


Filter = Annotated[service.CdrFilter, Depends(cdr_filter)]


@router.get("/cdrs", response_model=CdrPage)
async def list_cdrs(tenant_id: int, who: TenantReader, session: Session, flt: Filter, p: PageParams) -> object:
    """Call detail records, newest first."""
    rows, total = await service.list_cdrs(session, tenant_id, flt, viewer_of(who), limit=p.limit, offset=p.offset)
    return {"items": rows, "total": total, "limit": p.limit, "offset": p.offset}


@router.get("/cdrs.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "CSV with a header row"}})
async def export_cdrs(
    tenant_id: int, who: TenantReader, flt: Filter, db: Annotated[Database, Depends(get_db)]
) -> StreamingResponse:
    """The same records as ``/cdrs`` (same filters, no paging) as CSV, streamed."""
    return csv_response(db, tenant_id, flt, viewer_of(who), f"cdrs-tenant-{tenant_id}.csv")


def csv_response(db: Database, tenant_id: int, flt: service.CdrFilter, viewer: service.Viewer,
                 filename: str) -> StreamingResponse:
    """The matching CDRs as a streamed CSV download (also the web console's export)."""

    async def rows() -> AsyncIterator[str]:
        buf = io.StringIO()
        out = csv.writer(buf)
        out.writerow(CSV_COLUMNS)
        yield _take(buf)
        # Its own session: the request's is closed once the response starts.
        async with db.session() as session:
            async for batch in service.iter_cdrs(session, tenant_id, flt, viewer):
                for cdr in batch:
                    out.writerow([_csv_cell(getattr(cdr, col)) for col in CSV_COLUMNS])
                yield _take(buf)

    return StreamingResponse(
        rows(), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/cdrs/{cdr_id}", response_model=CdrDetail)
async def get_cdr(tenant_id: int, cdr_id: int, who: TenantReader, session: Session) -> object:
    return await service.get_cdr(session, tenant_id, cdr_id, viewer_of(who))


@router.get("/cdrs/{cdr_id}/recording", response_class=FileResponse,
            responses={200: {"content": {"audio/wav": {}}}, 404: {"description": "No recording"}})
async def get_recording(
    tenant_id: int, cdr_id: int, who: TenantReader, session: Session,
    settings: Annotated[Settings, Depends(get_settings)],
) -> FileResponse:
    """The call's recording (WAV)."""
    cdr = await service.get_cdr(session, tenant_id, cdr_id, viewer_of(who), legs=False)
    path = service.recording_file(settings.data_dir, cdr.recording_path)
    if path is None:
        raise HTTPException(404, f"cdr {cdr_id} has no recording")
    return FileResponse(path, media_type="audio/wav", filename=f"{cdr.call_id}.wav", content_disposition_type="inline")


def _take(buf: io.StringIO) -> str:
    data = buf.getvalue()
    buf.seek(0)
    buf.truncate()
    return data


_PLAIN_NUMBER = re.compile(r"^\+?[0-9]+$")


def _csv_cell(value: Any) -> Any:
    """Cells as text; a caller name such as ``=HYPERLINK(...)`` (caller ID is set by strangers) is
    defused with a leading quote so spreadsheets do not run it. Numbers like +74951234567 stay as they are."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value and value[0] in "=+-@\t\r" and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value
