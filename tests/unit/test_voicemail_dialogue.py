"""The voicemail dialogues (leaving a message, listening to a mailbox) driven by hand on a fake clock."""

from __future__ import annotations

import pytest

from zvonok.telephony.pin_guard import PinGuard
from zvonok.telephony.voicemail_dialogue import (
    Alarm,
    Beep,
    Blocked,
    Delete,
    DialogueConfig,
    GreetingKind,
    Hangup,
    LeaveMessage,
    LeaveState,
    MailboxDialogue,
    MailboxState,
    MarkRead,
    Play,
    PlayGreeting,
    PlayMessage,
    Save,
    StartGreeting,
    StartRecording,
    StopGreeting,
    StopPlayback,
    StopRecording,
    VerifyPin,
    VoicemailError,
)

CONFIG = DialogueConfig(max_message_seconds=60.0)


def keys(dialogue: LeaveMessage | MailboxDialogue, digits: str, now: float) -> None:
    for digit in digits:
        dialogue.dtmf(digit, now)


# -- leaving a message ---------------------------------------------------------------------------------
def test_greeting_beep_record_until_hash() -> None:
    d = LeaveMessage(kind=GreetingKind.UNAVAILABLE, config=CONFIG)
    d.start(0.0)
    assert d.drain_actions() == [PlayGreeting(kind=GreetingKind.UNAVAILABLE), Beep()]
    assert d.state is LeaveState.GREETING
    d.dtmf("5", 1.0)  # not a command during the greeting
    assert d.drain_actions() == []
    d.play_finished(4.0)
    assert d.drain_actions() == [StartRecording()]
    assert d.state is LeaveState.RECORDING
    assert d.get_timer() == 64.0  # the max length
    d.dtmf("#", 10.0)
    assert d.drain_actions() == [StopRecording(reason="key"), Play(prompt="goodbye")]
    assert d.get_timer() == 20.0
    d.play_finished(11.0)
    assert d.drain_actions() == [Hangup(reason="key")]
    assert d.state is LeaveState.CLOSED and d.get_timer() is None


def test_hash_skips_the_greeting_to_the_beep() -> None:
    d = LeaveMessage(kind=GreetingKind.BUSY, config=CONFIG)
    d.start(0.0)
    d.drain_actions()
    d.dtmf("#", 0.5)
    assert d.drain_actions() == [StopPlayback(), Beep()]
    d.dtmf("#", 0.6)  # a second press during the beep changes nothing
    assert d.drain_actions() == []
    d.play_finished(0.8)
    assert d.drain_actions() == [StartRecording()]


def test_max_length_and_silence_end_the_recording() -> None:
    d = LeaveMessage(kind=GreetingKind.UNAVAILABLE, config=CONFIG)
    d.start(0.0)
    d.play_finished(3.0)
    d.drain_actions()
    d.timer(62.9)  # early: nothing
    assert d.drain_actions() == []
    d.timer(63.0)
    assert d.drain_actions() == [StopRecording(reason="max_length"), Play(prompt="goodbye")]
    d.timer(73.0)  # no play_finished came: the closing timeout hangs up
    assert d.drain_actions() == [Hangup(reason="max_length")]

    s = LeaveMessage(kind=GreetingKind.UNAVAILABLE, config=CONFIG)
    s.start(0.0)
    s.silence(1.0)  # silence before the recording is no message's
    s.play_finished(3.0)
    s.drain_actions()
    s.silence(9.0)
    assert s.drain_actions() == [StopRecording(reason="silence"), Play(prompt="goodbye")]
    assert s.stopped_by == "silence"


def test_greeting_that_never_finishes_still_records() -> None:
    d = LeaveMessage(kind=GreetingKind.UNAVAILABLE, config=CONFIG)
    d.start(0.0)
    d.drain_actions()
    d.timer(CONFIG.greeting_timeout)
    assert d.drain_actions() == [StopPlayback(), StartRecording()]


