"""The access-number dialogue and its brute-force guard, driven by hand with a fake clock: exact actions
and exact deadlines."""

from __future__ import annotations

import ast
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from zvonok.org.pins import hash_pin
from zvonok.pstn.models import EmployeePin
from zvonok.telephony import access, access_number, pin_guard
from zvonok.telephony.access import AccessNumbers, AccessSession
from zvonok.telephony.access_number import (
    AccessNumberDialogue,
    AccessNumberError,
    Action,
    Alarm,
    Blocked,
    Dial,
    DialFailure,
    DialogueConfig,
    DialogueState,
    Hangup,
    HangupReason,
    Play,
    StopPlayback,
    VerifyPin,
    parse_dialed_access,
    split_dialed_access,
)
from zvonok.telephony.pin_guard import PinGuard, PinSource, SourceKind, employee_source, pin_sources

CID = "+79161234567"
EMPLOYEE = 7


def keys(d: AccessNumberDialogue, digits: str, now: float) -> list[Action]:
    for digit in digits:
        d.dtmf(digit, now)
    return d.drain_actions()


def state_of(d: AccessNumberDialogue) -> DialogueState:
    # A call, not an attribute: mypy would keep ``d.state`` narrowed across the method calls that change it.
    return d.state


def started(now: float = 0.0, **kwargs: object) -> AccessNumberDialogue:
    d = AccessNumberDialogue(**kwargs)  # type: ignore[arg-type]
    d.start(now)
    return d


def at_number_stage(now: float = 0.0) -> AccessNumberDialogue:
    """Past a right PIN, the number prompt played to its end at ``now``."""
    d = started(now)
    keys(d, "4829#", now)
    d.pin_result(True, EMPLOYEE, now)
    d.play_finished(now)
    d.drain_actions()
    return d


# Happy path and barge-in -------------------------------------------------------------------------------


def test_happy_path() -> None:
    d = AccessNumberDialogue()
    assert d.state is DialogueState.IDLE and d.get_timer() is None
    d.start(0.0)
    assert d.drain_actions() == [Play(prompt="enter_pin")]
    assert d.get_timer() == 10.0
    d.play_finished(2.5)  # the first-digit timeout restarts when the prompt has been heard
    assert d.drain_actions() == []
    assert d.get_timer() == 12.5
    assert keys(d, "1014321", 4.0) == []
    assert d.get_timer() == 9.0  # inter-digit
    assert keys(d, "#", 4.5) == [VerifyPin(pin="1014321")]
    assert state_of(d) is DialogueState.VERIFYING and d.get_timer() == 14.5
    d.pin_result(True, EMPLOYEE, 4.7)
    assert d.drain_actions() == [Play(prompt="enter_number")]
    assert state_of(d) is DialogueState.NUMBER and d.get_timer() == 14.7
    d.play_finished(7.0)
    assert d.get_timer() == 17.0
    assert keys(d, "84951234567", 8.0) == []
    assert keys(d, "#", 9.0) == [Play(prompt="connecting"), Dial(destination="84951234567", employee_ref=EMPLOYEE)]
    assert state_of(d) is DialogueState.DIALING and d.get_timer() is None
    assert d.employee_ref == EMPLOYEE and d.pin_attempts == 0 and d.dial_attempts == 1


def test_next_action_drains_one_at_a_time() -> None:
    d = started()
    d.dtmf("4", 1.0)
    assert d.next_action() == Play(prompt="enter_pin")
    assert d.next_action() == StopPlayback()
    assert d.next_action() is None


def test_first_key_during_a_prompt_stops_it_once() -> None:
    d = started()
    d.drain_actions()
    assert keys(d, "4", 1.0) == [StopPlayback()]
    assert keys(d, "829", 1.5) == []
    assert d.get_timer() == 6.5
    # A stale play_finished after the stop changes nothing while digits are in the entry.
    d.play_finished(1.6)
    assert d.get_timer() == 6.5
    assert keys(d, "#", 2.0) == [VerifyPin(pin="4829")]


