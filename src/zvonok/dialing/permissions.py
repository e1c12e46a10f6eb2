"""Calling permissions: may this employee call that destination?

How it works: a :class:`CallingPolicy` can be set at four levels (employee, department, office, tenant).
:func:`resolve` folds the ones that exist into one :class:`EffectivePolicy`, and its ``check`` gives a
:class:`Decision` for a normalized :class:`~zvonok.dialing.numbers.Destination`.

* **Class of service** — an ordered level, INTERNAL_ONLY < LOCAL < LONG_DISTANCE < INTERNATIONAL. The
  most specific level that sets one wins (employee, else department, else office, else tenant); with
  none set at all the class is INTERNAL_ONLY (fail closed: an unconfigured tenant runs up no bill).
  Each destination class needs a minimum service class (:data:`REQUIRED_CLASS`); MOBILE needs
  LONG_DISTANCE, PREMIUM needs INTERNATIONAL.
* **Prefix rules** — deny prefixes ("+7809", "+88216") and allow prefixes (E.164 prefixes) from every
  level are merged; where two levels name the same prefix, the more specific level's rule wins (an
  employee's allow of "+7809" beats the office's deny of it). For a number, the **longest** matching
  prefix decides, whatever its level: a deny means no; an allow only cancels the denies of shorter
  prefixes — it never lifts the class of service, so an allow cannot turn a LOCAL employee into an
  international caller by accident.
* **Premium numbers** carry an implicit deny of the plan prefix that made them premium, weaker than any
  explicit rule of the same or a longer prefix: calling them takes a deliberate allow (they are the
  classic toll-fraud target) as well as the INTERNATIONAL class.
* EMERGENCY and INTERNAL destinations are always allowed; no setting can block them.

The order of the checks is: emergency/internal, then the prefix rule, then the class; a decision names
the rule's or the class's level, so the UI can say *who* blocked a call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from .countries import MAX_E164_DIGITS
from .errors import PolicyError
from .numbers import Destination, DestinationClass

_PREFIX = re.compile(rf"\+[1-9][0-9]{{0,{MAX_E164_DIGITS - 1}}}")


class ServiceClass(IntEnum):
    """Class of service: how far an employee may call. Ordered; a higher level includes the lower ones."""

    INTERNAL_ONLY = 0
    LOCAL = 1
    LONG_DISTANCE = 2
    INTERNATIONAL = 3


class Level(StrEnum):
    """Where a setting comes from, most specific first. BUILTIN is the module's own rule."""

    EMPLOYEE = "employee"
    DEPARTMENT = "department"
    OFFICE = "office"
    TENANT = "tenant"
    BUILTIN = "builtin"


class Reason(StrEnum):
    """Why a call was allowed or not: stable machine codes for the API, CDRs and the caller's message."""

    EMERGENCY = "emergency"  # allowed: emergency numbers always go out
    INTERNAL = "internal"  # allowed: a call to an extension
    CLASS_OK = "class_ok"  # allowed: the class of service reaches the destination
    CLASS_TOO_LOW = "class_too_low"  # denied: the class of service does not reach it
    DENIED_PREFIX = "denied_prefix"  # denied: an explicit deny prefix matched
    PREMIUM = "premium_blocked"  # denied: a premium number with no allow prefix for it


# The class of service each destination class needs. MOBILE counts as long distance (in Russia a call
# to +7 9… is billed like one wherever the office is).
REQUIRED_CLASS: Mapping[DestinationClass, ServiceClass] = {
    DestinationClass.LOCAL: ServiceClass.LOCAL,
    DestinationClass.MOBILE: ServiceClass.LONG_DISTANCE,
    DestinationClass.LONG_DISTANCE: ServiceClass.LONG_DISTANCE,
    DestinationClass.INTERNATIONAL: ServiceClass.INTERNATIONAL,
    DestinationClass.PREMIUM: ServiceClass.INTERNATIONAL,
}

FALLBACK_CLASS = ServiceClass.INTERNAL_ONLY  # when no level sets a class


