"""Transfers: blind (REFER, RFC 3515, RFC 5589 §6) and attended (REFER with Replaces, RFC 3891, RFC 5589 §7).

An application of the call engine (:class:`Transfers`, ``engine.transfers``): it uses the engine's legs,
forks, media and SIP plumbing. The transferor's device sends REFER in its dialog with us; we accept (202), report progress in
NOTIFYs with message/sipfrag bodies, and either place a new call to the target (blind) or join the
transferee with the other party of the transferor's consultation call (attended). A blind transfer's target
may also be the park number or a slot (:mod:`.park`) or a call-center queue's number (:mod:`.queue_call`: the
transferee waits in line); the agent of a queue call transferring its caller is reported to the queue
(``TRANSFER`` in the queue log).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from zvonok.logs import get_logger
from zvonok.sip.dialog import add_top_via
from zvonok.sip.errors import SipParseError
from zvonok.sip.headers import parse_name_addr
from zvonok.sip.message import REASONS, Request, Response, make_response
from zvonok.sip.replaces import Replaces, replaces_of
from zvonok.sip.sdp import Direction as SdpDirection
from zvonok.sip.transaction import ServerTransaction
from zvonok.sip.uri import SipUri

from . import events as ev
from .call import CODECS, Call, Leg, LegState, Transfer
from .leg_events import Answered, Challenged, Progress, Terminated

if TYPE_CHECKING:
    from .b2bua import CallEngine

log = get_logger(__name__)


class Transfers:
    """Blind and attended transfers of the engine's calls (``engine.transfers``)."""

    def __init__(self, engine: CallEngine) -> None:
        self.engine = engine

    # -- blind transfer (RFC 3515, RFC 5589 §6) ------------------------------------------------------------
    async def refer(self, txn: ServerTransaction, request: Request, transferor: Leg) -> None:
        """The transferor's device asks us to connect its party to the Refer-To target and then drops out.

        We accept (202), report progress in NOTIFYs with message/sipfrag bodies, place the new call to the
        target's devices, and when one answers bridge it with the transferee, NOTIFY 200 and BYE the
        transferor. A failed attempt is reported (NOTIFY with the final status) and the call goes on.
        """
        call = transferor.call
        dialog = transferor.dialog
        transferee = call.other(transferor)
        if dialog is None or transferor.state is LegState.ENDED:
            self.engine.sip.respond(txn, make_response(request, 481))  # it left the call before this step's turn
            return
        try:
            target = parse_name_addr(request.headers.get("refer-to") or "").uri
        except SipParseError:
            target = None
        if not isinstance(target, SipUri) or transferee is None or call.answered_at is None:
            self.engine.sip.respond(txn, dialog.create_response(request, 400 if target is None else 403))
            return
        try:
            replaces = replaces_of(target)
        except SipParseError:
            self.engine.sip.respond(txn, dialog.create_response(request, 400, reason="Bad Replaces in Refer-To"))
            return
        if replaces is not None:
            await self._attended(txn, request, transferor, transferee, replaces)
            return
        self.engine.sip.respond(txn, dialog.create_response(request, 202))
        self._notify_refer(transferor, "SIP/2.0 100 Trying", final=False)
        number = target.user_unescaped or ""
        ext = await self.engine.directory.extension(call.tenant_id, number) if number else None
        if ext is None and self.engine.parking is not None and self.engine.parking.is_park_number(number):
            sipfrag = await self.engine.parking.park(transferor, transferee, number)  # telephony/park.py
            self._notify_refer(transferor, sipfrag, final=True)
            if sipfrag.startswith("SIP/2.0 200"):
                self._end_leg(transferor, "parked")
            return
        queues = self.engine.queue_calls
        queue = await queues.lookup(call.tenant_id, number) if ext is None and queues is not None else None
        if queue is not None and queues is not None:  # the transferee waits in the queue (telephony/queue_call.py)
            sipfrag = await queues.transfer_in(transferor, transferee, queue)
            self._notify_refer(transferor, sipfrag, final=True)
            if sipfrag.startswith("SIP/2.0 200"):
                self._end_leg(transferor, "transferred")
                self.engine.publish(ev.CallTransferred, call, kind=ev.TransferKind.BLIND, from_leg_id=transferor.id,
                                    to=ev.Party(number=queue.number, display_name=queue.name))
            return
        now = time.time()
        bindings = self.engine.location.lookup(call.tenant_id, ext.extension_id, now) if ext is not None else []
        if ext is None or not bindings:
            self._notify_refer(transferor, "SIP/2.0 404 Not Found" if ext is None else
                               "SIP/2.0 480 Temporarily Unavailable", final=True)
            return
        assert transferee.media is not None
        preferred = [c for c in CODECS if c.name == transferee.media.codec_name]
        codecs = preferred + [c for c in CODECS if c not in preferred]
        transfer = Transfer(transferor=transferor, transferee=transferee, target=ext.party())
        endpoints = await self.engine._endpoints(call, len(bindings))
        if endpoints is None:
            return
        for binding, endpoint in zip(bindings, endpoints, strict=True):
            leg = self.engine._fork(call, ext.party(), binding, endpoint, codecs,
                                   transferee.party.display_name or transferee.party.number, call.domain,
                                   from_number=transferee.party.number,
                                   handler=lambda leg, event: self.on_event(transfer, leg, event))
            transfer.forks.append(leg)

    async def _attended(self, txn: ServerTransaction, request: Request, transferor: Leg,
                                 transferee: Leg, replaces: Replaces) -> None:
        """REFER with Replaces (RFC 3891, RFC 5589 §7): join the transferee with the party of the named dialog.

        Both of the transferor's dialogs end at us, so no INVITE with Replaces is needed: we bridge the
        transferee's endpoint with the target's (the consultation call's other leg), move the target's leg
        into this call, and end the transferor's two legs (NOTIFY 200 and BYE here, BYE on the
        consultation call, whose record ends as "transferred"). A party we had put on hold because the
        transferor held the call is resumed.
        """
        call = transferor.call
        assert transferor.dialog is not None
        consult = next((self.engine.dialogs[key] for key in replaces.dialog_keys() if key in self.engine.dialogs), None)
        consult_call = consult.call if consult is not None else None
        target = consult_call.other(consult) if consult is not None and consult_call is not None else None
        self.engine.sip.respond(txn, transferor.dialog.create_response(request, 202))
        if (consult is None or consult_call is None or consult_call is call or target is None
                or consult_call.tenant_id != call.tenant_id or target.state is not LegState.ANSWERED
                or consult.state is not LegState.ANSWERED):
            # the dialog to replace is not a confirmed call of this tenant (§6.1 answers such an INVITE 481)
            self._notify_refer(transferor, "SIP/2.0 481 Call/Transaction Does Not Exist", final=True)
            return
        assert transferee.endpoint is not None and target.endpoint is not None
        await self.engine.media.bridge(transferee.endpoint, target.endpoint)  # ends both bridges with the transferor
        if call.ended or consult_call.ended:
            return
        for party in (transferee, target):  # they hear each other now, not the music of a hold before
            await self.engine._music_on_hold(party, False)
        # the target's leg leaves the consultation call and takes the transferor's place in this one
        self.engine.publish(ev.LegEnded, consult_call, leg_id=target.id, cause="transferred")
        if consult_call.caller is target:
            consult_call.caller = None
        else:
            consult_call.callee = None
            if target in consult_call.forks:
                consult_call.forks.remove(target)
        target.call = call
        if call.caller is transferor:
            call.caller = target
        else:
            call.callee = target
            call.forks.append(target)
        if self.engine.queue_calls is not None:  # a queue call's agent transferred its caller: TRANSFER
            self.engine.queue_calls.transferred(call, transferor, target.party.number)
        self.engine.publish(ev.LegCreated, call, leg_id=target.id, role=target.role, party=target.party,
                     contact=target.contact, user_agent=target.user_agent)
        self.engine.publish(ev.LegAnswered, call, leg_id=target.id)
        self._notify_refer(transferor, "SIP/2.0 200 OK", final=True)
        self._end_leg(transferor, "transferred")
        self.engine._send_bye(consult)
        consult_side = ev.HangupSide.CALLER if consult is consult_call.caller else ev.HangupSide.CALLEE
        self.engine.spawn(self.engine._finish(consult_call, ev.Disposition.ANSWERED, consult_side, "transferred", None))
        self.engine.publish(ev.CallTransferred, call, kind=ev.TransferKind.ATTENDED, from_leg_id=transferor.id,
                     to=target.party)
        log.info("attended transfer", call=call.id, tenant=call.tenant_id, to=target.party.number,
                 consultation=consult_call.id)
        for leg in (transferee, target):
            partner = call.other(leg)
            if leg.held_by_us and (partner is None or not partner.held):
                self.engine._reinvite(leg, SdpDirection.SENDRECV)
        await self.restart_recording(call)
        await self.engine._watch_media(call)

    def _end_leg(self, leg: Leg, cause: str) -> None:
        """BYE one leg that leaves a call which goes on (a transferor): everything _finish would drop."""
        self.engine._send_bye(leg)
        leg.state = LegState.ENDED
        if leg.dialog is not None:
            self.engine.dialogs.pop(leg.dialog.key, None)
        if leg.server_txn is not None:
            self.engine.invites.pop(leg.server_txn, None)
        self.engine.publish(ev.LegEnded, leg.call, leg_id=leg.id, cause=cause)
        self.engine._release(leg)

    async def restart_recording(self, call: Call) -> None:
        """After a transfer the recording follows a gone endpoint: finish it and record the new pair."""
        if call.recording is None or self.engine.recordings_dir is None:
            return
        recording, call.recording = call.recording, None
        await self.engine.media.stop_record(recording)
        self.engine.publish(ev.RecordingStopped, call, path=call.recording_path or "")
        call.recording_part += 1
        if call.caller is not None and call.callee is not None:
            await self.engine._start_recording(call, call.caller, call.callee, part=call.recording_part)

    def _notify_refer(self, leg: Leg, sipfrag: str, *, final: bool) -> None:
        if leg.dialog is None or leg.state is LegState.ENDED:
            return
        state = "terminated;reason=noresource" if final else "active;expires=60"
        notify = leg.dialog.create_request(
            "NOTIFY", body=(sipfrag + "\r\n").encode(), content_type="message/sipfrag;version=2.0",
            extra_headers=[("Event", "refer"), ("Subscription-State", state)])
        add_top_via(notify, leg.peer.transport, self.engine.sip.local_host, self.engine.sip.port_for(leg.peer.transport))
        self.engine.sip.send_request(notify, leg.peer, lambda event: None)

    def on_event(self, transfer: Transfer, leg: Leg, event: object) -> None:
        """What the dialog machine of a leg to the transfer target reports."""
        call = leg.call
        if isinstance(event, Progress):
            if event.status == 180 and not transfer.ringing:
                transfer.ringing = True
                self._notify_refer(transfer.transferor, "SIP/2.0 180 Ringing", final=False)
            return
        if isinstance(event, Challenged):
            self.engine._leg_hangup(leg)
            return
        if isinstance(event, Answered):
            assert leg.sip is not None and leg.sip.dialog is not None
            leg.dialog = leg.sip.dialog
            if transfer.done or call.ended or leg.cancelled:  # another target answered, or the call is gone
                self.engine._send_bye(leg)
                leg.state = LegState.ENDED
                self.engine._release(leg)
                return
            transfer.done = True
            leg.state = LegState.ANSWERED
            leg.media = event.media
            self.engine.dialogs[leg.dialog.key] = leg
            for other in transfer.forks:
                if other is not leg and other.state is not LegState.ENDED:
                    self.engine._cancel_fork(other, 'SIP;cause=200;text="Call completed elsewhere"')
            self.engine.step(call, self._connected(transfer, leg))
            return
        if not isinstance(event, Terminated):
            return
        status = self.engine._unanswered_end(leg, event)
        if status is None:
            return
        leg.state = LegState.ENDED
        leg.final_status = status
        self.engine.publish(ev.LegEnded, call, leg_id=leg.id, cause=f"sip_{status}")
        self.engine._release(leg)
        if not transfer.done and all(f.state is LegState.ENDED for f in transfer.forks):
            reason = REASONS.get(status, "Failed")
            self._notify_refer(transfer.transferor, f"SIP/2.0 {status} {reason}", final=True)

    async def _connected(self, transfer: Transfer, leg: Leg, response: Response | None = None) -> None:
        call = leg.call
        transferor, transferee = transfer.transferor, transfer.transferee
        media = leg.media
        if media is None:
            self.engine._send_bye(leg)
            self._notify_refer(transferor, "SIP/2.0 488 Not Acceptable Here", final=True)
            return
        leg.media = media
        await self.engine._set_remote(leg, media)
        assert transferee.endpoint is not None and leg.endpoint is not None
        await self.engine.media.bridge(transferee.endpoint, leg.endpoint)  # ends the bridge with the transferor
        await self.engine._music_on_hold(transferee, False)
        if call.caller is transferor:
            call.caller = leg
        else:
            call.callee = leg
        if self.engine.queue_calls is not None:  # a queue call's agent transferred its caller: TRANSFER
            self.engine.queue_calls.transferred(call, transferor, transfer.target.number)
        self._notify_refer(transferor, "SIP/2.0 200 OK", final=True)
        self._end_leg(transferor, "transferred")
        self.engine.publish(ev.LegAnswered, call, leg_id=leg.id)
        self.engine.publish(ev.CallTransferred, call, kind=ev.TransferKind.BLIND, from_leg_id=transferor.id,
                     to=transfer.target)
        if transferee.held_by_us and not transferee.held:
            self.engine._reinvite(transferee, SdpDirection.SENDRECV)
        await self.restart_recording(call)
        log.info("call transferred", call=call.id, tenant=call.tenant_id, to=transfer.target.number)
        await self.engine._watch_media(call)
