"""Calling permissions: class of service, most-specific-level precedence, deny/allow prefixes, premium."""

from __future__ import annotations

import pytest

from zvonok.dialing import (
    REQUIRED_CLASS,
    CallingPolicy,
    Decision,
    Destination,
    DestinationClass,
    EffectivePolicy,
    Level,
    PolicyError,
    Reason,
    ServiceClass,
    check,
    normalize,
    resolve,
    russian_plan,
)
from zvonok.dialing.permissions import PrefixRule

D = DestinationClass
S = ServiceClass
MSK = russian_plan("495")


def dest(dialed: str) -> Destination:
    return normalize(dialed, MSK, extensions=frozenset({"200"}))


LOCAL = dest("123-45-67")  # +74951234567
MOBILE = dest("8 916 123 45 67")
LONG = dest("8 812 123 45 67")
INTL = dest("00 44 20 7946 0018")  # +442079460018
PREMIUM = dest("8 809 123 45 67")  # +78091234567
EXTERNAL = {D.LOCAL: LOCAL, D.MOBILE: MOBILE, D.LONG_DISTANCE: LONG, D.INTERNATIONAL: INTL}


def test_the_fixtures_are_what_they_say() -> None:
    assert [d.klass for d in (LOCAL, MOBILE, LONG, INTL, PREMIUM)] == [
        D.LOCAL, D.MOBILE, D.LONG_DISTANCE, D.INTERNATIONAL, D.PREMIUM]


# every class of service against every ordinary destination class: allowed iff the level reaches it
@pytest.mark.parametrize(("service_class", "klass", "allowed"), [
    (S.INTERNAL_ONLY, D.LOCAL, False), (S.INTERNAL_ONLY, D.MOBILE, False),
    (S.INTERNAL_ONLY, D.LONG_DISTANCE, False), (S.INTERNAL_ONLY, D.INTERNATIONAL, False),
    (S.LOCAL, D.LOCAL, True), (S.LOCAL, D.MOBILE, False),
    (S.LOCAL, D.LONG_DISTANCE, False), (S.LOCAL, D.INTERNATIONAL, False),
    (S.LONG_DISTANCE, D.LOCAL, True), (S.LONG_DISTANCE, D.MOBILE, True),
    (S.LONG_DISTANCE, D.LONG_DISTANCE, True), (S.LONG_DISTANCE, D.INTERNATIONAL, False),
    (S.INTERNATIONAL, D.LOCAL, True), (S.INTERNATIONAL, D.MOBILE, True),
    (S.INTERNATIONAL, D.LONG_DISTANCE, True), (S.INTERNATIONAL, D.INTERNATIONAL, True),
])
def test_class_of_service_matrix(service_class: ServiceClass, klass: DestinationClass, allowed: bool) -> None:
    decision = check(EXTERNAL[klass], tenant=CallingPolicy(service_class=service_class))
    assert decision == Decision(allowed=allowed, reason=Reason.CLASS_OK if allowed else Reason.CLASS_TOO_LOW,
                                level=Level.TENANT, service_class=service_class, required=REQUIRED_CLASS[klass])


def test_mobile_counts_as_long_distance() -> None:
    assert REQUIRED_CLASS[D.MOBILE] is S.LONG_DISTANCE
    assert S.INTERNAL_ONLY < S.LOCAL < S.LONG_DISTANCE < S.INTERNATIONAL


def test_long_distance_for_one_employee_is_one_line() -> None:
    office = CallingPolicy(service_class=S.LOCAL)
    boss = CallingPolicy(service_class=S.LONG_DISTANCE)  # the one line
    assert check(LONG, employee=boss, office=office) == Decision(
        allowed=True, reason=Reason.CLASS_OK, level=Level.EMPLOYEE, service_class=S.LONG_DISTANCE,
        required=S.LONG_DISTANCE)
    assert check(LONG, office=office) == Decision(
        allowed=False, reason=Reason.CLASS_TOO_LOW, level=Level.OFFICE, service_class=S.LOCAL,
        required=S.LONG_DISTANCE)
    assert check(LOCAL, office=office).allowed
    assert not check(INTL, employee=boss, office=office).allowed


