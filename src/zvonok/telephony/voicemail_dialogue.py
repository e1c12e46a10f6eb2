"""Voicemail: the sans-I/O dialogues between a caller's keypad and the engine.

Two dialogues, shaped like :mod:`.access_number` (inputs with ``now``, actions drained with
:meth:`next_action`, one deadline :meth:`get_timer`):

:class:`LeaveMessage` — a caller reaches a mailbox (forwarded on busy / no answer / unavailable, a number
whose destination is a mailbox):

==========  ===================================  ===================================================
state       input                                next state: actions
==========  ===================================  ===================================================
(start)                                          GREETING: PlayGreeting(kind), Beep
GREETING    ``#`` while the greeting plays       GREETING: StopPlayback, Beep (skip the greeting)
GREETING    play_finished (after the beep)       RECORDING: StartRecording (deadline: max length)
RECORDING   ``#``                                CLOSING: StopRecording, Play(goodbye)
RECORDING   silence / the max-length deadline    CLOSING: StopRecording, Play(goodbye)
CLOSING     play_finished or closing_timeout     CLOSED: Hangup
==========  ===================================  ===================================================

The caller hanging up is the engine's business (it stops and keeps the recording itself).

:class:`MailboxDialogue` — an extension dials ``*97`` (its own mailbox) or ``*98`` (any mailbox of the
company: the number first). As Asterisk's ``VoiceMailMain`` does by default (without its ``s`` option),
the PIN is asked for in both cases: a phone left unattended does not open its owner's messages.

==========  ===================================  ===================================================
state       input                                next state: actions
==========  ===================================  ===================================================
(start)     the guard blocks the caller          CLOSED: Hangup(blocked)
(start)     ``*98``                              MAILBOX: Play(vm_enter_mailbox)
(start)     ``*97``                              PIN: Play(enter_pin)
MAILBOX     digits then ``#``                    PIN: Play(enter_pin)
PIN         digits then ``#``                    VERIFYING: VerifyPin(mailbox, pin)
VERIFYING   right PIN, no messages               LISTENING: Play(vm_no_messages), Play(vm_menu)
VERIFYING   right PIN, messages                  LISTENING: the first message (see below)
VERIFYING   wrong PIN, attempts left             MAILBOX or PIN: Play(wrong_pin), its prompt
VERIFYING   wrong PIN, the last / guard blocks   CLOSING: [Blocked...], Play(blocked)
LISTENING   5 / 6 / 4                            the message again / the next / the previous
LISTENING   7 / 9                                Delete / Save, Play(vm_deleted / vm_saved), the next
LISTENING   ``*``                                Play(vm_menu)
LISTENING   ``0``                                GREETINGS: Play(vm_greeting_menu)
GREETINGS   ``1`` / ``2``                        RECORDING: Play(vm_record_greeting), Beep, then
                                                 StartGreeting(unavailable / busy)
GREETINGS   ``*``, timeout                       LISTENING: Play(vm_menu)
RECORDING   ``#`` or greeting_max_seconds        LISTENING: StopGreeting, Beep, Play(vm_menu)
LISTENING   ``#`` or the second timeout          CLOSING: Play(goodbye)
MAILBOX/PIN the stage's first / second timeout   its prompt again / CLOSING: Play(goodbye)
==========  ===================================  ===================================================

A message is announced as Play(vm_message), PlayMessage(id), Play(vm_menu) with MarkRead(id); after the
last one comes Play(vm_no_more). The first key while prompts play stops them (barge-in). Wrong PINs count
against the caller ID and the mailbox in the shared :class:`~.pin_guard.PinGuard`, as for the access
number, and at most ``max_pin_attempts`` per call.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from zvonok.media.prompts import PromptName

from .pin_guard import PinGuard, PinSource, SourceKind, pin_sources

__all__ = [
    "Alarm", "Beep", "Blocked", "Delete", "DialogueConfig", "GreetingKind", "Hangup", "LeaveMessage", "LeaveState",
    "MailboxDialogue", "MailboxState", "MarkRead", "Play", "PlayGreeting", "PlayMessage", "Save", "StartRecording",
    "StartGreeting", "StopGreeting", "StopPlayback", "StopRecording", "VerifyPin", "VoicemailError", "mailbox_source",
]


class VoicemailError(Exception):
    """The engine used a dialogue wrongly (an input that makes no sense in the current state)."""


class GreetingKind(enum.StrEnum):
    BUSY = "busy"
    UNAVAILABLE = "unavailable"


# Actions -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Play:
    prompt: PromptName


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayGreeting:
    """The mailbox's own greeting of this kind, or the built-in one."""

    kind: GreetingKind


