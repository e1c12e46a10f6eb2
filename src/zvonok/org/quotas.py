"""How many objects of each kind one company may have: one tenant's data never grows without bound.

Everything a company configures is loaded into the memory of every node (the routing snapshot, the IVR
menus, ring groups, queues, the directory cache) or costs disk (greetings, music): an admin who scripts a
million ring groups would slow or stop the server for every other company. Each create checks the
company's count of that kind against the platform's limit and answers 409 with the figures when it is
reached (a soft cap: two creates racing may pass it by one). The limits are generous defaults, changed
for the whole platform with ``ZVONOK_TENANT_QUOTAS`` (JSON, e.g. ``{"extensions": 20000}``); they are
applied when the API app is built (:func:`configure`), the CLI and the server alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .errors import Conflict

DEFAULTS: dict[str, int] = {
    "extensions": 5000, "employees": 5000, "offices": 200, "departments": 1000, "trunks": 50, "routes": 500,
    "ivr_menus": 200, "ring_groups": 500, "queues": 200, "reasons": 50, "conference_rooms": 500,
    "crm_fields": 100, "api_tokens": 100, "queued_faxes": 20,
    "webhooks": 20,  # each one multiplies every event of the company into a delivery and an outgoing request
}
_limits: dict[str, int] = dict(DEFAULTS)


def configure(overrides: Mapping[str, int] | None) -> None:
    """The platform's limits: the defaults with ``overrides`` (unknown kinds are a configuration error)."""
    unknown = set(overrides or {}) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"tenant_quotas: unknown kinds {sorted(unknown)} (known: {sorted(DEFAULTS)})")
    _limits.clear()
    _limits.update(DEFAULTS)
    _limits.update({k: int(v) for k, v in (overrides or {}).items()})


def limit(kind: str) -> int:
    return _limits[kind]


async def check(session: AsyncSession, tenant_id: int, kind: str, model: Any, *where: Any) -> None:
    """Raise :class:`Conflict` (409) when the company already has ``limit(kind)`` rows of ``model``."""
    most = _limits[kind]
    count = int((await session.execute(select(func.count()).select_from(model).where(
        model.tenant_id == tenant_id, *where))).scalar_one())
    if count >= most:
        raise Conflict(f"{kind}: the company has {count}, the platform allows {most}; delete some or ask the "
                       f"platform's operator to raise the limit")
