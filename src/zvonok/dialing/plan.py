"""Dialing plans: the data that tells :func:`zvonok.dialing.numbers.normalize` how people dial.

How it works: a :class:`DialPlan` is a plain value holding one country's conventions (its country code,
the national and international access prefixes, how long national numbers are, the emergency short
numbers) plus one office's area code. Nothing in the normalizer knows Russia: :func:`russian_plan`
fills in the Russian values, :func:`e164_plan` builds the plan of any country that follows the common
"0 national / 00 international" pattern (the UK, Germany, most of Europe). The engine builds one plan
per office (the area code differs), typically once, and reuses it for every call from that office.

Prefixes that classify numbers (premium, mobile, foreign) are written as E.164 prefixes ("+7809"),
the same notation as the deny/allow prefixes of :mod:`zvonok.dialing.permissions`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .countries import MAX_E164_DIGITS, MIN_E164_DIGITS
from .errors import PlanError

_DIGITS = re.compile(r"[0-9]+")
_E164_PREFIX = re.compile(r"\+[1-9][0-9]{0,14}")

RUSSIAN_EMERGENCY = frozenset({
    "112",                          # the single emergency number
    "101", "102", "103", "104",     # fire, police, ambulance, gas (since 2014)
    "01", "02", "03", "04",         # the same services' legacy two-digit numbers, still dialed
})


@dataclass(frozen=True, kw_only=True)
class DialPlan:
    """One country's dialing conventions as seen from one office.

    Build it with :func:`russian_plan` or :func:`e164_plan`; the constructor checks every field but
    derives nothing.
    """

    country_code: str  # "7"
    national_prefix: str  # "8" in Russia, "0" in most of Europe; "" when the country dials none
    international_prefixes: tuple[str, ...]  # ("810", "00"); tried longest first
    national_number_lengths: frozenset[int]  # digits after the country code: {10} for Russia
    area_code: str | None  # the office's area code ("495"); None: local numbers cannot be dialed
    local_number_lengths: frozenset[int]  # lengths of a number dialed without the area code
    local_area_codes: tuple[str, ...]  # area codes classified LOCAL (the office's first)
    emergency_numbers: frozenset[str]  # short numbers that always go out as dialed
    premium_prefixes: tuple[str, ...] = ()  # E.164 prefixes of premium-rate services ("+7809")
    mobile_prefixes: tuple[str, ...] = ()  # E.164 prefixes of the country's mobile networks ("+79")
    foreign_prefixes: tuple[str, ...] = ()  # prefixes inside our country code that are abroad ("+77")
    accept_without_plus: bool = False  # "7 495 …" (country code, no '+', no prefix) means "+7 495 …"

    def __post_init__(self) -> None:
        _digits("country_code", self.country_code)
        if self.country_code[0] == "0" or len(self.country_code) > 3:
            raise PlanError(f"country_code must be 1-3 digits not starting with 0: {self.country_code!r}")
        if self.national_prefix:
            _digits("national_prefix", self.national_prefix)
        if not self.international_prefixes:
            raise PlanError("a plan needs at least one international prefix")
        for prefix in self.international_prefixes:
            _digits("international_prefixes", prefix)
        longest = MAX_E164_DIGITS - len(self.country_code)
        if not self.national_number_lengths or not all(0 < n <= longest for n in self.national_number_lengths):
            raise PlanError(f"national_number_lengths must lie in 1..{longest}: {sorted(self.national_number_lengths)}")
        if self.area_code is not None:
            _digits("area_code", self.area_code)
        if not all(n > 0 for n in self.local_number_lengths):
            raise PlanError(f"local_number_lengths must be positive: {sorted(self.local_number_lengths)}")
        if self.local_number_lengths and self.area_code is None:
            raise PlanError("local_number_lengths without an area_code: a local number would have no area")
        for code in self.local_area_codes:
            _digits("local_area_codes", code)
        for number in self.emergency_numbers:
            _digits("emergency_numbers", number)
        for name in ("premium_prefixes", "mobile_prefixes", "foreign_prefixes"):
            for prefix in getattr(self, name):
                if not _E164_PREFIX.fullmatch(prefix):
                    raise PlanError(f"{name} must be E.164 prefixes like '+7809': {prefix!r}")

    @property
    def escape_digits(self) -> frozenset[str]:
        """First digits of the access prefixes: a local number cannot start with one of them."""
        starts = {p[0] for p in self.international_prefixes}
        if self.national_prefix:
            starts.add(self.national_prefix[0])
        return frozenset(starts)


def russian_plan(area_code: str | None, *, also_local: Iterable[str] = ()) -> DialPlan:
    """The Russian plan (Rossvyaz numbering) for an office in ``area_code`` ("495", "3532", "34361").

    National numbers are 10 digits: an area code of 3 to 5 digits and a local number of 7 to 5, so a
    local number is as long as 10 minus the area code. "8" opens a national call, "8 10" (and the
    European "00") an international one; "+7 9…" are mobiles, "+7 809" premium-rate, "+7 6…" and
    "+7 7…" Kazakhstan (it shares country code 7). ``also_local`` names other area codes the office
    reaches at local rates (Moscow: 495 and 499). ``area_code=None`` serves an office with no geography
    (a virtual office): local numbers then cannot be dialed.
    """
    if area_code is not None and not (_DIGITS.fullmatch(area_code) and 3 <= len(area_code) <= 5
                                      and area_code[0] != "0"):
        raise PlanError(f"a Russian area code has 3-5 digits and does not start with 0: {area_code!r}")
    locals_ = () if area_code is None else (area_code, *also_local)
    return DialPlan(
        country_code="7",
        national_prefix="8",
        international_prefixes=("810", "00"),
        national_number_lengths=frozenset({10}),
        area_code=area_code,
        local_number_lengths=frozenset() if area_code is None else frozenset({10 - len(area_code)}),
        local_area_codes=tuple(locals_),
        emergency_numbers=RUSSIAN_EMERGENCY,
        premium_prefixes=("+7809",),
        mobile_prefixes=("+79",),
        foreign_prefixes=("+76", "+77"),
        accept_without_plus=True,
    )


def e164_plan(
    country_code: str,
    national_prefix: str = "0",
    international_prefix: str = "00",
    area_code: str | None = None,
    *,
    national_number_lengths: Iterable[int] | None = None,
    local_number_lengths: Iterable[int] | None = None,
    emergency_numbers: Iterable[str] = ("112",),
    premium_prefixes: Iterable[str] = (),
    mobile_prefixes: Iterable[str] = (),
    accept_without_plus: bool = False,
) -> DialPlan:
    """A plan for a country of the "0 national, 00 international" kind (UK, Germany, France …).

    ``national_number_lengths`` defaults to every length E.164 leaves room for (from 7 digits in all
    up to 15), for countries whose national numbers vary in length (Germany). Local numbers get their
    lengths from ``local_number_lengths``, or, when the national length is given, from it minus the
    area code's; with neither, only national and international forms are accepted.
    """
    if national_number_lengths is None:
        lo = max(1, MIN_E164_DIGITS - len(country_code))
        national = frozenset(range(lo, MAX_E164_DIGITS - len(country_code) + 1))
    else:
        national = frozenset(national_number_lengths)
    if local_number_lengths is not None:
        local = frozenset(local_number_lengths)
    elif area_code is not None and national_number_lengths is not None:
        local = frozenset(n - len(area_code) for n in national if n > len(area_code))
    else:
        local = frozenset()
    return DialPlan(
        country_code=country_code,
        national_prefix=national_prefix,
        international_prefixes=(international_prefix,),
        national_number_lengths=national,
        area_code=area_code,
        local_number_lengths=local,
        local_area_codes=() if area_code is None else (area_code,),
        emergency_numbers=frozenset(emergency_numbers),
        premium_prefixes=tuple(premium_prefixes),
        mobile_prefixes=tuple(mobile_prefixes),
        accept_without_plus=accept_without_plus,
    )


def _digits(name: str, value: str) -> None:
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        raise PlanError(f"{name} must be ASCII digits: {value!r}")
