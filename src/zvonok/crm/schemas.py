"""Pydantic schemas of the CRM API. Phones arrive as people write them and are normalized to E.164 by the
service (it knows the owner's office and so the local dialing rules); custom field values are checked by
the service against the tenant's definitions (their kinds are data, not types)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from zvonok.org.schemas import Currency, Email, Name
from zvonok.sip.grammar import check_text

Kind = Literal["person", "company"]
FieldKind = Literal["text", "number", "date", "choice"]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40), AfterValidator(check_text)]
PhoneText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, max_length=40), AfterValidator(check_text)]
NoteText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]
FieldKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]  # INTEGER columns (zvonok.api.deps.MAX_ID)
MAX_PHONES = 20
MAX_EMAILS = 20
MAX_TAGS = 30


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhoneIn(_In):
    number: PhoneText = Field(description="As written (+7 495 123-45-67, 8 495 ..., 123-45-67 with the owner's "
                                          "office area code); stored in E.164")
    label: Label = ""


class ClientCreate(_In):
    kind: Kind = "person"
    name: Name
    company_id: Id | None = Field(default=None, description="A person's company (a client of kind company)")
    owner_id: Id | None = Field(default=None, description="The employee in charge of the client")
    phones: list[PhoneIn] = Field(default_factory=list, max_length=MAX_PHONES)
    emails: list[Email] = Field(default_factory=list, max_length=MAX_EMAILS)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    fields: dict[str, Any] = Field(default_factory=dict, description="Custom fields by key (see /crm/fields)")
    note: NoteText | None = Field(default=None, description="A first note")


class ClientUpdate(_In):
    """Partial: lists given replace the client's (phones, emails, tags); ``fields`` are merged (null removes)."""

    name: Name | None = None
    company_id: Id | None = None
    owner_id: Id | None = None
    phones: list[PhoneIn] | None = Field(default=None, max_length=MAX_PHONES)
    emails: list[Email] | None = Field(default=None, max_length=MAX_EMAILS)
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)
    fields: dict[str, Any] | None = None


class PhoneOut(BaseModel):
    number: str
    label: str


class NoteIn(_In):
    text: NoteText


class NoteOut(BaseModel):
    id: int
    text: str
    author_employee_id: int | None
    created_at: datetime


class ClientOut(BaseModel):
    id: int
    tenant_id: int
    kind: str
    name: str
    company_id: int | None
    company_name: str | None = None
    owner_id: int | None
    owner_name: str | None = None
    phones: list[PhoneOut]
    emails: list[str]
    tags: list[str]
    fields: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class DuplicateRow(BaseModel):
    line: int
    client_id: int = Field(description="The existing client that has the row's phone or e-mail")
    value: str = Field(description="That phone (E.164) or e-mail")


class ClientsImported(BaseModel):
    created: int
    duplicates: list[DuplicateRow] = Field(description="Rows skipped: an existing client has their phone or e-mail")


class MergeIn(_In):
    source_id: Id = Field(description="The client merged into this one (and then gone): its phones, e-mails, "
                                       "notes, tags, missing fields and people move here")


class FieldCreate(_In):
    key: FieldKey
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
                     AfterValidator(check_text)]
    kind: FieldKind
    choices: list[Label] = Field(default_factory=list, max_length=100, description="kind choice: the values")
    required: bool = False
    position: int = Field(default=0, ge=0, le=1000)
    entity: Literal["client", "deal"] = Field(default="client", description="A field of clients or of deals")


class FieldOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    label: str
    kind: str
    choices: list[str]
    required: bool
    position: int
    entity: str


class CallOut(BaseModel):
    """One call of a client's timeline; ``detail`` and ``recording`` are the console's (and the viewer's)."""

    id: int
    call_id: str
    started_at: datetime
    direction: str
    disposition: str
    duration: int
    billsec: int
    caller_number: str
    caller_name: str
    callee_number: str
    callee_name: str
    employee_name: str | None
    client_number: str = Field(description="The client's number in this call")
    has_recording: bool
    detail_url: str | None = Field(description="The console's page of the call, for a viewer who may open it")
    recording_url: str | None




# --- the sales process ------------------------------------------------------------------------------
StageKind = Literal["open", "won", "lost"]
Text200 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(check_text)]
StepText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(check_text)]
RequiredField = Annotated[str, StringConstraints(pattern=r"^(amount|expected_close|owner_id|client_id|"
                                                        r"(fields|client)\.[a-z][a-z0-9_]{0,39})$")]
Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]
PaymentMethod = Literal["cash", "card", "transfer", "other"]


