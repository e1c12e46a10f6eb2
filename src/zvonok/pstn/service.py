"""Business logic of the outside world: trunks, phone numbers, outbound routes, tariffs and rates, and
billing plans (outbound policies and PINs are in :mod:`zvonok.pstn.policies`).

The tenant comes first in every call. Trunks, routes and tariffs also exist for the operator itself
(``tenant_id`` None, shared by every tenant): the same functions serve both, ``tenant_id=None`` meaning
"the platform's own", never "any" — a tenant id only ever reaches its own rows. Functions named
``platform_*`` are the unscoped ones (the number pool, tariffs), for platform admins.

Services flush but never commit; each write queues a :class:`~zvonok.pstn.events.PstnChanged` that is
delivered after the caller commits, so the call engine reloads its snapshot only for real changes.

For the call engine: :func:`load_tariff` / :func:`tenant_tariff` build pure billing tariffs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, CursorResult, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.billing.rates_csv import RateImport, parse_rates_csv
from zvonok.billing.tariffs import Tariff as PureTariff
from zvonok.destination.references import check_references
from zvonok.org import quotas
from zvonok.org import service as org_service
from zvonok.org.errors import Conflict, InUse, NotFound, PermissionDenied, ValidationError
from zvonok.org.models import Extension, Office, Tenant
from zvonok.org.scope import check_ref, describe_counts
from zvonok.pstn import events
from zvonok.pstn import schemas as s
from zvonok.pstn.destinations import clean_destination, extension_refs, placed
from zvonok.pstn.loader import build_tariff, trusted_addresses
from zvonok.pstn.models import (
    BillingAccount,
    EmployeePin,
    OutboundPolicy,
    OutboundRoute,
    PhoneNumber,
    Tariff,
    TariffRate,
    Trunk,
)
from zvonok.pstn.routing import IpNetwork, UntrustedAddress, check_trusted, trusted_networks
from zvonok.storage.base import utcnow
from zvonok.storage.db import emit

_M = TypeVar("_M", Trunk, OutboundRoute, Tariff, PhoneNumber)


# --- helpers ---------------------------------------------------------------------------------------
def _owned(model: type[_M], tenant_id: int | None) -> ColumnElement[bool]:
    return model.tenant_id.is_(None) if tenant_id is None else model.tenant_id == tenant_id


async def _get(session: AsyncSession, model: type[_M], tenant_id: int | None, obj_id: int, what: str) -> _M:
    """The object if it is ``tenant_id``'s (None: the platform's); another's looks missing (404)."""
    stmt = select(model).where(model.id == obj_id, _owned(model, tenant_id))
    obj = (await session.execute(stmt)).scalar_one_or_none()
    if obj is None:
        raise NotFound(f"{what} {obj_id} not found")
    return obj


async def _page(
    session: AsyncSession, model: type[_M], where: list[ColumnElement[bool]], order_by: Any, limit: int, offset: int
) -> tuple[list[_M], int]:
    base = select(model).where(*where)
    total = int((await session.execute(select(func.count()).select_from(base.subquery()))).scalar_one())
    rows = (await session.execute(base.order_by(order_by).limit(limit).offset(offset))).scalars().all()
    return list(rows), total


async def flush_or_conflict(session: AsyncSession, conflict: str) -> None:
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(conflict) from None


async def count_where(session: AsyncSession, *where: ColumnElement[bool], model: Any) -> int:
    return int((await session.execute(select(func.count()).select_from(model).where(*where))).scalar_one())


def notify(session: AsyncSession, tenant_id: int | None, what: str) -> None:
    emit(session, events.PstnChanged(tenant_id=tenant_id, what=what))


async def _check_tariff_ref(session: AsyncSession, tenant_id: int | None, tariff_id: int, field: str) -> Tariff:
    """A tariff given in input: the platform's, or (for a tenant) the tenant's own; else 422."""
    tariff = await session.get(Tariff, tariff_id)
    if tariff is None or (tariff.tenant_id is not None and tariff.tenant_id != tenant_id):
        raise ValidationError(f"{field}: tariff {tariff_id} does not exist", field=field)
    return tariff