@dataclass(frozen=True, slots=True)
class Beep:
    """The short tone after which the caller speaks (queued like a prompt)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayMessage:
    message_id: int


@dataclass(frozen=True, slots=True)
class StopPlayback:
    """Stop what plays now and drop what is queued."""


@dataclass(frozen=True, slots=True)
class StartRecording:
    """Record what the caller sends (their leg only) into the new message."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StopRecording:
    reason: str  # "key" | "silence" | "max_length"


@dataclass(frozen=True, slots=True, kw_only=True)
class StartGreeting:
    """Record what the caller says as the mailbox's new greeting of this kind."""

    kind: GreetingKind


@dataclass(frozen=True, slots=True, kw_only=True)
class StopGreeting:
    """Finish the greeting recording and make it the mailbox's greeting of this kind."""

    kind: GreetingKind


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyPin:
    """Check ``pin`` for mailbox ``mailbox`` and answer with :meth:`MailboxDialogue.pin_result`."""

    mailbox: str
    pin: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkRead:
    message_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete:
    message_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Save:
    message_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup:
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Blocked:
    source: PinSource


@dataclass(frozen=True, slots=True)
class Alarm:
    """Wrong PINs of all callers together passed the guard's alarm rate."""


Action = (Play | PlayGreeting | Beep | PlayMessage | StopPlayback | StartRecording | StopRecording | VerifyPin
          | MarkRead | Delete | Save | StartGreeting | StopGreeting | Hangup | Blocked | Alarm)


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogueConfig:
    max_message_seconds: float = 180.0
    first_digit_timeout: float = 10.0
    inter_digit_timeout: float = 5.0
    verify_timeout: float = 10.0
    closing_timeout: float = 10.0
    greeting_timeout: float = 120.0  # longest greeting + beep, in case play_finished never comes
    greeting_max_seconds: float = 60.0  # a greeting recorded by phone
    max_pin_attempts: int = 3
    max_entry: int = 16


def mailbox_source(tenant_id: int, number: str) -> PinSource:
    """The guard's key for wrong PINs tried on one mailbox (a guess spread over many callers)."""
    return PinSource(kind=SourceKind.EMPLOYEE, value=f"vm:{tenant_id}:{number}")


_KEYS = frozenset("0123456789*#")


class _Dialogue:
    def __init__(self, config: DialogueConfig | None) -> None:
        self.config = config or DialogueConfig()
        self._actions: deque[Action] = deque()
        self._deadline: float | None = None
        self._playing = False
        self.hangup_reason: str | None = None

    def next_action(self) -> Action | None:
        return self._actions.popleft() if self._actions else None

    def drain_actions(self) -> list[Action]:
        actions = list(self._actions)
        self._actions.clear()
        return actions

    def get_timer(self) -> float | None:
        return self._deadline

    def _play(self, *actions: Action) -> None:
        self._actions.extend(actions)
        self._playing = self._playing or bool(actions)

    def _barge_in(self) -> None:
        if self._playing:
            self._playing = False
            self._actions.append(StopPlayback())

    @staticmethod
    def _check_key(digit: str) -> bool:
        if digit in "ABCDabcd":
            return False
        if digit not in _KEYS:
            raise ValueError(f"not a DTMF key: {digit!r}")
        return True


# Leaving a message ---------------------------------------------------------------------------------------
class LeaveState(enum.Enum):
    IDLE = "idle"
    GREETING = "greeting"
    RECORDING = "recording"
    CLOSING = "closing"
    CLOSED = "closed"


