"""``originate_requests``: one row per originated call (telephony/originate.py) — who asked, from which
extension to which number (and CRM client), when it rang the employee, dialed the target, connected and
finished, and how it ended (``phase`` ``ended``, or ``failed`` with ``reason``). ``call_id`` is the call's
id, which its CDR (if any) carries too."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from zvonok.storage.base import Base, TenantScoped, utcnow

PHASES = ("ringing_employee", "dialing", "connected", "ended", "failed")
IN_PROGRESS = ("ringing_employee", "dialing", "connected")


class OriginateRequest(TenantScoped, Base):
    __tablename__ = "originate_requests"
    __table_args__ = (
        CheckConstraint("phase IN ('ringing_employee', 'dialing', 'connected', 'ended', 'failed')", name="phase"),
        Index("ix_originate_requests_tenant_id_client_id", "tenant_id", "client_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))  # call | monitor | callback
    requested_by: Mapped[str] = mapped_column(String(64), default="")  # account:<id> | token:<id> | "" (system)
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="SET NULL"), nullable=True)
    extension: Mapped[str] = mapped_column(String(32))
    to_number: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("crm_clients.id", ondelete="SET NULL"), nullable=True)
    phase: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    dialing_at: Mapped[datetime | None] = mapped_column(nullable=True)
    connected_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
