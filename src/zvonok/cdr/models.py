"""Tables of the CDR domain.

``cdrs`` holds one row per finished call (``call_id`` unique: writing is idempotent), its legs in
``cdr_legs``. ``calls_open`` is the durable note that a call is in progress: inserted at CallStarted,
refreshed at a few milestones (answer, transfer, recording) with a JSON snapshot of what is known, its
``updated_at`` moved on by the writer's heartbeat every few seconds (one UPDATE for all open calls), and
deleted in the same transaction that writes the CDR. Rows left there after a crash are turned into
"interrupted" CDRs ending at their last heartbeat, ``end_estimated`` (:func:`zvonok.cdr.service.close_interrupted`).

Party columns copy the number and name as they were at call time; the directory ids (extension,
employee, office, department) are ``ON DELETE SET NULL`` so history survives deleting the directory entry.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from zvonok.storage.base import Base, TenantScoped, utcnow


def _ref(table: str) -> Mapped[int | None]:
    return mapped_column(ForeignKey(f"{table}.id", ondelete="SET NULL"), index=True, nullable=True)


class Cdr(TenantScoped, Base):
    __tablename__ = "cdrs"
    # the CRM's timeline and screen pop find a client's calls by number (zvonok.crm)
    __table_args__ = (Index("ix_cdrs_tenant_id_caller_number", "tenant_id", "caller_number"),
                      Index("ix_cdrs_tenant_id_callee_number", "tenant_id", "callee_number"))

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True)
    direction: Mapped[str] = mapped_column(String(16))
    internal: Mapped[bool] = mapped_column(Boolean)
    dialed_number: Mapped[str] = mapped_column(String(64))

    caller_number: Mapped[str] = mapped_column(String(64))
    caller_name: Mapped[str] = mapped_column(String(200))
    caller_extension_id: Mapped[int | None] = _ref("extensions")
    caller_employee_id: Mapped[int | None] = _ref("employees")
    caller_office_id: Mapped[int | None] = _ref("offices")
    caller_department_id: Mapped[int | None] = _ref("departments")

    callee_number: Mapped[str] = mapped_column(String(64))
    callee_name: Mapped[str] = mapped_column(String(200))
    callee_extension_id: Mapped[int | None] = _ref("extensions")
    callee_employee_id: Mapped[int | None] = _ref("employees")
    callee_office_id: Mapped[int | None] = _ref("offices")
    callee_department_id: Mapped[int | None] = _ref("departments")

    started_at: Mapped[datetime] = mapped_column(index=True)
    answered_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime] = mapped_column()
    duration: Mapped[int] = mapped_column(Integer)  # whole seconds, end - start
    billsec: Mapped[int] = mapped_column(Integer)  # whole seconds, end - answer; 0 if unanswered

    disposition: Mapped[str] = mapped_column(String(16), index=True)
    hangup_side: Mapped[str] = mapped_column(String(16))
    cause: Mapped[str] = mapped_column(String(64))
    sip_status: Mapped[int | None] = mapped_column(Integer)
    recording_path: Mapped[str | None] = mapped_column(String(1024))
    cost: Mapped[Decimal] = mapped_column(Numeric(12, 4), default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(3))
    # outside calls: the trunk, the number (DID) called in on, the destination class and the rate used
    trunk_id: Mapped[int | None] = _ref("trunks")
    did: Mapped[str | None] = mapped_column(String(32))
    destination_class: Mapped[str | None] = mapped_column(String(16), index=True)
    rate_prefix: Mapped[str | None] = mapped_column(String(16))
    rate_destination: Mapped[str | None] = mapped_column(String(200))
    rate_per_minute: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    billed_seconds: Mapped[int] = mapped_column(Integer, default=0)
    # the end is the call's last heartbeat before a crash, not a hang-up anyone saw ("interrupted")
    end_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    # the extension whose forwarding (CFU, CFB, CFNA, unavailable) sent the call on, the first if several
    forwarded_from: Mapped[str | None] = mapped_column(String(64))
    ring_group: Mapped[str | None] = mapped_column(String(8))  # the ring group the call reached (its number)
    queue: Mapped[str | None] = mapped_column(String(8))  # the queue the call was placed for (a callback's)
    # a fax call (received on a fax destination or sent): pages transferred and T.30's result (NULL: no fax)
    fax_pages: Mapped[int | None] = mapped_column(Integer)
    fax_result: Mapped[str | None] = mapped_column(String(200))
    fax_transport: Mapped[str | None] = mapped_column(String(8))  # audio | t38
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    legs: Mapped[list[CdrLeg]] = relationship(
        back_populates="cdr", cascade="all, delete-orphan", order_by="CdrLeg.id", lazy="raise"
    )


class CdrLeg(TenantScoped, Base):
    __tablename__ = "cdr_legs"
    __table_args__ = (UniqueConstraint("cdr_id", "leg_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cdr_id: Mapped[int] = mapped_column(ForeignKey("cdrs.id", ondelete="CASCADE"), index=True)
    leg_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    number: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(200))
    contact: Mapped[str] = mapped_column(String(1024))
    user_agent: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column()
    answered_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    cause: Mapped[str | None] = mapped_column(String(64))

    cdr: Mapped[Cdr] = relationship(back_populates="legs")


class OpenCall(TenantScoped, Base):
    """A call in progress, durably (see the module docstring)."""

    __tablename__ = "calls_open"

    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
