"""Thin REST routes of the CRM under ``/api/v1/tenants/{tenant_id}/crm``: clients (search with ``q``: a part
of a number or words), their notes, merge and call timeline, the screen-pop card of a number, and the
tenant's custom fields. Any account of the tenant (admin or employee) uses the CRM; defining fields is the
admin's. Another tenant's URLs and ids answer 404 like missing ones; a duplicate number or e-mail 409 with
the client that has it (``client_id``, ``client_name``)."""

from __future__ import annotations

import tempfile
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import Principal, TenantAdmin, TenantReader
from zvonok.api.deps import Paging, get_db, get_session, get_settings, paging
from zvonok.cdr.models import Cdr
from zvonok.cdr.service import recording_file
from zvonok.config import Settings
from zvonok.org.schemas import Page

from . import schemas as s
from . import service, transfer
from .events import Card

router = APIRouter(prefix="/api/v1/tenants/{tenant_id}/crm", tags=["crm"])
Session = Annotated[AsyncSession, Depends(get_session)]
PageParams = Annotated[Paging, Depends(paging)]
Cfg = Annotated[Settings, Depends(get_settings)]
CLIENTS_UPLOAD = ("POST", "/api/v1/tenants/[^/]+/crm/clients/import")  # a larger body: zvonok.api.app
SPOOL_IN_MEMORY = 1 << 20  # an upload past this goes to a temporary file
_CSV_TYPES = ("text/csv", "text/plain", "application/csv", "application/octet-stream")
DUPLICATE: dict[int | str, dict[str, Any]] = {409: {"description": "A number or e-mail is another client's: detail, client_id, client_name"}}


def viewer_of(principal: Principal) -> service.Viewer:
    if not principal.is_admin:  # an employee or a supervisor: their own
        return service.Viewer(all_calls=False, employee_id=principal.employee_id)
    return service.Viewer(all_calls=True)


def _duplicate(exc: service.Duplicate) -> JSONResponse:
    return JSONResponse({"detail": exc.message, "field": exc.field, "client_id": exc.client_id,
                         "client_name": exc.client_name}, status_code=409)


@router.post("/clients", response_model=s.ClientOut, status_code=201, responses=DUPLICATE)
async def create_client(tenant_id: int, body: s.ClientCreate, who: TenantReader, session: Session) -> object:
    try:
        client = await service.create_client(session, tenant_id, body, author_employee_id=who.employee_id)
    except service.Duplicate as exc:
        return _duplicate(exc)
    await session.commit()
    return await service.client_out(session, client)


@router.get("/clients", response_model=Page[s.ClientOut])
async def list_clients(tenant_id: int, _: TenantReader, session: Session, p: PageParams,
                       q: Annotated[str | None, Query(max_length=100, description="A part of a number, or words")] = None,
                       tag: Annotated[str | None, Query(max_length=40)] = None,
                       owner_id: Annotated[int | None, Query()] = None,
                       kind: Literal["person", "company"] | None = None) -> object:
    rows, total = await service.list_clients(session, tenant_id, q=q, tag=tag, owner_id=owner_id, kind=kind,
                                             limit=p.limit, offset=p.offset)
    return {"items": await service.clients_out(session, rows), "total": total, "limit": p.limit, "offset": p.offset}


_IMPORT_BODY = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string"}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}},
}}}


@router.post("/clients/import", response_model=s.ClientsImported, openapi_extra=_IMPORT_BODY,
             responses={422: {"description": "Every bad row: {detail, errors: [{line, message}]}; nothing imported"},
                        415: {"description": "Not text/csv nor a multipart upload"}})
