"""Prometheus metrics shared by all layers (exposed at ``/metrics``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily

from zvonok.sip.uas import KNOWN_METHODS

SIP_MESSAGES_IN = Counter(
    "zvonok_sip_messages_in_total", "SIP messages received", ["transport", "kind", "method", "status"]
)
SIP_MESSAGES_OUT = Counter(
    "zvonok_sip_messages_out_total", "SIP messages sent", ["transport", "kind", "method", "status"]
)
SIP_PARSE_ERRORS = Counter("zvonok_sip_parse_errors_total", "SIP messages rejected as malformed", ["transport"])
REGISTRATIONS = Gauge("zvonok_registrations", "Live SIP contact bindings")
REGISTER_RESULTS = Counter("zvonok_register_total", "REGISTER outcomes", ["result"])
AUTH_FAILURES = Counter("zvonok_auth_failures_total", "Failed SIP digest authentications")
AUTH_BLOCKED = Counter("zvonok_auth_blocked_total", "Requests dropped from blocked sources")
ROUTING_SNAPSHOTS = Counter("zvonok_routing_snapshot_loads", "Routing snapshots (trunks, numbers, routes, "
                            "tariffs) loaded; tests wait on it for a change to take effect")
ACCESS_PIN_ALARMS = Counter("zvonok_access_pin_alarms_total",
                            "Times wrong access-number PINs from all callers passed the alarm rate")
ERRORS = Counter("zvonok_errors_total", "Unexpected errors caught at a boundary", ["where"])
BUS_DROPPED = Counter("zvonok_bus_events_dropped_total",
                      "Call events not sent to the other nodes (NATS away and the client's reconnect buffer full)")
BUS_CONNECTED = Gauge("zvonok_bus_connected", "1 while the connection to NATS is up (several nodes)")
CONNECTIONS_CLOSED = Counter("zvonok_connections_limited_total",
                             "TCP connections refused by a cap, evicted for a newcomer or closed by a deadline", ["listener", "reason"])


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Counter, *labels: str) -> Any:
    """``metric.labels(*labels)``, memoized: prometheus-client's own look-up costs microseconds a message."""
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = metric.labels(*labels)
        if len(_children) < 10_000:  # method names come from peers: keep the memo bounded
            _children[key] = found
    return found


def method_label(method: str) -> str:
    """A SIP method as a label value: any token is a valid method (RFC 3261 §25.1), so a peer inventing
    names would add a time series per name, forever (prometheus-client never drops a child). Methods
    outside RFC 3261 and its extensions are counted together as ``other``."""
    return method if method in KNOWN_METHODS else "other"


# --- event loop ------------------------------------------------------------------------------------
def _asyncio_tasks() -> float:
    """Tasks alive on the event loop, read at scrape time (/metrics is served on that loop): a count that
    keeps rising under a steady load is a leak (bench/soak.py watches it)."""
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # no running loop in this thread (a scrape from elsewhere, e.g. a test)
        return float("nan")


ASYNCIO_TASKS = Gauge("zvonok_asyncio_tasks", "Tasks alive on the event loop, counted at scrape time")
ASYNCIO_TASKS.set_function(_asyncio_tasks)

# --- sizes of the per-call tables, read at scrape time (issue 8: a finished call leaves nothing behind) ----

class _Sizes:
    """Gauges computed when ``/metrics`` is scraped, from the functions :func:`watch_sizes` registered: the
    tables stay free of bookkeeping on the hot path. After calls end, all of them fall back to 0."""

    def __init__(self) -> None:
        self.readers: dict[str, tuple[str, Callable[[], int]]] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, (documentation, read) in list(self.readers.items()):
            yield GaugeMetricFamily(name, documentation, value=read())


_SIZES = _Sizes()
REGISTRY.register(_SIZES)  # a collector is anything with collect()


def watch_sizes(**readers: tuple[str, Callable[[], int]]) -> None:
    """Expose ``zvonok_<name>`` as a gauge of ``read()``'s value: ``name=(documentation, read)``; a later
    call for the same name replaces the reader (the last server built in this process)."""
    for name, reader in readers.items():
        _SIZES.readers[f"zvonok_{name}"] = reader
