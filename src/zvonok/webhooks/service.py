"""Webhooks of one tenant (the tenant is the first argument after the session): CRUD, the checks of URL
and event types, recent deliveries and the test ping.

Services flush but never commit; each write queues a ``WebhookChanged`` delivered after the commit (the
dispatcher forgets the tenant's webhooks); a ping queues ``WebhookQueued`` (the job wakes).
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.org import quotas
from zvonok.org.errors import ValidationError
from zvonok.org.scope import get_in_tenant, page_in_tenant
from zvonok.storage.db import emit

from . import schemas
from .delivery import UnsafeUrl, check_url, deliverable_types, envelope, queue
from .events import WebhookChanged, WebhookPing, WebhookQueued
from .models import Webhook, WebhookDelivery

MAX_DELIVERIES = 100


def status(hook: Webhook) -> str:
    if hook.enabled:
        return "active"
    return "failing" if hook.disabled_reason else "disabled"


def webhook_out(hook: Webhook) -> schemas.WebhookOut:
    return schemas.WebhookOut(
        id=hook.id,
        tenant_id=hook.tenant_id,
        url=hook.url,
        event_types=list(hook.event_types),
        enabled=hook.enabled,
        status=status(hook),
        failures=hook.failures,
        disabled_reason=hook.disabled_reason,
        created_at=hook.created_at,
    )


def delivery_out(row: WebhookDelivery) -> schemas.DeliveryOut:
    return schemas.DeliveryOut(
        id=row.id,
        webhook_id=row.webhook_id,
        event_id=row.event_id,
        event_type=row.event_type,
        state=row.state,
        attempts=row.attempts,
        next_at=row.next_at if row.state == "pending" else None,
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


def _url(url: str, allow_private: bool) -> str:
    try:
        return check_url(url, allow_private=allow_private)
    except UnsafeUrl as exc:
        raise ValidationError(f"url: {exc}", field="url") from None


def _types(names: list[str]) -> list[str]:
    known = deliverable_types()
    for i, name in enumerate(names):
        if name not in known:
            raise ValidationError(
                f"event_types[{i}]: {name!r} is not an event type (one of: {', '.join(sorted(known))})",
                field="event_types",
            )
    return list(dict.fromkeys(names))


async def create_webhook(
    session: AsyncSession, tenant_id: int, data: schemas.WebhookCreate, *, allow_private: bool
) -> Webhook:
    await quotas.check(session, tenant_id, "webhooks", Webhook)
    hook = Webhook(
        tenant_id=tenant_id,
        url=_url(data.url, allow_private),
        event_types=_types(data.event_types),
        enabled=data.enabled,
        secret=secrets.token_hex(32),
        failures=0,
    )
    session.add(hook)
    await session.flush()
    emit(session, WebhookChanged(tenant_id=tenant_id, webhook_id=hook.id))
    return hook


async def get_webhook(session: AsyncSession, tenant_id: int, webhook_id: int) -> Webhook:
    return await get_in_tenant(session, Webhook, tenant_id, webhook_id, "webhook")


async def list_webhooks(
    session: AsyncSession, tenant_id: int, *, limit: int, offset: int
) -> tuple[list[Webhook], int]:
    return await page_in_tenant(
        session, Webhook, tenant_id, order_by=[Webhook.id], limit=limit, offset=offset
    )


async def update_webhook(
    session: AsyncSession,
    tenant_id: int,
    webhook_id: int,
    data: schemas.WebhookUpdate,
    *,
    allow_private: bool,
) -> Webhook:
    hook = await get_webhook(session, tenant_id, webhook_id)
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    for field in ("url", "event_types", "enabled"):
        if field in changes and changes[field] is None:
            raise ValidationError(f"{field}: may not be null", field=field)
    if "url" in changes:
        hook.url = _url(changes["url"], allow_private)
    if "event_types" in changes:
        hook.event_types = _types(changes["event_types"])
    if "enabled" in changes:
        hook.enabled = changes["enabled"]
        if hook.enabled:  # switched on again: a fresh start
            hook.failures = 0
            hook.disabled_reason = None
    await session.flush()
    emit(session, WebhookChanged(tenant_id=tenant_id, webhook_id=hook.id))
    return hook


async def delete_webhook(session: AsyncSession, tenant_id: int, webhook_id: int) -> None:
    hook = await get_webhook(session, tenant_id, webhook_id)
    await session.delete(hook)
    await session.flush()
    emit(session, WebhookChanged(tenant_id=tenant_id, webhook_id=webhook_id))


async def list_deliveries(
    session: AsyncSession, tenant_id: int, webhook_id: int, *, limit: int = MAX_DELIVERIES
) -> list[WebhookDelivery]:
    await get_webhook(session, tenant_id, webhook_id)
    rows = await session.execute(
        select(WebhookDelivery)
        .where(WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return list(rows.scalars())


async def ping(session: AsyncSession, tenant_id: int, webhook_id: int) -> WebhookDelivery:
    """Queue a ``WebhookPing`` to this webhook alone, whatever its event types. A disabled webhook is
    refused (422): the job never calls one."""
    hook = await get_webhook(session, tenant_id, webhook_id)
    if not hook.enabled:
        raise ValidationError("the webhook is disabled: enable it first", field="enabled")
    event = WebhookPing(tenant_id=tenant_id, webhook_id=hook.id)
    event_id, body = envelope(event)
    row = queue(session, hook, event, event_id, body)
    await session.flush()
    emit(session, WebhookQueued(tenant_id=tenant_id, webhook_id=hook.id))
    return row
