"""The CRM's clients in one tenant (the tenant is the first argument after the session): create with
duplicate detection, change, delete, merge, notes, custom fields, search, the call timeline and the
screen-pop card.

Services flush but never commit; each write of a client queues a :class:`~zvonok.crm.events.ClientChanged`
(delivered after the commit) and rewrites the client's search document in the same transaction.

Phones are normalized to E.164 by the dialing rules of the owner's office (its area code: "123-45-67"
written for a Moscow office is +74951234567), or the country's rules without an area code. A number or
an e-mail belongs to one client in a tenant: a create that repeats one answers 409 naming the client
that has it (:class:`Duplicate`), so the caller can open it or merge.

The timeline is not copied anywhere: it is the tenant's CDRs whose caller or callee number is one of
the client's numbers (indexed), so calls made before the client was created are on it, and a merge
(which moves the phones) moves the history with them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from zvonok.cdr.models import Cdr
from zvonok.dialing import DestinationClass, DialingError, DialPlan, normalize, russian_plan
from zvonok.org import quotas
from zvonok.org.errors import Conflict, NotFound, ValidationError
from zvonok.org.models import Employee, Office
from zvonok.org.scope import get_in_tenant
from zvonok.originates.models import OriginateRequest
from zvonok.storage.db import emit

from . import events, schemas
from .models import CrmClient, CrmEmail, CrmField, CrmNote, CrmPhone
from .search import index_for, number_fragment

MAX_TEXT_FIELD = 1000
SEARCH_LIMIT = 500


class Duplicate(Conflict):
    """A number or e-mail given for a new client is already another client's."""

    def __init__(self, message: str, *, field: str, client_id: int, client_name: str) -> None:
        super().__init__(message, field=field)
        self.client_id = client_id
        self.client_name = client_name


@dataclass(frozen=True)
class Viewer:
    """Who looks at a timeline: a tenant admin opens every call; an employee the calls they took part in."""

    all_calls: bool
    employee_id: int | None = None

    def may_open(self, cdr: Cdr) -> bool:
        return self.all_calls or (self.employee_id is not None
                                  and self.employee_id in (cdr.caller_employee_id, cdr.callee_employee_id))


# --- phones ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _plan(area_code: str | None) -> DialPlan:
    try:
        return russian_plan(area_code)
    except ValueError:  # an area code the plan does not know: only full numbers then
        return russian_plan(None)


def to_e164(raw: str, area_code: str | None = None) -> str:
    """A phone as written -> E.164 by the dialing rules (with the office's area code); ValueError why not."""
    try:
        dest = normalize(raw, _plan(area_code))
    except DialingError as exc:
        raise ValueError(f"{raw!r} is not a phone number ({exc})") from None
    if dest.e164 is None or dest.klass is DestinationClass.INTERNAL:
        raise ValueError(f"{raw!r} is not an outside phone number")
    return dest.e164


async def _area_code(session: AsyncSession, tenant_id: int, owner_id: int | None) -> str | None:
    if owner_id is None:
        return None
    row = (await session.execute(select(Office.area_code).join(Employee, Employee.office_id == Office.id).where(
        Employee.tenant_id == tenant_id, Employee.id == owner_id))).first()
    return row[0] if row else None


def _normalize_phones(phones: Sequence[schemas.PhoneIn], area: str | None) -> list[tuple[str, str]]:
    out: dict[str, str] = {}
    for i, phone in enumerate(phones):
        try:
            number = to_e164(phone.number, area)
        except ValueError as exc:
            raise ValidationError(f"phones[{i}].number: {exc}", field=f"phones[{i}].number") from None
        out.setdefault(number, phone.label)
    return list(out.items())


# --- custom fields -----------------------------------------------------------------------------------
async def list_fields(session: AsyncSession, tenant_id: int, entity: str | None = "client") -> list[CrmField]:
    """The tenant's field definitions of clients (``entity="client"``), of deals ("deal"), or all (None)."""
    stmt = select(CrmField).where(CrmField.tenant_id == tenant_id)
    if entity is not None:
        stmt = stmt.where(CrmField.entity == entity)
    rows = await session.execute(stmt.order_by(CrmField.position, CrmField.id))
    return list(rows.scalars())


