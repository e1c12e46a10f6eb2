"""Queue and agent KPIs from the queue log: the definitions, in one place.

The historic reports and the live wallboard compute these from :class:`~zvonok.callcenter.log.QueueLogEntry`
rows (the reports by SQL over the same rows; this module is the reference they are tested against).

Per queue, over the entries of an interval:

* **offered** — callers who entered the line (ENTERQUEUE). Callers refused at the door (FULL, JOINEMPTY)
  are **refused**, not offered.
* **answered** — CONNECT; **abandoned** — ABANDON (the caller hung up while in line);
  **overflowed** — EXITWITHTIMEOUT and EXITEMPTY (sent to the overflow destination);
  **callbacks** — CALLBACK requests (their wait ends with their CONNECT).
* **service level** — answered with a wait (hold) of at most the threshold, divided by the callers whose
  wait ended in the interval: answered + abandoned + overflowed. None when no wait ended.
* **ASA** (average speed of answer) — the mean hold of the answered calls.
* **AHT** (average handle time) — (talk time + after-call work) per handled call: talk from
  COMPLETEAGENT, COMPLETECALLER and TRANSFER, after-call work from the AGENTSTATUS entries that left
  WRAP_UP for this queue's call, divided by the number of those completions.
* **abandon rate** — abandoned / offered.

Per agent (or all agents), from AGENTSTATUS durations (a state's time is counted when the state ends):

* **occupancy** — time working on contacts (ringing, on a call, wrap-up) divided by that time plus the
  time available and idle. Not-ready and offline time count in neither.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import log as ql
from .agents import BUSY, AgentStatus
from .log import QueueLogEntry

_COMPLETIONS = frozenset({ql.COMPLETEAGENT, ql.COMPLETECALLER, ql.TRANSFER})
_BUSY = frozenset(status.value for status in BUSY)


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueKpi:
    offered: int
    refused: int
    answered: int
    abandoned: int
    overflowed: int
    callbacks: int
    answered_in_time: int
    service_level: float | None  # 0..1
    asa: float | None  # seconds
    aht: float | None  # seconds
    abandon_rate: float | None  # 0..1
    talk_time: float
    wrap_up_time: float


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentKpi:
    calls: int
    talk_time: float
    busy_time: float
    available_time: float
    not_ready_time: float
    occupancy: float | None  # 0..1


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def queue_kpis(entries: Iterable[QueueLogEntry], queue_id: int, *, service_level: float) -> QueueKpi:
    offered = refused = answered = abandoned = overflowed = callbacks = in_time = completed = 0
    hold = talk = wrap = 0.0
    for e in entries:
        if e.queue_id != queue_id:
            continue
        event = e.event
        if event == ql.ENTERQUEUE:
            offered += 1
        elif event in (ql.FULL, ql.JOINEMPTY):
            refused += 1
        elif event == ql.CONNECT:
            answered += 1
            hold += float(e.data["hold"])
            in_time += float(e.data["hold"]) <= service_level
        elif event == ql.ABANDON:
            abandoned += 1
        elif event in (ql.EXITWITHTIMEOUT, ql.EXITEMPTY):
            overflowed += 1
        elif event == ql.CALLBACK:
            callbacks += 1
        elif event in _COMPLETIONS:
            completed += 1
            talk += float(e.data["talk"])
        elif event == ql.AGENTSTATUS and e.data["from"] == AgentStatus.WRAP_UP.value:
            wrap += float(e.data["seconds"])
    ended = answered + abandoned + overflowed
    return QueueKpi(offered=offered, refused=refused, answered=answered, abandoned=abandoned, overflowed=overflowed,
                    callbacks=callbacks, answered_in_time=in_time, service_level=_ratio(in_time, ended),
                    asa=_ratio(hold, answered), aht=_ratio(talk + wrap, completed),
                    abandon_rate=_ratio(abandoned, offered), talk_time=talk, wrap_up_time=wrap)


def agent_kpis(entries: Iterable[QueueLogEntry], agent_id: int | None = None) -> AgentKpi:
    """One agent's figures (``agent_id``), or every agent's together (None)."""
    calls = 0
    talk = busy = available = not_ready = 0.0
    for e in entries:
        if e.agent_id is None or (agent_id is not None and e.agent_id != agent_id):
            continue
        if e.event in _COMPLETIONS:
            calls += 1
            talk += float(e.data["talk"])
        elif e.event == ql.AGENTSTATUS:
            seconds = float(e.data["seconds"])
            state = e.data["from"]
            if state in _BUSY:
                busy += seconds
            elif state == AgentStatus.AVAILABLE.value:
                available += seconds
            elif state == AgentStatus.NOT_READY.value:
                not_ready += seconds
    return AgentKpi(calls=calls, talk_time=talk, busy_time=busy, available_time=available,
                    not_ready_time=not_ready, occupancy=_ratio(busy, busy + available))
