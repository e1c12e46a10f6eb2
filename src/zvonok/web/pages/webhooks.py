"""The company's outgoing webhooks (tenant admins): the list with each one's last delivery, a new webhook (its
signing secret shown once, as the API's POST answers it), switching one off and on, deleting, a test event,
and one webhook's recent deliveries (status code, attempts, time, error). Below them, the incoming side:
payment notifications (:mod:`zvonok.crm.payment_hook`) switched on (a URL and its secret, shown once),
renewed or off.

The same services as ``/api/v1/tenants/{id}/webhooks`` do the work, so the rules are the API's: only
http(s) URLs, none into the platform's network unless ``ZVONOK_WEBHOOKS_ALLOW_PRIVATE`` is set, at most
the platform's quota of webhooks per company; a refusal shows the service's reason on the page (422).
Another company's webhook is a 404 page, as in the API.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session, get_settings
from zvonok.config import Settings
from zvonok.crm import payment_hook
from zvonok.org import quotas
from zvonok.org.errors import Conflict, OrgError
from zvonok.web.auth import TenantAdminUser
from zvonok.web.forms import schema_errors
from zvonok.web.i18n import N_
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import ADMIN, NavItem, page_router
from zvonok.webhooks import schemas, service
from zvonok.webhooks.delivery import deliverable_types
from zvonok.webhooks.models import WebhookDelivery

router = page_router()
NAV = [NavItem("/settings/webhooks", N_("Webhooks"), ADMIN, order=62)]
Session = Annotated[AsyncSession, Depends(get_session)]
Config = Annotated[Settings, Depends(get_settings)]
LIMIT = 100  # the quota is 20 by default; an operator may raise it
STATUSES = {"active": N_("Active"), "disabled": N_("Switched off"), "failing": N_("Switched off after failures")}
STATES = {"pending": N_("Pending"), "delivered": N_("Delivered"), "failed": N_("Failed")}
DONE = {"enabled": N_("The webhook is switched on."), "disabled": N_("The webhook is switched off."),
        "deleted": N_("The webhook is deleted."), "pinged": N_("A test event is queued: it is sent in a moment."),
        "payments_off": N_("Payment notifications are switched off: their URL no longer takes any.")}


async def _last_deliveries(session: AsyncSession, tenant_id: int, ids: list[int]) -> dict[int, WebhookDelivery]:
    """Each webhook's latest delivery (one query for the page)."""
    if not ids:
        return {}
    latest = (select(func.max(WebhookDelivery.id)).where(WebhookDelivery.tenant_id == tenant_id,
                                                         WebhookDelivery.webhook_id.in_(ids))
              .group_by(WebhookDelivery.webhook_id))
    rows = await session.execute(select(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant_id,
                                                               WebhookDelivery.id.in_(latest)))
    return {row.webhook_id: row for row in rows.scalars()}


async def _page(request: Request, session: AsyncSession, tenant_id: int, *, form: dict[str, Any] | None = None,
                errors: dict[str, str] | None = None, created: schemas.WebhookCreated | None = None,
                payment_secret: str | None = None, status_code: int = 200) -> Response:
    rows, total = await service.list_webhooks(session, tenant_id, limit=LIMIT, offset=0)
    last = await _last_deliveries(session, tenant_id, [h.id for h in rows])
    payment_path = await payment_hook.path_of(session, tenant_id)
    return render(request, "settings/webhooks.html", {
        "payment_url": str(request.base_url).rstrip("/") + payment_path if payment_path else None,
        "payment_secret": payment_secret,
        "hooks": [service.webhook_out(h) for h in rows], "total": total, "last": last,
        "form": form or {"url": "", "event_types": []}, "errors": errors or {}, "created": created,
        "event_types": sorted(deliverable_types()), "statuses": STATUSES, "states": STATES,
        "quota": quotas.limit("webhooks"), "done": DONE.get(request.query_params.get("done", "")),
    }, status_code=status_code, headers={"Cache-Control": "no-store"} if created or payment_secret else None)


@router.get("/settings/webhooks")
async def webhooks(request: Request, user: TenantAdminUser, session: Session) -> Response:
    return await _page(request, session, user.tenant)


