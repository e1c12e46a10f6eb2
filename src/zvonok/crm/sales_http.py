"""REST routes of the sales process under ``/api/v1/tenants/{tenant_id}/crm``: pipelines and stages (the
admin's), deals with their checklist, moves, history and payments, tasks, the CRM settings (admin) and the
dashboard, and the invoices of deals (:mod:`zvonok.crm.invoices`). Any account of the tenant reads; an employee changes the deals they own and the tasks assigned
to them (403 otherwise), an admin everything. A move past a stage whose required fields or steps are
missing answers 422 with ``missing`` (each as "<stage>: <what>"). Another tenant's ids answer 404."""

from __future__ import annotations

import tempfile
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import Principal, TenantAdmin, TenantReader
from zvonok.api.deps import Paging, get_session, paging
from zvonok.org.schemas import Page

from . import dashboard, deals, invoices, payments_csv, tasks
from . import schemas as s

router = APIRouter()
Session = Annotated[AsyncSession, Depends(get_session)]
PageParams = Annotated[Paging, Depends(paging)]
CSV_BODY = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string"}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}},
}}}
SPOOL_IN_MEMORY = 1 << 20
MISSING: dict[int | str, dict[str, Any]] = {
    422: {"description": "Required fields or steps of a stage are missing: detail, missing (a list)"}}


def actor_of(principal: Principal) -> deals.Actor:
    return deals.Actor(admin=principal.is_admin, employee_id=principal.employee_id)


def _missing(exc: deals.StepsMissing) -> JSONResponse:
    return JSONResponse({"detail": exc.message, "missing": exc.missing}, status_code=422)


# --- pipelines -----------------------------------------------------------------------------------------
@router.get("/pipelines", response_model=list[s.PipelineOut])
async def list_pipelines(tenant_id: int, _: TenantReader, session: Session) -> object:
    rows = await deals.list_pipelines(session, tenant_id)
    return [await deals.pipeline_out(session, p) for p in rows]


@router.post("/pipelines", response_model=s.PipelineOut, status_code=201)
async def create_pipeline(tenant_id: int, body: s.PipelineCreate, _: TenantAdmin, session: Session) -> object:
    row = await deals.create_pipeline(session, tenant_id, body)
    await session.commit()
    return await deals.pipeline_out(session, row)


@router.get("/pipelines/{pipeline_id}", response_model=s.PipelineOut)
async def get_pipeline(tenant_id: int, pipeline_id: int, _: TenantReader, session: Session) -> object:
    return await deals.pipeline_out(session, await deals.get_pipeline(session, tenant_id, pipeline_id))


@router.patch("/pipelines/{pipeline_id}", response_model=s.PipelineOut)
async def update_pipeline(tenant_id: int, pipeline_id: int, body: s.PipelineUpdate, _: TenantAdmin,
                          session: Session) -> object:
    row = await deals.update_pipeline(session, tenant_id, pipeline_id, body)
    await session.commit()
    return await deals.pipeline_out(session, row)


