"""Import and export of a tenant's clients as CSV (the format: :mod:`zvonok.crm.clients_csv`).

An import is all or nothing, in the caller's transaction: the file is read row by row from a seekable
byte stream (an upload spooled to disk, never the whole body in memory twice), every row is checked,
then the rows whose phone or e-mail an existing client already has are skipped as duplicates (one query
per 500 numbers), and the rest are written in bulk: companies first (people may name them), then
people, their phones, e-mails, first notes and search documents, a statement per kind and batch (the
clients on SQLite: three, see :func:`_insert_clients`) — ten thousand rows are checked in about 2 s on the
shared 2-core test machine (reading 1.4 s, phones 0.5 s, stems 0.2 s); tests/unit/test_crm_csv.py imports,
searches and exports 10 000.

Export streams: pages of :data:`EXPORT_PAGE` clients by id, each turned into CSV text as it is read.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.billing.rates_csv import RowError
from zvonok.org.models import Employee, Office
from zvonok.storage.db import Database

from . import clients_csv as fmt
from .models import CrmClient, CrmEmail, CrmNote, CrmPhone
from .search import index_for
from .service import clients_out, list_fields, to_e164

BATCH = 500
EXPORT_PAGE = 500


@dataclass(frozen=True, kw_only=True, slots=True)
class Duplicate:
    """A row skipped because an existing client has one of its phones or e-mails."""

    line: int
    client_id: int
    value: str  # the phone or e-mail found


@dataclass(kw_only=True, slots=True)
class ImportResult:
    created: int = 0
    duplicates: list[Duplicate] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    more_errors: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


async def _lookup(session: AsyncSession, tenant_id: int) -> tuple[fmt.Lookup, dict[int, str | None]]:
    fields = {f.key: f for f in await list_fields(session, tenant_id)}
    owners: dict[str, int | None] = {}
    areas: dict[int, str | None] = {}
    rows = await session.execute(
        select(Employee.id, Employee.email, Employee.full_name, Office.area_code)
        .outerjoin(Office, Office.id == Employee.office_id)
        .where(Employee.tenant_id == tenant_id)
    )
    for employee_id, email, name, area in rows:
        areas[employee_id] = area
        owners[str(employee_id)] = employee_id
        if email:
            owners[email.lower()] = employee_id
        key = name.strip().lower()
        owners[key] = None if key in owners and owners[key] != employee_id else employee_id
    companies: dict[str, int | None] = {}
    for company_id, name in await session.execute(
        select(CrmClient.id, CrmClient.name).where(
            CrmClient.tenant_id == tenant_id, CrmClient.kind == "company"
        )
    ):
        key = name.lower()
        companies[key] = None if key in companies else company_id
    return fmt.Lookup(fields=fields, owners=owners, companies=companies), areas


async def _existing(
    session: AsyncSession, tenant_id: int, column: Any, values: Sequence[str]
) -> dict[str, int]:
    found: dict[str, int] = {}
    model = column.class_
    for start in range(0, len(values), BATCH):
        chunk = values[start : start + BATCH]
        found.update(
            (
                await session.execute(
                    select(column, model.client_id).where(model.tenant_id == tenant_id, column.in_(chunk))
                )
            )
            .tuples()
            .all()
        )
    return found


def text_of(stream: IO[bytes]) -> io.TextIOWrapper | None:
    """A text view of a seekable CSV byte stream in its sniffed encoding, or None if it is not text."""
    encoding = fmt.sniff_encoding(stream)
    if encoding is None:
        return None
    return io.TextIOWrapper(stream, encoding=encoding, newline="")


async def import_clients(session: AsyncSession, tenant_id: int, stream: IO[bytes]) -> ImportResult:
    """Check and write the clients of a CSV file (see the module docstring); flushes, never commits."""
    text = text_of(stream)
    if text is None:
        return ImportResult(
            errors=[RowError.of(1, fmt.N_("the file is not UTF-8, UTF-16 or Windows-1251 text"))]
        )
    lookup, areas = await _lookup(session, tenant_id)
    try:
        parsed = fmt.parse(text, lookup)
        fmt.check_phones(parsed, lambda owner: areas.get(owner) if owner else None, to_e164)
    finally:
        text.detach()  # the caller owns the byte stream
    if parsed.errors:  # by line: the phones' problems were found after the rest
        errors = sorted(parsed.errors, key=lambda e: e.line)
        return ImportResult(errors=errors, more_errors=parsed.more_errors)
    if not parsed.rows:
        return ImportResult(errors=[RowError.of(1, fmt.N_("no clients after the header"))])

    phones = await _existing(session, tenant_id, CrmPhone.number, [n for r in parsed.rows for n in r.phones])
    emails = await _existing(session, tenant_id, CrmEmail.address, [e for r in parsed.rows for e in r.emails])
    result = ImportResult()
    fresh: list[fmt.ClientRow] = []
    company_ids: dict[str, int] = {}
    for row in parsed.rows:
        hit = next(((v, phones[v]) for v in row.phones if v in phones), None) or next(
            ((v, emails[v]) for v in row.emails if v in emails), None
        )
        if hit is None:
            fresh.append(row)
            continue
        result.duplicates.append(Duplicate(line=row.line, client_id=hit[1], value=hit[0]))
        if row.kind == "company":  # its people in the file belong to the client it duplicates
            company_ids.setdefault(row.name.lower(), hit[1])
    companies = [r for r in fresh if r.kind == "company"]
    people = [r for r in fresh if r.kind != "company"]
    for created in await _write(session, tenant_id, companies):
        company_ids.setdefault(created.name.lower(), created.company_id or 0)
    for person in people:
        if person.company:
            person.company_id = company_ids.get(person.company)
    await _write(
        session, tenant_id, people, company_names={v: k for k, v in company_ids.items()}, lookup=lookup
    )
    result.created = len(fresh)
    return result


async def _write(
    session: AsyncSession,
    tenant_id: int,
    rows: Sequence[fmt.ClientRow],
    *,
    company_names: dict[int, str] | None = None,
    lookup: fmt.Lookup | None = None,
) -> list[fmt.ClientRow]:
    """Insert ``rows`` in batches; for companies returns them with ``company_id`` set to their own new id."""
    names = dict(company_names or {})
    if lookup is not None:
        names.update({v: k for k, v in lookup.companies.items() if v is not None})
    out: list[fmt.ClientRow] = []
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        ids = await _insert_clients(
            session,
            [
                {
                    "tenant_id": tenant_id,
                    "kind": r.kind,
                    "name": r.name,
                    "company_id": r.company_id,
                    "owner_id": r.owner_id,
                    "tags": r.tags,
                    "fields": r.fields,
                }
                for r in batch
            ],
        )
        phones = [
            {"tenant_id": tenant_id, "client_id": i, "number": n, "digits": n.lstrip("+"), "label": ""}
            for i, r in zip(ids, batch, strict=True)
            for n in r.phones
        ]
        emails = [
            {"tenant_id": tenant_id, "client_id": i, "address": e}
            for i, r in zip(ids, batch, strict=True)
            for e in r.emails
        ]
        notes = [
            {"tenant_id": tenant_id, "client_id": i, "text": r.note}
            for i, r in zip(ids, batch, strict=True)
            if r.note
        ]
        for model, values in ((CrmPhone, phones), (CrmEmail, emails), (CrmNote, notes)):
            if values:
                await session.execute(insert(model), values)
        documents = []
        for client_id, r in zip(ids, batch, strict=True):
            company = names.get(r.company_id or 0, "") if r.kind != "company" else ""
            parts = [
                r.name,
                *r.tags,
                *(v for v in r.fields.values() if isinstance(v, str)),
                company,
                *r.emails,
                r.note,
            ]
            documents.append((client_id, "\n".join(p for p in parts if p)))
        await index_for(session).put_new(session, tenant_id, documents)
        for client_id, r in zip(ids, batch, strict=True):
            if r.kind == "company":
                r.company_id = client_id
            out.append(r)
    return out


async def _insert_clients(session: AsyncSession, values: list[dict[str, Any]]) -> list[int]:
    """Insert a batch of clients; their new ids, in the order of ``values`` (their phones, e-mails, notes,
    search documents and a company's people are attached by it).

    PostgreSQL: one INSERT ... RETURNING, sorted back into parameter order by SQLAlchemy (its sentinel form).
    SQLite has no order to trust: RETURNING rows come in an arbitrary order (its documentation says so), and
    it documents neither that a multi-row VALUES is inserted in order nor that new rowids always ascend
    (only a "usual" largest + 1), so SQLAlchemy's ``sort_by_parameter_order`` falls back there to an INSERT
    per row, an aiosqlite thread hand-off each: most of a big import's time. So on SQLite the ids are chosen,
    under its one-writer lock: the first row is inserted alone (its RETURNING row is its id; the INSERT takes
    the write lock, kept to the end of the transaction, so no other connection adds a client until commit),
    then the rest get the ids after the table's largest, in one executemany: three statements a batch. An id
    taken all the same would fail the primary key: loud, never a client with another row's phones."""
    bind = session.bind
    if bind is None or bind.dialect.name != "sqlite":
        result = await session.execute(insert(CrmClient).returning(CrmClient.id, sort_by_parameter_order=True), values)
        return list(result.scalars().all())
    first = (await session.execute(insert(CrmClient).returning(CrmClient.id), values[0])).scalar_one()
    if len(values) == 1:
        return [first]
    top = (await session.execute(select(func.max(CrmClient.id)))).scalar_one()
    rest = list(range(top + 1, top + len(values)))
    await session.execute(insert(CrmClient), [{**v, "id": i} for v, i in zip(values[1:], rest, strict=True)])
    return [first, *rest]


async def export_clients(db: Database, tenant_id: int) -> AsyncIterator[str]:
    """The tenant's clients as CSV text, a page at a time (its own session: the response outlives the
    request's). Custom field columns follow the base ones; every cell is formula-safe."""
    async with db.session() as session:
        fields = await list_fields(session, tenant_id)
        yield "\ufeff" + fmt.write_rows([fmt.header(fields)])  # the BOM: Excel opens UTF-8 as such
        after = 0
        while True:
            page = list(
                (
                    await session.execute(
                        select(CrmClient)
                        .where(CrmClient.tenant_id == tenant_id, CrmClient.id > after)
                        .order_by(CrmClient.id)
                        .limit(EXPORT_PAGE)
                    )
                ).scalars()
            )
            if not page:
                return
            after = page[-1].id
            yield fmt.write_rows([fmt.row_of(c, fields) for c in await clients_out(session, page)])
            session.expunge_all()
