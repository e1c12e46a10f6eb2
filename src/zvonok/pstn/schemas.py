"""Pydantic request/response schemas of the outside-world API, and the pure checks behind them.

``*Update`` schemas are partial (PATCH): only the fields present are applied. Secrets are write-only:
a trunk's ``password`` comes back as ``has_password``; a PIN never comes back at all.

Numbers are E.164 inside. What people type ("+7 495 123-45-67") is normalized with
:mod:`zvonok.dialing`; the international form (a leading '+') is required, because without it the same
digits mean different numbers in different countries.

A phone number's destination (``destination_kind`` + JSON payload) is checked by
:mod:`zvonok.pstn.destinations`.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, time
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from zvonok.billing.tariffs import PERIOD_NAME, Period
from zvonok.dialing import CallingPolicy
from zvonok.org.schemas import Currency, Name, TimeZone
from zvonok.pstn.destinations import to_e164
from zvonok.sip.grammar import check_host, check_text

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_CENT = Decimal("0.01")


# --- field checks ----------------------------------------------------------------------------------
def policy_prefix(value: str) -> str:
    """A deny/allow prefix: E.164 digits with an optional '+', stored as ``"+7809"``."""
    digits = value.strip().removeprefix("+")
    if not re.fullmatch(r"[1-9][0-9]{0,14}", digits):
        raise ValueError(f"{value!r}: a prefix is 1-15 digits of an E.164 number (not starting with 0)")
    return "+" + digits


def check_address(value: str) -> str:
    """An IP address or a CIDR network, in canonical form; host bits set in a network are refused
    (``10.0.0.1/24`` is almost always a typo for ``10.0.0.0/24`` or ``10.0.0.1``)."""
    text = value.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP address or CIDR network: {exc}") from None


def _hhmm(value: str) -> str:
    if not _HHMM.match(value):
        raise ValueError(f"{value!r} is not a time HH:MM (00:00-23:59)")
    return value


E164 = Annotated[str, StringConstraints(max_length=64), AfterValidator(to_e164)]
Host = Annotated[str, StringConstraints(min_length=1, max_length=253), AfterValidator(check_host)]
Address = Annotated[str, StringConstraints(max_length=64), AfterValidator(check_address)]
PolicyPrefix = Annotated[str, StringConstraints(max_length=20), AfterValidator(policy_prefix)]
RoutePrefix = Annotated[str, StringConstraints(pattern=r"^[0-9]{0,15}$")]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(check_text)]
# a trunk's username and auth name are text: the digest username is a quoted-string and the username goes
# into the AOR and Contact escaped (grammar.escape_user), so "12345@carrier.example" is fine in both
TrunkUser = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
                      AfterValidator(check_text)]
Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2), AfterValidator(lambda v: v.quantize(_CENT))]
HHMM = Annotated[str, AfterValidator(_hhmm)]
HHMMEnd = Annotated[str, AfterValidator(lambda v: v if v == "24:00" else _hhmm(v))]
PeriodName = Annotated[str, StringConstraints(pattern=f"^{PERIOD_NAME.pattern}$", max_length=32)]
TrunkKindName = Literal["carrier", "pbx"]
Transport = Literal["udp", "tcp", "tls"]
# how a TLS trunk that does not verify its carrier's certificate is stored in trunks.transport (a string column):
# the API shows transport "tls" and tls_verify false
TLS_UNVERIFIED = "tls-any"
SrtpPolicy = Literal["required", "optional", "off"]
T38Mode = Literal["off", "accept", "offer"]
NumberFormatName = Literal["e164", "digits", "national"]
DestinationKindName = Literal["extension", "ring", "voicemail", "queue", "external", "access", "conference", "ivr",
                              "ring_group", "schedule", "fax"]
ServiceClassName = Literal["internal_only", "local", "long_distance", "international"]
PolicyLevelName = Literal["tenant", "office", "department", "employee"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- trunks ----------------------------------------------------------------------------------------
class TrunkCreate(_In):
    name: Name
    kind: TrunkKindName = "carrier"
    host: Host
    port: int = Field(default=5060, ge=1, le=65535)
    transport: Transport = "udp"
    username: TrunkUser | None = None
    password: Secret | None = Field(default=None, description="Write-only: responses say has_password")
    auth_username: TrunkUser | None = None
    from_domain: Host | None = None
    # "register" is a BaseModel (ABCMeta) method: the field is register_ inside, "register" on the wire
    register_: bool = Field(default=False, alias="register")
    register_expires: int = Field(default=3600, ge=60, le=86400)
    inbound_addresses: list[Address] = Field(default_factory=list, max_length=100)
    max_calls: int | None = Field(default=None, ge=1, le=100_000)
    number_format: NumberFormatName = "e164"
    buy_tariff_id: int | None = None
    office_id: int | None = None
    enabled: bool = True
    srtp: SrtpPolicy | None = Field(default=None, description="SRTP on TLS legs: required (plain offers get 488; out through it only over TLS), optional, off; "
                                          "null: the server's ZVONOK_SRTP_POLICY")
    t38: T38Mode = Field(default="accept", description="fax over T.38: off (G.711 pass-through only), accept "
                         "(the carrier's re-INVITE to T.38), offer (we re-INVITE a fax we send to T.38 too)")
    tls_verify: bool = Field(default=True, description="transport tls: verify the carrier's certificate (system CA "
                             "store or ZVONOK_SIP_TLS_CA_FILE, name = host); false for a self-signed office PBX")


class TrunkUpdate(_In):
    name: Name | None = None
    kind: TrunkKindName | None = None
    host: Host | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    transport: Transport | None = None
    username: TrunkUser | None = None
    password: Secret | None = Field(default=None, description="Write-only; null removes it")
    auth_username: TrunkUser | None = None
    from_domain: Host | None = None
    register_: bool | None = Field(default=None, alias="register")
    register_expires: int | None = Field(default=None, ge=60, le=86400)
    inbound_addresses: list[Address] | None = Field(default=None, max_length=100)
    max_calls: int | None = Field(default=None, ge=1, le=100_000)
    number_format: NumberFormatName | None = None
    buy_tariff_id: int | None = None
    office_id: int | None = None
    enabled: bool | None = None
    srtp: SrtpPolicy | None = Field(default=None, description="SRTP on TLS legs: required (plain offers get 488), optional, off; "
                                          "null: the server's ZVONOK_SRTP_POLICY")
    t38: T38Mode | None = None
    tls_verify: bool | None = None


class TrunkOut(_Out):
    id: int
    tenant_id: int | None
    name: str
    kind: str
    host: str
    port: int
    transport: Annotated[str, BeforeValidator(lambda stored: "tls" if stored == TLS_UNVERIFIED else stored)]
    tls_verify: Annotated[bool, BeforeValidator(lambda stored: stored != TLS_UNVERIFIED)] = Field(
        default=True, validation_alias="transport")
    username: str | None
    auth_username: str | None
    from_domain: str | None
    register_: bool = Field(validation_alias="register", serialization_alias="register")
    register_expires: int
    inbound_addresses: list[str]
    max_calls: int | None
    number_format: str
    buy_tariff_id: int | None
    office_id: int | None
    enabled: bool
    srtp: str | None
    t38: str = "accept"
    approved_address: str | None = Field(
        default=None, description="A host name's address approved when the trunk was saved: calls are taken "
        "unchallenged from there only (send the same host again to approve a new one)")
    has_password: Annotated[bool, BeforeValidator(lambda secret: bool(secret))] = Field(
        default=False, validation_alias="password"
    )
    created_at: datetime
    updated_at: datetime


class TrunkStatus(BaseModel):
    """The running server's view of a trunk; the engine may add fields of its own."""

    model_config = ConfigDict(extra="allow")

    trunk_id: int
    loaded: bool = Field(description="False when the call engine does not have the trunk (disabled, not yet loaded)")
    registered: bool | None = Field(default=None, description="None when the trunk does not register")
    last_error: str | None = None
    active_calls: int = Field(
        default=0, description="Calls in progress on the trunk. The running server adds active_calls_scope: "
        "'cluster' (several nodes share the trunk's channels, it has max_calls: every node's calls, also "
        "active_calls_by_node) or 'node' (this node's); active_calls_here is this node's")


