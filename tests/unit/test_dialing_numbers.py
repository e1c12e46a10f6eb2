"""Dialing rules: what people dial in Russian offices (and UK/German ones) normalized to E.164 and classified."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

import zvonok.dialing
from zvonok.dialing import (
    Destination,
    DestinationClass,
    DialPlan,
    InvalidNumber,
    InvalidReason,
    PlanError,
    e164_plan,
    normalize,
    russian_plan,
)
from zvonok.dialing.countries import country_code_of
from zvonok.dialing.errors import DialingError

D = DestinationClass
MSK = russian_plan("495", also_local=("499",))  # Moscow: 7-digit local numbers
SPB = russian_plan("812")  # St Petersburg: 7 digits
ORB = russian_plan("3532")  # Orenburg: 6 digits
KAM = russian_plan("34361")  # Kamensk-Uralsky: 5 digits
VIRTUAL = russian_plan(None)  # an office without geography
PLANS = {"MSK": MSK, "SPB": SPB, "ORB": ORB, "KAM": KAM, "VIRTUAL": VIRTUAL}
EXTENSIONS = frozenset({"10", "101", "200", "2001", "12345", "1234567", "8123"})

# (dialed, office, expected number, class, country code)
RUSSIAN = [
    # 8 + 10 digits: national, with every separator people type
    ("84951234567", "MSK", "+74951234567", D.LOCAL, "7"),
    ("8 (495) 123-45-67", "MSK", "+74951234567", D.LOCAL, "7"),
    ("8-495-123-45-67", "MSK", "+74951234567", D.LOCAL, "7"),
    ("8.495.123.45.67", "MSK", "+74951234567", D.LOCAL, "7"),
    ("\u00a08 495 123 45 67\t", "MSK", "+74951234567", D.LOCAL, "7"),  # pasted: NBSP and a tab
    ("84991234567", "MSK", "+74991234567", D.LOCAL, "7"),  # 499 is local in Moscow too
    ("8 812 123 45 67", "MSK", "+78121234567", D.LONG_DISTANCE, "7"),
    ("8 495 123 45 67", "SPB", "+74951234567", D.LONG_DISTANCE, "7"),
    ("8 (3532) 12-34-56", "ORB", "+73532123456", D.LOCAL, "7"),
    ("8 800 555-35-35", "MSK", "+78005553535", D.LONG_DISTANCE, "7"),
    ("8 916 123-45-67", "MSK", "+79161234567", D.MOBILE, "7"),
    ("8 809 123 45 67", "MSK", "+78091234567", D.PREMIUM, "7"),
    # +7 and 7 + 10 digits, accepted as they are
    ("+74951234567", "MSK", "+74951234567", D.LOCAL, "7"),
    ("+7 (495) 123-45-67", "MSK", "+74951234567", D.LOCAL, "7"),
    ("(+7) 495 123 45 67", "MSK", "+74951234567", D.LOCAL, "7"),
    ("+ 7 495 123 45 67", "ORB", "+74951234567", D.LONG_DISTANCE, "7"),
    ("74951234567", "MSK", "+74951234567", D.LOCAL, "7"),
    ("7 916 123 45 67", "KAM", "+79161234567", D.MOBILE, "7"),
    ("+7 916 123 45 67", "VIRTUAL", "+79161234567", D.MOBILE, "7"),
    ("+7 809 505 12 34", "SPB", "+78095051234", D.PREMIUM, "7"),
    ("+7 727 123 45 67", "MSK", "+77271234567", D.INTERNATIONAL, "7"),  # Kazakhstan shares code 7
    ("8 701 123 45 67", "MSK", "+77011234567", D.INTERNATIONAL, "7"),
    # local numbers get the office's area code
    ("1234568", "MSK", "+74951234568", D.LOCAL, "7"),
    ("123-45-68", "MSK", "+74951234568", D.LOCAL, "7"),
    ("765 43 21", "SPB", "+78127654321", D.LOCAL, "7"),
    ("123456", "ORB", "+73532123456", D.LOCAL, "7"),
    ("12-34-56", "ORB", "+73532123456", D.LOCAL, "7"),
    ("23456", "KAM", "+73436123456", D.LOCAL, "7"),
    ("2-34-56", "KAM", "+73436123456", D.LOCAL, "7"),
    # international: 8 10, 00 and +
    ("8 10 49 30 1234567", "MSK", "+49301234567", D.INTERNATIONAL, "49"),
    ("810 44 20 7946 0018", "MSK", "+442079460018", D.INTERNATIONAL, "44"),
    ("8101 212 555 0100", "SPB", "+12125550100", D.INTERNATIONAL, "1"),
    ("8 10 7 495 123 45 67", "MSK", "+74951234567", D.LOCAL, "7"),  # home again through 8 10
    ("00 44 20 7946 0018", "MSK", "+442079460018", D.INTERNATIONAL, "44"),
    ("0049 30 1234567", "ORB", "+49301234567", D.INTERNATIONAL, "49"),
    ("00 7 812 123 45 67", "MSK", "+78121234567", D.LONG_DISTANCE, "7"),
    ("+1 (212) 555-0100", "MSK", "+12125550100", D.INTERNATIONAL, "1"),
    ("+375 17 123-45-67", "MSK", "+375171234567", D.INTERNATIONAL, "375"),
    ("+88216 1234 5678", "MSK", "+8821612345678", D.INTERNATIONAL, "882"),
    ("+683 1234", "MSK", "+6831234", D.INTERNATIONAL, "683"),  # 7 digits in all: the shortest kind
    ("+49 1234 5678 9012 3", "MSK", "+491234567890123", D.INTERNATIONAL, "49"),  # 15 digits: the longest
]


@pytest.mark.parametrize(("dialed", "office", "number", "klass", "cc"), RUSSIAN)
def test_russian_dialing(dialed: str, office: str, number: str, klass: DestinationClass, cc: str) -> None:
    dest = normalize(dialed, PLANS[office], extensions=EXTENSIONS)
    assert dest == Destination(number=number, klass=klass, dialed=dialed, country_code=cc,
                               premium_prefix="+7809" if klass is D.PREMIUM else None)
    assert dest.e164 == number


# (dialed, office, expected number, class): short numbers that never become E.164
SHORT = [
    ("112", "MSK", "112", D.EMERGENCY),
    ("1-1-2", "KAM", "112", D.EMERGENCY),
    ("101", "MSK", "101", D.EMERGENCY),  # an emergency number beats the tenant's extension 101
    ("102", "VIRTUAL", "102", D.EMERGENCY),
    ("103", "SPB", "103", D.EMERGENCY),
    ("104", "ORB", "104", D.EMERGENCY),
    ("01", "MSK", "01", D.EMERGENCY),
    ("02", "MSK", "02", D.EMERGENCY),
    ("03", "MSK", "03", D.EMERGENCY),
    ("04", "MSK", "04", D.EMERGENCY),
    ("10", "MSK", "10", D.INTERNAL),
    ("200", "MSK", "200", D.INTERNAL),
    ("2 00", "MSK", "200", D.INTERNAL),
    ("2001", "SPB", "2001", D.INTERNAL),
    ("8123", "MSK", "8123", D.INTERNAL),  # an extension even though it starts with the national prefix
    ("12345", "KAM", "12345", D.INTERNAL),  # extension beats the 5-digit local number of 34361
    ("1234567", "MSK", "1234567", D.INTERNAL),  # extension beats the 7-digit local number of 495
]


@pytest.mark.parametrize(("dialed", "office", "number", "klass"), SHORT)
def test_emergency_and_extensions_stay_as_dialed(dialed: str, office: str, number: str,
                                                 klass: DestinationClass) -> None:
    dest = normalize(dialed, PLANS[office], extensions=EXTENSIONS)
    assert dest == Destination(number=number, klass=klass, dialed=dialed)
    assert dest.e164 is None
    assert dest.is_external is (klass is D.EMERGENCY)


# (dialed, office, reason)
INVALID = [
    ("", "MSK", InvalidReason.EMPTY),
    ("   ", "MSK", InvalidReason.EMPTY),
    ("(-)", "MSK", InvalidReason.EMPTY),
    ("+", "MSK", InvalidReason.EMPTY),
    ("abc", "MSK", InvalidReason.INVALID_CHARACTER),
    ("8495abc4567", "MSK", InvalidReason.INVALID_CHARACTER),
    ("*72", "MSK", InvalidReason.INVALID_CHARACTER),
    ("123#", "MSK", InvalidReason.INVALID_CHARACTER),
    ("tel:+74951234567", "MSK", InvalidReason.INVALID_CHARACTER),
    ("\uff18\uff14\uff19\uff15", "MSK", InvalidReason.INVALID_CHARACTER),  # full-width digits
    ("\u0663\u0663\u0663", "MSK", InvalidReason.INVALID_CHARACTER),  # Arabic-Indic digits
    ("7+4951234567", "MSK", InvalidReason.MISPLACED_PLUS),
    ("++74951234567", "MSK", InvalidReason.MISPLACED_PLUS),
    ("8123", "MSK", InvalidReason.WRONG_LENGTH),  # here only 200 is an extension
    ("8 495 123 45 678", "MSK", InvalidReason.WRONG_LENGTH),
    ("8", "MSK", InvalidReason.WRONG_LENGTH),
    ("+7 495 123 45 6", "MSK", InvalidReason.WRONG_LENGTH),
    ("+7 495 123 45 678", "MSK", InvalidReason.WRONG_LENGTH),
    ("00 7 495 123", "MSK", InvalidReason.WRONG_LENGTH),
    ("+1234567890123456", "MSK", InvalidReason.TOO_LONG),  # 16 digits
    ("8 10 1234567890123456", "MSK", InvalidReason.TOO_LONG),
    ("00 49 1234567890123456", "MSK", InvalidReason.TOO_LONG),
    ("1234567890123456", "MSK", InvalidReason.TOO_LONG),
    ("1" * 65, "MSK", InvalidReason.TOO_LONG),
    ("+123456", "MSK", InvalidReason.TOO_SHORT),
    ("81049", "MSK", InvalidReason.TOO_SHORT),
    ("810", "MSK", InvalidReason.TOO_SHORT),
    ("00", "MSK", InvalidReason.TOO_SHORT),
    ("+0123456789", "MSK", InvalidReason.BAD_COUNTRY_CODE),
    ("00 01234567", "MSK", InvalidReason.BAD_COUNTRY_CODE),
    ("1234", "MSK", InvalidReason.UNKNOWN_FORM),  # 4 digits, not an extension
    ("123456", "MSK", InvalidReason.UNKNOWN_FORM),  # 6 digits in a 7-digit city
    ("12345678", "MSK", InvalidReason.UNKNOWN_FORM),
    ("1234567", "ORB", InvalidReason.UNKNOWN_FORM),  # 7 digits in a 6-digit city
    ("0123456", "MSK", InvalidReason.UNKNOWN_FORM),  # local numbers never start with 0
    ("1234567", "VIRTUAL", InvalidReason.UNKNOWN_FORM),
    ("7495123456", "MSK", InvalidReason.UNKNOWN_FORM),  # 7 + 9 digits
]


@pytest.mark.parametrize(("dialed", "office", "reason"), INVALID)
def test_invalid_input_says_why(dialed: str, office: str, reason: InvalidReason) -> None:
    with pytest.raises(InvalidNumber) as caught:
        normalize(dialed, PLANS[office], extensions=frozenset({"200"}))
    assert caught.value.reason is reason
    assert caught.value.dialed == dialed
    assert str(caught.value) == f"{dialed!r}: {caught.value.detail}"
    assert caught.value.sip_status == 484


@pytest.mark.parametrize(("dialed", "office", "detail"), [
    ("8123", "MSK", "after the national prefix 8 a number of 10 digits is expected, got 3"),
    ("+7 495 123", "MSK", "+7 numbers have 10 digits after the country code, got 6"),
    ("+1234567890123456", "MSK", "16 digits after '+'; E.164 allows at most 15"),
    ("81049", "MSK", "2 digits after the international prefix 810 is shorter than any international number"),
    ("1234", "MSK", "4 digits is not an extension, and local numbers in area 495 have 7 digits"),
    ("0123456", "MSK", "a local number cannot start with 0"),
    ("1234567", "VIRTUAL", "7 digits is not an extension, and this office has no area code for local numbers"),
    ("8 (495) x", "MSK", "'x' is not a digit or a separator"),
    ("12+3", "MSK", "'+' may only start the number"),
])
def test_error_messages_name_the_rule(dialed: str, office: str, detail: str) -> None:
    with pytest.raises(InvalidNumber) as caught:
        normalize(dialed, PLANS[office])
    assert caught.value.detail == detail


def test_extension_predicate_and_default() -> None:
    def is_ext(digits: str) -> bool:
        return len(digits) == 3 and digits.startswith("5")

    assert normalize("555", MSK, extensions=is_ext).klass is D.INTERNAL
    assert normalize("112", MSK, extensions=lambda _: True).klass is D.EMERGENCY
    with pytest.raises(InvalidNumber):
        normalize("555", MSK)  # no extensions given: 3 digits fit no rule
    # a 7-digit number that is not an extension is local
    assert normalize("5551234", MSK, extensions=is_ext).number == "+74955551234"
    # any Set works (dict keys of an extension → employee map)
    assert normalize("2001", MSK, extensions={"2001": "ivanov"}.keys()).klass is D.INTERNAL


def test_classification_details() -> None:
    premium = normalize("88091234567", MSK)
    assert premium.klass is D.PREMIUM and premium.premium_prefix == "+7809" and premium.country_code == "7"
    assert normalize("+7 499 123 45 67", MSK).klass is D.LOCAL
    assert normalize("+7 499 123 45 67", SPB).klass is D.LONG_DISTANCE
    assert normalize("+7 3532 12 34 56", ORB).klass is D.LOCAL
    assert normalize("+7 3532 12 34 56", KAM).klass is D.LONG_DISTANCE
    assert normalize("+7 34361 2 34 56", KAM).klass is D.LOCAL
    assert normalize("+7 495 123 45 67", VIRTUAL).klass is D.LONG_DISTANCE  # no area: nothing is local
    assert [c.value for c in DestinationClass] == [
        "internal", "emergency", "local", "mobile", "long_distance", "international", "premium"]


# A UK office in London (area 20, 10-digit national numbers) and a German one in Berlin (variable lengths)
LONDON = e164_plan("44", area_code="20", national_number_lengths=[10], emergency_numbers=("999", "112"),
                   mobile_prefixes=("+447",), premium_prefixes=("+449",))
BERLIN = e164_plan("49", area_code="30", local_number_lengths=[7, 8], emergency_numbers=("110", "112"),
                   mobile_prefixes=("+4915", "+4916", "+4917"))


@pytest.mark.parametrize(("dialed", "plan", "number", "klass", "cc"), [
    ("020 7946 0018", LONDON, "+442079460018", D.LOCAL, "44"),
    ("7946 0018", LONDON, "+442079460018", D.LOCAL, "44"),
    ("0161 496 0000", LONDON, "+441614960000", D.LONG_DISTANCE, "44"),
    ("07700 900123", LONDON, "+447700900123", D.MOBILE, "44"),
    ("0909 879 0000", LONDON, "+449098790000", D.PREMIUM, "44"),
    ("00 7 495 123 45 67", LONDON, "+74951234567", D.INTERNATIONAL, "7"),
    ("+33 1 23 45 67 89", LONDON, "+33123456789", D.INTERNATIONAL, "33"),
    ("999", LONDON, "999", D.EMERGENCY, None),
    ("030 12345678", BERLIN, "+493012345678", D.LOCAL, "49"),
    ("1234567", BERLIN, "+49301234567", D.LOCAL, "49"),
    ("12345678", BERLIN, "+493012345678", D.LOCAL, "49"),
    ("089 1234567", BERLIN, "+49891234567", D.LONG_DISTANCE, "49"),
    ("0171 1234567", BERLIN, "+491711234567", D.MOBILE, "49"),
    ("0049 30 1234567", BERLIN, "+49301234567", D.LOCAL, "49"),
    ("110", BERLIN, "110", D.EMERGENCY, None),
])
def test_other_countries(dialed: str, plan: DialPlan, number: str, klass: DestinationClass,
                         cc: str | None) -> None:
    dest = normalize(dialed, plan)
    assert (dest.number, dest.klass, dest.country_code) == (number, klass, cc)


@pytest.mark.parametrize(("dialed", "plan", "reason"), [
    ("8 495 123 45 67", LONDON, InvalidReason.UNKNOWN_FORM),  # 8 is no prefix in the UK
    ("020 7946 001", LONDON, InvalidReason.WRONG_LENGTH),
    ("810 49 30 1234567", LONDON, InvalidReason.UNKNOWN_FORM),
    ("44 20 7946 0018", LONDON, InvalidReason.UNKNOWN_FORM),  # the country code without '+' is not accepted
    ("123456", BERLIN, InvalidReason.UNKNOWN_FORM),
    ("0123", BERLIN, InvalidReason.WRONG_LENGTH),
])
def test_other_countries_reject(dialed: str, plan: DialPlan, reason: InvalidReason) -> None:
    with pytest.raises(InvalidNumber) as caught:
        normalize(dialed, plan)
    assert caught.value.reason is reason


def test_plans_derive_local_lengths() -> None:
    assert MSK.local_number_lengths == frozenset({7}) and MSK.local_area_codes == ("495", "499")
    assert SPB.local_number_lengths == frozenset({7})
    assert ORB.local_number_lengths == frozenset({6})
    assert KAM.local_number_lengths == frozenset({5})
    assert VIRTUAL.local_number_lengths == frozenset() and VIRTUAL.local_area_codes == ()
    assert MSK.international_prefixes == ("810", "00") and MSK.national_prefix == "8"
    assert MSK.escape_digits == frozenset({"8", "0"})
    assert LONDON.local_number_lengths == frozenset({8})
    assert BERLIN.national_number_lengths == frozenset(range(5, 14))
    assert e164_plan("44", area_code="20").local_number_lengths == frozenset()  # no length to derive from


@pytest.mark.parametrize("build", [
    lambda: russian_plan("49"),
    lambda: russian_plan("049"),
    lambda: russian_plan("123456"),
    lambda: russian_plan("49a"),
    lambda: e164_plan("0"),
    lambda: e164_plan("4444"),
    lambda: e164_plan("44", international_prefix=""),
    lambda: e164_plan("44", national_prefix="O"),
    lambda: e164_plan("44", local_number_lengths=[7]),  # local numbers but no area code
    lambda: e164_plan("44", national_number_lengths=[14]),  # 2 + 14 > 15
    lambda: e164_plan("44", premium_prefixes=["449"]),  # not an E.164 prefix
    lambda: e164_plan("44", emergency_numbers=["9-9-9"]),
])
def test_bad_plans_are_refused(build: Callable[[], DialPlan]) -> None:
    with pytest.raises(PlanError):
        build()


@pytest.mark.parametrize(("digits", "cc"), [
    ("12125550100", "1"), ("74951234567", "7"), ("442079460018", "44"), ("4930123456", "49"),
    ("201234567890", "20"), ("375171234567", "375"), ("420212345678", "420"), ("8821612345678", "882"),
    ("35312345678", "353"), ("8612345678901", "86"), ("85212345678", "852"), ("9912345678", "991"),
])
def test_country_code_of(digits: str, cc: str) -> None:
    assert country_code_of(digits) == cc


def test_country_code_of_refuses_non_numbers() -> None:
    for bad in ("0441234", "", "44a"):
        with pytest.raises(DialingError):
            country_code_of(bad)


@pytest.mark.parametrize("module", ["__init__", "errors", "countries", "plan", "numbers", "permissions"])
def test_module_is_sans_io(module: str) -> None:
    path = Path(zvonok.dialing.__file__).parent / f"{module}.py"
    tree = ast.parse(path.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert not imported & {"asyncio", "socket", "time", "selectors", "sqlalchemy", "zvonok"}
