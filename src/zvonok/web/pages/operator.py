"""The platform operator's pages: the companies (tenants) and the pool of external numbers.

Only the platform admin (:data:`PlatformAdminUser`, else 403). These are the console's only unscoped
pages: they call the ``platform_*`` services, as the REST API's ``/api/v1/tenants`` and
``/api/v1/platform/numbers`` routes do.

A company is created with its first admin login in one transaction: a refused login (an email already
taken) leaves no company behind.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.org import accounts, schemas, service
from zvonok.org.credentials import generate_web_password
from zvonok.org.errors import OrgError
from zvonok.org.models import Account, Employee, Extension, Role, Tenant
from zvonok.pstn import schemas as pstn_schemas
from zvonok.pstn import service as pstn_service
from zvonok.pstn.models import PhoneNumber
from zvonok.web.auth import PlatformAdminUser
from zvonok.web.i18n import N_
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import OPERATOR, NavItem, page_router

router = page_router()
NAV = [
    NavItem("/operator/companies", N_("Companies"), OPERATOR, order=90),
    NavItem("/operator/numbers", N_("Number pool"), OPERATOR, order=91),
]
PAGE = 50
MAX_NEW_NUMBERS = 200  # one form adds at most this many
TENANT_CHOICES = 1000  # companies offered in a number's "assign to" list
LOCALES = (("en-US", "English"), ("ru-RU", "Русский"))
_Session = Annotated[AsyncSession, Depends(get_session)]


def _pages(total: int) -> int:
    return max(1, -(-total // PAGE))


# --- companies -------------------------------------------------------------------------------------
async def _counts(session: AsyncSession, model: Any, tenant_ids: list[int]) -> dict[int, int]:
    """Rows of ``model`` per tenant, for the listed tenants only (one grouped query)."""
    if not tenant_ids:
        return {}
    stmt = (select(model.tenant_id, func.count()).where(model.tenant_id.in_(tenant_ids))
            .group_by(model.tenant_id))
    return {tenant: int(n) for tenant, n in (await session.execute(stmt)).all()}


async def _companies(session: AsyncSession, page: int, q: str | None) -> dict[str, Any]:
    rows, total = await service.platform_list_tenants(session, q=q or None, limit=PAGE, offset=(page - 1) * PAGE)
    ids = [t.id for t in rows]
    admins = select(Account.tenant_id, func.count()).where(Account.tenant_id.in_(ids),
                                                           Account.role == Role.TENANT_ADMIN.value)
    return {
        "rows": rows, "total": total, "page": page, "pages": _pages(total), "q": q or "",
        "extensions": await _counts(session, Extension, ids), "employees": await _counts(session, Employee, ids),
        "numbers": await _counts(session, PhoneNumber, ids),
        "admins": {t: int(n) for t, n in (await session.execute(admins.group_by(Account.tenant_id))).all()},
        "locales": LOCALES,
    }


@router.get("/operator/companies")
async def companies(request: Request, user: PlatformAdminUser, session: _Session,
                    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
                    q: Annotated[str | None, Query(max_length=100)] = None) -> Response:
    context = await _companies(session, page, q)
    context.update(form={"timezone": "UTC", "currency": "USD", "locale": "en-US"}, errors={}, created=None)
    return render(request, "operator/companies.html", context)


_TENANT_FIELDS = ("name", "sip_domain", "timezone", "currency", "locale")


@router.post("/operator/companies")
async def create_company(
    request: Request, user: PlatformAdminUser, session: _Session,
    name: Annotated[str, Form(max_length=200)] = "",
    sip_domain: Annotated[str, Form(max_length=253)] = "",
    timezone: Annotated[str, Form(max_length=64)] = "",
    currency: Annotated[str, Form(max_length=8)] = "",
    locale: Annotated[str, Form(max_length=16)] = "",
    admin_email: Annotated[str, Form(max_length=254)] = "",
    admin_password: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    _ = gettext_for(request)
    form = {"name": name, "sip_domain": sip_domain, "timezone": timezone, "currency": currency, "locale": locale,
            "admin_email": admin_email}
    messages = {
        "name": _("Required, one line."), "sip_domain": _("A domain name such as acme.example.com."),
        "timezone": _("An IANA time zone such as Europe/Moscow."), "currency": _("Three letters such as RUB."),
        "locale": _("Choose a language."), "admin_email": _("An email address."),
        "admin_password": _("At least 8 characters, or leave empty to generate one."),
    }
    errors: dict[str, str] = {}
    data = None
    try:
        data = schemas.TenantCreate(name=name, sip_domain=sip_domain, timezone=timezone.strip() or "UTC",
                                    currency=currency or "USD", locale=locale or "en-US")
    except PydanticValidationError as exc:
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "name"
            errors[field] = messages.get(field, _("Invalid value."))
    if locale and locale not in dict(LOCALES):  # the console speaks these (a valid tag of another is no use)
        errors["locale"] = messages["locale"]
    try:
        email = schemas.check_email(admin_email)
    except ValueError:
        errors["admin_email"] = messages["admin_email"]
    if admin_password and len(admin_password) < 8:
        errors["admin_password"] = messages["admin_password"]
    created = None
    if not errors and data is not None:
        password = admin_password or generate_web_password()
        try:
            tenant = await service.platform_create_tenant(session, data)
            await accounts.platform_create_account(session, email=email, password=password, role=Role.TENANT_ADMIN,
                                                   tenant_id=tenant.id)
            await session.commit()
            created = {"name": tenant.name, "domain": tenant.sip_domain, "email": email,
                       "password": None if admin_password else password}
            form = {"timezone": "UTC", "currency": "USD", "locale": "en-US"}
        except OrgError as exc:
            await session.rollback()  # neither the company nor its admin
            if exc.status == 409 and exc.field == "email":
                errors["admin_email"] = _("An account with this email already exists.")
            elif exc.status == 409:
                errors["sip_domain"] = _("This domain is already in use.")
            else:
                errors[exc.field if exc.field in messages else "name"] = _("Invalid value.")
    context = await _companies(session, 1, None)
    context.update(form=form, errors=errors, created=created)
    return render(request, "operator/companies.html", context, status_code=422 if errors else 200)


# --- the number pool -------------------------------------------------------------------------------
_SHOWS = ("all", "free", "assigned")


async def _numbers(session: AsyncSession, page: int, show: str, q: str | None) -> dict[str, Any]:
    free = {"free": True, "assigned": False}.get(show)
    rows, total = await pstn_service.platform_list_numbers(session, free=free, q=q or None, limit=PAGE,
                                                           offset=(page - 1) * PAGE)
    tenants = (await session.execute(select(Tenant.id, Tenant.name, Tenant.sip_domain)
                                     .order_by(Tenant.name, Tenant.id).limit(TENANT_CHOICES))).all()
    names = {t.id: f"{t.name} ({t.sip_domain})" for t in tenants}
    missing = {n.tenant_id for n in rows if n.tenant_id is not None and n.tenant_id not in names}
    if missing:  # a holder beyond the choice list still shows by name
        found = await session.execute(select(Tenant.id, Tenant.name, Tenant.sip_domain).where(Tenant.id.in_(missing)))
        names.update({t.id: f"{t.name} ({t.sip_domain})" for t in found.all()})
    return {"rows": rows, "total": total, "page": page, "pages": _pages(total), "show": show, "q": q or "",
            "shows": _SHOWS, "tenant_names": names, "tenant_choices": [(t.id, names[t.id]) for t in tenants]}


def _show(value: str | None) -> str:
    return value if value in _SHOWS else "all"


@router.get("/operator/numbers")
async def numbers(request: Request, user: PlatformAdminUser, session: _Session,
                  page: Annotated[int, Query(ge=1, le=100_000)] = 1,
                  show: Annotated[str | None, Query(max_length=16)] = None,
                  q: Annotated[str | None, Query(max_length=32)] = None) -> Response:
    context = await _numbers(session, page, _show(show), q)
    context.update(form={}, errors={}, done=None)
    return render(request, "operator/numbers.html", context)


def _parse_fee(text: str) -> Decimal | None:
    try:
        return Decimal(text.strip().replace(",", ".") or "0")
    except InvalidOperation:
        return None


@router.post("/operator/numbers")
async def add_numbers(
    request: Request, user: PlatformAdminUser, session: _Session,
    numbers: Annotated[str, Form(max_length=20_000)] = "",
    monthly_fee: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Numbers into the pool, one per line (all or none: a bad line adds nothing)."""
    _ = gettext_for(request)
    lines = [line.strip() for line in numbers.splitlines() if line.strip()]
    errors: dict[str, str] = {}
    fee = _parse_fee(monthly_fee)
    if not lines:
        errors["numbers"] = _("Enter at least one number.")
    elif len(lines) > MAX_NEW_NUMBERS:
        errors["numbers"] = _("At most %(count)s numbers at once.") % {"count": MAX_NEW_NUMBERS}
    if fee is None:
        errors["monthly_fee"] = _("An amount such as 10.00.")
    done = None
    if not errors and fee is not None:
        added: list[str] = []
        for line in lines:
            try:
                data = pstn_schemas.NumberCreate(number=line, monthly_fee=fee)
            except PydanticValidationError as exc:
                if any(err["loc"] and err["loc"][0] == "monthly_fee" for err in exc.errors()):
                    errors["monthly_fee"] = _("An amount such as 10.00.")
                else:
                    errors["numbers"] = _("%(line)s is not a phone number in international format (+7 495 …).") % {
                        "line": line}
                break
            try:
                added.append((await pstn_service.platform_create_number(session, data)).number)
            except OrgError:
                errors["numbers"] = _("%(number)s is already in the pool.") % {"number": data.number}
                break
        if errors:
            await session.rollback()
        else:
            await session.commit()
            done = _("Added to the pool: %(numbers)s.") % {"numbers": ", ".join(added)}
    context = await _numbers(session, 1, "all", None)
    context.update(form={} if done else {"numbers": numbers, "monthly_fee": monthly_fee}, errors=errors, done=done)
    return render(request, "operator/numbers.html", context, status_code=422 if errors else 200)


