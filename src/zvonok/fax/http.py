"""Thin REST routes of fax documents.

``/api/v1/tenants/{tenant_id}/faxes`` (GET: received and sent faxes, newest first, ``?direction=in|out``),
``.../faxes/{fax_id}`` (GET) and ``.../faxes/{fax_id}.pdf`` (the pages as PDF). POST ``.../faxes``
(``multipart/form-data``: ``file``, a PDF, and ``number``, E.164) renders the document to fax pages and
queues it: the server calls the number through the company's trunk (its calling permissions and tariff
apply), tries again on busy / no answer, and the fax's ``status`` goes queued → sending → sent | failed
(a ``FaxFinished`` event on the websocket too). Faxes are the company's documents: a tenant admin's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from zvonok.api.auth import TenantAdmin
from zvonok.api.deps import Paging, get_session, paging
from zvonok.config import Settings
from zvonok.org.errors import NotFound, ValidationError
from zvonok.org.schemas import Page

from . import service
from .models import FaxDocument
from .schemas import FaxOut

router = APIRouter(prefix="/api/v1", tags=["fax"])
# a PDF to send is an upload: zvonok.api.limits.BodyLimit gives it http_max_upload
UPLOAD = ("POST", "/api/v1/tenants/[^/]+/faxes")
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
        transport=row.transport or "audio",
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


@router.post(
    "/tenants/{tenant_id}/faxes",
    response_model=FaxOut,
    status_code=201,
    responses={422: {"description": "Not a PDF the server can render, or not an E.164 number"}},
)
async def send_fax(tenant_id: int, _: TenantAdmin, session: Session, request: Request) -> object:
    """Multipart form: ``file`` (the PDF) and ``number`` (where to, E.164): queued for sending."""
    # the form is read here, after the tenant check: another tenant's URL answers 404 whatever the body
    try:
        async with request.form(max_files=1, max_fields=4) as form:
            upload, number = form.get("file"), form.get("number")
            if not isinstance(upload, UploadFile) or not isinstance(number, str):
                raise ValidationError("a multipart form with 'file' (a PDF) and 'number' (E.164) is expected")
            data = await upload.read(service.MAX_PDF_BYTES + 1)
    except (AssertionError, ValueError, HTTPException) as exc:  # not multipart, or a malformed one
        raise ValidationError(f"a multipart form with 'file' and 'number' is expected: {exc}") from None
    row = await service.queue_send(session, files_of(request), tenant_id, number=number, pdf=data)
    await session.commit()
    return fax_out(row)