async def create_field(session: AsyncSession, tenant_id: int, data: schemas.FieldCreate) -> CrmField:
    await quotas.check(session, tenant_id, "crm_fields", CrmField)
    if data.kind == "choice" and not data.choices:
        raise ValidationError("choices: a choice field needs at least one choice", field="choices")
    if data.kind != "choice" and data.choices:
        raise ValidationError("choices: only a choice field has choices", field="choices")
    if len(set(data.choices)) != len(data.choices):
        raise ValidationError("choices: each choice once", field="choices")
    taken = (await session.execute(select(CrmField.id).where(CrmField.tenant_id == tenant_id,
                                                             CrmField.key == data.key))).first()
    if taken is not None:
        raise Conflict(f"key: a field {data.key!r} exists", field="key")
    row = CrmField(tenant_id=tenant_id, key=data.key, label=data.label, kind=data.kind, choices=list(data.choices),
                   required=data.required, position=data.position, entity=data.entity)
    session.add(row)
    await session.flush()
    return row


async def delete_field(session: AsyncSession, tenant_id: int, field_id: int) -> None:
    """The definition goes; values stay in the clients' ``fields`` but are no longer shown or checked."""
    row = await get_in_tenant(session, CrmField, tenant_id, field_id, "field")
    await session.delete(row)
    await session.flush()


def check_field(definition: CrmField, value: Any) -> Any:
    """``value`` as stored for ``definition``; ValueError saying what is expected."""
    kind = definition.kind
    if kind == "text":
        if not isinstance(value, str) or len(value) > MAX_TEXT_FIELD:
            raise ValueError(f"text of at most {MAX_TEXT_FIELD} characters expected")
        return value.strip()
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value or abs(value) > 1e15:
            raise ValueError("a number expected")
        return value
    if kind == "date":
        try:
            day = date.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            day = None
        if day is None or not 1900 <= day.year <= 2200:
            raise ValueError("a date like 2026-01-31 expected")
        return day.isoformat()
    if value not in definition.choices:
        raise ValueError(f"one of {definition.choices} expected")
    return value


async def clean_fields(session: AsyncSession, tenant_id: int, given: dict[str, Any],
                        current: dict[str, Any] | None, entity: str = "client") -> dict[str, Any]:
    """``current`` with ``given`` applied (null removes a value), checked against the definitions."""
    defs = {d.key: d for d in await list_fields(session, tenant_id, entity)}
    out = {k: v for k, v in (current or {}).items() if k in defs}
    for key, value in given.items():
        definition = defs.get(key)
        if definition is None:
            raise ValidationError(f"fields.{key}: no such field (define it in /crm/fields)", field=f"fields.{key}")
        if value is None or value == "":
            out.pop(key, None)
            continue
        try:
            out[key] = check_field(definition, value)
        except ValueError as exc:
            raise ValidationError(f"fields.{key}: {exc}", field=f"fields.{key}") from None
    for key, definition in defs.items():
        if definition.required and key not in out:
            raise ValidationError(f"fields.{key}: required", field=f"fields.{key}")
    return out


# --- clients -----------------------------------------------------------------------------------------
async def get_client(session: AsyncSession, tenant_id: int, client_id: int) -> CrmClient:
    return await get_in_tenant(session, CrmClient, tenant_id, client_id, "client")


async def _check_refs(session: AsyncSession, tenant_id: int, client: CrmClient | None, company_id: int | None,
                      owner_id: int | None) -> None:
    if owner_id is not None:
        owner = (await session.execute(select(Employee.id).where(Employee.tenant_id == tenant_id,
                                                                 Employee.id == owner_id))).first()
        if owner is None:
            raise ValidationError(f"owner_id: employee {owner_id} does not exist", field="owner_id")
    if company_id is not None:
        company = (await session.execute(select(CrmClient.kind).where(
            CrmClient.tenant_id == tenant_id, CrmClient.id == company_id))).first()
        if company is None:
            raise ValidationError(f"company_id: client {company_id} does not exist", field="company_id")
        if company[0] != "company":
            raise ValidationError(f"company_id: client {company_id} is not a company", field="company_id")
        if client is not None and (client.kind == "company" or client.id == company_id):
            raise ValidationError("company_id: a company belongs to no company", field="company_id")


