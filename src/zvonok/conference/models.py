"""The conference-room table: one row per room of a tenant; who is in a room lives in the call engine.

PINs are stored as argon2 hashes (:mod:`zvonok.org.pins`), never in clear: the API says only whether
one is set. A room's number is dialed like an extension (2-8 digits) and is unique in its tenant.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from zvonok.storage.base import Base, TenantScoped, Timestamped


class ConferenceRoom(TenantScoped, Timestamped, Base):
    __tablename__ = "conference_rooms"
    __table_args__ = (UniqueConstraint("tenant_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(100), default="")
    pin_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    moderator_pin_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    wait_for_moderator: Mapped[bool] = mapped_column(Boolean, default=False)
    max_members: Mapped[int] = mapped_column(Integer, default=50)