# --- trunks ----------------------------------------------------------------------------------------
_TRUNK_NON_NULL = {"name", "kind", "host", "port", "transport", "register", "register_expires",
                   "inbound_addresses", "number_format", "enabled", "t38"}


def stored_transport(transport: str, tls_verify: bool) -> str:
    """trunks.transport for the API's transport and tls_verify (see schemas.TLS_UNVERIFIED)."""
    return s.TLS_UNVERIFIED if transport == "tls" and not tls_verify else transport


async def list_trunks(
    session: AsyncSession, tenant_id: int | None, *, limit: int = 100, offset: int = 0
) -> tuple[list[Trunk], int]:
    return await _page(session, Trunk, [_owned(Trunk, tenant_id)], Trunk.id, limit, offset)


async def get_trunk(session: AsyncSession, tenant_id: int | None, trunk_id: int) -> Trunk:
    return await _get(session, Trunk, tenant_id, trunk_id, "trunk")


async def create_trunk(session: AsyncSession, tenant_id: int | None, data: s.TrunkCreate, *,
                       platform_admin: bool = False) -> Trunk:
    """``platform_admin``: the change comes from the operator, who may trust any addresses for a tenant."""
    if tenant_id is not None and not platform_admin:  # the operator may go beyond the limit
        await quotas.check(session, tenant_id, "trunks", Trunk)
    values = data.model_dump(by_alias=True)
    values["transport"] = stored_transport(values["transport"], values.pop("tls_verify"))
    trunk = Trunk(tenant_id=tenant_id, **values)
    await _check_trunk(session, tenant_id, trunk, set(values))
    if not platform_admin:
        await _check_trusted_addresses(session, tenant_id, trunk)
    session.add(trunk)
    await session.flush()
    notify(session, tenant_id, events.TRUNK)
    return trunk


async def update_trunk(session: AsyncSession, tenant_id: int | None, trunk_id: int, data: s.TrunkUpdate, *,
                       platform_admin: bool = False) -> Trunk:
    trunk = await get_trunk(session, tenant_id, trunk_id)
    sent = data.model_dump(exclude_unset=True, by_alias=True)
    verify = sent.pop("tls_verify", None)
    if verify is not None or sent.get("transport") is not None:
        current = "tls" if trunk.transport == s.TLS_UNVERIFIED else trunk.transport
        sent["transport"] = stored_transport(sent.get("transport") or current,
                                             verify if verify is not None else trunk.transport != s.TLS_UNVERIFIED)
    changed = org_service.apply_changes(trunk, sent, _TRUNK_NON_NULL)
    with session.no_autoflush:  # the checks look at the trunk as changed; an unchecked id must not hit the FK first
        await _check_trunk(session, tenant_id, trunk, set(changed))
        # sent, changed or not: sending the same host again approves what its name resolves to now
        approved = trunk.approved_address
        if not platform_admin and {"inbound_addresses", "host"} & set(sent):
            await _check_trusted_addresses(session, tenant_id, trunk)
        elif {"inbound_addresses", "host"} & set(changed):
            trunk.approved_address = None  # the operator's change: approved for what the trunk no longer is
        if trunk.approved_address != approved:
            changed.append("approved_address")
    if changed:
        await session.flush()
        notify(session, tenant_id, events.TRUNK)
    return trunk


async def _check_trunk(session: AsyncSession, tenant_id: int | None, trunk: Trunk, fields: set[str]) -> None:
    if trunk.register and not (trunk.username and trunk.password):
        raise ValidationError("register: a trunk that registers needs a username and a password", field="register")
    if "office_id" in fields and trunk.office_id is not None:
        if tenant_id is None:
            raise ValidationError("office_id: a platform trunk belongs to no office", field="office_id")
        await check_ref(session, Office, tenant_id, trunk.office_id, "office_id", "office")
    if "buy_tariff_id" in fields and trunk.buy_tariff_id is not None:
        await _check_tariff_ref(session, tenant_id, trunk.buy_tariff_id, "buy_tariff_id")