async def _check_unique(session: AsyncSession, tenant_id: int, numbers: Iterable[str], emails: Iterable[str],
                        client_id: int | None) -> None:
    numbers, emails = list(numbers), list(emails)
    if numbers:
        row = (await session.execute(
            select(CrmPhone.number, CrmClient.id, CrmClient.name).join(CrmClient, CrmClient.id == CrmPhone.client_id)
            .where(CrmPhone.tenant_id == tenant_id, CrmPhone.number.in_(numbers),
                   CrmPhone.client_id != (client_id or 0)).limit(1))).first()
        if row is not None:
            raise Duplicate(f"phones: {row[0]} is already the number of client {row[1]} ({row[2]})",
                            field="phones", client_id=row[1], client_name=row[2])
    if emails:
        row = (await session.execute(
            select(CrmEmail.address, CrmClient.id, CrmClient.name).join(CrmClient, CrmClient.id == CrmEmail.client_id)
            .where(CrmEmail.tenant_id == tenant_id, CrmEmail.address.in_(emails),
                   CrmEmail.client_id != (client_id or 0)).limit(1))).first()
        if row is not None:
            raise Duplicate(f"emails: {row[0]} is already the e-mail of client {row[1]} ({row[2]})",
                            field="emails", client_id=row[1], client_name=row[2])


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


async def create_client(session: AsyncSession, tenant_id: int, data: schemas.ClientCreate, *,
                        author_employee_id: int | None = None) -> CrmClient:
    await _check_refs(session, tenant_id, None, data.company_id, data.owner_id)
    if data.kind == "company" and data.company_id is not None:
        raise ValidationError("company_id: a company belongs to no company", field="company_id")
    phones = _normalize_phones(data.phones, await _area_code(session, tenant_id, data.owner_id))
    emails = _unique(data.emails)
    await _check_unique(session, tenant_id, [n for n, _ in phones], emails, None)
    client = CrmClient(tenant_id=tenant_id, kind=data.kind, name=data.name, company_id=data.company_id,
                       owner_id=data.owner_id, tags=_unique(data.tags),
                       fields=await clean_fields(session, tenant_id, data.fields, None))
    session.add(client)
    await session.flush()
    _add_contacts(session, client, phones, emails)
    if data.note:
        session.add(CrmNote(tenant_id=tenant_id, client_id=client.id, text=data.note,
                            author_employee_id=author_employee_id))
    await session.flush()
    await reindex(session, tenant_id, client.id)
    emit(session, events.ClientChanged(tenant_id=tenant_id, client_id=client.id, action="created"))
    return client


def _add_contacts(session: AsyncSession, client: CrmClient, phones: Sequence[tuple[str, str]],
                  emails: Sequence[str]) -> None:
    for number, label in phones:
        session.add(CrmPhone(tenant_id=client.tenant_id, client_id=client.id, number=number,
                             digits=number.lstrip("+"), label=label))
    for address in emails:
        session.add(CrmEmail(tenant_id=client.tenant_id, client_id=client.id, address=address))


async def update_client(session: AsyncSession, tenant_id: int, client_id: int,
                        data: schemas.ClientUpdate) -> CrmClient:
    client = await get_client(session, tenant_id, client_id)
    changes = data.model_dump(exclude_unset=True)
    for key in ("name", "phones", "emails", "tags", "fields"):
        if key in changes and changes[key] is None:
            raise ValidationError(f"{key}: may not be null", field=key)
    await _check_refs(session, tenant_id, client, changes.get("company_id"), changes.get("owner_id"))
    owner_id = changes["owner_id"] if "owner_id" in changes else client.owner_id
    phones = (_normalize_phones(data.phones or [], await _area_code(session, tenant_id, owner_id))
              if "phones" in changes else None)
    emails = _unique(data.emails or []) if "emails" in changes else None
    await _check_unique(session, tenant_id, [n for n, _ in phones or []], emails or [], client.id)
    if "fields" in changes:
        client.fields = await clean_fields(session, tenant_id, changes["fields"], client.fields)
    for key in ("name", "company_id", "owner_id"):
        if key in changes:
            setattr(client, key, changes[key])
    if "tags" in changes:
        client.tags = _unique(changes["tags"])
    if phones is not None:
        await session.execute(delete(CrmPhone).where(CrmPhone.tenant_id == tenant_id, CrmPhone.client_id == client.id))
    if emails is not None:
        await session.execute(delete(CrmEmail).where(CrmEmail.tenant_id == tenant_id, CrmEmail.client_id == client.id))
    await session.flush()
    _add_contacts(session, client, phones or [], emails or [])
    await session.flush()
    await reindex(session, tenant_id, client.id)
    if client.kind == "company" and "name" in changes:  # its people are found by the company's name
        for person_id in (await session.execute(select(CrmClient.id).where(
                CrmClient.tenant_id == tenant_id, CrmClient.company_id == client.id))).scalars().all():
            await reindex(session, tenant_id, person_id)
    emit(session, events.ClientChanged(tenant_id=tenant_id, client_id=client.id, action="changed"))
    return client


