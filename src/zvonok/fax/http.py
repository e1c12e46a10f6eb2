"""Thin REST routes of fax documents.

``/api/v1/tenants/{tenant_id}/faxes`` (GET: received and sent faxes, newest first, ``?direction=in|out``),
``.../faxes/{fax_id}`` (GET) and ``.../faxes/{fax_id}.pdf`` (the pages as PDF). Faxes are the company's
documents: a tenant admin's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import TenantAdmin
from zvonok.api.deps import Paging, get_session, paging
from zvonok.config import Settings
from zvonok.org.errors import NotFound
from zvonok.org.schemas import Page

from . import service
from .models import FaxDocument
from .schemas import FaxOut

router = APIRouter(prefix="/api/v1", tags=["fax"])
Session = Annotated[AsyncSession, Depends(get_session)]
PageParams = Annotated[Paging, Depends(paging)]


def files_of(request: Request) -> service.FaxFiles:
    settings: Settings = request.app.state.settings
    return service.FaxFiles((settings.data_dir / "fax").resolve())


def fax_out(row: FaxDocument) -> FaxOut:
    return FaxOut(
        id=row.id,
        tenant_id=row.tenant_id,
        direction=row.direction,
        status=row.status,
        remote_number=row.remote_number,
        local_number=row.local_number,
        remote_ident=row.remote_ident,
        pages=row.pages,
        result=row.result,
        call_id=row.call_id,
        attempts=row.attempts,
        created_at=row.created_at,
        finished_at=row.finished_at,
        has_pdf=bool(row.pdf_path),
    )


@router.get("/tenants/{tenant_id}/faxes", response_model=Page[FaxOut])
async def list_faxes(
    tenant_id: int,
    _: TenantAdmin,
    session: Session,
    p: PageParams,
    direction: Literal["in", "out"] | None = Query(None),
) -> object:
    rows = await service.list_faxes(session, tenant_id, direction=direction, limit=p.limit, offset=p.offset)
    query = select(func.count()).select_from(FaxDocument).where(FaxDocument.tenant_id == tenant_id)
    if direction is not None:
        query = query.where(FaxDocument.direction == direction)
    total = int((await session.execute(query)).scalar_one())
    return Page[FaxOut](items=[fax_out(r) for r in rows], total=total, limit=p.limit, offset=p.offset)


# before /faxes/{fax_id}: that one would take "7.pdf" for an id
@router.get("/tenants/{tenant_id}/faxes/{fax_id}.pdf", response_class=FileResponse)
async def get_fax_pdf(
    tenant_id: int, fax_id: int, _: TenantAdmin, session: Session, request: Request
) -> FileResponse:
    row = await service.get_fax(session, tenant_id, fax_id)
    if not row.pdf_path:
        raise NotFound(f"fax {fax_id} has no pages")
    path = files_of(request).stored(row.pdf_path)
    if not path.is_file():
        raise NotFound(f"fax {fax_id} has no pages")
    return FileResponse(path, media_type="application/pdf", filename=f"fax-{fax_id}.pdf")


@router.get("/tenants/{tenant_id}/faxes/{fax_id}", response_model=FaxOut)
async def get_fax(tenant_id: int, fax_id: int, _: TenantAdmin, session: Session) -> object:
    return fax_out(await service.get_fax(session, tenant_id, fax_id))
