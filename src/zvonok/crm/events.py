"""CRM events. :class:`ClientChanged` is a domain event (emitted in the transaction, delivered after the
commit). :class:`ScreenPop` goes on the bus when a call rings an employee (:mod:`zvonok.crm.screenpop`);
the websocket hands it to that employee only (:mod:`zvonok.api.ws`)."""

from __future__ import annotations

from dataclasses import dataclass

from zvonok.bus import register_event


@register_event
@dataclass(frozen=True, kw_only=True)
class ClientChanged:
    tenant_id: int
    client_id: int
    action: str  # created | changed | deleted | merged (client_id is the one kept; merged_id is gone)
    merged_id: int | None = None
    version: int = 1


@dataclass(frozen=True, kw_only=True)
class CardCall:
    """One of the caller's last calls on a screen-pop card."""

    cdr_id: int
    started_at: float  # epoch seconds
    direction: str
    disposition: str
    duration: int
    employee_name: str = ""


@dataclass(frozen=True, kw_only=True)
class Card:
    """The caller's card (``client_id`` set) or a new lead's (only the number)."""

    number: str
    client_id: int | None = None
    name: str = ""
    kind: str = ""
    company: str = ""
    owner: str = ""
    last_calls: tuple[CardCall, ...] = ()

    @property
    def known(self) -> bool:
        return self.client_id is not None


@register_event
@dataclass(frozen=True, kw_only=True)
class ScreenPop:
    """A call from ``card.number`` rings ``employee_id``. ``invite_at`` is when the call began
    (CallStarted, at the INVITE), ``at`` when the card was ready: the difference is the pop's delay."""

    tenant_id: int
    call_id: str
    employee_id: int
    card: Card
    invite_at: float = 0.0
    at: float = 0.0
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True)
class DealChanged:
    """A deal was created, changed, moved to another stage (``stage_id`` its stage now), paid or deleted."""

    tenant_id: int
    deal_id: int
    action: str  # created | changed | moved | paid | deleted
    stage_id: int | None = None
    owner_id: int | None = None
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True)
class TaskChanged:
    tenant_id: int
    task_id: int
    action: str  # created | changed | done | deleted
    assignee_id: int | None = None
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True)
class TaskDue:
    """A task's due time came (the reminder): to its assignee's websocket."""

    tenant_id: int
    task_id: int
    assignee_id: int | None
    title: str
    due_at: float  # epoch seconds
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True)
class TaskEscalated:
    """A task is overdue by more than the tenant's ``escalate_hours``: ``notify_employee_ids`` (the
    assignee's department head, or the tenant's admins) are told."""

    tenant_id: int
    task_id: int
    assignee_id: int | None
    title: str
    due_at: float
    notify_employee_ids: tuple[int, ...] = ()
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True)
class ImapChanged:
    """A company's IMAP settings changed: the poller reads the mailbox now."""

    tenant_id: int
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class InvoiceChanged:
    """An invoice was created, changed, cancelled or paid (a payment linked to it came or went)."""

    tenant_id: int
    invoice_id: int
    deal_id: int
    action: str  # created | changed | cancelled | paid
    status: str = ""
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class InvoiceOverdue:
    """An issued invoice passed its due date not fully paid: ``task_id`` is the task made for the deal's
    owner (``owner_id``, None: the deal has no owner). Sent once per invoice."""

    tenant_id: int
    invoice_id: int
    deal_id: int
    task_id: int
    owner_id: int | None
    number: str
    unpaid: str  # decimal text, in ``currency``
    amount: str
    currency: str
    version: int = 1