async def delete_client(session: AsyncSession, tenant_id: int, client_id: int) -> None:
    client = await get_client(session, tenant_id, client_id)
    await index_for(session).drop(session, client.id)
    await session.delete(client)
    await session.flush()
    emit(session, events.ClientChanged(tenant_id=tenant_id, client_id=client_id, action="deleted"))


async def merge_clients(session: AsyncSession, tenant_id: int, target_id: int, source_id: int) -> CrmClient:
    """``source`` joins ``target`` and is gone: its phones and e-mails (so its calls), notes, tags, people
    (a company's) and the fields ``target`` has not set move over; a note on ``target`` says so."""
    if target_id == source_id:
        raise ValidationError("source_id: a client cannot be merged into itself", field="source_id")
    target = await get_client(session, tenant_id, target_id)
    try:
        source = await get_client(session, tenant_id, source_id)
    except NotFound:
        raise ValidationError(f"source_id: client {source_id} does not exist", field="source_id") from None
    if source.kind != target.kind:
        raise ValidationError(f"source_id: a {source.kind} cannot be merged into a {target.kind}", field="source_id")
    for model in (CrmPhone, CrmEmail, CrmNote, OriginateRequest):  # (click-to-calls: their timeline entries)
        await session.execute(update(model).where(model.tenant_id == tenant_id, model.client_id == source.id)
                              .values(client_id=target.id))
    await session.execute(update(CrmClient).where(CrmClient.tenant_id == tenant_id, CrmClient.company_id == source.id)
                          .values(company_id=target.id))
    target.tags = _unique([*target.tags, *source.tags])
    target.fields = {**source.fields, **target.fields}
    if target.owner_id is None:
        target.owner_id = source.owner_id
    if target.company_id is None and source.company_id != target.id:
        target.company_id = source.company_id
    session.add(CrmNote(tenant_id=tenant_id, client_id=target.id,
                        text=f"Merged with client {source.id} ({source.name})"))
    await index_for(session).drop(session, source.id)
    await session.flush()
    await session.delete(source)
    await session.flush()
    await reindex(session, tenant_id, target.id)
    emit(session, events.ClientChanged(tenant_id=tenant_id, client_id=target.id, action="merged",
                                       merged_id=source_id))
    return target


async def add_note(session: AsyncSession, tenant_id: int, client_id: int, text: str, *,
                   author_employee_id: int | None = None) -> CrmNote:
    await get_client(session, tenant_id, client_id)
    note = CrmNote(tenant_id=tenant_id, client_id=client_id, text=text, author_employee_id=author_employee_id)
    session.add(note)
    await session.flush()
    await reindex(session, tenant_id, client_id)
    emit(session, events.ClientChanged(tenant_id=tenant_id, client_id=client_id, action="changed"))
    return note


async def list_notes(session: AsyncSession, tenant_id: int, client_id: int) -> list[CrmNote]:
    await get_client(session, tenant_id, client_id)
    rows = await session.execute(select(CrmNote).where(CrmNote.tenant_id == tenant_id, CrmNote.client_id == client_id)
                                 .order_by(CrmNote.created_at.desc(), CrmNote.id.desc()))
    return list(rows.scalars())


# --- search ------------------------------------------------------------------------------------------
async def document(session: AsyncSession, tenant_id: int, client: CrmClient) -> str:
    """What the words of a search look in: names, the company's name, e-mails, tags, text fields, notes."""
    parts = [client.name, *client.tags, *(v for v in client.fields.values() if isinstance(v, str))]
    if client.company_id is not None:
        company = (await session.execute(select(CrmClient.name).where(
            CrmClient.tenant_id == tenant_id, CrmClient.id == client.company_id))).scalar_one_or_none()
        parts.append(company or "")
    parts += (await session.execute(select(CrmEmail.address).where(
        CrmEmail.tenant_id == tenant_id, CrmEmail.client_id == client.id))).scalars().all()
    parts += (await session.execute(select(CrmNote.text).where(
        CrmNote.tenant_id == tenant_id, CrmNote.client_id == client.id))).scalars().all()
    return "\n".join(parts)


