"""The conference PIN dialogue (sans-I/O): exact actions and deadlines with a hand-stepped clock."""

from __future__ import annotations

import pytest

from zvonok.telephony.conference_dialogue import (
    ConferenceDialogue,
    ConferenceDialogueError,
    DialogueConfig,
    Hangup,
    Join,
    PinRole,
    Play,
    State,
    StopPlayback,
    VerifyPin,
)

CONFIG = DialogueConfig(first_digit_timeout=10.0, inter_digit_timeout=5.0, verify_timeout=8.0, closing_timeout=6.0,
                        max_pin_attempts=2)


def drain(d: ConferenceDialogue) -> list[object]:
    out = []
    while (action := d.next_action()) is not None:
        out.append(action)
    return out


def keys(d: ConferenceDialogue, digits: str, now: float) -> list[object]:
    for digit in digits:
        d.dtmf(digit, now)
    return drain(d)


def test_open_room_joins_at_once() -> None:
    d = ConferenceDialogue(member_pin=False, moderator_pin=False, config=CONFIG)
    d.start(0.0)
    assert drain(d) == [Join(moderator=False)]
    assert d.state is State.JOINED and d.get_timer() is None
    assert keys(d, "123#", 1.0) == []  # keys in the room are not the dialogue's


def test_pin_entry_barge_in_and_member_join() -> None:
    d = ConferenceDialogue(member_pin=True, moderator_pin=True, config=CONFIG)
    d.start(100.0)
    assert drain(d) == [Play(prompt="enter_pin")] and d.get_timer() == 110.0
    assert keys(d, "47", 101.0) == [StopPlayback()]
    assert d.get_timer() == 106.0
    assert keys(d, "*", 102.0) == [] and d.get_timer() == 112.0  # cleared
    assert keys(d, "4711#", 103.0) == [VerifyPin(pin="4711")]
    assert d.state is State.VERIFYING and d.get_timer() == 111.0
    assert keys(d, "9", 104.0) == []  # ignored while verifying
    d.pin_result(PinRole.MEMBER, 104.5)
    assert drain(d) == [Join(moderator=False)] and d.get_timer() is None


def test_moderator_pin_joins_as_moderator() -> None:
    d = ConferenceDialogue(member_pin=True, moderator_pin=True, config=CONFIG)
    d.start(0.0)
    drain(d)
    d.play_finished(3.0)
    assert d.get_timer() == 13.0  # the first-digit timeout counts from the prompt's end
    assert keys(d, "9020#", 4.0) == [VerifyPin(pin="9020")]
    d.pin_result(PinRole.MODERATOR, 4.2)
    assert drain(d) == [Join(moderator=True)] and d.moderator


def test_wrong_pins_then_goodbye_and_hangup() -> None:
    d = ConferenceDialogue(member_pin=True, moderator_pin=False, config=CONFIG)
    d.start(0.0)
    drain(d)
    keys(d, "1111#", 1.0)
    d.pin_result(None, 1.5)
    assert drain(d) == [Play(prompt="wrong_pin"), Play(prompt="enter_pin")] and d.get_timer() == 11.5
    keys(d, "2222#", 2.0)
    d.pin_result(None, 2.5)
    assert drain(d) == [Play(prompt="wrong_pin"), Play(prompt="goodbye")]
    assert d.state is State.CLOSING and d.get_timer() == 8.5
    d.play_finished(4.0)
    assert drain(d) == [Hangup(reason="wrong_pin")] and d.state is State.CLOSED


def test_timeouts_reprompt_then_goodbye_closing_timeout_hangs_up() -> None:
    d = ConferenceDialogue(member_pin=True, moderator_pin=False, config=CONFIG)
    d.start(0.0)
    drain(d)
    d.timer(9.9)
    assert drain(d) == []  # early: nothing
    d.timer(10.0)
    assert drain(d) == [Play(prompt="enter_pin")] and d.get_timer() == 20.0
    d.timer(20.0)
    assert drain(d) == [Play(prompt="goodbye")] and d.get_timer() == 26.0
    d.timer(26.0)  # play_finished never came
    assert drain(d) == [Hangup(reason="timeout")]


def test_only_a_moderator_pin_members_enter_with_hash_or_after_the_reprompt() -> None:
    d = ConferenceDialogue(member_pin=False, moderator_pin=True, config=CONFIG)
    d.start(0.0)
    assert drain(d) == [Play(prompt="enter_pin")]
    assert keys(d, "#", 1.0) == [StopPlayback(), Join(moderator=False)]
    d = ConferenceDialogue(member_pin=False, moderator_pin=True, config=CONFIG)
    d.start(0.0)
    drain(d)
    d.timer(10.0)
    d.timer(20.0)
    assert drain(d) == [Play(prompt="enter_pin"), Join(moderator=False)]
    # a member PIN set: a bare '#' is a stray key, the caller still has to key the PIN
    d = ConferenceDialogue(member_pin=True, moderator_pin=False, config=CONFIG)
    d.start(0.0)
    drain(d)
    assert keys(d, "#", 1.0) == [StopPlayback()] and d.state is State.PIN and d.get_timer() == 11.0


def test_verify_timeout_and_a_late_answer_dropped() -> None:
    d = ConferenceDialogue(member_pin=True, moderator_pin=False, config=CONFIG)
    d.start(0.0)
    drain(d)
    keys(d, "4711#", 1.0)
    d.timer(9.0)
    assert drain(d) == [Play(prompt="goodbye")]
    d.pin_result(PinRole.MEMBER, 9.5)  # too late: the call is closing
    assert drain(d) == [] and d.state is State.CLOSING


def test_room_full_at_join_and_misuse() -> None:
    d = ConferenceDialogue(member_pin=False, moderator_pin=False, config=CONFIG)
    with pytest.raises(ConferenceDialogueError):
        d.dtmf("1", 0.0)
    with pytest.raises(ConferenceDialogueError):
        d.refused(0.0)
    d.start(0.0)
    drain(d)
    d.refused(1.0)
    assert drain(d) == [Play(prompt="number_unavailable")]
    d.play_finished(2.0)
    assert drain(d) == [Hangup(reason="full")]
    with pytest.raises(ConferenceDialogueError):
        d.start(3.0)
    with pytest.raises(ValueError):
        d.dtmf("x", 3.0)
    d.dtmf("A", 3.0)  # A-D keys: ignored
