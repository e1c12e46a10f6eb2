"""Prometheus metrics shared by all layers (exposed at ``/metrics``)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge

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