async def reindex(session: AsyncSession, tenant_id: int, client_id: int) -> None:
    client = await get_client(session, tenant_id, client_id)
    await index_for(session).put(session, tenant_id, client_id, await document(session, tenant_id, client))


async def search_ids(session: AsyncSession, tenant_id: int, query: str, *, limit: int = SEARCH_LIMIT) -> list[int]:
    """Ids of the tenant's clients matching ``query``: a part of a number (digits), or words; best first."""
    digits = number_fragment(query)
    if digits is not None:
        return await index_for(session).find_number(session, tenant_id, digits, limit)
    return await index_for(session).find(session, tenant_id, query, limit)


async def list_clients(session: AsyncSession, tenant_id: int, *, q: str | None = None, tag: str | None = None,
                       owner_id: int | None = None, kind: str | None = None, limit: int,
                       offset: int) -> tuple[list[CrmClient], int]:
    """A page of clients: matches of ``q`` in their order (best first), otherwise by name."""
    conds: list[ColumnElement[bool]] = [CrmClient.tenant_id == tenant_id]
    if owner_id is not None:
        conds.append(CrmClient.owner_id == owner_id)
    if kind is not None:
        conds.append(CrmClient.kind == kind)
    rows: list[CrmClient]
    if q and q.strip():
        ids = await search_ids(session, tenant_id, q.strip())
        if not ids:
            return [], 0
        found = {c.id: c for c in (await session.execute(select(CrmClient).where(*conds, CrmClient.id.in_(ids))))
                 .scalars()}
        ordered = [found[i] for i in ids if i in found and (tag is None or tag in found[i].tags)]
        return ordered[offset:offset + limit], len(ordered)
    stmt = select(CrmClient).where(*conds)
    if tag is not None:  # tags are a JSON list: filtered here (a tenant's clients by tag, without JSON SQL)
        everyone = (await session.execute(stmt.order_by(func.lower(CrmClient.name), CrmClient.id))).scalars().all()
        tagged = [c for c in everyone if tag in c.tags]
        return tagged[offset:offset + limit], len(tagged)
    total = int((await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one())
    rows = list((await session.execute(stmt.order_by(func.lower(CrmClient.name), CrmClient.id)
                                       .limit(limit).offset(offset))).scalars())
    return rows, total


async def client_out(session: AsyncSession, client: CrmClient) -> schemas.ClientOut:
    return (await clients_out(session, [client]))[0]


async def clients_out(session: AsyncSession, clients: Sequence[CrmClient]) -> list[schemas.ClientOut]:
    if not clients:
        return []
    tenant_id = clients[0].tenant_id
    ids = [c.id for c in clients]
    phones: dict[int, list[schemas.PhoneOut]] = {i: [] for i in ids}
    for p in (await session.execute(select(CrmPhone).where(CrmPhone.tenant_id == tenant_id,
                                                           CrmPhone.client_id.in_(ids)).order_by(CrmPhone.id))).scalars():
        phones[p.client_id].append(schemas.PhoneOut(number=p.number, label=p.label))
    emails: dict[int, list[str]] = {i: [] for i in ids}
    for e in (await session.execute(select(CrmEmail).where(CrmEmail.tenant_id == tenant_id,
                                                           CrmEmail.client_id.in_(ids)).order_by(CrmEmail.id))).scalars():
        emails[e.client_id].append(e.address)
    company_ids = {c.company_id for c in clients if c.company_id is not None}
    companies = dict((await session.execute(select(CrmClient.id, CrmClient.name).where(
        CrmClient.tenant_id == tenant_id, CrmClient.id.in_(company_ids)))).tuples().all()) if company_ids else {}
    owner_ids = {c.owner_id for c in clients if c.owner_id is not None}
    owners = dict((await session.execute(select(Employee.id, Employee.full_name).where(
        Employee.tenant_id == tenant_id, Employee.id.in_(owner_ids)))).tuples().all()) if owner_ids else {}
    return [schemas.ClientOut(
        id=c.id, tenant_id=c.tenant_id, kind=c.kind, name=c.name, company_id=c.company_id,
        company_name=companies.get(c.company_id) if c.company_id else None, owner_id=c.owner_id,
        owner_name=owners.get(c.owner_id) if c.owner_id else None, phones=phones[c.id], emails=emails[c.id],
        tags=list(c.tags), fields=dict(c.fields), created_at=c.created_at, updated_at=c.updated_at)
        for c in clients]


# --- calls -------------------------------------------------------------------------------------------
def _forms(numbers: Iterable[str]) -> list[str]:
    """How a number may be written in a CDR: E.164, or its digits (a trunk that sent no "+")."""
    out: list[str] = []
    for n in numbers:
        out += [n, n.lstrip("+")]
    return out


# The screen pop's statements are built once, with bind parameters (an expanding IN for a number's forms):
# building them for every ringing call was the largest part of the lookup (bench/crm.py).
@functools.cache
def _client_numbers_stmt() -> Select[tuple[str]]:
    return select(CrmPhone.number).where(CrmPhone.tenant_id == bindparam("tenant_id"),
                                         CrmPhone.client_id == bindparam("client_id")).order_by(CrmPhone.id)


@functools.cache
def _last_calls_stmt() -> Select[tuple[Cdr]]:
    forms: BindParameter[list[str]] = bindparam("forms", expanding=True)
    return (select(Cdr).where(Cdr.tenant_id == bindparam("tenant_id"),
                              or_(Cdr.caller_number.in_(forms), Cdr.callee_number.in_(forms)))
            .order_by(Cdr.started_at.desc(), Cdr.id.desc()).limit(bindparam("limit")).offset(bindparam("offset")))


@functools.cache
def _card_client_stmt() -> Select[tuple[int, str, str, str, str]]:
    company = aliased(CrmClient)
    tenant: BindParameter[int] = bindparam("tenant_id")
    return (select(CrmClient.id, CrmClient.name, CrmClient.kind, company.name, Employee.full_name)
            .join(CrmPhone, CrmPhone.client_id == CrmClient.id)
            .outerjoin(company, and_(company.id == CrmClient.company_id, company.tenant_id == tenant))
            .outerjoin(Employee, and_(Employee.id == CrmClient.owner_id, Employee.tenant_id == tenant))
            .where(CrmPhone.tenant_id == tenant, CrmPhone.number.in_(bindparam("numbers", expanding=True)))
            .limit(1))


async def client_numbers(session: AsyncSession, tenant_id: int, client_id: int) -> list[str]:
    return list((await session.execute(_client_numbers_stmt(),
                                       {"tenant_id": tenant_id, "client_id": client_id})).scalars())


def _calls_of(tenant_id: int, numbers: Sequence[str]) -> list[ColumnElement[bool]]:
    forms = _forms(numbers)
    return [Cdr.tenant_id == tenant_id, or_(Cdr.caller_number.in_(forms), Cdr.callee_number.in_(forms))]


async def last_calls(session: AsyncSession, tenant_id: int, numbers: Sequence[str], *, limit: int,
                     offset: int = 0) -> list[Cdr]:
    """The calls from or to ``numbers``, newest first (no count: the screen pop's query)."""
    if not numbers:
        return []
    rows = await session.execute(_last_calls_stmt(), {"tenant_id": tenant_id, "forms": _forms(numbers),
                                                      "limit": limit, "offset": offset})
    return list(rows.scalars().all())


async def calls_of_numbers(session: AsyncSession, tenant_id: int, numbers: Sequence[str], *, limit: int,
                           offset: int = 0) -> tuple[list[Cdr], int]:
    if not numbers:
        return [], 0
    where = _calls_of(tenant_id, numbers)
    total = int((await session.execute(select(func.count()).select_from(Cdr).where(*where))).scalar_one())
    return await last_calls(session, tenant_id, numbers, limit=limit, offset=offset), total


def calls_where(tenant_id: int, numbers: Sequence[str]) -> list[ColumnElement[bool]]:
    """The WHERE of the calls from or to ``numbers`` (the e-mail timeline's UNION uses it too)."""
    return _calls_of(tenant_id, numbers)


async def calls_out(session: AsyncSession, tenant_id: int, numbers: Sequence[str], rows: Sequence[Cdr],
                    viewer: Viewer, has_recording: Any = None) -> list[schemas.CallOut]:
    forms = {f: n for n in numbers for f in (n, n.lstrip("+"))}
    names = await _employee_names(session, tenant_id, rows)
    out = []
    for cdr in rows:
        may_open = viewer.may_open(cdr)
        recorded = bool(cdr.recording_path) and (has_recording(cdr) if has_recording is not None else True)
        out.append(schemas.CallOut(
            id=cdr.id, call_id=cdr.call_id, started_at=cdr.started_at, direction=cdr.direction,
            disposition=cdr.disposition, duration=cdr.duration, billsec=cdr.billsec,
            caller_number=cdr.caller_number, caller_name=cdr.caller_name, callee_number=cdr.callee_number,
            callee_name=cdr.callee_name, employee_name=names.get(_employee_of(cdr) or 0),
            client_number=forms.get(cdr.caller_number) or forms.get(cdr.callee_number) or "",
            has_recording=recorded, detail_url=f"/calls/{cdr.id}" if may_open else None,
            recording_url=f"/calls/{cdr.id}/recording" if may_open and recorded else None))
    return out


async def timeline(session: AsyncSession, tenant_id: int, client_id: int, viewer: Viewer, *,
                   has_recording: Any = None, limit: int = 50, offset: int = 0) -> tuple[list[schemas.CallOut], int]:
    """The client's calls, newest first; ``has_recording(cdr)`` says whether a recording file exists (the
    calls and e-mails together: :func:`zvonok.crm.mail.timeline`)."""
    await get_client(session, tenant_id, client_id)
    numbers = await client_numbers(session, tenant_id, client_id)
    rows, total = await calls_of_numbers(session, tenant_id, numbers, limit=limit, offset=offset)
    return await calls_out(session, tenant_id, numbers, rows, viewer, has_recording), total


def _employee_of(cdr: Cdr) -> int | None:
    return cdr.callee_employee_id or cdr.caller_employee_id


async def _employee_names(session: AsyncSession, tenant_id: int, rows: Sequence[Cdr]) -> dict[int, str]:
    ids = {e for e in (_employee_of(c) for c in rows) if e is not None}
    if not ids:
        return {}
    return dict((await session.execute(select(Employee.id, Employee.full_name).where(
        Employee.tenant_id == tenant_id, Employee.id.in_(ids)))).tuples().all())


# --- the screen pop ----------------------------------------------------------------------------------
async def client_by_number(session: AsyncSession, tenant_id: int, number: str) -> CrmClient | None:
    """The client one of whose phones is ``number`` (E.164, or its digits as some trunks send them)."""
    candidates = _forms([number]) if number.startswith("+") else [number, "+" + number]
    row = (await session.execute(select(CrmClient).join(CrmPhone, CrmPhone.client_id == CrmClient.id).where(
        CrmPhone.tenant_id == tenant_id, CrmPhone.number.in_(candidates)).limit(1))).scalar_one_or_none()
    return row


async def card_for(session: AsyncSession, tenant_id: int, number: str, *, last: int = 5) -> events.Card:
    """The screen-pop card of a caller: the client's, with their last calls, or a new lead's number.

    On the ringing path: the client with its company's and owner's names is one query (by the phone's
    unique index), then its numbers, its last calls and their employees' names (bench/crm.py times it)."""
    candidates = _forms([number]) if number.startswith("+") else [number, "+" + number]
    found = (await session.execute(_card_client_stmt(), {"tenant_id": tenant_id, "numbers": candidates})).first()
    if found is None:
        return events.Card(number=number)
    client_id, name, kind, company_name, owner_name = found
    rows = await last_calls(session, tenant_id, await client_numbers(session, tenant_id, client_id), limit=last)
    names = await _employee_names(session, tenant_id, rows)
    calls = tuple(events.CardCall(cdr_id=c.id, started_at=c.started_at.timestamp(), direction=c.direction,
                                  disposition=c.disposition, duration=c.duration,
                                  employee_name=names.get(_employee_of(c) or 0, "")) for c in rows)
    return events.Card(number=number, client_id=client_id, name=name, kind=kind, company=company_name or "",
                       owner=owner_name or "", last_calls=calls)
