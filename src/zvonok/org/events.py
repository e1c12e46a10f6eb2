"""Org-domain events, emitted through :func:`zvonok.storage.db.emit` and delivered after commit.

Subscribers (the registrar dropping cached credentials, webhooks later) register with
``Database.add_listener``. Every event names its tenant. Each is registered with the bus codec so that
other processes receive it too (:mod:`zvonok.storage.changes`).
"""

from __future__ import annotations

from dataclasses import dataclass

from zvonok.bus import register_event


@dataclass(frozen=True, kw_only=True)
class OrgEvent:
    tenant_id: int
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True)
class TenantCreated(OrgEvent):
    sip_domain: str


@register_event
@dataclass(frozen=True, kw_only=True)
class TenantChanged(OrgEvent):
    fields: tuple[str, ...]


@register_event
@dataclass(frozen=True, kw_only=True)
class TenantDeleted(OrgEvent):
    sip_domain: str


@register_event
@dataclass(frozen=True, kw_only=True)
class EntityChanged(OrgEvent):
    """An office, department or employee was created, changed or deleted (``action``)."""

    entity: str
    entity_id: int
    action: str


@register_event
@dataclass(frozen=True, kw_only=True)
class ExtensionCreated(OrgEvent):
    extension_id: int
    number: str


@register_event
@dataclass(frozen=True, kw_only=True)
class ExtensionChanged(OrgEvent):
    """``credentials_changed`` is set when the password, enabled flag or device limit changed."""

    extension_id: int
    number: str
    fields: tuple[str, ...]
    credentials_changed: bool


@register_event
@dataclass(frozen=True, kw_only=True)
class ExtensionDeleted(OrgEvent):
    extension_id: int
    number: str


@register_event
@dataclass(frozen=True, kw_only=True)
class AccessRevoked(OrgEvent):
    """Some access of the tenant ended (a token revoked, an account's logins invalidated): whoever
    holds a long-lived connection (the websocket) re-checks its credentials now."""

    account_id: int | None = None
    token_ids: tuple[int, ...] = ()


@register_event
@dataclass(frozen=True, kw_only=True)
class ForwardingChanged(OrgEvent):
    """An extension's call forwarding or DND changed (through the API or a feature code dialed from a
    phone); ``employee_id`` is the extension's owner, for the websocket's own-things view."""

    extension_id: int
    number: str
    employee_id: int | None
    dnd: bool
    unconditional: str | None
    busy: str | None
    no_answer: str | None
    no_answer_seconds: int
    unavailable: str | None
