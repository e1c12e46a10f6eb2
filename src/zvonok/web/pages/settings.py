"""Company settings (tenant admins): the name, time zone, currency and language a tenant admin may change.

The SIP domain (the realm of the extensions' digests) and suspension are the platform operator's, as in
``PATCH /api/v1/tenants/{id}``; the page shows the domain read-only.
"""

from __future__ import annotations

from typing import Annotated
from zoneinfo import available_timezones

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.org import schemas, service
from zvonok.org.errors import OrgError
from zvonok.web.auth import TenantAdminUser
from zvonok.web.forms import org_error_field, schema_errors
from zvonok.web.i18n import N_
from zvonok.web.pages.hold_music import music_context
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import ADMIN, NavItem, page_router

router = page_router()
NAV = [NavItem("/settings", N_("Settings"), ADMIN, order=60)]
FIELDS = ("name", "timezone", "currency", "locale")
LOCALE_CHOICES = ("en-US", "en-GB", "ru-RU")
CURRENCY_CHOICES = ("RUB", "USD", "EUR", "KZT", "BYN")


def _page(request: Request, tenant: schemas.TenantOut, form: dict[str, str], errors: dict[str, str], *,
          saved: bool = False, status_code: int = 200, music_error: str | None = None) -> Response:
    return render(request, "settings/index.html", {
        "tenant": tenant, "form": form, "errors": errors, "saved": saved,
        "zones": sorted(available_timezones()), "locales": LOCALE_CHOICES, "currencies": CURRENCY_CHOICES,
        "music": music_context(request, tenant.id), "music_error": music_error,
        "music_done": request.query_params.get("music"),
    }, status_code=status_code)


async def render_settings(request: Request, session: AsyncSession, tenant_id: int, *, status_code: int = 200,
                          music_error: str | None = None) -> Response:
    """The page with the stored settings (the music on hold section's refused upload, see hold_music.py)."""
    tenant = schemas.TenantOut.model_validate(await service.get_tenant(session, tenant_id))
    return _page(request, tenant, {f: getattr(tenant, f) for f in FIELDS}, {}, status_code=status_code,
                 music_error=music_error)


@router.get("/settings")
async def settings_form(request: Request, user: TenantAdminUser,
                        session: Annotated[AsyncSession, Depends(get_session)], saved: bool = False) -> Response:
    tenant = schemas.TenantOut.model_validate(await service.get_tenant(session, user.tenant))
    return _page(request, tenant, {f: getattr(tenant, f) for f in FIELDS}, {}, saved=saved)


@router.post("/settings")
async def save_settings(
    request: Request, user: TenantAdminUser, session: Annotated[AsyncSession, Depends(get_session)],
    name: Annotated[str, Form(max_length=300)] = "",
    timezone: Annotated[str, Form(max_length=100)] = "",
    currency: Annotated[str, Form(max_length=20)] = "",
    locale: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    _ = gettext_for(request)
    form = {"name": name, "timezone": timezone.strip(), "currency": currency, "locale": locale.strip()}
    errors: dict[str, str] = {}
    try:
        data = schemas.TenantUpdate(name=form["name"], timezone=form["timezone"], currency=form["currency"],
                                    locale=form["locale"])
    except PydanticValidationError as exc:
        errors = schema_errors(exc, {
            "name": _("Required: up to 200 characters, without line breaks."),
            "timezone": _("Unknown time zone: use a name such as Europe/Moscow."),
            "currency": _("A three-letter currency code, such as RUB."),
            "locale": _("A language code such as en-US or ru-RU."),
        }, _("Invalid value."))
    else:
        try:
            await service.update_tenant(session, user.tenant, data)
            await session.commit()
        except OrgError as exc:
            await session.rollback()
            errors[org_error_field(exc, "name")] = _("Invalid value.")
    if errors:
        tenant = schemas.TenantOut.model_validate(await service.get_tenant(session, user.tenant))
        return _page(request, tenant, form, errors, status_code=422)
    return RedirectResponse("/settings?saved=1", status_code=303)