@dataclass(frozen=True, kw_only=True)
class CallingPolicy:
    """The calling settings of one employee, department, office or tenant; every part is optional.

    ``CallingPolicy(service_class=ServiceClass.LONG_DISTANCE)`` only raises the class;
    ``CallingPolicy(deny=frozenset({"+88216"}))`` only adds a deny and leaves the class to the levels above.
    """

    service_class: ServiceClass | None = None
    deny: frozenset[str] = frozenset()
    allow: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # accept any iterable of strings from config/DB code, but keep the value hashable and immutable
        for name in ("deny", "allow"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise PolicyError(f"{name} must be a collection of prefixes, not the string {value!r}")
            object.__setattr__(self, name, frozenset(value))
        for prefix in self.deny | self.allow:
            if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
                raise PolicyError(f"a prefix is '+' and 1-{MAX_E164_DIGITS} digits (no leading 0): {prefix!r}")
        both = self.deny & self.allow
        if both:
            raise PolicyError(f"prefixes both denied and allowed at one level: {sorted(both)}")


@dataclass(frozen=True, kw_only=True)
class PrefixRule:
    """One merged prefix rule and the level it came from."""

    prefix: str
    allow: bool
    level: Level


@dataclass(frozen=True, kw_only=True)
class Decision:
    """The answer of :meth:`EffectivePolicy.check`.

    ``level`` is the level whose setting decided (BUILTIN for emergency, internal, the fallback class and
    the implicit premium deny); ``prefix`` the rule that matched, if any (for an allowed call it is the
    allow prefix that cancelled a deny); ``required`` the class the destination needs (None when no
    class applies).
    """

    allowed: bool
    reason: Reason
    level: Level
    service_class: ServiceClass
    required: ServiceClass | None = None
    prefix: str | None = None


@dataclass(frozen=True, kw_only=True)
class EffectivePolicy:
    """The policy in force for one caller after :func:`resolve`: reusable for every call they make."""

    service_class: ServiceClass
    class_level: Level
    rules: Mapping[str, PrefixRule] = field(default_factory=dict)

    def rule_for(self, number: str) -> PrefixRule | None:
        """The explicit rule of the longest prefix of ``number``, or None."""
        for end in range(len(number), 1, -1):
            rule = self.rules.get(number[:end])
            if rule is not None:
                return rule
        return None

    def check(self, destination: Destination) -> Decision:
        """May the caller reach ``destination``? See the module docstring for the order of the rules."""
        klass = destination.klass
        if klass is DestinationClass.EMERGENCY:
            return Decision(allowed=True, reason=Reason.EMERGENCY, level=Level.BUILTIN,
                            service_class=self.service_class)
        if klass is DestinationClass.INTERNAL:
            return Decision(allowed=True, reason=Reason.INTERNAL, level=Level.BUILTIN,
                            service_class=self.service_class)
        required = REQUIRED_CLASS[klass]
        rule = self.rule_for(destination.number)
        if klass is DestinationClass.PREMIUM:
            implicit = destination.premium_prefix or destination.number
            if rule is None or len(rule.prefix) < len(implicit):
                rule = PrefixRule(prefix=implicit, allow=False, level=Level.BUILTIN)
        if rule is not None and not rule.allow:
            reason = Reason.PREMIUM if rule.level is Level.BUILTIN else Reason.DENIED_PREFIX
            return Decision(allowed=False, reason=reason, level=rule.level, service_class=self.service_class,
                            required=required, prefix=rule.prefix)
        allowed = self.service_class >= required
        return Decision(allowed=allowed, reason=Reason.CLASS_OK if allowed else Reason.CLASS_TOO_LOW,
                        level=self.class_level, service_class=self.service_class, required=required,
                        prefix=rule.prefix if rule is not None else None)


def resolve(
    *,
    employee: CallingPolicy | None = None,
    department: CallingPolicy | None = None,
    office: CallingPolicy | None = None,
    tenant: CallingPolicy | None = None,
) -> EffectivePolicy:
    """Fold the levels' policies into the one in force: the most specific setting wins (module docstring)."""
    chain = ((Level.EMPLOYEE, employee), (Level.DEPARTMENT, department), (Level.OFFICE, office),
             (Level.TENANT, tenant))
    service_class, class_level = FALLBACK_CLASS, Level.BUILTIN
    rules: dict[str, PrefixRule] = {}
    # walk from the least specific level up, so a more specific level overwrites what it names
    for level, policy in reversed(chain):
        if policy is None:
            continue
        if policy.service_class is not None:
            service_class, class_level = policy.service_class, level
        for prefix in policy.deny:
            rules[prefix] = PrefixRule(prefix=prefix, allow=False, level=level)
        for prefix in policy.allow:
            rules[prefix] = PrefixRule(prefix=prefix, allow=True, level=level)
    return EffectivePolicy(service_class=service_class, class_level=class_level, rules=rules)


def check(
    destination: Destination,
    *,
    employee: CallingPolicy | None = None,
    department: CallingPolicy | None = None,
    office: CallingPolicy | None = None,
    tenant: CallingPolicy | None = None,
) -> Decision:
    """``resolve(...).check(destination)`` in one call, for a single decision."""
    return resolve(employee=employee, department=department, office=office, tenant=tenant).check(destination)
