"""The CRM in the console, for every account of a company (admins and employees): the clients list with
search (a part of a number, or words), a new client (prefilled with a number from the screen pop's "new
lead" card), a client's card (phones, e-mails, tags, custom fields, notes, and every call from or to
their numbers with its recording, and the e-mails written to them from here or fetched from the company's
mailbox, with a form to write one), editing, and the company's custom fields (admins).

Everything goes through :mod:`zvonok.crm.service`, which is tenant-scoped (another company's client is a
404 page). A duplicate number or e-mail is answered with a link to the client that has it. Recordings
play from the calls pages (``/calls/{id}/recording``), which apply their own rule of who may open a call.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_db, get_session, get_settings
from zvonok.cdr.models import Cdr
from zvonok.cdr.service import recording_file
from zvonok.config import Settings
from zvonok.crm import deals, invoices, mail, mailthread, schemas, service, tasks, transfer
from zvonok.crm.models import CrmClient, CrmField
from zvonok.mail.outbox import SmtpServer
from zvonok.org.errors import Conflict, NotFound, OrgError
from zvonok.org.models import Employee
from zvonok.telephony import originate_http
from zvonok.telephony.originate import OriginateRefused
from zvonok.web.auth import TenantAdminUser, TenantUser, WebUser
from zvonok.web.forms import BadId, optional_id
from zvonok.web.i18n import N_
from zvonok.web.pages.calls import DIRECTIONS, DISPOSITIONS
from zvonok.web.pages.crm_sales import INVOICE_STATUSES
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import ADMIN, TENANT, NavItem, page_router

router = page_router()
NAV = [NavItem("/crm", N_("Clients"), TENANT, order=10), NavItem("/crm/fields", N_("Client fields"), ADMIN, order=34)]
Session = Annotated[AsyncSession, Depends(get_session)]
Cfg = Annotated[Settings, Depends(get_settings)]
PAGE = 50
KINDS = {"person": N_("Person"), "company": N_("Company")}
FIELD_KINDS = {"text": N_("Text"), "number": N_("Number"), "date": N_("Date"), "choice": N_("Choice")}
FIELD_ENTITIES = {"client": N_("Client"), "deal": N_("Deal")}
MAIL_STATES = {"queued": N_("Queued"), "sent": N_("Sent"), "failed": N_("Not sent"), "received": N_("Received")}
MAIL_RESULTS = {  # the outcome of the "Write an e-mail" form: (kind, message)
    "queued": ("ok", N_("The e-mail is queued and will be sent in a moment.")),
    "invalid": ("error", N_("Give a valid address, a subject on one line and the text of the e-mail.")),
    "nosmtp": ("error", N_("No mail server is set up for sending: ask the administrator to set the SMTP server.")),
    "reply_queued": ("ok", N_("The answer is queued and will be sent in a moment.")),
    "reply_invalid": ("error", N_("Write the text of the answer.")),
    "reply_nosmtp": ("error", N_("No mail server is set up for sending: ask the administrator to set the SMTP server.")),
}


def viewer_of(user: WebUser) -> service.Viewer:
    return service.Viewer(all_calls=True) if user.is_tenant_admin else service.Viewer(False, user.employee_id)


# --- the list ------------------------------------------------------------------------------------------
@router.get("/crm")
async def clients(request: Request, user: TenantUser, session: Session,
                  q: Annotated[str, Query(max_length=100)] = "",
                  page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    rows, total = await service.list_clients(session, user.tenant, q=q or None, limit=PAGE, offset=(page - 1) * PAGE)
    return render(request, "crm/index.html", {
        "rows": await service.clients_out(session, rows), "total": total, "q": q, "page": page,
        "pages": max(1, -(-total // PAGE)), "link": lambda n: urlencode({"q": q, "page": n}), "kinds": KINDS})


# --- a new client, an edit ------------------------------------------------------------------------------
async def _choices(session: AsyncSession, tenant_id: int) -> dict[str, Any]:
    owners = (await session.execute(select(Employee.id, Employee.full_name).where(
        Employee.tenant_id == tenant_id, Employee.active.is_(True)).order_by(Employee.full_name).limit(2000))).all()
    companies = (await session.execute(select(CrmClient.id, CrmClient.name).where(
        CrmClient.tenant_id == tenant_id, CrmClient.kind == "company").order_by(CrmClient.name).limit(2000))).all()
    return {"owners": [(i, n) for i, n in owners], "companies": [(i, n) for i, n in companies], "kinds": KINDS,
            "fields": await service.list_fields(session, tenant_id)}


def _lines(value: str) -> list[str]:
    return [line.strip() for line in re.split(r"[\n,;]+", value) if line.strip()]


def _field_value(definition: CrmField, raw: str) -> Any:
    """A custom field as typed -> JSON for the service (which checks it); numbers accept a decimal comma."""
    raw = raw.strip()
    if not raw:
        return None
    if definition.kind == "number":
        try:
            number = float(raw.replace(",", ".").replace(" ", ""))
        except ValueError:
            return raw  # the service says what is expected
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return raw


def _form_of(out: schemas.ClientOut | None, phone: str = "") -> dict[str, Any]:
    if out is None:
        return {"kind": "person", "name": "", "company_id": "", "owner_id": "", "phones": phone, "emails": "",
                "tags": "", "note": "", "fields": {}}
    return {"kind": out.kind, "name": out.name, "company_id": str(out.company_id or ""),
            "owner_id": str(out.owner_id or ""), "phones": "\n".join(p.number for p in out.phones),
            "emails": "\n".join(out.emails), "tags": ", ".join(out.tags), "note": "",
            "fields": {k: str(v) for k, v in out.fields.items()}}


def _errors(request: Request, exc: Exception) -> dict[str, str]:
    """Field -> message, in the request's language, from a schema or service error."""
    _ = gettext_for(request)
    messages = {"name": _("A name of 1 to 200 characters."), "phones": _("A phone number such as +7 495 123-45-67."),
                "emails": _("An e-mail address such as name@example.com."),
                "tags": _("Tags of at most 40 characters, separated by commas."),
                "owner_id": _("Choose from the list."), "company_id": _("Choose from the list."),
                "kind": _("Choose from the list."), "note": _("At most 10,000 characters.")}
    if isinstance(exc, PydanticValidationError):
        errors: dict[str, str] = {}
        for err in exc.errors():
            loc = [str(x) for x in err["loc"]]
            field = loc[0] if loc else ""
            if field == "phones" and len(loc) > 2:
                field = "phones"
            errors.setdefault(field, messages.get(field, _("Invalid value.")))
        return errors
    assert isinstance(exc, OrgError)
    field = (exc.field or "").split("[")[0]
    if field.startswith("fields."):
        return {"f_" + field.removeprefix("fields."): str(exc.message.split(": ", 1)[-1])}
    if isinstance(exc, service.Duplicate):
        return {field: str(_("%(what)s belongs to the client %(name)s.") % {
            "what": exc.message.split(" ")[1], "name": exc.client_name}), "duplicate": str(exc.client_id)}
    if field == "phones":
        return {"phones": f"{messages['phones']} ({exc.message.split(': ', 1)[-1]})"}
    return {field: messages.get(field, exc.message)}


