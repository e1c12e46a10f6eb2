"""The event bus: typed events from every layer to every consumer (in-process now, NATS later).

How it works: :meth:`LocalBus.publish` is synchronous and never blocks. It offers the event to each
subscription whose filters match, and each subscription has its own asyncio queue and worker task
that awaits the subscriber's handler for one event at a time, in publish order. A slow consumer
therefore delays only itself. Two kinds of subscription:

* **durable** (``maxsize=None``, the default): unbounded queue, nothing is ever dropped, and
  :meth:`LocalBus.close` waits until the queue is empty. For the CDR writer and anything else whose
  loss would be a lost record.
* **lossy** (``maxsize=N``): at most N events wait; when full, the newest event is dropped and
  counted (``Subscription.dropped``, logged at most once per second per subscription). For websocket
  clients, wallboards and the like, which must never make the server buffer without bound.

Filters are applied at publish time (``event_types`` by ``isinstance``, ``where`` a predicate), so
another tenant's traffic never fills a bounded queue.

``publish`` may be called from any thread (a subscription created on one loop is fed through
``call_soon_threadsafe`` from another thread), and from sync code such as the after-commit listener of
:class:`zvonok.storage.db.Database`: :func:`forward_committed` wires domain events to the bus.

The JSON codec at the end (:func:`register_event`, :func:`serialize`, :func:`deserialize`) is what a
bus between nodes, the websocket and webhooks use; events register their class once, by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import threading
import time
import types
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[None]]
Predicate = Callable[[Any], bool]

_DROP_LOG_INTERVAL = 1.0


class Subscription:
    """One subscriber's queue and worker; returned by :meth:`LocalBus.subscribe`."""

    def __init__(
        self,
        bus: LocalBus,
        handler: Handler,
        *,
        event_types: tuple[type, ...] | None,
        where: Predicate | None,
        maxsize: int | None,
        name: str,
    ) -> None:
        self._bus = bus
        self._handler = handler
        self.event_types = event_types
        self.where = where
        self.maxsize = maxsize
        self.name = name
        self.delivered = 0
        self.dropped = 0
        self.failed = 0
        self._last_drop_log = 0.0
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize or 0)
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._closed = False
        self._unfinished = 0
        self._task = self._loop.create_task(self._run(), name=f"bus:{name}")

    @property
    def durable(self) -> bool:
        return self.maxsize is None

    @property
    def pending(self) -> int:
        """Events queued, not yet taken by the handler."""
        return self._queue.qsize()

    @property
    def unfinished(self) -> int:
        """Events queued or being handled."""
        return self._unfinished

    def wants(self, event: object) -> bool:
        if self._closed:
            return False
        if self.event_types is not None and not isinstance(event, self.event_types):
            return False
        if self.where is None:
            return True
        try:
            return bool(self.where(event))
        except Exception:  # a broken filter must not break the publisher
            log.exception("bus filter of %s failed for %r", self.name, event)
            return False

    def offer(self, event: object) -> None:
        """Enqueue from any thread."""
        if threading.get_ident() == self._thread:
            self._put(event)
        else:
            with contextlib.suppress(RuntimeError):  # the subscriber's loop is already closed
                self._loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: object) -> None:
        if self._closed:
            return
        try:
            self._queue.put_nowait(event)
            self._unfinished += 1
        except asyncio.QueueFull:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log >= _DROP_LOG_INTERVAL:
                self._last_drop_log = now
                log.warning("bus subscriber %s is too slow: %d events dropped so far", self.name, self.dropped)

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._handler(event)
                self.delivered += 1
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad event must not end the subscription
                self.failed += 1
                log.exception("bus subscriber %s failed on %r", self.name, event)
            finally:
                self._unfinished -= 1
                self._queue.task_done()

    async def drain(self) -> None:
        """Wait until every event queued so far has been handled."""
        await self._queue.join()

    async def close(self, *, drain: bool = False) -> None:
        """Stop receiving; with ``drain`` first finish what is queued, else drop it."""
        self._bus._remove(self)
        if drain and not self._task.done():
            await self.drain()
        self._closed = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class Bus(Protocol):
    """What publishers and subscribers rely on: :class:`LocalBus`, or :class:`zvonok.natsbus.NatsBus`
    between nodes."""

    def publish(self, event: object) -> None: ...

    def subscribe(
        self,
        handler: Handler,
        *,
        event_types: Iterable[type] | None = None,
        where: Predicate | None = None,
        maxsize: int | None = None,
        name: str = "",
        cluster: bool = False,
    ) -> Subscription: ...

    async def close(self) -> None: ...


