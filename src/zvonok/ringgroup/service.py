"""Ring groups: CRUD in one tenant (the tenant is the first argument after the session), the checks that
keep the tenant's internal numbers apart, and the port the call engine reads groups through
(:class:`RingGroupDirectory`: no SQL in telephony).

Services flush but never commit; each write queues a :class:`~zvonok.ringgroup.events.RingGroupChanged`
delivered after the commit (the engine's group cache forgets the tenant's groups). Hooks registered with
the org domain at import: an extension that is a member (or a no-answer destination) of a group cannot be
deleted, and no extension or conference room may take a group's number.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.conference.models import ConferenceRoom
from zvonok.destination import BRANCH_KINDS, parse
from zvonok.destination import RingGroup as RingGroupDest
from zvonok.destination.references import check_references
from zvonok.logs import get_logger
from zvonok.org import quotas
from zvonok.org import service as org_service
from zvonok.org.errors import InUse, ValidationError
from zvonok.org.models import Extension
from zvonok.org.scope import get_in_tenant, page_in_tenant
from zvonok.pstn.destinations import extension_refs, ring_group_refs
from zvonok.pstn.models import PhoneNumber
from zvonok.pstn.service import flush_or_conflict
from zvonok.storage.db import Database, emit
from zvonok.telephony.cache import BoundedCache
from zvonok.telephony.ring_group import RingGroupInfo, Strategy, is_outside

from . import events, schemas
from .models import RingGroup

log = get_logger(__name__)


def group_out(group: RingGroup) -> schemas.RingGroupOut:
    return schemas.RingGroupOut(id=group.id, tenant_id=group.tenant_id, number=group.number, name=group.name,
                                strategy=group.strategy, members=list(group.members), ring_seconds=group.ring_seconds,
                                max_seconds=group.max_seconds, no_answer=group.no_answer,
                                last_answered=group.last_answered)


async def number_holder(session: AsyncSession, tenant_id: int, number: str) -> str | None:
    """What holds ``number`` in the tenant's internal number space besides groups' own check: an
    extension or a conference room (a description), or None."""
    if (await session.execute(select(Extension.id).where(Extension.tenant_id == tenant_id,
                                                         Extension.number == number))).first() is not None:
        return f"extension {number}"
    room = (await session.execute(select(ConferenceRoom.id).where(
        ConferenceRoom.tenant_id == tenant_id, ConferenceRoom.number == number))).scalar_one_or_none()
    return f"conference room {number}" if room is not None else None


async def group_claim(session: AsyncSession, tenant_id: int, number: str) -> str | None:
    """An org hook: ``number`` is a ring group's (an extension or a room may not take it)."""
    group = (await session.execute(select(RingGroup.id).where(
        RingGroup.tenant_id == tenant_id, RingGroup.number == number))).scalar_one_or_none()
    return f"ring group {number}" if group is not None else None


async def _check_number(session: AsyncSession, tenant_id: int, number: str, group_id: int | None) -> None:
    holder = await number_holder(session, tenant_id, number)
    if holder is not None:
        raise ValidationError(f"number: {number} is already {holder}", field="number")
    other = (await session.execute(select(RingGroup.id).where(
        RingGroup.tenant_id == tenant_id, RingGroup.number == number))).scalar_one_or_none()
    if other is not None and other != group_id:
        raise ValidationError(f"number: {number} is already ring group {other}'s", field="number")


async def _missing_extensions(session: AsyncSession, tenant_id: int, numbers: set[str]) -> set[str]:
    if not numbers:
        return set()
    found = set((await session.execute(select(Extension.number).where(
        Extension.tenant_id == tenant_id, Extension.number.in_(numbers)))).scalars())
    return numbers - found


async def _check_members(session: AsyncSession, tenant_id: int, members: list[str], strategy: str) -> None:
    missing = await _missing_extensions(session, tenant_id, {m for m in members if not is_outside(m)})
    for i, member in enumerate(members):
        if member in missing:
            raise ValidationError(f"members[{i}]: extension {member} does not exist", field="members")
    if strategy == Strategy.SIMULTANEOUS and any(is_outside(m) for m in members):
        # one call out at a time: an outside leg's route and price are the call's (the CDR rates it)
        raise ValidationError("members: a simultaneous group rings extensions only (put outside numbers in a "
                              "hunt or round-robin group, or make one the no-answer destination)", field="members")