@router.post("/operator/numbers/{number_id}/assign")
async def assign_number(request: Request, number_id: int, user: PlatformAdminUser, session: _Session,
                        tenant_id: Annotated[str, Form(max_length=12)] = "") -> Response:
    _ = gettext_for(request)
    error = None
    if not tenant_id.isdigit() or not 0 < int(tenant_id) <= 2**31 - 1:
        error = _("Choose a company.")
    else:
        try:
            number = await pstn_service.platform_assign_number(session, number_id, int(tenant_id))
            await session.commit()
        except OrgError as exc:
            await session.rollback()
            if exc.status == 404:
                raise
            error = _("The number is already assigned.") if exc.status == 409 else _("Choose a company.")
    if error is None:
        return RedirectResponse(f"/operator/numbers?q={number.number.lstrip('+')}", status_code=303)
    context = await _numbers(session, 1, "all", None)
    context.update(form={}, errors={"assign": error}, done=None)
    return render(request, "operator/numbers.html", context, status_code=422)


@router.post("/operator/numbers/{number_id}/release")
async def release_number(request: Request, number_id: int, user: PlatformAdminUser, session: _Session) -> Response:
    _ = gettext_for(request)
    try:
        number = await pstn_service.platform_release_number(session, number_id)
        await session.commit()
    except OrgError as exc:
        await session.rollback()
        if exc.status == 404:
            raise
        context = await _numbers(session, 1, "all", None)
        context.update(form={}, errors={"assign": _("The number is not assigned.")}, done=None)
        return render(request, "operator/numbers.html", context, status_code=409)
    return RedirectResponse(f"/operator/numbers?q={number.number.lstrip('+')}", status_code=303)
