"""Events of the mail outbox."""

from __future__ import annotations

from dataclasses import dataclass

from zvonok.bus import register_event


@register_event
@dataclass(frozen=True, kw_only=True)
class MailQueued:
    """A letter was queued (after the commit): the outbox job wakes rather than wait for its poll."""

    tenant_id: int
    kind: str
    version: int = 1
