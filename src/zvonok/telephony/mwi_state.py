"""Message-waiting subscriptions (RFC 3842 over RFC 6665 SUBSCRIBE/NOTIFY): who watches which mailbox,
until when. Sans-I/O: plain records and ``now``; :mod:`.mwi` sends the messages.

How it works: a SUBSCRIBE without a To tag creates a :class:`Subscription` (the dialog our 200 creates)
keyed by Call-ID, the subscriber's tag and ours; a refresh in the dialog moves ``expires_at``; Expires 0
or the deadline ends it. The table is bounded: ``per_extension`` subscriptions of one extension (a
phone that re-subscribes without its dialog would otherwise pile them up: the oldest goes) and ``total``
overall (a new one over it is refused: 503). :meth:`Subscriptions.expire` returns the ones whose time
is up; :meth:`next_deadline` is the one timer the adapter arms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_EXPIRES", "MIN_EXPIRES", "Subscription", "Subscriptions", "TableFull", "granted_expires"]

MIN_EXPIRES = 60
MAX_EXPIRES = 3600
DEFAULT_EXPIRES = 3600  # RFC 3842 §4.2 suggests an hour when the subscriber names none

Key = tuple[str, str, str]  # Call-ID, the subscriber's tag, our tag


class TableFull(Exception):
    """No room for another subscription (answer 503)."""


def granted_expires(asked: int | None) -> int:
    """The interval we grant for an Expires value (None: absent). 0 stays 0 (an unsubscribe)."""
    if asked is None:
        return DEFAULT_EXPIRES
    if asked <= 0:
        return 0
    return max(MIN_EXPIRES, min(MAX_EXPIRES, asked))


@dataclass(eq=False)
class Subscription:
    key: Key
    tenant_id: int
    extension_id: int
    account: str  # the mailbox's URI, for Message-Account
    source: str  # where the SUBSCRIBE came from ("udp:host:port"): that device needs no unsolicited NOTIFY
    expires_at: float
    dialog: Any = None  # the zvonok.sip.dialog.Dialog our 200 created
    peer: Any = None  # where its NOTIFYs go


class Subscriptions:
    def __init__(self, *, per_extension: int = 10, total: int = 50_000) -> None:
        self.per_extension = per_extension
        self.total = total
        self._by_key: dict[Key, Subscription] = {}
        self._by_extension: dict[tuple[int, int], list[Subscription]] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: Key) -> Subscription | None:
        return self._by_key.get(key)

    def add(self, sub: Subscription) -> Subscription | None:
        """Keep ``sub``; the subscription it pushed out of its extension's share, if any."""
        if len(self._by_key) >= self.total:
            raise TableFull
        mine = self._by_extension.setdefault((sub.tenant_id, sub.extension_id), [])
        dropped = None
        if len(mine) >= self.per_extension:
            dropped = mine[0]
            self.remove(dropped)
            mine = self._by_extension.setdefault((sub.tenant_id, sub.extension_id), [])
        mine.append(sub)
        self._by_key[sub.key] = sub
        return dropped

    def refresh(self, key: Key, expires_at: float) -> Subscription | None:
        sub = self._by_key.get(key)
        if sub is not None:
            sub.expires_at = expires_at
        return sub

    def remove(self, sub: Subscription) -> None:
        if self._by_key.pop(sub.key, None) is None:
            return
        ext = (sub.tenant_id, sub.extension_id)
        mine = [s for s in self._by_extension.get(ext, []) if s is not sub]
        if mine:
            self._by_extension[ext] = mine
        else:
            self._by_extension.pop(ext, None)

    def of_extension(self, tenant_id: int, extension_id: int) -> list[Subscription]:
        return list(self._by_extension.get((tenant_id, extension_id), []))

    def expire(self, now: float) -> list[Subscription]:
        """Remove and return the subscriptions whose time is up."""
        gone = [s for s in self._by_key.values() if s.expires_at <= now]
        for sub in gone:
            self.remove(sub)
        return gone

    def next_deadline(self) -> float | None:
        return min((s.expires_at for s in self._by_key.values()), default=None)
