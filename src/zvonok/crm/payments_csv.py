"""Payments from a CSV file (a bank statement cut down to four columns), without I/O: rows checked into
:class:`PaymentRow` or line-numbered problems; the service (:func:`import_payments`) matches them to the
company's invoices and records them all, or nothing when any row is bad.

The columns (header names, case-insensitive, in any order): ``invoice_number``, ``amount`` (``1500.50``,
``1 500,50``), ``paid_at`` (``2026-12-01`` or ``01.12.2026``; a time after the date is ignored) and
``reference`` (optional: the bank's reference, kept as the payment's note). The encoding and the
delimiter are found as for clients (:mod:`zvonok.crm.clients_csv`).

Formula safety: a reference that a spreadsheet would run as a formula (``=``, ``@``, a tab, ``+``/``-``
before anything but a number) is refused, so what is stored and shown later never starts one; a cell
escaped with a leading ``'`` (as our exports write them) is read without it and then checked.
A reference seen twice for one invoice, in the file or already recorded, is an error (a statement
imported twice pays nothing twice).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import IO

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.billing.rates_csv import RowError
from zvonok.storage.db import emit

from . import events
from .clients_csv import N_, _unquote, safe_cell, sniff_encoding
from .deals import Actor
from .invoices import after_payment
from .models import CrmDeal, CrmInvoice, CrmPayment

COLUMNS = ("invoice_number", "amount", "paid_at", "reference")
REQUIRED = ("invoice_number", "amount", "paid_at")
MAX_ERRORS = 1000
MAX_ROWS = 50_000
_DELIMITERS = (";", "\t", ",")
_RU_DATE = re.compile(r"(\d{2})\.(\d{2})\.(\d{4})")
_MAX_AMOUNT = Decimal("999999999999.99")


@dataclass(frozen=True, kw_only=True, slots=True)
class PaymentRow:
    line: int
    invoice_number: str
    amount: Decimal
    paid_on: date
    reference: str


@dataclass(kw_only=True)
class Parsed:
    rows: list[PaymentRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    more_errors: int = 0

    def fail(self, line: int, template: str, **params: object) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RowError.of(line, template, **params))
        else:
            self.more_errors += 1


def _amount(raw: str) -> Decimal | None:
    text = raw.replace(" ", "").replace("\xa0", "").replace(",", ".")
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite() or value <= 0 or value > _MAX_AMOUNT or value != value.quantize(Decimal("0.01")):
        return None
    return value.quantize(Decimal("0.01"))


def _date(raw: str) -> date | None:
    text = raw.strip().split("T")[0].split(" ")[0]
    match = _RU_DATE.fullmatch(text)
    try:
        if match:
            return date(int(match.group(3)), int(match.group(2)), int(match.group(1)))
        return date.fromisoformat(text)
    except ValueError:
        return None


def check_row(out: Parsed, line: int, number: str, amount_text: str, paid_text: str,
              reference: str) -> PaymentRow | None:
    """One payment's cells checked (a CSV row, a notification's fields): the row, or None with the problems
    in ``out``."""
    amount, paid_on = _amount(amount_text), _date(paid_text)
    bad = False
    if not number:
        out.fail(line, N_("{column} is empty"), column="invoice_number")
        bad = True
    if amount is None:
        out.fail(line, N_("amount {value} is not a sum of money above 0"), value=repr(amount_text))
        bad = True
    if paid_on is None:
        out.fail(line, N_("paid_at {value} is not a date (YYYY-MM-DD or DD.MM.YYYY)"), value=repr(paid_text))
        bad = True
    if safe_cell(reference) != reference or safe_cell(number) != number:
        out.fail(line, N_("a cell may not start a spreadsheet formula (=, @, +, -)"))
        bad = True
    if len(reference) > 200 or len(number) > 40:
        out.fail(line, N_("a cell is too long"))
        bad = True
    if bad or amount is None or paid_on is None:
        return None
    return PaymentRow(line=line, invoice_number=number, amount=amount, paid_on=paid_on, reference=reference)


def parse(text: IO[str]) -> Parsed:
    out = Parsed()
    content = text.read()
    first = next((line for line in content.splitlines() if line.strip()), "")
    if not first:
        out.fail(1, N_("the file is empty"))
        return out
    delimiter = next((d for d in _DELIMITERS if "invoice_number" in
                      [c.strip().lower().lstrip("\ufeff") for c in next(csv.reader([first], delimiter=d), [])]), None)
    if delimiter is None:
        out.fail(1, N_("the header must name the column {column}"), column="invoice_number")
        return out
    reader = csv.reader(io.StringIO(content), delimiter=delimiter, strict=True)
    index: dict[str, int] = {}
    try:
        names: list[str] = []
        while not any(n.strip() for n in names):
            names = next(reader)
        for position, raw in enumerate(names):
            name = raw.strip().lower().lstrip("\ufeff")
            if not name:
                continue
            if name not in COLUMNS:
                out.fail(reader.line_num, N_("unknown column {name}"), name=repr(name))
            elif name in index:
                out.fail(reader.line_num, N_("column {name} appears twice"), name=repr(name))
            else:
                index[name] = position
        for name in REQUIRED:
            if name not in index and not out.errors:
                out.fail(reader.line_num, N_("the header must name the column {column}"), column=name)
        if out.errors:
            return out
        seen: dict[tuple[str, str], int] = {}
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            line = reader.line_num
            if len(out.rows) >= MAX_ROWS:
                out.fail(line, N_("more than {max} rows: split the file"), max=MAX_ROWS)
                break

            def cell(name: str, row: list[str] = row) -> str:
                at = index.get(name)
                return _unquote(row[at].strip()) if at is not None and at < len(row) else ""

            number, reference = cell("invoice_number"), cell("reference")
            checked = check_row(out, line, number, cell("amount"), cell("paid_at"), reference)
            if reference and (number, reference) in seen:
                out.fail(line, N_("reference {reference} is on line {first} too"), reference=repr(reference),
                         first=seen[(number, reference)])
                continue
            if checked is None:
                continue
            if reference:
                seen[(number, reference)] = line
            out.rows.append(checked)
    except csv.Error as exc:
        out.fail(reader.line_num, N_("unreadable CSV: {reason}"), reason=exc)
    return out


@dataclass(kw_only=True)
class Imported:
    created: list[int] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    more_errors: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors and not self.more_errors


async def import_payments(session: AsyncSession, tenant_id: int, stream: IO[bytes], actor: Actor) -> Imported:
    """Record the payments of a CSV byte stream (all or nothing: adds rows only when every row is good)."""
    encoding = sniff_encoding(stream)
    if encoding is None:
        return Imported(errors=[RowError.of(1, N_("the file is not text (UTF-8, UTF-16 or Windows-1251)"))])
    parsed = parse(io.TextIOWrapper(stream, encoding=encoding, newline=""))
    return await record(session, tenant_id, parsed, actor)


async def record(session: AsyncSession, tenant_id: int, parsed: Parsed, actor: Actor) -> Imported:
    """Record checked payments (all or nothing: adds rows only when every row is good and ``parsed`` has no
    problem) against the company's issued invoices, by number."""
    result = Imported(errors=list(parsed.errors), more_errors=parsed.more_errors)
    numbers = {r.invoice_number for r in parsed.rows}
    invoices: dict[str, CrmInvoice] = {}
    owners: dict[int, int | None] = {}
    if numbers:
        invoices = {i.number: i for i in (await session.execute(select(CrmInvoice).where(
            CrmInvoice.tenant_id == tenant_id, CrmInvoice.number.in_(numbers)))).scalars()}
        deal_ids = {i.deal_id for i in invoices.values()}
        if deal_ids:
            owners = dict((await session.execute(select(CrmDeal.id, CrmDeal.owner_id).where(
                CrmDeal.tenant_id == tenant_id, CrmDeal.id.in_(deal_ids)))).tuples().all())
    known = await _recorded_refs(session, tenant_id, [i.id for i in invoices.values()])
    for row in parsed.rows:
        inv = invoices.get(row.invoice_number)
        if inv is None:
            result.errors.append(RowError.of(row.line, N_("no invoice {number}"), number=repr(row.invoice_number)))
        elif inv.state != "issued":
            result.errors.append(RowError.of(row.line, N_("invoice {number} is {state}: it takes no payments"),
                                             number=repr(inv.number), state=inv.state))
        elif not actor.may_edit(owners.get(inv.deal_id)):
            result.errors.append(RowError.of(row.line, N_("invoice {number} is of a deal you do not own"),
                                             number=repr(inv.number)))
        elif row.reference and (inv.id, row.reference) in known:
            result.errors.append(RowError.of(row.line, N_("reference {reference} of invoice {number} is recorded"),
                                             reference=repr(row.reference), number=repr(inv.number)))
    result.errors.sort(key=lambda e: e.line)
    if not result.ok:
        return result
    touched: dict[int, CrmInvoice] = {}
    for row in parsed.rows:
        inv = invoices[row.invoice_number]
        payment = CrmPayment(tenant_id=tenant_id, deal_id=inv.deal_id, invoice_id=inv.id, amount=row.amount,
                             paid_on=row.paid_on, method="transfer", note=row.reference)
        session.add(payment)
        await session.flush()
        result.created.append(payment.id)
        touched[inv.id] = inv
    for inv in touched.values():
        await after_payment(session, inv)
        emit(session, events.DealChanged(tenant_id=tenant_id, deal_id=inv.deal_id, action="paid",
                                         owner_id=owners.get(inv.deal_id)))
    return result


async def _recorded_refs(session: AsyncSession, tenant_id: int, invoice_ids: Sequence[int]) -> set[tuple[int, str]]:
    if not invoice_ids:
        return set()
    rows = await session.execute(select(CrmPayment.invoice_id, CrmPayment.note).where(
        CrmPayment.tenant_id == tenant_id, CrmPayment.invoice_id.in_(invoice_ids), CrmPayment.note != ""))
    return {(int(i), str(n)) for i, n in rows if i is not None}
