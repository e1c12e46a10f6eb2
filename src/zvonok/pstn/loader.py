"""Read the outside world's tables into a :class:`~zvonok.pstn.routing.PstnSnapshot` (and build tariffs).

A whole snapshot is read in one session and swapped in at once: the engine never sees half a change.
Trunk hosts are resolved here (asynchronously), so a call never waits for DNS. A tenant's host name is
trusted by what it resolves to, which the tenant controls: on every reload that address goes through the
same checks as the API's (:func:`~zvonok.pstn.routing.check_trusted`), and a trunk that fails is left out.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time
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
    IpNetwork,
    NumberInfo,
    OfficeInfo,
    PolicyInfo,
    PstnSnapshot,
    RouteInfo,
    TenantInfo,
    TrunkInfo,
    UntrustedAddress,
    check_trusted,
    networks,
    trusted_networks,
)
from .schemas import TLS_UNVERIFIED

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


async def load_tariffs(session: AsyncSession, ids: Sequence[int],
                       cache: TariffCache | None = None) -> dict[int, Tariff]:
    """The tariffs ``ids``, built from their rows. With ``cache``, a tariff whose row is unchanged since it
    was built (its ``updated_at``, which a rates import moves too) is taken from the cache: only new and
    changed decks are read and built, in a worker thread (a large deck must not hold up the event loop)."""
    if not ids:
        return {}
    rows = (await session.execute(select(TariffRow).where(TariffRow.id.in_(ids)))).scalars().all()
    out: dict[int, Tariff] = {}
    stale = []
    for row in rows:
        cached = cache.get(row.id, row.updated_at) if cache is not None else None
        if cached is not None:
            out[row.id] = cached
        else:
            stale.append(row)
    if stale:
        stale_ids = [row.id for row in stale]
        rates = (await session.execute(select(TariffRate).where(TariffRate.tariff_id.in_(stale_ids)))).scalars().all()
        by_tariff: dict[int, list[TariffRate]] = {}
        for rate in rates:
            by_tariff.setdefault(rate.tariff_id, []).append(rate)
        built = await asyncio.to_thread(_build_all, stale, by_tariff)
        out.update(built)
        if cache is not None:
            cache.builds += len(built)
    if cache is not None:
        cache.keep({row.id: (row.updated_at, out[row.id]) for row in rows if row.id in out})
    return out


def _build_all(rows: Sequence[TariffRow], by_tariff: dict[int, list[TariffRate]]) -> dict[int, Tariff]:
    out = {}
    for row in rows:
        try:
            out[row.id] = build_tariff(row, by_tariff.get(row.id, []))
        except ValueError:
            log.exception("tariff cannot be used", tariff=row.id)
    return out


class TariffCache:
    """Built tariffs kept between routing-snapshot reloads, each with the ``updated_at`` of the row it was
    built from: a change to one tenant's number, trunk or route (or its own tariff) rebuilds no other
    tenant's rate deck. It holds only the tariffs of the last snapshot."""

    def __init__(self) -> None:
        self._tariffs: dict[int, tuple[datetime, Tariff]] = {}
        self.builds = 0  # tariffs built so far (what a test counts)

    def get(self, tariff_id: int, version: datetime) -> Tariff | None:
        found = self._tariffs.get(tariff_id)
        return found[1] if found is not None and found[0] == version else None

    def keep(self, tariffs: dict[int, tuple[datetime, Tariff]]) -> None:
        self._tariffs = tariffs

    def __len__(self) -> int:
        return len(self._tariffs)


RESOLVE_TIMEOUT = 2.0  # seconds a reload (or an API call) waits for one host name; then it counts as unresolved
# getaddrinfo blocks a thread: its own few, so that a slow DNS server cannot hold up what the default
# executor runs for the calls (logins' password and PIN hashing, the CDR journal's fsync)
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="zvonok-dns")


async def resolve_host(host: str, port: int) -> str:
    """The IP address to send to (and, without an inbound list, to trust); ``host`` itself if it does not
    resolve within :data:`RESOLVE_TIMEOUT`."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    lookup = asyncio.get_running_loop().run_in_executor(
        _resolver, functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_DGRAM))
    try:
        infos = await asyncio.wait_for(lookup, RESOLVE_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        log.warning("trunk host does not resolve", host=host, error=str(exc) or type(exc).__name__)
        return host
    return str(infos[0][4][0])


async def trusted_addresses(inbound: Sequence[str], host: str, port: int) -> tuple[IpNetwork, ...]:
    """Where a trunk's calls would be taken from unchallenged: its inbound list, else what its host is now."""
    if inbound:
        return trusted_networks(inbound, host)
    return trusted_networks((), await resolve_host(host, port))


