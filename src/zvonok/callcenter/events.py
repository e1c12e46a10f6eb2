"""Call-center events.

:class:`QueueChanged` and :class:`AgentChanged` are domain events (emitted in the transaction, delivered
after the commit): the runtime (:mod:`.runtime`) reloads the tenant's queues, or one agent's skills and
memberships. :class:`AgentStateChanged` and :class:`QueueStateChanged` are live state published on the
bus by the runtime; the websocket gives them to the tenant's admins, and an agent their own
:class:`AgentStateChanged` (:mod:`zvonok.api.ws`).
"""

from __future__ import annotations

from dataclasses import dataclass

from zvonok.bus import register_event


@register_event
@dataclass(frozen=True, kw_only=True)
class QueueChanged:
    tenant_id: int
    queue_id: int
    action: str  # created | changed | deleted | members
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True)
class AgentChanged:
    """An employee's skills changed (their memberships change with :class:`QueueChanged`)."""

    tenant_id: int
    employee_id: int
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True)
class AgentStateChanged:
    tenant_id: int
    employee_id: int
    status: str  # zvonok.callcenter.agents.AgentStatus
    reason: str | None = None
    queues: tuple[int, ...] = ()
    at: float = 0.0  # epoch seconds
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True)
class QueueStateChanged:
    tenant_id: int
    queue_id: int
    waiting: int
    callbacks: int
    longest_wait: float
    # logged-in agents by status (an agent on a non-queue call counts as busy)
    available: int = 0
    busy: int = 0
    not_ready: int = 0
    ringing: int = 0
    on_call: int = 0
    wrap_up: int = 0
    at: float = 0.0
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True)
class AgentPresenceChanged:
    """Several nodes: ``node`` wrote the agent's ``agent_presence`` row (a domain event: every other node
    reads the row and applies it; the writer ignores its own)."""

    tenant_id: int
    employee_id: int
    node: str
    version: int = 1


@register_event
@dataclass(frozen=True, kw_only=True)
class AgentYielded:
    """Several nodes: ``node`` let the agent go because another node's caller of the queue waited longer (a
    domain event: the other nodes read the claims at once, and the node with that caller offers it)."""

    tenant_id: int
    employee_id: int
    node: str
    version: int = 1
