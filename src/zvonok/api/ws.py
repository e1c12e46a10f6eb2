"""Live call events over a websocket: ``/api/v1/tenants/{tenant_id}/events``.

Authentication is the REST API's: ``Authorization: Bearer <token>``, or ``?token=<token>`` for browsers
(which cannot set headers on a websocket). The server accepts the socket and then closes it with

* ``4401`` — no or an invalid token (also when a token is revoked, or the account deactivated, while
  the socket is open: access is re-checked at once when this process revokes any access
  (:class:`~zvonok.org.events.AccessRevoked`), and every ``reauth_interval`` seconds for changes made
  elsewhere);
* ``4404`` — the tenant is not the caller's (or does not exist: the two look the same, as in REST).

Each text frame is one event as :func:`zvonok.bus.serialize` renders it (``{"type": "CallStarted",
...}``): every call event of the tenant, ``CdrWritten``, ``RegistrationChanged`` (an extension's
devices registered or gone) and ``ForwardingChanged`` (an extension's forwarding or DND), and ``ScreenPop`` (the CRM card of a caller
ringing the viewer: only ever to that employee, admins included), the CRM's ``DealChanged``, ``TaskChanged``,
``TaskDue`` (a task's reminder), ``TaskEscalated`` and ``InvoiceOverdue`` (an employee gets those of their own
deals and tasks,
and the escalations addressed to them), and the call center's ``AgentStateChanged`` / ``QueueStateChanged``
(:mod:`zvonok.callcenter.runtime`). An admin
receives all of them; an employee the ``RegistrationChanged``, ``ForwardingChanged`` and ``AgentStateChanged`` of their own
extensions (never a colleague's) and the events of calls where they are a party (caller, a callee leg, or
a transfer target) — events of a call that arrive before the employee joins it are held and sent when
they do. An employee's extensions are looked up when the socket opens and again at each access re-check
(an extension given to them or taken away meanwhile counts from then on). Each connection has a
bounded (lossy) bus subscription: a client that cannot keep up loses events, and is told so by a
``{"type": "EventsDropped", "dropped": <total so far>}`` frame before the next event it gets.

With ``?wallboard=1`` an admin or supervisor also gets ``{"type": "Wallboard", ...}`` every second: the call
center's live state and today's KPIs per queue and agent, the body of ``GET .../callcenter/wallboard`` (a queue
supervisor's queues and agents only). Anyone else asking gets no such frames. The figures are computed once a
second per tenant and scope however many sockets watch (:class:`~zvonok.callcenter.wallboard.WallboardFeed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import select

from zvonok.api.auth import Principal, require_principal, tenant_access
from zvonok.bus import Bus, serialize
from zvonok.callcenter.events import AgentStateChanged, QueueStateChanged
from zvonok.callcenter.scope import scope_of
from zvonok.callcenter.wallboard import WallboardFeed
from zvonok.cdr.events import CdrWritten
from zvonok.crm.events import DealChanged, InvoiceOverdue, ScreenPop, TaskChanged, TaskDue, TaskEscalated
from zvonok.org.events import AccessRevoked, ForwardingChanged
from zvonok.org.models import Extension, Role
from zvonok.telephony.events import (
    CallEnded,
    CallEvent,
    CallForwarded,
    CallStarted,
    CallTransferred,
    LegCreated,
    Party,
    RegistrationChanged,
)

log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
STREAMED_TYPES: tuple[type, ...] = (CallEvent, CdrWritten, RegistrationChanged, ForwardingChanged, ScreenPop,
                                    DealChanged, TaskChanged, TaskDue, TaskEscalated, InvoiceOverdue,
                                    AgentStateChanged, QueueStateChanged)


class CallVisibility:
    """Decides which events one viewer gets; ``admit(event)`` returns the frames to send now.

    Admins see everything; a supervisor also every agent's and queue's state (a supervisor assigned to
    queues, ``queues``: those queues' states and their logged-in agents', as of the connection). An employee sees a call from the moment one of its events names them as a
    party; the call's earlier events (held, at most ``max_held_events`` per call for at most
    ``max_held_calls`` calls) are released first, so their view of the call starts at ``CallStarted``.
    """

    def __init__(self, principal: Principal, *, extensions: frozenset[int] = frozenset(),
                 queues: frozenset[int] | None = None, max_held_calls: int = 1000, max_held_events: int = 64) -> None:
        self.all_calls = principal.is_admin
        # a supervisor: every agent's and queue's state (the wallboard), otherwise an employee's view
        self.call_center = self.all_calls or principal.role is Role.SUPERVISOR
        self.employee_id = principal.employee_id
        self.extensions = extensions  # an employee's own extension ids: their RegistrationChanged events
        self.queues = queues  # a queue supervisor's queues (None: every queue of the tenant)
        self.max_held_calls = max_held_calls
        self.max_held_events = max_held_events
        self._held: OrderedDict[str, list[CallEvent]] = OrderedDict()
        self._mine: OrderedDict[str, None] = OrderedDict()

    def _supervised(self, event: AgentStateChanged | QueueStateChanged) -> bool:
        if self.queues is None:
            return True
        if isinstance(event, QueueStateChanged):
            return event.queue_id in self.queues
        return not self.queues.isdisjoint(event.queues)

    def admit(self, event: object) -> list[object]:
        if isinstance(event, ScreenPop):  # the ringing employee's own, whatever their role
            return [event] if self.employee_id is not None and event.employee_id == self.employee_id else []
        if isinstance(event, TaskEscalated):  # the people it is escalated to (admins see every one)
            mine = self.employee_id is not None and self.employee_id in event.notify_employee_ids
            return [event] if mine or self.all_calls else []
        if isinstance(event, TaskDue | TaskChanged):  # the assignee's (admins see every one)
            mine = self.employee_id is not None and event.assignee_id == self.employee_id
            return [event] if mine or self.all_calls else []
        if isinstance(event, DealChanged | InvoiceOverdue):
            mine = self.employee_id is not None and event.owner_id == self.employee_id
            return [event] if mine or self.all_calls else []
        if self.all_calls or (self.call_center and isinstance(event, AgentStateChanged | QueueStateChanged)
                              and self._supervised(event)):
            return [event]
        if self.employee_id is None:
            return []
        if isinstance(event, CdrWritten):
            return [event] if self.employee_id in event.employee_ids else []
        if isinstance(event, (ForwardingChanged, AgentStateChanged)):
            return [event] if event.employee_id == self.employee_id else []
        if isinstance(event, RegistrationChanged):
            return [event] if event.extension_id in self.extensions else []
        if not isinstance(event, CallEvent):
            return []
        call_id = event.call_id
        if call_id in self._mine:
            out: list[object] = [event]
        elif self._names_me(event):
            self._mine[call_id] = None
            if len(self._mine) > self.max_held_calls:
                self._mine.popitem(last=False)
            out = [*self._held.pop(call_id, []), event]
        else:
            if not isinstance(event, CallEnded):
                held = self._held.setdefault(call_id, [])
                if len(held) < self.max_held_events:
                    held.append(event)
                if len(self._held) > self.max_held_calls:
                    self._held.popitem(last=False)
            out = []
        if isinstance(event, CallEnded):
            self._held.pop(call_id, None)
            self._mine.pop(call_id, None)
        return out

    def _names_me(self, event: CallEvent) -> bool:
        party: Party | None = None
        if isinstance(event, CallStarted):
            party = event.caller
        elif isinstance(event, LegCreated):
            party = event.party
        elif isinstance(event, CallTransferred):
            party = event.to
        elif isinstance(event, CallForwarded):  # an extension's forwarding: its owner sees the call
            return event.from_employee_id is not None and event.from_employee_id == self.employee_id
        return party is not None and party.employee_id == self.employee_id


def _token(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None
    return websocket.query_params.get("token") or None


async def _authorize(websocket: WebSocket, tenant_id: int, secret: str | None) -> Principal | int:
    """The principal, or the close code to answer with."""
    if secret is None:
        return CLOSE_UNAUTHORIZED
    app_state = websocket.app.state
    async with app_state.db.session() as session:
        try:
            principal = await require_principal(
                HTTPAuthorizationCredentials(scheme="Bearer", credentials=secret), session, app_state.settings
            )
        except HTTPException:
            return CLOSE_UNAUTHORIZED
        try:
            await tenant_access(tenant_id, principal, session)
        except HTTPException:
            return CLOSE_NOT_FOUND
    return principal


async def _own_extensions(websocket: WebSocket, tenant_id: int, principal: Principal) -> frozenset[int]:
    """An employee's extension ids in the tenant (empty for anyone else: admins see every extension)."""
    if principal.is_admin or principal.employee_id is None:
        return frozenset()
    async with websocket.app.state.db.session() as session:
        rows = await session.execute(select(Extension.id).where(
            Extension.tenant_id == tenant_id, Extension.employee_id == principal.employee_id))
        return frozenset(rows.scalars())


