"""The PSTN snapshot's decisions: trusted sources, DIDs, outbound trunks (LCR), dial plans, rules, rates."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from zvonok.billing.limits import Budget
from zvonok.billing.limits import Level as BudgetLevel
from zvonok.billing.tariffs import Rate, Tariff, peak_offpeak
from zvonok.dialing import InvalidNumber, Level, Reason, ServiceClass, normalize, russian_plan
from zvonok.pstn.routing import (
    CallerProfile,
    NumberInfo,
    OfficeInfo,
    PolicyInfo,
    PstnSnapshot,
    RouteInfo,
    TenantInfo,
    TrunkInfo,
    budgets,
    networks,
)

D = Decimal
NOON_MSK = datetime(2024, 3, 4, 9, 0, tzinfo=UTC).timestamp()  # Monday 12:00 in Moscow: peak
NIGHT_MSK = datetime(2024, 3, 4, 20, 0, tzinfo=UTC).timestamp()  # Monday 23:00 in Moscow: off-peak


def deck(name: str, *prices: tuple[str, str], **kwargs: Any) -> Tariff:
    rates = [Rate(prefix=prefix, destination=f"dest {prefix}", price_per_minute=D(price))
             for prefix, price in prices]
    return Tariff(name=name, currency="RUB", rates=rates, **kwargs)


def trunk(trunk_id: int, *, tenant_id: int | None = None, address: str = "192.0.2.1",
          inbound: tuple[str, ...] = (), buy: Tariff | None = None, number_format: str = "e164",
          max_calls: int | None = None) -> TrunkInfo:
    return TrunkInfo(id=trunk_id, tenant_id=tenant_id, name=f"trunk {trunk_id}", kind="carrier",
                     host=f"sip{trunk_id}.example.net", address=address, port=5060, transport="udp",
                     inbound=networks(inbound), buy_tariff=buy, number_format=number_format,
                     max_calls=max_calls)


def route(trunk_id: int, prefix: str = "", priority: int = 100, tenant_id: int | None = None) -> RouteInfo:
    return RouteInfo(tenant_id=tenant_id, prefix=prefix, trunk_id=trunk_id, priority=priority)


def snapshot_of(trunks: Sequence[TrunkInfo], routes: Sequence[RouteInfo] = (), **kwargs: Any) -> PstnSnapshot:
    return PstnSnapshot(trunks={t.id: t for t in trunks}, routes=list(routes), **kwargs)


def ids(trunks: list[TrunkInfo]) -> list[int]:
    return [t.id for t in trunks]


# --- inbound: which trunk may send us calls ------------------------------------------------------------
INBOUND = snapshot_of([
    trunk(1, address="192.0.2.10"),  # no inbound list: its own address is trusted
    trunk(2, address="198.51.100.1", inbound=("203.0.113.0/24",)),  # a list replaces the address
    trunk(3, address="198.51.100.2", inbound=("203.0.113.77",)),  # one host inside trunk 2's network
    trunk(4, address="2001:db8:9::1", inbound=("2001:db8:1::/48", "192.0.2.128/25")),
    trunk(5, address="2001:db8:ffff::5"),
])


@pytest.mark.parametrize(("host", "expected"), [
    ("192.0.2.10", 1),
    ("198.51.100.1", None),  # trunk 2's own address is not in its inbound list
    ("203.0.113.5", 2),
    ("203.0.113.255", 2),
    ("203.0.113.77", 3),  # an exact host beats a network that also contains it
    ("2001:db8:1::abcd", 4),
    ("2001:db8:1:ffff:ffff:ffff:ffff:ffff", 4),
    ("192.0.2.200", 4),
    ("192.0.2.127", None),
    ("2001:db8:ffff::5", 5),
    ("2001:db8:2::1", None),
    ("2001:db8:9::1", None),
    ("10.0.0.1", None),
    ("sip.example.net", None),  # not an IP: never trusted
    ("", None),
])
def test_trunk_from_by_address_host_and_network(host: str, expected: int | None) -> None:
    found = INBOUND.trunk_from(host)
    assert (found.id if found is not None else None) == expected


# a dual-stack listener (sip_host='::', AF_INET6 without IPV6_V6ONLY) reports IPv4 peers as '::ffff:a.b.c.d'
@pytest.mark.parametrize(("host", "expected"), [
    ("::ffff:192.0.2.10", 1),  # trunk 1's own address
    ("::ffff:203.0.113.5", 2),  # inside trunk 2's inbound network
])
def test_trunk_from_ipv4_mapped_ipv6_source(host: str, expected: int) -> None:
    found = INBOUND.trunk_from(host)
    assert (found.id if found is not None else None) == expected


def test_trunk_from_without_networks_only_exact_hosts() -> None:
    snap = snapshot_of([trunk(1, address="192.0.2.10"),
                        trunk(2, inbound=("198.51.100.9/32", "2001:db8::9/128"))])
    assert [snap.trunk_from(h) for h in ("192.0.2.10", "198.51.100.9", "2001:db8::9")] == [
        snap.trunks[1], snap.trunks[2], snap.trunks[2]]
    assert snap.trunk_from("198.51.100.10") is None
    assert snap.trunk_from("garbage") is None


def test_the_operators_trunk_wins_an_address_shared_with_a_tenants() -> None:
    """A tenant's trunk on the operator's carrier's address (or range) must not take the calls that carrier
    delivers for every tenant (they would all end in 404 as not that tenant's numbers)."""
    snap = snapshot_of([trunk(1, tenant_id=7, address="192.0.2.10"), trunk(2, tenant_id=7, inbound=("203.0.113.0/24",)),
                        trunk(3, address="192.0.2.10"), trunk(4, inbound=("203.0.113.0/24",))])
    assert [snap.trunk_from(h).id for h in ("192.0.2.10", "203.0.113.9")] == [3, 4]  # type: ignore[union-attr]


def test_the_operators_range_wins_over_a_tenants_single_address_inside_it() -> None:
    snap = snapshot_of([trunk(1, tenant_id=7, address="198.51.100.7"), trunk(2, inbound=("198.51.100.0/24",)),
                        trunk(3, tenant_id=7, inbound=("203.0.113.9",)), trunk(4, inbound=("203.0.113.0/28",)),
                        trunk(5, tenant_id=7, inbound=("203.0.113.77",))])
    assert [snap.trunk_from(h).id for h in ("198.51.100.7", "::ffff:198.51.100.7", "203.0.113.9",  # type: ignore[union-attr]
                                            "203.0.113.77")] == [2, 2, 4, 5]


def test_empty_snapshot_trusts_nobody() -> None:
    assert PstnSnapshot().trunk_from("127.0.0.1") is None


def test_networks_parses_hosts_and_networks_ignoring_blanks() -> None:
    assert networks(["203.0.113.0/24", " 198.51.100.7 ", "", "  ", "10.1.2.3/24", "2001:db8::/32"]) == (
        ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("198.51.100.7/32"),
        ipaddress.ip_network("10.1.2.0/24"), ipaddress.ip_network("2001:db8::/32"))
    with pytest.raises(ValueError):
        networks(["not an address"])


# --- DIDs ---------------------------------------------------------------------------------------------
def test_number_lookup_is_exact_e164() -> None:
    did = NumberInfo(id=1, tenant_id=1, number="+74951234567", office_id=5, kind="extension",
                     destination={"number": "101"})
    snap = PstnSnapshot(numbers={did.number: did})
    assert snap.number("+74951234567") is did
    assert snap.number("74951234567") is None
    assert snap.number("+74951234568") is None


# --- outbound: which trunks, in which order -----------------------------------------------------------
def test_longest_prefix_wins_and_emergency_matches_the_empty_prefix() -> None:
    snap = snapshot_of([trunk(1), trunk(2), trunk(3)], [route(1, ""), route(2, "7"), route(3, "7495")])
    cases = {"+74951234567": [3], "+78121234567": [2], "+442071234567": [1], "112": [1], "7": [2],
             "+7495": [3], "+749": [2]}
    assert {number: ids(snap.outbound_trunks(1, number, NOON_MSK)) for number in cases} == cases


def test_no_matching_route_gives_no_trunk() -> None:
    snap = snapshot_of([trunk(1)], [route(1, "7")])
    assert snap.outbound_trunks(1, "+442071234567", NOON_MSK) == []
    assert snap.outbound_trunks(1, "112", NOON_MSK) == []
    assert PstnSnapshot().outbound_trunks(1, "+74951234567", NOON_MSK) == []


def test_priority_then_buy_price_then_input_order() -> None:
    snap = snapshot_of(
        [trunk(1, buy=deck("dear", ("7", "0.90"))), trunk(2, buy=deck("cheap", ("7", "0.10"))),
         trunk(3, buy=deck("mid", ("7", "0.50"))), trunk(4),  # no buy tariff: unknown price, last
         trunk(5, buy=deck("mid too", ("7", "0.50"))), trunk(6, buy=deck("abroad", ("44", "0.01")))],
        [route(4, "7", 20), route(6, "7", 20), route(3, "7", 20), route(5, "7", 20), route(2, "7", 20),
         route(1, "7", 10)])
    assert ids(snap.outbound_trunks(1, "+74951234567", NOON_MSK)) == [1, 2, 3, 5, 4, 6]


def test_buy_price_is_the_carriers_longest_prefix() -> None:
    snap = snapshot_of([trunk(1, buy=deck("a", ("7", "0.90"), ("7495", "0.20"))),
                        trunk(2, buy=deck("b", ("7", "0.50")))],
                       [route(1, "7"), route(2, "7")])
    assert ids(snap.outbound_trunks(1, "+74951234567", NOON_MSK)) == [1, 2]
    assert ids(snap.outbound_trunks(1, "+78121234567", NOON_MSK)) == [2, 1]


def test_buy_price_follows_the_period_in_force_at_the_call() -> None:
    timed = Tariff(name="timed", currency="RUB", time_zone="Europe/Moscow", periods=peak_offpeak(),
                   rates=[Rate(prefix="7", destination="Russia", price_per_minute=D("0.10"),
                               period_prices=(("peak", D("1.00")),))])
    snap = snapshot_of([trunk(1, buy=timed), trunk(2, buy=deck("flat", ("7", "0.50")))],
                       [route(1, "7"), route(2, "7")])
    assert ids(snap.outbound_trunks(1, "+74951234567", NOON_MSK)) == [2, 1]
    assert ids(snap.outbound_trunks(1, "+74951234567", NIGHT_MSK)) == [1, 2]


ROUTED = snapshot_of(
    [trunk(10), trunk(11), trunk(20, tenant_id=1), trunk(30, tenant_id=2)],
    [route(10, ""), route(11, "7495", tenant_id=None), route(20, "7812", tenant_id=1),
     route(30, "", tenant_id=2)],
)


@pytest.mark.parametrize(("tenant_id", "number", "expected"), [
    (1, "+78121234567", [20]),  # the tenant's own route
    (1, "+74951234567", [11]),  # none of its own matches: the platform's
    (1, "+442071234567", [10]),
    (2, "+74951234567", [30]),  # its own '' route beats the platform's longer "7495"
    (2, "112", [30]),
    (3, "+78121234567", [10]),  # tenant 1's routes are not tenant 3's
])
def test_tenant_routes_come_before_platform_routes(tenant_id: int, number: str, expected: list[int]) -> None:
    assert ids(ROUTED.outbound_trunks(tenant_id, number, NOON_MSK)) == expected


def test_trunks_of_another_tenant_and_unknown_trunks_are_skipped() -> None:
    snap = snapshot_of([trunk(10), trunk(20, tenant_id=1), trunk(30, tenant_id=2)],
                       [route(30, "", 1), route(20, "", 2), route(99, "", 3), route(10, "", 4)])
    assert ids(snap.outbound_trunks(1, "+74951234567", NOON_MSK)) == [20, 10]
    assert ids(snap.outbound_trunks(2, "+74951234567", NOON_MSK)) == [30, 10]
    assert ids(snap.outbound_trunks(3, "+74951234567", NOON_MSK)) == [10]


def test_a_trunk_listed_twice_appears_once_at_its_best_place() -> None:
    snap = snapshot_of([trunk(10), trunk(11)], [route(10, "7", 100), route(11, "7", 50), route(10, "7", 5)])
    assert ids(snap.outbound_trunks(1, "+74951234567", NOON_MSK)) == [10, 11]


# --- numbers as a carrier wants them --------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "number", "expected"), [
    ("e164", "+74951234567", "+74951234567"),
    ("digits", "+74951234567", "74951234567"),
    ("national", "+74951234567", "84951234567"),
    ("national", "+79161234567", "89161234567"),
    ("national", "+442071234567", "810442071234567"),
    ("national", "+12125551234", "81012125551234"),
    ("digits", "+442071234567", "442071234567"),
    ("e164", "+442071234567", "+442071234567"),
    ("e164", "112", "112"),
    ("digits", "112", "112"),
    ("national", "112", "112"),
    ("national", "03", "03"),
])
def test_format_number(fmt: str, number: str, expected: str) -> None:
    assert trunk(1, number_format=fmt).format_number(number) == expected


