"""Tables of the call center: queues, agents' skills, who may log in to which queue, the tenant's
not-ready reasons, and the queue log the historic reports are computed from.

A queue's number is dialed like an extension (2-8 digits): unique among the tenant's queues and never an
extension's or a conference room's number. Skill requirements, relaxations, the VIP callers and the overflow
destination are JSON (checked on write by :mod:`.schemas` / :mod:`.service`).

``queue_log`` outlives the queues and agents it names (no foreign keys on ``queue_id`` / ``agent_id``:
a report over last year must still count a deleted queue's calls); ``at`` is wall-clock epoch seconds, the
unit the reports bucket by (15 min, hour, day).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from zvonok.storage.base import Base, TenantScoped, Timestamped


class CallQueue(TenantScoped, Timestamped, Base):
    __tablename__ = "queues"
    __table_args__ = (UniqueConstraint("tenant_id", "number"), UniqueConstraint("tenant_id", "name"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    number: Mapped[str] = mapped_column(String(8))
    strategy: Mapped[str] = mapped_column(String(20), default="longest_idle")
    requirements: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{"skill", "min_level"}]
    relaxations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{"after", "min_level"}]
    ring_timeout: Mapped[int] = mapped_column(Integer, default=15)
    retry: Mapped[int] = mapped_column(Integer, default=5)
    wrap_up: Mapped[int] = mapped_column(Integer, default=10)
    max_waiting: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_wait: Mapped[int | None] = mapped_column(Integer, nullable=True)
    join_empty: Mapped[bool] = mapped_column(Boolean, default=True)
    leave_empty: Mapped[bool] = mapped_column(Boolean, default=False)
    service_level: Mapped[int] = mapped_column(Integer, default=20)
    announce_every: Mapped[int] = mapped_column(Integer, default=0)
    max_no_answer: Mapped[int] = mapped_column(Integer, default=3)
    weight: Mapped[int] = mapped_column(Integer, default=0)
    overflow: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # {"kind": ..., ...}
    callback_key: Mapped[str | None] = mapped_column(String(1), nullable=True)  # a DTMF key; None: no callbacks
    callback_attempts: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    callback_retry: Mapped[int] = mapped_column(Integer, default=60, server_default="60")  # s between attempts
    # True: callers from abroad may be called back too (never premium-rate or emergency numbers)
    callback_abroad: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # callers offered before others: [{"number": "+74951234567", "priority": 5}, {"prefix": "+7495", ...}]
    vip_numbers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    # what a waiting caller hears between announcements: "music" (the company's music on hold) or "ringback"
    hold_sound: Mapped[str] = mapped_column(String(10), default="music", server_default="music")


class AgentSkill(TenantScoped, Base):
    __tablename__ = "agent_skills"
    __table_args__ = (UniqueConstraint("employee_id", "skill"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="CASCADE"), index=True)
    skill: Mapped[str] = mapped_column(String(40))
    level: Mapped[int] = mapped_column(Integer)  # 1..10


class QueueMember(TenantScoped, Base):
    """An employee who may log in to a queue."""

    __tablename__ = "queue_members"
    __table_args__ = (UniqueConstraint("queue_id", "employee_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"), index=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="CASCADE"), index=True)


class QueueSupervisor(TenantScoped, Base):
    """A supervisor assigned to a queue: with at least one such row a supervisor's call-center powers
    (wallboard, reports, agents' states, monitoring) reach only these queues and their agents
    (:mod:`.scope`); with none, the whole tenant."""

    __tablename__ = "queue_supervisors"
    __table_args__ = (UniqueConstraint("queue_id", "employee_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"), index=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="CASCADE"), index=True)


class NotReadyReason(TenantScoped, Base):
    """A company's reason an agent is not ready. ``code`` (1-4 digits, or None) is what the agent dials after
    ``*47`` to pause with this reason from the phone (:mod:`zvonok.telephony.agent_codes`); unique in the
    company like the name (NULLs are distinct in a UNIQUE constraint on both backends: many reasons have none)."""

    __tablename__ = "not_ready_reasons"
    __table_args__ = (UniqueConstraint("tenant_id", "name"), UniqueConstraint("tenant_id", "code"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    code: Mapped[str | None] = mapped_column(String(4), nullable=True)  # a string: "01" and "1" differ


class QueueLogRow(Base):
    __tablename__ = "queue_log"
    __table_args__ = (
        Index("ix_queue_log_tenant_at", "tenant_id", "at"),  # a report over all queues or agents
        Index("ix_queue_log_tenant_queue_at", "tenant_id", "queue_id", "at"),
        Index("ix_queue_log_tenant_agent_at", "tenant_id", "agent_id", "at"),
        Index("ix_queue_log_call_id", "call_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float(precision=53))  # epoch seconds
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    queue_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    call_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    agent_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    event: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AgentPresence(TenantScoped, Base):
    """Several nodes (issue 14): an agent's login and pause as every node must see them — the queues it is
    logged in to and its not-ready reason (None: ready). Written by the node where it changed, announced to
    the others with :class:`~zvonok.callcenter.events.AgentPresenceChanged`, read by a node at its start.
    Offers, calls and wrap-up are not here: they are the node's that has the agent (``call_holds``); the
    strategies' counters are (written by the node that completed a call or made a round-robin offer)."""

    __tablename__ = "agent_presence"

    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="CASCADE"), primary_key=True)
    queues: Mapped[list[int]] = mapped_column(JSON, default=list)
    reason: Mapped[str | None] = mapped_column(String(100), nullable=True)
    node: Mapped[str] = mapped_column(String(64))  # who wrote it last
    # the ring strategies' memory across nodes: queue calls handled and their talk time (fewest-calls,
    # least-talk-time), the agent's last round-robin offer (its queue and wall-clock time)
    calls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    talk_time: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    offered_queue: Mapped[int | None] = mapped_column(Integer, nullable=True)
    offered_at: Mapped[float | None] = mapped_column(Float, nullable=True)