async def import_clients(tenant_id: int, _: TenantAdmin, session: Session, request: Request) -> object:
    """Add clients from a CSV file (columns: :mod:`zvonok.crm.clients_csv`), all or nothing: a file with
    any bad row changes nothing. Rows whose phone or e-mail an existing client has are skipped and listed
    in ``duplicates``."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        await _spool_upload(request, spool)
        result = await transfer.import_clients(session, tenant_id, spool)
    if not result.ok:
        errors = [{"line": e.line, "message": e.message} for e in result.errors]
        count = len(errors) + result.more_errors
        detail = f"{count} error{'' if count == 1 else 's'} in the file; nothing was imported"
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)
    await session.commit()
    return s.ClientsImported(created=result.created, duplicates=[
        s.DuplicateRow(line=d.line, client_id=d.client_id, value=d.value) for d in result.duplicates])


async def _spool_upload(request: Request, spool: Any) -> None:
    """The CSV of a text/csv body or of a multipart upload's ``file`` field into ``spool``, in chunks
    (the body's size is bounded by the BodyLimit middleware: 413)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, "the multipart/form-data body has no file (send it as the field 'file')")
        while chunk := await upload.read(1 << 16):
            spool.write(chunk)
        await form.close()
    elif media in _CSV_TYPES:
        async for chunk in request.stream():
            spool.write(chunk)
    else:
        raise HTTPException(415, f"send the clients as text/csv or as a multipart/form-data upload, not {media}")
    spool.seek(0)


@router.get("/clients.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "Every client, importable as it is"}})
async def export_clients(tenant_id: int, _: TenantAdmin, request: Request) -> Response:
    """Every client with their custom fields as CSV, streamed; cells that a spreadsheet would run as a
    formula start with ``'``."""
    return StreamingResponse(transfer.export_clients(get_db(request), tenant_id), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="clients-{tenant_id}.csv"'})


@router.get("/clients/{client_id}", response_model=s.ClientOut)
async def get_client(tenant_id: int, client_id: int, _: TenantReader, session: Session) -> object:
    return await service.client_out(session, await service.get_client(session, tenant_id, client_id))


@router.patch("/clients/{client_id}", response_model=s.ClientOut, responses=DUPLICATE)
async def update_client(tenant_id: int, client_id: int, body: s.ClientUpdate, _: TenantReader,
                        session: Session) -> object:
    try:
        client = await service.update_client(session, tenant_id, client_id, body)
    except service.Duplicate as exc:
        return _duplicate(exc)
    await session.commit()
    return await service.client_out(session, client)


@router.delete("/clients/{client_id}", status_code=204)
async def delete_client(tenant_id: int, client_id: int, _: TenantReader, session: Session) -> Response:
    await service.delete_client(session, tenant_id, client_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/clients/{client_id}/merge", response_model=s.ClientOut)
async def merge_clients(tenant_id: int, client_id: int, body: s.MergeIn, _: TenantReader, session: Session) -> object:
    client = await service.merge_clients(session, tenant_id, client_id, body.source_id)
    await session.commit()
    return await service.client_out(session, client)


@router.get("/clients/{client_id}/notes", response_model=list[s.NoteOut])
async def list_notes(tenant_id: int, client_id: int, _: TenantReader, session: Session) -> object:
    return [s.NoteOut(id=n.id, text=n.text, author_employee_id=n.author_employee_id, created_at=n.created_at)
            for n in await service.list_notes(session, tenant_id, client_id)]


@router.post("/clients/{client_id}/notes", response_model=s.NoteOut, status_code=201)
async def add_note(tenant_id: int, client_id: int, body: s.NoteIn, who: TenantReader, session: Session) -> object:
    note = await service.add_note(session, tenant_id, client_id, body.text, author_employee_id=who.employee_id)
    await session.commit()
    return s.NoteOut(id=note.id, text=note.text, author_employee_id=note.author_employee_id, created_at=note.created_at)


@router.get("/clients/{client_id}/calls", response_model=Page[s.CallOut])
async def client_calls(tenant_id: int, client_id: int, who: TenantReader, session: Session, p: PageParams,
                       settings: Cfg) -> object:
    """Every call from or to one of the client's numbers (also before the client was created), newest
    first; ``detail_url``/``recording_url`` are the console's, for a viewer who may open the call."""

    def recorded(cdr: Cdr) -> bool:
        return recording_file(settings.data_dir, cdr.recording_path) is not None

    rows, total = await service.timeline(session, tenant_id, client_id, viewer_of(who), has_recording=recorded,
                                         limit=p.limit, offset=p.offset)
    return {"items": rows, "total": total, "limit": p.limit, "offset": p.offset}


@router.get("/card")
async def screen_card(tenant_id: int, _: TenantReader, session: Session,
                      number: Annotated[str, Query(min_length=1, max_length=40)]) -> Card:
    """The screen-pop card of ``number``: its client with the last 5 calls, or a new lead's number."""
    return await service.card_for(session, tenant_id, number.strip())


@router.get("/fields", response_model=list[s.FieldOut])
async def list_fields(tenant_id: int, _: TenantReader, session: Session) -> object:
    return await service.list_fields(session, tenant_id, None)


@router.post("/fields", response_model=s.FieldOut, status_code=201)
async def create_field(tenant_id: int, body: s.FieldCreate, _: TenantAdmin, session: Session) -> object:
    row = await service.create_field(session, tenant_id, body)
    await session.commit()
    return row


@router.delete("/fields/{field_id}", status_code=204)
async def delete_field(tenant_id: int, field_id: int, _: TenantAdmin, session: Session) -> Response:
    await service.delete_field(session, tenant_id, field_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


from .mail_http import router as mail_router  # noqa: E402 - after the clients' routes, under the same prefix
from .payment_hook_http import public_router  # noqa: E402
from .payment_hook_http import router as payment_hook_router  # noqa: E402
from .sales_http import router as sales_router  # noqa: E402

router.include_router(sales_router)
router.include_router(mail_router)
router.include_router(payment_hook_router)
hooks_router = public_router  # the payment provider's URL, outside the tenant's prefix: the app includes it too
