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

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
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

