"""The CRM's sales process in the console: the pipeline board (a column per stage, a card per deal, moved
with a form; a refused move shows what the stage still needs), a deal's page (fields, the checklist, the
stage history, invoices and payments, tasks), my tasks (overdue first), the pipeline's settings (admins) and the
management dashboard (admins).

Everything goes through :mod:`zvonok.crm.deals` and :mod:`zvonok.crm.tasks` with the user as the actor:
an employee changes their own deals and tasks (a 403 page otherwise), another company's ids are 404 pages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.crm import dashboard, deals, invoices, schemas, service, tasks
from zvonok.crm.models import CrmClient, CrmPipeline
from zvonok.org.errors import NotFound as OrgNotFound
from zvonok.org.errors import OrgError
from zvonok.org.models import Employee
from zvonok.web.auth import TenantAdminUser, TenantUser, WebUser
from zvonok.web.i18n import N_
from zvonok.web.render import render
from zvonok.web.routing import ADMIN, TENANT, NavItem, page_router

router = page_router()
NAV = [NavItem("/crm/deals", N_("Deals"), TENANT, order=11), NavItem("/crm/tasks", N_("Tasks"), TENANT, order=12),
       NavItem("/crm/dashboard", N_("Sales dashboard"), ADMIN, order=13),
       NavItem("/crm/pipeline", N_("Pipeline settings"), ADMIN, order=35)]
Session = Annotated[AsyncSession, Depends(get_session)]
METHODS = {"cash": N_("Cash"), "card": N_("Card"), "transfer": N_("Bank transfer"), "other": N_("Other")}
INVOICE_STATUSES = {"draft": N_("Draft"), "issued": N_("Issued"), "paid": N_("Paid"), "partly_paid": N_("Partly paid"),
                    "cancelled": N_("Cancelled")}


def actor_of(user: WebUser) -> deals.Actor:
    return deals.Actor(admin=user.is_tenant_admin, employee_id=user.employee_id)


def _error(exc: Exception) -> str:
    if isinstance(exc, OrgError):
        return exc.message
    if isinstance(exc, PydanticValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return str(exc)


async def _pipeline(session: AsyncSession, tenant_id: int, pipeline_id: int | None) -> CrmPipeline:
    if pipeline_id is not None:
        return await deals.get_pipeline(session, tenant_id, pipeline_id)
    return await deals.default_pipeline(session, tenant_id)


async def _clients(session: AsyncSession, tenant_id: int) -> list[tuple[int, str]]:
    return [(int(i), str(n)) for i, n in await session.execute(
        select(CrmClient.id, CrmClient.name).where(CrmClient.tenant_id == tenant_id)
        .order_by(func.lower(CrmClient.name)).limit(500))]


async def _employees(session: AsyncSession, tenant_id: int) -> list[tuple[int, str]]:
    return [(int(i), str(n)) for i, n in await session.execute(
        select(Employee.id, Employee.full_name).where(Employee.tenant_id == tenant_id, Employee.active.is_(True))
        .order_by(Employee.full_name))]


# --- the board -----------------------------------------------------------------------------------------
async def _board(request: Request, user: WebUser, session: AsyncSession, pipeline_id: int | None, *,
                 error: str = "", error_deal: int | None = None, status_code: int = 200) -> Response:
    pipeline = await _pipeline(session, user.tenant, pipeline_id)
    await session.commit()  # the default pipeline, made on first use
    stages = await deals.stages_of(session, user.tenant, pipeline.id)
    rows, _ = await deals.list_deals(session, user.tenant, pipeline_id=pipeline.id, limit=1000)
    out = await deals.deals_out(session, user.tenant, rows)
    columns = [(s, [d for d in out if d.stage_id == s.id]) for s in stages]
    return render(request, "crm/deals.html", {
        "pipeline": pipeline, "pipelines": await deals.list_pipelines(session, user.tenant), "columns": columns,
        "stages": stages, "clients": await _clients(session, user.tenant), "error": error, "error_deal": error_deal,
        "actor": actor_of(user)}, status_code=status_code)


@router.get("/crm/deals")
async def board(request: Request, user: TenantUser, session: Session,
                pipeline_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Response:
    return await _board(request, user, session, pipeline_id)


def _money(raw: str) -> Decimal | None:
    raw = raw.strip().replace(" ", "").replace(",", ".")
    if not raw:
        return None
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{raw!r} is not an amount") from None


@router.post("/crm/deals/new")
async def new_deal(request: Request, user: TenantUser, session: Session,
                   title: Annotated[str, Form(max_length=400)] = "", amount: Annotated[str, Form(max_length=40)] = "",
                   client_id: Annotated[str, Form(max_length=12)] = "",
                   pipeline_id: Annotated[int | None, Form(ge=1, le=2**31 - 1)] = None) -> Response:
    try:
        data = schemas.DealCreate(title=title, amount=_money(amount), pipeline_id=pipeline_id,
                                  client_id=int(client_id) if client_id.strip() else None)
        deal = await deals.create_deal(session, user.tenant, data, actor_of(user))
    except (OrgError, PydanticValidationError, ValueError) as exc:
        await session.rollback()
        return await _board(request, user, session, pipeline_id, error=_error(exc), status_code=422)
    await session.commit()
    return RedirectResponse(f"/crm/deals/{deal.id}", status_code=303)


async def _on_deal(request: Request, user: WebUser, session: AsyncSession, deal_id: int,
                   change: Callable[[], Awaitable[None]], anchor: str) -> Response:
    """Carry out a form's ``change`` to a deal: committed and back to the deal page (at ``anchor``), or the
    page again with the reason (422); another company's or a forbidden deal stays 404/403."""
    try:
        await change()
    except (OrgError, PydanticValidationError, ValueError) as exc:
        if isinstance(exc, OrgError) and exc.status in (403, 404):
            raise
        await session.rollback()
        return await _deal_page(request, user, session, deal_id, error=_error(exc), status_code=422)
    await session.commit()
    return RedirectResponse(f"/crm/deals/{deal_id}{anchor}", status_code=303)