def test_barge_in_over_wrong_pin_and_reprompt_queue() -> None:
    d = started()
    keys(d, "1111#", 1.0)
    d.pin_result(False, None, 1.2)
    assert d.drain_actions() == [Play(prompt="wrong_pin"), Play(prompt="enter_pin")]
    assert keys(d, "4829#", 1.5) == [StopPlayback(), VerifyPin(pin="4829")]  # one stop drops both


def test_no_barge_in_after_the_prompt_ended() -> None:
    d = started()
    d.drain_actions()
    d.play_finished(2.0)
    assert keys(d, "4829#", 3.0) == [VerifyPin(pin="4829")]


# PIN skip, whole string, dialed form ---------------------------------------------------------------------


def test_registered_caller_id_skips_the_pin() -> None:
    d = started(skip_pin_for=42)
    assert d.drain_actions() == [Play(prompt="enter_number")]
    assert d.state is DialogueState.NUMBER and d.employee_ref == 42
    assert keys(d, "0079161234567#", 1.0) == [
        StopPlayback(), Play(prompt="connecting"), Dial(destination="0079161234567", employee_ref=42),
    ]


def test_whole_string_right_after_answer() -> None:
    d = started()
    assert keys(d, "1014321#84951234567#", 0.3) == [
        Play(prompt="enter_pin"), StopPlayback(), VerifyPin(pin="1014321"),
    ]
    d.pin_result(True, EMPLOYEE, 0.5)
    # Typed ahead: no number prompt, straight to the call.
    assert d.drain_actions() == [Play(prompt="connecting"), Dial(destination="84951234567", employee_ref=EMPLOYEE)]


def test_partial_typeahead_is_kept_without_a_prompt() -> None:
    d = started()
    keys(d, "4829#849", 0.3)
    d.pin_result(True, EMPLOYEE, 0.5)
    assert d.drain_actions() == []
    assert d.get_timer() == 5.5  # inter-digit: the caller is in the middle of the number
    assert keys(d, "5#", 1.0) == [Play(prompt="connecting"), Dial(destination="8495", employee_ref=EMPLOYEE)]


def test_typeahead_of_only_a_clear_still_prompts() -> None:
    d = started()
    keys(d, "4829#*", 0.3)
    d.pin_result(True, EMPLOYEE, 0.5)
    assert d.drain_actions() == [Play(prompt="enter_number")]


def test_typeahead_after_a_wrong_pin_is_never_dialed() -> None:
    d = started()
    keys(d, "1111#84951234567#", 0.3)
    d.pin_result(False, None, 0.5)
    assert d.drain_actions() == [Play(prompt="wrong_pin"), Play(prompt="enter_pin")]
    assert d.state is DialogueState.PIN
    assert keys(d, "#", 1.0) == [StopPlayback()]  # the entry is empty: '#' alone submits nothing
    assert d.state is DialogueState.PIN


def test_dialed_form_verifies_without_prompting() -> None:
    dialed = parse_dialed_access("74951230000*1014321*84951234567")
    d = started(dialed=dialed)
    assert d.drain_actions() == [VerifyPin(pin="1014321")]
    d.pin_result(True, EMPLOYEE, 0.2)
    assert d.drain_actions() == [Play(prompt="connecting"), Dial(destination="84951234567", employee_ref=EMPLOYEE)]


def test_dialed_form_with_a_wrong_pin_falls_back_to_the_keypad() -> None:
    d = started(dialed=("1111", "84951234567"))
    d.drain_actions()
    d.pin_result(False, None, 0.2)
    assert d.drain_actions() == [Play(prompt="wrong_pin"), Play(prompt="enter_pin")]
    assert d.pin_attempts == 1


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("74951230000*1014321*84951234567", ("74951230000", "1014321", "84951234567")),
        ("+74951230000*4829*+74951234567", ("+74951230000", "4829", "+74951234567")),
        ("74951230000*4829*84951234567;phone-context=example.com", ("74951230000", "4829", "84951234567")),
        ("101*4829*2", ("101", "4829", "2")),
        ("74951230000", None),  # the plain access number: the interactive dialogue
        ("74951230000*4829", None),
        ("74951230000**84951234567", None),
        ("74951230000*4829*", None),
        ("*4829*84951234567", None),
        ("7495*12*34*56", None),
        ("7495*48#29*8495", None),
        ("7495*4829*8495#", None),
        ("7495%2A4829%2A8495", None),  # callers pass the *unescaped* user part
        ("alice*4829*8495", None),
        ("7495*4829*" + "1" * 25, None),  # longer than any dialable number
        ("", None),
    ],
)
def test_dialed_form_parsing(user: str, expected: tuple[str, str, str] | None) -> None:
    assert split_dialed_access(user) == expected
    assert parse_dialed_access(user) == (None if expected is None else expected[1:])


