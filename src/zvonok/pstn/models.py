"""Tables of the outside world: trunks, phone numbers (DIDs), outbound routes, tariffs, outbound policies
(class of service, caller ID, spending limit per tenant/office/department/employee) and PINs.

Design notes:
- A trunk with ``tenant_id`` NULL is the operator's, shared by every tenant (a platform carrier); a
  tenant's own trunks (its carrier account, its office PBX) have its id. Outbound routes likewise.
- A trunk keeps its digest password in clear: we must *compute* digest responses for the carrier, which
  a hash cannot do (unlike the extensions' HA1s). The API never returns it.
- Inbound calls are trusted only from a trunk's ``inbound_addresses`` (IPs or CIDRs; the host's address
  when empty) or over the connection of its registration.
- One :class:`OutboundPolicy` row per level (tenant, office, department, employee): the most specific
  level that sets a field wins (class of service, caller ID); deny/allow prefixes merge (see
  :mod:`zvonok.dialing.permissions`); each level's monthly spending limit applies on its own.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from zvonok.storage.base import Base, TenantScoped, Timestamped, utcnow


class TrunkKind(enum.StrEnum):
    CARRIER = "carrier"  # a telephone company: numbers in, paid calls out
    PBX = "pbx"  # an office's own PBX (analog behind a VoIP gateway, IP, hybrid) joined as a trunk


class NumberFormat(enum.StrEnum):
    """How a carrier wants numbers in its Request-URI and From."""

    E164 = "e164"  # +74951234567
    DIGITS = "digits"  # 74951234567
    NATIONAL = "national"  # 84951234567 (Russian carriers of old)


class DestinationKind(enum.StrEnum):
    EXTENSION = "extension"  # {"number": "101"}
    RING = "ring"  # {"numbers": ["101", "102"]} all at once
    VOICEMAIL = "voicemail"  # {"number": "101"} (placeholder until voicemail exists: the call gets 480)
    QUEUE = "queue"  # {"queue": "sales"} (placeholder until queues exist: 480)
    EXTERNAL = "external"  # {"number": "+74951234567"} forwarded out through a trunk
    ACCESS = "access"  # the access-number service (PIN + destination)
    CONFERENCE = "conference"  # {"number": "800"} a conference room of the tenant (zvonok.conference)
    IVR = "ivr"  # {"menu": 3} a voice menu of the tenant (zvonok.ivr)
    RING_GROUP = "ring_group"  # {"number": "600"} a ring group of the tenant (zvonok.ringgroup)
    FAX = "fax"  # {} the call is answered by a fax terminal; documents per tenant (zvonok.fax)
    SCHEDULE = "schedule"  # {"rules": [...], "holidays": [...], "default": {...}} (see zvonok.pstn.schedule)


class PolicyLevel(enum.StrEnum):
    TENANT = "tenant"
    OFFICE = "office"
    DEPARTMENT = "department"
    EMPLOYEE = "employee"


class Trunk(Timestamped, Base):
    __tablename__ = "trunks"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default=TrunkKind.CARRIER.value)
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer, default=5060)
    transport: Mapped[str] = mapped_column(String(8), default="udp")
    username: Mapped[str | None] = mapped_column(String(200))
    password: Mapped[str | None] = mapped_column(String(200))
    auth_username: Mapped[str | None] = mapped_column(String(200))  # when the digest user differs
    from_domain: Mapped[str | None] = mapped_column(String(253))  # From/To domain towards it (else host)
    register: Mapped[bool] = mapped_column(Boolean, default=False)
    register_expires: Mapped[int] = mapped_column(Integer, default=3600)
    inbound_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_calls: Mapped[int | None] = mapped_column(Integer)
    number_format: Mapped[str] = mapped_column(String(16), default=NumberFormat.E164.value)
    buy_tariff_id: Mapped[int | None] = mapped_column(ForeignKey("tariffs.id", ondelete="SET NULL"), index=True)
    office_id: Mapped[int | None] = mapped_column(ForeignKey("offices.id", ondelete="SET NULL"), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    srtp: Mapped[str | None] = mapped_column(String(8))  # required | optional | off; NULL: the server's default
    # fax over T.38 (UDPTL) with this trunk: off (G.711 only), accept (its re-INVITE to T.38), offer (ours too)
    t38: Mapped[str] = mapped_column(String(8), default="accept", server_default="accept")
    # a tenant's trunk known by a host name, without an inbound list: the address its name resolved to when
    # the API checked it; calls are taken unchallenged from there only, whatever the name resolves to later
    approved_address: Mapped[str | None] = mapped_column(String(45))


class PhoneNumber(Timestamped, Base):
    """An external number (DID). ``tenant_id`` NULL: in the operator's pool, not rented to anyone."""

    __tablename__ = "phone_numbers"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="SET NULL"), index=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)  # E.164 with '+'
    office_id: Mapped[int | None] = mapped_column(ForeignKey("offices.id", ondelete="SET NULL"), index=True)
    destination_kind: Mapped[str] = mapped_column(String(16), default=DestinationKind.EXTENSION.value)
    destination: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    monthly_fee: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal(0))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class OutboundRoute(Timestamped, Base):
    """Numbers starting with ``prefix`` (E.164 digits, '' = any) may go out through ``trunk_id``.

    The longest matching prefix wins; among its routes the order is priority, then the cheapest buy rate
    (least-cost routing), and the next one is tried when a trunk fails (failover)."""

    __tablename__ = "outbound_routes"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), default="")
    trunk_id: Mapped[int] = mapped_column(ForeignKey("trunks.id", ondelete="CASCADE"), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class Tariff(Timestamped, Base):
    """A rate deck: a tenant's plan (what calls cost it) or a carrier's buy rates."""

    __tablename__ = "tariffs"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    time_zone: Mapped[str] = mapped_column(String(64), default="Europe/Moscow")
    # time-of-day bands: [{"name": "peak", "start": "08:00", "end": "20:00", "weekdays": [0,1,2,3,4]}]
    periods: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    default_period: Mapped[str] = mapped_column(String(32), default="offpeak")


class TariffRate(Base):
    __tablename__ = "tariff_rates"
    __table_args__ = (UniqueConstraint("tariff_id", "prefix"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariffs.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(200))
    price: Mapped[Decimal] = mapped_column(Numeric(12, 4))  # per minute
    connection_fee: Mapped[Decimal] = mapped_column(Numeric(12, 4), default=Decimal(0))
    increment: Mapped[str] = mapped_column(String(16), default="60/60")
    minimum: Mapped[int] = mapped_column(Integer, default=0)
    period_prices: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # {"peak": "2.50"}


class BillingAccount(Timestamped, Base):
    """A tenant's plan: the tariff its outside calls are rated with."""

    __tablename__ = "billing_accounts"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    tariff_id: Mapped[int | None] = mapped_column(ForeignKey("tariffs.id", ondelete="SET NULL"), index=True)


class OutboundPolicy(TenantScoped, Timestamped, Base):
    """What one level (the tenant, an office, a department, an employee) may call, as whom, for how much."""

    __tablename__ = "outbound_policies"
    __table_args__ = (
        UniqueConstraint("tenant_id", "level", "ref_id"),
        # NULLs never collide in a unique constraint: the one tenant-level row needs its own index
        Index("uq_outbound_policies_tenant_level", "tenant_id", "level", unique=True,
              sqlite_where=text("ref_id IS NULL"), postgresql_where=text("ref_id IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    level: Mapped[str] = mapped_column(String(16))
    ref_id: Mapped[int | None] = mapped_column(Integer)  # the office/department/employee id; NULL for tenant
    service_class: Mapped[str | None] = mapped_column(String(16))  # internal_only/local/long_distance/international
    deny_prefixes: Mapped[list[str]] = mapped_column(JSON, default=list)
    allow_prefixes: Mapped[list[str]] = mapped_column(JSON, default=list)
    caller_id: Mapped[str | None] = mapped_column(String(32))  # E.164 presented to carriers
    monthly_limit: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    warn_percent: Mapped[int] = mapped_column(Integer, default=80)


class EmployeePin(TenantScoped, Timestamped, Base):
    """An employee's access-number PIN (argon2 hash; see :mod:`zvonok.org.pins`)."""

    __tablename__ = "employee_pins"

    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="CASCADE"), primary_key=True)
    pin_hash: Mapped[str] = mapped_column(String(255))
    skip_for_caller_id: Mapped[bool] = mapped_column(Boolean, default=False)


class CallHold(Base):
    """What a call in progress holds of a shared limit, across nodes (issue 14, :mod:`zvonok.pstn.holds`):
    one of a trunk's channels (``kind`` "trunk", ``key`` the trunk id) or the worst-case cost of the call
    against one spending level (``kind`` "spend", ``key`` "<tenant>:<level>:<ref>", ``amount``); or a
    call-center agent taken by one node for its queue calls (``kind`` "agent", ``key`` the employee id: at
    most one node's row per agent); or a caller waiting in one of a node's queues (``kind`` "caller") or a
    callback request a node may offer (``kind`` "callback"): ``key`` the queue id, ``since`` and ``priority``
    its place in line; or the queue calls a node has completed (``kind`` "handled", ``key`` the queue id,
    ``priority`` their count, ``amount`` their talk and wrap-up seconds: the wait estimates' handle time).

    The node that took the hold refreshes ``updated_at`` of the holds it still has every few seconds; a hold
    not refreshed for the dead-node interval (its node was killed, or gave up on it) is deleted by any node's
    sweep. Platform-level bookkeeping, not tenant data: no API reads it.
    """

    __tablename__ = "call_holds"
    __table_args__ = (Index("ix_call_holds_kind_key", "kind", "key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # made by the node (uuid4 hex)
    node: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    key: Mapped[str] = mapped_column(String(96))
    call_id: Mapped[str] = mapped_column(String(128))
    amount: Mapped[Decimal] = mapped_column(Numeric(18, 4), default=Decimal(0))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    since: Mapped[float | None] = mapped_column(Float, nullable=True)