@router.post("/crm/deals/{deal_id:int}/move")
async def move(request: Request, deal_id: int, user: TenantUser, session: Session,
               stage_id: Annotated[int, Form(ge=1, le=2**31 - 1)], lost_reason: Annotated[str, Form(max_length=2000)] = "",
               back: Annotated[str, Form(max_length=10)] = "board") -> Response:
    pipeline_id = (await deals.get_deal(session, user.tenant, deal_id)).pipeline_id
    try:
        await deals.move_deal(session, user.tenant, deal_id,
                              schemas.MoveIn(stage_id=stage_id, lost_reason=lost_reason or None), actor_of(user))
    except (deals.StepsMissing, OrgError, PydanticValidationError) as exc:
        if isinstance(exc, OrgError) and exc.status in (403, 404):
            raise
        await session.rollback()
        if back == "deal":
            return await _deal_page(request, user, session, deal_id, error=_error(exc), status_code=422)
        return await _board(request, user, session, pipeline_id, error=_error(exc), error_deal=deal_id,
                            status_code=422)
    await session.commit()
    return RedirectResponse(f"/crm/deals/{deal_id}" if back == "deal" else f"/crm/deals?pipeline_id={pipeline_id}",
                            status_code=303)


# --- a deal --------------------------------------------------------------------------------------------
async def _deal_page(request: Request, user: WebUser, session: AsyncSession, deal_id: int, *, error: str = "",
                     status_code: int = 200) -> Response:
    deal = await deals.get_deal(session, user.tenant, deal_id)
    stages = await deals.stages_of(session, user.tenant, deal.pipeline_id)
    task_rows, _ = await tasks.list_tasks(session, user.tenant, deal_id=deal_id)
    invoice_rows = await invoices.invoices_out(session, user.tenant,
                                               await invoices.list_invoices(session, user.tenant, deal_id))
    return render(request, "crm/deal.html", {
        "invoices": invoice_rows, "invoice_statuses": INVOICE_STATUSES,
        "invoice_numbers": {i.id: i.number for i in invoice_rows},
        "payable": [i for i in invoice_rows if i.status in ("issued", "partly_paid")],
        "deal": await deals.deal_out(session, deal), "stages": stages, "stage_names": {s.id: s.name for s in stages},
        "history": await deals.history(session, user.tenant, deal_id),
        "payments": await deals.list_payments(session, user.tenant, deal_id),
        "tasks": await tasks.tasks_out(session, user.tenant, task_rows), "methods": METHODS,
        "deal_fields": await service.list_fields(session, user.tenant, "deal"),
        "clients": await _clients(session, user.tenant), "employees": await _employees(session, user.tenant),
        "may_edit": actor_of(user).may_edit(deal.owner_id), "error": error, "today": date.today().isoformat()},
        status_code=status_code)


@router.get("/crm/deals/{deal_id:int}")
async def deal_page(request: Request, deal_id: int, user: TenantUser, session: Session) -> Response:
    return await _deal_page(request, user, session, deal_id)