async def _check_trusted_addresses(session: AsyncSession, tenant_id: int | None, trunk: Trunk) -> None:
    """What a tenant admin may trust by itself (:func:`~zvonok.pstn.routing.check_trusted`, which the
    loader applies again on each reload to what a host name resolves to then): without an inbound list
    the host's address is trusted, and a name (its own or another trunk's) by what it resolves to now."""
    if tenant_id is None:
        return
    mine = await trusted_addresses(trunk.inbound_addresses or [], trunk.host, trunk.port or 5060)
    by_name = not trunk.inbound_addresses and not trusted_networks((), trunk.host)
    trunk.approved_address = None
    if not mine:
        return
    others = (await session.execute(
        select(Trunk).where(or_(Trunk.tenant_id.is_(None), Trunk.tenant_id != tenant_id)))).scalars().all()
    theirs = await asyncio.gather(*(_trusted_now(o) for o in others))
    try:
        check_trusted(mine, [net for nets in theirs for net in nets])
    except UntrustedAddress as exc:
        field = "inbound_addresses" if trunk.inbound_addresses else "host"
        raise (PermissionDenied if exc.overlap else ValidationError)(f"{field}: {exc}", field=field) from None
    if by_name:
        # the loader trusts this address, not whatever the name resolves to later (the tenant controls
        # its DNS: re-pointed at another trunk's address, it would knock that trunk out)
        trunk.approved_address = str(mine[0].network_address)


async def _trusted_now(trunk: Trunk) -> tuple[IpNetwork, ...]:
    """Where another trunk's calls are taken from: the address approved for its name, if any."""
    if trunk.approved_address and not trunk.inbound_addresses:
        return trusted_networks((), trunk.approved_address)
    return await trusted_addresses(trunk.inbound_addresses or [], trunk.host, trunk.port)


async def delete_trunk(session: AsyncSession, tenant_id: int | None, trunk_id: int) -> None:
    trunk = await get_trunk(session, tenant_id, trunk_id)
    routes = await count_where(session, OutboundRoute.trunk_id == trunk_id, model=OutboundRoute)
    if routes:
        raise InUse(f"trunk {trunk_id} is in use by {describe_counts({'outbound route': routes})}")
    await session.delete(trunk)
    await session.flush()
    notify(session, tenant_id, events.TRUNK)


# --- phone numbers: the operator's pool ------------------------------------------------------------
async def platform_create_number(session: AsyncSession, data: s.NumberCreate) -> PhoneNumber:
    if await count_where(session, PhoneNumber.number == data.number, model=PhoneNumber):
        raise Conflict(f"number {data.number} already exists", field="number")
    number = PhoneNumber(tenant_id=None, number=data.number, monthly_fee=data.monthly_fee, enabled=data.enabled,
                         destination_kind="extension", destination={})
    session.add(number)
    await flush_or_conflict(session, f"number {data.number} already exists")
    notify(session, None, events.NUMBER)
    return number


async def platform_list_numbers(
    session: AsyncSession, *, free: bool | None = None, tenant_id: int | None = None, q: str | None = None,
    limit: int = 100, offset: int = 0,
) -> tuple[list[PhoneNumber], int]:
    where: list[ColumnElement[bool]] = []
    if free is not None:
        where.append(PhoneNumber.tenant_id.is_(None) if free else PhoneNumber.tenant_id.is_not(None))
    if tenant_id is not None:
        where.append(PhoneNumber.tenant_id == tenant_id)
    if q:
        where.append(PhoneNumber.number.contains(q.strip(), autoescape=True))
    return await _page(session, PhoneNumber, where, PhoneNumber.number, limit, offset)