def test_domain_is_from_domain_else_host() -> None:
    plain = trunk(7)
    assert plain.domain == "sip7.example.net"
    with_domain = TrunkInfo(id=8, tenant_id=None, name="t", kind="carrier", host="10.0.0.8",
                            address="10.0.0.8", port=5060, transport="udp", from_domain="carrier.example")
    assert with_domain.domain == "carrier.example"


# --- dial plans per office ------------------------------------------------------------------------------
PLANS = PstnSnapshot(offices={
    1: OfficeInfo(id=1, tenant_id=1, area_code="495", timezone="Europe/Moscow"),
    2: OfficeInfo(id=2, tenant_id=1, area_code="3532", timezone=None),
    3: OfficeInfo(id=3, tenant_id=1, area_code=None, timezone=None),
    4: OfficeInfo(id=4, tenant_id=1, area_code="", timezone=None),
    5: OfficeInfo(id=5, tenant_id=1, area_code="0495", timezone=None),  # not a Russian area code
    6: OfficeInfo(id=6, tenant_id=1, area_code="12", timezone=None),
})


@pytest.mark.parametrize(("office_id", "area"), [
    (1, "495"), (2, "3532"), (3, None), (4, None), (5, None), (6, None), (None, None), (99, None),
])
def test_plan_for_office(office_id: int | None, area: str | None) -> None:
    assert PLANS.plan_for(1, office_id) == russian_plan(area)


