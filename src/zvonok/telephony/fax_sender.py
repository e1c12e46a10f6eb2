"""Sending a fax: an outgoing call through the tenant's trunk, answered by the far fax machine, fed by
our spandsp terminal in calling mode.

How it works: a queued document (:class:`OutgoingFax`, from the fax domain's port) becomes a call with
no caller leg: the tenant's calling permissions and tariff are checked as for an employee's outside call
(``CallerProfile`` of the tenant), the route's trunks are tried in order, and one callee leg is placed
with the engine's dialog machinery (``_place_leg``; a carrier's digest challenge is answered as for any
outside call). When the far end answers, its endpoint gets the same terminal wiring as a received fax
(:mod:`.fax_app`: a player and an audio tap); phase E hangs up, and :meth:`FaxApp.ended` reports the
result to the port. A busy or unanswered number is queued again by the port, a few times, later.
The call's CallStarted / CallRouted / CallEnded events are the ordinary ones: the CDR rates it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zvonok.dialing import DestinationClass
from zvonok.fax.endpoint import FaxEndpoint
from zvonok.fax.spandsp import SpandspUnavailable
from zvonok.logs import get_logger
from zvonok.pstn.routing import CallerProfile, TrunkInfo
from zvonok.sip.grammar import escape_user, name_addr, uri_host

from . import events as ev
from .call import Call, Leg, LegState
from .fax_app import FaxApp, FaxSession, IncomingFax
from .leg_events import Answered, Challenged, Terminated, TerminationCause
from .outside import OutsideRefused, check_outside
from .trunks import trunk_peer

log = get_logger(__name__)

_DISPOSITIONS = {
    486: ev.Disposition.BUSY,
    600: ev.Disposition.BUSY,
    408: ev.Disposition.NO_ANSWER,
    480: ev.Disposition.NO_ANSWER,
    487: ev.Disposition.NO_ANSWER,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingFax:
    id: int
    tenant_id: int
    number: str  # E.164
    tiff: Path


class FaxSender:
    def __init__(self, engine: Any, app: FaxApp) -> None:
        self.engine = engine  # zvonok.telephony.b2bua.CallEngine: its dialog machinery places the leg
        self.app = app

    async def send(self, job: OutgoingFax) -> None:
        engine = self.engine
        port = self.app.port
        if engine.trunks is None:
            await port.finish_send(job.tenant_id, job.id, None, "no trunks", status=None)
            return
        snapshot = engine.trunks.snapshot
        tenant = snapshot.tenants.get(job.tenant_id)
        profile = CallerProfile(tenant_id=job.tenant_id)
        try:
            checked = check_outside(snapshot, profile, job.number)  # as for an employee's outside call
        except OutsideRefused as refused:
            reason = str(refused) if refused.cause == "not_allowed" else f"invalid number: {refused}"
            if refused.cause == "no_route":
                reason = "not an outside number"
            await port.finish_send(job.tenant_id, job.id, None, reason, status=None)
            return
        dest, rules = checked.dest, checked.rules
        if dest.klass is DestinationClass.EMERGENCY or tenant is None:
            await port.finish_send(job.tenant_id, job.id, None, "not an outside number", status=None)
            return
        if tenant.suspended:
            await port.finish_send(job.tenant_id, job.id, None, "the company is suspended", status=None)
            return
        now = time.time()
        sell = snapshot.sell_rate(job.tenant_id, dest.number)
        if sell is None and tenant.tariff is not None:
            await port.finish_send(job.tenant_id, job.id, None, "no rate for the number", status=None)
            return
        trunks: list[TrunkInfo] = list(snapshot.outbound_trunks(job.tenant_id, dest.number, now))
        if not trunks:
            await port.finish_send(job.tenant_id, job.id, None, "no trunk for the number", status=None)
            return
        try:
            endpoint = FaxEndpoint(calling=True, tx_tiff=job.tiff, ident=(rules.caller_id or "")[-20:])
        except SpandspUnavailable:
            await port.finish_send(
                job.tenant_id, job.id, None, "fax is not available (libspandsp)", status=None
            )
            return
        caller_id = rules.caller_id or ""
        call = Call(
            id=uuid.uuid4().hex,
            tenant_id=job.tenant_id,
            direction=ev.Direction.OUTBOUND,
            started_at=now,
            domain=tenant.domain,
        )
        call.outside_number = dest.number
        call.caller_id = caller_id
        call.fax = FaxSession(
            fax=IncomingFax(id=job.id, tiff=job.tiff),
            remote_number=dest.number,
            endpoint=endpoint,
            direction="out",
        )
        engine.calls[call.id] = call
        engine.publish(
            ev.CallStarted,
            call,
            caller=ev.Party(number=caller_id, display_name="Fax"),
            callee_number=dest.number,
            direction=ev.Direction.OUTBOUND,
        )
        period, price = sell[0].price_at(sell[1], now, tenant.timezone) if sell is not None else (None, None)
        rate = sell[1] if sell is not None else None
        call.route_fields = dict(
            destination_class=dest.klass.value,
            number=dest.number,
            rate_prefix=rate.prefix if rate else None,
            rate_destination=rate.destination if rate else None,
            price_per_minute=str(price) if price is not None else None,
            connection_fee=str(rate.connection_fee) if rate else "0",
            increment=str(rate.increment) if rate else "60/60",
            minimum=rate.minimum if rate else 0,
            currency=sell[0].currency if sell else None,
            period=period,
        )
        await port.start_send(job.tenant_id, job.id, call.id)
        log.info(
            "fax: sending",
            call=call.id,
            tenant=job.tenant_id,
            fax=job.id,
            number=dest.number,
            trunks=[t.id for t in trunks],
        )
        call.next_trunks = trunks
        # ringing without an answer ends like a busy line (CANCEL, then tried again later)
        call.no_answer = asyncio.get_running_loop().call_later(
            engine.no_answer_timeout, lambda: engine.step(call, self._no_answer(call))
        )
        engine.step(call, self._next_trunk(call))

    async def _no_answer(self, call: Call) -> None:
        call.no_answer = None
        if call.ended or call.answered_at is not None:
            return
        for fork in call.forks:
            self.engine._cancel_fork(fork, None)  # its Terminated (487) ends the call, see _on_event

    async def _next_trunk(self, call: Call) -> None:
        engine = self.engine
        while call.next_trunks and not call.ended:
            trunk: TrunkInfo = call.next_trunks.pop(0)
            if engine.srtp_mode(trunk.srtp) == "required" and trunk.transport != "tls":
                continue
            if not await engine.trunks.acquire(trunk, call.id):
                continue
            if call.ended:
                engine.trunks.release(trunk.id)
                return
            try:
                endpoints = await engine._endpoints(call, 1)
            except BaseException:
                engine.trunks.release(trunk.id)
                raise
            if endpoints is None:
                engine.trunks.release(trunk.id)
                return
            assert call.outside_number is not None
            number = trunk.format_number(call.outside_number)
            caller_id = trunk.format_number(call.caller_id or "")
            target = f"sip:{escape_user(number)}@{uri_host(trunk.host)}:{trunk.port}" + (
                "" if trunk.transport == "udp" else f";transport={trunk.transport}"
            )
            engine.publish(ev.CallRouted, call, trunk_id=trunk.id, **call.route_fields)
            engine._place_leg(
                call,
                ev.Party(number=call.outside_number, external=True),
                trunk_peer(trunk),
                endpoints[0],
                engine._offer_codecs(call),
                request_uri=target,
                to_header=name_addr(None, number, trunk.domain),
                from_header=name_addr("Fax", caller_id, trunk.domain),
                contact=target,
                user_agent=trunk.name,
                extra_headers=[("P-Asserted-Identity", name_addr(None, caller_id, trunk.domain))],
                handler=self._on_event,
                trunk_id=trunk.id,
                srtp_policy=trunk.srtp,
            )
            return
        if not call.ended:
            engine._hangup(call, None, ev.HangupSide.SYSTEM, "no_trunk", disposition=ev.Disposition.FAILED)

    def _on_event(self, leg: Leg, event: object) -> None:
        engine = self.engine
        call = leg.call
        if isinstance(event, Challenged):
            engine.outside.on_trunk_event(leg, event)  # the carrier's digest challenge, answered once
        elif isinstance(event, Answered):
            assert leg.sip is not None and leg.sip.dialog is not None
            leg.dialog = leg.sip.dialog
            if call.ended:
                engine._send_bye(leg)
                leg.state = LegState.ENDED
                engine._release(leg)
                return
            leg.media = event.media
            if call.no_answer is not None:
                call.no_answer.cancel()
                call.no_answer = None
            if call.fax is not None:
                call.fax.status = None  # an earlier trunk's failure is history
            leg.state = LegState.ANSWERED
            call.callee = leg
            call.answered_at = time.time()
            engine.dialogs[leg.dialog.key] = leg
            engine.publish(ev.LegAnswered, call, leg_id=leg.id)
            engine.step(call, self._answered(call, leg))
        elif isinstance(event, Terminated) and leg.state in (LegState.TRYING, LegState.RINGING):
            status = event.status or (408 if event.cause is TerminationCause.TIMEOUT else 480)
            leg.state = LegState.ENDED
            session: FaxSession | None = call.fax
            if session is not None:
                session.status = status
            if status in (500, 502, 503, 504) and call.next_trunks:
                engine.step(call, self._next_trunk(call))  # failover, as for any outside call
                return
            engine._hangup(
                call,
                None,
                ev.HangupSide.CALLEE,
                f"sip_{status}",
                disposition=_DISPOSITIONS.get(status, ev.Disposition.FAILED),
            )

    async def _answered(self, call: Call, leg: Leg) -> None:
        engine = self.engine
        session: FaxSession | None = call.fax
        if leg.media is None or session is None or session.endpoint is None:
            engine._hangup(call, None, ev.HangupSide.SYSTEM, "incompatible_media")
            return
        await engine._set_remote(leg, leg.media)
        assert leg.endpoint is not None
        await self.app.attach(call, session, leg.endpoint, leg)
        if self.app.t38_mode(leg) == "offer":
            self.app.offer_t38(call, leg)