class LeaveMessage(_Dialogue):
    def __init__(self, *, kind: GreetingKind, config: DialogueConfig | None = None) -> None:
        super().__init__(config)
        self.kind = kind
        self.state = LeaveState.IDLE
        self.stopped_by: str | None = None  # why the recording ended ("key", "silence", "max_length")
        self._beeping = False

    def start(self, now: float) -> None:
        if self.state is not LeaveState.IDLE:
            raise VoicemailError("start() called twice")
        self.state = LeaveState.GREETING
        self._play(PlayGreeting(kind=self.kind), Beep())
        self._deadline = now + self.config.greeting_timeout

    def dtmf(self, digit: str, now: float) -> None:
        if not self._check_key(digit):
            return
        if self.state is LeaveState.IDLE:
            raise VoicemailError("dtmf() before start()")
        if self.state is LeaveState.GREETING and digit == "#" and not self._beeping:
            self._beeping = True
            self._actions.append(StopPlayback())
            self._play(Beep())
        elif self.state is LeaveState.RECORDING and digit == "#":
            self._stop_recording("key", now)

    def play_finished(self, now: float) -> None:
        self._playing = False
        if self.state is LeaveState.GREETING:
            self._record(now)
        elif self.state is LeaveState.CLOSING:
            self._hangup()

    def silence(self, now: float) -> None:
        """The caller has been silent for the mailbox's silence limit."""
        if self.state is LeaveState.RECORDING:
            self._stop_recording("silence", now)

    def timer(self, now: float) -> None:
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        if self.state is LeaveState.GREETING:
            self._actions.append(StopPlayback())
            self._record(now)
        elif self.state is LeaveState.RECORDING:
            self._stop_recording("max_length", now)
        elif self.state is LeaveState.CLOSING:
            self._hangup()

    def _record(self, now: float) -> None:
        self.state = LeaveState.RECORDING
        self._actions.append(StartRecording())
        self._deadline = now + self.config.max_message_seconds

    def _stop_recording(self, reason: str, now: float) -> None:
        self.stopped_by = reason
        self.state = LeaveState.CLOSING
        self._actions.append(StopRecording(reason=reason))
        self._play(Play(prompt="goodbye"))
        self._deadline = now + self.config.closing_timeout

    def _hangup(self) -> None:
        self.state = LeaveState.CLOSED
        self._deadline = None
        self.hangup_reason = self.stopped_by or "done"
        self._actions.append(Hangup(reason=self.hangup_reason))


# Listening to a mailbox ----------------------------------------------------------------------------------
class MailboxState(enum.Enum):
    IDLE = "idle"
    MAILBOX = "mailbox"
    PIN = "pin"
    VERIFYING = "verifying"
    LISTENING = "listening"
    GREETINGS = "greetings"  # which greeting to record
    RECORDING = "recording"  # a greeting: its prompt and beep, then the recording
    CLOSING = "closing"
    CLOSED = "closed"


_GREETING_KEYS = {"1": GreetingKind.UNAVAILABLE, "2": GreetingKind.BUSY}
_STAGE_PROMPT: dict[MailboxState, PromptName] = {MailboxState.MAILBOX: "vm_enter_mailbox",
                                                  MailboxState.PIN: "enter_pin"}