# --- phone numbers ---------------------------------------------------------------------------------
class NumberCreate(_In):
    number: E164
    monthly_fee: Money = Decimal(0)
    enabled: bool = True


class NumberPoolUpdate(_In):
    monthly_fee: Money | None = None
    enabled: bool | None = None


class NumberAssign(_In):
    tenant_id: int


class NumberUpdate(_In):
    office_id: int | None = None
    destination_kind: DestinationKindName | None = None
    destination: dict[str, Any] | None = None
    monthly_fee: Money | None = Field(default=None, description="Platform admin only")
    enabled: bool | None = Field(default=None, description="Platform admin only")


class NumberOut(_Out):
    id: int
    tenant_id: int | None
    number: str
    office_id: int | None
    destination_kind: str
    destination: dict[str, Any]
    monthly_fee: Decimal
    enabled: bool
    created_at: datetime
    updated_at: datetime


# --- outbound routes -------------------------------------------------------------------------------
class RouteCreate(_In):
    prefix: RoutePrefix = Field(default="", description="E.164 digits without '+'; empty matches every number")
    trunk_id: int
    priority: int = Field(default=100, ge=0, le=10_000)
    enabled: bool = True


class RouteUpdate(_In):
    prefix: RoutePrefix | None = None
    trunk_id: int | None = None
    priority: int | None = Field(default=None, ge=0, le=10_000)
    enabled: bool | None = None


class RouteOut(_Out):
    id: int
    tenant_id: int | None
    prefix: str
    trunk_id: int
    priority: int
    enabled: bool
    created_at: datetime
    updated_at: datetime