async def platform_get_number(session: AsyncSession, number_id: int) -> PhoneNumber:
    number = await session.get(PhoneNumber, number_id)
    if number is None:
        raise NotFound(f"number {number_id} not found")
    return number


async def platform_update_number(session: AsyncSession, number_id: int, data: s.NumberPoolUpdate) -> PhoneNumber:
    number = await platform_get_number(session, number_id)
    if org_service.apply_changes(number, data.model_dump(exclude_unset=True), {"monthly_fee", "enabled"}):
        await session.flush()
        notify(session, number.tenant_id, events.NUMBER)
    return number


async def platform_delete_number(session: AsyncSession, number_id: int) -> None:
    number = await platform_get_number(session, number_id)
    if number.tenant_id is not None:
        raise Conflict(f"number {number.number} is assigned to tenant {number.tenant_id}: release it first")
    await session.delete(number)
    await session.flush()
    notify(session, None, events.NUMBER)


async def platform_assign_number(session: AsyncSession, number_id: int, tenant_id: int) -> PhoneNumber:
    number = await platform_get_number(session, number_id)
    if await session.get(Tenant, tenant_id) is None:
        raise ValidationError(f"tenant_id: tenant {tenant_id} does not exist", field="tenant_id")
    # One conditional UPDATE: of two simultaneous assignments exactly one finds the number free.
    stmt = (update(PhoneNumber).where(PhoneNumber.id == number_id, PhoneNumber.tenant_id.is_(None))
            .values(tenant_id=tenant_id, office_id=None, destination_kind="extension", destination={},
                    updated_at=utcnow()))
    result = cast(CursorResult[Any], await session.execute(stmt))
    await session.refresh(number)
    if result.rowcount != 1:
        raise Conflict(f"number {number.number} is already assigned to tenant {number.tenant_id}")
    notify(session, tenant_id, events.NUMBER)
    return number


async def platform_release_number(session: AsyncSession, number_id: int) -> PhoneNumber:
    """Back to the pool, unrouted; the former tenant's policies stop presenting it as caller ID."""
    number = await platform_get_number(session, number_id)
    former = number.tenant_id
    if former is None:
        raise Conflict(f"number {number.number} is not assigned")
    number.tenant_id, number.office_id, number.destination_kind, number.destination = None, None, "extension", {}
    await session.execute(update(OutboundPolicy).where(OutboundPolicy.tenant_id == former,
                                                       OutboundPolicy.caller_id == number.number).values(caller_id=None))
    await session.flush()
    notify(session, former, events.NUMBER)
    return number


# --- phone numbers: a tenant's ---------------------------------------------------------------------
async def list_numbers(
    session: AsyncSession, tenant_id: int, *, office_id: int | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[PhoneNumber], int]:
    where = [PhoneNumber.tenant_id == tenant_id]
    if office_id is not None:
        where.append(PhoneNumber.office_id == office_id)
    return await _page(session, PhoneNumber, where, PhoneNumber.number, limit, offset)


async def get_number(session: AsyncSession, tenant_id: int, number_id: int) -> PhoneNumber:
    return await _get(session, PhoneNumber, tenant_id, number_id, "number")


async def update_number(session: AsyncSession, tenant_id: int, number_id: int, data: s.NumberUpdate) -> PhoneNumber:
    """Route a number (office, destination). ``monthly_fee``/``enabled`` are the HTTP layer's to allow."""
    number = await get_number(session, tenant_id, number_id)
    changes = data.model_dump(exclude_unset=True)
    if "office_id" in changes:
        await check_ref(session, Office, tenant_id, changes["office_id"], "office_id", "office")
    if "destination_kind" in changes or "destination" in changes:
        kind = changes.get("destination_kind", number.destination_kind)
        payload = changes.get("destination", {} if "destination_kind" in changes else number.destination)
        if kind is None or payload is None:
            field = "destination_kind" if kind is None else "destination"
            raise ValidationError(f"{field}: may not be null", field=field)
        try:
            clean = clean_destination(kind, payload)
        except ValueError as exc:
            raise ValidationError(str(exc), field="destination") from None
        await check_references(session, tenant_id, placed(kind, clean.payload), field="destination")
        changes["destination_kind"], changes["destination"] = kind, clean.payload
    if org_service.apply_changes(number, changes, {"destination_kind", "destination", "monthly_fee", "enabled"}):
        await session.flush()
        notify(session, tenant_id, events.NUMBER)
    return number