async def _form_page(request: Request, session: AsyncSession, user: WebUser, form: dict[str, Any],
                     errors: dict[str, str], client: schemas.ClientOut | None = None,
                     status_code: int = 200) -> Response:
    context = await _choices(session, user.tenant)
    context.update(form=form, errors=errors, client=client)
    return render(request, "crm/edit.html", context, status_code=status_code)


@router.get("/crm/new")
async def new_client(request: Request, user: TenantUser, session: Session,
                     phone: Annotated[str, Query(max_length=40)] = "") -> Response:
    form = _form_of(None, phone)
    if user.employee_id is not None:
        form["owner_id"] = str(user.employee_id)  # who creates a client from a call usually owns it
    return await _form_page(request, session, user, form, {})


def _read_form(kind: str, name: str, company_id: str, owner_id: str, phones: str, emails: str, tags: str,
               note: str, raw_fields: dict[str, str]) -> dict[str, Any]:
    return {"kind": kind, "name": name, "company_id": company_id, "owner_id": owner_id, "phones": phones,
            "emails": emails, "tags": tags, "note": note, "fields": raw_fields}


async def _raw_fields(request: Request, session: AsyncSession, tenant_id: int) -> dict[str, str]:
    form = await request.form()
    out = {}
    for definition in await service.list_fields(session, tenant_id):
        value = form.get("f_" + definition.key)
        out[definition.key] = value[:1000] if isinstance(value, str) else ""
    return out