class MailboxDialogue(_Dialogue):
    """``mailbox``: the caller's own mailbox number (``*97``), None to ask for one (``*98``)."""

    def __init__(self, *, tenant_id: int, mailbox: str | None, config: DialogueConfig | None = None,
                 guard: PinGuard | None = None, caller_id: str | None = None) -> None:
        super().__init__(config)
        self.tenant_id = tenant_id
        self.own = mailbox is not None
        self.mailbox = mailbox
        self._guard = guard
        self.sources = pin_sources(caller_id)
        self.state = MailboxState.IDLE
        self.pin_attempts = 0
        self.messages: list[int] = []
        self.index = 0
        self._entry = ""
        self._reprompted = False
        self._awaiting_pin = False
        self._greeting: GreetingKind | None = None
        self._greeting_recording = False

    # Inputs ----------------------------------------------------------------------------------------------
    def start(self, now: float) -> None:
        if self.state is not MailboxState.IDLE:
            raise VoicemailError("start() called twice")
        if self._guard is not None and self._guard.is_blocked(self.sources, now):
            self._hangup("blocked")
            return
        self._stage(MailboxState.PIN if self.own else MailboxState.MAILBOX, now)

    def dtmf(self, digit: str, now: float) -> None:
        if not self._check_key(digit):
            return
        if self.state is MailboxState.IDLE:
            raise VoicemailError("dtmf() before start()")
        if self.state in _STAGE_PROMPT:
            self._barge_in()
            self._entry_key(digit, now)
        elif self.state is MailboxState.LISTENING:
            self._barge_in()
            self._reprompted = False
            self._listen_key(digit, now)
        elif self.state is MailboxState.GREETINGS:
            self._barge_in()
            if digit in _GREETING_KEYS:
                self.state = MailboxState.RECORDING
                self._greeting = _GREETING_KEYS[digit]
                self._greeting_recording = False
                self._play(Play(prompt="vm_record_greeting"), Beep())
                self._deadline = now + self.config.greeting_timeout
            elif digit == "*":
                self._back_to_listening(now)
        elif self.state is MailboxState.RECORDING and digit == "#" and self._greeting_recording:
            self._stop_greeting(now)

    def play_finished(self, now: float) -> None:
        self._playing = False
        if self.state is MailboxState.RECORDING and not self._greeting_recording:
            assert self._greeting is not None
            self._greeting_recording = True
            self._actions.append(StartGreeting(kind=self._greeting))
            self._deadline = now + self.config.greeting_max_seconds
        elif self.state is MailboxState.RECORDING:
            pass
        elif self.state is MailboxState.CLOSING:
            self._hangup(self.hangup_reason or "done")
        elif self.state in _STAGE_PROMPT and not self._entry or self.state is MailboxState.LISTENING:
            self._deadline = now + self.config.first_digit_timeout

    def pin_result(self, ok: bool, messages: list[int], now: float) -> None:
        """The answer to :class:`VerifyPin`: right or wrong, with the mailbox's messages (newest unread
        first) when right."""
        if not self._awaiting_pin:
            raise VoicemailError("pin_result() without a VerifyPin")
        self._awaiting_pin = False
        if self.state is not MailboxState.VERIFYING:
            return
        if ok:
            self.state = MailboxState.LISTENING
            self.messages = list(messages)
            self.index = 0
            self._reprompted = False
            if not self.messages:
                self._play(Play(prompt="vm_no_messages"), Play(prompt="vm_menu"))
                self._deadline = now + self.config.first_digit_timeout
            else:
                self._announce(now)
            return
        self.pin_attempts += 1
        assert self.mailbox is not None
        targets = (mailbox_source(self.tenant_id, self.mailbox),)
        newly = self._guard.record_failure(self.sources + targets, now) if self._guard is not None else ()
        for source in newly:
            self._actions.append(Alarm() if source.kind is SourceKind.ALL else Blocked(source=source))
        if self._guard is not None and self._guard.is_blocked(self.sources, now):
            self._close(now, "blocked", "blocked")
        elif self.pin_attempts >= self.config.max_pin_attempts:
            self._close(now, "too_many_attempts", "blocked")
        else:
            if not self.own:
                self.mailbox = None
            self._stage(MailboxState.PIN if self.own else MailboxState.MAILBOX, now, "wrong_pin")

    def timer(self, now: float) -> None:
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        if self.state in _STAGE_PROMPT or self.state is MailboxState.LISTENING:
            if self._reprompted:
                self._close(now, "timeout", "goodbye")
            else:
                self._reprompted = True
                if self.state is MailboxState.LISTENING:
                    self._play(Play(prompt="vm_menu"))
                    self._deadline = now + self.config.first_digit_timeout
                else:
                    self._ask(now)
        elif self.state is MailboxState.VERIFYING:
            self._close(now, "verify_timeout", "goodbye")
        elif self.state is MailboxState.GREETINGS:
            self._back_to_listening(now)
        elif self.state is MailboxState.RECORDING:
            if self._greeting_recording:
                self._stop_greeting(now)
            else:  # the prompt never reported its end: record all the same
                self.play_finished(now)
        elif self.state is MailboxState.CLOSING:
            self._hangup(self.hangup_reason or "done")

    # Internals -------------------------------------------------------------------------------------------
    def _entry_key(self, digit: str, now: float) -> None:
        if digit == "*":
            self._entry = ""
            self._deadline = now + self.config.first_digit_timeout
        elif digit == "#":
            if not self._entry:
                self._deadline = now + self.config.first_digit_timeout
                return
            entry, self._entry = self._entry, ""
            if self.state is MailboxState.MAILBOX:
                self.mailbox = entry
                self._stage(MailboxState.PIN, now)
            else:
                self._submit(entry, now)
        else:
            if len(self._entry) < self.config.max_entry:
                self._entry += digit
            self._deadline = now + self.config.inter_digit_timeout

    def _submit(self, pin: str, now: float) -> None:
        if self._guard is not None and self._guard.is_blocked(self.sources, now):
            self._close(now, "blocked", "blocked")
            return
        assert self.mailbox is not None
        self.state = MailboxState.VERIFYING
        self._awaiting_pin = True
        self._deadline = now + self.config.verify_timeout
        self._actions.append(VerifyPin(mailbox=self.mailbox, pin=pin))

    def _listen_key(self, digit: str, now: float) -> None:
        current = self.messages[self.index] if self.index < len(self.messages) else None
        if digit == "#":
            self._close(now, "done", "goodbye")
            return
        if digit == "*":
            self._play(Play(prompt="vm_menu"))
        elif digit == "0":
            self.state = MailboxState.GREETINGS
            self._play(Play(prompt="vm_greeting_menu"))
        elif digit == "5" and current is not None:
            self._announce(now)
            return
        elif digit == "6":
            self.index = min(self.index + 1, len(self.messages))
            self._announce(now)
            return
        elif digit == "4":
            self.index = max(self.index - 1, 0)
            self._announce(now)
            return
        elif digit in "79" and current is not None:
            if digit == "7":
                self._actions.append(Delete(message_id=current))
                del self.messages[self.index]
                self._play(Play(prompt="vm_deleted"))
            else:
                self._actions.append(Save(message_id=current))
                self.index += 1
                self._play(Play(prompt="vm_saved"))
            self._announce(now)
            return
        self._deadline = now + self.config.first_digit_timeout

    def _stop_greeting(self, now: float) -> None:
        assert self._greeting is not None
        self._actions.append(StopGreeting(kind=self._greeting))
        self._greeting = None
        self._greeting_recording = False
        self._play(Beep())
        self._back_to_listening(now)

    def _back_to_listening(self, now: float) -> None:
        self.state = MailboxState.LISTENING
        self._reprompted = False
        self._play(Play(prompt="vm_menu"))
        self._deadline = now + self.config.first_digit_timeout

    def _announce(self, now: float) -> None:
        """Play the message at ``index`` (or say there are no more)."""
        if self.index >= len(self.messages):
            self._play(Play(prompt="vm_no_more"))
        else:
            message = self.messages[self.index]
            self._actions.append(MarkRead(message_id=message))
            self._play(Play(prompt="vm_message"), PlayMessage(message_id=message), Play(prompt="vm_menu"))
        self._deadline = now + self.config.first_digit_timeout + self.config.max_message_seconds

    def _stage(self, state: MailboxState, now: float, *before: PromptName) -> None:
        self.state = state
        self._reprompted = False
        self._ask(now, *before)

    def _ask(self, now: float, *before: PromptName) -> None:
        self._entry = ""
        self._play(*(Play(prompt=p) for p in (*before, _STAGE_PROMPT[self.state])))
        self._deadline = now + self.config.first_digit_timeout

    def _close(self, now: float, reason: str, *prompts: PromptName) -> None:
        self.state = MailboxState.CLOSING
        self.hangup_reason = reason
        self._entry = ""
        self._play(*(Play(prompt=p) for p in prompts))
        self._deadline = now + self.config.closing_timeout

    def _hangup(self, reason: str) -> None:
        self.state = MailboxState.CLOSED
        self.hangup_reason = reason
        self._deadline = None
        self._actions.append(Hangup(reason=reason))