async def _check_no_answer(session: AsyncSession, tenant_id: int, value: dict[str, Any] | None,
                           own_number: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        dest = parse(value, kinds=BRANCH_KINDS, path="no_answer")
    except ValueError as exc:
        raise ValidationError(str(exc), field="no_answer") from None
    if isinstance(dest, RingGroupDest) and dest.number == own_number:
        raise ValidationError("no_answer.number: a group cannot send its unanswered calls to itself", field="no_answer")
    await check_references(session, tenant_id, [("no_answer", dest)], field="no_answer")
    return dest.stored()


async def create_group(session: AsyncSession, tenant_id: int, data: schemas.RingGroupCreate) -> RingGroup:
    await quotas.check(session, tenant_id, "ring_groups", RingGroup)
    await _check_number(session, tenant_id, data.number, None)
    await _check_members(session, tenant_id, data.members, data.strategy)
    no_answer = await _check_no_answer(session, tenant_id, data.no_answer, data.number)
    group = RingGroup(tenant_id=tenant_id, number=data.number, name=data.name, strategy=data.strategy,
                      members=list(data.members), ring_seconds=data.ring_seconds, max_seconds=data.max_seconds,
                      no_answer=no_answer)
    session.add(group)
    await flush_or_conflict(session, f"number: {data.number} is taken")
    emit(session, events.RingGroupChanged(tenant_id=tenant_id, group_id=group.id))
    return group


async def get_group(session: AsyncSession, tenant_id: int, group_id: int) -> RingGroup:
    return await get_in_tenant(session, RingGroup, tenant_id, group_id, "ring group")


async def list_groups(session: AsyncSession, tenant_id: int, *, limit: int, offset: int) -> tuple[list[RingGroup], int]:
    return await page_in_tenant(session, RingGroup, tenant_id, order_by=[RingGroup.number], limit=limit, offset=offset)


async def update_group(session: AsyncSession, tenant_id: int, group_id: int,
                       data: schemas.RingGroupUpdate) -> RingGroup:
    group = await get_group(session, tenant_id, group_id)
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    for field in ("number", "name", "strategy", "members", "ring_seconds"):
        if field in changes and changes[field] is None:
            raise ValidationError(f"{field}: may not be null", field=field)
    if "number" in changes and changes["number"] != group.number:
        if await _referenced(session, tenant_id, group.number, group.id):
            raise ValidationError(f"number: ring group {group.number} is a destination; change that first",
                                  field="number")
        await _check_number(session, tenant_id, changes["number"], group.id)
    strategy = changes.get("strategy", group.strategy)
    if "members" in changes or "strategy" in changes:
        await _check_members(session, tenant_id, changes.get("members", group.members), strategy)
    if "no_answer" in changes or "number" in changes:
        changes["no_answer"] = await _check_no_answer(session, tenant_id, changes.get("no_answer", group.no_answer),
                                                      changes.get("number", group.number))
    if "members" in changes and group.last_answered not in changes["members"]:
        changes["last_answered"] = None
    for field, value in changes.items():
        setattr(group, field, list(value) if field == "members" else value)
    await flush_or_conflict(session, f"number: {group.number} is taken")
    emit(session, events.RingGroupChanged(tenant_id=tenant_id, group_id=group.id))
    return group


async def _referenced(session: AsyncSession, tenant_id: int, number: str, group_id: int) -> list[str]:
    """The tenant's numbers and other groups that send calls to ring group ``number``."""
    found = [f"DID {n.number}" for n in (await session.execute(
        select(PhoneNumber).where(PhoneNumber.tenant_id == tenant_id))).scalars()
        if number in ring_group_refs(n.destination_kind, n.destination)]
    for other in (await session.execute(select(RingGroup).where(RingGroup.tenant_id == tenant_id))).scalars():
        if other.id != group_id and other.no_answer and number in ring_group_refs(
                "schedule", {"default": other.no_answer}):
            found.append(f"ring group {other.number}")
    return found


async def delete_group(session: AsyncSession, tenant_id: int, group_id: int) -> None:
    group = await get_group(session, tenant_id, group_id)
    found = await _referenced(session, tenant_id, group.number, group.id)
    if found:
        raise InUse(f"ring group {group.number} is in use by {', '.join(found)}")
    await session.delete(group)
    await session.flush()
    emit(session, events.RingGroupChanged(tenant_id=tenant_id, group_id=group_id))


async def groups_of_extension(session: AsyncSession, tenant_id: int, extension_id: int) -> list[str]:
    """An org hook: the groups an extension is a member or the no-answer destination of (it then cannot
    be deleted)."""
    ext = await session.get(Extension, extension_id)
    if ext is None or ext.tenant_id != tenant_id:
        return []
    return [f"ring group {g.number}" for g in (await session.execute(
        select(RingGroup).where(RingGroup.tenant_id == tenant_id))).scalars()
        if ext.number in g.members or (g.no_answer and ext.number in extension_refs("schedule", {"default": g.no_answer}))]


def register_hooks() -> None:
    """Tell the org domain what a group holds (idempotent; done at import)."""
    if groups_of_extension not in org_service.extension_references:
        org_service.extension_references.append(groups_of_extension)
    if group_claim not in org_service.number_claims:
        org_service.number_claims.append(group_claim)


register_hooks()


def info(group: RingGroup) -> RingGroupInfo:
    return RingGroupInfo(id=group.id, tenant_id=group.tenant_id, number=group.number, name=group.name,
                         strategy=Strategy(group.strategy), members=tuple(group.members),
                         ring_seconds=group.ring_seconds, max_seconds=group.max_seconds,
                         no_answer=dict(group.no_answer) if group.no_answer else None,
                         last_answered=group.last_answered)


class RingGroupDirectory:
    """The call engine's port to the groups: looked up by dialed number, cached (bounded, misses apart: a
    caller chooses what is dialed) until a :class:`RingGroupChanged` for the tenant or ``ttl``; round
    robin's memory is written through (best effort: a failed write is logged, the call goes on) and kept
    here too, so the next call of this process sees it at once."""

    def __init__(self, db: Database, ttl: float = 30.0) -> None:
        self.db = db
        self._groups: BoundedCache[tuple[int, str], RingGroupInfo] = BoundedCache(
            ttl=ttl, negative_ttl=ttl, max_entries=10_000, max_misses=10_000)
        self._memory: dict[tuple[int, int], str] = {}

    async def group(self, tenant_id: int, number: str) -> RingGroupInfo | None:
        found, cached = self._groups.get((tenant_id, number))
        if not found:
            async with self.db.session() as session:
                row = (await session.execute(select(RingGroup).where(
                    RingGroup.tenant_id == tenant_id, RingGroup.number == number))).scalar_one_or_none()
            cached = info(row) if row is not None else None
            self._groups.put((tenant_id, number), cached)
        if cached is not None and (last := self._memory.get((tenant_id, cached.id))) is not None:
            cached = replace(cached, last_answered=last)
        return cached

    async def remember(self, tenant_id: int, group_id: int, member: str) -> None:
        self._memory[(tenant_id, group_id)] = member
        try:
            async with self.db.session() as session:
                await session.execute(update(RingGroup).where(
                    RingGroup.tenant_id == tenant_id, RingGroup.id == group_id).values(last_answered=member))
                await session.commit()
        except Exception:  # noqa: BLE001 - the memory is best-effort: the call is already connected
            log.warning("ring group memory not saved", tenant=tenant_id, group=group_id, exc_info=True)

    def on_event(self, event: object) -> None:
        if isinstance(event, events.RingGroupChanged):
            tenant = event.tenant_id
            self._groups.discard_where(lambda key, _info: key[0] == tenant)
            self._memory.pop((tenant, event.group_id), None)