@router.post("/crm/deals/{deal_id:int}/edit")
async def edit_deal(request: Request, deal_id: int, user: TenantUser, session: Session) -> Response:
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if isinstance(v, str)}

    async def change() -> None:
        changes: dict[str, Any] = {"title": values.get("title", ""), "amount": _money(values.get("amount", "")),
                                   "expected_close": values.get("expected_close") or None,
                                   "client_id": int(values["client_id"]) if values.get("client_id") else None,
                                   "fields": {k[6:]: v or None for k, v in values.items() if k.startswith("field.")}}
        if user.is_tenant_admin and values.get("owner_id"):
            changes["owner_id"] = int(values["owner_id"])
        await deals.update_deal(session, user.tenant, deal_id, schemas.DealUpdate(**changes), actor_of(user))

    return await _on_deal(request, user, session, deal_id, change, "")


@router.post("/crm/deals/{deal_id:int}/steps")
async def toggle_step(deal_id: int, user: TenantUser, session: Session,
                      stage_id: Annotated[int, Form(ge=1, le=2**31 - 1)], step: Annotated[str, Form(max_length=200)],
                      done: Annotated[str, Form(max_length=1)] = "1") -> Response:
    await deals.set_step(session, user.tenant, deal_id, schemas.StepIn(stage_id=stage_id, step=step, done=done == "1"),
                         actor_of(user))
    await session.commit()
    return RedirectResponse(f"/crm/deals/{deal_id}#checklist", status_code=303)


@router.post("/crm/deals/{deal_id:int}/payments")
async def add_payment(request: Request, deal_id: int, user: TenantUser, session: Session,
                      amount: Annotated[str, Form(max_length=40)] = "", paid_on: Annotated[str, Form(max_length=10)] = "",
                      method: Annotated[str, Form(max_length=16)] = "transfer",
                      note: Annotated[str, Form(max_length=2000)] = "",
                      invoice_id: Annotated[str, Form(max_length=12)] = "") -> Response:
    async def change() -> None:
        data = schemas.PaymentIn.model_validate({"amount": _money(amount), "paid_on": paid_on, "method": method,
                                                 "note": note, "invoice_id": invoice_id.strip() or None})
        await deals.add_payment(session, user.tenant, deal_id, data, actor_of(user))

    return await _on_deal(request, user, session, deal_id, change, "#payments")


@router.post("/crm/deals/{deal_id:int}/invoices")
async def add_invoice(request: Request, deal_id: int, user: TenantUser, session: Session,
                      number: Annotated[str, Form(max_length=80)] = "", amount: Annotated[str, Form(max_length=40)] = "",
                      issued_on: Annotated[str, Form(max_length=10)] = "",
                      due_on: Annotated[str, Form(max_length=10)] = "") -> Response:
    async def change() -> None:
        data = schemas.InvoiceCreate.model_validate({"number": number, "amount": _money(amount),
                                                     "issued_on": issued_on or None, "due_on": due_on or None})
        await invoices.create_invoice(session, user.tenant, deal_id, data, actor_of(user))

    return await _on_deal(request, user, session, deal_id, change, "#invoices")


@router.post("/crm/deals/{deal_id:int}/invoices/{invoice_id:int}/cancel")
async def cancel_invoice(request: Request, deal_id: int, invoice_id: int, user: TenantUser,
                         session: Session) -> Response:
    row = await invoices.get_invoice(session, user.tenant, invoice_id)
    if row.deal_id != deal_id:
        raise OrgNotFound(f"invoice {invoice_id} not found")

    async def change() -> None:
        await invoices.cancel_invoice(session, user.tenant, invoice_id, actor_of(user))

    return await _on_deal(request, user, session, deal_id, change, "#invoices")


@router.post("/crm/deals/{deal_id:int}/tasks")
async def add_deal_task(request: Request, deal_id: int, user: TenantUser, session: Session,
                        title: Annotated[str, Form(max_length=400)] = "",
                        due_at: Annotated[str, Form(max_length=40)] = "") -> Response:
    async def change() -> None:
        data = schemas.TaskCreate(title=title, due_at=_local(due_at, user), deal_id=deal_id)
        await tasks.create_task(session, user.tenant, data, actor_of(user))

    return await _on_deal(request, user, session, deal_id, change, "#tasks")


def _local(raw: str, user: WebUser) -> datetime:
    """A datetime-local input (the tenant's wall clock) as an aware datetime."""
    value = datetime.fromisoformat(raw)
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(user.tenant_timezone or "UTC"))
    return value