@pytest.mark.parametrize(("levels", "service_class", "level"), [
    ({"employee": S.INTERNATIONAL, "department": S.LOCAL, "office": S.LONG_DISTANCE, "tenant": S.INTERNAL_ONLY},
     S.INTERNATIONAL, Level.EMPLOYEE),
    ({"employee": S.INTERNAL_ONLY, "department": S.INTERNATIONAL, "office": S.INTERNATIONAL,
      "tenant": S.INTERNATIONAL}, S.INTERNAL_ONLY, Level.EMPLOYEE),  # more specific wins even if lower
    ({"employee": None, "department": S.LOCAL, "office": S.INTERNATIONAL, "tenant": S.INTERNATIONAL},
     S.LOCAL, Level.DEPARTMENT),
    ({"employee": None, "department": None, "office": S.LONG_DISTANCE, "tenant": S.LOCAL},
     S.LONG_DISTANCE, Level.OFFICE),
    ({"employee": None, "department": None, "office": None, "tenant": S.LOCAL}, S.LOCAL, Level.TENANT),
    ({"employee": None, "department": None, "office": None, "tenant": None}, S.INTERNAL_ONLY, Level.BUILTIN),
])
def test_most_specific_class_wins(levels: dict[str, ServiceClass | None], service_class: ServiceClass,
                                  level: Level) -> None:
    # a level that exists but sets no class (only a deny) must not hide the class of the level above
    policies = {name: CallingPolicy(service_class=value, deny=frozenset({"+88216"}))
                for name, value in levels.items()}
    effective = resolve(**policies)
    assert (effective.service_class, effective.class_level) == (service_class, level)


def test_no_policy_at_all_fails_closed_but_emergency_and_internal_still_work() -> None:
    assert check(LOCAL) == Decision(allowed=False, reason=Reason.CLASS_TOO_LOW, level=Level.BUILTIN,
                                    service_class=S.INTERNAL_ONLY, required=S.LOCAL)
    assert check(dest("112")) == Decision(allowed=True, reason=Reason.EMERGENCY, level=Level.BUILTIN,
                                          service_class=S.INTERNAL_ONLY)
    assert check(dest("200")) == Decision(allowed=True, reason=Reason.INTERNAL, level=Level.BUILTIN,
                                          service_class=S.INTERNAL_ONLY)


@pytest.mark.parametrize("dialed", ["112", "01", "02", "03", "04", "101", "102", "103", "104"])
def test_emergency_is_never_blocked(dialed: str) -> None:
    blocked = CallingPolicy(service_class=S.INTERNAL_ONLY, deny=frozenset({"+1", "+7", "+8"}))
    decision = check(dest(dialed), employee=blocked, department=blocked, office=blocked, tenant=blocked)
    assert (decision.allowed, decision.reason) == (True, Reason.EMERGENCY)


def test_deny_prefix_beats_a_high_class() -> None:
    thuraya = dest("+88216 1234 5678")
    decision = check(thuraya, employee=CallingPolicy(service_class=S.INTERNATIONAL),
                     office=CallingPolicy(deny=frozenset({"+88216"})))
    assert decision == Decision(allowed=False, reason=Reason.DENIED_PREFIX, level=Level.OFFICE,
                                service_class=S.INTERNATIONAL, required=S.INTERNATIONAL, prefix="+88216")
    assert check(dest("+88217 1234 5678"), employee=CallingPolicy(service_class=S.INTERNATIONAL),
                 office=CallingPolicy(deny=frozenset({"+88216"}))).allowed


def test_allow_overrides_a_broader_deny() -> None:
    tenant = CallingPolicy(service_class=S.INTERNATIONAL, deny=frozenset({"+44"}))
    office = CallingPolicy(allow=frozenset({"+44207946"}))
    assert check(INTL, office=office, tenant=tenant) == Decision(
        allowed=True, reason=Reason.CLASS_OK, level=Level.TENANT, service_class=S.INTERNATIONAL,
        required=S.INTERNATIONAL, prefix="+44207946")
    other = dest("+44 161 496 0000")
    assert check(other, office=office, tenant=tenant) == Decision(
        allowed=False, reason=Reason.DENIED_PREFIX, level=Level.TENANT, service_class=S.INTERNATIONAL,
        required=S.INTERNATIONAL, prefix="+44")


def test_longest_prefix_wins_whatever_its_level() -> None:
    # the employee allows all of the UK, but the office's longer deny of London still applies
    decision = check(INTL, employee=CallingPolicy(service_class=S.INTERNATIONAL, allow=frozenset({"+44"})),
                     office=CallingPolicy(deny=frozenset({"+4420"})))
    assert (decision.allowed, decision.reason, decision.level, decision.prefix) == (
        False, Reason.DENIED_PREFIX, Level.OFFICE, "+4420")


@pytest.mark.parametrize(("kwargs", "allowed", "level"), [
    ({"employee": CallingPolicy(allow=frozenset({"+44"})), "office": CallingPolicy(deny=frozenset({"+44"}))},
     True, Level.TENANT),
    ({"department": CallingPolicy(deny=frozenset({"+44"})), "office": CallingPolicy(allow=frozenset({"+44"}))},
     False, Level.DEPARTMENT),
    ({"employee": CallingPolicy(deny=frozenset({"+44"})), "department": CallingPolicy(allow=frozenset({"+44"}))},
     False, Level.EMPLOYEE),
])
def test_same_prefix_at_two_levels_the_more_specific_wins(kwargs: dict[str, CallingPolicy], allowed: bool,
                                                          level: Level) -> None:
    decision = check(INTL, tenant=CallingPolicy(service_class=S.INTERNATIONAL), **kwargs)
    assert (decision.allowed, decision.level, decision.prefix) == (allowed, level, "+44")


