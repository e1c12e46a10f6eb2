"""IVR (voice menu): the sans-I/O dialogue between a caller's keypad and a tree of menus.

A company's menus are data (:mod:`zvonok.ivr`); this object walks one caller through them and only
decides *what happens next*: the engine adapter (:mod:`zvonok.telephony.ivr`) plays the prompts, feeds
the keys and the time, and carries the caller to where the dialogue says.

How it works
------------
Inputs, each with ``now`` (a monotonic clock): :meth:`~IvrDialogue.start`, :meth:`~IvrDialogue.dtmf`,
:meth:`~IvrDialogue.play_finished`, :meth:`~IvrDialogue.timer`. Outputs are actions (frozen dataclasses)
drained with :meth:`~IvrDialogue.next_action`, carried out in order. One deadline,
:meth:`~IvrDialogue.get_timer`, covers both timers (the wait for a first key, counted from the end of the
prompt, or :data:`PROMPT_GUARD` after its start for an engine that never reports the end, and the inter-digit wait of a direct
dial).

=========  ==========================================  ==============================================
state      input                                       next state: actions
=========  ==========================================  ==============================================
(start)    —                                           MENU: Play(greeting of the first menu)
MENU       first key while the greeting plays          StopPlayback (barge-in), then the key
MENU       the repeat key (nothing typed yet)          MENU: StopPlayback?, Play(greeting)
MENU       a key with a target, no extension starts    the target (below)
           with it
MENU       digits that may still become an extension   COLLECTING (inter-digit timer)
COLLECTING a digit                                     entry grows; a whole extension no longer one
                                                       starts with: Transfer(extension)
COLLECTING ``#`` or the inter-digit timeout            an extension: Transfer; a key: its target;
                                                       else invalid
MENU       the first-key timeout                       retries left: Play(greeting); else the
                                                       timeout target
MENU       a key with no target                        invalid: retries left: Play(greeting); else
                                                       the invalid target
(target)   menu                                        MENU of that menu: Play(its greeting)
(target)   hang up / none configured                   CLOSED: Hangup
(target)   extension, ring, conference, external       DONE: StopPlayback, Transfer(target)
=========  ==========================================  ==============================================

Retries count per menu visit: timeouts and invalid keys share them (``retries`` = how many times the
greeting is played again before the final target). Keys A-D are ignored. A menu cycle (menu 1 → menu
2 → menu 1 on timeouts) is refused by validation; as a last guard the dialogue hangs up after
:data:`MAX_HOPS` menu changes without a key.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Action", "Hangup", "IvrDialogue", "IvrError", "MAX_HOPS", "MenuSpec", "Play", "State", "StopPlayback",
    "Target", "Transfer",
]

MAX_HOPS = 20  # menu changes without a caller's key: a cycle that slipped past validation ends here
PROMPT_GUARD = 120.0  # seconds: the longest greeting we wait out before counting the first-key timeout
KEYS = frozenset("0123456789*#")


class IvrError(Exception):
    """The engine used the dialogue wrongly (e.g. an unknown menu id)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where a key (or a timeout) goes: ``kind`` is extension, ring, conference, external, queue, menu, fax, hangup."""

    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class MenuSpec:
    id: int
    prompt: str  # what the engine plays (a file it resolves); "" = no greeting
    keys: Mapping[str, Target] = field(default_factory=dict)
    direct_dial: bool = False
    timeout: float = 5.0  # seconds for the first key after the greeting
    digit_timeout: float = 3.0  # seconds between the digits of a direct dial
    retries: int = 2
    repeat_key: str | None = None
    timeout_target: Target | None = None  # None: hang up
    invalid_target: Target | None = None


class State(enum.Enum):
    IDLE = "idle"
    MENU = "menu"
    COLLECTING = "collecting"
    DONE = "done"  # transferred
    CLOSED = "closed"  # hung up


@dataclass(frozen=True, slots=True, kw_only=True)
class Play:
    prompt: str
    menu_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StopPlayback:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    target: Target
    menu_id: int  # the menu the caller left from
    reason: str = "caller_choice"  # or "timeout" / "invalid": the menu's final target after the last try


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup:
    reason: str  # "caller_choice", "timeout", "invalid", "loop"


Action = Play | StopPlayback | Transfer | Hangup


class IvrDialogue:
    def __init__(self, menus: Mapping[int, MenuSpec], first: int, *, extensions: frozenset[str] = frozenset()) -> None:
        if first not in menus:
            raise IvrError(f"unknown menu {first}")
        self.menus = menus
        self.extensions = extensions  # numbers a direct dial may reach
        self.state = State.IDLE
        self.menu = menus[first]
        self.entry = ""
        self.failures = 0  # timeouts and invalid keys in this menu visit
        self.hops = 0  # menu changes since the caller's last key
        self.playing = False
        self.visited: list[int] = []  # the menus the caller went through, in order (logs, CDR notes)
        self._deadline: float | None = None
        self._actions: deque[Action] = deque()

    # --- outputs ---------------------------------------------------------------------------------------

    def next_action(self) -> Action | None:
        return self._actions.popleft() if self._actions else None

    def get_timer(self) -> float | None:
        return self._deadline if self.state in (State.MENU, State.COLLECTING) else None

    # --- inputs ----------------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        if self.state is not State.IDLE:
            raise IvrError("started twice")
        self._enter(self.menu, now)

    def play_finished(self, now: float) -> None:
        self.playing = False
        if self.state is State.MENU and not self.entry:
            self._deadline = now + self.menu.timeout

    def dtmf(self, digit: str, now: float) -> None:
        if digit not in KEYS or self.state not in (State.MENU, State.COLLECTING):
            return
        self.hops = 0
        if self.playing:
            self._stop()
        menu = self.menu
        if self.state is State.MENU:
            if digit == menu.repeat_key:
                self._replay(now)
                return
            if menu.direct_dial and digit not in "*#" and self._prefix(digit):
                self.entry = digit
                self.state = State.COLLECTING
                self._deadline = now + menu.digit_timeout
                return
            self._choose(digit, now)
            return
        # COLLECTING
        if digit == "#":
            self._collected(now)
            return
        self.entry += digit
        if self.entry in self.extensions and not self._prefix(self.entry, longer=True):
            self._collected(now)
        elif not self._prefix(self.entry):
            self._collected(now)  # nothing can start with this: decide now (an invalid entry)
        else:
            self._deadline = now + menu.digit_timeout

    def timer(self, now: float) -> None:
        if self._deadline is None or now < self._deadline:
            return
        if self.state is State.COLLECTING:
            self._collected(now)
        elif self.state is State.MENU:
            self._fail(self.menu.timeout_target, "timeout", now)

    # --- internals -------------------------------------------------------------------------------------

    def _prefix(self, entry: str, *, longer: bool = False) -> bool:
        return any(n.startswith(entry) and (not longer or len(n) > len(entry)) for n in self.extensions)

    def _collected(self, now: float) -> None:
        entry, self.entry = self.entry, ""
        self.state = State.MENU
        if entry in self.extensions:
            self._go(Target(kind="extension", payload={"number": entry}), now)
        elif len(entry) == 1:
            self._choose(entry, now)
        else:
            self._fail(self.menu.invalid_target, "invalid", now)

    def _choose(self, digit: str, now: float) -> None:
        target = self.menu.keys.get(digit)
        if target is None:
            self._fail(self.menu.invalid_target, "invalid", now)
        else:
            self._go(target, now)

    def _fail(self, final: Target | None, reason: str, now: float) -> None:
        self.failures += 1
        if self.failures <= self.menu.retries:
            self._replay(now)
            return
        self._go(final or Target(kind="hangup"), now, reason=reason)

    def _go(self, target: Target, now: float, *, reason: str = "caller_choice") -> None:
        if target.kind == "menu":
            menu = self.menus.get(int(target.payload.get("menu", -1)))
            self.hops += 1
            if menu is None or self.hops > MAX_HOPS:
                self._close("loop" if menu is not None else "invalid")
                return
            if self.playing:
                self._stop()
            self._enter(menu, now)
            return
        if target.kind == "hangup":
            self._close(reason)
            return
        if self.playing:
            self._stop()
        self.state = State.DONE
        self._deadline = None
        self._actions.append(Transfer(target=target, menu_id=self.menu.id, reason=reason))

    def _enter(self, menu: MenuSpec, now: float) -> None:
        self.menu = menu
        self.visited.append(menu.id)
        self.failures = 0
        self.entry = ""
        self.state = State.MENU
        self._replay(now)

    def _replay(self, now: float) -> None:
        if self.playing:
            self._stop()
        self.state = State.MENU
        self.entry = ""
        self._deadline = now + self.menu.timeout
        if self.menu.prompt:
            # the wait starts when the greeting ends (play_finished); the guard only saves a caller whose
            # engine never reports the end
            self._deadline = now + PROMPT_GUARD + self.menu.timeout
            self.playing = True
            self._actions.append(Play(prompt=self.menu.prompt, menu_id=self.menu.id))

    def _stop(self) -> None:
        self.playing = False
        self._actions.append(StopPlayback())

    def _close(self, reason: str) -> None:
        if self.playing:
            self._stop()
        self.state = State.CLOSED
        self._deadline = None
        self._actions.append(Hangup(reason=reason))
