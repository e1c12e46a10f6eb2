"""Invoices of a deal and payment control.

An invoice has a number unique in the company, an amount in a currency, the day it was issued and the day
it is due. People set its ``state`` (draft, issued, cancelled); the status shown follows from the payments
linked to it (:func:`invoice_status`): an issued invoice is ``partly_paid`` once some money came and
``paid`` once its payments reach its amount. A draft takes no payments and is never overdue; a cancelled
invoice is not changed any more.

Overdue → task: the CRM's scheduler (:mod:`zvonok.crm.reminders`) calls :func:`overdue_scan`. An issued
invoice whose due day has passed (UTC day of the scan's ``now``) with money still unpaid becomes one task
for the deal's owner ("Invoice N is overdue: X of Y unpaid") and an :class:`~zvonok.crm.events.InvoiceOverdue`
event. The invoice is marked (``overdue_at``) by a conditional update before the task is made, so it is
made once per invoice: after a restart, with several nodes scanning (the second one's update matches no
row), or when someone deletes the task. A payment that settles the invoice in full, or cancelling it,
closes that task (marks it done); a partial payment leaves it open (the title says what was unpaid when
it was made). Moving the due day later does not make a second task.

Who may change what follows the deal: an admin any invoice, an employee those of the deals they own.
Services flush, never commit; events go out after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.org.errors import Conflict, PermissionDenied, ValidationError
from zvonok.org.scope import get_in_tenant
from zvonok.storage.base import utcnow
from zvonok.storage.db import emit

from . import events, schemas
from .deals import Actor, get_deal
from .models import CrmDeal, CrmInvoice, CrmPayment, CrmTask

CENT = Decimal("0.01")


def invoice_status(state: str, amount: Decimal, paid: Decimal) -> schemas.InvoiceStatus:
    """What an invoice shows: its ``state`` when draft or cancelled, else what its payments make it."""
    if state == "draft":
        return "draft"
    if state == "cancelled":
        return "cancelled"
    if paid >= amount:
        return "paid"
    return "partly_paid" if paid > 0 else "issued"


def _deny() -> PermissionDenied:
    return PermissionDenied("only the deal's owner or an admin may change its invoices")


async def get_invoice(session: AsyncSession, tenant_id: int, invoice_id: int) -> CrmInvoice:
    return await get_in_tenant(session, CrmInvoice, tenant_id, invoice_id, "invoice")


async def list_invoices(session: AsyncSession, tenant_id: int, deal_id: int) -> list[CrmInvoice]:
    await get_deal(session, tenant_id, deal_id)
    return list((await session.execute(select(CrmInvoice).where(
        CrmInvoice.tenant_id == tenant_id, CrmInvoice.deal_id == deal_id)
        .order_by(CrmInvoice.issued_on, CrmInvoice.id))).scalars())


async def paid_of(session: AsyncSession, tenant_id: int, invoice_ids: Sequence[int]) -> dict[int, Decimal]:
    if not invoice_ids:
        return {}
    rows = await session.execute(select(CrmPayment.invoice_id, func.sum(CrmPayment.amount)).where(
        CrmPayment.tenant_id == tenant_id, CrmPayment.invoice_id.in_(invoice_ids)).group_by(CrmPayment.invoice_id))
    return {int(i): Decimal(str(total or 0)).quantize(CENT) for i, total in rows if i is not None}


async def _check_number(session: AsyncSession, tenant_id: int, number: str, invoice_id: int | None = None) -> None:
    taken = (await session.execute(select(CrmInvoice.id).where(
        CrmInvoice.tenant_id == tenant_id, CrmInvoice.number == number))).scalar_one_or_none()
    if taken is not None and taken != invoice_id:
        raise Conflict(f"number: an invoice {number!r} exists", field="number")


def _check_dates(issued_on: date, due_on: date) -> None:
    if due_on < issued_on:
        raise ValidationError(f"due_on: {due_on} is before the issue date {issued_on}", field="due_on")


async def create_invoice(session: AsyncSession, tenant_id: int, deal_id: int, data: schemas.InvoiceCreate,
                         actor: Actor, today: date | None = None) -> CrmInvoice:
    deal = await get_deal(session, tenant_id, deal_id)
    if not actor.may_edit(deal.owner_id):
        raise _deny()
    issued_on = data.issued_on or today or utcnow().date()
    _check_dates(issued_on, data.due_on)
    await _check_number(session, tenant_id, data.number)
    row = CrmInvoice(tenant_id=tenant_id, deal_id=deal_id, number=data.number, amount=data.amount,
                     currency=data.currency or deal.currency, issued_on=issued_on, due_on=data.due_on,
                     state="draft" if data.draft else "issued")
    session.add(row)
    await session.flush()
    emit(session, events.InvoiceChanged(tenant_id=tenant_id, invoice_id=row.id, deal_id=deal_id, action="created",
                                        status=row.state))
    return row


async def _editable(session: AsyncSession, tenant_id: int, invoice_id: int, actor: Actor) -> tuple[CrmInvoice, CrmDeal]:
    row = await get_invoice(session, tenant_id, invoice_id)
    deal = await get_deal(session, tenant_id, row.deal_id)
    if not actor.may_edit(deal.owner_id):
        raise _deny()
    if row.state == "cancelled":
        raise ValidationError(f"invoice {row.number} is cancelled and is not changed any more", field="state")
    return row, deal


async def update_invoice(session: AsyncSession, tenant_id: int, invoice_id: int, data: schemas.InvoiceUpdate,
                         actor: Actor) -> CrmInvoice:
    row, _ = await _editable(session, tenant_id, invoice_id, actor)
    changes = data.model_dump(exclude_unset=True)
    for key, value in changes.items():
        if value is None:
            raise ValidationError(f"{key}: may not be null", field=key)
    _check_dates(changes.get("issued_on", row.issued_on), changes.get("due_on", row.due_on))
    if "number" in changes:
        await _check_number(session, tenant_id, changes["number"], row.id)
    if changes.get("draft") and row.state != "draft":
        if (await paid_of(session, tenant_id, [row.id])).get(row.id):
            raise ValidationError(f"draft: invoice {row.number} has payments; it stays issued", field="draft")
    if "draft" in changes:
        row.state = "draft" if changes.pop("draft") else "issued"
    for key, value in changes.items():
        setattr(row, key, value)
    await session.flush()
    await _settle(session, row)
    emit(session, events.InvoiceChanged(tenant_id=tenant_id, invoice_id=row.id, deal_id=row.deal_id,
                                        action="changed", status=row.state))
    return row


async def cancel_invoice(session: AsyncSession, tenant_id: int, invoice_id: int, actor: Actor) -> CrmInvoice:
    row, _ = await _editable(session, tenant_id, invoice_id, actor)
    row.state = "cancelled"
    await session.flush()
    await _close_overdue_task(session, row)
    emit(session, events.InvoiceChanged(tenant_id=tenant_id, invoice_id=row.id, deal_id=row.deal_id,
                                        action="cancelled", status="cancelled"))
    return row


async def record_payment(session: AsyncSession, tenant_id: int, invoice_id: int, data: schemas.InvoicePaymentIn,
                         actor: Actor) -> CrmPayment:
    """A payment of the invoice's deal linked to the invoice (an issued one: not a draft, not cancelled)."""
    row, deal = await _editable(session, tenant_id, invoice_id, actor)
    if row.state == "draft":
        raise ValidationError(f"invoice_id: invoice {row.number} is a draft; issue it first", field="invoice_id")
    payment = CrmPayment(tenant_id=tenant_id, deal_id=deal.id, invoice_id=row.id, amount=data.amount,
                         paid_on=data.paid_on, method=data.method, note=data.note)
    session.add(payment)
    await session.flush()
    status = await _settle(session, row)
    emit(session, events.DealChanged(tenant_id=tenant_id, deal_id=deal.id, action="paid", stage_id=deal.stage_id,
                                     owner_id=deal.owner_id))
    emit(session, events.InvoiceChanged(tenant_id=tenant_id, invoice_id=row.id, deal_id=deal.id, action="paid",
                                        status=status))
    return payment