@router.post("/crm/new")
async def create_client(
    request: Request, user: TenantUser, session: Session,
    kind: Annotated[str, Form(max_length=20)] = "person", name: Annotated[str, Form(max_length=300)] = "",
    company_id: Annotated[str, Form(max_length=20)] = "", owner_id: Annotated[str, Form(max_length=20)] = "",
    phones: Annotated[str, Form(max_length=2000)] = "", emails: Annotated[str, Form(max_length=6000)] = "",
    tags: Annotated[str, Form(max_length=2000)] = "", note: Annotated[str, Form(max_length=10_000)] = "",
) -> Response:
    _ = gettext_for(request)
    raw = await _raw_fields(request, session, user.tenant)
    form = _read_form(kind, name, company_id, owner_id, phones, emails, tags, note, raw)
    definitions = {d.key: d for d in await service.list_fields(session, user.tenant)}
    try:
        data = schemas.ClientCreate(
            kind=kind, name=name, company_id=optional_id(company_id), owner_id=optional_id(owner_id),  # type: ignore[arg-type]
            phones=[schemas.PhoneIn(number=p) for p in _lines(phones)], emails=_lines(emails), tags=_lines(tags),
            fields={k: v for k, v in ((k, _field_value(definitions[k], r)) for k, r in raw.items()) if v is not None},
            note=note.strip() or None)
        client = await service.create_client(session, user.tenant, data, author_employee_id=user.employee_id)
        await session.commit()
    except BadId:
        return await _form_page(request, session, user, form, {"owner_id": _("Choose from the list.")},
                                status_code=422)
    except (PydanticValidationError, OrgError) as exc:
        if isinstance(exc, OrgError) and exc.status == 404:
            raise
        await session.rollback()
        return await _form_page(request, session, user, form, _errors(request, exc),
                                status_code=409 if isinstance(exc, service.Duplicate) else 422)
    return RedirectResponse(f"/crm/{client.id}", status_code=303)


@router.get("/crm/{client_id:int}/edit")
async def edit_client(request: Request, client_id: int, user: TenantUser, session: Session) -> Response:
    out = await service.client_out(session, await service.get_client(session, user.tenant, client_id))
    return await _form_page(request, session, user, _form_of(out), {}, out)