# Wrong PINs and the guard --------------------------------------------------------------------------------


def test_three_wrong_pins_end_the_call() -> None:
    d = started()
    d.drain_actions()
    for attempt in (1, 2):
        keys(d, "1111#", float(attempt))
        d.pin_result(False, None, attempt + 0.1)
        assert d.drain_actions() == [Play(prompt="wrong_pin"), Play(prompt="enter_pin")]
        assert d.pin_attempts == attempt and d.state is DialogueState.PIN
        assert d.get_timer() == attempt + 10.1
    keys(d, "2222#", 3.0)
    d.pin_result(False, None, 3.1)
    assert d.drain_actions() == [Play(prompt="blocked")]
    assert d.state is DialogueState.CLOSING and d.get_timer() == 13.1
    assert keys(d, "4829#", 3.5) == []  # nothing more is listened to
    d.play_finished(5.0)
    assert d.drain_actions() == [Hangup(reason=HangupReason.TOO_MANY_ATTEMPTS)]
    assert state_of(d) is DialogueState.CLOSED and d.get_timer() is None


def test_closing_hangs_up_at_the_timeout_without_play_finished() -> None:
    d = started()
    keys(d, "1#", 1.0)
    d.pin_result(False, None, 1.0)
    keys(d, "2#", 2.0)
    d.pin_result(False, None, 2.0)
    keys(d, "3#", 3.0)
    d.pin_result(False, None, 3.0)
    d.drain_actions()
    d.timer(12.99)
    assert d.drain_actions() == []
    d.timer(13.0)
    assert d.drain_actions() == [Hangup(reason=HangupReason.TOO_MANY_ATTEMPTS)]


def test_guard_blocks_the_caller_id_and_reports_it_once() -> None:
    guard = PinGuard(max_failures=2, window=600.0, ban_time=900.0)
    d = started(guard=guard, caller_id=CID)
    keys(d, "1111#", 1.0)
    d.pin_result(False, None, 1.0)
    assert d.drain_actions()[-2:] == [Play(prompt="wrong_pin"), Play(prompt="enter_pin")]
    assert keys(d, "2222#", 2.0) == [StopPlayback(), VerifyPin(pin="2222")]
    d.pin_result(False, None, 2.0)
    source = PinSource(kind=SourceKind.CALLER_ID, value=CID)
    assert d.drain_actions() == [Blocked(source=source), Play(prompt="blocked")]
    assert d.hangup_reason is HangupReason.BLOCKED
    # The next call from that number is hung up at once, without a new alert.
    again = started(100.0, guard=guard, caller_id=CID)
    assert again.drain_actions() == [Hangup(reason=HangupReason.BLOCKED)]
    assert again.state is DialogueState.CLOSED
    # Other callers are unaffected; the ban ends after ban_time.
    assert started(100.0, guard=guard, caller_id="+79990000000").drain_actions() == [Play(prompt="enter_pin")]
    assert started(901.99, guard=guard, caller_id=CID).drain_actions() == [Hangup(reason=HangupReason.BLOCKED)]
    assert started(902.0, guard=guard, caller_id=CID).drain_actions() == [Play(prompt="enter_pin")]


def test_one_failure_can_block_caller_id_and_address_together() -> None:
    guard = PinGuard(max_failures=1, address_max_failures=1)
    d = started(guard=guard, caller_id=CID, source_address="192.0.2.10")
    keys(d, "1111#", 1.0)
    d.pin_result(False, None, 1.0)
    assert d.drain_actions()[-3:] == [
        Blocked(source=PinSource(kind=SourceKind.CALLER_ID, value=CID)),
        Blocked(source=PinSource(kind=SourceKind.ADDRESS, value="192.0.2.10")),
        Play(prompt="blocked"),
    ]
    # Another caller ID from the same address is blocked too.
    other = started(2.0, guard=guard, caller_id="+79990000000", source_address="192.0.2.10")
    assert other.drain_actions() == [Hangup(reason=HangupReason.BLOCKED)]