@router.post("/settings/webhooks")
async def create_webhook(request: Request, user: TenantAdminUser, session: Session, settings: Config,
                         url: Annotated[str, Form(max_length=2100)] = "",
                         event_types: Annotated[list[str], Form(max_length=200)] = [],  # noqa: B006 - FastAPI copies it
                         ) -> Response:
    _ = gettext_for(request)
    form = {"url": url, "event_types": event_types}
    try:
        body = schemas.WebhookCreate(url=url, event_types=event_types)
        hook = await service.create_webhook(session, user.tenant, body, allow_private=settings.webhooks_allow_private)
    except PydanticValidationError as exc:
        errors = schema_errors(exc, {"url": _("Required: an http:// or https:// URL of at most 2000 characters."),
                                     "event_types": _("Choose event types from the list.")}, _("Invalid value."))
        return await _page(request, session, user.tenant, form=form, errors=errors, status_code=422)
    except OrgError as exc:  # the URL or an event type refused, or the quota reached: the service's reason
        await session.rollback()
        field = "" if isinstance(exc, Conflict) else (exc.field or "")
        return await _page(request, session, user.tenant, form=form, errors={field: exc.message}, status_code=422)
    await session.commit()
    created = schemas.WebhookCreated(**service.webhook_out(hook).model_dump(), secret=hook.secret)
    return await _page(request, session, user.tenant, created=created)


@router.post("/settings/webhooks/{webhook_id:int}/enable")
async def enable_webhook(webhook_id: int, user: TenantAdminUser, session: Session, settings: Config,
                         on: Annotated[str, Form(max_length=5)] = "1") -> Response:
    """Switch a webhook on (``on=1``, which also clears an automatic switch-off) or off (``on=0``)."""
    enabled = on == "1"
    await service.update_webhook(session, user.tenant, webhook_id, schemas.WebhookUpdate(enabled=enabled),
                                 allow_private=settings.webhooks_allow_private)  # another company's: 404 page
    await session.commit()
    done = "enabled" if enabled else "disabled"
    return RedirectResponse(f"/settings/webhooks?done={done}#webhook-{webhook_id}", status_code=303)


@router.post("/settings/webhooks/{webhook_id:int}/delete")
async def delete_webhook(webhook_id: int, user: TenantAdminUser, session: Session) -> Response:
    await service.delete_webhook(session, user.tenant, webhook_id)
    await session.commit()
    return RedirectResponse("/settings/webhooks?done=deleted", status_code=303)


async def _deliveries(request: Request, session: AsyncSession, tenant_id: int, webhook_id: int, *,
                      error: str = "", status_code: int = 200) -> Response:
    hook = await service.get_webhook(session, tenant_id, webhook_id)
    rows = await service.list_deliveries(session, tenant_id, webhook_id, limit=service.MAX_DELIVERIES)
    return render(request, "settings/webhook.html", {
        "hook": service.webhook_out(hook), "deliveries": [service.delivery_out(r) for r in rows],
        "statuses": STATUSES, "states": STATES, "error": error,
        "done": DONE.get(request.query_params.get("done", "")),
    }, status_code=status_code)


@router.get("/settings/webhooks/{webhook_id:int}")
async def webhook_deliveries(request: Request, webhook_id: int, user: TenantAdminUser, session: Session) -> Response:
    return await _deliveries(request, session, user.tenant, webhook_id)


@router.post("/settings/webhooks/{webhook_id:int}/ping")
async def ping_webhook(request: Request, webhook_id: int, user: TenantAdminUser, session: Session) -> Response:
    """Queue a test event to this webhook (the delivery job sends it, never this request)."""
    try:
        await service.ping(session, user.tenant, webhook_id)
    except OrgError as exc:
        if exc.status == 404:
            raise
        await session.rollback()  # a switched-off webhook: the reason on its page
        return await _deliveries(request, session, user.tenant, webhook_id, error=exc.message, status_code=422)
    await session.commit()
    return RedirectResponse(f"/settings/webhooks/{webhook_id}?done=pinged", status_code=303)


@router.post("/settings/webhooks/payments")
async def enable_payment_hook(request: Request, user: TenantAdminUser, session: Session) -> Response:
    """Payment notifications on, or a new URL and secret (the old ones stop working): the secret shown once."""
    _path, secret = await payment_hook.enable(session, user.tenant)
    await session.commit()
    return await _page(request, session, user.tenant, payment_secret=secret)


@router.post("/settings/webhooks/payments/off")
async def disable_payment_hook(user: TenantAdminUser, session: Session) -> Response:
    await payment_hook.disable(session, user.tenant)
    await session.commit()
    return RedirectResponse("/settings/webhooks?done=payments_off#payment-hook", status_code=303)
