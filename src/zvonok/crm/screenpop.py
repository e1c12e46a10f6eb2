"""The screen pop: when a call from outside rings an employee, their browser gets the caller's card.

A bus consumer (no SQL in the call path: the engine only publishes its events). ``CallStarted`` tells who
calls (kept per call, bounded, until ``CallEnded``); each ``LegCreated`` of a callee leg that reaches an
employee (a direct call, a ring group's or a forward's target) looks up the card once per call and
employee, and publishes a :class:`~zvonok.crm.events.ScreenPop` that the websocket hands to that employee
only. A ``LegCreated`` comes with the INVITE the engine sends to the phone, before it rings, so the card
is usually on screen with the first ring. Calls between employees pop nothing (the caller is a colleague).

One subscription handles events in order, so a call's CallStarted is always seen before its legs.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from zvonok.bus import Bus, Subscription
from zvonok.storage.db import Database
from zvonok.telephony.events import CallEnded, CallStarted, LegCreated, LegRole

from .events import ScreenPop
from .service import card_for

log = logging.getLogger(__name__)


@dataclass
class _Ringing:
    tenant_id: int
    number: str
    started_at: float
    popped: set[int]


class ScreenPopper:
    def __init__(self, db: Database, bus: Bus, *, max_calls: int = 10_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.bus = bus
        self.max_calls = max_calls
        self.clock = clock
        self._calls: OrderedDict[str, _Ringing] = OrderedDict()
        self._sub: Subscription | None = None

    def start(self) -> None:
        # lossy but roomy: a pop that comes too late is worthless, and the call engine must never wait
        self._sub = self.bus.subscribe(self.handle, event_types=(CallStarted, LegCreated, CallEnded),
                                       maxsize=10_000, name="crm:screenpop")

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.close()
            self._sub = None

    async def handle(self, event: object) -> None:
        if isinstance(event, CallStarted):
            if event.caller.employee_id is None and event.caller.number:
                self._calls[event.call_id] = _Ringing(event.tenant_id, event.caller.number, event.at, set())
                if len(self._calls) > self.max_calls:
                    self._calls.popitem(last=False)
        elif isinstance(event, CallEnded):
            self._calls.pop(event.call_id, None)
        elif isinstance(event, LegCreated):
            ringing = self._calls.get(event.call_id)
            employee = event.party.employee_id
            if ringing is None or event.role is not LegRole.CALLEE or employee is None or employee in ringing.popped:
                return
            ringing.popped.add(employee)  # one pop per employee, however many phones of theirs ring
            try:
                async with self.db.session() as session:
                    card = await card_for(session, ringing.tenant_id, ringing.number)
            except Exception:  # noqa: BLE001 - no card is better than a stuck consumer
                log.exception("screen pop lookup failed for call %s", event.call_id)
                return
            self.bus.publish(ScreenPop(tenant_id=ringing.tenant_id, call_id=event.call_id, employee_id=employee,
                                       card=card, invite_at=ringing.started_at, at=self.clock()))