async def did_references(session: AsyncSession, tenant_id: int, extension_id: int) -> list[str]:
    """The tenant's numbers routed to an extension (an org hook: such an extension cannot be deleted)."""
    ext = await session.get(Extension, extension_id)
    if ext is None:
        return []
    numbers = (await session.execute(select(PhoneNumber).where(PhoneNumber.tenant_id == tenant_id))).scalars()
    return [f"DID {n.number}" for n in numbers if ext.number in extension_refs(n.destination_kind, n.destination)]


async def drop_with_entity(session: AsyncSession, tenant_id: int, entity: str, entity_id: int) -> None:
    """An office, department or employee is being deleted: its outbound policy (and an employee's PIN)
    go with it, so a later object that reuses the id never inherits them."""
    await session.execute(delete(OutboundPolicy).where(
        OutboundPolicy.tenant_id == tenant_id, OutboundPolicy.level == entity, OutboundPolicy.ref_id == entity_id))
    if entity == "employee":
        await session.execute(delete(EmployeePin).where(EmployeePin.tenant_id == tenant_id,
                                                        EmployeePin.employee_id == entity_id))
    emit(session, events.PstnChanged(tenant_id=tenant_id, what="policy"))


def register_hooks() -> None:
    """Tell the org domain what makes an extension undeletable and what goes with a deleted office,
    department or employee (idempotent; done at import)."""
    if did_references not in org_service.extension_references:
        org_service.extension_references.append(did_references)
    if drop_with_entity not in org_service.entity_deleted_hooks:
        org_service.entity_deleted_hooks.append(drop_with_entity)


register_hooks()


# --- outbound routes -------------------------------------------------------------------------------
async def list_routes(
    session: AsyncSession, tenant_id: int | None, *, limit: int = 100, offset: int = 0
) -> tuple[list[OutboundRoute], int]:
    order = (OutboundRoute.prefix, OutboundRoute.priority, OutboundRoute.id)
    where = [_owned(OutboundRoute, tenant_id)]
    base = select(OutboundRoute).where(*where)
    total = int((await session.execute(select(func.count()).select_from(base.subquery()))).scalar_one())
    rows = (await session.execute(base.order_by(*order).limit(limit).offset(offset))).scalars().all()
    return list(rows), total


async def get_route(session: AsyncSession, tenant_id: int | None, route_id: int) -> OutboundRoute:
    return await _get(session, OutboundRoute, tenant_id, route_id, "route")


async def _check_route_trunk(session: AsyncSession, tenant_id: int | None, trunk_id: int) -> None:
    trunk = await session.get(Trunk, trunk_id)
    # a tenant routes over its own trunks and the platform's; the platform only over its own
    if trunk is None or (trunk.tenant_id is not None and trunk.tenant_id != tenant_id):
        raise ValidationError(f"trunk_id: trunk {trunk_id} does not exist", field="trunk_id")


async def create_route(session: AsyncSession, tenant_id: int | None, data: s.RouteCreate) -> OutboundRoute:
    if tenant_id is not None:
        await quotas.check(session, tenant_id, "routes", OutboundRoute)
    await _check_route_trunk(session, tenant_id, data.trunk_id)
    route = OutboundRoute(tenant_id=tenant_id, **data.model_dump())
    session.add(route)
    await session.flush()
    notify(session, tenant_id, events.ROUTE)
    return route


