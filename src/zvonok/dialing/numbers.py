"""Normalize what a person dialed into a destination: E.164 for the outside world, as-is inside.

How it works: :func:`normalize` first cleans the string (drops the separators people type and phones
send, keeps one leading '+'), then tries the plan's rules in a fixed order; the first that matches wins:

1. a leading '+'                            → E.164 as written ("+7 495 …", "+1 …");
2. an emergency number                      → itself, EMERGENCY (before extensions: it must always work);
3. an extension of the tenant               → itself, INTERNAL (the caller's predicate or set decides);
4. an international prefix ("810", "00")    → '+' and the rest (tried before the national prefix, since
                                              "8 10 …" would otherwise read as "8" + a national number);
5. the national prefix ("8") + a national number of the right length → '+' country code + number;
6. the country code without '+' ("7 495 …") when the plan accepts it → '+' and the digits;
7. a local number (the length the office's area code leaves, not starting with an access digit)
                                              → '+' country code + area code + number;

and anything else raises :class:`~zvonok.dialing.errors.InvalidNumber` with the reason. An E.164 result
is checked (at most 15 digits, a real country code, the plan's own national length for its country) and
classified: PREMIUM by the plan's premium prefixes first, then INTERNATIONAL for another country (or a
foreign part of our country code), MOBILE, LOCAL for the office's area codes, else LONG_DISTANCE.

Feature codes ("*72…") are not numbers: routing recognizes them before it asks for dialing rules.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from enum import StrEnum

from .countries import MAX_E164_DIGITS, MIN_E164_DIGITS, country_code_of
from .errors import InvalidNumber, InvalidReason
from .plan import DialPlan

# Separators people type and phones send: "+7 (495) 123-45-67", "8.495.123.45.67". Any other Unicode
# white space counts too (a non-breaking space pasted from a web page or a CRM).
SEPARATORS = frozenset(" -().")
_ASCII_DIGITS = frozenset("0123456789")
# A dialed string longer than this is rejected before any work: no plan has forms this long, and the
# string may come straight from the network.
MAX_DIALED_CHARS = 64

ExtensionTest = Callable[[str], bool] | AbstractSet[str]


class DestinationClass(StrEnum):
    """Where a call goes, for routing, permissions and rating. Values are stable codes for APIs and CDRs.

    MOBILE is a mobile number of the plan's own country (Russia: +7 9…); for calling permissions it
    counts as LONG_DISTANCE (see :data:`zvonok.dialing.permissions.REQUIRED_CLASS`).
    """

    INTERNAL = "internal"  # an extension of the tenant
    EMERGENCY = "emergency"  # 112 and the national emergency numbers
    LOCAL = "local"  # the office's own area
    MOBILE = "mobile"  # a mobile network of the office's country
    LONG_DISTANCE = "long_distance"  # another area of the office's country
    INTERNATIONAL = "international"  # another country
    PREMIUM = "premium"  # a premium-rate service (the plan's premium prefixes)


EXTERNAL_CLASSES = frozenset({
    DestinationClass.LOCAL, DestinationClass.MOBILE, DestinationClass.LONG_DISTANCE,
    DestinationClass.INTERNATIONAL, DestinationClass.PREMIUM,
})


@dataclass(frozen=True, kw_only=True)
class Destination:
    """A normalized destination.

    ``number`` is what to route to: the E.164 form ("+74951234567") for external classes, the digits
    themselves for INTERNAL ("101") and EMERGENCY ("112"). ``dialed`` keeps the original string (CDRs
    show what the person typed). ``country_code`` is set for external numbers only; ``premium_prefix``
    is the plan prefix that made the number PREMIUM (permissions treat it as an implicit deny).
    """

    number: str
    klass: DestinationClass
    dialed: str
    country_code: str | None = None
    premium_prefix: str | None = None

    @property
    def is_external(self) -> bool:
        """True when the call leaves the PBX through a trunk (every class but INTERNAL)."""
        return self.klass is not DestinationClass.INTERNAL

    @property
    def e164(self) -> str | None:
        """The E.164 number, or None for an extension or an emergency short number."""
        return self.number if self.klass in EXTERNAL_CLASSES else None


def normalize(dialed: str, plan: DialPlan, *, extensions: ExtensionTest = frozenset()) -> Destination:
    """Turn ``dialed`` into a :class:`Destination` by the rules of ``plan`` (see the module docstring).

    ``extensions`` says whether a digit string is an extension of the caller's tenant: a set of the
    extension numbers, or a predicate. Raises :class:`InvalidNumber` when no rule applies.
    """
    plus, digits = _clean(dialed)
    if plus:
        return _external(digits, plan, dialed, form="after '+'")
    if digits in plan.emergency_numbers:
        return Destination(number=digits, klass=DestinationClass.EMERGENCY, dialed=dialed)
    if _is_extension(extensions, digits):
        return Destination(number=digits, klass=DestinationClass.INTERNAL, dialed=dialed)
    for prefix in sorted(plan.international_prefixes, key=len, reverse=True):
        if digits.startswith(prefix):
            return _external(digits[len(prefix):], plan, dialed, form=f"after the international prefix {prefix}")
    cc = plan.country_code
    if plan.national_prefix and digits.startswith(plan.national_prefix):
        national = digits[len(plan.national_prefix):]
        if len(national) not in plan.national_number_lengths:
            raise InvalidNumber(InvalidReason.WRONG_LENGTH, dialed,
                                f"after the national prefix {plan.national_prefix} a number of "
                                f"{_lengths(plan.national_number_lengths)} digits is expected, got {len(national)}")
        return _external(cc + national, plan, dialed, form="")
    if plan.accept_without_plus and digits.startswith(cc) and len(digits) - len(cc) in plan.national_number_lengths:
        return _external(digits, plan, dialed, form="")
    if (plan.area_code is not None and len(digits) in plan.local_number_lengths
            and digits[0] not in plan.escape_digits):
        return _external(cc + plan.area_code + digits, plan, dialed, form="")
    if len(digits) > MAX_E164_DIGITS:
        raise InvalidNumber(InvalidReason.TOO_LONG, dialed, f"{len(digits)} digits is longer than any number")
    raise InvalidNumber(InvalidReason.UNKNOWN_FORM, dialed, _unknown_detail(digits, plan))


def _is_extension(extensions: ExtensionTest, digits: str) -> bool:
    if isinstance(extensions, AbstractSet):
        return digits in extensions
    return extensions(digits)


def _clean(dialed: str) -> tuple[bool, str]:
    """(had a leading '+', the ASCII digits) with separators dropped; raises on anything else."""
    if len(dialed) > MAX_DIALED_CHARS:
        raise InvalidNumber(InvalidReason.TOO_LONG, dialed, f"longer than {MAX_DIALED_CHARS} characters")
    plus = False
    digits: list[str] = []
    for ch in dialed:
        if ch in _ASCII_DIGITS:
            digits.append(ch)
        elif ch in SEPARATORS or ch.isspace():
            continue
        elif ch == "+":
            # one '+' before the first digit: "+7 …", and the written "(+7) 495 …"
            if plus or digits:
                raise InvalidNumber(InvalidReason.MISPLACED_PLUS, dialed, "'+' may only start the number")
            plus = True
        else:
            # str.isdigit() would let Arabic-Indic or full-width digits through: only ASCII is a digit here
            raise InvalidNumber(InvalidReason.INVALID_CHARACTER, dialed, f"{ch!r} is not a digit or a separator")
    if not digits:
        raise InvalidNumber(InvalidReason.EMPTY, dialed, "no digits")
    return plus, "".join(digits)


def _external(digits: str, plan: DialPlan, dialed: str, *, form: str) -> Destination:
    """Check ``digits`` (an E.164 number without '+') and classify it."""
    where = f" {form}" if form else ""
    if not digits:
        raise InvalidNumber(InvalidReason.TOO_SHORT, dialed, f"no digits{where}")
    if len(digits) > MAX_E164_DIGITS:
        raise InvalidNumber(InvalidReason.TOO_LONG, dialed,
                            f"{len(digits)} digits{where}; E.164 allows at most {MAX_E164_DIGITS}")
    if digits[0] == "0":
        raise InvalidNumber(InvalidReason.BAD_COUNTRY_CODE, dialed, f"a country code cannot start with 0{where}")
    cc = plan.country_code
    if digits.startswith(cc):
        # our own country: its national length is known exactly (country codes are prefix-free, so
        # startswith cannot confuse "7" with another code)
        national = len(digits) - len(cc)
        if national not in plan.national_number_lengths:
            raise InvalidNumber(InvalidReason.WRONG_LENGTH, dialed,
                                f"+{cc} numbers have {_lengths(plan.national_number_lengths)} digits "
                                f"after the country code, got {national}")
    else:
        cc = country_code_of(digits)
        if len(digits) < MIN_E164_DIGITS:
            raise InvalidNumber(InvalidReason.TOO_SHORT, dialed,
                                f"{len(digits)} digits{where} is shorter than any international number")
    e164 = "+" + digits
    klass, premium = _classify(e164, cc, plan)
    return Destination(number=e164, klass=klass, dialed=dialed, country_code=cc, premium_prefix=premium)


def _classify(e164: str, cc: str, plan: DialPlan) -> tuple[DestinationClass, str | None]:
    for prefix in sorted(plan.premium_prefixes, key=len, reverse=True):
        if e164.startswith(prefix):
            return DestinationClass.PREMIUM, prefix
    if cc != plan.country_code or e164.startswith(plan.foreign_prefixes):
        return DestinationClass.INTERNATIONAL, None
    if e164.startswith(plan.mobile_prefixes):
        return DestinationClass.MOBILE, None
    if e164[1 + len(cc):].startswith(plan.local_area_codes):
        return DestinationClass.LOCAL, None
    return DestinationClass.LONG_DISTANCE, None


def _lengths(lengths: frozenset[int]) -> str:
    ordered = sorted(lengths)
    if len(ordered) > 2 and ordered[-1] - ordered[0] == len(ordered) - 1:
        return f"{ordered[0]}-{ordered[-1]}"
    return " or ".join(str(n) for n in ordered)


def _unknown_detail(digits: str, plan: DialPlan) -> str:
    if plan.area_code is not None and len(digits) in plan.local_number_lengths:
        return f"a local number cannot start with {digits[0]}"
    if plan.area_code is not None:
        return (f"{len(digits)} digits is not an extension, and local numbers in area {plan.area_code} "
                f"have {_lengths(plan.local_number_lengths)} digits")
    return f"{len(digits)} digits is not an extension, and this office has no area code for local numbers"