# --- tasks ---------------------------------------------------------------------------------------------
@router.get("/crm/tasks")
async def my_tasks(request: Request, user: TenantUser, session: Session,
                   everyone: Annotated[bool, Query(alias="all")] = False) -> Response:
    mine = not (everyone and user.is_tenant_admin) and user.employee_id is not None
    rows, total = await tasks.list_tasks(session, user.tenant, assignee_id=user.employee_id if mine else None,
                                         done=False, limit=500)
    out = await tasks.tasks_out(session, user.tenant, rows)
    out.sort(key=lambda t: (not t.overdue, t.due_at))
    return render(request, "crm/tasks.html", {"tasks": out, "total": total, "mine": mine})


@router.post("/crm/tasks/{task_id:int}/done")
async def task_done(task_id: int, user: TenantUser, session: Session,
                    back: Annotated[str, Form(max_length=200)] = "/crm/tasks") -> Response:
    await tasks.update_task(session, user.tenant, task_id, schemas.TaskUpdate(done=True), actor_of(user))
    await session.commit()
    return RedirectResponse(back if back.startswith("/crm") else "/crm/tasks", status_code=303)


# --- settings and the dashboard ------------------------------------------------------------------------
async def _settings_page(request: Request, user: WebUser, session: AsyncSession, pipeline_id: int | None, *,
                         error: str = "", status_code: int = 200) -> Response:
    pipeline = await _pipeline(session, user.tenant, pipeline_id)
    settings = await tasks.get_settings(session, user.tenant)
    await session.commit()
    return render(request, "crm/pipeline.html", {
        "pipeline": pipeline, "stages": await deals.stages_of(session, user.tenant, pipeline.id),
        "settings": settings, "error": error}, status_code=status_code)


@router.get("/crm/pipeline")
async def pipeline_settings(request: Request, user: TenantAdminUser, session: Session,
                            pipeline_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Response:
    return await _settings_page(request, user, session, pipeline_id)


def _lines(raw: str) -> list[str]:
    return [line.strip() for line in raw.replace(",", "\n").splitlines() if line.strip()]


@router.post("/crm/pipeline/{pipeline_id:int}/stages")
async def save_stage(request: Request, pipeline_id: int, user: TenantAdminUser, session: Session,
                     stage_id: Annotated[str, Form(max_length=12)] = "", name: Annotated[str, Form(max_length=400)] = "",
                     goal: Annotated[str, Form(max_length=2000)] = "", probability: Annotated[int, Form(ge=0, le=100)] = 0,
                     required_fields: Annotated[str, Form(max_length=4000)] = "",
                     required_steps: Annotated[str, Form(max_length=10000)] = "") -> Response:
    try:
        if stage_id:
            stage = await deals.update_stage(session, user.tenant, int(stage_id), schemas.StageUpdate(
                name=name, goal=goal, probability=probability, required_fields=_lines(required_fields),
                required_steps=[s.strip() for s in required_steps.splitlines() if s.strip()]))
            if stage.pipeline_id != pipeline_id:
                raise ValueError("the stage is another pipeline's")
        else:
            await deals.add_stage(session, user.tenant, pipeline_id, schemas.StageIn(
                name=name, goal=goal, probability=probability, required_fields=_lines(required_fields),
                required_steps=[s.strip() for s in required_steps.splitlines() if s.strip()]))
    except (OrgError, PydanticValidationError, ValueError) as exc:
        if isinstance(exc, OrgError) and exc.status == 404:
            raise
        await session.rollback()
        return await _settings_page(request, user, session, pipeline_id, error=_error(exc), status_code=422)
    await session.commit()
    return RedirectResponse(f"/crm/pipeline?pipeline_id={pipeline_id}", status_code=303)


@router.post("/crm/pipeline/settings")
async def save_settings(request: Request, user: TenantAdminUser, session: Session,
                        callback_minutes: Annotated[int, Form(ge=1, le=7 * 24 * 60)] = 60,
                        escalate_hours: Annotated[int, Form(ge=1, le=24 * 90)] = 24,
                        owner_ring_seconds: Annotated[int, Form(ge=0, le=120)] = 0) -> Response:
    await tasks.set_settings(session, user.tenant, schemas.SettingsIn(callback_minutes=callback_minutes,
                                                                       escalate_hours=escalate_hours,
                                                                       owner_ring_seconds=owner_ring_seconds))
    await session.commit()
    return RedirectResponse("/crm/pipeline", status_code=303)


@router.get("/crm/dashboard")
async def sales_dashboard(request: Request, user: TenantAdminUser, session: Session,
                          pipeline_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Response:
    board = await dashboard.build(session, user.tenant, pipeline_id)
    await session.commit()
    return render(request, "crm/dashboard.html", {"board": board})