def test_local_numbers_need_a_known_area_code() -> None:
    assert normalize("1234567", PLANS.plan_for(1, 1)).number == "+74951234567"
    assert normalize("123456", PLANS.plan_for(1, 2)).number == "+73532123456"
    for office_id in (3, 5, None):
        plan = PLANS.plan_for(1, office_id)
        with pytest.raises(InvalidNumber):
            normalize("1234567", plan)
        assert normalize("84951234567", plan).number == "+74951234567"  # national dialing still works


# --- outbound rules: permissions, caller ID, limits -------------------------------------------------------
def policy(level: str, ref_id: int | None, tenant_id: int = 1, **kwargs: Any) -> PolicyInfo:
    return PolicyInfo(tenant_id=tenant_id, level=level, ref_id=ref_id, **kwargs)


TENANT_POLICY = policy("tenant", None, service_class="local", deny=frozenset({"+44"}),
                       monthly_limit=D("10000"))
OFFICE_POLICY = policy("office", 5, service_class="long_distance", caller_id="+74950000005",
                       monthly_limit=D("5000"), warn_percent=90)
DEPARTMENT_POLICY = policy("department", 7, deny=frozenset({"+7812"}), caller_id="+74950000007")
EMPLOYEE_POLICY = policy("employee", 42, service_class="international", allow=frozenset({"+44"}),
                         caller_id="+74950000042", monthly_limit=D("1000"))


