"""Payments of invoices from a CSV file (a bank statement cut down to its columns): ``/crm/deals/payments/import``,
linked from the deals board and a deal's invoices, for whoever may record payments (as the API's
``POST .../crm/payments/import``: an admin any invoice's, an employee those of their own deals).

:func:`zvonok.crm.payments_csv.import_payments` does the work, all or nothing as in the API: a file with any
bad line records nothing and the page lists every problem by line (in the user's language); a good file
shows how many payments were recorded and the invoices they paid, with their status now.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, File, Request, UploadFile
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.crm import invoices, payments_csv
from zvonok.crm.models import CrmDeal, CrmInvoice, CrmPayment
from zvonok.web.auth import TenantUser
from zvonok.web.pages.crm_sales import INVOICE_STATUSES, actor_of
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import page_router

router = page_router()
Session = Annotated[AsyncSession, Depends(get_session)]
SHOWN_ERRORS = 200


@router.get("/crm/deals/payments/import")
async def import_page(request: Request, user: TenantUser) -> Response:
    return render(request, "crm/payments_import.html", {"result": None, "error": ""})


@router.post("/crm/deals/payments/import")
async def import_payments(request: Request, user: TenantUser, session: Session,
                          file: Annotated[UploadFile | None, File()] = None) -> Response:
    """The upload is spooled to a temporary file by the form parser; the rows are checked and recorded in
    this request (all or nothing)."""
    _ = gettext_for(request)
    if file is None or not file.size:
        return render(request, "crm/payments_import.html", {
            "result": None, "error": _("Choose a CSV file with the payments.")}, status_code=422)
    result = await payments_csv.import_payments(session, user.tenant, file.file, actor_of(user))
    context: dict[str, object] = {"result": result, "filename": file.filename or "", "error": ""}
    if not result.ok:
        await session.rollback()
        row_errors = [(e.line, _(e.template).format(**dict(e.params))) for e in result.errors[:SHOWN_ERRORS]]
        context |= {"row_errors": row_errors, "more": len(result.errors) + result.more_errors - len(row_errors)}
        return render(request, "crm/payments_import.html", context, status_code=422)
    await session.commit()
    rows = (await session.execute(
        select(CrmPayment, CrmInvoice.number, CrmInvoice.currency, CrmDeal.title)
        .join(CrmInvoice, CrmInvoice.id == CrmPayment.invoice_id).join(CrmDeal, CrmDeal.id == CrmPayment.deal_id)
        .where(CrmPayment.tenant_id == user.tenant, CrmPayment.id.in_(result.created))
        .order_by(CrmPayment.id))).tuples().all()
    paid = (await session.execute(select(CrmInvoice).where(
        CrmInvoice.tenant_id == user.tenant, CrmInvoice.id.in_({p.invoice_id for p, *_rest in rows}))
        .order_by(CrmInvoice.number))).scalars().all()
    context |= {"payments": rows, "invoices": await invoices.invoices_out(session, user.tenant, paid),
                "invoice_statuses": INVOICE_STATUSES}
    return render(request, "crm/payments_import.html", context)
