"""Webhook delivery: the dispatcher queues, the job sends.

How it works. :class:`Dispatcher` is a durable bus subscriber: for each event of a tenant (one that
carries a ``tenant_id``) it looks up the tenant's enabled webhooks (cached per tenant, forgotten on
``WebhookChanged`` and after ``cache_ttl`` seconds, so a tenant without webhooks costs no query) and,
for each whose event types match, inserts a ``webhook_deliveries`` row holding the JSON body
(:func:`envelope`: ``{"id", "type", "tenant_id", "at", "data"}``, ``data`` being the event as
:func:`zvonok.bus.serialize` renders it for the websocket); the rows are committed, then the job is woken.
Nothing of this runs in a call's path: the bus hands the event over and returns.

:class:`Sender` is the outbox job (the shape of :class:`zvonok.mail.outbox.Outbox`): woken, or every
``poll`` seconds, it claims the due rows (``next_at`` moved ``lease`` seconds ahead in one guarded UPDATE,
so two nodes never send one row twice at once) and POSTs them, at most ``concurrency`` at a time, with
httpx and a ``timeout`` (5 s). Each request is signed: ``X-Zvonok-Signature: sha256=<hex>`` is the
HMAC-SHA256, keyed with the webhook's secret, of ``"<X-Zvonok-Timestamp>.<body>"`` (:func:`signature`).
A 2xx answer delivers the row and clears the webhook's failure count; anything else (a status, a
timeout, a refused connection) is retried after ``backoff[attempts-1]`` seconds and, once the backoff
is used up, the row is ``failed``. ``disable_after`` failures in a row switch the webhook off (its
pending rows fail with it); an admin switches it on again with PATCH. Rows done are kept ``keep`` seconds
(a week) for the deliveries list, then pruned by the job.

Against SSRF a URL may not name a loopback, link-local, private or otherwise special address unless
``ZVONOK_WEBHOOKS_ALLOW_PRIVATE`` is set: :func:`check_url` at registration, and again on every try
against every address the host name resolves to (a public name may be re-pointed inside later).
Redirects are not followed (a 3xx is a failure). A name re-pointed between our resolution and httpx's
connection (DNS rebinding within a second) is not caught: that would take pinning the address.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, select, update

from zvonok.bus import registered_events, serialize
from zvonok.logs import get_logger
from zvonok.mail.outbox import wait_woken
from zvonok.storage.db import Database, emit

from .events import INTERNAL, WebhookChanged
from .models import Webhook, WebhookDelivery

log = get_logger(__name__)

BACKOFF: tuple[float, ...] = (10.0, 60.0, 300.0, 1800.0, 7200.0)  # then failed: six tries over ~2.5 hours
DISABLE_AFTER = 20  # failed tries in a row that switch a webhook off
TIMEOUT = 5.0
KEEP = 7 * 86400.0  # seconds a delivered or failed delivery stays listed
PRUNE_EVERY = 3600.0


class UnsafeUrl(ValueError):
    """A URL a webhook may not call (scheme, or an address inside the platform's network)."""


def _special(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL if a webhook may call it; :class:`UnsafeUrl` saying why not. Host names are not resolved
    here (that happens on each try): only a literal address or ``localhost`` is judged now."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("only http:// and https:// URLs")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("no user name or password in the URL (the signature authenticates us)")
    if port == 0:
        raise UnsafeUrl("port 0")
    if allow_private:
        return url
    host = host.rstrip(".")  # "localhost." is localhost
    if host == "localhost" or host.endswith(".localhost"):
        raise UnsafeUrl(f"{host} is this machine")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return url
    if _special(ip):
        raise UnsafeUrl(f"{host} is a loopback, link-local or private address")
    return url


async def check_resolved(url: str, *, allow_private: bool) -> None:
    """Before a try: every address the host resolves to must be a public one (unless allowed)."""
    check_url(url, allow_private=allow_private)
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeUrl(f"cannot resolve {host}: {exc}") from None
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if _special(ipaddress.ip_address(address)):
            raise UnsafeUrl(f"{host} resolves to {address}, a loopback, link-local or private address")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Zvonok-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def deliverable_types() -> dict[str, type]:
    """The event types a webhook may ask for: every registered event of a tenant but the layer's own."""
    out = {}
    for name, cls in registered_events().items():
        fields = getattr(cls, "__dataclass_fields__", {})
        if "tenant_id" in fields and cls not in INTERNAL:
            out[name] = cls
    return out


def envelope(event: object, *, event_id: str | None = None, at: datetime | None = None) -> tuple[str, str]:
    """The event's id and the JSON body every webhook gets for it."""
    event_id = event_id or str(uuid.uuid4())
    data = serialize(event)
    body = {
        "id": event_id,
        "type": type(event).__name__,
        "tenant_id": getattr(event, "tenant_id", None),
        "at": (at or datetime.now(UTC)).isoformat(),
        "data": data,
    }
    return event_id, json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def queue(
    session: Any, webhook: Webhook, event: object, event_id: str, body: str, now: datetime | None = None
) -> WebhookDelivery:
    row = WebhookDelivery(
        tenant_id=webhook.tenant_id,
        webhook_id=webhook.id,
        event_id=event_id,
        event_type=type(event).__name__,
        body=body,
        state="pending",
        attempts=0,
        next_at=now or datetime.now(UTC),
        last_error="",
    )
    session.add(row)
    return row


@dataclass(frozen=True, slots=True)
class _Target:
    id: int
    types: frozenset[str]  # empty: every type


class Dispatcher:
    """The bus subscriber queuing deliveries; ``on_queued`` (the job's ``wake``) after each commit."""

    def __init__(
        self,
        db: Database,
        *,
        on_queued: Callable[[], None] = lambda: None,
        cache_ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.on_queued = on_queued
        self.cache_ttl = cache_ttl
        self.clock = clock
        self._cache: dict[int, tuple[float, list[_Target]]] = {}
        self._known: dict[type, bool] = {}

    def wants(self, event: object) -> bool:
        if isinstance(event, WebhookChanged):
            self._cache.pop(event.tenant_id, None)
            return False
        if not isinstance(getattr(event, "tenant_id", None), int):
            return False
        cls = type(event)
        known = self._known.get(cls)
        if known is None:  # once per class: this runs in publish, for every event
            known = self._known[cls] = deliverable_types().get(cls.__name__) is cls
        return known

    async def _targets(self, tenant_id: int) -> list[_Target]:
        now = self.clock()
        cached = self._cache.get(tenant_id)
        if cached is not None and now - cached[0] < self.cache_ttl:
            return cached[1]
        async with self.db.session() as session:
            rows = (
                await session.execute(
                    select(Webhook.id, Webhook.event_types).where(
                        Webhook.tenant_id == tenant_id, Webhook.enabled.is_(True)
                    )
                )
            ).all()
        targets = [_Target(id_, frozenset(types or ())) for id_, types in rows]
        self._cache[tenant_id] = (now, targets)
        return targets

    async def __call__(self, event: object) -> None:
        tenant_id: int = event.tenant_id  # type: ignore[attr-defined]
        name = type(event).__name__
        targets = [t for t in await self._targets(tenant_id) if not t.types or name in t.types]
        if not targets:
            return
        event_id, body = envelope(event)
        async with self.db.session() as session:
            hooks = (
                (
                    await session.execute(
                        select(Webhook).where(
                            Webhook.tenant_id == tenant_id,
                            Webhook.id.in_([t.id for t in targets]),
                            Webhook.enabled.is_(True),
                        )
                    )
                )
                .scalars()
                .all()
            )
            for hook in hooks:
                queue(session, hook, event, event_id, body)
            await session.commit()
        if hooks:
            self.on_queued()


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int | None
    error: str

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Sender:
    def __init__(
        self,
        db: Database,
        *,
        allow_private: bool = False,
        backoff: Sequence[float] = BACKOFF,
        disable_after: int = DISABLE_AFTER,
        timeout: float = TIMEOUT,
        concurrency: int = 8,
        batch: int = 50,
        poll: float = 30.0,
        lease: float = 60.0,
        keep: float = KEEP,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.db = db
        self.allow_private = allow_private
        self.backoff = tuple(backoff)
        self.disable_after = disable_after
        self.timeout = timeout
        self.batch = batch
        self.poll = poll
        self.lease = lease
        self.keep = keep
        self._pruned_at = -PRUNE_EVERY
        self._limit = asyncio.Semaphore(concurrency)
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, stopping: asyncio.Event) -> None:
        try:
            while not stopping.is_set():
                try:
                    while await self.run_once() >= self.batch:
                        pass  # a full batch: more may be due
                    if time.monotonic() - self._pruned_at >= PRUNE_EVERY:
                        self._pruned_at = time.monotonic()
                        await self.prune()
                except Exception:  # noqa: BLE001 - the job goes on; the rows stay pending
                    log.exception("webhook delivery failed")
                await wait_woken(self._wake, stopping, self.poll)
        finally:
            await self.aclose()

    async def run_once(self, now: datetime | None = None) -> int:
        """Try what is due; how many deliveries were tried."""
        now = now or datetime.now(UTC)
        async with self.db.session() as session:
            # the platform's job over every tenant; each row is claimed before it is tried
            due = (
                await session.execute(
                    select(WebhookDelivery.id, WebhookDelivery.attempts)
                    .where(WebhookDelivery.state == "pending", WebhookDelivery.next_at <= now)
                    .order_by(WebhookDelivery.next_at, WebhookDelivery.id)
                    .limit(self.batch)
                )
            ).all()
            claimed = []
            for delivery_id, attempts in due:
                result = await session.execute(
                    update(WebhookDelivery)
                    .where(
                        WebhookDelivery.id == delivery_id,
                        WebhookDelivery.state == "pending",
                        WebhookDelivery.attempts == attempts,
                        WebhookDelivery.next_at <= now,
                    )
                    .values(next_at=now + timedelta(seconds=self.lease))
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(delivery_id)
            await session.commit()
        await asyncio.gather(*(self._one(delivery_id, now) for delivery_id in claimed))
        return len(claimed)

    async def prune(self, now: datetime | None = None) -> int:
        """Forget the deliveries done (delivered or failed) more than ``keep`` seconds ago; how many."""
        before = (now or datetime.now(UTC)) - timedelta(seconds=self.keep)
        async with self.db.session() as session:
            result = await session.execute(
                delete(WebhookDelivery).where(
                    WebhookDelivery.state.in_(("delivered", "failed")), WebhookDelivery.updated_at < before
                )
            )
            await session.commit()
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def _one(self, delivery_id: int, now: datetime) -> None:
        async with self._limit:
            async with self.db.session() as session:
                row = (
                    await session.execute(
                        select(WebhookDelivery, Webhook)
                        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                        .where(WebhookDelivery.id == delivery_id)
                    )
                ).first()
                if row is None:
                    return
                delivery, hook = row
                url, secret, body, event_type = hook.url, hook.secret, delivery.body, delivery.event_type
                webhook_id, tenant_id = hook.id, hook.tenant_id
                if not hook.enabled:
                    delivery.state = "failed"
                    delivery.last_error = "the webhook is disabled"
                    await session.commit()
                    return
            outcome = await self._post(url, secret, body, event_type, delivery_id)
            await self._record(delivery_id, webhook_id, tenant_id, outcome, now)

    async def _post(self, url: str, secret: str, body: str, event_type: str, delivery_id: int) -> Outcome:
        raw = body.encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Zvonok-Webhooks/1",
            "X-Zvonok-Event": event_type,
            "X-Zvonok-Delivery": str(delivery_id),
            "X-Zvonok-Timestamp": timestamp,
            "X-Zvonok-Signature": signature(secret, timestamp, raw),
        }
        try:
            await check_resolved(url, allow_private=self.allow_private)
            response = await self._client.post(url, content=raw, headers=headers, timeout=self.timeout)
        except UnsafeUrl as exc:
            return Outcome(None, f"refused: {exc}")
        except httpx.TimeoutException:
            return Outcome(None, f"no answer within {self.timeout:g} s")
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        return Outcome(
            response.status_code, "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        )

    async def _record(
        self, delivery_id: int, webhook_id: int, tenant_id: int, outcome: Outcome, now: datetime
    ) -> None:
        async with self.db.session() as session:
            delivery = await session.get(WebhookDelivery, delivery_id)
            if delivery is None:
                return  # the webhook was deleted meanwhile
            delivery.attempts += 1
            delivery.last_status = outcome.status
            delivery.last_error = outcome.error[:200]
            if outcome.ok:
                delivery.state = "delivered"
                delivery.delivered_at = datetime.now(UTC)
                await session.execute(update(Webhook).where(Webhook.id == webhook_id).values(failures=0))
                log.info("webhook delivered", tenant=tenant_id, webhook=webhook_id, delivery=delivery_id)
            else:
                if delivery.attempts > len(self.backoff):
                    delivery.state = "failed"
                else:
                    delivery.next_at = now + timedelta(seconds=self.backoff[delivery.attempts - 1])
                await session.execute(
                    update(Webhook).where(Webhook.id == webhook_id).values(failures=Webhook.failures + 1)
                )
                hook = await session.get(Webhook, webhook_id, populate_existing=True)
                log.info(
                    "webhook delivery failed",
                    tenant=tenant_id,
                    webhook=webhook_id,
                    delivery=delivery_id,
                    attempts=delivery.attempts,
                    error=outcome.error,
                )
                if hook is not None and hook.enabled and hook.failures >= self.disable_after:
                    hook.enabled = False
                    hook.disabled_reason = (
                        f"switched off after {hook.failures} failed deliveries in a row "
                        f"(last: {outcome.error})"
                    )[:200]
                    await session.execute(
                        update(WebhookDelivery)
                        .where(WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.state == "pending")
                        .values(state="failed", last_error="the webhook was switched off")
                    )
                    session.add(hook)
                    log.warning(
                        "webhook switched off", tenant=tenant_id, webhook=webhook_id, failures=hook.failures
                    )
                    emit(session, WebhookChanged(tenant_id=tenant_id, webhook_id=webhook_id))
            await session.commit()
