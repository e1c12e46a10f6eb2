"""Events of the voicemail tables, delivered after the commit: a mailbox's messages changed (a message
left, read, saved or deleted) — what message-waiting indication (MWI) and the e-mail job listen to."""

from __future__ import annotations

from dataclasses import dataclass

from zvonok.bus import register_event


@register_event
@dataclass(frozen=True, kw_only=True)
class MailboxChanged:
    tenant_id: int
    mailbox_id: int
    extension_id: int
    new_message_id: int | None = None  # a message just left (the e-mail job sends it)
    version: int = 1