def test_leave_misuse() -> None:
    d = LeaveMessage(kind=GreetingKind.UNAVAILABLE)
    with pytest.raises(VoicemailError):
        d.dtmf("1", 0.0)
    d.start(0.0)
    with pytest.raises(VoicemailError):
        d.start(0.0)
    with pytest.raises(ValueError):
        d.dtmf("x", 0.0)


# -- the mailbox by phone --------------------------------------------------------------------------------
def test_own_mailbox_pin_then_messages() -> None:
    d = MailboxDialogue(tenant_id=1, mailbox="101", config=CONFIG)
    d.start(0.0)
    assert d.drain_actions() == [Play(prompt="enter_pin")]
    assert d.state is MailboxState.PIN
    keys(d, "1234#", 1.0)
    assert d.drain_actions() == [StopPlayback(), VerifyPin(mailbox="101", pin="1234")]
    d.pin_result(True, [7, 5], 1.2)
    assert d.drain_actions() == [MarkRead(message_id=7), Play(prompt="vm_message"), PlayMessage(message_id=7),
                                 Play(prompt="vm_menu")]
    d.dtmf("9", 2.0)  # save: the next one follows
    assert d.drain_actions() == [StopPlayback(), Save(message_id=7), Play(prompt="vm_saved"), MarkRead(message_id=5),
                                 Play(prompt="vm_message"), PlayMessage(message_id=5), Play(prompt="vm_menu")]
    d.dtmf("7", 3.0)  # delete the last one
    assert d.drain_actions() == [StopPlayback(), Delete(message_id=5), Play(prompt="vm_deleted"),
                                 Play(prompt="vm_no_more")]
    d.dtmf("4", 4.0)  # back to the saved one
    assert d.drain_actions() == [StopPlayback(), MarkRead(message_id=7), Play(prompt="vm_message"),
                                 PlayMessage(message_id=7), Play(prompt="vm_menu")]
    d.dtmf("#", 5.0)
    assert d.drain_actions() == [StopPlayback(), Play(prompt="goodbye")]
    d.play_finished(6.0)
    assert d.drain_actions() == [Hangup(reason="done")]


def test_any_mailbox_number_then_pin_and_no_messages() -> None:
    d = MailboxDialogue(tenant_id=1, mailbox=None, config=CONFIG)
    d.start(0.0)
    assert d.drain_actions() == [Play(prompt="vm_enter_mailbox")]
    keys(d, "102#", 1.0)
    assert d.drain_actions() == [StopPlayback(), Play(prompt="enter_pin")]
    keys(d, "0000#", 2.0)
    assert d.drain_actions() == [StopPlayback(), VerifyPin(mailbox="102", pin="0000")]
    d.pin_result(True, [], 2.5)
    assert d.drain_actions() == [Play(prompt="vm_no_messages"), Play(prompt="vm_menu")]
    assert d.state is MailboxState.LISTENING  # the greetings can still be changed (0)
    d.dtmf("7", 3.0)  # nothing to delete
    assert d.drain_actions() == [StopPlayback()]
    d.timer(13.0)
    assert d.drain_actions() == [Play(prompt="vm_menu")]
    d.timer(23.0)
    assert d.drain_actions() == [Play(prompt="goodbye")]
    d.play_finished(24.0)
    assert d.drain_actions() == [Hangup(reason="timeout")]


