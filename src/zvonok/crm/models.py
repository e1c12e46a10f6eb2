"""Tables of the CRM. Every row names its tenant; a client's phones, e-mails and notes go with it.

A phone is stored in E.164 (``number``) and as its digits (``digits``, the same without "+"): exact
look-ups (duplicates, the screen pop, the timeline) use ``number``, "any part of the number" searches
``digits``. Phones and e-mails are unique in a tenant, so one number names at most one client (the
screen pop needs one answer). Custom fields are defined per tenant (:class:`CrmField`) and their values
live in the client's ``fields`` (JSON, checked on write against the definitions).

The full-text index is not here: each backend keeps it in its own native form (:mod:`zvonok.crm.search`),
in tables the migration creates outside ``Base.metadata``.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from zvonok.storage.base import Base, TenantScoped, Timestamped, utcnow

CLIENT_KINDS = ("person", "company")
FIELD_KINDS = ("text", "number", "date", "choice")


class CrmClient(TenantScoped, Timestamped, Base):
    __tablename__ = "crm_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # person | company
    name: Mapped[str] = mapped_column(String(200))
    # a person's company (a client of kind "company" of the same tenant)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("crm_clients.id", ondelete="SET NULL"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="SET NULL"), index=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CrmPhone(TenantScoped, Base):
    __tablename__ = "crm_phones"
    __table_args__ = (UniqueConstraint("tenant_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("crm_clients.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(20))  # E.164
    digits: Mapped[str] = mapped_column(String(20))
    label: Mapped[str] = mapped_column(String(40), default="")


class CrmEmail(TenantScoped, Base):
    __tablename__ = "crm_emails"
    __table_args__ = (UniqueConstraint("tenant_id", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("crm_clients.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(254))  # lower case


class CrmNote(TenantScoped, Base):
    __tablename__ = "crm_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("crm_clients.id", ondelete="CASCADE"), index=True)
    author_employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CrmField(TenantScoped, Timestamped, Base):
    """A custom field of the tenant's clients: ``key`` in the client's ``fields``, its kind and choices."""

    __tablename__ = "crm_fields"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(40))
    label: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))  # text | number | date | choice
    choices: Mapped[list[str]] = mapped_column(JSON, default=list)
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    entity: Mapped[str] = mapped_column(String(8), default="client", server_default="client")  # client | deal



# --- the sales process (zvonok.crm.deals, zvonok.crm.tasks) -------------------------------------------
STAGE_KINDS = ("open", "won", "lost")
PAYMENT_METHODS = ("cash", "card", "transfer", "other")


class CrmSettings(TenantScoped, Base):
    """A tenant's CRM settings (one row, made on first use with the defaults)."""

    __tablename__ = "crm_settings"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    callback_minutes: Mapped[int] = mapped_column(Integer, default=60)  # a missed call's "call back" task is due
    escalate_hours: Mapped[int] = mapped_column(Integer, default=24)  # overdue this long: the head is told
    # an outside call from a client's number rings the client's owner this long first (0: off)
    owner_ring_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # payment notifications by webhook (zvonok.crm.payment_hook): the public part of their URL and the HMAC
    # key they are signed with; None: off
    payment_hook_key: Mapped[str | None] = mapped_column(String(40), unique=True, index=True)
    payment_hook_secret: Mapped[str | None] = mapped_column(String(100))


class CrmPipeline(TenantScoped, Timestamped, Base):
    __tablename__ = "crm_pipelines"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3))