class LocalBus:
    """In-process :class:`Bus`. Create and subscribe on the running event loop."""

    def __init__(self, *, close_timeout: float = 5.0) -> None:
        self._subs: list[Subscription] = []
        self._closing = False
        self._stopped = False
        self.close_timeout = close_timeout
        self.published = 0

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subs)

    def publish(self, event: object) -> None:
        """Offer ``event`` to every matching subscriber; returns at once, never raises for a subscriber."""
        if self._stopped:
            log.warning("event published after the bus stopped, dropped: %r", event)
            return
        self.published += 1
        for sub in self._subs:
            if sub.wants(event):
                sub.offer(event)

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
        """Run ``await handler(event)`` for each matching event, in order, on this subscription's task.

        ``maxsize=None`` makes a durable subscription (unbounded, drained on close); an int a lossy one
        that drops the newest events beyond ``maxsize`` waiting. ``cluster``: also the events of other
        nodes, where a bus spans several (:class:`zvonok.natsbus.NatsBus`); here every event is this
        process's own, so it changes nothing.
        """
        if self._closing:
            raise RuntimeError("bus is closing")
        if maxsize is not None and maxsize < 1:
            raise ValueError("maxsize must be at least 1 (or None for a durable subscription)")
        types_ = tuple(event_types) if event_types is not None else None
        sub = Subscription(
            self, handler, event_types=types_, where=where, maxsize=maxsize,
            name=name or getattr(handler, "__qualname__", "subscriber"),
        )
        self._subs.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subs.remove(sub)

    async def close(self) -> None:
        """Drain durable subscribers fully (their handlers may still publish), lossy ones for at most
        ``close_timeout`` seconds, then stop every worker."""
        self._closing = True
        durable = [s for s in self._subs if s.durable]
        # Loop: a durable handler may publish to a durable queue that was already drained.
        while True:
            await asyncio.gather(*(s.drain() for s in durable))
            if not any(s.unfinished for s in durable):
                break
        lossy = [s for s in self._subs if not s.durable]
        if lossy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.drain() for s in lossy)), self.close_timeout)
        # Events the last durable handlers published went to queues drained above; stop now.
        self._stopped = True
        for sub in list(self._subs):
            await sub.close()


def forward_committed(db: Any, bus: Bus, *, event_types: Iterable[type] | None = None) -> Callable[[object], None]:
    """Publish every domain event (optionally only ``event_types``) on ``bus`` after its transaction
    commits. ``db`` is a :class:`zvonok.storage.db.Database`; returns the listener for
    ``db.remove_listener``."""
    wanted = tuple(event_types) if event_types is not None else None

    def listener(event: object) -> None:
        if wanted is None or isinstance(event, wanted):
            bus.publish(event)

    db.add_listener(listener)
    return listener


# --- JSON codec -------------------------------------------------------------------------------------
E = TypeVar("E")

_REGISTRY: dict[str, type] = {}
_HINTS: dict[type, dict[str, Any]] = {}


class UnknownEvent(ValueError):
    """A serialized event whose ``type`` this process does not know (a newer node, or garbage)."""


def register_event(cls: type[E]) -> type[E]:
    """Class decorator: make a frozen dataclass event (de)serializable under its class name."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    existing = _REGISTRY.get(cls.__name__)
    if existing is not None and existing is not cls:
        raise TypeError(f"event type name {cls.__name__} is already registered by {existing!r}")
    _REGISTRY[cls.__name__] = cls
    return cls


def registered_events() -> dict[str, type]:
    return dict(_REGISTRY)


def serialize(event: object) -> dict[str, Any]:
    """``{"type": "CallStarted", "version": 1, ...fields}``, JSON-safe (enums as values, nested
    dataclasses as dicts, tuples as lists)."""
    cls = type(event)
    if _REGISTRY.get(cls.__name__) is not cls:
        raise TypeError(f"{cls.__name__} is not a registered event")
    out: dict[str, Any] = {"type": cls.__name__}
    for f in dataclasses.fields(event):  # type: ignore[arg-type]
        out[f.name] = _to_json(getattr(event, f.name))
    return out


def deserialize(data: dict[str, Any]) -> Any:
    """The event ``data`` describes. Unknown fields (from a newer version) are ignored; a missing field
    without a default, a wrong type or an unknown ``type`` raise ``ValueError``."""
    name = data.get("type")
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise UnknownEvent(f"unknown event type {name!r}")
    return _from_json_dataclass(cls, data)


def _to_json(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    return value


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _from_json_dataclass(cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _from_json(hints[f.name], data[f.name], f"{cls.__name__}.{f.name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a missing required field
        raise ValueError(f"{cls.__name__}: {exc}") from None


_SCALARS = (str, int, float, bool)


def _from_json(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _from_json(arg, value, where)
            except ValueError:
                continue
        raise ValueError(f"{where}: {value!r} matches none of {tp}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]
            return tuple(_from_json(args[0], v, where) for v in value)
        if len(args) != len(value):  # tuple[X, Y, Z]: one value per position
            raise ValueError(f"{where}: expected {len(args)} items")
        return tuple(_from_json(a, v, where) for a, v in zip(args, value, strict=True))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not one of {[m.value for m in tp]}") from None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _from_json_dataclass(tp, value)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{where}: expected a number")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected an integer")
    if tp in _SCALARS:
        if type(value) is tp:
            return value
        raise ValueError(f"{where}: expected {tp.__name__}")
    if tp is Any:
        return value
    raise ValueError(f"{where}: cannot decode type {tp}")
