"""Payments by webhook: a bank, a payment provider or the company's own billing tells the CRM that an
invoice was paid, as it happens, instead of a statement imported later (:mod:`zvonok.crm.payments_csv`).

The company admin turns it on (``POST /api/v1/tenants/{id}/crm/payment-hook``): the company gets a URL,
``/api/v1/hooks/payments/<key>``, and a secret, shown that once (posting again makes new ones: the old URL
stops working). A notification is a JSON object — ``invoice_number``, ``amount`` (``"1500.50"``),
``paid_at`` (``2026-12-01`` or ``01.12.2026``) and ``reference`` (the provider's id of the payment, required)
— POSTed to the URL and signed as Zvonok's own outgoing webhooks are (:func:`zvonok.webhooks.delivery.signature`):
``X-Zvonok-Timestamp`` (Unix seconds, within :data:`MAX_SKEW` of ours) and ``X-Zvonok-Signature:
sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``.

Answers: 201 and the payment when recorded; 200 with ``duplicate`` when that invoice already has a payment
with that reference (a provider re-sends a notification until it gets a 2xx: it pays nothing twice); 401 —
one answer, the same body — for an unknown key, a missing or wrong signature or a stale timestamp, so that
nobody learns whether a URL exists; 422 with the reason for a signed notification that cannot be recorded
(no such invoice, a draft or cancelled one, a bad amount or date). Checks and recording are those of the CSV
import: one notification is a one-row statement. Two copies of one notification arriving at once are
recorded once on a node (a lock per company); across nodes the second may be recorded too (left: a unique
reference per invoice in the database).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.webhooks.delivery import signature

from . import payments_csv
from .deals import Actor
from .models import CrmInvoice, CrmPayment, CrmSettings
from .tasks import get_settings

PATH = "/api/v1/hooks/payments/"
MAX_SKEW = 300  # seconds between the notification's timestamp and our clock
FIELDS = ("invoice_number", "amount", "paid_at", "reference")
_DUMMY_SECRET = secrets.token_hex(32)  # an unknown key still costs one HMAC: its answer takes as long
_locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)


class Unauthorized(Exception):
    """The notification is not the company's (unknown key, bad signature, stale timestamp)."""


class Refused(Exception):
    """A signed notification that cannot be recorded: ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Outcome:
    payment_id: int
    invoice_number: str
    duplicate: bool


async def enable(session: AsyncSession, tenant_id: int) -> tuple[str, str]:
    """New URL key and secret for the company (the old ones stop working): ``(path, secret)``."""
    row = await get_settings(session, tenant_id)
    row.payment_hook_key = secrets.token_urlsafe(24)
    row.payment_hook_secret = secrets.token_hex(32)
    await session.flush()
    return PATH + row.payment_hook_key, row.payment_hook_secret


async def disable(session: AsyncSession, tenant_id: int) -> None:
    row = await get_settings(session, tenant_id)
    row.payment_hook_key = row.payment_hook_secret = None
    await session.flush()


async def path_of(session: AsyncSession, tenant_id: int) -> str | None:
    key = (await session.execute(select(CrmSettings.payment_hook_key).where(
        CrmSettings.tenant_id == tenant_id))).scalar_one_or_none()
    return PATH + key if key else None


def verify(secret: str, timestamp: str | None, given: str | None, body: bytes, now: float) -> bool:
    """The signature holds and the timestamp is recent."""
    if not timestamp or not given or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if abs(now - int(timestamp)) > MAX_SKEW:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), given)


def _fields(body: bytes) -> dict[str, str]:
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused("the body is not JSON") from None
    if not isinstance(data, dict):
        raise Refused("the body must be a JSON object")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise Refused(f"unknown field {unknown[0]!r}; the fields are {', '.join(FIELDS)}")
    out: dict[str, str] = {}
    for name in FIELDS:
        value = data.get(name)
        if isinstance(value, bool) or not isinstance(value, str | int | float) or str(value).strip() == "":
            raise Refused(f"{name}: required, a string")
        out[name] = str(value).strip()
    return out


async def receive(session: AsyncSession, key: str, timestamp: str | None, given: str | None, body: bytes,
                  *, now: float | None = None) -> Outcome:
    """Check one notification POSTed to the URL with ``key`` and record it (committed here, under the lock)."""
    row = None
    if 0 < len(key) <= 40:
        row = (await session.execute(select(CrmSettings).where(
            CrmSettings.payment_hook_key == key))).scalar_one_or_none()
    secret = row.payment_hook_secret if row is not None and row.payment_hook_secret else _DUMMY_SECRET
    ok = verify(secret, timestamp, given, body, time.time() if now is None else now)
    if row is None or not ok:
        raise Unauthorized
    tenant_id = row.tenant_id
    fields = _fields(body)
    parsed = payments_csv.Parsed()
    checked = payments_csv.check_row(parsed, 1, fields["invoice_number"], fields["amount"], fields["paid_at"],
                                     fields["reference"])
    if checked is None:
        raise Refused(parsed.errors[0].message)
    parsed.rows.append(checked)
    async with _locks[tenant_id]:
        earlier = (await session.execute(select(CrmPayment.id).join(
            CrmInvoice, CrmInvoice.id == CrmPayment.invoice_id).where(
            CrmPayment.tenant_id == tenant_id, CrmInvoice.tenant_id == tenant_id,
            CrmInvoice.number == checked.invoice_number, CrmPayment.note == checked.reference))).scalars().first()
        if earlier is not None:
            return Outcome(payment_id=earlier, invoice_number=checked.invoice_number, duplicate=True)
        result = await payments_csv.record(session, tenant_id, parsed, Actor(admin=True, employee_id=None))
        if not result.ok:
            raise Refused(result.errors[0].message)
        await session.commit()  # under the lock: a copy arriving meanwhile finds this one
    return Outcome(payment_id=result.created[0], invoice_number=checked.invoice_number, duplicate=False)
