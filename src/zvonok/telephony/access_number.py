"""Access number (PIN calling, "DISA"): the sans-I/O dialogue between the caller's keypad and the engine.

An employee calls the company's access number from any phone, keys in their PIN and ``#``, then the
number to call and ``#``; the engine then places the call under that employee's permissions, caller ID
and cost attribution.  This object only decides *what happens next*; the engine plays the prompts, looks
up the PIN (see :mod:`zvonok.org.pins` for what the PIN string is and how it is verified), routes the call.

How it works
------------
Inputs, each with the caller's ``now`` (a monotonic clock): :meth:`~AccessNumberDialogue.start` (the call
is answered), :meth:`~AccessNumberDialogue.dtmf`, :meth:`~AccessNumberDialogue.play_finished`,
:meth:`~AccessNumberDialogue.pin_result`, :meth:`~AccessNumberDialogue.dial_failed` and
:meth:`~AccessNumberDialogue.timer`.  Outputs are actions (frozen dataclasses) the engine drains with
:meth:`~AccessNumberDialogue.next_action` and carries out in order.  One deadline,
:meth:`~AccessNumberDialogue.get_timer`, covers every timer: the engine re-arms one ``call_at`` on it after
each input, and calls ``timer(now)`` when it fires.

==========  =======================================  =============================================
state       input                                    next state: actions
==========  =======================================  =============================================
(start)     the guard blocks the caller              CLOSED: Hangup(blocked)
(start)     dialed form ``<DID>*<PIN>*<number>``     VERIFYING: VerifyPin (number typed ahead)
(start)     the caller ID may skip the PIN           NUMBER: Play(enter_number)
(start)     otherwise                                PIN: Play(enter_pin)
PIN/NUMBER  first key while a prompt plays           StopPlayback (barge-in), then the key
PIN/NUMBER  digit / ``*`` / ``#`` on an empty entry  entry grows / is cleared / nothing
PIN         ``#``                                    VERIFYING: VerifyPin(entry)
NUMBER      ``#``                                    DIALING: Play(connecting), Dial
PIN/NUMBER  the stage's first timeout                same state: its prompt again
PIN/NUMBER  the stage's second timeout               CLOSING: Play(goodbye)
VERIFYING   keys                                     kept as type-ahead for the number
VERIFYING   right PIN                                NUMBER: the type-ahead, or Play(enter_number)
VERIFYING   wrong PIN, attempts left                 PIN: Play(wrong_pin), Play(enter_pin)
VERIFYING   wrong PIN, the call's last attempt       CLOSING: Play(blocked)
VERIFYING   wrong PIN, the guard blocks              CLOSING: Blocked(source)..., Play(blocked)
VERIFYING   wrong PIN over the guard's alarm rate    the same, with Alarm() among the actions
VERIFYING   no answer within verify_timeout          CLOSING: Play(goodbye)
DIALING     not allowed / unavailable                NUMBER: Play(reason), Play(enter_number)
DIALING     the same, last attempt; limit reached    CLOSING: Play(reason)[, Play(goodbye)]
CLOSING     play_finished or closing_timeout         CLOSED: Hangup(reason)
==========  =======================================  =============================================

The engine's side of the playback contract: ``Play`` actions queue up and play in order;
``StopPlayback`` stops the current prompt and drops the queued ones; ``play_finished`` is reported when
the queue has run dry (not after a ``StopPlayback``).  The first-digit timeout counts from the prompt's
start and again from ``play_finished``, so a long prompt does not eat the caller's time, while an engine
that never reports the end still gets the call timed out.  Keys arriving in DIALING, CLOSING or CLOSED
are ignored, as are the A–D keys; ``pin_result`` arriving after the dialogue gave up on it is dropped.

The "whole string at once" case of an office PBX (``1014321#84951234567#`` sent right after the answer)
needs nothing special: digits are handled in order, and those arriving during the PIN look-up are kept
as type-ahead (discarded if the PIN is wrong, so a wrong PIN never dials).

Dialed form
-----------
An office PBX connected over SIP can put everything into the Request-URI user part instead:
``<access number>*<PIN>*<destination>``, e.g. ``sip:74951230000*1014321*84951234567@pbx.example``.
``*`` needs no escaping in a SIP URI user part (RFC 3261 §25.1, ``user-unreserved``/``mark``) while
``#`` would have to be sent as ``%23``, which PBXs handle unevenly.  :func:`split_dialed_access` gives
the access number for the DID look-up; pass ``dialed=parse_dialed_access(user)`` to the dialogue.  The
form only works over a direct SIP connection: carriers deliver the DID alone.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from zvonok.media.prompts import PromptName

from .pin_guard import PinGuard, PinSource, SourceKind, employee_source, pin_sources

__all__ = [
    "AccessNumberDialogue", "AccessNumberError", "Action", "Alarm", "Blocked", "Dial", "DialFailure", "DialogueConfig",
    "DialogueState", "Hangup", "HangupReason", "Play", "StopPlayback", "VerifyPin", "parse_dialed_access",
    "split_dialed_access",
]


class AccessNumberError(Exception):
    """The engine used the dialogue wrongly (an input that makes no sense in the current state)."""


class DialogueState(enum.Enum):
    IDLE = "idle"
    PIN = "pin"
    VERIFYING = "verifying"
    NUMBER = "number"
    DIALING = "dialing"
    CLOSING = "closing"
    CLOSED = "closed"


class HangupReason(enum.StrEnum):
    BLOCKED = "blocked"  # the caller ID or source address is (or just got) blocked by the PinGuard
    TOO_MANY_ATTEMPTS = "too_many_attempts"  # wrong PINs, max_pin_attempts in this call
    TIMEOUT = "timeout"  # no keys after the reprompt
    VERIFY_TIMEOUT = "verify_timeout"  # the engine did not answer a VerifyPin in time
    DIAL_FAILED = "dial_failed"  # max_dial_attempts numbers refused or unavailable
    LIMIT_REACHED = "limit_reached"  # the employee's spending limit


class DialFailure(enum.StrEnum):
    NOT_ALLOWED = "not_allowed"  # the employee may not call this number (route, class of service)
    UNAVAILABLE = "unavailable"  # no route, invalid number, the far end failed
    LIMIT_REACHED = "limit_reached"  # spending limit: another number will not help


# Actions -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Play:
    """Queue a prompt; the engine picks the file with ``prompt_path(prompt, tenant locale)``."""

    prompt: PromptName


@dataclass(frozen=True, slots=True)
class StopPlayback:
    """Stop the prompt playing now and drop the queued ones (the caller started typing)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyPin:
    """Look the entered digits up (asynchronously) and answer with :meth:`AccessNumberDialogue.pin_result`."""

    pin: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Dial:
    """Place the call to ``destination`` (digits as keyed) as employee ``employee_ref``."""

    destination: str
    employee_ref: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup:
    reason: HangupReason


