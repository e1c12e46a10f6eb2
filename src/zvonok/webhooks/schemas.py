"""Pydantic schemas of the webhook API. Whether a URL is safe to call depends on a platform setting, and
whether an event type exists on the registered events: both are the service's checks (422 naming the
field)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
EventTypes = Annotated[
    list[Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]],
    Field(
        max_length=100,
        description="Event class names (e.g. CallStarted, CdrWritten); empty: every event of the company",
    ),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookCreate(_In):
    url: Url = Field(description="http:// or https:// URL the events are POSTed to")
    event_types: EventTypes = []
    enabled: bool = True


class WebhookUpdate(_In):
    url: Url | None = None
    event_types: EventTypes | None = None
    enabled: bool | None = Field(default=None, description="true also clears an automatic switch-off")


class WebhookOut(BaseModel):
    id: int
    tenant_id: int
    url: str
    event_types: list[str]
    enabled: bool
    status: str = Field(
        description="active | disabled (by an admin) | failing (switched off after failures in a row)"
    )
    failures: int = Field(description="Failed tries in a row")
    disabled_reason: str | None
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The HMAC key of X-Zvonok-Signature: shown only now")


class DeliveryOut(BaseModel):
    id: int
    webhook_id: int
    event_id: str
    event_type: str
    state: str = Field(description="pending | delivered | failed")
    attempts: int
    next_at: datetime | None = Field(description="The next try (pending only)")
    last_status: int | None = Field(description="The HTTP status of the last try (null: no answer)")
    last_error: str
    created_at: datetime
    delivered_at: datetime | None
