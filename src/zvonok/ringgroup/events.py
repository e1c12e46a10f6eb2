"""Events of the ring-group table, delivered after the commit: the call engine's group cache forgets the
tenant's groups. (The call events of a call reaching a group live in :mod:`zvonok.telephony.events`.)"""

from __future__ import annotations

from dataclasses import dataclass

from zvonok.bus import register_event


@register_event
@dataclass(frozen=True, kw_only=True)
class RingGroupChanged:
    tenant_id: int
    group_id: int
    version: int = 1
