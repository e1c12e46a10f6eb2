"""Event subscriptions (RFC 6665 SUBSCRIBE/NOTIFY): who watches which extension for which event package,
until when, and how fast we may tell them. Sans-I/O: plain records and ``now``; :mod:`.subscriptions`
sends the messages. The message-waiting (RFC 3842), dialog (RFC 4235) and presence (RFC 3856) packages
share it.

How it works: a SUBSCRIBE without a To tag creates a :class:`Subscription` (the dialog our 200 creates)
keyed by Call-ID, the subscriber's tag and ours; a refresh in the dialog moves ``expires_at``; Expires 0
or the deadline ends it. The table is bounded three ways, so that no tenant or device can exhaust memory:

- ``per_extension`` subscriptions of one extension to one event package: a phone that re-subscribes
  without its dialog would otherwise pile them up, so the oldest goes;
- ``per_source`` subscriptions from one device (its source address): a device over it is refused (503),
  it cannot push out anybody else's;
- ``per_tenant`` subscriptions of one tenant, and ``total`` overall: a new one over either is refused.

With ``replace_same_source``, a subscription that the same device makes again to the same extension and
event without its dialog (a phone that restarted) replaces its old one rather than counting twice.

NOTIFY pacing (:meth:`Subscription.take`): a token bucket per subscription, ``burst`` notifications at
once and then one per ``interval`` seconds. A state that flaps faster is coalesced: the adapter waits
until :meth:`take` allows and then sends the latest state, so the last state always arrives.
:meth:`Subscriptions.expire` returns the ones whose time is up; :meth:`next_deadline` is the one timer
the adapter arms for expiry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_EXPIRES",
    "MIN_EXPIRES",
    "Limits",
    "Subscription",
    "Subscriptions",
    "TableFull",
    "granted_expires",
]

MIN_EXPIRES = 60
MAX_EXPIRES = 3600
DEFAULT_EXPIRES = 3600  # RFC 3842 §4.2 and RFC 4235 §3.2 suggest an hour when the subscriber names none

Key = tuple[str, str, str]  # Call-ID, the subscriber's tag, our tag


class TableFull(Exception):
    """No room for another subscription (answer 503)."""


def granted_expires(asked: int | None, default: int = DEFAULT_EXPIRES) -> int:
    """The interval we grant for an Expires value (None: absent). 0 stays 0 (an unsubscribe)."""
    if asked is None:
        return default
    if asked <= 0:
        return 0
    return max(MIN_EXPIRES, min(MAX_EXPIRES, asked))


@dataclass(frozen=True, slots=True)
class Limits:
    per_extension: int = 10
    per_source: int = 1_000
    per_tenant: int = 10_000
    total: int = 50_000
    burst: int = 5  # NOTIFYs at once to one subscriber...
    interval: float = 0.5  # ...then one per this many seconds
    replace_same_source: bool = False  # a device subscribing again without its dialog replaces its old one


@dataclass(eq=False)
class Subscription:
    key: Key
    tenant_id: int
    extension_id: int
    account: str  # the watched extension's URI (Message-Account, dialog-info entity, PIDF entity)
    source: str  # where the SUBSCRIBE came from ("udp:host:port"): that device needs no unsolicited NOTIFY
    expires_at: float
    dialog: Any = None  # the zvonok.sip.dialog.Dialog our 200 created
    peer: Any = None  # where its NOTIFYs go
    event: str = "message-summary"
    version: int = 0  # RFC 4235 §4.1: the dialog-info version, one more per NOTIFY
    tokens: float = -1.0  # NOTIFY pacing; -1: a full bucket on first use
    stamp: float = 0.0
    pending: bool = False  # a coalesced NOTIFY is waiting for its token
    extra: dict[str, Any] = field(default_factory=dict)

    def take(self, now: float, limits: Limits) -> float:
        """Spend a NOTIFY token: 0.0 when one was there, else how many seconds until one will be (nothing
        is spent then: ask again at that time)."""
        if self.tokens < 0:
            self.tokens, self.stamp = float(limits.burst), now
        self.tokens = min(float(limits.burst), self.tokens + max(0.0, now - self.stamp) / limits.interval)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) * limits.interval


def _less(counts: dict[Any, int], name: object) -> None:
    left = counts.get(name, 0) - 1
    if left > 0:
        counts[name] = left
    else:
        counts.pop(name, None)


class Subscriptions:
    def __init__(self, *, per_extension: int = 10, total: int = 50_000, limits: Limits | None = None) -> None:
        self.limits = limits or Limits(per_extension=per_extension, total=total)
        self._by_key: dict[Key, Subscription] = {}
        self._by_extension: dict[tuple[int, int, str], list[Subscription]] = {}
        self._per_source: dict[str, int] = {}
        self._per_tenant: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: Key) -> Subscription | None:
        return self._by_key.get(key)

    def count(self, *, source: str | None = None, tenant_id: int | None = None) -> int:
        if source is not None:
            return self._per_source.get(source, 0)
        if tenant_id is not None:
            return self._per_tenant.get(tenant_id, 0)
        return len(self._by_key)

    def add(self, sub: Subscription) -> Subscription | None:
        """Keep ``sub``; the subscription it replaced or pushed out of its extension's share, if any.
        Raises :class:`TableFull` (and keeps nothing) over the device's, the tenant's or the total share."""
        slot = (sub.tenant_id, sub.extension_id, sub.event)
        again = None
        if self.limits.replace_same_source:
            again = next((s for s in self._by_extension.get(slot, []) if s.source == sub.source), None)
        if again is not None:  # the same device again without its dialog: the new one replaces it
            self.remove(again)
        if (
            len(self._by_key) >= self.limits.total
            or self._per_source.get(sub.source, 0) >= self.limits.per_source
            or self._per_tenant.get(sub.tenant_id, 0) >= self.limits.per_tenant
        ):
            if again is not None:
                self._keep(again)
            raise TableFull
        dropped = again
        mine = self._by_extension.get(slot, [])
        if len(mine) >= self.limits.per_extension:
            dropped = mine[0]
            self.remove(dropped)
        self._keep(sub)
        return dropped

    def _keep(self, sub: Subscription) -> None:
        self._by_extension.setdefault((sub.tenant_id, sub.extension_id, sub.event), []).append(sub)
        self._by_key[sub.key] = sub
        self._per_source[sub.source] = self._per_source.get(sub.source, 0) + 1
        self._per_tenant[sub.tenant_id] = self._per_tenant.get(sub.tenant_id, 0) + 1

    def refresh(self, key: Key, expires_at: float) -> Subscription | None:
        sub = self._by_key.get(key)
        if sub is not None:
            sub.expires_at = expires_at
        return sub

    def remove(self, sub: Subscription) -> None:
        if self._by_key.pop(sub.key, None) is None:
            return
        slot = (sub.tenant_id, sub.extension_id, sub.event)
        mine = [s for s in self._by_extension.get(slot, []) if s is not sub]
        if mine:
            self._by_extension[slot] = mine
        else:
            self._by_extension.pop(slot, None)
        _less(self._per_source, sub.source)
        _less(self._per_tenant, sub.tenant_id)

    def of_extension(
        self, tenant_id: int, extension_id: int, event: str = "message-summary"
    ) -> list[Subscription]:
        return list(self._by_extension.get((tenant_id, extension_id, event), []))

    def expire(self, now: float) -> list[Subscription]:
        """Remove and return the subscriptions whose time is up."""
        gone = [s for s in self._by_key.values() if s.expires_at <= now]
        for sub in gone:
            self.remove(sub)
        return gone

    def next_deadline(self) -> float | None:
        return min((s.expires_at for s in self._by_key.values()), default=None)
