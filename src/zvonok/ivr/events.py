"""Events of the IVR menu table (after commit): the call engine's menu cache forgets the tenant's menus."""

from __future__ import annotations

from dataclasses import dataclass

from zvonok.bus import register_event


@register_event
@dataclass(frozen=True, kw_only=True)
class IvrChanged:
    tenant_id: int
    menu_id: int
    version: int = 1
