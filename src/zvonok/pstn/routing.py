"""What the call engine knows about the outside world, as one immutable in-memory snapshot.

How it works: :mod:`zvonok.pstn.loader` reads the trunks, numbers, routes, tariffs, policies, offices and
tenants from the database into a :class:`PstnSnapshot`; the engine swaps in a new snapshot whenever a
``PstnChanged`` or org event says something changed. Every routing decision of a call is then a few
dict look-ups on the loop, never a query: trusting a source address (:meth:`PstnSnapshot.trunk_from`),
finding a DID, choosing trunks for a number (longest prefix, then priority, then the carrier's buy price
at that moment: least-cost routing), the caller's dial plan, permissions, caller ID and sell rate.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from zvonok.billing.limits import Budget
from zvonok.billing.limits import Level as BudgetLevel
from zvonok.billing.tariffs import Rate, Tariff
from zvonok.dialing import CallingPolicy, DialPlan, EffectivePolicy, ServiceClass, resolve, russian_plan

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
WIDEST_TRUSTED = {4: 24, 6: 64}  # the widest inbound range (prefix length) a tenant may trust by itself


@dataclass(frozen=True, kw_only=True, slots=True)
class TrunkInfo:
    id: int
    tenant_id: int | None  # None: the operator's, shared by every tenant
    name: str
    kind: str  # carrier | pbx
    host: str  # as configured
    address: str  # resolved IP we send to
    port: int
    transport: str  # udp | tcp | tls
    username: str | None = None
    password: str | None = None
    auth_username: str | None = None
    from_domain: str | None = None
    register: bool = False
    register_expires: int = 3600
    inbound: tuple[IpNetwork, ...] = ()
    max_calls: int | None = None
    number_format: str = "e164"
    buy_tariff: Tariff | None = None
    office_id: int | None = None
    srtp: str | None = None  # required | optional | off (None: the server's default)
    t38: str = "accept"  # fax: off | accept (the carrier's re-INVITE to T.38) | offer (we re-INVITE too)
    tls_verify: bool = True  # TLS: verify the carrier's certificate (off for a self-signed office PBX)
    approved: str | None = None  # the address the API approved for a tenant's host name (Trunk.approved_address)

    @property
    def domain(self) -> str:
        return self.from_domain or self.host

    @property
    def trusted(self) -> tuple[IpNetwork, ...]:
        """Where its calls are taken from unchallenged: its inbound list, else the address the API approved
        for its host name, else the address it resolved to."""
        return self.inbound or trusted_networks((), self.approved or self.address)

    def format_number(self, e164: str) -> str:
        """A number as this carrier wants it: +74951234567, 74951234567 or 84951234567."""
        if not e164.startswith("+"):
            return e164  # an emergency or short number goes as dialed
        if self.number_format == "digits":
            return e164[1:]
        if self.number_format == "national":
            return "8" + e164[2:] if e164.startswith("+7") else "810" + e164[1:]
        return e164


@dataclass(frozen=True, kw_only=True, slots=True)
class NumberInfo:
    id: int
    tenant_id: int | None
    number: str  # E.164
    office_id: int | None
    kind: str
    destination: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class OfficeInfo:
    id: int
    tenant_id: int
    area_code: str | None
    timezone: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class TenantInfo:
    id: int
    domain: str
    timezone: str
    currency: str
    locale: str
    suspended: bool
    tariff: Tariff | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RouteInfo:
    tenant_id: int | None
    prefix: str  # E.164 digits without '+'; '' matches everything
    trunk_id: int
    priority: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyInfo:
    tenant_id: int
    level: str  # tenant | office | department | employee
    ref_id: int | None
    service_class: str | None = None
    deny: frozenset[str] = frozenset()
    allow: frozenset[str] = frozenset()
    caller_id: str | None = None
    monthly_limit: Decimal | None = None
    warn_percent: int = 80

    def calling(self) -> CallingPolicy:
        return CallingPolicy(service_class=ServiceClass[self.service_class.upper()] if self.service_class else None,
                             deny=self.deny, allow=self.allow)


@dataclass(frozen=True, kw_only=True, slots=True)
class CallerProfile:
    """Everything about who places an outside call that a decision needs (most specific level first)."""

    tenant_id: int
    employee_id: int | None = None
    department_id: int | None = None
    office_id: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class OutboundRules:
    policy: EffectivePolicy
    caller_id: str | None
    limits: tuple[PolicyInfo, ...]  # the levels with a monthly limit, most specific first


@dataclass(slots=True)
class _Tier:
    """The trusted sources of one kind of trunk (the operator's, or the tenants'): single addresses, ranges."""

    by_ip: dict[str, TrunkInfo] = field(default_factory=dict)
    networks: list[tuple[IpNetwork, TrunkInfo]] = field(default_factory=list)


@dataclass
class PstnSnapshot:
    trunks: dict[int, TrunkInfo] = field(default_factory=dict)
    numbers: dict[str, NumberInfo] = field(default_factory=dict)
    routes: list[RouteInfo] = field(default_factory=list)
    offices: dict[int, OfficeInfo] = field(default_factory=dict)
    tenants: dict[int, TenantInfo] = field(default_factory=dict)
    policies: dict[tuple[int, str, int | None], PolicyInfo] = field(default_factory=dict)
    # what of a trunk's configuration is refused, with why (its status says it): the trunk is left out, or
    # (bad credentials) it is loaded without them and does not register
    rejected: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._tenant_by_domain = {t.domain.lower(): t.id for t in self.tenants.values()}
        # two tiers, the operator's trunks first, each looked up exactly and then by range: where a tenant's
        # trunk shares an address with one (a carrier's gateway, set before the API refused it) or sits
        # inside its range, the operator's keeps taking the calls it delivers for every tenant
        self._tiers: tuple[_Tier, _Tier] = (_Tier(), _Tier())
        for trunk in sorted(self.trunks.values(), key=lambda t: t.id):
            tier = self._tiers[trunk.tenant_id is not None]
            for net in trunk.trusted:
                if net.num_addresses == 1:
                    tier.by_ip.setdefault(str(net.network_address), trunk)
                else:
                    tier.networks.append((net, trunk))
        # tenant id (None: platform) -> prefix -> routes, for longest-prefix match by probing
        self._routes: dict[int | None, dict[str, list[RouteInfo]]] = {}
        for route in self.routes:
            self._routes.setdefault(route.tenant_id, {}).setdefault(route.prefix, []).append(route)
        self._prefix_lengths = {tenant: sorted({len(p) for p in table}, reverse=True)
                                for tenant, table in self._routes.items()}
        # the first number (sorted) of each tenant and of each office: the caller ID when none is set
        self._first: dict[tuple[int, int | None], str] = {}
        for n in sorted(self.numbers.values(), key=lambda n: n.number):
            if n.tenant_id is not None:
                self._first.setdefault((n.tenant_id, None), n.number)
                if n.office_id is not None:
                    self._first.setdefault((n.tenant_id, n.office_id), n.number)

    # -- inbound ---------------------------------------------------------------------------------------
    def trunk_from(self, host: str) -> TrunkInfo | None:
        """The trunk allowed to send us calls from ``host`` (an IP), or None: never trust the unknown."""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # an IPv4 carrier seen by a dual-stack ("::") socket
        for tier in self._tiers:
            trunk = tier.by_ip.get(str(ip))
            if trunk is not None:
                return trunk
            for net, candidate in tier.networks:
                if ip.version == net.version and ip in net:
                    return candidate
        return None

    def tenant_of_domain(self, domain: str) -> int | None:
        """The tenant whose SIP domain ``domain`` is (our realms too), or None."""
        return self._tenant_by_domain.get(domain.lower())

    def number(self, e164: str) -> NumberInfo | None:
        return self.numbers.get(e164)

    # -- outbound --------------------------------------------------------------------------------------
    def _matching(self, tenant_id: int | None, digits: str) -> list[RouteInfo]:
        table = self._routes.get(tenant_id)
        if not table:
            return []
        for length in self._prefix_lengths[tenant_id]:
            if length <= len(digits):
                routes = table.get(digits[:length])
                if routes:
                    return routes
        return []

    def outbound_trunks(self, tenant_id: int, number: str, at: float) -> list[TrunkInfo]:
        """The trunks to try for ``number`` (E.164 or an emergency short code), in order.

        The tenant's own routes come first when any matches (its own carrier or PBX), else the platform's.
        Among the routes of the longest matching prefix: priority, then the carrier's buy price for this
        number at ``at`` (least-cost routing; a trunk without a buy rate for it sorts last)."""
        digits = number.lstrip("+")
        routes = self._matching(tenant_id, digits) or self._matching(None, digits)
        ranked: list[tuple[int, Decimal, int, TrunkInfo]] = []
        for index, route in enumerate(routes):
            trunk = self.trunks.get(route.trunk_id)
            if trunk is None or (trunk.tenant_id is not None and trunk.tenant_id != tenant_id):
                continue
            price = _buy_price(trunk, digits, at)
            ranked.append((route.priority, price, index, trunk))
        ranked.sort(key=lambda item: item[:3])
        seen: set[int] = set()
        out: list[TrunkInfo] = []
        for *_, trunk in ranked:
            if trunk.id not in seen:
                seen.add(trunk.id)
                out.append(trunk)
        return out

    def plan_for(self, tenant_id: int, office_id: int | None) -> DialPlan:
        office = self.offices.get(office_id) if office_id is not None else None
        return _plan(office.area_code if office is not None and office.area_code else None)

    def rules_for(self, caller: CallerProfile) -> OutboundRules:
        tenant_id = caller.tenant_id
        levels = [
            self.policies.get((tenant_id, "employee", caller.employee_id)) if caller.employee_id else None,
            self.policies.get((tenant_id, "department", caller.department_id)) if caller.department_id else None,
            self.policies.get((tenant_id, "office", caller.office_id)) if caller.office_id else None,
            self.policies.get((tenant_id, "tenant", None)),
        ]
        employee, department, office, tenant = levels
        policy = resolve(employee=employee.calling() if employee else None,
                         department=department.calling() if department else None,
                         office=office.calling() if office else None,
                         tenant=tenant.calling() if tenant else None)
        caller_id = next((p.caller_id for p in levels if p is not None and p.caller_id), None)
        if caller_id is None:
            # no caller ID set anywhere: the office's first number, else the tenant's first number
            caller_id = self._first_number(tenant_id, caller.office_id) or self._first_number(tenant_id, None)
        limits = tuple(p for p in levels if p is not None and p.monthly_limit is not None)
        return OutboundRules(policy=policy, caller_id=caller_id, limits=limits)

    def _first_number(self, tenant_id: int, office_id: int | None) -> str | None:
        return self._first.get((tenant_id, office_id))

    def sell_rate(self, tenant_id: int, number: str) -> tuple[Tariff, Rate] | None:
        tenant = self.tenants.get(tenant_id)
        if tenant is None or tenant.tariff is None:
            return None
        rate = tenant.tariff.lookup(number.lstrip("+"))
        return (tenant.tariff, rate) if rate is not None else None


@functools.lru_cache(maxsize=1024)
def _plan(area_code: str | None) -> DialPlan:
    """The (immutable) Russian plan of an area code, built once per code, not once per call."""
    try:
        return russian_plan(area_code)
    except ValueError:  # an area code the Russian plan does not know: local numbers can't be dialed
        return russian_plan(None)


def budgets(limits: Iterable[PolicyInfo], spent: Mapping[tuple[str, int | None], Decimal]) -> list[Budget]:
    """The spending budgets of the levels that have a limit, with this month's spend of each."""
    out = []
    for p in limits:
        assert p.monthly_limit is not None
        out.append(Budget(level=BudgetLevel(p.level), limit=p.monthly_limit,
                          spent=spent.get((p.level, p.ref_id), Decimal(0)),
                          warn_ratio=Decimal(p.warn_percent) / 100, owner_id=p.ref_id))
    return out