async def check_payable(session: AsyncSession, tenant_id: int, deal_id: int, invoice_id: int) -> CrmInvoice:
    """The invoice a payment of ``deal_id`` names, if it may take one (422 otherwise)."""
    row = (await session.execute(select(CrmInvoice).where(
        CrmInvoice.tenant_id == tenant_id, CrmInvoice.id == invoice_id))).scalar_one_or_none()
    if row is None or row.deal_id != deal_id:
        raise ValidationError(f"invoice_id: the deal has no invoice {invoice_id}", field="invoice_id")
    if row.state != "issued":
        raise ValidationError(f"invoice_id: invoice {row.number} is {row.state}; it takes no payments",
                              field="invoice_id")
    return row


async def _settle(session: AsyncSession, row: CrmInvoice) -> str:
    """The invoice's status now; a settled invoice closes its overdue task."""
    paid = (await paid_of(session, row.tenant_id, [row.id])).get(row.id, Decimal("0.00"))
    status = invoice_status(row.state, Decimal(row.amount), paid)
    if status == "paid":
        await _close_overdue_task(session, row)
    return status


async def after_payment(session: AsyncSession, row: CrmInvoice) -> str:
    status = await _settle(session, row)
    emit(session, events.InvoiceChanged(tenant_id=row.tenant_id, invoice_id=row.id, deal_id=row.deal_id,
                                        action="paid", status=status))
    return status


async def _close_overdue_task(session: AsyncSession, row: CrmInvoice) -> None:
    if row.overdue_task_id is None:
        return
    task = await session.get(CrmTask, row.overdue_task_id)
    if task is not None and not task.done:
        task.done = True
        task.done_at = utcnow()
        await session.flush()
        emit(session, events.TaskChanged(tenant_id=row.tenant_id, task_id=task.id, action="done",
                                         assignee_id=task.assignee_id))