async def update_route(
    session: AsyncSession, tenant_id: int | None, route_id: int, data: s.RouteUpdate
) -> OutboundRoute:
    route = await get_route(session, tenant_id, route_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("trunk_id") is not None:
        await _check_route_trunk(session, tenant_id, changes["trunk_id"])
    if org_service.apply_changes(route, changes, {"prefix", "trunk_id", "priority", "enabled"}):
        await session.flush()
        notify(session, tenant_id, events.ROUTE)
    return route


async def delete_route(session: AsyncSession, tenant_id: int | None, route_id: int) -> None:
    await session.delete(await get_route(session, tenant_id, route_id))
    await session.flush()
    notify(session, tenant_id, events.ROUTE)


# --- tariffs and rates (platform) ------------------------------------------------------------------
def _periods(data: list[s.PeriodIn]) -> list[dict[str, Any]]:
    return [p.model_dump() for p in data]


async def platform_list_tariffs(
    session: AsyncSession, *, tenant_id: int | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[Tariff], int]:
    where = [Tariff.tenant_id == tenant_id] if tenant_id is not None else []
    return await _page(session, Tariff, where, Tariff.id, limit, offset)


async def rate_counts(session: AsyncSession, tariff_ids: list[int]) -> dict[int, int]:
    stmt = (select(TariffRate.tariff_id, func.count()).where(TariffRate.tariff_id.in_(tariff_ids))
            .group_by(TariffRate.tariff_id))
    return {int(tid): int(n) for tid, n in (await session.execute(stmt)).all()}


async def platform_get_tariff(session: AsyncSession, tariff_id: int) -> Tariff:
    tariff = await session.get(Tariff, tariff_id)
    if tariff is None:
        raise NotFound(f"tariff {tariff_id} not found")
    return tariff


async def platform_create_tariff(session: AsyncSession, data: s.TariffCreate) -> Tariff:
    if data.tenant_id is not None and await session.get(Tenant, data.tenant_id) is None:
        raise ValidationError(f"tenant_id: tenant {data.tenant_id} does not exist", field="tenant_id")
    tariff = Tariff(**data.model_dump(exclude={"periods"}), periods=_periods(data.periods))
    session.add(tariff)
    await session.flush()
    notify(session, tariff.tenant_id, events.TARIFF)
    return tariff


async def platform_update_tariff(session: AsyncSession, tariff_id: int, data: s.TariffUpdate) -> Tariff:
    tariff = await platform_get_tariff(session, tariff_id)
    changes = data.model_dump(exclude_unset=True, exclude={"periods"})
    if "periods" in data.model_fields_set:
        changes["periods"] = _periods(data.periods) if data.periods is not None else None
    if org_service.apply_changes(tariff, changes, {"name", "currency", "time_zone", "periods", "default_period"}):
        await session.flush()
        notify(session, tariff.tenant_id, events.TARIFF)
    return tariff


async def platform_delete_tariff(session: AsyncSession, tariff_id: int) -> None:
    """Refused while a tenant's plan or a trunk's buy rates use it (their calls would go unrated)."""
    tariff = await platform_get_tariff(session, tariff_id)
    refs = {"tenant plan": await count_where(session, BillingAccount.tariff_id == tariff_id, model=BillingAccount),
            "trunk": await count_where(session, Trunk.buy_tariff_id == tariff_id, model=Trunk)}
    if any(refs.values()):
        raise InUse(f"tariff {tariff_id} is in use by {describe_counts(refs)}")
    await session.delete(tariff)
    await session.flush()
    notify(session, tariff.tenant_id, events.TARIFF)


async def list_rates(
    session: AsyncSession, tariff_id: int, *, prefix: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[TariffRate], int]:
    await platform_get_tariff(session, tariff_id)
    base = select(TariffRate).where(TariffRate.tariff_id == tariff_id)
    if prefix:
        base = base.where(TariffRate.prefix.startswith(prefix.removeprefix("+"), autoescape=True))
    total = int((await session.execute(select(func.count()).select_from(base.subquery()))).scalar_one())
    rows = (await session.execute(base.order_by(TariffRate.prefix).limit(limit).offset(offset))).scalars().all()
    return list(rows), total


Progress = Callable[[str, int, int], None]  # (stage "checking" | "writing", done, total)


async def replace_rates(session: AsyncSession, tariff_id: int, data: bytes | str, *,
                        on_progress: Progress | None = None) -> RateImport:
    """Replace every rate of the tariff with the deck in ``data``, all or nothing: when the result has
    errors nothing was touched. The caller commits (one transaction: delete and insert together).
    ``on_progress`` follows the checking of the rows and then their writing (a CLI progress bar)."""
    tariff = await platform_get_tariff(session, tariff_id)
    # a deck of 100k rows is seconds of CPU: checked in a thread, not on the loop that carries the calls
    parsed = await asyncio.to_thread(
        parse_rates_csv, data,
        on_progress=(lambda done, total: on_progress("checking", done, total)) if on_progress else None)
    if not parsed.ok:
        return parsed
    await session.execute(delete(TariffRate).where(TariffRate.tariff_id == tariff_id))
    rows = [{"tariff_id": tariff_id, "prefix": r.prefix, "destination": r.destination, "price": r.price_per_minute,
             "connection_fee": r.connection_fee, "increment": str(r.increment), "minimum": r.minimum,
             "period_prices": {name: _scale4(price) for name, price in r.period_prices}} for r in parsed.rates]
    chunk = 5000
    for start in range(0, len(rows), chunk):
        await session.execute(insert(TariffRate), rows[start:start + chunk])
        if on_progress:
            on_progress("writing", min(start + chunk, len(rows)), len(rows))
    tariff.updated_at = utcnow()
    await session.flush()
    notify(session, tariff.tenant_id, events.RATES)
    return parsed


def _scale4(price: Decimal) -> str:
    # the same four decimals as the price columns, so "2", "2.0" and "2,00" are stored alike
    return format(price.quantize(Decimal("0.0001")), "f")


async def all_rates(session: AsyncSession, tariff_id: int) -> list[TariffRate]:
    await platform_get_tariff(session, tariff_id)
    stmt = select(TariffRate).where(TariffRate.tariff_id == tariff_id).order_by(TariffRate.prefix)
    return list((await session.execute(stmt)).scalars().all())


async def load_tariff(session: AsyncSession, tariff_id: int) -> PureTariff:
    """The pure :class:`zvonok.billing.tariffs.Tariff` of a stored tariff and its rates (NotFound)."""
    row = await platform_get_tariff(session, tariff_id)
    rates = (await session.execute(select(TariffRate).where(TariffRate.tariff_id == tariff_id))).scalars().all()
    return build_tariff(row, rates)


async def tenant_tariff(session: AsyncSession, tenant_id: int) -> PureTariff | None:
    """The tenant's plan as a pure tariff, or None when it has none."""
    account = await session.get(BillingAccount, tenant_id)
    if account is None or account.tariff_id is None:
        return None
    return await load_tariff(session, account.tariff_id)


# --- billing plan ----------------------------------------------------------------------------------
async def get_billing(session: AsyncSession, tenant_id: int) -> s.BillingOut:
    account = await session.get(BillingAccount, tenant_id)
    tariff = await session.get(Tariff, account.tariff_id) if account and account.tariff_id is not None else None
    return s.BillingOut(tenant_id=tenant_id, tariff_id=tariff.id if tariff else None,
                        tariff_name=tariff.name if tariff else None, currency=tariff.currency if tariff else None)


async def platform_set_billing(session: AsyncSession, tenant_id: int, tariff_id: int | None) -> s.BillingOut:
    if tariff_id is not None:
        await _check_tariff_ref(session, tenant_id, tariff_id, "tariff_id")
    account = await session.get(BillingAccount, tenant_id)
    if account is None:
        session.add(BillingAccount(tenant_id=tenant_id, tariff_id=tariff_id))
    else:
        account.tariff_id = tariff_id
    await session.flush()
    notify(session, tenant_id, events.BILLING)
    return await get_billing(session, tenant_id)