def _buy_price(trunk: TrunkInfo, digits: str, at: float) -> Decimal:
    if trunk.buy_tariff is None:
        return Decimal("Infinity")
    rate = trunk.buy_tariff.lookup(digits)
    if rate is None:
        return Decimal("Infinity")
    return trunk.buy_tariff.price_at(rate, at)[1]


def networks(addresses: Sequence[str]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(a.strip(), strict=False) for a in addresses if a.strip())


def trusted_networks(inbound: Sequence[str], host: str) -> tuple[IpNetwork, ...]:
    """Where a trunk's calls are taken from without a challenge: its inbound list, else its host if that is
    an IP address (a host name is trusted by what it resolves to: :func:`zvonok.pstn.loader.trusted_addresses`)."""
    if inbound:
        return networks(inbound)
    try:
        return (ipaddress.ip_network(host.strip("[]")),)
    except ValueError:
        return ()


class UntrustedAddress(ValueError):
    """An address a tenant may not trust by itself; ``overlap``: because another trunk's calls come from it."""

    def __init__(self, message: str, *, overlap: bool = False) -> None:
        super().__init__(message)
        self.overlap = overlap


def check_trusted(mine: Iterable[IpNetwork], others: Sequence[IpNetwork]) -> None:
    """What a tenant may trust by itself (the API's check, and the loader's for what a host name resolves
    to on each reload): the addresses a trunk's calls are taken from unchallenged must be the tenant's
    alone. A range wider than /24 (/64), a loopback, link-local, multicast or unspecified one, or one
    overlapping ``others`` (the other companies' and the operator's trunks) would let the trunk take
    calls meant for others: :class:`UntrustedAddress`. Which trunk it overlaps stays unsaid: that is
    another company's business."""
    for net in mine:
        widest = WIDEST_TRUSTED[net.version]
        if net.prefixlen < widest:
            raise UntrustedAddress(f"{net} is wider than /{widest}: only the platform admin may trust so many "
                                   "addresses")
        if net.is_loopback or net.is_link_local or net.is_multicast or net.is_unspecified:
            raise UntrustedAddress(f"{net} is a loopback, link-local, multicast or unspecified address: only the "
                                   "platform admin may trust it")
        if any(net.version == theirs.version and net.overlaps(theirs) for theirs in others):
            raise UntrustedAddress(f"{net} overlaps an address in use by another trunk on this platform: only the "
                                   "platform admin may allow that", overlap=True)
