"""The webhook tables: a company's endpoints and the deliveries queued to them.

``webhooks``: the URL, the event types it wants (JSON list of event class names; empty: all of them),
``enabled``, the HMAC secret (kept as generated: the job must sign with it), and ``failures``, the
failed tries in a row; a webhook failing ``disable_after`` times in a row is switched off by the job,
which says why in ``disabled_reason``.

``webhook_deliveries``: one row per event per webhook, the outbox of :mod:`zvonok.webhooks.delivery`
(as ``mail_outbox`` is the mail job's): the JSON body as it is sent every try, ``state`` pending →
delivered | failed, attempts, the next try, the last HTTP status and error.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zvonok.storage.base import Base, TenantScoped, Timestamped, utcnow

STATES = ("pending", "delivered", "failed")


class Webhook(TenantScoped, Timestamped, Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[str] = mapped_column(String(100))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    disabled_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)


class WebhookDelivery(TenantScoped, Timestamped, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="state"),
        Index("ix_webhook_deliveries_state_next_at", "state", "next_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    # the body's "id": the same for every webhook of one event
    event_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(9), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(String(200), default="")
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