CALLBACK_STATES = ("waiting", "dialing", "done", "failed", "cancelled")
OPEN_CALLBACK_STATES = ("waiting", "dialing")


class QueueCallbackRow(TenantScoped, Timestamped, Base):
    """A caller's callback request, kept so that a restart does not lose it (:mod:`.callbacks`).

    ``waiting``: holding its place in line (an agent's phone may ring for it); ``dialing``: the agent answered
    and the customer is being called; then ``done`` (the customer answered), ``failed`` (given up after the
    queue's attempts, or a number that cannot be called) or ``cancelled`` (by a supervisor, or its queue went
    away). The place in line is the center's order: the queue's weight, then ``priority``, then ``joined_at``
    (wall-clock epoch seconds when the caller joined the line), then ``id``. ``owner``: several nodes, the
    node that keeps the request in its line (``SharedHolds.node``; another node takes it over when that node is
    gone); None: one node alone, or nobody's yet (the next node that starts or sweeps takes it)."""

    __tablename__ = "queue_callbacks"
    __table_args__ = (
        CheckConstraint("state IN ('waiting', 'dialing', 'done', 'failed', 'cancelled')", name="state"),
        Index("ix_queue_callbacks_queue_state", "queue_id", "state"),
        Index("ix_queue_callbacks_state_owner", "state", "owner"),  # the sweep's takeover look-up
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"))
    call_id: Mapped[str] = mapped_column(String(100), index=True)  # the caller's call: the center's key
    number: Mapped[str] = mapped_column(String(64))  # whom to call back
    priority: Mapped[int] = mapped_column(Integer, default=0)
    joined_at: Mapped[float] = mapped_column(Float(precision=53))  # epoch seconds: the place in line
    requested_at: Mapped[float] = mapped_column(Float(precision=53))  # epoch seconds: the key pressed
    position: Mapped[int] = mapped_column(Integer)  # the place in line when requested (1: next)
    state: Mapped[str] = mapped_column(String(10), default="waiting")
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed calls to the customer
    last_result: Mapped[str | None] = mapped_column(String(40), nullable=True)  # busy, no_answer, cancelled ...
    retry_at: Mapped[float | None] = mapped_column(Float(precision=53), nullable=True)  # not offered before
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the node keeping it (several nodes)