def test_record_a_greeting_by_phone() -> None:
    d = MailboxDialogue(tenant_id=1, mailbox="101", config=CONFIG)
    d.start(0.0)
    keys(d, "1234#", 1.0)
    d.pin_result(True, [], 1.0)
    d.drain_actions()
    d.dtmf("0", 2.0)
    assert d.drain_actions() == [StopPlayback(), Play(prompt="vm_greeting_menu")]
    assert d.state is MailboxState.GREETINGS
    d.dtmf("2", 3.0)
    assert d.drain_actions() == [StopPlayback(), Play(prompt="vm_record_greeting"), Beep()]
    d.dtmf("#", 3.5)  # before the beep: not yet recording, nothing to stop
    assert d.drain_actions() == []
    d.play_finished(6.0)
    assert d.drain_actions() == [StartGreeting(kind=GreetingKind.BUSY)]
    assert d.get_timer() == 6.0 + CONFIG.greeting_max_seconds
    d.dtmf("#", 9.0)
    assert d.drain_actions() == [StopGreeting(kind=GreetingKind.BUSY), Beep(), Play(prompt="vm_menu")]
    assert d.state is MailboxState.LISTENING
    # again, the unavailable one, ended by the length limit; * leaves the greetings menu
    d.dtmf("0", 10.0)
    d.dtmf("*", 10.5)
    assert d.drain_actions() == [StopPlayback(), Play(prompt="vm_greeting_menu"), StopPlayback(),
                                 Play(prompt="vm_menu")]
    d.dtmf("0", 11.0)
    d.dtmf("1", 11.5)
    d.play_finished(14.0)
    d.drain_actions()
    d.timer(14.0 + CONFIG.greeting_max_seconds)
    assert d.drain_actions() == [StopGreeting(kind=GreetingKind.UNAVAILABLE), Beep(), Play(prompt="vm_menu")]


def test_wrong_pins_are_limited_per_call_and_by_the_guard() -> None:
    d = MailboxDialogue(tenant_id=1, mailbox=None, config=CONFIG, guard=PinGuard(), caller_id="103")
    d.start(0.0)
    for attempt in range(3):
        d.drain_actions()
        keys(d, "102#", 1.0)
        keys(d, "9999#", 1.0)
        d.drain_actions()
        d.pin_result(False, [], 2.0)
        if attempt < 2:
            assert d.drain_actions() == [Play(prompt="wrong_pin"), Play(prompt="vm_enter_mailbox")]
            assert d.state is MailboxState.MAILBOX and d.mailbox is None
    assert d.drain_actions() == [Play(prompt="blocked")]
    assert d.hangup_reason == "too_many_attempts"

    guard = PinGuard(max_failures=2)
    first = MailboxDialogue(tenant_id=1, mailbox="101", guard=guard, caller_id="+79160000000")
    first.start(0.0)
    keys(first, "1#", 1.0)
    first.pin_result(False, [], 1.0)
    keys(first, "2#", 2.0)
    first.drain_actions()
    first.pin_result(False, [], 2.0)
    actions = first.drain_actions()
    assert any(isinstance(a, Blocked) and a.source.value == "+79160000000" for a in actions)
    assert actions[-1] == Play(prompt="blocked") and first.hangup_reason == "blocked"
    again = MailboxDialogue(tenant_id=1, mailbox="101", guard=guard, caller_id="+79160000000")
    again.start(3.0)  # the same caller ID calls again: refused at once
    assert again.drain_actions() == [Hangup(reason="blocked")]


def test_alarm_over_the_guard_rate() -> None:
    guard = PinGuard(alarm_failures=1)
    d = MailboxDialogue(tenant_id=1, mailbox="101", guard=guard, caller_id="5")
    d.start(0.0)
    keys(d, "1#", 1.0)
    d.drain_actions()
    d.pin_result(False, [], 1.0)
    assert Alarm() in d.drain_actions()


def test_timeouts_reprompt_once_then_goodbye() -> None:
    d = MailboxDialogue(tenant_id=1, mailbox="101", config=CONFIG)
    d.start(0.0)
    d.drain_actions()
    d.play_finished(2.0)
    assert d.get_timer() == 12.0
    d.timer(12.0)
    assert d.drain_actions() == [Play(prompt="enter_pin")]
    d.timer(22.0)
    assert d.drain_actions() == [Play(prompt="goodbye")]
    d.timer(32.0)
    assert d.drain_actions() == [Hangup(reason="timeout")]


def test_verify_timeout_and_late_result() -> None:
    d = MailboxDialogue(tenant_id=1, mailbox="101", config=CONFIG)
    d.start(0.0)
    keys(d, "1234#", 1.0)
    d.drain_actions()
    d.timer(11.0)
    assert d.drain_actions() == [Play(prompt="goodbye")]
    d.pin_result(True, [1], 12.0)  # too late: dropped
    assert d.drain_actions() == []
    with pytest.raises(VoicemailError):
        d.pin_result(True, [1], 12.0)