async def _supervised_queues(websocket: WebSocket, tenant_id: int, principal: Principal) -> frozenset[int] | None:
    """A queue supervisor's queues (None for anyone else: zvonok.callcenter.scope)."""
    if principal.role is not Role.SUPERVISOR:
        return None
    async with websocket.app.state.db.session() as session:
        return await scope_of(session, tenant_id, role=principal.role, employee_id=principal.employee_id,
                              account_id=principal.owner_id if principal.token_id is not None else None)


def _wallboard_feed(websocket: WebSocket) -> WallboardFeed | None:
    """The app's wallboard feed, made on first use (None: no call center runs in this process)."""
    state = websocket.app.state
    runtime = getattr(state, "callcenter", None)
    if runtime is None:
        return None
    feed: WallboardFeed | None = getattr(state, "wallboard_feed", None)
    if feed is None or feed.runtime is not runtime:
        feed = state.wallboard_feed = WallboardFeed(state.db, runtime)
    return feed


def _asks_wallboard(websocket: WebSocket) -> bool:
    return websocket.query_params.get("wallboard", "").lower() in ("1", "true", "yes")


async def _until_disconnect(websocket: WebSocket) -> None:
    """Read and ignore client frames until the client goes away."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


def events_router(bus: Bus, *, queue_size: int = 1000, reauth_interval: float = 60.0,
                  wallboard_interval: float = 1.0) -> APIRouter:
    """The websocket route, streaming from ``bus``; mount with ``create_app(..., routers=[...])``."""
    router = APIRouter()

    @router.websocket("/api/v1/tenants/{tenant_id}/events")
    async def tenant_events(websocket: WebSocket, tenant_id: int) -> None:
        secret = _token(websocket)
        who = await _authorize(websocket, tenant_id, secret)
        await websocket.accept()
        if isinstance(who, int):
            await websocket.close(who)
            return
        visibility = CallVisibility(who, extensions=await _own_extensions(websocket, tenant_id, who),
                                    queues=await _supervised_queues(websocket, tenant_id, who))
        gone = asyncio.Event()
        reported_drops = 0
        sending = asyncio.Lock()  # the events and the wallboard's frames come from two tasks

        async def send(texts: list[str]) -> None:
            try:
                async with sending:
                    for text in texts:
                        await websocket.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):  # the client is gone
                gone.set()

        async def deliver(event: Any) -> None:
            nonlocal reported_drops
            if gone.is_set():
                return
            frames = visibility.admit(event)
            if not frames:
                return
            texts = []
            if sub.dropped != reported_drops:
                reported_drops = sub.dropped
                texts.append(json.dumps({"type": "EventsDropped", "dropped": reported_drops}))
            await send([*texts, *(json.dumps(serialize(frame)) for frame in frames)])

        async def push_wallboard(feed: WallboardFeed) -> None:
            while not gone.is_set():
                try:
                    board = await feed.get(tenant_id, visibility.queues)
                except Exception:  # e.g. the database away for a moment: the next second tries again
                    log.warning("wallboard for tenant %d not computed", tenant_id, exc_info=True)
                else:
                    await send([json.dumps({"type": "Wallboard", **board.model_dump(mode="json")})])
                await asyncio.sleep(wallboard_interval)

        sub = bus.subscribe(
            deliver, event_types=STREAMED_TYPES, where=lambda e: e.tenant_id == tenant_id, maxsize=queue_size,
            name=f"ws:tenant{tenant_id}", cluster=True,  # the calls of every node
        )
        receiver = asyncio.create_task(_until_disconnect(websocket))
        feed = _wallboard_feed(websocket) if visibility.call_center and _asks_wallboard(websocket) else None
        pusher = asyncio.create_task(push_wallboard(feed)) if feed is not None else None
        gone_wait = asyncio.create_task(gone.wait())
        revoked = asyncio.Event()

        def on_commit(event: object) -> None:
            # Any revocation may be ours (a token, its creator's account): re-check now. Revocations are
            # rare, so the extra look-up per open socket costs nothing that matters.
            if isinstance(event, AccessRevoked):
                revoked.set()

        db = websocket.app.state.db
        db.add_listener(on_commit)
        revoked_wait = asyncio.create_task(revoked.wait())
        close_code: int | None = 1000
        try:
            while True:
                done, _ = await asyncio.wait(
                    {receiver, gone_wait, revoked_wait}, timeout=reauth_interval, return_when=asyncio.FIRST_COMPLETED
                )
                if receiver in done:
                    close_code = None  # the client closed; nothing to answer
                    break
                if gone_wait in done:
                    break
                if revoked_wait in done:
                    revoked.clear()
                    revoked_wait = asyncio.create_task(revoked.wait())
                again = await _authorize(websocket, tenant_id, secret)
                if again != who:  # revoked, moved, or a changed role (reconnect for the new view)
                    close_code = again if isinstance(again, int) else CLOSE_UNAUTHORIZED
                    break
                visibility.extensions = await _own_extensions(websocket, tenant_id, who)
        finally:
            db.remove_listener(on_commit)
            gone.set()
            receiver.cancel()
            if pusher is not None:
                pusher.cancel()
            gone_wait.cancel()
            revoked_wait.cancel()
            await sub.close()
            if close_code is not None:
                with contextlib.suppress(RuntimeError, OSError):
                    await websocket.close(close_code)

    return router
