"""Pydantic request/response schemas of the org API. Field validators name the field in 422s.

``*Update`` schemas are partial: only fields present in the request are applied (PATCH).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from zvonok.sip.grammar import check_text

_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}") from None
    return value


def check_domain(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    if not _DOMAIN_RE.match(value):
        raise ValueError(f"{value!r} is not a valid domain name")
    return value


def check_currency(value: str) -> str:
    value = value.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise ValueError(f"{value!r} is not an ISO 4217 currency code (3 letters)")
    return value


def check_email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL_RE.match(value):
        raise ValueError(f"{value!r} is not a valid email address")
    return value


# names become display names in SIP messages (caller names): no line breaks or other control characters
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(check_text)]
TimeZone = Annotated[str, AfterValidator(check_timezone)]
Domain = Annotated[str, StringConstraints(max_length=253), AfterValidator(check_domain)]
Currency = Annotated[str, AfterValidator(check_currency)]
Locale = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")]
Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(check_email)]
AreaCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,8}$")]
ExtensionNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{2,8}$")]
SipPassword = Annotated[str, StringConstraints(min_length=8, max_length=128)]
WebPassword = Annotated[str, StringConstraints(min_length=8, max_length=256)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ()-]{2,31}$")]
TenantRole = Literal["tenant_admin", "supervisor", "employee"]
SrtpPolicy = Literal["required", "optional", "off"]
# a call pickup group (telephony/pickup.py): letters, digits, '-' and '_'; "" or null: the department's
PickupGroup = Annotated[
    Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")] | None,
    BeforeValidator(lambda v: (v.strip() or None) if isinstance(v, str) else v),
    Field(description="Call pickup group (*8 picks up calls ringing its members); empty or null: the "
                      "extension's department"),
]

T = TypeVar("T")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


# --- tenants ---------------------------------------------------------------------------------------
class TenantCreate(_In):
    name: Name
    sip_domain: Domain
    timezone: TimeZone = "UTC"
    currency: Currency = "USD"
    locale: Locale = "en-US"


class TenantUpdate(_In):
    name: Name | None = None
    sip_domain: Domain | None = None
    timezone: TimeZone | None = None
    currency: Currency | None = None
    locale: Locale | None = None
    suspended: bool | None = None


class TenantOut(_Out):
    id: int
    name: str
    sip_domain: str
    timezone: str
    currency: str
    locale: str
    suspended: bool
    created_at: datetime
    updated_at: datetime


# --- offices ---------------------------------------------------------------------------------------
class OfficeCreate(_In):
    name: Name
    city: Name | None = None
    area_code: AreaCode | None = None
    address: Annotated[str, StringConstraints(max_length=500)] | None = None
    timezone: TimeZone | None = None


class OfficeUpdate(_In):
    name: Name | None = None
    city: Name | None = None
    area_code: AreaCode | None = None
    address: Annotated[str, StringConstraints(max_length=500)] | None = None
    timezone: TimeZone | None = None


class OfficeOut(_Out):
    id: int
    tenant_id: int
    name: str
    city: str | None
    area_code: str | None
    address: str | None
    timezone: str | None
    created_at: datetime
    updated_at: datetime


# --- departments -----------------------------------------------------------------------------------
class DepartmentCreate(_In):
    name: Name
    office_id: int | None = None
    parent_id: int | None = None


class DepartmentUpdate(_In):
    name: Name | None = None
    office_id: int | None = None
    parent_id: int | None = None


class DepartmentOut(_Out):
    id: int
    tenant_id: int
    name: str
    office_id: int | None
    parent_id: int | None
    created_at: datetime
    updated_at: datetime


# --- employees -------------------------------------------------------------------------------------
class EmployeeCreate(_In):
    full_name: Name
    email: Email | None = None
    fax_email: Email | None = Field(default=None, description="Faxes to the employee's own fax line are e-mailed "
                                    "here (a fax destination naming their extension); null: to ``email``")
    phone: Phone | None = None
    office_id: int | None = None
    department_id: int | None = None
    active: bool = True
    web_password: WebPassword | None = Field(
        default=None, description="Write-only. Gives the employee a login (their email) with this password"
    )
    role: TenantRole = Field(default="employee", description="Role of the login created by web_password")


class EmployeeUpdate(_In):
    full_name: Name | None = None
    email: Email | None = None
    fax_email: Email | None = None
    phone: Phone | None = None
    office_id: int | None = None
    department_id: int | None = None
    active: bool | None = None
    web_password: WebPassword | None = Field(default=None, description="Write-only; sets/creates the login")
    role: TenantRole | None = None


class EmployeeOut(_Out):
    id: int
    tenant_id: int
    full_name: str
    email: str | None
    fax_email: str | None
    phone: str | None
    office_id: int | None
    department_id: int | None
    active: bool
    created_at: datetime
    updated_at: datetime


# --- extensions ------------------------------------------------------------------------------------
class ExtensionCreate(_In):
    number: ExtensionNumber
    display_name: Name
    employee_id: int | None = None
    office_id: int | None = None
    sip_password: SipPassword | None = Field(
        default=None, description="Write-only. Generated and returned once when omitted"
    )
    max_devices: int = Field(default=5, ge=1, le=100)
    enabled: bool = True
    srtp: SrtpPolicy | None = Field(default=None, description="SRTP on TLS legs: required (plain offers get 488), optional, off; "
                                          "null: the server's ZVONOK_SRTP_POLICY")
    pickup_group: PickupGroup = None


class ExtensionUpdate(_In):
    display_name: Name | None = None
    employee_id: int | None = None
    office_id: int | None = None
    sip_password: SipPassword | None = Field(default=None, description="Write-only")
    max_devices: int | None = Field(default=None, ge=1, le=100)
    enabled: bool | None = None
    srtp: SrtpPolicy | None = Field(default=None, description="SRTP on TLS legs: required (plain offers get 488), optional, off; "
                                          "null: the server's ZVONOK_SRTP_POLICY")
    pickup_group: PickupGroup = None


class ExtensionOut(_Out):
    id: int
    tenant_id: int
    number: str
    display_name: str
    employee_id: int | None
    office_id: int | None
    max_devices: int
    enabled: bool
    srtp: str | None
    pickup_group: str | None = None
    created_at: datetime
    updated_at: datetime


class ExtensionCreated(ExtensionOut):
    sip_password: str | None = Field(
        default=None, description="The generated SIP password, shown only in this response"
    )


# --- API tokens and auth ---------------------------------------------------------------------------
class TokenCreate(_In):
    name: Name
    role: TenantRole = "tenant_admin"


class TokenOut(_Out):
    id: int
    tenant_id: int | None
    name: str
    prefix: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The bearer secret, shown only in this response")


class LoginIn(_In):
    email: Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=254)]
    password: Annotated[str, StringConstraints(max_length=256)]


class LoginOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class MeOut(BaseModel):
    kind: Literal["account", "api_token"]
    id: int
    role: str
    tenant_id: int | None
    employee_id: int | None
    email: str | None = None
    name: str | None = None