# --- tariffs and rates -----------------------------------------------------------------------------
class PeriodIn(_In):
    name: PeriodName
    start: HHMM
    end: HHMMEnd = Field(description="24:00 (or 00:00) is the end of the day")
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = Field(default_factory=lambda: list(range(7)))

    @model_validator(mode="after")
    def _as_billing_period(self) -> PeriodIn:
        end = "00:00" if self.end == "24:00" else self.end
        Period(name=self.name, start=time.fromisoformat(self.start), end=time.fromisoformat(end),
               weekdays=frozenset(self.weekdays))  # its own rules: end after start, weekdays, name
        if len(set(self.weekdays)) != len(self.weekdays):
            raise ValueError(f"period {self.name}: a weekday is listed twice")
        self.weekdays = sorted(self.weekdays)
        return self


class TariffCreate(_In):
    name: Name
    tenant_id: int | None = Field(default=None, description="Owner; null: the operator's (platform-wide)")
    currency: Currency = "RUB"
    time_zone: TimeZone = "Europe/Moscow"
    periods: list[PeriodIn] = Field(default_factory=list, max_length=20)
    default_period: PeriodName = "offpeak"


class TariffUpdate(_In):
    name: Name | None = None
    currency: Currency | None = None
    time_zone: TimeZone | None = None
    periods: list[PeriodIn] | None = Field(default=None, max_length=20)
    default_period: PeriodName | None = None


class TariffOut(_Out):
    id: int
    tenant_id: int | None
    name: str
    currency: str
    time_zone: str
    periods: list[dict[str, Any]]
    default_period: str
    rate_count: int = 0
    created_at: datetime
    updated_at: datetime


class RateOut(_Out):
    prefix: str
    destination: str
    price: Decimal = Field(description="Per minute")
    connection_fee: Decimal
    increment: str
    minimum: int
    period_prices: dict[str, str]


class RatesImported(BaseModel):
    imported: int


class BillingIn(_In):
    tariff_id: int | None


class BillingOut(BaseModel):
    tenant_id: int
    tariff_id: int | None
    tariff_name: str | None = None
    currency: str | None = None


# --- outbound policies -----------------------------------------------------------------------------
class PolicyIn(_In):
    service_class: ServiceClassName | None = None
    deny_prefixes: list[PolicyPrefix] = Field(default_factory=list, max_length=500)
    allow_prefixes: list[PolicyPrefix] = Field(default_factory=list, max_length=500)
    caller_id: E164 | None = Field(default=None, description="One of the tenant's phone numbers")
    monthly_limit: Money | None = None
    warn_percent: int = Field(default=80, ge=1, le=100)

    @model_validator(mode="after")
    def _consistent(self) -> PolicyIn:
        self.deny_prefixes = sorted(set(self.deny_prefixes))
        self.allow_prefixes = sorted(set(self.allow_prefixes))
        both = set(self.deny_prefixes) & set(self.allow_prefixes)
        if both:
            raise ValueError(f"prefixes both denied and allowed: {', '.join(sorted(both))}")
        CallingPolicy(deny=frozenset(self.deny_prefixes), allow=frozenset(self.allow_prefixes))
        return self


class PolicyOut(_Out):
    id: int
    tenant_id: int
    level: str
    ref_id: int | None
    service_class: str | None
    deny_prefixes: list[str]
    allow_prefixes: list[str]
    caller_id: str | None
    monthly_limit: Decimal | None
    warn_percent: int
    created_at: datetime
    updated_at: datetime


# --- PINs ------------------------------------------------------------------------------------------
class PinIn(_In):
    pin: Annotated[str, StringConstraints(max_length=32)]
    skip_for_caller_id: bool | None = Field(
        default=None, description="Admins only: no PIN asked when calling from the employee's own phone"
    )


class PinOut(BaseModel):
    tenant_id: int
    employee_id: int
    has_pin: bool
    skip_for_caller_id: bool
    updated_at: datetime | None


# --- reports ---------------------------------------------------------------------------------------
class CostRow(BaseModel):
    key: int | str | None
    name: str
    calls: int
    minutes: Decimal
    cost: Decimal


class CostTotals(BaseModel):
    calls: int
    minutes: Decimal
    cost: Decimal


class CostReport(BaseModel):
    group_by: str
    start: datetime
    end: datetime
    currency: str
    rows: list[CostRow]
    totals: CostTotals


class NumbersRented(BaseModel):
    count: int
    monthly_fees: Decimal


class StatementOut(BaseModel):
    tenant_id: int
    year: int
    month: int
    time_zone: str
    currency: str
    start: datetime
    end: datetime
    calls: int
    billed_seconds: int
    minutes: Decimal
    cost: Decimal
    by_class: list[CostRow]
    numbers: NumbersRented
    total: Decimal = Field(description="Call costs plus the monthly fees of the rented numbers")