# --- overdue -------------------------------------------------------------------------------------------
def overdue_title(number: str, unpaid: Decimal, amount: Decimal, currency: str) -> str:
    return f"Invoice {number} is overdue: {unpaid} of {amount} {currency} unpaid"


async def overdue_scan(session: AsyncSession, now: datetime, *, limit: int = 500) -> int:
    """Make the task of each issued invoice past its due day with money unpaid that has none yet; returns
    how many were made (events for after the commit)."""
    paid = (select(func.coalesce(func.sum(CrmPayment.amount), 0)).where(CrmPayment.invoice_id == CrmInvoice.id)
            .scalar_subquery())
    rows = (await session.execute(select(CrmInvoice, paid).where(
        CrmInvoice.state == "issued", CrmInvoice.overdue_at.is_(None), CrmInvoice.due_on < now.date(),
        CrmInvoice.amount > paid).order_by(CrmInvoice.due_on, CrmInvoice.id).limit(limit))).tuples().all()
    made = 0
    for inv, got in rows:
        deal = await session.get(CrmDeal, inv.deal_id)
        if deal is None:
            continue
        marked = await session.execute(update(CrmInvoice).where(
            CrmInvoice.id == inv.id, CrmInvoice.overdue_at.is_(None)).values(overdue_at=now))
        if marked.rowcount != 1:  # type: ignore[attr-defined]  # another node's scan made it
            continue
        amount = Decimal(inv.amount).quantize(CENT)
        unpaid = (amount - Decimal(str(got or 0))).quantize(CENT)
        # reminded_at: the InvoiceOverdue event is the owner's notice; the reminder scan need not repeat it
        task = CrmTask(tenant_id=inv.tenant_id, title=overdue_title(inv.number, unpaid, amount, inv.currency),
                       kind="invoice", client_id=deal.client_id, deal_id=deal.id, assignee_id=deal.owner_id,
                       due_at=now, done=False, reminded_at=now)
        session.add(task)
        await session.flush()
        inv.overdue_task_id = task.id
        emit(session, events.TaskChanged(tenant_id=inv.tenant_id, task_id=task.id, action="created",
                                         assignee_id=deal.owner_id))
        emit(session, events.InvoiceOverdue(tenant_id=inv.tenant_id, invoice_id=inv.id, deal_id=deal.id,
                                            task_id=task.id, owner_id=deal.owner_id, number=inv.number,
                                            unpaid=str(unpaid), amount=str(amount), currency=inv.currency))
        made += 1
    await session.flush()
    return made


# --- the client's price history ------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, slots=True)
class PriceLine:
    """One invoice of one of a client's deals, for the card's price history (what was offered, what sold)."""

    issued_on: date
    deal_id: int
    deal_title: str
    number: str
    amount: Decimal
    currency: str
    status: schemas.InvoiceStatus
    paid: Decimal


async def price_history(session: AsyncSession, tenant_id: int, client_id: int, *, limit: int = 100) -> list[PriceLine]:
    """The invoices of the client's deals, newest first (cancelled ones too: an offer not taken)."""
    rows = (await session.execute(select(CrmInvoice, CrmDeal.title).join(CrmDeal, CrmDeal.id == CrmInvoice.deal_id)
                                  .where(CrmInvoice.tenant_id == tenant_id, CrmDeal.tenant_id == tenant_id,
                                         CrmDeal.client_id == client_id)
                                  .order_by(CrmInvoice.issued_on.desc(), CrmInvoice.id.desc()).limit(limit))).tuples().all()
    sums = await paid_of(session, tenant_id, [r.id for r, _ in rows])
    out: list[PriceLine] = []
    for r, title in rows:
        amount = Decimal(r.amount).quantize(CENT)
        paid = sums.get(r.id, Decimal("0.00"))
        out.append(PriceLine(issued_on=r.issued_on, deal_id=r.deal_id, deal_title=title, number=r.number,
                             amount=amount, currency=r.currency, status=invoice_status(r.state, amount, paid),
                             paid=paid))
    return out


# --- output --------------------------------------------------------------------------------------------
async def invoices_out(session: AsyncSession, tenant_id: int, rows: Sequence[CrmInvoice],
                       today: date | None = None) -> list[schemas.InvoiceOut]:
    today = today or utcnow().date()
    sums = await paid_of(session, tenant_id, [r.id for r in rows])
    out: list[schemas.InvoiceOut] = []
    for r in rows:
        amount = Decimal(r.amount).quantize(CENT)
        paid = sums.get(r.id, Decimal("0.00"))
        status = invoice_status(r.state, amount, paid)
        out.append(schemas.InvoiceOut(
            id=r.id, deal_id=r.deal_id, number=r.number, amount=amount, currency=r.currency, issued_on=r.issued_on,
            due_on=r.due_on, status=status, paid=paid, unpaid=max(Decimal("0.00"), amount - paid),
            overdue=status in ("issued", "partly_paid") and r.due_on < today, overdue_task_id=r.overdue_task_id))
    return out


async def invoice_out(session: AsyncSession, row: CrmInvoice) -> schemas.InvoiceOut:
    return (await invoices_out(session, row.tenant_id, [row]))[0]