def did(number: str, tenant_id: int, office_id: int | None) -> NumberInfo:
    return NumberInfo(id=int(number[-6:]), tenant_id=tenant_id, number=number, office_id=office_id,
                      kind="extension", destination={"number": "101"})


RULES = PstnSnapshot(
    policies={(p.tenant_id, p.level, p.ref_id): p
              for p in (TENANT_POLICY, OFFICE_POLICY, DEPARTMENT_POLICY, EMPLOYEE_POLICY)},
    numbers={n.number: n for n in (
        did("+74951110002", 1, 5), did("+74951110001", 1, 5), did("+78121110000", 1, 6),
        did("+73430000000", 1, None),
        did("+70000000001", 2, 5), did("+70000000000", 3, None))},
)
PLAN = russian_plan("495")


def decide(caller: CallerProfile, dialed: str) -> tuple[bool, Reason, Level]:
    decision = RULES.rules_for(caller).policy.check(normalize(dialed, PLAN))
    return decision.allowed, decision.reason, decision.level


@pytest.mark.parametrize(("caller", "dialed", "expected"), [
    # the employee's INTERNATIONAL class and allow of +44 beat the tenant's deny
    (CallerProfile(tenant_id=1, employee_id=42, department_id=7, office_id=5), "+442071234567",
     (True, Reason.CLASS_OK, Level.EMPLOYEE)),
    # the department's deny of +7812 holds even for an international caller
    (CallerProfile(tenant_id=1, employee_id=42, department_id=7, office_id=5), "88121234567",
     (False, Reason.DENIED_PREFIX, Level.DEPARTMENT)),
    # no employee policy: the office's LONG_DISTANCE class, and the tenant's deny of +44
    (CallerProfile(tenant_id=1, employee_id=43, department_id=7, office_id=5), "89161234567",
     (True, Reason.CLASS_OK, Level.OFFICE)),
    (CallerProfile(tenant_id=1, employee_id=43, department_id=7, office_id=5), "+442071234567",
     (False, Reason.DENIED_PREFIX, Level.TENANT)),
    (CallerProfile(tenant_id=1, employee_id=43, department_id=7, office_id=5), "+12125551234",
     (False, Reason.CLASS_TOO_LOW, Level.OFFICE)),
    # only the tenant's LOCAL class
    (CallerProfile(tenant_id=1, office_id=6), "1234567", (True, Reason.CLASS_OK, Level.TENANT)),
    (CallerProfile(tenant_id=1, office_id=6), "89161234567", (False, Reason.CLASS_TOO_LOW, Level.TENANT)),
    # a tenant without policies: internal only, but emergency always goes out
    (CallerProfile(tenant_id=2, employee_id=42, department_id=7, office_id=5), "1234567",
     (False, Reason.CLASS_TOO_LOW, Level.BUILTIN)),
    (CallerProfile(tenant_id=2, employee_id=42), "112", (True, Reason.EMERGENCY, Level.BUILTIN)),
])
def test_rules_for_permissions(caller: CallerProfile, dialed: str,
                               expected: tuple[bool, Reason, Level]) -> None:
    assert decide(caller, dialed) == expected


