"""Country calling codes (ITU-T E.164 assignments): where the country code of an E.164 number ends.

How it works: country codes are 1 to 3 digits and form a prefix-free code, so the first digits of a
number decide its code without any ambiguity. Only zones 1 (NANP) and 7 use a one-digit code, and a
short list of countries hold two-digit codes; every other code is three digits (including the
non-geographic ones: +800 freephone, +870 Inmarsat, +881 satellite, +882/+883 international networks).
The table therefore needs only the one- and two-digit codes. It does not check that a three-digit code
is currently assigned: a carrier rejects an unassigned one anyway, and assignments change.
"""

from __future__ import annotations

from .errors import DialingError

ONE_DIGIT_CODES = frozenset({"1", "7"})

TWO_DIGIT_CODES = frozenset({
    "20", "27",                                                 # zone 2: Egypt, South Africa
    "30", "31", "32", "33", "34", "36", "39",                   # zone 3: GR NL BE FR ES HU IT
    "40", "41", "43", "44", "45", "46", "47", "48", "49",       # zone 4: RO CH AT GB DK SE NO PL DE
    "51", "52", "53", "54", "55", "56", "57", "58",             # zone 5: PE MX CU AR BR CL CO VE
    "60", "61", "62", "63", "64", "65", "66",                   # zone 6: MY AU ID PH NZ SG TH
    "81", "82", "84", "86",                                     # zone 8: JP KR VN CN
    "90", "91", "92", "93", "94", "95", "98",                   # zone 9: TR IN PK AF LK MM IR
})

MAX_E164_DIGITS = 15  # ITU-T E.164 §6: country code + national significant number
# The shortest numbers in service are 7 digits in all (a 3-digit code and a 4-digit subscriber number,
# e.g. Niue): fewer digits after '+' cannot reach anyone.
MIN_E164_DIGITS = 7


def country_code_of(digits: str) -> str:
    """The country code at the start of ``digits`` (an E.164 number without the "+")."""
    if not digits.isascii() or not digits.isdigit() or digits[0] == "0":
        raise DialingError(f"not the digits of an E.164 number: {digits!r}")
    if digits[:1] in ONE_DIGIT_CODES:
        return digits[:1]
    if digits[:2] in TWO_DIGIT_CODES:
        return digits[:2]
    return digits[:3]