def test_a_ban_from_a_parallel_call_stops_guessing_in_this_one() -> None:
    guard = PinGuard(max_failures=1)
    slow = started(guard=guard, caller_id=CID)
    keys(slow, "48", 1.0)
    fast = started(guard=guard, caller_id=CID)
    keys(fast, "1111#", 1.0)
    fast.pin_result(False, None, 1.0)
    slow.drain_actions()
    assert keys(slow, "29#", 2.0) == [Play(prompt="blocked")]  # no VerifyPin under a ban
    assert slow.hangup_reason is HangupReason.BLOCKED


def test_a_right_pin_does_not_forgive_earlier_failures() -> None:
    guard = PinGuard(max_failures=2)
    d = started(guard=guard, caller_id=CID)
    keys(d, "1111#", 1.0)
    d.pin_result(False, None, 1.0)
    keys(d, "4829#", 2.0)
    d.pin_result(True, EMPLOYEE, 2.0)
    assert d.state is DialogueState.NUMBER
    d2 = started(10.0, guard=guard, caller_id=CID)
    keys(d2, "2222#", 11.0)
    d2.pin_result(False, None, 11.0)
    assert Blocked(source=PinSource(kind=SourceKind.CALLER_ID, value=CID)) in d2.drain_actions()


# Timeouts ------------------------------------------------------------------------------------------------


def test_first_digit_timeout_reprompts_once_then_says_goodbye() -> None:
    d = started()
    d.drain_actions()
    d.timer(9.99)
    assert d.drain_actions() == [] and d.get_timer() == 10.0
    d.timer(10.0)
    assert d.drain_actions() == [Play(prompt="enter_pin")]
    assert d.get_timer() == 20.0
    d.timer(20.5)  # late timer calls are fine
    assert d.drain_actions() == [Play(prompt="goodbye")]
    assert d.state is DialogueState.CLOSING and d.get_timer() == 30.5
    d.play_finished(21.0)
    assert d.drain_actions() == [Hangup(reason=HangupReason.TIMEOUT)]


def test_inter_digit_timeout_clears_the_entry_and_reprompts() -> None:
    d = started()
    d.play_finished(2.0)
    d.drain_actions()
    keys(d, "48", 3.0)
    assert d.get_timer() == 8.0
    d.timer(8.0)
    assert d.drain_actions() == [Play(prompt="enter_pin")]
    assert keys(d, "4829#", 9.0) == [StopPlayback(), VerifyPin(pin="4829")]  # not "484829"


def test_reprompt_allowance_is_per_stage() -> None:
    d = started()
    d.drain_actions()
    d.timer(10.0)  # the PIN stage's reprompt
    keys(d, "4829#", 11.0)
    d.pin_result(True, EMPLOYEE, 11.0)
    d.drain_actions()
    d.timer(21.0)
    assert d.drain_actions() == [Play(prompt="enter_number")]  # the number stage has its own
    d.timer(31.0)
    assert d.drain_actions() == [Play(prompt="goodbye")]


def test_verify_timeout_and_a_late_result() -> None:
    d = started()
    keys(d, "4829#", 1.0)
    assert d.get_timer() == 11.0
    d.timer(11.0)
    assert d.drain_actions() == [Play(prompt="goodbye")]
    assert d.hangup_reason is HangupReason.VERIFY_TIMEOUT
    d.pin_result(True, EMPLOYEE, 12.0)  # dropped: the dialogue gave up on it
    assert d.drain_actions() == [] and d.state is DialogueState.CLOSING
    d.play_finished(12.5)
    assert d.drain_actions() == [Hangup(reason=HangupReason.VERIFY_TIMEOUT)]


def test_custom_timeouts() -> None:
    config = DialogueConfig(first_digit_timeout=7.0, inter_digit_timeout=2.0, verify_timeout=3.0)
    d = started(config=config)
    assert d.get_timer() == 7.0
    keys(d, "4", 1.0)
    assert d.get_timer() == 3.0
    keys(d, "829#", 1.0)
    assert d.get_timer() == 4.0