@pytest.mark.parametrize(("caller", "service_class", "class_level"), [
    (CallerProfile(tenant_id=1, employee_id=42, department_id=7, office_id=5), ServiceClass.INTERNATIONAL,
     Level.EMPLOYEE),
    (CallerProfile(tenant_id=1, employee_id=43, department_id=7, office_id=5), ServiceClass.LONG_DISTANCE,
     Level.OFFICE),
    (CallerProfile(tenant_id=1, department_id=7), ServiceClass.LOCAL, Level.TENANT),
    (CallerProfile(tenant_id=3), ServiceClass.INTERNAL_ONLY, Level.BUILTIN),
])
def test_rules_for_class_of_service(caller: CallerProfile, service_class: ServiceClass,
                                    class_level: Level) -> None:
    policy = RULES.rules_for(caller).policy
    assert (policy.service_class, policy.class_level) == (service_class, class_level)


@pytest.mark.parametrize(("caller", "caller_id"), [
    (CallerProfile(tenant_id=1, employee_id=42, department_id=7, office_id=5), "+74950000042"),
    (CallerProfile(tenant_id=1, employee_id=43, department_id=7, office_id=5), "+74950000007"),
    (CallerProfile(tenant_id=1, employee_id=43, department_id=8, office_id=5), "+74950000005"),
    # no caller ID in any policy: the office's first number (sorted), else the tenant's first number
    (CallerProfile(tenant_id=1, employee_id=43, office_id=6), "+78121110000"),
    (CallerProfile(tenant_id=1, employee_id=43, office_id=8), "+73430000000"),
    (CallerProfile(tenant_id=1, employee_id=43), "+73430000000"),
    (CallerProfile(tenant_id=2, employee_id=42, department_id=7, office_id=5), "+70000000001"),
    (CallerProfile(tenant_id=2, office_id=6), "+70000000001"),
    (CallerProfile(tenant_id=4), None),  # no numbers at all
])
def test_rules_for_caller_id(caller: CallerProfile, caller_id: str | None) -> None:
    assert RULES.rules_for(caller).caller_id == caller_id


