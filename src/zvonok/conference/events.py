"""Events of the conference-room table (after commit), and the live member events of the call engine.

:class:`ConferenceChanged` tells the call engine's room cache to forget a tenant's rooms. The member
events are call events (:class:`zvonok.telephony.events.CallEvent`: tenant, call, time), so the
websocket, webhooks and CDR consumers get them in the call's stream; they live in
:mod:`zvonok.telephony.events` with the rest of that vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

from zvonok.bus import register_event


@register_event
@dataclass(frozen=True, kw_only=True)
class ConferenceChanged:
    tenant_id: int
    room_id: int
    version: int = 1