# Editing keys --------------------------------------------------------------------------------------------


def test_star_clears_the_pin_entry() -> None:
    d = started()
    d.drain_actions()
    assert keys(d, "12*", 1.0) == [StopPlayback()]
    assert d.get_timer() == 11.0  # empty again: the first-digit timeout applies
    assert keys(d, "4829#", 2.0) == [VerifyPin(pin="4829")]


def test_star_clears_the_number_entry() -> None:
    d = at_number_stage()
    assert keys(d, "849*8495#", 1.0) == [Play(prompt="connecting"), Dial(destination="8495", employee_ref=EMPLOYEE)]


def test_a_lone_hash_submits_nothing() -> None:
    d = at_number_stage()
    assert keys(d, "#", 1.0) == []
    assert d.state is DialogueState.NUMBER and d.get_timer() == 11.0


def test_letter_keys_are_ignored_and_others_refused() -> None:
    d = at_number_stage()
    assert keys(d, "8A4B9C5D#", 1.0) == [Play(prompt="connecting"), Dial(destination="8495", employee_ref=EMPLOYEE)]
    with pytest.raises(ValueError):
        d.dtmf("x", 1.0)
    with pytest.raises(ValueError):
        d.dtmf("12", 1.0)


def test_entry_is_bounded() -> None:
    d = at_number_stage()
    actions = keys(d, "1" * 40 + "#", 1.0)
    assert actions[-1] == Dial(destination="1" * 32, employee_ref=EMPLOYEE)


def test_keys_after_dial_are_ignored() -> None:
    d = at_number_stage()
    keys(d, "8495#", 1.0)
    assert keys(d, "123#", 2.0) == []
    assert d.state is DialogueState.DIALING


# Dial failures -------------------------------------------------------------------------------------------


def test_a_refused_number_lets_the_caller_try_another() -> None:
    d = at_number_stage()
    keys(d, "810441234567#", 1.0)
    d.dial_failed(DialFailure.NOT_ALLOWED, 1.5)
    assert d.drain_actions() == [Play(prompt="not_allowed"), Play(prompt="enter_number")]
    assert d.state is DialogueState.NUMBER and d.get_timer() == 11.5
    keys(d, "84950000000#", 2.0)
    d.dial_failed(DialFailure.UNAVAILABLE, 2.5)
    assert d.drain_actions() == [Play(prompt="number_unavailable"), Play(prompt="enter_number")]
    keys(d, "84951111111#", 3.0)
    d.dial_failed(DialFailure.UNAVAILABLE, 3.5)  # the third: give up
    assert d.drain_actions() == [Play(prompt="number_unavailable"), Play(prompt="goodbye")]
    d.play_finished(6.0)
    assert d.drain_actions() == [Hangup(reason=HangupReason.DIAL_FAILED)]
    assert d.dial_attempts == 3


def test_spending_limit_ends_the_call() -> None:
    d = at_number_stage()
    keys(d, "8495#", 1.0)
    d.dial_failed(DialFailure.LIMIT_REACHED, 1.5)
    assert d.drain_actions() == [Play(prompt="limit_reached")]
    d.play_finished(4.0)
    assert d.drain_actions() == [Hangup(reason=HangupReason.LIMIT_REACHED)]


# Misuse --------------------------------------------------------------------------------------------------


def test_engine_misuse_is_reported() -> None:
    d = AccessNumberDialogue()
    with pytest.raises(AccessNumberError):
        d.dtmf("1", 0.0)
    d.start(0.0)
    with pytest.raises(AccessNumberError):
        d.start(0.0)
    with pytest.raises(AccessNumberError):
        d.pin_result(True, EMPLOYEE, 0.0)
    with pytest.raises(AccessNumberError):
        d.dial_failed(DialFailure.UNAVAILABLE, 0.0)
    keys(d, "4829#", 1.0)
    with pytest.raises(ValueError):
        d.pin_result(True, None, 1.0)


