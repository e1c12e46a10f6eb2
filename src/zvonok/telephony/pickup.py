"""Call pickup: answer, from one's own phone, a call ringing a colleague's (the FreePBX codes).

How it works: ``*8`` picks up a call ringing any extension of the caller's pickup group; ``**<ext>``
(directed pickup) a call ringing that extension. An extension's pickup group is its ``pickup_group``,
or its department when it has none (an extension with neither is in no group); only calls of the
picker's own company are ever looked at. The oldest ringing call that fits wins.

The picker's INVITE opens a call of its own (its CDR is the feature code's: answered, "picked_up"). We
answer the picker, then its leg moves into the ringing call as that call's callee, the way an attended
transfer moves a leg (telephony/transfers.py): the ringing forks are cancelled with ``Reason:
SIP;cause=200;text="Call completed elsewhere"`` (RFC 3326), the caller gets our 200, and the two
endpoints are bridged. ``CallPickedUp`` and the call's ``CallAnswered`` (its answering leg is the
picker's, so the CDR's callee is the picker) say who answered. Nothing to pick up: the picker hears a
short tone in early media and gets 404.

The engine calls :meth:`Pickup.on_dial` for numbers starting with ``*``; the rest uses the engine's
own steps (open a call, answer, cancel forks, bridge).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zvonok.logs import get_logger
from zvonok.media.interface import BUSY_RU
from zvonok.sip.errors import SipParseError
from zvonok.sip.message import Request, make_response
from zvonok.sip.peer import Peer
from zvonok.sip.replaces import Replaces, parse_replaces
from zvonok.sip.transaction import ServerTransaction

from . import events as ev
from .call import Call, Leg, LegState
from .directory import ExtensionInfo

if TYPE_CHECKING:
    from .b2bua import CallEngine

log = get_logger(__name__)

GROUP_PICKUP = "*8"
DIRECTED_PICKUP = "**"
COMPLETED_ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'
REFUSAL_TONE_SECONDS = 1.5


@dataclass(frozen=True, slots=True)
class PickupRequest:
    extension: str | None  # directed: the extension whose call to take; None: the picker's group


def pickup_request(dialed: str) -> PickupRequest | None:
    """``*8`` or ``**<ext>`` (None for anything else)."""
    if dialed == GROUP_PICKUP:
        return PickupRequest(None)
    if dialed.startswith(DIRECTED_PICKUP) and dialed[2:].isdigit():
        return PickupRequest(dialed[2:])
    return None


def pickup_group_of(ext: ExtensionInfo) -> str | None:
    """The group an extension's calls are picked up from: its own, else its department's (API-checked
    group names have no ':', so the two never collide)."""
    if ext.pickup_group:
        return ext.pickup_group
    return f"department:{ext.department_id}" if ext.department_id is not None else None


def _ringing(call: Call) -> list[Leg]:
    """The forks of a call still ringing, when the call may be picked up at all."""
    if (call.ended or call.answered_at is not None or call.callee is not None or call.forward_pending
            or call.access is not None or call.conference is not None or call.caller is None
            or call.caller.server_txn is None):
        return []
    return [fork for fork in call.forks
            if fork.state in (LegState.TRYING, LegState.RINGING) and not fork.cancelled]


class Pickup:
    """The pickup application of one call engine."""

    def __init__(self, engine: CallEngine) -> None:
        self.engine = engine

    async def on_dial(self, txn: ServerTransaction, request: Request, peer: Peer, tenant_id: int, domain: str,
                      caller_ext: ExtensionInfo, dialed: str, session_expires: int | None) -> bool:
        """``dialed`` is a pickup code: take a ringing call or refuse (True), else False."""
        wanted = pickup_request(dialed)
        if wanted is None:
            return False
        engine = self.engine
        picker_call = engine._open_call(txn, request, peer, tenant_id=tenant_id, party=caller_ext.party(),
                                        domain=domain, dialed=dialed, session_expires=session_expires,
                                        srtp_policy=caller_ext.srtp, direction=ev.Direction.INTERNAL)
        if not await engine._negotiate_caller(picker_call):
            return True
        target = await self._find(tenant_id, caller_ext, wanted)
        if target is None or picker_call.ended:
            log.info("nothing to pick up", call=picker_call.id, tenant=tenant_id, code=dialed)
            await self._refuse(picker_call)
            return True
        ringing_call, ringing_leg = target
        await self._pick(picker_call, ringing_call, ringing_leg, directed=wanted.extension is not None)
        return True

    async def _pick(self, picker_call: Call, ringing_call: Call, ringing_leg: Leg, *, directed: bool) -> None:
        self._take(picker_call, ringing_call, ringing_leg, directed=directed)
        await self.engine._finish(picker_call, ev.Disposition.ANSWERED, ev.HangupSide.CALLER, "picked_up", None)

    async def on_replaces(self, txn: ServerTransaction, request: Request, peer: Peer, tenant_id: int, domain: str,
                          caller_ext: ExtensionInfo, session_expires: int | None) -> None:
        """An INVITE with ``Replaces`` (RFC 3891) from an authenticated phone: a BLF key naming the early
        dialog of our INVITE to a colleague's device (the call-id and tags of our dialog-info NOTIFY) is a
        directed pickup of that call. A confirmed, unknown, own or other company's dialog: 481; a malformed
        header: 400."""
        engine = self.engine
        try:
            replaces = parse_replaces(request.headers.get("replaces") or "")
        except SipParseError as exc:
            engine.sip.respond(txn, make_response(request, 400, str(exc), to_tag=uuid.uuid4().hex[:16]))
            return
        target = self._named(tenant_id, caller_ext, replaces)
        if target is None:
            log.info("replaces names no ringing call", tenant=tenant_id, sip_call_id=replaces.call_id)
            engine.sip.respond(txn, make_response(request, 481, to_tag=uuid.uuid4().hex[:16]))
            return
        ringing_call, ringing_leg = target
        picker_call = engine._open_call(txn, request, peer, tenant_id=tenant_id, party=caller_ext.party(),
                                        domain=domain, dialed=f"{DIRECTED_PICKUP}{ringing_leg.party.number}",
                                        session_expires=session_expires, srtp_policy=caller_ext.srtp,
                                        direction=ev.Direction.INTERNAL)
        if not await engine._negotiate_caller(picker_call):
            return
        if picker_call.ended:
            return
        if ringing_leg not in _ringing(ringing_call):  # answered or hung up while we negotiated
            await engine._refuse(picker_call, 481, "nothing_to_pick_up")
            return
        await self._pick(picker_call, ringing_call, ringing_leg, directed=True)

    def _named(self, tenant_id: int, picker: ExtensionInfo, replaces: Replaces) -> tuple[Call, Leg] | None:
        """The ringing fork of a call of the tenant whose early dialog ``replaces`` names (either tag order)."""
        keys = replaces.dialog_keys()
        for call in self.engine.calls.values():
            if call.tenant_id != tenant_id:
                continue
            if call.caller is not None and call.caller.party.extension_id == picker.extension_id:
                continue  # one's own outgoing call is not picked up
            for fork in _ringing(call):
                dialog = fork.sip.dialog if fork.sip is not None else None
                if dialog is None or (dialog.call_id, dialog.local_tag, dialog.remote_tag) not in keys:
                    continue
                if fork.party.extension_id is None or fork.party.extension_id == picker.extension_id:
                    return None
                return call, fork
        return None

    async def _find(self, tenant_id: int, picker: ExtensionInfo,
                    wanted: PickupRequest) -> tuple[Call, Leg] | None:
        """The oldest call of the tenant ringing the wanted extension (or one of the picker's group)."""
        group = pickup_group_of(picker) if wanted.extension is None else None
        if wanted.extension is None and group is None:
            return None
        candidates = sorted((c for c in self.engine.calls.values() if c.tenant_id == tenant_id and _ringing(c)),
                            key=lambda c: c.started_at)
        groups: dict[str, str | None] = {}  # extension number -> its group, looked up once
        for call in candidates:
            if call.caller is not None and call.caller.party.extension_id == picker.extension_id:
                continue  # one's own outgoing call is not picked up
            for fork in _ringing(call):
                party = fork.party
                if party.extension_id is None or party.extension_id == picker.extension_id:
                    continue
                if wanted.extension is not None:
                    if party.number == wanted.extension:
                        return call, fork
                    continue
                if party.number not in groups:
                    ext = await self.engine.directory.extension(tenant_id, party.number)
                    groups[party.number] = pickup_group_of(ext) if ext is not None and ext.tenant_id == tenant_id \
                        else None
                if groups[party.number] == group and _ringing(call):  # still ringing after the await
                    return call, fork
        return None

    def _take(self, picker_call: Call, call: Call, ringing_leg: Leg, *, directed: bool) -> None:
        """Answer the picker and make its leg the ringing call's callee; no await in here, so nothing of
        either call changes half-way (a fork's 200 arriving later finds a callee and is ended with BYE)."""
        engine = self.engine
        picker = picker_call.caller
        assert picker is not None and call.caller is not None
        engine._answer_caller(picker_call)  # (its leg machine runs the RFC 4028 timer from here on)
        engine.publish(ev.LegEnded, picker_call, leg_id=picker.id, cause="picked_up")
        picker_call.caller = None
        # the picker's leg leaves its own call and answers this one
        picker.call = call
        picker.role = ev.LegRole.CALLEE
        call.forks.append(picker)
        call.callee = picker
        if call.no_answer is not None:
            call.no_answer.cancel()
            call.no_answer = None
        for fork in call.forks:
            if fork is not picker and fork.state is not LegState.ENDED:
                engine._cancel_fork(fork, COMPLETED_ELSEWHERE)
        engine.publish(ev.LegCreated, call, leg_id=picker.id, role=ev.LegRole.CALLEE, party=picker.party,
                       contact=picker.invite.headers.get("contact") or "" if picker.invite is not None else "",
                       user_agent=picker.user_agent)
        engine.publish(ev.LegAnswered, call, leg_id=picker.id)
        engine.publish(ev.CallPickedUp, call, leg_id=picker.id, by=picker.party, from_number=ringing_leg.party.number,
                       directed=directed)
        engine._answer_caller(call, answered_by=picker)
        log.info("call picked up", call=call.id, tenant=call.tenant_id, by=picker.party.number,
                 ringing=ringing_leg.party.number, directed=directed)
        engine.step(call, self._bridge(call, picker))

    async def _bridge(self, call: Call, picker: Leg) -> None:
        caller = call.caller
        if call.ended or caller is None or caller.endpoint is None or picker.endpoint is None:
            return
        if call.ringback:  # our in-band ringback to the caller (a 183) stops: someone answered
            call.ringback = False
            await self.engine.media.stop_play(caller.endpoint)
        await self.engine.media.bridge(caller.endpoint, picker.endpoint)
        await self.engine._watch_media(call)  # RTP inactivity of the new pair ends a call whose phone vanished
        if self.engine.recordings_dir is not None and not call.ended:
            await self.engine._start_recording(call, caller, picker)

    async def _refuse(self, call: Call) -> None:
        """A short tone in early media (a 183 with our answer), then 404: the phone shows why at once."""
        engine = self.engine
        caller = call.caller
        if caller is not None and caller.endpoint is not None and caller.invite is not None \
                and caller.server_txn is not None and call.caller_answer_sdp:
            await engine.media.play(caller.endpoint, BUSY_RU)
            engine._provisional(call, 183, call.caller_answer_sdp)  # the caller leg's machine sends it
            await asyncio.sleep(REFUSAL_TONE_SECONDS)
        if not call.ended:
            await engine._refuse(call, 404, "nothing_to_pick_up")