@router.delete("/pipelines/{pipeline_id}", status_code=204)
async def delete_pipeline(tenant_id: int, pipeline_id: int, _: TenantAdmin, session: Session) -> Response:
    await deals.delete_pipeline(session, tenant_id, pipeline_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/pipelines/{pipeline_id}/stages", response_model=s.StageOut, status_code=201)
async def add_stage(tenant_id: int, pipeline_id: int, body: s.StageIn, _: TenantAdmin, session: Session) -> object:
    row = await deals.add_stage(session, tenant_id, pipeline_id, body)
    await session.commit()
    return row


@router.patch("/stages/{stage_id}", response_model=s.StageOut)
async def update_stage(tenant_id: int, stage_id: int, body: s.StageUpdate, _: TenantAdmin, session: Session) -> object:
    row = await deals.update_stage(session, tenant_id, stage_id, body)
    await session.commit()
    return row


@router.delete("/stages/{stage_id}", status_code=204)
async def delete_stage(tenant_id: int, stage_id: int, _: TenantAdmin, session: Session) -> Response:
    await deals.delete_stage(session, tenant_id, stage_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- deals ---------------------------------------------------------------------------------------------
@router.post("/deals", response_model=s.DealOut, status_code=201, responses=MISSING)
async def create_deal(tenant_id: int, body: s.DealCreate, who: TenantReader, session: Session) -> object:
    try:
        row = await deals.create_deal(session, tenant_id, body, actor_of(who))
    except deals.StepsMissing as exc:
        return _missing(exc)
    await session.commit()
    return await deals.deal_out(session, row)


@router.get("/deals", response_model=Page[s.DealOut])
async def list_deals(tenant_id: int, _: TenantReader, session: Session, p: PageParams,
                     pipeline_id: int | None = None, stage_id: int | None = None, owner_id: int | None = None,
                     client_id: int | None = None) -> object:
    rows, total = await deals.list_deals(session, tenant_id, pipeline_id=pipeline_id, stage_id=stage_id,
                                         owner_id=owner_id, client_id=client_id, limit=p.limit, offset=p.offset)
    return {"items": await deals.deals_out(session, tenant_id, rows), "total": total, "limit": p.limit,
            "offset": p.offset}


@router.get("/deals/{deal_id}", response_model=s.DealOut)
async def get_deal(tenant_id: int, deal_id: int, _: TenantReader, session: Session) -> object:
    return await deals.deal_out(session, await deals.get_deal(session, tenant_id, deal_id))


@router.patch("/deals/{deal_id}", response_model=s.DealOut)
async def update_deal(tenant_id: int, deal_id: int, body: s.DealUpdate, who: TenantReader, session: Session) -> object:
    row = await deals.update_deal(session, tenant_id, deal_id, body, actor_of(who))
    await session.commit()
    return await deals.deal_out(session, row)


@router.delete("/deals/{deal_id}", status_code=204)
async def delete_deal(tenant_id: int, deal_id: int, who: TenantReader, session: Session) -> Response:
    await deals.delete_deal(session, tenant_id, deal_id, actor_of(who))
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/deals/{deal_id}/steps", response_model=s.DealOut)
async def set_step(tenant_id: int, deal_id: int, body: s.StepIn, who: TenantReader, session: Session) -> object:
    """Tick (``done``) or untick a checklist step of one of the pipeline's stages."""
    row = await deals.set_step(session, tenant_id, deal_id, body, actor_of(who))
    await session.commit()
    return await deals.deal_out(session, row)


@router.post("/deals/{deal_id}/move", response_model=s.DealOut, responses=MISSING)
async def move_deal(tenant_id: int, deal_id: int, body: s.MoveIn, who: TenantReader, session: Session) -> object:
    try:
        row = await deals.move_deal(session, tenant_id, deal_id, body, actor_of(who))
    except deals.StepsMissing as exc:
        return _missing(exc)
    await session.commit()
    return await deals.deal_out(session, row)


@router.get("/deals/{deal_id}/history", response_model=list[s.MoveOut])
async def deal_history(tenant_id: int, deal_id: int, _: TenantReader, session: Session) -> object:
    await deals.get_deal(session, tenant_id, deal_id)
    return await deals.history(session, tenant_id, deal_id)


@router.get("/deals/{deal_id}/payments", response_model=list[s.PaymentOut])
async def list_payments(tenant_id: int, deal_id: int, _: TenantReader, session: Session) -> object:
    return await deals.list_payments(session, tenant_id, deal_id)


@router.post("/deals/{deal_id}/payments", response_model=s.PaymentOut, status_code=201)
async def add_payment(tenant_id: int, deal_id: int, body: s.PaymentIn, who: TenantReader, session: Session) -> object:
    row = await deals.add_payment(session, tenant_id, deal_id, body, actor_of(who))
    await session.commit()
    return row


@router.delete("/payments/{payment_id}", status_code=204)
async def delete_payment(tenant_id: int, payment_id: int, who: TenantReader, session: Session) -> Response:
    await deals.delete_payment(session, tenant_id, payment_id, actor_of(who))
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- invoices ------------------------------------------------------------------------------------------
@router.get("/deals/{deal_id}/invoices", response_model=list[s.InvoiceOut])
async def list_invoices(tenant_id: int, deal_id: int, _: TenantReader, session: Session) -> object:
    return await invoices.invoices_out(session, tenant_id, await invoices.list_invoices(session, tenant_id, deal_id))


@router.post("/deals/{deal_id}/invoices", response_model=s.InvoiceOut, status_code=201)
async def create_invoice(tenant_id: int, deal_id: int, body: s.InvoiceCreate, who: TenantReader,
                         session: Session) -> object:
    row = await invoices.create_invoice(session, tenant_id, deal_id, body, actor_of(who))
    await session.commit()
    return await invoices.invoice_out(session, row)


@router.get("/invoices/{invoice_id}", response_model=s.InvoiceOut)
async def get_invoice(tenant_id: int, invoice_id: int, _: TenantReader, session: Session) -> object:
    return await invoices.invoice_out(session, await invoices.get_invoice(session, tenant_id, invoice_id))


@router.patch("/invoices/{invoice_id}", response_model=s.InvoiceOut)
async def update_invoice(tenant_id: int, invoice_id: int, body: s.InvoiceUpdate, who: TenantReader,
                         session: Session) -> object:
    row = await invoices.update_invoice(session, tenant_id, invoice_id, body, actor_of(who))
    await session.commit()
    return await invoices.invoice_out(session, row)


@router.post("/invoices/{invoice_id}/cancel", response_model=s.InvoiceOut)
async def cancel_invoice(tenant_id: int, invoice_id: int, who: TenantReader, session: Session) -> object:
    row = await invoices.cancel_invoice(session, tenant_id, invoice_id, actor_of(who))
    await session.commit()
    return await invoices.invoice_out(session, row)


@router.post("/invoices/{invoice_id}/payments", response_model=s.PaymentOut, status_code=201)
async def pay_invoice(tenant_id: int, invoice_id: int, body: s.InvoicePaymentIn, who: TenantReader,
                      session: Session) -> object:
    """Record a payment of the invoice (it becomes partly paid or paid; a paid one closes its overdue task)."""
    row = await invoices.record_payment(session, tenant_id, invoice_id, body, actor_of(who))
    await session.commit()
    return row


@router.post("/payments/import", response_model=s.PaymentsImported, openapi_extra=CSV_BODY,
             responses={422: {"description": "Every bad row: {detail, errors: [{line, message}]}; nothing imported"},
                        415: {"description": "Not text/csv nor a multipart upload"}})
async def import_payments(tenant_id: int, who: TenantReader, session: Session, request: Request) -> object:
    """Record payments of invoices from a CSV file (columns invoice_number, amount, paid_at, reference:
    :mod:`zvonok.crm.payments_csv`), all or nothing. An employee imports payments of their own deals."""
    from .http import _spool_upload  # crm.http includes this router: imported here, not at load

    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        await _spool_upload(request, spool)
        result = await payments_csv.import_payments(session, tenant_id, spool, actor_of(who))
    if not result.ok:
        await session.rollback()
        errors = [{"line": e.line, "message": e.message} for e in result.errors]
        count = len(errors) + result.more_errors
        detail = f"{count} error{'' if count == 1 else 's'} in the file; nothing was imported"
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)
    await session.commit()
    return s.PaymentsImported(created=len(result.created), payment_ids=result.created)


# --- tasks ---------------------------------------------------------------------------------------------
@router.post("/tasks", response_model=s.TaskOut, status_code=201)
async def create_task(tenant_id: int, body: s.TaskCreate, who: TenantReader, session: Session) -> object:
    row = await tasks.create_task(session, tenant_id, body, actor_of(who))
    await session.commit()
    return (await tasks.tasks_out(session, tenant_id, [row]))[0]


@router.get("/tasks", response_model=Page[s.TaskOut])
async def list_tasks(tenant_id: int, _: TenantReader, session: Session, p: PageParams,
                     assignee_id: int | None = None, client_id: int | None = None, deal_id: int | None = None,
                     done: bool | None = None,
                     overdue: Annotated[bool, Query(description="Only tasks past their due time, not done")] = False
                     ) -> object:
    rows, total = await tasks.list_tasks(session, tenant_id, assignee_id=assignee_id, client_id=client_id,
                                         deal_id=deal_id, done=done, overdue=overdue, limit=p.limit, offset=p.offset)
    return {"items": await tasks.tasks_out(session, tenant_id, rows), "total": total, "limit": p.limit,
            "offset": p.offset}


@router.get("/tasks/{task_id}", response_model=s.TaskOut)
async def get_task(tenant_id: int, task_id: int, _: TenantReader, session: Session) -> object:
    return (await tasks.tasks_out(session, tenant_id, [await tasks.get_task(session, tenant_id, task_id)]))[0]


@router.patch("/tasks/{task_id}", response_model=s.TaskOut)
async def update_task(tenant_id: int, task_id: int, body: s.TaskUpdate, who: TenantReader, session: Session) -> object:
    row = await tasks.update_task(session, tenant_id, task_id, body, actor_of(who))
    await session.commit()
    return (await tasks.tasks_out(session, tenant_id, [row]))[0]


@router.delete("/tasks/{task_id}", status_code=204)
async def delete_task(tenant_id: int, task_id: int, who: TenantReader, session: Session) -> Response:
    await tasks.delete_task(session, tenant_id, task_id, actor_of(who))
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- settings and the dashboard -------------------------------------------------------------------------
@router.get("/settings", response_model=s.SettingsOut)
async def get_settings(tenant_id: int, _: TenantReader, session: Session) -> object:
    row = await tasks.get_settings(session, tenant_id)
    await session.commit()
    return s.SettingsOut(callback_minutes=row.callback_minutes, escalate_hours=row.escalate_hours,
                         owner_ring_seconds=row.owner_ring_seconds)


@router.put("/settings", response_model=s.SettingsOut)
async def put_settings(tenant_id: int, body: s.SettingsIn, _: TenantAdmin, session: Session) -> object:
    row = await tasks.set_settings(session, tenant_id, body)
    await session.commit()
    return s.SettingsOut(callback_minutes=row.callback_minutes, escalate_hours=row.escalate_hours,
                         owner_ring_seconds=row.owner_ring_seconds)


@router.get("/dashboard", response_model=dashboard.Dashboard)
async def get_dashboard(tenant_id: int, _: TenantReader, session: Session, pipeline_id: int | None = None) -> object:
    return await dashboard.build(session, tenant_id, pipeline_id)
