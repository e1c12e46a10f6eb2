"""Supervisor monitoring as settings of a mixing bridge's hears/heard-by matrix (sans-I/O).

How it works
------------
A monitored call is three parties in one mixing bridge (:class:`~zvonok.media.mixer.Mixer`): the
customer, the agent (the extension being monitored) and the supervisor. Each mode is one 3 x 3 0/1
matrix "listener hears speaker" (never oneself):

* **listen** — the supervisor hears the agent and the customer; nobody hears the supervisor;
* **whisper** — the agent hears the supervisor and the customer; the customer hears only the agent
  (the supervisor still hears both);
* **barge** — everyone hears everyone (a three-way call).

:func:`overrides` gives, per party, the full row of explicit overrides for a mode: setting every
off-diagonal cell on every switch means a mode change never depends on the previous mode (no stale
override survives a listen → barge → whisper sequence). DTMF keys from the supervisor switch modes as
Asterisk's ChanSpy does: 4 listen, 5 whisper, 6 barge (:func:`mode_for_key`).

:class:`MonitorSession` keeps a session's mode and its audit trail: every change is an
:class:`AuditEntry` (who, whom, when, mode), with the clock injected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "AuditEntry",
    "MonitorMode",
    "MonitorSession",
    "Role",
    "hears",
    "mode_for_key",
    "overrides",
]


class MonitorMode(StrEnum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


class Role(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    SUPERVISOR = "supervisor"


_C, _A, _S = Role.CUSTOMER, Role.AGENT, Role.SUPERVISOR

# the cells that differ from "everyone hears everyone": (listener, speaker) pairs that are silent
_SILENT: Mapping[MonitorMode, frozenset[tuple[Role, Role]]] = {
    MonitorMode.LISTEN: frozenset({(_C, _S), (_A, _S)}),
    MonitorMode.WHISPER: frozenset({(_C, _S)}),
    MonitorMode.BARGE: frozenset(),
}

_KEYS: Mapping[str, MonitorMode] = {"4": MonitorMode.LISTEN, "5": MonitorMode.WHISPER, "6": MonitorMode.BARGE}


def hears(mode: MonitorMode, listener: Role, speaker: Role) -> bool:
    """One cell of the mode's matrix."""
    return listener is not speaker and (listener, speaker) not in _SILENT[mode]


def overrides(mode: MonitorMode, keys: Mapping[Role, str]) -> dict[str, dict[str, bool]]:
    """For each party's key (endpoint id), the ``hears`` overrides of its whole row in ``mode``: what
    :meth:`MediaEngine.set_matrix` takes for that party."""
    return {
        keys[listener]: {
            keys[speaker]: hears(mode, listener, speaker) for speaker in Role if speaker is not listener
        }
        for listener in Role
    }


def mode_for_key(digit: str) -> MonitorMode | None:
    """The mode a supervisor's key selects (ChanSpy's 4/5/6), None for any other key."""
    return _KEYS.get(digit)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    action: str  # "start", "mode", "stop", "refused"
    mode: MonitorMode | None
    at: float


@dataclass(slots=True, kw_only=True)
class MonitorSession:
    """One supervisor's session on one call: its mode now and every change, in order."""

    id: str
    tenant_id: int
    call_id: str  # the monitored call
    supervisor: str  # the supervisor's extension number
    agent: str  # the monitored extension number
    mode: MonitorMode
    started_at: float
    ended_at: float | None = None
    trail: list[AuditEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.trail.append(AuditEntry(action="start", mode=self.mode, at=self.started_at))

    @property
    def active(self) -> bool:
        return self.ended_at is None

    def switch(self, mode: MonitorMode, now: float) -> AuditEntry | None:
        """Change the mode; None when it is the mode already (nothing to apply, nothing audited)."""
        if not self.active:
            raise ValueError(f"monitor session {self.id} has ended")
        if mode is self.mode:
            return None
        self.mode = mode
        entry = AuditEntry(action="mode", mode=mode, at=now)
        self.trail.append(entry)
        return entry

    def stop(self, now: float) -> AuditEntry | None:
        """End the session (again: nothing)."""
        if not self.active:
            return None
        self.ended_at = now
        entry = AuditEntry(action="stop", mode=self.mode, at=now)
        self.trail.append(entry)
        return entry
