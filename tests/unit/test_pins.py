"""Employee PINs: the choice rules, argon2 hashing and verification, and reading an entered string."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zvonok.org.pins import (
    MAX_CANDIDATES,
    PinEntry,
    PinProblem,
    hash_pin,
    hash_pin_in_thread,
    pin_entry_candidates,
    pin_problem,
    valid_pin,
    verify_pin,
    verify_pin_in_thread,
)


@pytest.mark.parametrize(
    ("pin", "problem"),
    [
        ("4829", None),
        ("1357", None),
        ("90210", None),
        ("58204719", None),
        ("0000", PinProblem.REPEATED),
        ("1111", PinProblem.REPEATED),
        ("99999999", PinProblem.REPEATED),
        ("1212", PinProblem.REPEATED),
        ("12121", PinProblem.REPEATED),
        ("123123", PinProblem.REPEATED),
        ("12341234", PinProblem.REPEATED),
        ("1234", PinProblem.SEQUENCE),
        ("4321", PinProblem.SEQUENCE),
        ("0123456", PinProblem.SEQUENCE),
        ("7890", PinProblem.SEQUENCE),  # runs wrap 9 -> 0 like the keypad's bottom row
        ("8901", PinProblem.SEQUENCE),
        ("2109", PinProblem.SEQUENCE),
        ("", PinProblem.FORMAT),
        ("482", PinProblem.FORMAT),
        ("482917365", PinProblem.FORMAT),
        ("48a9", PinProblem.FORMAT),
        ("48 29", PinProblem.FORMAT),
        ("\u0664\u0668\u0662\u0669", PinProblem.FORMAT),  # Arabic-Indic digits: isdigit() but not ASCII
        ("4829#", PinProblem.FORMAT),
    ],
)
def test_pin_rules(pin: str, problem: PinProblem | None) -> None:
    assert pin_problem(pin) is problem
    assert valid_pin(pin) is (problem is None)


@pytest.mark.parametrize(
    ("pin", "avoid", "problem"),
    [
        ("5309", ["+7 (916) 867-5309"], PinProblem.PERSONAL),  # the end of the employee's mobile
        ("5309", ["5309"], PinProblem.PERSONAL),  # a four-digit extension
        ("675309", ["101", "+7 916 867-53-09"], PinProblem.PERSONAL),
        ("5309", ["101"], None),
        ("5309", ["309"], None),  # shorter than the PIN: not its end
        ("5308", ["+7 916 867-5309"], None),
    ],
)
def test_pin_must_not_be_the_callers_own_number(pin: str, avoid: list[str], problem: PinProblem | None) -> None:
    assert pin_problem(pin, avoid=avoid) is problem
    assert valid_pin(pin, avoid=avoid) is (problem is None)


def test_hash_and_verify() -> None:
    hashed = hash_pin("4829")
    assert hashed.startswith("$argon2id$")
    assert "4829" not in hashed
    assert verify_pin("4829", hashed)
    assert not verify_pin("4828", hashed)
    assert not verify_pin("04829", hashed)
    assert hash_pin("4829") != hashed  # salted


def test_a_fresh_process_hashes_at_the_production_cost() -> None:
    # The suite runs on a cheap argon2 (tests/conftest.py); the product must not: a process that never
    # loaded the test setup hashes with at least pwdlib's recommended cost (m=64 MiB, t=3, p=4).
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    code = "from zvonok.org.pins import hash_pin; print(hash_pin('4829'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                         check=True).stdout
    found = re.fullmatch(r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$\S+\n", out)
    assert found is not None, out
    memory, time_cost, lanes = map(int, found.groups())
    assert memory >= 65536 and time_cost >= 3 and lanes >= 4, out


def test_the_dummy_hash_has_the_production_cost() -> None:
    # verify_pin(..., None) checks against it: an unknown extension must cost what a known one does
    from pwdlib import PasswordHash

    from zvonok.org import credentials

    assert not PasswordHash.recommended().hashers[0].check_needs_rehash(credentials._PRODUCTION_DUMMY_HASH)


def test_verify_without_a_hash_or_with_garbage_fails() -> None:
    assert verify_pin("4829", None) is False
    hashed = hash_pin("4829")
    assert verify_pin("48", hashed) is False  # malformed entries never match, even a prefix
    assert verify_pin("", hashed) is False


@pytest.mark.parametrize("pin", ["", "123", "123456789", "12ab", "\u0664\u0668\u0662\u0669"])
def test_hash_pin_refuses_malformed(pin: str) -> None:
    with pytest.raises(ValueError):
        hash_pin(pin)


def test_hash_pin_accepts_trivial_pins_the_service_must_refuse() -> None:
    # The choice rules are the service's business: hashing only needs the format.
    assert verify_pin("1234", hash_pin("1234"))


def test_pepper_is_needed_to_verify() -> None:
    pepper = b"k" * 32
    peppered = hash_pin("4829", pepper=pepper)
    assert verify_pin("4829", peppered, pepper=pepper)
    assert not verify_pin("4829", peppered)
    assert not verify_pin("4829", peppered, pepper=b"x" * 32)
    assert not verify_pin("4829", hash_pin("4829"), pepper=pepper)


async def test_thread_variants() -> None:
    hashed = await hash_pin_in_thread("4829")
    assert await verify_pin_in_thread("4829", hashed)
    assert not await verify_pin_in_thread("4830", hashed)
    assert not await verify_pin_in_thread("4829", None)


@pytest.mark.parametrize(
    ("entry", "lengths", "caller_known", "expected"),
    [
        ("1014321", [3], False, [("101", "4321")]),
        ("1014321", [3], True, [(None, "1014321"), ("101", "4321")]),
        ("4321", [3], True, [(None, "4321")]),
        ("4321", [3], False, []),  # bare PIN from an unknown caller ID: nobody to check it against
        ("10143210", [4, 3, 3], False, [("101", "43210"), ("1014", "3210")]),
        ("1014321", [0, 3], False, [("101", "4321")]),  # a zero length is no extension
        ("101432", [3], False, []),  # 3 digits left: too short for a PIN
        ("101123456789", [3], False, []),  # 9 left: too long
        ("", [3], True, []),
        ("10a4321", [3], True, []),
        ("123456789012", [1, 2, 3, 4, 5], True, [("1234", "56789012"), ("12345", "6789012")]),
    ],
)
def test_pin_entry_candidates(
    entry: str, lengths: list[int], caller_known: bool, expected: list[tuple[str | None, str]]
) -> None:
    got = pin_entry_candidates(entry, extension_lengths=lengths, caller_known=caller_known)
    assert got == tuple(PinEntry(extension=e, pin=p) for e, p in expected)


def test_candidates_are_capped() -> None:
    got = pin_entry_candidates("123456789", extension_lengths=[1, 2, 3, 4, 5], caller_known=False)
    assert len(got) == MAX_CANDIDATES
    assert [c.extension for c in got] == ["1", "12", "123", "1234"]  # the 5-digit split is dropped