async def load_snapshot(db: Database, tariff_cache: TariffCache | None = None) -> PstnSnapshot:
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
        tariffs = await load_tariffs(session, tariff_ids, tariff_cache)
    trunk_infos: dict[int, TrunkInfo] = {}
    rejected: dict[int, str] = {}
    usable = []
    for t in trunks:
        problem = trunk_problem(t)
        if problem is not None:
            # written before the API checked it, or behind its back: this trunk is out, the others go on
            log.error("trunk cannot be used: skipped", trunk=t.id, tenant=t.tenant_id, problem=problem)
            rejected[t.id] = problem
        else:
            usable.append(t)
    # all at once, each name once: a reload waits RESOLVE_TIMEOUT at most, however many trunks
    hosts = sorted({(t.host, t.port) for t in usable})
    resolved = dict(zip(hosts, await asyncio.gather(*(resolve_host(*host) for host in hosts)), strict=True))
    for t in usable:
        address = resolved[t.host, t.port]
        try:
            inbound = networks(t.inbound_addresses or [])
        except ValueError:
            log.warning("trunk has a bad inbound address: ignored", trunk=t.id)
            inbound = ()
        username, password, auth_username = t.username, t.password, t.auth_username
        if (problem := credentials_problem(t)) is not None:
            log.error("trunk credentials cannot be used: no registration", trunk=t.id, tenant=t.tenant_id,
                      problem=problem)
            rejected[t.id] = f"{problem} (the trunk does not register)"
            username = password = auth_username = None
        trunk_infos[t.id] = TrunkInfo(
            id=t.id, tenant_id=t.tenant_id, name=t.name, kind=t.kind, host=t.host,
            address=address, port=t.port, transport="tls" if t.transport == TLS_UNVERIFIED else t.transport,
            tls_verify=t.transport != TLS_UNVERIFIED,
            username=username, password=password, auth_username=auth_username, from_domain=t.from_domain,
            register=t.register, register_expires=t.register_expires, inbound=inbound, max_calls=t.max_calls, srtp=t.srtp,
            t38=t.t38 or "accept",
            number_format=t.number_format,
            buy_tariff=tariffs.get(t.buy_tariff_id) if t.buy_tariff_id is not None else None,
            office_id=t.office_id, approved=_approved(t))
    for trunk_id, problem in _untrusted_names(trunk_infos).items():
        log.error("trunk cannot be used: skipped", trunk=trunk_id, tenant=trunk_infos[trunk_id].tenant_id,
                  problem=problem)
        rejected[trunk_id] = problem
        del trunk_infos[trunk_id]
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


def _approved(t: Trunk) -> str | None:
    """The address approved for a tenant's host name, if it still applies (an IP literal or an inbound
    list is trusted as such) and is an address."""
    if t.tenant_id is None or not t.approved_address or t.inbound_addresses or trusted_networks((), t.host):
        return None
    return t.approved_address if trusted_networks((), t.approved_address) else None


def _untrusted_names(trunks: dict[int, TrunkInfo]) -> dict[int, str]:
    """The tenants' trunks trusted by a host name whose trusted address the tenant may not trust by itself
    (127.0.0.1, another company's or the operator's address), with why.

    A name the API approved is trusted at the address approved then (``Trunk.approved_address``), whatever
    it resolves to now: a tenant re-pointing its own name at another trunk's address cannot knock that trunk
    out. Such a trunk is checked against the trunks trusted by what the API checked (IP literals, inbound
    lists, the operator's) and the other approved names. A name without an approval (saved before there
    were approvals) is trusted by what it resolves to now and checked against every other trunk: when it
    overlaps an approved one, it alone is left out; two unapproved names resolving to one address both are
    (the snapshot cannot know whose it is)."""
    def by_name(t: TrunkInfo) -> bool:
        return t.tenant_id is not None and not t.inbound and not trusted_networks((), t.host)

    out = {}
    for trunk in trunks.values():
        if not by_name(trunk):
            continue  # the operator's, or trusted by what the API checked (an inbound list, an IP literal)
        others = [net for other in trunks.values()
                  if other.tenant_id != trunk.tenant_id and not (trunk.approved and by_name(other) and not other.approved)
                  for net in other.trusted]
        try:
            check_trusted(trunk.trusted, others)
        except UntrustedAddress as exc:
            if trunk.approved:
                out[trunk.id] = f"host: {trunk.host} was approved at {trunk.approved}: {exc}"
            else:
                out[trunk.id] = f"host: {trunk.host} resolves to {trunk.address}: {exc}"
        else:
            if trunk.approved and trunk.approved != trunk.address:
                log.warning("trunk host resolves elsewhere than approved: calls taken from the approved address only",
                            trunk=trunk.id, tenant=trunk.tenant_id, host=trunk.host, address=trunk.address,
                            approved=trunk.approved)
    return out


def trunk_problem(t: Trunk) -> str | None:
    """What makes a trunk row unusable in SIP messages (the API's own checks, again), or None."""
    return _problem([("name", t.name, grammar.check_text), ("host", t.host, grammar.check_host),
                     ("from_domain", t.from_domain, grammar.check_host)])


def credentials_problem(t: Trunk) -> str | None:
    """What makes a trunk's credentials unusable (the trunk still carries calls, it only does not register
    nor answer challenges), or None."""
    return _problem([("username", t.username, grammar.check_text),
                     ("auth_username", t.auth_username, grammar.check_text),
                     ("password", t.password, grammar.check_text)])


def _problem(checks: list[tuple[str, str | None, Callable[[str], str]]]) -> str | None:
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
