"""Tables of the org domain: the company tree and who may log in.

Design of logins: an :class:`Employee` is a directory entry (a person in the company), never a
credential. An :class:`Account` is a web/API login: email (globally unique, it is the login name),
argon2 password hash and a role. ``platform_admin`` accounts belong to no tenant; ``tenant_admin``,
``supervisor`` and ``employee`` accounts belong to exactly one tenant and may point at the employee they are (so the
employee can change their own extension's SIP password). A check constraint enforces the pairing.

SIP passwords are never stored: an :class:`Extension` keeps the digest HA1 values for its tenant's
realm (the ``sip_domain``), which is all a registrar needs to verify MD5 and SHA-256 digests.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from zvonok.storage.base import Base, TenantScoped, Timestamped, utcnow


class Role(enum.StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    TENANT_ADMIN = "tenant_admin"
    # The call center's supervisor: an employee who also sees the tenant's wallboard, live queues, agents
    # and reports, changes agents' statuses and listens / whispers / barges; never the PBX configuration.
    SUPERVISOR = "supervisor"
    EMPLOYEE = "employee"


_ROLE_VALUES = ", ".join(f"'{r.value}'" for r in Role)
# platform_admin <=> no tenant; used by accounts and API tokens alike.
_ROLE_TENANT_RULE = (
    "(role = 'platform_admin' AND tenant_id IS NULL) OR (role <> 'platform_admin' AND tenant_id IS NOT NULL)"
)


class Tenant(Timestamped, Base):
    """A company. ``sip_domain`` is stored lower-case and is the SIP realm of its extensions."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    sip_domain: Mapped[str] = mapped_column(String(253), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    locale: Mapped[str] = mapped_column(String(16))
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)


class Office(TenantScoped, Timestamped, Base):
    __tablename__ = "offices"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(200))
    area_code: Mapped[str | None] = mapped_column(String(8))
    address: Mapped[str | None] = mapped_column(String(500))
    timezone: Mapped[str | None] = mapped_column(String(64))


class Department(TenantScoped, Timestamped, Base):
    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    office_id: Mapped[int | None] = mapped_column(ForeignKey("offices.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), index=True)


class Employee(TenantScoped, Timestamped, Base):
    __tablename__ = "employees"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    # faxes to the employee's own fax destination ({"kind": "fax", "number": <their extension>}); NULL: email
    fax_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    office_id: Mapped[int | None] = mapped_column(ForeignKey("offices.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Extension(TenantScoped, Timestamped, Base):
    """A SIP endpoint: the SIP username is the number, the realm the tenant's ``sip_domain``."""

    __tablename__ = "extensions"
    __table_args__ = (UniqueConstraint("tenant_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(8))
    display_name: Mapped[str] = mapped_column(String(200))
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id"), index=True)
    office_id: Mapped[int | None] = mapped_column(ForeignKey("offices.id"), index=True)
    ha1_md5: Mapped[str] = mapped_column(String(32))
    ha1_sha256: Mapped[str] = mapped_column(String(64))
    max_devices: Mapped[int] = mapped_column(Integer, default=5)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    srtp: Mapped[str | None] = mapped_column(String(8))  # required | optional | off; NULL: the server's default
    # call forwarding (telephony/forwarding.py): an extension number or an outside number each; NULL: none
    dnd: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    forward_unconditional: Mapped[str | None] = mapped_column(String(32))
    forward_busy: Mapped[str | None] = mapped_column(String(32))
    forward_no_answer: Mapped[str | None] = mapped_column(String(32))
    forward_no_answer_seconds: Mapped[int] = mapped_column(Integer, default=20, server_default="20")
    forward_unavailable: Mapped[str | None] = mapped_column(String(32))
    pickup_group: Mapped[str | None] = mapped_column(String(32))  # NULL: the department's (telephony/pickup.py)


class Account(Timestamped, Base):
    """A login for the web UI and the API (see the module docstring for the design)."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint(f"role IN ({_ROLE_VALUES})", name="role"),
        CheckConstraint(_ROLE_TENANT_RULE, name="role_tenant"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="CASCADE"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_login_at: Mapped[datetime | None] = mapped_column()
    # Login tokens carry the version they were issued at; bumping it (password change, demotion,
    # deactivation) invalidates every login token of the account at once.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiToken(Base):
    """A bearer token for scripts. Only the SHA-256 of the secret is kept; ``prefix`` is for display."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint(f"role IN ({_ROLE_VALUES})", name="role"),
        CheckConstraint(_ROLE_TENANT_RULE, name="role_tenant"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