class StageIn(_In):
    name: Text200
    kind: StageKind = "open"
    goal: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] = ""
    probability: int = Field(default=0, ge=0, le=100, description="Percent")
    required_fields: list[RequiredField] = Field(default_factory=list, max_length=50, description=(
        "Deal fields that must be filled before a deal moves past this stage: amount, expected_close, owner_id, "
        "client_id, fields.<key> (a deal field), client.<key> (a field of the deal's client)"))
    required_steps: list[StepText] = Field(default_factory=list, max_length=50,
                                           description="Checklist items that must be done before a deal moves on")
    position: int | None = Field(default=None, ge=0, le=1000, description="Where (default: after the open stages)")


class StageUpdate(_In):
    name: Text200 | None = None
    goal: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None
    probability: int | None = Field(default=None, ge=0, le=100)
    required_fields: list[RequiredField] | None = Field(default=None, max_length=50)
    required_steps: list[StepText] | None = Field(default=None, max_length=50)
    position: int | None = Field(default=None, ge=0, le=1000)


class StageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    pipeline_id: int
    name: str
    kind: str
    position: int
    goal: str
    probability: int
    required_fields: list[str]
    required_steps: list[str]


class PipelineCreate(_In):
    name: Text200
    currency: Currency = "RUB"
    stages: list[StageIn] | None = Field(default=None, max_length=50,
                                         description="In order; default: New, Qualified, Proposal, Won, Lost")


class PipelineUpdate(_In):
    name: Text200 | None = None
    currency: Currency | None = None


class PipelineOut(BaseModel):
    id: int
    name: str
    currency: str
    stages: list[StageOut]


class DealCreate(_In):
    title: Text200
    pipeline_id: Id | None = Field(default=None, description="Default: the tenant's first pipeline")
    stage_id: Id | None = Field(default=None, description="Default: the pipeline's first stage")
    client_id: Id | None = None
    owner_id: Id | None = Field(default=None, description="Default: the creating employee")
    amount: Money | None = None
    currency: Currency | None = None
    expected_close: date | None = None
    fields: dict[str, Any] = Field(default_factory=dict, description="Deal fields by key (entity deal)")


class DealUpdate(_In):
    """Partial; ``fields`` are merged (null removes)."""

    title: Text200 | None = None
    client_id: Id | None = None
    owner_id: Id | None = None
    amount: Money | None = None
    currency: Currency | None = None
    expected_close: date | None = None
    fields: dict[str, Any] | None = None


class StepIn(_In):
    stage_id: Id
    step: StepText
    done: bool = True


class MoveIn(_In):
    stage_id: Id
    lost_reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None


class MoveOut(BaseModel):
    from_stage_id: int | None
    to_stage_id: int | None
    employee_id: int | None
    employee_name: str | None = None
    at: datetime


class PaymentIn(_In):
    amount: Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2)]
    paid_on: date
    method: PaymentMethod = "transfer"
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] = ""
    invoice_id: Id | None = Field(default=None, description="The deal's invoice this payment settles")


class PaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    deal_id: int
    amount: Decimal
    paid_on: date
    method: str
    note: str
    invoice_id: int | None = None


InvoiceNumber = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40),
                          AfterValidator(check_text)]
PositiveMoney = Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2)]
InvoiceStatus = Literal["draft", "issued", "paid", "partly_paid", "cancelled"]


class InvoiceCreate(_In):
    number: InvoiceNumber = Field(description="Unique in the company")
    amount: PositiveMoney
    currency: Currency | None = Field(default=None, description="Default: the deal's currency")
    issued_on: date | None = Field(default=None, description="Default: today")
    due_on: date = Field(description="On or after issued_on")
    draft: bool = Field(default=False, description="A draft is not yet sent: it is never overdue")


class InvoiceUpdate(_In):
    """Partial. ``draft: false`` issues a draft; a cancelled invoice is not changed."""

    number: InvoiceNumber | None = None
    amount: PositiveMoney | None = None
    currency: Currency | None = None
    issued_on: date | None = None
    due_on: date | None = None
    draft: bool | None = None


class InvoiceOut(BaseModel):
    id: int
    deal_id: int
    number: str
    amount: Decimal
    currency: str
    issued_on: date
    due_on: date
    status: InvoiceStatus
    paid: Decimal
    unpaid: Decimal
    overdue: bool
    overdue_task_id: int | None = None


class InvoicePaymentIn(_In):
    amount: PositiveMoney
    paid_on: date
    method: PaymentMethod = "transfer"
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] = ""


class PaymentsImported(BaseModel):
    created: int
    payment_ids: list[int]


class DealOut(BaseModel):
    id: int
    tenant_id: int
    pipeline_id: int
    stage_id: int
    stage_name: str
    stage_kind: str
    probability: int
    title: str
    client_id: int | None
    client_name: str | None = None
    owner_id: int | None
    owner_name: str | None = None
    amount: Decimal | None
    currency: str
    expected_close: date | None
    fields: dict[str, Any]
    steps_done: dict[str, list[str]]
    lost_reason: str | None
    closed_at: datetime | None
    paid: Decimal
    remaining: Decimal | None
    missing: list[str] = Field(description="What the current stage still needs before the deal can move on")
    created_at: datetime
    updated_at: datetime