@dataclass(frozen=True, slots=True, kw_only=True)
class Blocked:
    """This call's failures just blocked ``source``: log an alert and publish the event (once per ban)."""

    source: PinSource


@dataclass(frozen=True, slots=True)
class Alarm:
    """Wrong PINs from all callers together passed the guard's alarm rate: warn the operator (once per
    window), a guess spread over many caller IDs and employees that no single ban catches."""


Action = Play | StopPlayback | VerifyPin | Dial | Hangup | Blocked | Alarm


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogueConfig:
    first_digit_timeout: float = 10.0
    inter_digit_timeout: float = 5.0
    verify_timeout: float = 10.0  # the PIN look-up is a few argon2 verifications: well under a second
    closing_timeout: float = 10.0  # longest last prompt + margin, in case play_finished never comes
    max_pin_attempts: int = 3
    max_dial_attempts: int = 3
    max_entry: int = 32  # digits kept per entry; more are dropped (bounds memory, not a number rule)


_STAGE_PROMPT: dict[DialogueState, PromptName] = {
    DialogueState.PIN: "enter_pin",
    DialogueState.NUMBER: "enter_number",
}
_DIAL_FAILURE_PROMPT: dict[DialFailure, PromptName] = {
    DialFailure.NOT_ALLOWED: "not_allowed",
    DialFailure.UNAVAILABLE: "number_unavailable",
    DialFailure.LIMIT_REACHED: "limit_reached",
}
_KEYS = frozenset("0123456789*#")
_IGNORED_KEYS = frozenset("ABCDabcd")


