"""Whether the things destinations name exist in one tenant (the API's 422 before anything is stored).

One query per kind of thing for a whole batch (a menu's ten keys, a schedule's branches), each scoped to
the tenant: a number or id that belongs to another tenant is reported exactly as one that does not exist
("extension 105 does not exist"), so an answer never tells a tenant about another's objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.callcenter.models import CallQueue
from zvonok.conference.models import ConferenceRoom
from zvonok.ivr.models import IvrMenu
from zvonok.org.errors import ValidationError
from zvonok.org.models import Extension
from zvonok.ringgroup.models import RingGroup

from .union import Conference, Destination, Ivr, Queue, extension_numbers
from .union import RingGroup as RingGroupDest

Placed = tuple[str, Destination]  # (where in the request, the destination)


async def _existing(
    session: AsyncSession, column: Any, tenant_column: Any, tenant_id: int, wanted: Iterable[Any]
) -> set[Any]:
    values = set(wanted)
    if not values:
        return set()
    stmt = select(column).where(tenant_column == tenant_id, column.in_(values))
    return set((await session.execute(stmt)).scalars())


async def check_references(
    session: AsyncSession,
    tenant_id: int,
    placed: Sequence[Placed],
    *,
    field: str | None = None,
    menus_too: Iterable[int] = (),
) -> None:
    """ValidationError (422) for the first destination that names something missing in the tenant.

    ``field`` is the request field the error names (default: the first part of the place); ``menus_too``
    are menu ids that count as existing (the menu being created or edited may lead to itself)."""
    extensions = [
        (f"{where}.{sub}", number) for where, dest in placed for sub, number in extension_numbers(dest)
    ]
    found = await _existing(
        session, Extension.number, Extension.tenant_id, tenant_id, (n for _, n in extensions)
    )
    for where, number in extensions:
        if number not in found:
            _missing(where, f"extension {number}", field)
    groups = [(where, d.number) for where, d in placed if isinstance(d, RingGroupDest)]
    found = await _existing(session, RingGroup.number, RingGroup.tenant_id, tenant_id, (n for _, n in groups))
    for where, number in groups:
        if number not in found:
            _missing(f"{where}.number", f"ring group {number}", field)
    rooms = [(where, d.number) for where, d in placed if isinstance(d, Conference)]
    found = await _existing(
        session, ConferenceRoom.number, ConferenceRoom.tenant_id, tenant_id, (n for _, n in rooms)
    )
    for where, number in rooms:
        if number not in found:
            _missing(f"{where}.number", f"conference room {number}", field)
    menus = [(where, d.menu) for where, d in placed if isinstance(d, Ivr)]
    found = await _existing(session, IvrMenu.id, IvrMenu.tenant_id, tenant_id, (m for _, m in menus)) | set(
        menus_too
    )
    for where, menu in menus:
        if menu not in found:
            _missing(f"{where}.menu", f"IVR menu {menu}", field)
    queues = [(where, d) for where, d in placed if isinstance(d, Queue)]
    by_number = await _existing(
        session,
        CallQueue.number,
        CallQueue.tenant_id,
        tenant_id,
        (d.number for _, d in queues if d.number is not None),
    )
    by_name = await _existing(
        session,
        CallQueue.name,
        CallQueue.tenant_id,
        tenant_id,
        (d.queue for _, d in queues if d.queue is not None),
    )
    for where, queue in queues:
        if queue.number is not None and queue.number not in by_number:
            _missing(f"{where}.number", f"queue {queue.number}", field)
        if queue.queue is not None and queue.queue not in by_name:
            _missing(f"{where}.queue", f"queue {queue.queue!r}", field)


def _missing(where: str, what: str, field: str | None) -> None:
    raise ValidationError(f"{where}: {what} does not exist", field=field or where.split(".")[0].split("[")[0])
