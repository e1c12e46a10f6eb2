"""Events of the outside-world tables, emitted through :func:`zvonok.storage.db.emit` and delivered only
after the transaction commits.

The call engine keeps trunks, numbers, routes, tariffs and policies in one in-memory snapshot
(:mod:`zvonok.pstn.loader`); a :class:`PstnChanged` tells it to reload. ``tenant_id`` is None for the
operator's own objects (platform trunks and routes, platform tariffs), which may affect every tenant.
It is registered with the bus codec: a change written by another process (``zvonok rates import``)
reaches the running server through :mod:`zvonok.storage.changes`.
"""

from __future__ import annotations

from dataclasses import dataclass

from zvonok.bus import register_event

# what changed: one of these words, so a subscriber may reload only part of its snapshot
TRUNK = "trunk"
NUMBER = "number"
ROUTE = "route"
TARIFF = "tariff"
RATES = "rates"
BILLING = "billing"
POLICY = "policy"
PIN = "pin"
WHATS = frozenset({TRUNK, NUMBER, ROUTE, TARIFF, RATES, BILLING, POLICY, PIN})


@register_event
@dataclass(frozen=True, kw_only=True)
class PstnChanged:
    """A trunk, number, route, tariff (or its rates), billing plan, policy or PIN was written."""

    tenant_id: int | None
    what: str
    version: int = 1
