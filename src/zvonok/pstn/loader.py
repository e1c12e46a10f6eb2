"""Read the outside world's tables into a :class:`~zvonok.pstn.routing.PstnSnapshot` (and build tariffs).

A whole snapshot is read in one session and swapped in at once: the engine never sees half a change.
Trunk hosts are resolved here (asynchronously), so a call never waits for DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from datetime import time
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.billing.tariffs import Increment, Period, Rate, Tariff
from zvonok.logs import get_logger
from zvonok.org.models import Office, Tenant
from zvonok.sip import grammar
from zvonok.storage.db import Database

from .models import BillingAccount, OutboundPolicy, OutboundRoute, PhoneNumber, TariffRate, Trunk
from .models import Tariff as TariffRow
from .routing import (
    NumberInfo,
    OfficeInfo,
    PolicyInfo,
    PstnSnapshot,
    RouteInfo,
    TenantInfo,
    TrunkInfo,
    networks,
)

log = get_logger(__name__)


def _hhmm(text: str) -> time:
    hours, _, minutes = text.partition(":")
    return time(int(hours) % 24, int(minutes or 0))


def build_tariff(row: TariffRow, rates: Iterable[TariffRate]) -> Tariff:
    """The pure :class:`~zvonok.billing.tariffs.Tariff` of a tariff row and its rate rows."""
    periods = [Period(name=p["name"], start=_hhmm(p["start"]), end=_hhmm(p["end"]),
                      weekdays=frozenset(p.get("weekdays", range(7)))) for p in row.periods or []]
    return Tariff(
        name=row.name, currency=row.currency, time_zone=row.time_zone, periods=periods,
        default_period=row.default_period if periods else "offpeak",
        rates=[Rate(prefix=r.prefix, destination=r.destination, price_per_minute=Decimal(r.price),
                    connection_fee=Decimal(r.connection_fee), increment=Increment.parse(r.increment),
                    minimum=r.minimum,
                    period_prices=tuple((name, Decimal(str(price))) for name, price in (r.period_prices or {}).items()))
               for r in rates],
    )


async def load_tariffs(session: AsyncSession, ids: Sequence[int]) -> dict[int, Tariff]:
    if not ids:
        return {}
    rows = (await session.execute(select(TariffRow).where(TariffRow.id.in_(ids)))).scalars().all()
    rates = (await session.execute(select(TariffRate).where(TariffRate.tariff_id.in_(ids)))).scalars().all()
    by_tariff: dict[int, list[TariffRate]] = {}
    for rate in rates:
        by_tariff.setdefault(rate.tariff_id, []).append(rate)
    out = {}
    for row in rows:
        try:
            out[row.id] = build_tariff(row, by_tariff.get(row.id, []))
        except ValueError:
            log.exception("tariff cannot be used", tariff=row.id)
    return out


async def resolve_host(host: str, port: int) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        log.warning("trunk host does not resolve", host=host)
        return host
    return str(infos[0][4][0])


async def load_snapshot(db: Database) -> PstnSnapshot:
    async with db.session() as session:
        trunks = (await session.execute(select(Trunk).where(Trunk.enabled.is_(True)))).scalars().all()
        numbers = (await session.execute(
            select(PhoneNumber).where(PhoneNumber.enabled.is_(True), PhoneNumber.tenant_id.is_not(None))
        )).scalars().all()
        routes = (await session.execute(select(OutboundRoute).where(OutboundRoute.enabled.is_(True)))).scalars().all()
        offices = (await session.execute(select(Office))).scalars().all()
        tenants = (await session.execute(select(Tenant))).scalars().all()
        accounts = {a.tenant_id: a.tariff_id for a in (await session.execute(select(BillingAccount))).scalars()}
        policies = (await session.execute(select(OutboundPolicy))).scalars().all()
        tariff_ids = sorted({t for t in accounts.values() if t is not None}
                            | {t.buy_tariff_id for t in trunks if t.buy_tariff_id is not None})
        tariffs = await load_tariffs(session, tariff_ids)
    trunk_infos: dict[int, TrunkInfo] = {}
    rejected: dict[int, str] = {}
    for t in trunks:
        problem = trunk_problem(t)
        if problem is not None:
            # written before the API checked it, or behind its back: this trunk is out, the others go on
            log.error("trunk cannot be used: skipped", trunk=t.id, tenant=t.tenant_id, problem=problem)
            rejected[t.id] = problem
            continue
        try:
            inbound = networks(t.inbound_addresses or [])
        except ValueError:
            log.warning("trunk has a bad inbound address: ignored", trunk=t.id)
            inbound = ()
        trunk_infos[t.id] = TrunkInfo(
            id=t.id, tenant_id=t.tenant_id, name=t.name, kind=t.kind, host=t.host,
            address=await resolve_host(t.host, t.port), port=t.port, transport=t.transport,
            username=t.username, password=t.password, auth_username=t.auth_username, from_domain=t.from_domain,
            register=t.register, register_expires=t.register_expires, inbound=inbound, max_calls=t.max_calls, srtp=t.srtp,
            number_format=t.number_format,
            buy_tariff=tariffs.get(t.buy_tariff_id) if t.buy_tariff_id is not None else None,
            office_id=t.office_id)
    return PstnSnapshot(
        trunks=trunk_infos,
        numbers={n.number: NumberInfo(id=n.id, tenant_id=n.tenant_id, number=n.number, office_id=n.office_id,
                                      kind=n.destination_kind, destination=dict(n.destination or {}))
                 for n in numbers},
        routes=[RouteInfo(tenant_id=r.tenant_id, prefix=r.prefix, trunk_id=r.trunk_id, priority=r.priority)
                for r in routes if r.trunk_id in trunk_infos],
        offices={o.id: OfficeInfo(id=o.id, tenant_id=o.tenant_id, area_code=o.area_code, timezone=o.timezone)
                 for o in offices},
        tenants={t.id: TenantInfo(id=t.id, domain=t.sip_domain, timezone=t.timezone, currency=t.currency,
                                  locale=t.locale, suspended=t.suspended,
                                  tariff=_tariff_of(tariffs, accounts.get(t.id)))
                 for t in tenants},
        policies={(p.tenant_id, p.level, p.ref_id): _policy(p) for p in policies},
        rejected=rejected,
    )


def trunk_problem(t: Trunk) -> str | None:
    """What makes a trunk row unusable in SIP messages (the API's own checks, again), or None."""
    checks: list[tuple[str, str | None, Callable[[str], str]]] = [
        ("name", t.name, grammar.check_text), ("host", t.host, grammar.check_host),
        ("from_domain", t.from_domain, grammar.check_host), ("username", t.username, grammar.check_user),
        ("auth_username", t.auth_username, grammar.check_text), ("password", t.password, grammar.check_text)]
    for field, value, check in checks:
        if value is None:
            continue
        try:
            check(value)
        except ValueError as exc:
            return f"{field}: {exc}"
    return None


def _tariff_of(tariffs: dict[int, Tariff], tariff_id: int | None) -> Tariff | None:
    return tariffs.get(tariff_id) if tariff_id is not None else None


def _policy(p: OutboundPolicy) -> PolicyInfo:
    def prefixes(values: Any) -> frozenset[str]:
        return frozenset("+" + str(v).lstrip("+") for v in values or [])

    return PolicyInfo(tenant_id=p.tenant_id, level=p.level, ref_id=p.ref_id, service_class=p.service_class,
                      deny=prefixes(p.deny_prefixes), allow=prefixes(p.allow_prefixes), caller_id=p.caller_id,
                      monthly_limit=Decimal(p.monthly_limit) if p.monthly_limit is not None else None,
                      warn_percent=p.warn_percent)