@router.post("/crm/{client_id:int}/edit")
async def save_client(
    request: Request, client_id: int, user: TenantUser, session: Session,
    name: Annotated[str, Form(max_length=300)] = "",
    company_id: Annotated[str, Form(max_length=20)] = "", owner_id: Annotated[str, Form(max_length=20)] = "",
    phones: Annotated[str, Form(max_length=2000)] = "", emails: Annotated[str, Form(max_length=6000)] = "",
    tags: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    _ = gettext_for(request)
    out = await service.client_out(session, await service.get_client(session, user.tenant, client_id))
    raw = await _raw_fields(request, session, user.tenant)
    form = _read_form(out.kind, name, company_id, owner_id, phones, emails, tags, "", raw)
    definitions = {d.key: d for d in await service.list_fields(session, user.tenant)}
    try:
        data = schemas.ClientUpdate(
            name=name, company_id=optional_id(company_id), owner_id=optional_id(owner_id),
            phones=[schemas.PhoneIn(number=p) for p in _lines(phones)], emails=_lines(emails), tags=_lines(tags),
            fields={k: _field_value(definitions[k], r) for k, r in raw.items()})
        await service.update_client(session, user.tenant, client_id, data)
        await session.commit()
    except BadId:
        return await _form_page(request, session, user, form, {"owner_id": _("Choose from the list.")}, out,
                                status_code=422)
    except (PydanticValidationError, OrgError) as exc:
        if isinstance(exc, OrgError) and exc.status == 404:
            raise
        await session.rollback()
        return await _form_page(request, session, user, form, _errors(request, exc), out,
                                status_code=409 if isinstance(exc, service.Duplicate) else 422)
    return RedirectResponse(f"/crm/{client_id}", status_code=303)


# --- custom fields (admins) -----------------------------------------------------------------------------
@router.get("/crm/fields")
async def fields_page(request: Request, user: TenantAdminUser, session: Session) -> Response:
    return render(request, "crm/fields.html", {"rows": await service.list_fields(session, user.tenant, None),
                                               "field_kinds": FIELD_KINDS, "entities": FIELD_ENTITIES, "form": {},
                                               "errors": {}})


@router.post("/crm/fields")
async def add_field(request: Request, user: TenantAdminUser, session: Session,
                    key: Annotated[str, Form(max_length=60)] = "", label: Annotated[str, Form(max_length=200)] = "",
                    kind: Annotated[str, Form(max_length=20)] = "", choices: Annotated[str, Form(max_length=4000)] = "",
                    required: Annotated[str, Form(max_length=5)] = "",
                    entity: Annotated[str, Form(max_length=8)] = "client") -> Response:
    _ = gettext_for(request)
    form = {"key": key, "label": label, "kind": kind, "choices": choices, "required": required == "1", "entity": entity}
    try:
        await service.create_field(session, user.tenant, schemas.FieldCreate(
            key=key.strip(), label=label, kind=kind, choices=_lines(choices), required=required == "1",  # type: ignore[arg-type]
            entity=entity))  # type: ignore[arg-type]
        await session.commit()
    except (PydanticValidationError, OrgError) as exc:
        await session.rollback()
        messages = {"key": _("Latin small letters, digits and _, starting with a letter."),
                    "label": _("A name of 1 to 100 characters."), "kind": _("Choose from the list."),
                    "choices": _("A choice field needs its choices, each once.")}
        if isinstance(exc, PydanticValidationError):
            errors = {str(e["loc"][0]): messages.get(str(e["loc"][0]), _("Invalid value.")) for e in exc.errors()}
        else:
            errors = {exc.field or "key": _("This key is taken.") if exc.status == 409
                      else messages.get(exc.field or "", exc.message)}
        return render(request, "crm/fields.html", {"rows": await service.list_fields(session, user.tenant, None),
                                                   "field_kinds": FIELD_KINDS, "entities": FIELD_ENTITIES, "form": form,
                                                   "errors": errors},
                      status_code=422)
    return RedirectResponse("/crm/fields", status_code=303)


@router.post("/crm/fields/{field_id}/delete")
async def remove_field(field_id: int, user: TenantAdminUser, session: Session) -> Response:
    await service.delete_field(session, user.tenant, field_id)
    await session.commit()
    return RedirectResponse("/crm/fields", status_code=303)


# --- CSV import and export (admins) ---------------------------------------------------------------------
SHOWN_ERRORS = 200


@router.get("/crm/import")
async def import_page(request: Request, user: TenantAdminUser, session: Session) -> Response:
    return render(request, "crm/import.html", {"fields": await service.list_fields(session, user.tenant),
                                               "result": None, "error": ""})


@router.post("/crm/import")
async def import_clients(request: Request, user: TenantAdminUser, session: Session,
                         file: Annotated[UploadFile | None, File()] = None) -> Response:
    """The upload is spooled to a temporary file by the form parser (never all in memory); the rows are
    checked and written in this request (10 000 rows: seconds, not minutes)."""
    _ = gettext_for(request)
    fields = await service.list_fields(session, user.tenant)
    if file is None or not file.size:
        return render(request, "crm/import.html", {"fields": fields, "result": None,
                                                   "error": _("Choose a CSV file with the clients.")}, status_code=422)
    result = await transfer.import_clients(session, user.tenant, file.file)
    if result.ok:
        await session.commit()
    row_errors = [(e.line, _(e.template).format(**dict(e.params))) for e in result.errors[:SHOWN_ERRORS]]
    more = len(result.errors) + result.more_errors - len(row_errors)
    return render(request, "crm/import.html", {
        "fields": fields, "result": result, "row_errors": row_errors, "more": more, "filename": file.filename or "",
        "error": ""}, status_code=200 if result.ok else 422)


@router.get("/crm/export.csv")
async def export_clients(request: Request, user: TenantAdminUser) -> Response:
    return StreamingResponse(transfer.export_clients(get_db(request), user.tenant), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="clients.csv"'})


# --- the card -------------------------------------------------------------------------------------------
@router.get("/crm/{client_id:int}")
async def client_card(request: Request, client_id: int, user: TenantUser, session: Session, settings: Cfg,
                      page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    client = await service.get_client(session, user.tenant, client_id)  # another tenant's: 404 page

    def recorded(cdr: Cdr) -> bool:
        return recording_file(settings.data_dir, cdr.recording_path) is not None

    entries, total = await mail.timeline(session, user.tenant, client_id, viewer_of(user), has_recording=recorded,
                                         limit=PAGE, offset=(page - 1) * PAGE)
    client_deals, _ = await deals.list_deals(session, user.tenant, client_id=client_id, limit=200)
    client_tasks, _ = await tasks.list_tasks(session, user.tenant, client_id=client_id, done=False, limit=200)
    outcome = request.query_params.get("call")
    return render(request, "crm/card.html", {
        "call_outcome": outcome if outcome in CALL_OUTCOMES else None, "call_outcomes": CALL_OUTCOMES,
        "call_to": (request.query_params.get("to") or "")[:32],
        "client": await service.client_out(session, client), "fields": await service.list_fields(session, user.tenant),
        "notes": await service.list_notes(session, user.tenant, client_id), "entries": entries, "total": total,
        "mail_states": MAIL_STATES, "mail_result": MAIL_RESULTS.get(request.query_params.get("mail", "")),
        "reply_result": request.query_params.get("mail", "").startswith("reply_"), "quote": mailthread.quoted,
        "reply_subject": mailthread.reply_subject,
        "page": page, "pages": max(1, -(-total // PAGE)), "link": lambda n: urlencode({"page": n}),
        "kinds": KINDS, "directions": DIRECTIONS, "dispositions": DISPOSITIONS, "errors": {},
        "click_reasons": CLICK_TO_CALL_REASONS,
        "deals": await deals.deals_out(session, user.tenant, client_deals),
        "price_history": await invoices.price_history(session, user.tenant, client_id),
        "invoice_statuses": INVOICE_STATUSES,
        "tasks": await tasks.tasks_out(session, user.tenant, client_tasks)})


# click-to-call (telephony/originate.py): the outcome shown on the card after the button's POST
CALL_OUTCOMES = {
    "ringing": N_("Your phone is ringing: answer it, then %(number)s is called."),
    "not_registered": N_("Your phone is not registered, so the call cannot start."),
    "no_extension": N_("Your account has no extension to call from."),
    "not_allowed": N_("Your calling permissions do not allow this number."),
    "invalid_number": N_("This number cannot be dialed."),
    "too_many_originates": N_("The company is placing too many calls this way right now: try again in a minute."),
    "unavailable": N_("Calls cannot be placed from here now."),
    "failed": N_("The call could not start."),
}


# a click-to-call of the timeline that failed before it was a call (zvonok.originates), by its reason
CLICK_TO_CALL_REASONS = {
    "not_registered": N_("Click-to-call: the employee's phone was not registered"),
    "server_restarted": N_("Click-to-call: the server restarted while it rang"),
    "employee_no_answer": N_("Click-to-call: the employee did not answer"),
    "employee_busy": N_("Click-to-call: the employee's phone was busy"),
    "employee_declined": N_("Click-to-call: the employee declined"),
    "employee_unavailable": N_("Click-to-call: the employee's phone was unreachable"),
    "employee_hung_up": N_("Click-to-call: the employee hung up"),
    "busy": N_("Click-to-call: client busy"),
    "declined": N_("Click-to-call: the client declined"),
    "no_answer": N_("Click-to-call: the client did not answer"),
    "failed": N_("Click-to-call: failed"),
}


@router.post("/crm/{client_id:int}/call")
async def call_client(request: Request, client_id: int, user: TenantUser, session: Session,
                      number: Annotated[str, Form(max_length=32)] = "") -> Response:
    """The "Call" button next to a client's number: the user's phone rings, then the number is dialed."""
    originator = getattr(request.app.state, "originator", None)
    if originator is None:
        await service.get_client(session, user.tenant, client_id)
        outcome = "unavailable"
    else:
        try:
            await originate_http.call_client(session, originator, user.tenant, user.employee_id, client_id,
                                             number=number or None, requested_by=f"account:{user.account_id}")
        except OriginateRefused as exc:
            outcome = exc.reason if exc.reason in CALL_OUTCOMES else "failed"
        else:
            outcome = "ringing"
    return RedirectResponse(f"/crm/{client_id}?{urlencode({'call': outcome, 'to': number})}#client-card",
                            status_code=303)


@router.post("/crm/{client_id:int}/notes")
async def add_note(request: Request, client_id: int, user: TenantUser, session: Session,
                   text: Annotated[str, Form(max_length=20_000)] = "") -> Response:
    try:
        note = schemas.NoteIn(text=text)
    except PydanticValidationError:
        await service.get_client(session, user.tenant, client_id)
        return RedirectResponse(f"/crm/{client_id}?note=empty#notes", status_code=303)
    await service.add_note(session, user.tenant, client_id, note.text, author_employee_id=user.employee_id)
    await session.commit()
    return RedirectResponse(f"/crm/{client_id}#notes", status_code=303)


@router.post("/crm/{client_id:int}/emails")
async def send_email(client_id: int, user: TenantUser, session: Session, settings: Cfg,
                     to: Annotated[str, Form(max_length=300)] = "", subject: Annotated[str, Form(max_length=1000)] = "",
                     body: Annotated[str, Form(max_length=200_000)] = "") -> Response:
    """Queue an e-mail to the client; the sending job sends it (never this request)."""
    try:
        letter = schemas.EmailIn(to=to, subject=subject, body=body.replace("\r\n", "\n"))
    except PydanticValidationError:
        await service.get_client(session, user.tenant, client_id)  # another tenant's: 404
        return RedirectResponse(f"/crm/{client_id}?mail=invalid#write-email", status_code=303)
    try:
        await mail.queue_for_client(session, user.tenant, client_id, letter, SmtpServer.platform(settings),
                                    author_employee_id=user.employee_id)
    except Conflict:
        return RedirectResponse(f"/crm/{client_id}?mail=nosmtp#write-email", status_code=303)
    await session.commit()
    return RedirectResponse(f"/crm/{client_id}?mail=queued#timeline", status_code=303)


@router.post("/crm/{client_id:int}/emails/{message_id:int}/reply")
async def reply_email(client_id: int, message_id: int, user: TenantUser, session: Session, settings: Cfg,
                      body: Annotated[str, Form(max_length=200_000)] = "") -> Response:
    """The "Reply" form of a received e-mail on the timeline: queued to its sender, in its thread."""
    parent = await mail.get_message(session, user.tenant, message_id)  # another tenant's: 404
    if parent.client_id != client_id:
        raise NotFound("no such e-mail of this client")
    try:
        answer = schemas.ReplyIn(body=body.replace("\r\n", "\n"))
    except PydanticValidationError:
        return RedirectResponse(f"/crm/{client_id}?mail=reply_invalid#timeline", status_code=303)
    try:
        await mail.queue_reply(session, user.tenant, message_id, answer, SmtpServer.platform(settings),
                               author_employee_id=user.employee_id)
    except Conflict as exc:
        if exc.field:  # not a received e-mail: no form offers that
            raise
        return RedirectResponse(f"/crm/{client_id}?mail=reply_nosmtp#timeline", status_code=303)
    await session.commit()
    return RedirectResponse(f"/crm/{client_id}?mail=reply_queued#timeline", status_code=303)


@router.post("/crm/{client_id:int}/delete")
async def delete_client(client_id: int, user: TenantUser, session: Session) -> Response:
    await service.delete_client(session, user.tenant, client_id)
    await session.commit()
    return RedirectResponse("/crm", status_code=303)