class TaskCreate(_In):
    title: Text200
    due_at: datetime
    client_id: Id | None = None
    deal_id: Id | None = None
    assignee_id: Id | None = Field(default=None, description="Default: the creating employee")


class TaskUpdate(_In):
    title: Text200 | None = None
    due_at: datetime | None = None
    assignee_id: Id | None = None
    done: bool | None = None


class TaskOut(BaseModel):
    id: int
    title: str
    kind: str
    client_id: int | None
    client_name: str | None = None
    deal_id: int | None
    deal_title: str | None = None
    assignee_id: int | None
    assignee_name: str | None = None
    number: str | None
    due_at: datetime
    done: bool
    done_at: datetime | None
    overdue: bool


class SettingsIn(_In):
    callback_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60,
                                  description="A missed call's call-back task is due this many minutes later")
    escalate_hours: int = Field(default=24, ge=1, le=24 * 90,
                                description="A task overdue this long is escalated to the department head")
    owner_ring_seconds: int = Field(default=0, ge=0, le=120,
                                    description="Routing by owner: an outside call from a client's number rings "
                                                "the client's owner this many seconds before its usual destination "
                                                "(0: off)")


class SettingsOut(SettingsIn):
    pass


# --- e-mail on the timeline (zvonok.crm.mail) ---------------------------------------------------------
Subject = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
                    AfterValidator(check_text)]
MailBody = Annotated[str, StringConstraints(min_length=1, max_length=100_000)]
ImapHost = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=253,
                                            pattern=r"^[A-Za-z0-9.:\[\]-]+$")]
# ASCII folder names only (others need IMAP's modified UTF-7); no quotes or backslashes: it is sent quoted
ImapFolder = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200,
                                              pattern=r"^[A-Za-z0-9 ._/&+-]+$")]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=254), AfterValidator(check_text)]


class EmailIn(_In):
    to: Email = Field(description="One of the client's e-mails, or any address")
    subject: Subject
    body: MailBody = Field(description="Plain text")


class EmailOut(BaseModel):
    """An e-mail of a client's timeline: ``out`` (queued, sent, failed with ``error``) or ``in`` (received)."""

    id: int
    client_id: int
    direction: Literal["in", "out"]
    from_addr: str
    to_addr: str
    subject: str
    body: str
    message_id: str | None
    at: datetime
    sent_at: datetime | None
    status: Literal["queued", "sent", "failed", "received"]
    error: str | None
    attempts: int
    author_employee_id: int | None
    in_reply_to_id: int | None = Field(default=None, description="The e-mail of the timeline this one answers")


class ReplyIn(_In):
    """An answer to a received e-mail: it goes to the sender, with ``Re:`` the subject, in its thread."""

    body: MailBody = Field(description="Plain text (the quoted original, if wanted, is part of it)")


class ClickToCallOut(BaseModel):
    """A click-to-call of the client that failed before it became a call (no CDR: e.g. the employee's
    phone was not registered, or the server stopped while it rang); a failure after that is the call's."""

    id: int
    call_id: str
    at: datetime
    extension: str = Field(description="The employee's extension that was to ring first")
    client_number: str = Field(description="The client's number it was to dial")
    employee_name: str | None
    phase: str
    reason: str | None = Field(description="Why it failed: not_registered, server_restarted, employee_no_answer …")


class TimelineItem(BaseModel):
    """One entry of a client's timeline, newest first: a call, an e-mail, or a click-to-call that failed
    before any call."""

    kind: Literal["call", "email", "click_to_call"]
    at: datetime
    call: CallOut | None = None
    email: EmailOut | None = None
    click_to_call: ClickToCallOut | None = None


class ImapIn(_In):
    """The company's IMAP mailbox where replies arrive (PUT replaces it; a password left out is kept)."""

    host: ImapHost
    port: int = Field(default=993, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "tls"
    username: Secret
    password: Secret | None = Field(default=None, description="Write-only: never answered")
    folder: ImapFolder = "INBOX"
    enabled: bool = True
    poll_seconds: int | None = Field(default=None, ge=30, le=86_400,
                                     description="Seconds between reads; null: the platform's interval")


class ImapOut(BaseModel):
    host: str
    port: int
    security: str
    username: str
    has_password: bool
    folder: str
    enabled: bool
    uidvalidity: int | None
    last_uid: int
    polled_at: datetime | None
    last_error: str | None
    poll_seconds: int | None


class ImapTestOut(BaseModel):
    """The result of logging in to the stored mailbox: ``ok`` with the folder's message count, or the error."""

    ok: bool
    messages: int | None = None
    error: str | None = None