def test_allow_never_lifts_the_class() -> None:
    decision = check(INTL, employee=CallingPolicy(allow=frozenset({"+44"})),
                     office=CallingPolicy(service_class=S.LOCAL))
    assert decision == Decision(allowed=False, reason=Reason.CLASS_TOO_LOW, level=Level.OFFICE,
                                service_class=S.LOCAL, required=S.INTERNATIONAL, prefix="+44")


def test_premium_needs_a_deliberate_allow() -> None:
    intl = CallingPolicy(service_class=S.INTERNATIONAL)
    assert PREMIUM.premium_prefix == "+7809"
    assert check(PREMIUM, tenant=intl) == Decision(
        allowed=False, reason=Reason.PREMIUM, level=Level.BUILTIN, service_class=S.INTERNATIONAL,
        required=S.INTERNATIONAL, prefix="+7809")
    # an allow of the premium prefix itself, or a longer one, opens it
    assert check(PREMIUM, employee=CallingPolicy(allow=frozenset({"+7809"})), tenant=intl) == Decision(
        allowed=True, reason=Reason.CLASS_OK, level=Level.TENANT, service_class=S.INTERNATIONAL,
        required=S.INTERNATIONAL, prefix="+7809")
    narrow = CallingPolicy(allow=frozenset({"+780912"}))
    assert check(PREMIUM, employee=narrow, tenant=intl).allowed
    assert check(dest("8 809 999 99 99"), employee=narrow, tenant=intl).reason is Reason.PREMIUM
    # an allow shorter than the premium prefix does not: "+7" was never meant to open +7809
    assert check(PREMIUM, employee=CallingPolicy(allow=frozenset({"+7"})), tenant=intl).reason is Reason.PREMIUM
    # allowed premium still needs the top class
    low = check(PREMIUM, employee=CallingPolicy(service_class=S.LONG_DISTANCE, allow=frozenset({"+7809"})))
    assert (low.allowed, low.reason, low.required) == (False, Reason.CLASS_TOO_LOW, S.INTERNATIONAL)
    # an explicit deny of the same prefix reports the admin's rule, not the built-in one
    explicit = check(PREMIUM, office=CallingPolicy(deny=frozenset({"+7809"})), tenant=intl)
    assert (explicit.reason, explicit.level) == (Reason.DENIED_PREFIX, Level.OFFICE)


def test_resolve_merges_rules_with_their_levels() -> None:
    effective = resolve(employee=CallingPolicy(allow=frozenset({"+7809"})),
                        office=CallingPolicy(service_class=S.LOCAL, deny=frozenset({"+7809", "+88216"})),
                        tenant=CallingPolicy(deny=frozenset({"+1"})))
    assert effective == EffectivePolicy(service_class=S.LOCAL, class_level=Level.OFFICE, rules={
        "+7809": PrefixRule(prefix="+7809", allow=True, level=Level.EMPLOYEE),
        "+88216": PrefixRule(prefix="+88216", allow=False, level=Level.OFFICE),
        "+1": PrefixRule(prefix="+1", allow=False, level=Level.TENANT),
    })
    assert effective.rule_for("+8821612345678") == PrefixRule(prefix="+88216", allow=False, level=Level.OFFICE)
    assert effective.rule_for("+74951234567") is None
    # one resolved policy answers many calls (a forwarding chain, a retry)
    assert [effective.check(d).allowed for d in (LOCAL, LONG, dest("200"))] == [True, False, True]


def test_policy_accepts_any_collection_and_stays_immutable() -> None:
    policy = CallingPolicy(deny=["+7809", "+88216"], allow=("+78091",))  # type: ignore[arg-type]
    assert policy.deny == frozenset({"+7809", "+88216"}) and policy.allow == frozenset({"+78091"})
    assert hash(policy) == hash(CallingPolicy(deny=frozenset({"+88216", "+7809"}), allow=frozenset({"+78091"})))


@pytest.mark.parametrize(("deny", "allow"), [
    ("+7809", ()),  # a bare string would be read as characters
    (("7809",), ()),  # no '+'
    (("+0809",), ()),  # no country code starts with 0
    (("+",), ()),
    (("+7 809",), ()),
    (("+1234567890123456",), ()),  # 16 digits
    (("+44",), ("+44",)),  # the same prefix both denied and allowed at one level
])
def test_bad_policies_are_refused(deny: object, allow: object) -> None:
    with pytest.raises(PolicyError):
        CallingPolicy(deny=deny, allow=allow)  # type: ignore[arg-type]


def test_reason_codes_are_stable() -> None:
    assert [r.value for r in Reason] == [
        "emergency", "internal", "class_ok", "class_too_low", "denied_prefix", "premium_blocked"]
    assert [lv.value for lv in Level] == ["employee", "department", "office", "tenant", "builtin"]
