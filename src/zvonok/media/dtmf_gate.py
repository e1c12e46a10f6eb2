"""Withholding relayed keys that may begin a feature code (RFC 4733 events on a bridged leg).

Why: a leg that listens for an in-call feature code (``*3``, :mod:`zvonok.telephony.threeway`) would
otherwise relay the code's keys to the other party too. Asterisk and FreePBX hold back a key that may begin
a feature code (features.conf ``featuredigittimeout``) and pass it on only when no code follows; so does
this gate.

How it works. The owner (the media engine's leg) feeds every received telephone-event packet: its event
number, RTP timestamp and ``now``; one key press is one event, identified by its timestamp (RFC 4733
§2.5.1.2), and every packet of an event gets the verdict its first packet got:

* ``RELAY`` — nothing is withheld or waiting to be sent, and the key begins no code: pass the packet on.
* ``HOLD`` — not relayed: the key may begin (or continue) a code, or it comes after withheld keys that are
  being released (it must not overtake them), so the owner will send it again itself.
* ``DROP`` — not relayed, ever: the key completes a code (the withheld keys before it are dropped too), or
  the packet is a late one of an earlier event.

Withheld keys are *released* — queued for the owner to send as events of its own, in order — when a key
that continues no code arrives (the withheld ones and that key), or when :meth:`DtmfGate.handle_timer`
finds that ``timeout`` passed since the last packet of the last withheld key (:meth:`next_deadline`).
The owner sends them one at a time: :meth:`next_event` hands it the next one (None: the queue is empty
and relaying resumes) and :meth:`abandon` drops the queue when it cannot send (no peer any more).

A code that completes is matched at once, even when it also begins a longer configured code.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from enum import Enum

from .dtmf import DIGITS, digit_code
from .rtp import ts_delta


class Verdict(Enum):
    RELAY = "relay"
    HOLD = "hold"
    DROP = "drop"


def _key(event: int) -> str:
    """The character of an event in a code ("!" — never in one — for a flash or anything else)."""
    return DIGITS[event] if 0 <= event < len(DIGITS) else "!"


class DtmfGate:
    """Relay, withhold or drop each telephone-event packet of one leg (see the module doc)."""

    __slots__ = ("codes", "timeout", "_current", "_deadline", "_held", "_out", "_prefixes", "_sending",
                 "_verdict")

    def __init__(self, codes: Sequence[str], timeout: float) -> None:
        if not codes or timeout <= 0:
            raise ValueError("a DTMF gate needs at least one code and a positive timeout")
        for code in codes:
            for digit in code:
                digit_code(digit)  # raises for anything that is no DTMF key
        self.codes = frozenset(code.upper() for code in codes)
        self.timeout = timeout
        # every proper prefix of a code: a key sequence worth waiting for
        self._prefixes = frozenset(code[:i] for code in self.codes for i in range(1, len(code)))
        self._held: list[int] = []  # events withheld: they may begin a code
        self._deadline: float | None = None  # when the withheld events are released
        self._out: deque[int] = deque()  # released events, to be sent by the owner in order
        self._sending = False  # the owner is sending one (taken with next_event)
        self._current: int | None = None  # the timestamp of the newest event seen
        self._verdict = Verdict.RELAY  # the verdict of that event's packets

    @property
    def held(self) -> str:
        """The keys withheld now (may begin a code)."""
        return "".join(_key(event) for event in self._held)

    @property
    def pending(self) -> bool:
        """Released events wait to be sent and the owner is not sending one: it should start."""
        return bool(self._out) and not self._sending

    def feed(self, event: int, timestamp: int, now: float) -> Verdict:
        """One received telephone-event packet: its event number (RFC 4733 §3.2) and RTP timestamp."""
        current = self._current
        if current is not None and timestamp != current and ts_delta(timestamp, current) < 0:
            return Verdict.DROP  # a late packet of an earlier event (whose verdict is gone)
        if timestamp == current:
            if self._held and self._verdict is Verdict.HOLD:  # it is the last withheld one
                self._deadline = now + self.timeout  # the key is still down (or its end repeats)
            return self._verdict
        self._current = timestamp
        self._verdict = verdict = self._new_event(event, now)
        return verdict

    def _new_event(self, event: int, now: float) -> Verdict:
        typed = "".join(_key(e) for e in self._held) + _key(event)
        if typed in self.codes:
            self._held.clear()
            self._deadline = None
            return Verdict.DROP
        if typed in self._prefixes:
            self._held.append(event)
            self._deadline = now + self.timeout
            return Verdict.HOLD
        self._release()  # the withheld keys begin no code after all
        key = _key(event)
        if key in self.codes:  # a one-key code
            return Verdict.DROP
        if key in self._prefixes:
            self._held.append(event)
            self._deadline = now + self.timeout
            return Verdict.HOLD
        if self._out or self._sending:
            self._out.append(event)  # after the released ones: it must not overtake them
            return Verdict.HOLD
        return Verdict.RELAY

    def _release(self) -> None:
        self._out.extend(self._held)
        self._held.clear()
        self._deadline = None

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` should run (None: nothing withheld)."""
        return self._deadline

    def handle_timer(self, now: float) -> None:
        """No key followed the withheld ones in time: release them."""
        if self._deadline is not None and now >= self._deadline:
            self._release()

    def next_event(self) -> int | None:
        """The owner is ready to send: the next released event to send, or None (sending is over)."""
        if self._out:
            self._sending = True
            return self._out.popleft()
        self._sending = False
        return None

    def abandon(self) -> None:
        """The owner cannot send what was released (its peer is gone): forget it, relay again."""
        self._out.clear()
        self._sending = False
