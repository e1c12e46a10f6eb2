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

NATS away when the node starts: :meth:`NatsBus.start` returns at once and the first connection is tried
in the background, with a pause that doubles from ``FIRST_RETRY`` up to ``MAX_RETRY`` seconds (a TCP probe
first, as nats-py's own first connect would retry inside ``connect()`` every second for ever). Meanwhile
the node works as during an outage: its own subscribers get every event, the events for the other nodes
are held by the sender in publish order within the same budget as the client's reconnect buffer
(``PENDING_BYTES``; beyond it dropped and counted), and ``zvonok_bus_connected`` is 0. Once connected
and the stream made, the held events go out first, then the new ones; durable consumers start then.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

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
CONNECT_TIMEOUT = 2  # seconds for one try of the first connection
FIRST_RETRY = 0.5  # seconds before the second try of the first connection; doubled each try up to:
MAX_RETRY = 15.0
_FLUSH = object()  # the sender's cue: the first connection is made, send what was held for it


class NatsBus:
    """A :class:`zvonok.bus.Bus` over NATS; make it with :meth:`start` (or :meth:`connect`) on the running
    loop."""

    def __init__(
        self,
        url: str,
        *,
        shared: tuple[type, ...],
        node: str,
        prefix: str,
        stream: str,
        keep_seconds: float = KEEP_SECONDS,
    ) -> None:
        self.url = url
        self._nc: Any = None  # the client, once a server answered
        self._js: Any = None
        self.shared = shared
        self.node = node or secrets.token_hex(6)
        self.prefix = prefix
        self.stream = stream
        self.keep_seconds = keep_seconds
        self._own = LocalBus()  # subscribers of this node's events only
        self._all = LocalBus()  # cluster=True subscribers: every node's events
        self._outbox: asyncio.Queue[object] = asyncio.Queue()
        self._held: collections.deque[tuple[str, bytes]] = collections.deque()  # before the first connection
        self._held_bytes = 0
        self._up = asyncio.Event()  # connected once, the stream made, receiving: publishing goes out
        loop = asyncio.get_running_loop()
        self._sender = loop.create_task(self._send(), name="natsbus:sender")
        self._connector = loop.create_task(self._connect_until_up(), name="natsbus:connect")
        self._inbound: Any = None
        self._durables: list[asyncio.Task[None]] = []
        self.received = 0  # events of other nodes delivered here
        self.published = 0
        self.dropped = 0  # events the other nodes never got (NATS away too long)
        self._dropping = 0  # dropped since the last (re)connection
        self.attempts = 0  # failed first connections (NATS away at start)
        self.closing = False

    @classmethod
    def start(
        cls,
        url: str,
        *,
        shared: Iterable[type],
        node: str = "",
        prefix: str = DEFAULT_PREFIX,
        stream: str = DEFAULT_STREAM,
        keep_seconds: float = KEEP_SECONDS,
    ) -> NatsBus:
        """The bus at once, connecting to ``url`` (``nats://host:port``) in the background: NATS away at
        start holds no node back; the events for the other nodes wait meanwhile (see the module notes)."""
        metrics.BUS_CONNECTED.set(0)
        return cls(
            url, shared=tuple(shared), node=node, prefix=prefix, stream=stream, keep_seconds=keep_seconds
        )

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
        """:meth:`start`, then wait until it is connected and the stream exists."""
        bus = cls.start(
            url, shared=shared, node=node, prefix=prefix, stream=stream, keep_seconds=keep_seconds
        )
        await bus.wait_up()
        return bus

    @property
    def connected(self) -> bool:
        """Connected to NATS now (the stream made): what health checks and ``zvonok_bus_connected`` say."""
        return self._up.is_set() and self._nc is not None and bool(self._nc.is_connected)

    async def wait_up(self) -> None:
        """Until the first connection is made (the stream exists, events of other nodes arrive)."""
        await self._up.wait()

    async def _connect_until_up(self) -> None:
        """The first connection, tried with a growing pause until it succeeds; afterwards the client
        reconnects by itself (every second, for ever)."""
        pause = FIRST_RETRY
        while True:
            try:
                await self._connect_once()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS away (or JetStream not ready): try again
                self.attempts += 1
                if self.attempts == 1:
                    log.warning(
                        "NATS not reachable at %s, or its JetStream not ready (%s): running without it, "
                        "call events for the other nodes wait; trying again in the background",
                        self.url,
                        exc,
                    )
                else:
                    log.debug("NATS still not reachable: %s", exc)
            await asyncio.sleep(pause * random.uniform(0.8, 1.2))  # noqa: S311 - spreads the nodes' tries
            pause = min(pause * 2, MAX_RETRY)
        dropped = self.reconnected()
        if self.attempts:
            log.warning(
                "NATS connected after %d failed tries (%d call events were dropped meanwhile)",
                self.attempts,
                dropped,
            )
        else:
            log.info("NATS connected")

    async def _connect_once(self) -> None:
        import nats
        from nats.js.api import StreamConfig

        if self._nc is None:
            # nats-py's own first connect would try a dead address every second for ever, inside connect():
            # a TCP probe first keeps the pace (and the backoff) ours while nothing listens
            await _probe(self.url, timeout=CONNECT_TIMEOUT)
            self._nc = await nats.connect(
                self.url,
                name=f"zvonok-{self.node}",
                connect_timeout=CONNECT_TIMEOUT,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                pending_size=PENDING_BYTES,
                ping_interval=PING_INTERVAL,
                max_outstanding_pings=MAX_PINGS_OUT,
                error_cb=_log_error,
                disconnected_cb=self._disconnected,
                reconnected_cb=self._reconnected,
            )
            self._js = self._nc.jetstream()
        config = StreamConfig(name=self.stream, subjects=[f"{self.prefix}.>"], max_age=self.keep_seconds)
        try:
            await self._js.add_stream(config)
        except Exception:  # noqa: BLE001 - it exists (another node made it): bring its settings up to date
            await self._js.update_stream(config)
        if self._inbound is None:
            self._inbound = await self._nc.subscribe(f"{self.prefix}.>", cb=self._on_message)
            await self._nc.flush()  # the server has the subscription: from now on other nodes' events arrive
        self._up.set()
        metrics.BUS_CONNECTED.set(1 if self._nc.is_connected else 0)
        self._outbox.put_nowait(_FLUSH)  # what waited for the connection goes out first, in order

    async def _disconnected(self) -> None:
        metrics.BUS_CONNECTED.set(0)
        if not self.closing:
            log.warning("NATS connection lost: reconnecting (call events wait in the reconnect buffer)")

    async def _reconnected(self) -> None:
        if self._up.is_set():
            metrics.BUS_CONNECTED.set(1)
        dropped = self.reconnected()
        log.warning("NATS connection back (%d call events were dropped meanwhile)", dropped)

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
        self._connector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._connector
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
        if self._held:
            log.warning(
                "stopped before NATS was ever reached: %d call events never went to the other nodes",
                len(self._held),
            )
        if self._nc is not None:
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

        await self._up.wait()  # NATS away at start: the consumer starts with the bus
        while True:
            try:
                sub = await self._js.pull_subscribe(f"{self.prefix}.>", durable=durable, stream=self.stream)
                break
            except Exception:  # noqa: BLE001 - NATS away again: the client reconnects, we ask again
                log.warning("durable consumer %s: subscribing failed", durable, exc_info=True)
                await asyncio.sleep(1.0)
        while True:
            try:
                messages = await sub.fetch(batch, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                # nothing to fetch within the second: nats-py raises its own TimeoutError or, on some paths of
                # its batch fetch, asyncio's (the builtin one) — both mean "ask again", not "NATS away"
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
        """The one task that puts events on the wire, in publish order (those held for the first
        connection before any later one)."""
        while True:
            item = await self._outbox.get()
            try:
                if item is _FLUSH:
                    await self._send_held()
                    continue
                subject = f"{self.prefix}.{type(item).__name__}"
                data = json.dumps(serialize(item), separators=(",", ":")).encode()
                if not self._up.is_set():
                    self._hold(subject, data)
                else:
                    await self._send_held()
                    await self._put(subject, data)
            except Exception:  # noqa: BLE001 - one unsendable event must not stop the others
                log.exception("could not publish %r on NATS", item)
            finally:
                self._outbox.task_done()

    def _hold(self, subject: str, data: bytes) -> None:
        """Never connected yet: keep the event as the client keeps them while reconnecting, within the same
        budget (``PENDING_BYTES``); past it, dropped for the other nodes."""
        if self._held_bytes + len(data) > PENDING_BYTES:
            self._drop()
            return
        self._held.append((subject, data))
        self._held_bytes += len(data)

    async def _send_held(self) -> None:
        while self._held:
            subject, data = self._held.popleft()
            self._held_bytes -= len(data)
            await self._put(subject, data)

    async def _put(self, subject: str, data: bytes) -> None:
        from nats.errors import ConnectionClosedError, OutboundBufferLimitError

        try:
            await self._nc.publish(subject, data, headers={ORIGIN: self.node})
        except (OutboundBufferLimitError, ConnectionClosedError):
            self._drop()

    def _drop(self) -> None:
        """NATS away past the reconnect buffer: this event reaches no other node (the calls go on)."""
        if self._dropping == 0:
            log.warning(
                "NATS away and its reconnect buffer full: call events are dropped for the other nodes "
                "until it is back (zvonok_bus_events_dropped_total)"
            )
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


async def _probe(url: str, *, timeout: float) -> None:
    """Something accepts TCP connections at one of ``url``'s servers (``nats://a:4222,nats://b:4222``),
    else OSError."""
    error: OSError = OSError(f"no server in {url!r}")
    for server in url.split(","):
        parts = urlsplit(server.strip() if "://" in server else f"nats://{server.strip()}")
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 4222)
        except (OSError, TimeoutError) as exc:
            error = OSError(f"{server.strip()}: {exc or type(exc).__name__}")
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    raise error


async def _log_error(exc: Exception) -> None:
    log.warning("NATS: %s", exc)