class AccessNumberDialogue:
    """One access-number call, from the answer to the Dial (or the hang-up).

    ``skip_pin_for``: the caller ID is registered to this employee and the tenant lets such callers skip
    the PIN.  ``dialed``: ``(pin, destination)`` from :func:`parse_dialed_access`.  ``guard``: the shared
    brute-force guard, with this call's ``caller_id`` and (for direct SIP peers only) ``source_address``.
    """

    def __init__(
        self,
        *,
        config: DialogueConfig | None = None,
        skip_pin_for: int | None = None,
        dialed: tuple[str, str] | None = None,
        guard: PinGuard | None = None,
        caller_id: str | None = None,
        source_address: str | None = None,
    ) -> None:
        self.config = config or DialogueConfig()
        self._skip_pin_for = skip_pin_for
        self._dialed = dialed
        self._guard = guard
        self.sources = pin_sources(caller_id, source_address)
        self.state = DialogueState.IDLE
        self.employee_ref: int | None = None
        self.hangup_reason: HangupReason | None = None
        self.pin_attempts = 0
        self.dial_attempts = 0
        self._entry = ""
        self._typeahead = ""
        self._deadline: float | None = None
        self._playing = False
        self._reprompted = False  # the one reprompt of the current stage is used
        self._awaiting_pin = False
        self._actions: deque[Action] = deque()

    # Outputs ---------------------------------------------------------------------------------------------

    def next_action(self) -> Action | None:
        return self._actions.popleft() if self._actions else None

    def drain_actions(self) -> list[Action]:
        actions = list(self._actions)
        self._actions.clear()
        return actions

    def get_timer(self) -> float | None:
        """The one deadline (same clock as ``now``) at which :meth:`timer` must be called, or None."""
        return self._deadline

    # Inputs ----------------------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The call is answered and media flows."""
        if self.state is not DialogueState.IDLE:
            raise AccessNumberError("start() called twice")
        if self._guard is not None and self._guard.is_blocked(self.sources, now):
            # No Blocked action: the ban was reported when it began; a repeat caller is not a new alert.
            self._hangup(HangupReason.BLOCKED)
        elif self._dialed is not None:
            pin, destination = self._dialed
            self._typeahead = f"{destination}#"
            self._submit_pin(pin, now)
        elif self._skip_pin_for is not None:
            self.employee_ref = self._skip_pin_for
            self._enter_stage(DialogueState.NUMBER, now)
        else:
            self._enter_stage(DialogueState.PIN, now)

    def dtmf(self, digit: str, now: float) -> None:
        """One key press (RFC 4733 event or SIP INFO), reported once per press."""
        if digit in _IGNORED_KEYS:
            return
        if digit not in _KEYS:
            raise ValueError(f"not a DTMF key: {digit!r}")
        if self.state is DialogueState.IDLE:
            raise AccessNumberError("dtmf() before start()")
        if self.state is DialogueState.VERIFYING:
            if len(self._typeahead) <= self.config.max_entry:
                self._typeahead += digit
        elif self.state in _STAGE_PROMPT:
            if self._playing:
                self._playing = False
                self._actions.append(StopPlayback())
            self._key(digit, now)

    def play_finished(self, now: float) -> None:
        """The playback queue ran dry."""
        self._playing = False
        if self.state is DialogueState.CLOSING:
            self._finish()
        elif self.state in _STAGE_PROMPT and not self._entry:
            self._deadline = now + self.config.first_digit_timeout

    def pin_result(self, ok: bool, employee_ref: int | None, now: float, *, targets: Iterable[int] = ()) -> None:
        """The answer to a :class:`VerifyPin`: ``ok`` with the employee it belongs to, or not ``ok`` with
        the ``targets``, the employees whose PIN the entry was checked against (the failure counts
        against each)."""
        if not self._awaiting_pin:
            raise AccessNumberError("pin_result() without a VerifyPin")
        self._awaiting_pin = False
        if self.state is not DialogueState.VERIFYING:
            return  # we gave up waiting (verify timeout): the call is ending anyway
        if ok:
            if employee_ref is None:
                raise ValueError("a right PIN must name its employee")
            self.employee_ref = employee_ref
            self._pin_accepted(now)
        else:
            self._pin_rejected(now, tuple(employee_source(t) for t in targets))

    def dial_failed(self, reason: DialFailure, now: float) -> None:
        """The :class:`Dial` could not be placed; the dialogue offers another number or says goodbye."""
        if self.state is not DialogueState.DIALING:
            raise AccessNumberError("dial_failed() without a Dial")
        prompt = _DIAL_FAILURE_PROMPT[reason]
        if reason is DialFailure.LIMIT_REACHED:
            self._close(now, HangupReason.LIMIT_REACHED, prompt)
        elif self.dial_attempts >= self.config.max_dial_attempts:
            self._close(now, HangupReason.DIAL_FAILED, prompt, "goodbye")
        else:
            self.state = DialogueState.NUMBER
            self._prompt(now, prompt)

    def timer(self, now: float) -> None:
        """Call at (or after) :meth:`get_timer`; an early call does nothing."""
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        if self.state in _STAGE_PROMPT:
            if self._reprompted:
                self._close(now, HangupReason.TIMEOUT, "goodbye")
            else:
                self._reprompted = True
                self._prompt(now)
        elif self.state is DialogueState.VERIFYING:
            self._close(now, HangupReason.VERIFY_TIMEOUT, "goodbye")
        elif self.state is DialogueState.CLOSING:
            self._finish()

    # Internals -------------------------------------------------------------------------------------------

    def _key(self, digit: str, now: float) -> None:
        if digit == "*":
            self._entry = ""
            self._deadline = now + self.config.first_digit_timeout
        elif digit == "#":
            if not self._entry:
                # A stray '#' (a double press, or '#' before anything): keep waiting for digits.
                self._deadline = now + self.config.first_digit_timeout
                return
            entry, self._entry = self._entry, ""
            if self.state is DialogueState.PIN:
                self._submit_pin(entry, now)
            else:
                self._dial(entry)
        else:
            if len(self._entry) < self.config.max_entry:
                self._entry += digit
            self._deadline = now + self.config.inter_digit_timeout

    def _submit_pin(self, pin: str, now: float) -> None:
        # Re-check at every attempt: a parallel call from the same source may have caused a ban meanwhile,
        # and calls must not keep guessing under it.
        if self._guard is not None and self._guard.is_blocked(self.sources, now):
            self._close(now, HangupReason.BLOCKED, "blocked")
            return
        self.state = DialogueState.VERIFYING
        self._awaiting_pin = True
        self._deadline = now + self.config.verify_timeout
        self._actions.append(VerifyPin(pin=pin))

    def _pin_accepted(self, now: float) -> None:
        typeahead, self._typeahead = self._typeahead, ""
        self.state = DialogueState.NUMBER
        self._reprompted = False
        self._entry = ""
        self._deadline = now + self.config.first_digit_timeout
        for digit in typeahead:
            if self.state is not DialogueState.NUMBER:
                break  # dialed: anything after the '#' is not ours
            self._key(digit, now)
        if self.state is DialogueState.NUMBER and not self._entry:
            self._prompt(now)

    def _pin_rejected(self, now: float, targets: tuple[PinSource, ...]) -> None:
        self.pin_attempts += 1
        self._typeahead = ""  # never dial what was typed after a wrong PIN
        newly_blocked = self._guard.record_failure(self.sources + targets, now) if self._guard is not None else ()
        for source in newly_blocked:
            self._actions.append(Alarm() if source.kind is SourceKind.ALL else Blocked(source=source))
        if self._guard is not None and self._guard.is_blocked(self.sources, now):
            self._close(now, HangupReason.BLOCKED, "blocked")
        elif self.pin_attempts >= self.config.max_pin_attempts:
            self._close(now, HangupReason.TOO_MANY_ATTEMPTS, "blocked")
        else:
            self.state = DialogueState.PIN
            self._prompt(now, "wrong_pin")

    def _dial(self, destination: str) -> None:
        assert self.employee_ref is not None  # NUMBER is entered only with a known employee
        self.dial_attempts += 1
        self.state = DialogueState.DIALING
        self._deadline = None
        self._play("connecting")
        self._actions.append(Dial(destination=destination, employee_ref=self.employee_ref))

    def _enter_stage(self, state: DialogueState, now: float) -> None:
        self.state = state
        self._reprompted = False
        self._prompt(now)

    def _prompt(self, now: float, *before: PromptName) -> None:
        """Clear the entry and (re)ask for it, after the ``before`` prompts."""
        self._entry = ""
        self._play(*before, _STAGE_PROMPT[self.state])
        self._deadline = now + self.config.first_digit_timeout

    def _play(self, *prompts: PromptName) -> None:
        for prompt in prompts:
            self._actions.append(Play(prompt=prompt))
        self._playing = self._playing or bool(prompts)

    def _close(self, now: float, reason: HangupReason, *prompts: PromptName) -> None:
        """Say the last prompts, then hang up (on play_finished, or at the closing timeout)."""
        self.state = DialogueState.CLOSING
        self.hangup_reason = reason
        self._entry = self._typeahead = ""
        self._play(*prompts)
        self._deadline = now + self.config.closing_timeout

    def _finish(self) -> None:
        assert self.hangup_reason is not None
        self._hangup(self.hangup_reason)

    def _hangup(self, reason: HangupReason) -> None:
        self.state = DialogueState.CLOSED
        self.hangup_reason = reason
        self._deadline = None
        self._actions.append(Hangup(reason=reason))


# Dialed form -------------------------------------------------------------------------------------------

# <access number>*<PIN entry>*<destination>; RFC 3966 parameters (";phone-context=…") may follow.
_DIALED = re.compile(r"(\+?[0-9]{1,20})\*([0-9]{1,24})\*(\+?[0-9]{1,24})")


def split_dialed_access(user_part: str) -> tuple[str, str, str] | None:
    """``(access number, PIN entry, destination)`` from an *unescaped* Request-URI user part of the form
    ``<access number>*<PIN>*<destination>``, or None when it is not of that form."""
    match = _DIALED.fullmatch(user_part.split(";", 1)[0])
    if match is None:
        return None
    return match[1], match[2], match[3]


def parse_dialed_access(user_part: str) -> tuple[str, str] | None:
    """``(pin, destination)`` of the dialed form (see the module docstring), or None.

    >>> parse_dialed_access("74951230000*1014321*84951234567")
    ('1014321', '84951234567')
    """
    parts = split_dialed_access(user_part)
    return None if parts is None else (parts[1], parts[2])
