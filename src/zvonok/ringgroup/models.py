"""The ring-group table: one row per group of a tenant, its members in order (JSON: extension numbers and
E.164 outside numbers), its no-answer destination (a DID destination branch) and round robin's memory.

A group's number is dialed like an extension (2-8 digits) and is unique in the tenant's internal number
space (extensions, conference rooms and groups: :func:`zvonok.ringgroup.service.number_holder`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from zvonok.storage.base import Base, TenantScoped, Timestamped


class RingGroup(TenantScoped, Timestamped, Base):
    __tablename__ = "ring_groups"
    __table_args__ = (UniqueConstraint("tenant_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(100), default="")
    strategy: Mapped[str] = mapped_column(String(16), default="simultaneous")
    ring_seconds: Mapped[int] = mapped_column(Integer, default=20)
    max_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    members: Mapped[list[str]] = mapped_column(JSON, default=list)
    no_answer: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # round robin: the member who answered the group's last call (written best-effort by the call engine)
    last_answered: Mapped[str | None] = mapped_column(String(32), nullable=True)
