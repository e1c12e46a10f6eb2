"""REST routes of the analytics store under ``/api/v1/tenants/{tenant_id}/analytics``, for the company's
admin (an employee gets 403, another tenant 404): start an export (202; 409 while the company's export
runs; 429 with Retry-After within ``analytics_min_interval`` of the last), read the last export's report
and whether one runs, and download the company's DuckDB file (404 before the first export)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from zvonok.api.auth import TenantAdmin
from zvonok.api.deps import get_db, get_settings

from .export import file_of, last_report
from .runner import ExportRunning, Exports, TooSoon

CHUNK = 1 << 20
router = APIRouter(prefix="/api/v1/tenants/{tenant_id}/analytics", tags=["analytics"])


def get_exports(request: Request) -> Exports:
    """The process's exports (``zvonok.server`` makes them at start; an app without them gets its own)."""
    exports: Exports | None = getattr(request.app.state, "analytics", None)
    if exports is None:
        settings = get_settings(request)
        exports = Exports(get_db(request), settings.data_dir / "analytics",
                          min_interval=settings.analytics_min_interval, target=settings.analytics_target)
        request.app.state.analytics = exports
    return exports


Runner = Annotated[Exports, Depends(get_exports)]


class LastExport(BaseModel):
    exported_at: datetime
    seconds: float
    size: int  # bytes of the file
    rows: dict[str, int]  # per table
    mode: str  # "full" or "incremental"
    written: dict[str, int]  # per table: rows this export inserted, changed or removed


class ExportStatus(BaseModel):
    running: bool
    last: LastExport | None  # None: never exported
    error: str | None = None  # the last try's failure, when it failed


async def _status(exports: Exports, tenant_id: int) -> ExportStatus:
    report = await last_report(exports.directory, tenant_id)
    last = None if report is None else LastExport(exported_at=report.exported_at, seconds=report.seconds,
                                                  size=report.size, rows=report.rows, mode=report.mode,
                                                  written=report.written)
    return ExportStatus(running=exports.running(tenant_id), last=last, error=exports.errors.get(tenant_id))


CONFLICTS: dict[int | str, dict[str, Any]] = {
    409: {"description": "The company's export is running"},
    429: {"description": "Too soon after the last on-demand export (Retry-After)"}}


@router.post("/export", response_model=ExportStatus, status_code=status.HTTP_202_ACCEPTED, responses=CONFLICTS)
async def start_analytics_export(tenant_id: int, _: TenantAdmin, exports: Runner, full: bool = False) -> object:
    """Bring the company's analytics file up to date in the background (only what changed since the last
    export; ``full=true``: every row again); GET shows when it is done."""
    try:
        exports.start(tenant_id, full=full)
    except ExportRunning:
        raise HTTPException(status.HTTP_409_CONFLICT, "an analytics export of this company is running") from None
    except TooSoon as exc:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"the last analytics export started less than {int(exports.min_interval)} s ago",
                            headers={"Retry-After": str(exc.retry_after)}) from None
    return await _status(exports, tenant_id)


@router.get("/export", response_model=ExportStatus)
async def get_analytics_export(tenant_id: int, _: TenantAdmin, exports: Runner) -> object:
    """The last export (when, how long, rows per table) and whether one runs now."""
    return await _status(exports, tenant_id)


async def _chunks(handle: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk
    finally:
        handle.close()


@router.get("/export/file", response_class=StreamingResponse,
            responses={200: {"content": {"application/vnd.duckdb": {}}}, 404: {"description": "Never exported"}})
async def download_analytics_export(tenant_id: int, _: TenantAdmin, exports: Runner) -> StreamingResponse:
    """The company's DuckDB file (open it with DuckDB or a BI tool; docs/analytics.md)."""
    return file_response(exports, tenant_id)


def file_response(exports: Exports, tenant_id: int) -> StreamingResponse:
    """The tenant's file as a download (404 before the first export; the console's link too). The file is
    opened first: an export finishing meanwhile renames a new file over the name, this download keeps the
    old one."""
    try:
        handle = file_of(exports.directory, tenant_id).open("rb")
    except FileNotFoundError:
        raise HTTPException(404, "no analytics export yet") from None
    size = os.fstat(handle.fileno()).st_size
    return StreamingResponse(_chunks(handle), media_type="application/vnd.duckdb", headers={
        "Content-Length": str(size), "Content-Disposition": 'attachment; filename="zvonok-analytics.duckdb"'})
