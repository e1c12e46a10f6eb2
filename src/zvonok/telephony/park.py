"""Call park in the call engine: park with a transfer, retrieve by dialing the slot, ring back on timeout.

How it works (the slots and their timeout are :mod:`.park_lot`'s, sans-I/O):

- **park**: a blind transfer (REFER, telephony/transfers.py) to ``700`` or to a free slot parks the
  transferee: its bridge with the transferor ends, it hears the company's music on hold, the transferor
  gets NOTIFY 200 and leaves the call; ``CallParked`` names the slot. A taken slot (or a full lot) fails
  the transfer (NOTIFY 486 / 503) and the call goes on as before.
- **retrieve**: an extension dialing the slot opens a call of its own, which we answer; its leg then moves
  into the parked call in the transferor's place (as pickup and attended transfer move legs), the music
  stops, the two endpoints are bridged (``CallUnparked``, reason ``retrieved``). Nothing in the slot: 404.
- **timeout**: after ``timeout`` seconds the parked call leaves its slot and rings every device of the
  extension that parked it (a blind transfer back to the parker, telephony/transfers.py), the parked
  party still hearing music; the first device to answer is connected in the parker's old place;
  nobody within ``ringback_timeout`` seconds (or every device refusing) ends the call.
- a parked party hanging up frees its slot (the engine's ``_finish`` calls :meth:`Parking.left`).

One timer (``loop.call_at`` at the lot's next deadline) serves every company's parked calls.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zvonok.logs import get_logger
from zvonok.media.g711 import Codec as MediaCodec
from zvonok.sip.message import Request
from zvonok.sip.peer import Peer
from zvonok.sip.sdp import Direction as SdpDirection
from zvonok.sip.transaction import ServerTransaction

from . import events as ev
from .call import CODECS, Call, Leg, LegState, Transfer
from .directory import ExtensionInfo
from .park_lot import Parked, ParkingLot

if TYPE_CHECKING:
    from .b2bua import CallEngine

log = get_logger(__name__)

DEFAULT_RINGBACK_TIMEOUT = 30.0


@dataclass(eq=False, slots=True)
class ParkedCall:
    """What waits in a slot: the call, its parked leg, who parked it and when (wall clock, for the API)."""

    call: Call
    leg: Leg
    parked_by: ev.Party
    parked_at: float
    slot: int = 0


class Parking:
    """The park application of one call engine (one lot for every company)."""

    def __init__(self, engine: CallEngine, *, timeout: float = 120.0,
                 ringback_timeout: float = DEFAULT_RINGBACK_TIMEOUT) -> None:
        self.engine = engine
        self.lot: ParkingLot[ParkedCall] = ParkingLot(timeout=timeout)
        self.ringback_timeout = ringback_timeout
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def is_park_number(self, number: str) -> bool:
        return self.lot.is_park_number(number)

    def parked(self, tenant_id: int) -> list[Parked[ParkedCall]]:
        """The company's parked calls by slot (the REST view)."""
        return self.lot.parked(tenant_id)

    # -- park (from a transfer) ------------------------------------------------------------------------------
    async def park(self, transferor: Leg, transferee: Leg, number: str) -> str:
        """Park ``transferee`` at ``number`` (700: the first free slot). Returns the sipfrag status line
        the transferor's NOTIFY reports: 200 when parked; the caller then ends the transferor's leg."""
        call = transferee.call
        engine = self.engine
        if transferee.endpoint is None or transferee.state is not LegState.ANSWERED or call.ended:
            return "SIP/2.0 481 Call/Transaction Does Not Exist"
        item = ParkedCall(call=call, leg=transferee, parked_by=transferor.party, parked_at=time.time())
        parked = self.lot.park(call.tenant_id, number, item, engine.clock())
        if parked is None:
            log.info("park refused", call=call.id, tenant=call.tenant_id, number=number)
            return "SIP/2.0 486 Busy Here" if number != self.lot.park_number else "SIP/2.0 503 Service Unavailable"
        item.slot = parked.slot
        call.park = item
        self._arm()
        await engine.media.unbridge(transferee.endpoint)
        await engine._music_on_hold(transferee, True)
        engine.publish(ev.CallParked, call, leg_id=transferee.id, slot=parked.slot, parked_by=transferor.party,
                       timeout=self.lot.timeout)
        log.info("call parked", call=call.id, tenant=call.tenant_id, slot=parked.slot, by=transferor.party.number)
        return "SIP/2.0 200 OK"

    def left(self, call: Call) -> None:
        """The parked call ended (its party hung up, or the server stops): its slot is free."""
        item = call.park
        call.park = None
        if isinstance(item, ParkedCall) and self.lot.remove(call.tenant_id, item.slot, item):
            self.engine.publish(ev.CallUnparked, call, leg_id=item.leg.id, slot=item.slot, reason="hangup")
            self._arm()

    # -- retrieve (an extension dials the slot) ------------------------------------------------------------------
    async def on_dial(self, txn: ServerTransaction, request: Request, peer: Peer, tenant_id: int, domain: str,
                      caller_ext: ExtensionInfo, dialed: str, session_expires: int | None) -> bool:
        """``dialed`` is the park number or a slot: retrieve what is parked there (True), else False."""
        if not self.lot.is_park_number(dialed):
            return False
        engine = self.engine
        retriever_call = engine._open_call(txn, request, peer, tenant_id=tenant_id, party=caller_ext.party(),
                                           domain=domain, dialed=dialed, session_expires=session_expires,
                                           srtp_policy=caller_ext.srtp, direction=ev.Direction.INTERNAL)
        slot = self.lot.slot_of(dialed)
        waiting = self.lot.peek(tenant_id, slot) if slot is not None else None
        if slot is None or waiting is None:
            await engine._refuse(retriever_call, 404, "not_parked")
            return True
        if not await engine._negotiate_caller(retriever_call):
            return True
        parked = self.lot.peek(tenant_id, slot)  # again: the await above let others in
        if parked is None or parked.item.call.ended or retriever_call.ended:
            await engine._refuse(retriever_call, 404, "not_parked")
            return True
        self.lot.take(tenant_id, slot)
        self._arm()
        self._retrieve(retriever_call, parked.item)
        await engine._finish(retriever_call, ev.Disposition.ANSWERED, ev.HangupSide.CALLER, "park_retrieved", None)
        return True

    def _retrieve(self, retriever_call: Call, item: ParkedCall) -> None:
        """Answer the retriever and put its leg in the transferor's place in the parked call (no await)."""
        engine = self.engine
        call, parked = item.call, item.leg
        retriever = retriever_call.caller
        assert retriever is not None
        engine._answer_caller(retriever_call)
        engine.publish(ev.LegEnded, retriever_call, leg_id=retriever.id, cause="park_retrieved")
        retriever_call.caller = None
        retriever.call = call
        call.park = None
        if call.caller is parked:
            retriever.role = ev.LegRole.CALLEE
            call.forks.append(retriever)
            call.callee = retriever
        else:
            call.caller = retriever
        engine.publish(ev.LegCreated, call, leg_id=retriever.id, role=retriever.role, party=retriever.party,
                       contact=retriever.invite.headers.get("contact") or "" if retriever.invite is not None else "",
                       user_agent=retriever.user_agent)
        engine.publish(ev.LegAnswered, call, leg_id=retriever.id)
        engine.publish(ev.CallUnparked, call, leg_id=parked.id, slot=item.slot, reason="retrieved",
                       by=retriever.party)
        log.info("parked call retrieved", call=call.id, tenant=call.tenant_id, slot=item.slot,
                 by=retriever.party.number)
        engine.step(call, self._reconnect(parked, retriever))

    async def _reconnect(self, parked: Leg, other: Leg) -> None:
        """The parked party hears ``other`` again: music off, bridged, resumed if we had held it."""
        engine = self.engine
        if parked.call.ended or parked.endpoint is None or other.endpoint is None:
            return
        await engine._music_on_hold(parked, False)
        await engine.media.bridge(parked.endpoint, other.endpoint)
        if parked.held_by_us and not parked.held:
            engine._reinvite(parked, SdpDirection.SENDRECV)
        await engine.transfers.restart_recording(parked.call)  # the recording follows the new pair
        await engine._watch_media(parked.call)

    # -- the park timeout --------------------------------------------------------------------------------------
    def _arm(self) -> None:
        deadline = self.lot.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        if deadline is not None:
            # the engine's clock is the loop's (monotonic in production, virtual in tests)
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        for parked in self.lot.expired(self.engine.clock()):
            item = parked.item
            call = item.call
            call.park = None
            if call.ended:
                continue
            self.engine.publish(ev.CallUnparked, call, leg_id=item.leg.id, slot=item.slot, reason="timeout")
            log.info("park timeout: ringing back", call=call.id, tenant=call.tenant_id, slot=item.slot,
                     extension=item.parked_by.number)
            self.engine.step(call, self._ring_back(item))
        self._arm()

    async def _ring_back(self, item: ParkedCall) -> None:
        """Ring every device of the extension that parked the call: a blind transfer of the parked party
        back to its parker (telephony/transfers.py connects whoever answers, in the parker's old place)."""
        engine = self.engine
        call, parked = item.call, item.leg
        if call.ended or parked.state is not LegState.ANSWERED:
            return
        ext = await engine.directory.extension(call.tenant_id, item.parked_by.number)
        now = time.time()
        bindings = [b for b in engine.location.lookup(call.tenant_id, ext.extension_id, now)
                    if engine.reachable(b, ext.srtp)] if ext is not None and ext.enabled else []
        transferor = call.other(parked)  # the parker's leg, ended when it parked the call
        if not bindings or transferor is None:
            engine._hangup(call, None, ev.HangupSide.SYSTEM, "park_timeout")
            return
        assert ext is not None
        preferred = [c for c in CODECS if parked.media is not None and c.name == parked.media.codec_name]
        codecs = preferred + [c for c in CODECS if c not in preferred]
        endpoints = []
        for _ in bindings:
            endpoints.append(await engine.media.create_endpoint(call.tenant_id, call.id,
                                                                [MediaCodec.PCMU, MediaCodec.PCMA]))
        if call.ended:
            for endpoint in endpoints:
                engine.spawn(engine.media.release(endpoint))
            return
        transfer = Transfer(transferor=transferor, transferee=parked, target=ext.party())
        display = parked.party.display_name or parked.party.number
        for binding, endpoint in zip(bindings, endpoints, strict=True):
            transfer.forks.append(engine._fork(
                call, ext.party(), binding, endpoint, codecs, display, call.domain, from_number=parked.party.number,
                handler=lambda leg, event: self._on_ring_back_event(transfer, leg, event), srtp_policy=ext.srtp))
        call.limit_timers.append(asyncio.get_running_loop().call_later(
            self.ringback_timeout, self._ring_back_expired, call, transfer))

    def _on_ring_back_event(self, transfer: Transfer, leg: Leg, event: object) -> None:
        """A transfer's handling of the responses; every device refusing ends the call at once."""
        self.engine.transfers.on_event(transfer, leg, event)
        if not transfer.done and all(fork.state is LegState.ENDED for fork in transfer.forks):
            self.engine._hangup(leg.call, None, ev.HangupSide.SYSTEM, "park_timeout")

    def _ring_back_expired(self, call: Call, transfer: Transfer) -> None:
        if call.ended or transfer.done:
            return
        log.info("park ring-back not answered: ending the call", call=call.id, tenant=call.tenant_id)
        self.engine._hangup(call, None, ev.HangupSide.SYSTEM, "park_timeout")

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
