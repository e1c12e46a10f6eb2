"""Events of the webhooks layer: ``WebhookChanged`` (after the commit: the dispatcher forgets the
tenant's webhooks), ``WebhookQueued`` (a delivery was queued by a request: the job wakes) and
``WebhookPing``, the test event an admin sends to one webhook."""

from __future__ import annotations

from dataclasses import dataclass

from zvonok.bus import register_event


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookChanged:
    tenant_id: int
    webhook_id: int
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookQueued:
    tenant_id: int
    webhook_id: int
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookPing:
    tenant_id: int
    webhook_id: int
    version: int = 1


# never delivered to webhooks: the layer's own bookkeeping
INTERNAL: tuple[type, ...] = (WebhookChanged, WebhookQueued)