# The guard on its own ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller_id", "address", "expected"),
    [
        (CID, None, [("caller_id", CID)]),
        (None, None, [("caller_id", "anonymous")]),
        ("", "192.0.2.1", [("caller_id", "anonymous"), ("address", "192.0.2.1")]),
        ("Anonymous", None, [("caller_id", "anonymous")]),
        (" restricted ", None, [("caller_id", "anonymous")]),
        (CID, "2001:db8:1:2:3:4:5:6", [("caller_id", CID), ("address", "2001:db8:1:2::/64")]),
        (CID, "[2001:db8::1]", [("caller_id", CID), ("address", "2001:db8::/64")]),
        (CID, "::ffff:192.0.2.7", [("caller_id", CID), ("address", "192.0.2.7")]),
        (CID, "pbx.example.com", [("caller_id", CID), ("address", "pbx.example.com")]),
    ],
)
def test_pin_sources(caller_id: str | None, address: str | None, expected: list[tuple[str, str]]) -> None:
    assert [(s.kind.value, s.value) for s in pin_sources(caller_id, address)] == expected


def test_guard_counts_n_failures_in_the_window() -> None:
    guard = PinGuard(max_failures=3, window=60.0, ban_time=300.0)
    sources = pin_sources(CID)
    assert guard.record_failure(sources, 0.0) == ()
    assert guard.record_failure(sources, 10.0) == ()
    assert not guard.is_blocked(sources, 10.0)
    # The failure at 0 is out of the (half-open) window at 60: still two inside.
    assert guard.record_failure(sources, 60.0) == ()
    assert guard.record_failure(sources, 61.0) == sources
    assert guard.blocked_source(sources, 61.0) == sources[0]
    assert guard.record_failure(sources, 62.0) == ()  # already blocked: no second report
    assert guard.banned_sources == 1
    assert guard.is_blocked(sources, 360.99)
    assert not guard.is_blocked(sources, 361.0)
    assert guard.banned_sources == 0  # pruned once expired


def test_guard_limits_per_kind() -> None:
    guard = PinGuard(max_failures=5, address_max_failures=2)
    a = pin_sources("+79990000001", "198.51.100.1")
    b = pin_sources("+79990000002", "198.51.100.1")
    assert guard.record_failure(a, 0.0) == ()
    assert guard.record_failure(b, 1.0) == (PinSource(kind=SourceKind.ADDRESS, value="198.51.100.1"),)
    assert guard.blocked_source(a, 1.0) == PinSource(kind=SourceKind.ADDRESS, value="198.51.100.1")
    assert not guard.is_blocked(pin_sources("+79990000001"), 1.0)  # the caller ID alone is not blocked


def test_rotating_caller_ids_still_block_the_targeted_employee() -> None:
    # issue 8: through a carrier the caller ID is the attacker's choice, rotated at every call
    guard = PinGuard(max_failures=5, employee_max_failures=3)
    target = employee_source(EMPLOYEE)
    reports: list[Action] = []
    for i in range(3):
        d = started(float(i), guard=guard, caller_id=f"+7999000000{i}")
        keys(d, "0071111#", float(i))
        d.pin_result(False, None, float(i), targets=[EMPLOYEE])
        reports += [a for a in d.drain_actions() if isinstance(a, Blocked)]
        assert d.state is DialogueState.PIN  # the caller itself is not blocked: it may try another
    assert reports == [Blocked(source=target)]
    assert guard.is_blocked((target,), 3.0)
    assert not guard.is_blocked(pin_sources("+79990000000"), 3.0)
    assert not guard.is_blocked((employee_source(EMPLOYEE + 1),), 3.0)


def test_wrong_pins_from_everyone_raise_the_alarm_once_a_window() -> None:
    guard = PinGuard(max_failures=5, alarm_failures=3, window=60.0)
    alarms: list[float] = []
    for i in range(8):
        now = i * 20.0
        d = started(now, guard=guard, caller_id=f"+7999100000{i}")  # a new caller every time: no ban
        keys(d, "1111#", now)
        d.pin_result(False, None, now)
        alarms += [now for a in d.drain_actions() if isinstance(a, Alarm)]
    # 3 failures within 60 s at 40; quiet for a window, then counting again: 3 more by 160 (100, 120, 140)
    assert alarms == [40.0, 140.0]
    assert guard.banned_sources == 0  # the alarm blocks nobody


