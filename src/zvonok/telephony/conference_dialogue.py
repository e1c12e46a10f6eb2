"""Entering a conference room: the sans-I/O dialogue between the caller's keypad and the engine.

The shape of :mod:`zvonok.telephony.access_number`: inputs with ``now``, actions drained with
:meth:`ConferenceDialogue.next_action`, one deadline :meth:`~ConferenceDialogue.get_timer`.

A room with no PIN at all joins the caller at once. Otherwise the caller keys a PIN and ``#``: the
engine checks it against the room's member and moderator PINs (argon2, in a thread) and answers with
:meth:`~ConferenceDialogue.pin_result`. A room with only a moderator PIN lets members in with a bare
``#`` (or after the reprompt's timeout): the PIN prompt is then the moderator's chance.

==========  =======================================  =============================================
state       input                                    next state: actions
==========  =======================================  =============================================
(start)     the room has no PIN                      JOINED: Join(member)
(start)     otherwise                                PIN: Play(enter_pin)
PIN         first key while a prompt plays           StopPlayback (barge-in), then the key
PIN         digit / ``*``                            entry grows / is cleared
PIN         ``#`` with an entry                      VERIFYING: VerifyPin(entry)
PIN         ``#`` alone, no member PIN               JOINED: Join(member)
PIN         first timeout                            PIN: Play(enter_pin) again
PIN         second timeout, no member PIN            JOINED: Join(member)
PIN         second timeout                           CLOSING: Play(goodbye)
VERIFYING   member / moderator PIN                   JOINED: Join(member / moderator)
VERIFYING   wrong, attempts left                     PIN: Play(wrong_pin), Play(enter_pin)
VERIFYING   wrong, the last attempt                  CLOSING: Play(wrong_pin), Play(goodbye)
VERIFYING   verify_timeout                           CLOSING: Play(goodbye)
JOINED      refused (the room filled meanwhile)      CLOSING: Play(number_unavailable)
CLOSING     play_finished or closing_timeout         CLOSED: Hangup(reason)
==========  =======================================  =============================================

Keys in VERIFYING, JOINED, CLOSING and CLOSED are ignored (in the room they are the member's business).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from zvonok.media.prompts import PromptName

__all__ = ["Action", "ConferenceDialogue", "ConferenceDialogueError", "DialogueConfig", "Hangup", "Join",
           "PinRole", "Play", "State", "StopPlayback", "VerifyPin"]


class ConferenceDialogueError(Exception):
    """The engine used the dialogue wrongly (an input that makes no sense in the current state)."""


class State(enum.Enum):
    IDLE = "idle"
    PIN = "pin"
    VERIFYING = "verifying"
    JOINED = "joined"
    CLOSING = "closing"
    CLOSED = "closed"


class PinRole(enum.StrEnum):
    MEMBER = "member"
    MODERATOR = "moderator"


@dataclass(frozen=True, slots=True, kw_only=True)
class Play:
    prompt: PromptName


@dataclass(frozen=True, slots=True)
class StopPlayback:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyPin:
    pin: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Join:
    moderator: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup:
    reason: str  # timeout, wrong_pin, verify_timeout, full


Action = Play | StopPlayback | VerifyPin | Join | Hangup


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogueConfig:
    first_digit_timeout: float = 10.0
    inter_digit_timeout: float = 5.0
    verify_timeout: float = 10.0
    closing_timeout: float = 10.0
    max_pin_attempts: int = 3
    max_entry: int = 16


_KEYS = frozenset("0123456789*#")


class ConferenceDialogue:
    def __init__(self, *, member_pin: bool, moderator_pin: bool, config: DialogueConfig | None = None) -> None:
        self.config = config or DialogueConfig()
        self.member_pin = member_pin
        self.moderator_pin = moderator_pin
        self.state = State.IDLE
        self.attempts = 0
        self.moderator = False
        self.hangup_reason: str | None = None
        self._entry = ""
        self._deadline: float | None = None
        self._playing = False
        self._reprompted = False
        self._actions: deque[Action] = deque()

    # Outputs ---------------------------------------------------------------------------------------------

    def next_action(self) -> Action | None:
        return self._actions.popleft() if self._actions else None

    def get_timer(self) -> float | None:
        return self._deadline

    # Inputs ----------------------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        if self.state is not State.IDLE:
            raise ConferenceDialogueError("start() called twice")
        if not self.member_pin and not self.moderator_pin:
            self._join(False)
        else:
            self.state = State.PIN
            self._prompt(now)

    def dtmf(self, digit: str, now: float) -> None:
        if digit not in _KEYS:
            if digit in "ABCDabcd":
                return
            raise ValueError(f"not a DTMF key: {digit!r}")
        if self.state is State.IDLE:
            raise ConferenceDialogueError("dtmf() before start()")
        if self.state is not State.PIN:
            return
        if self._playing:
            self._playing = False
            self._actions.append(StopPlayback())
        if digit == "*":
            self._entry = ""
            self._deadline = now + self.config.first_digit_timeout
        elif digit == "#":
            if self._entry:
                entry, self._entry = self._entry, ""
                self.state = State.VERIFYING
                self._deadline = now + self.config.verify_timeout
                self._actions.append(VerifyPin(pin=entry))
            elif not self.member_pin:
                self._join(False)
            else:
                self._deadline = now + self.config.first_digit_timeout  # a stray '#': keep waiting
        else:
            if len(self._entry) < self.config.max_entry:
                self._entry += digit
            self._deadline = now + self.config.inter_digit_timeout

    def play_finished(self, now: float) -> None:
        self._playing = False
        if self.state is State.CLOSING:
            self._hangup()
        elif self.state is State.PIN and not self._entry:
            self._deadline = now + self.config.first_digit_timeout

    def pin_result(self, role: PinRole | None, now: float) -> None:
        """The answer to a :class:`VerifyPin`: the PIN's role in the room, or None for a wrong PIN."""
        if self.state is not State.VERIFYING:
            return  # we gave up waiting (verify timeout)
        if role is not None:
            self._join(role is PinRole.MODERATOR)
            return
        self.attempts += 1
        if self.attempts >= self.config.max_pin_attempts:
            self._close(now, "wrong_pin", "wrong_pin", "goodbye")
        else:
            self.state = State.PIN
            self._reprompted = False
            self._prompt(now, "wrong_pin")

    def refused(self, now: float) -> None:
        """The engine could not put the caller in the room (it filled meanwhile)."""
        if self.state is not State.JOINED:
            raise ConferenceDialogueError("refused() without a Join")
        self._close(now, "full", "number_unavailable")

    def timer(self, now: float) -> None:
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        if self.state is State.PIN:
            if not self._reprompted:
                self._reprompted = True
                self._prompt(now)
            elif not self.member_pin:
                self._join(False)
            else:
                self._close(now, "timeout", "goodbye")
        elif self.state is State.VERIFYING:
            self._close(now, "verify_timeout", "goodbye")
        elif self.state is State.CLOSING:
            self._hangup()

    # Internals -------------------------------------------------------------------------------------------

    def _prompt(self, now: float, *before: PromptName) -> None:
        self._entry = ""
        for prompt in (*before, "enter_pin"):
            self._actions.append(Play(prompt=prompt))
        self._playing = True
        self._deadline = now + self.config.first_digit_timeout

    def _join(self, moderator: bool) -> None:
        self.state = State.JOINED
        self.moderator = moderator
        self._deadline = None
        self._entry = ""
        self._actions.append(Join(moderator=moderator))

    def _close(self, now: float, reason: str, *prompts: PromptName) -> None:
        self.state = State.CLOSING
        self.hangup_reason = reason
        for prompt in prompts:
            self._actions.append(Play(prompt=prompt))
        self._playing = True
        self._deadline = now + self.config.closing_timeout

    def _hangup(self) -> None:
        assert self.hangup_reason is not None
        self.state = State.CLOSED
        self._deadline = None
        self._actions.append(Hangup(reason=self.hangup_reason))
