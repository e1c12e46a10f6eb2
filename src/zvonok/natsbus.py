"""The event bus between nodes: :class:`NatsBus`, the :class:`zvonok.bus.Bus` of several nodes on NATS.

How it works: a node's own events go, as with :class:`zvonok.bus.LocalBus`, straight to its subscribers
(in publish order, never blocking the publisher). The events of the *shared* types (call events: what
websockets, wallboards and live statistics of every node show) are also serialized with the bus's JSON
codec and published on ``<prefix>.<EventType>``, stamped with this node's id, by one sender task in
publish order. Each node subscribes to ``<prefix>.>`` and hands the events of the other nodes to its
``cluster=True`` subscribers only: a subscriber that acts on a call (the CDR writer, ring groups, the CRM
card) sees its own node's calls, never another's, so nothing is written twice.

Domain events (a rate changed, an extension added, a binding registered) do not travel here: they are
committed with their change in PostgreSQL and announced from there (``change_log`` and NOTIFY,
:mod:`zvonok.storage.changes`), so they are never seen before, or without, the change itself.

A JetStream stream keeps what is published on ``<prefix>.>`` (a day by default):
:meth:`NatsBus.durable_subscribe` reads it with a durable consumer, acknowledging each event once its
handler has returned, so events published while that consumer (or NATS, or its node) was away are
delivered when it is back.

NATS away (issue 14): calls go on, and the node's own subscribers get every event at once whatever the
bus does. The client (nats-py) reconnects by itself, for ever, every second; a connection that hangs
without closing is noticed by its pings (every ``PING_INTERVAL`` s, given up after ``MAX_PINGS_OUT``
unanswered). While it is away, what is published waits in the client's reconnect buffer
(``PENDING_BYTES``, some 10 000 call events) and goes out, in order, when it is back (then into the
stream: durable consumers lose none of it). Past that buffer the client refuses; those events are
dropped for the other nodes: counted in ``zvonok_bus_events_dropped_total``, with one log line when
dropping starts and one with the count when the connection is back. ``zvonok_bus_connected`` tells
whether the node is connected now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from zvonok import metrics
from zvonok.bus import Handler, LocalBus, Predicate, Subscription, UnknownEvent, deserialize, serialize

log = logging.getLogger(__name__)

ORIGIN = "Zvonok-Node"  # the NATS message header naming the node that published it
DEFAULT_PREFIX = "zvonok.events"
DEFAULT_STREAM = "ZVONOK_EVENTS"
KEEP_SECONDS = 24 * 3600.0
PENDING_BYTES = 8 * 1024 * 1024  # the client's reconnect buffer (nats-py's default is 2 MiB)
PING_INTERVAL = 10  # seconds (nats-py's default, 120, leaves a hung connection unnoticed for minutes)
MAX_PINGS_OUT = 3


class NatsBus:
    """A :class:`zvonok.bus.Bus` over NATS; make it with :meth:`connect` on the running loop."""

    def __init__(self, nc: Any, *, shared: tuple[type, ...], node: str, prefix: str, stream: str) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self.shared = shared
        self.node = node
        self.prefix = prefix
        self.stream = stream
        self._own = LocalBus()  # subscribers of this node's events only
        self._all = LocalBus()  # cluster=True subscribers: every node's events
        self._outbox: asyncio.Queue[object] = asyncio.Queue()
        self._sender = asyncio.get_running_loop().create_task(self._send(), name="natsbus:sender")
        self._inbound: Any = None
        self._durables: list[asyncio.Task[None]] = []
        self.received = 0  # events of other nodes delivered here
        self.published = 0
        self.dropped = 0  # events the other nodes never got (NATS away too long)
        self._dropping = 0  # dropped since the last reconnection
        self.closing = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        shared: Iterable[type],
        node: str = "",
        prefix: str = DEFAULT_PREFIX,
        stream: str = DEFAULT_STREAM,
        keep_seconds: float = KEEP_SECONDS,
    ) -> NatsBus:
        """Connect to ``url`` (``nats://host:port``), make sure the stream exists and start receiving."""
        import nats
        from nats.js.api import StreamConfig

        node = node or secrets.token_hex(6)
        holder: list[NatsBus] = []

        async def disconnected() -> None:
            metrics.BUS_CONNECTED.set(0)
            if not (holder and holder[0].closing):
                log.warning("NATS connection lost: reconnecting (call events wait in the reconnect buffer)")

        async def reconnected() -> None:
            metrics.BUS_CONNECTED.set(1)
            dropped = holder[0].reconnected() if holder else 0
            log.warning("NATS connection back (%d call events were dropped meanwhile)", dropped)

        nc = await nats.connect(
            url,
            name=f"zvonok-{node}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            pending_size=PENDING_BYTES,
            ping_interval=PING_INTERVAL,
            max_outstanding_pings=MAX_PINGS_OUT,
            error_cb=_log_error,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
        )
        metrics.BUS_CONNECTED.set(1)
        bus = cls(nc, shared=tuple(shared), node=node, prefix=prefix, stream=stream)
        holder.append(bus)
        config = StreamConfig(name=stream, subjects=[f"{prefix}.>"], max_age=keep_seconds)
        try:
            await bus._js.add_stream(config)
        except Exception:  # noqa: BLE001 - it exists (another node made it): bring its settings up to date
            await bus._js.update_stream(config)
        bus._inbound = await nc.subscribe(f"{prefix}.>", cb=bus._on_message)
        return bus

    # -- the Bus interface ------------------------------------------------------------------------
    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return self._own.subscriptions + self._all.subscriptions

    def publish(self, event: object) -> None:
        self.published += 1
        self._own.publish(event)
        self._all.publish(event)
        if isinstance(event, self.shared):
            self._outbox.put_nowait(event)

    def subscribe(
        self,
        handler: Handler,
        *,
        event_types: Iterable[type] | None = None,
        where: Predicate | None = None,
        maxsize: int | None = None,
        name: str = "",
        cluster: bool = False,
    ) -> Subscription:
        target = self._all if cluster else self._own
        return target.subscribe(handler, event_types=event_types, where=where, maxsize=maxsize, name=name)

    async def close(self) -> None:
        """Stop receiving, drain the local subscribers (as :meth:`LocalBus.close`), send what is queued
        for the other nodes, close the connection."""
        self.closing = True
        if self._inbound is not None:
            with contextlib.suppress(Exception):
                await self._inbound.unsubscribe()
        for task in self._durables:
            task.cancel()
        await asyncio.gather(*self._durables, return_exceptions=True)
        await self._own.close()
        await self._all.close()
        await self._outbox.join()
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender
        with contextlib.suppress(Exception):
            await self._nc.drain()

    # -- durable consumers ------------------------------------------------------------------------
    def durable_subscribe(
        self,
        durable: str,
        handler: Callable[[Any], Awaitable[None]],
        *,
        event_types: Iterable[type] | None = None,
        batch: int = 64,
    ) -> None:
        """Hand every event of the stream (every node's) to ``handler`` once, in order, through the
        JetStream durable consumer named ``durable``: it resumes after the last acknowledged event."""
        wanted = tuple(event_types) if event_types is not None else None
        self._durables.append(
            asyncio.get_running_loop().create_task(
                self._pull(durable, handler, wanted, batch), name=f"natsbus:{durable}"
            )
        )

    async def _pull(
        self,
        durable: str,
        handler: Callable[[Any], Awaitable[None]],
        wanted: tuple[type, ...] | None,
        batch: int,
    ) -> None:
        import nats.errors

        sub = await self._js.pull_subscribe(f"{self.prefix}.>", durable=durable, stream=self.stream)
        while True:
            try:
                messages = await sub.fetch(batch, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - NATS away: the client reconnects, we ask again
                log.warning("durable consumer %s: fetch failed", durable, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for msg in messages:
                event = self._decode(msg.data)
                if event is not None and (wanted is None or isinstance(event, wanted)):
                    try:
                        await handler(event)
                    except Exception:  # noqa: BLE001 - not acknowledged: delivered again later
                        log.exception("durable consumer %s failed on %r", durable, event)
                        await msg.nak(delay=1.0)
                        continue
                await msg.ack()

    # -- the wire ---------------------------------------------------------------------------------
    async def _send(self) -> None:
        from nats.errors import ConnectionClosedError, OutboundBufferLimitError

        while True:
            event = await self._outbox.get()
            try:
                data = json.dumps(serialize(event), separators=(",", ":")).encode()
                await self._nc.publish(
                    f"{self.prefix}.{type(event).__name__}", data, headers={ORIGIN: self.node}
                )
            except (OutboundBufferLimitError, ConnectionClosedError):
                self._drop()
            except Exception:  # noqa: BLE001 - one unsendable event must not stop the others
                log.exception("could not publish %r on NATS", event)
            finally:
                self._outbox.task_done()

    def _drop(self) -> None:
        """NATS away past the reconnect buffer: this event reaches no other node (the calls go on)."""
        if self._dropping == 0:
            log.warning("NATS away and its reconnect buffer full: call events are dropped for the other nodes "
                        "until it is back (zvonok_bus_events_dropped_total)")
        self._dropping += 1
        self.dropped += 1
        metrics.BUS_DROPPED.inc()

    def reconnected(self) -> int:
        """The connection is back: how many events were dropped while it was away."""
        dropped, self._dropping = self._dropping, 0
        return dropped

    async def _on_message(self, msg: Any) -> None:
        if (msg.headers or {}).get(ORIGIN) == self.node:
            return  # our own: its subscribers had it at publish
        event = self._decode(msg.data)
        if event is not None:
            self.received += 1
            self._all.publish(event)

    @staticmethod
    def _decode(data: bytes) -> Any:
        try:
            return deserialize(json.loads(data))
        except (UnknownEvent, ValueError):  # a newer node's event, or garbage: nothing to deliver
            log.warning("undecodable event on NATS: %r", data[:200])
            return None


async def _log_error(exc: Exception) -> None:
    log.warning("NATS: %s", exc)