class CrmStage(TenantScoped, Base):
    """A stage of a pipeline, in ``position`` order. ``required_fields`` name deal fields (``amount``,
    ``expected_close``, ``owner_id``, ``fields.<key>`` of the deal, ``client.<key>`` of its client) and
    ``required_steps`` the checklist items that must be done before a deal moves past the stage."""

    __tablename__ = "crm_stages"

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("crm_pipelines.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8), default="open")  # open | won | lost
    goal: Mapped[str] = mapped_column(Text, default="")
    probability: Mapped[int] = mapped_column(Integer, default=0)  # percent
    required_fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    required_steps: Mapped[list[str]] = mapped_column(JSON, default=list)


class CrmDeal(TenantScoped, Timestamped, Base):
    __tablename__ = "crm_deals"

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("crm_pipelines.id", ondelete="CASCADE"), index=True)
    stage_id: Mapped[int] = mapped_column(ForeignKey("crm_stages.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("crm_clients.id", ondelete="SET NULL"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="SET NULL"), index=True)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    expected_close: Mapped[date | None] = mapped_column(Date)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # the checklist: done steps by stage id ("12": ["Send the offer"])
    steps_done: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    lost_reason: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column()


class CrmDealMove(TenantScoped, Base):
    """The stage history of a deal: who moved it from which stage to which, when (the first row: created)."""

    __tablename__ = "crm_deal_moves"

    id: Mapped[int] = mapped_column(primary_key=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("crm_deals.id", ondelete="CASCADE"), index=True)
    from_stage_id: Mapped[int | None] = mapped_column(ForeignKey("crm_stages.id", ondelete="SET NULL"))
    to_stage_id: Mapped[int | None] = mapped_column(ForeignKey("crm_stages.id", ondelete="SET NULL"), index=True)
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class CrmPayment(TenantScoped, Base):
    __tablename__ = "crm_payments"

    id: Mapped[int] = mapped_column(primary_key=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("crm_deals.id", ondelete="CASCADE"), index=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    paid_on: Mapped[date] = mapped_column(Date)
    method: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # the invoice the payment settles (zvonok.crm.invoices); None: paid on the deal as a whole
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("crm_invoices.id", ondelete="SET NULL"), index=True)


INVOICE_STATES = ("draft", "issued", "cancelled")


class CrmInvoice(TenantScoped, Timestamped, Base):
    """An invoice of a deal. ``state`` is what people set (draft, issued, cancelled); the status shown
    (paid, partly paid) follows from the payments linked to it (:func:`zvonok.crm.invoices.invoice_status`).
    ``overdue_at`` is when the overdue scan made its task (``overdue_task_id``, None once that task is
    deleted): set once, so an invoice makes one task whatever happens to it."""

    __tablename__ = "crm_invoices"
    __table_args__ = (UniqueConstraint("tenant_id", "number"),
                      CheckConstraint("state IN ('draft', 'issued', 'cancelled')", name="state"))

    id: Mapped[int] = mapped_column(primary_key=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("crm_deals.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(40))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    issued_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date, index=True)
    state: Mapped[str] = mapped_column(String(10), default="issued")
    overdue_at: Mapped[datetime | None] = mapped_column()
    overdue_task_id: Mapped[int | None] = mapped_column(ForeignKey("crm_tasks.id", ondelete="SET NULL"))


class CrmTask(TenantScoped, Timestamped, Base):
    """A task on a client or a deal. ``reminded_at``/``escalated_at`` are set when the reminder and the
    escalation went out, so the scheduler (which reads due tasks from here) tells each once, restarts or not.
    ``cdr_id`` is the missed call a "call back" task was made for (one task per call)."""

    __tablename__ = "crm_tasks"
    __table_args__ = (UniqueConstraint("tenant_id", "cdr_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="task")  # task | call_back | invoice
    client_id: Mapped[int | None] = mapped_column(ForeignKey("crm_clients.id", ondelete="CASCADE"), index=True)
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("crm_deals.id", ondelete="CASCADE"), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="SET NULL"), index=True)
    author_employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="SET NULL"))
    number: Mapped[str | None] = mapped_column(String(64))  # a call back's number
    cdr_id: Mapped[int | None] = mapped_column(ForeignKey("cdrs.id", ondelete="SET NULL"))
    due_at: Mapped[datetime] = mapped_column(index=True)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    done_at: Mapped[datetime | None] = mapped_column()
    reminded_at: Mapped[datetime | None] = mapped_column()
    escalated_at: Mapped[datetime | None] = mapped_column()


# --- e-mail on the timeline (zvonok.crm.mail) ------------------------------------------------------------
MESSAGE_STATES = ("queued", "sent", "failed", "received")
MAIL_SECURITY = ("none", "starttls", "tls")


class CrmMessage(TenantScoped, Base):
    """An e-mail on a client's timeline: one we send (``out``: queued, then sent or failed, the table is
    the sending job's queue) or a reply fetched by IMAP (``in``: received). ``message_id`` is the
    Message-ID header with its angle brackets, unique in a tenant: a reply names ours in In-Reply-To or
    References, and a message seen twice (two folders, a restart) is logged once."""

    __tablename__ = "crm_messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "message_id"),
        CheckConstraint("direction IN ('in', 'out')", name="direction"),
        CheckConstraint("status IN ('queued', 'sent', 'failed', 'received')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("crm_clients.id", ondelete="CASCADE"), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    from_addr: Mapped[str] = mapped_column(String(254))
    to_addr: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)  # queued (out) or its Date (in)
    sent_at: Mapped[datetime | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(8))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None] = mapped_column(index=True)  # the sending job's next try
    author_employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="SET NULL"))
    # the thread (RFC 5322 §3.6.4): the message of ours this one answers (a reply written here, or a fetched
    # one whose In-Reply-To/References names one of ours), and the ids of its References header in order,
    # space-separated, which a reply to it carries on
    in_reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("crm_messages.id", ondelete="SET NULL"),
                                                       index=True)
    thread_refs: Mapped[str | None] = mapped_column(Text)


class CrmImap(TenantScoped, Timestamped, Base):
    """A company's IMAP mailbox where replies arrive, and how far the poller has read it: the folder's
    UIDVALIDITY and the last UID looked at (a new UIDVALIDITY reads the folder again from ``since``).
    The password is kept as given, like the company's SMTP password (the poller must present it)."""

    __tablename__ = "crm_imap"
    __table_args__ = (UniqueConstraint("tenant_id"),
                      CheckConstraint("security IN ('none', 'starttls', 'tls')", name="security"))

    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer, default=993)
    security: Mapped[str] = mapped_column(String(8), default="tls")
    username: Mapped[str] = mapped_column(String(254))
    password: Mapped[str] = mapped_column(String(254))
    folder: Mapped[str] = mapped_column(String(200), default="INBOX")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    since: Mapped[datetime] = mapped_column(default=utcnow)  # mail delivered before this day is not read
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    polled_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    poll_seconds: Mapped[int | None] = mapped_column(Integer)  # None: the platform's ZVONOK_CRM_IMAP_POLL