def test_office_without_caller_id_policy_uses_its_first_number() -> None:
    snap = PstnSnapshot(policies={(1, "office", 5): policy("office", 5, service_class="local")},
                        numbers=RULES.numbers)
    assert snap.rules_for(CallerProfile(tenant_id=1, office_id=5)).caller_id == "+74951110001"


@pytest.mark.parametrize(("caller", "levels"), [
    (CallerProfile(tenant_id=1, employee_id=42, department_id=7, office_id=5),
     ["employee", "office", "tenant"]),
    (CallerProfile(tenant_id=1, employee_id=43, department_id=7, office_id=5), ["office", "tenant"]),
    (CallerProfile(tenant_id=1, employee_id=42), ["employee", "tenant"]),
    (CallerProfile(tenant_id=2, employee_id=42, office_id=5), []),
])
def test_rules_for_limits_most_specific_first(caller: CallerProfile, levels: list[str]) -> None:
    assert [p.level for p in RULES.rules_for(caller).limits] == levels


def test_budgets_carry_limit_spend_and_warning() -> None:
    limits = RULES.rules_for(CallerProfile(tenant_id=1, employee_id=42, department_id=7, office_id=5)).limits
    spent: dict[tuple[str, int | None], Decimal] = {
        ("employee", 42): D("250.50"), ("office", 5): D("4600"), ("office", 6): D("1")}
    assert budgets(limits, spent) == [
        Budget(level=BudgetLevel.EMPLOYEE, limit=D("1000"), spent=D("250.50"), warn_ratio=D("0.8"),
               owner_id=42),
        Budget(level=BudgetLevel.OFFICE, limit=D("5000"), spent=D("4600"), warn_ratio=D("0.9"), owner_id=5),
        Budget(level=BudgetLevel.TENANT, limit=D("10000"), spent=D(0), warn_ratio=D("0.8"), owner_id=None),
    ]
    assert budgets((), spent) == []


# --- sell rates -------------------------------------------------------------------------------------------
SELL = deck("retail", ("7", "1.00"), ("7495", "0.80"), ("79", "2.50"))
TENANTS = PstnSnapshot(tenants={
    1: TenantInfo(id=1, domain="a.example", timezone="Europe/Moscow", currency="RUB", locale="ru",
                  suspended=False, tariff=SELL),
    2: TenantInfo(id=2, domain="b.example", timezone="UTC", currency="RUB", locale="ru", suspended=False),
})


@pytest.mark.parametrize(("tenant_id", "number", "prefix"), [
    (1, "+74951234567", "7495"),
    (1, "74951234567", "7495"),
    (1, "+78121234567", "7"),
    (1, "+79161234567", "79"),
    (1, "+442071234567", None),
    (2, "+74951234567", None),  # no tariff
    (99, "+74951234567", None),  # unknown tenant
])
def test_sell_rate(tenant_id: int, number: str, prefix: str | None) -> None:
    found = TENANTS.sell_rate(tenant_id, number)
    if prefix is None:
        assert found is None
    else:
        assert found is not None
        assert found == (SELL, SELL.rate_for_prefix(prefix))
        assert found[1].prefix == prefix