def test_guard_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        PinGuard(max_failures=0)
    with pytest.raises(ValueError):
        PinGuard(address_max_failures=0)
    with pytest.raises(ValueError):
        PinGuard(employee_max_failures=0)


@pytest.mark.parametrize("module", [access_number, pin_guard])
def test_module_is_sans_io(module: object) -> None:
    tree = ast.parse(Path(module.__file__).read_text())  # type: ignore[attr-defined]
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert not imported & {"asyncio", "socket", "time", "selectors", "uvloop"}


# --- the engine's PIN check (telephony/access.py) with a fake directory and database -----------------


class _PinDb:
    """The reads ``AccessNumbers.verify`` makes: the tenant's extension lengths, EmployeePin and Employee rows."""

    def __init__(self, pins: dict[int, str]) -> None:
        self.pins = {employee: EmployeePin(employee_id=employee, tenant_id=1, pin_hash=hash_pin(pin))
                     for employee, pin in pins.items()}
        self.pin_reads: list[int] = []

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[_PinDb]:
        yield self

    async def execute(self, _query: object) -> list[tuple[int]]:
        return [(3,)]

    async def get(self, model: type, key: int) -> object:
        if model is EmployeePin:
            self.pin_reads.append(key)
            return self.pins.get(key)
        return None


class _PinDirectory:
    def __init__(self, db: _PinDb, extensions: dict[str, int]) -> None:
        self.db = db
        self.extensions = extensions

    async def extension(self, _tenant_id: int, number: str) -> object:
        employee = self.extensions.get(number)
        return SimpleNamespace(employee_id=employee) if employee is not None else None


class _PinEngine:
    """What the access-number application reads of the engine to check a PIN."""

    def __init__(self, guard: PinGuard, directory: _PinDirectory) -> None:
        self.pin_guard = guard
        self.directory = directory
        self.clock = time.monotonic


async def _enter_pin(engine: _PinEngine, caller_id: str, entry: str) -> AccessNumberDialogue:
    d = started(0.0, guard=engine.pin_guard, caller_id=caller_id)
    keys(d, entry + "#", 0.0)
    call = SimpleNamespace(id="c", tenant_id=1, ended=False, caller=None,
                           access=AccessSession(dialogue=d, language="ru"))
    await AccessNumbers(engine).verify(call, entry)  # type: ignore[arg-type]
    return d


async def test_the_engine_counts_wrong_pins_against_the_employee_and_refuses_a_locked_ones_right_pin(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 8 review: the wiring in the engine had no test: the employees a wrong PIN was checked against
    # (targets) must reach the guard, and a locked employee's right PIN must be refused after the same work
    db = _PinDb({EMPLOYEE: "4321", EMPLOYEE + 1: "8765"})
    engine = _PinEngine(PinGuard(max_failures=5, employee_max_failures=2), _PinDirectory(db, {"101": EMPLOYEE,
                                                                                              "102": EMPLOYEE + 1}))
    verified: list[str | None] = []
    real_verify = access.verify_pin_in_thread

    async def counting(pin: str, hashed: str | None) -> bool:
        verified.append(hashed)
        return await real_verify(pin, hashed)

    monkeypatch.setattr(access, "verify_pin_in_thread", counting)
    for i in range(2):  # two callers, each under its own limit, both aiming at 101
        assert (await _enter_pin(engine, f"+7999000000{i}", "1010000")).employee_ref is None
    assert engine.pin_guard.is_blocked((employee_source(EMPLOYEE),), time.monotonic())
    db.pin_reads.clear()
    verified.clear()
    locked = await _enter_pin(engine, "+79990000009", "1014321")  # the right PIN, from a new caller
    assert locked.employee_ref is None and state_of(locked) is DialogueState.PIN
    assert db.pin_reads == [EMPLOYEE]  # the same read and hash as an unlocked employee's
    assert verified == [db.pins[EMPLOYEE].pin_hash]
    other = await _enter_pin(engine, "+79990000009", "1028765")  # another employee is not locked
    assert other.employee_ref == EMPLOYEE + 1
