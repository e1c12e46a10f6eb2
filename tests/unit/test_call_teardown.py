"""How the call engine ends a call: one BYE per leg however many causes race, and a finished call is freed
by reference counting alone (no cycle left for a rare full collection: issue 8)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from zvonok.media.events import MediaTimeout
from zvonok.sip.dialog import Dialog
from zvonok.sip.message import Request, make_response, parse_datagram
from zvonok.sip.peer import Peer
from zvonok.sip.sdp_offer_answer import LocalSession
from zvonok.telephony import events as ev
from zvonok.telephony.b2bua import CallEngine
from zvonok.telephony.call import Call, Leg, LegState
from zvonok.telephony.location import Location

PEER = Peer(transport="udp", host="192.0.2.1", port=5060)


class Sip:
    local_host = "192.0.2.10"
    t1 = 0.5
    t2 = 4.0

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def port_for(self, transport: str) -> int:
        return 5060

    def send_request(self, request: Request, peer: Peer, handler: Any) -> None:
        self.requests.append(request)

    def respond(self, txn: object, response: object) -> None:
        pass

    def send_stateless(self, message: object, peer: Peer) -> None:
        pass


class Bus:
    def publish(self, event: object) -> None:
        pass


def _invite(n: int) -> Request:
    msg = parse_datagram((
        f"INVITE sip:102@acme.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:101@acme.test>;tag=f{n}\r\nTo: <sip:102@acme.test>\r\n"
        f"Contact: <sip:101@192.0.2.1>\r\nCall-ID: teardown-{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode())
    assert isinstance(msg, Request)
    return msg


def _answered_call(engine: CallEngine, sip: Sip) -> Call:
    call = Call(id="c1", tenant_id=1, direction=ev.Direction.INTERNAL, started_at=1.0, answered_at=2.0)
    legs = []
    for n, role in enumerate((ev.LegRole.CALLER, ev.LegRole.CALLEE)):
        invite = _invite(n)
        ok = make_response(invite, 200, to_tag=f"t{n}")
        ok.headers.add("Contact", "<sip:102@192.0.2.1>")
        leg = Leg(id=f"l{n}", role=role, call=call, party=ev.Party(number=str(101 + n)), peer=PEER,
                  session=LocalSession(sess_id=n), invite=invite, state=LegState.ANSWERED,
                  dialog=Dialog.from_uas(invite, ok, "<sip:zvonok@192.0.2.10>", secure=False))
        engine.dialogs[leg.dialog.key] = leg  # type: ignore[union-attr]
        legs.append(leg)
    call.caller, call.callee = legs
    call.forks.append(legs[1])
    engine.calls[call.id] = call
    return call


def _engine(sip: Sip) -> CallEngine:
    return CallEngine(sip=sip, media=None, auth=None, location=Location(), directory=None,  # type: ignore[arg-type]
                      bus=Bus())  # type: ignore[arg-type]


async def test_both_legs_silent_at_once_send_one_bye_each() -> None:
    """Under load both legs' media timeouts fire before the call's end runs: the second must not BYE a
    dialog the first one ended (it raised SipUsageError in the media engine's callback)."""
    sip = Sip()
    engine = _engine(sip)
    call = _answered_call(engine, sip)
    caller, callee = call.caller, call.callee
    assert caller is not None and callee is not None
    for leg in (caller, callee):
        engine.endpoint_legs[leg.id] = leg  # (their endpoints' ids: the legs' own, here)
    for leg in (caller, callee):
        engine._media_timeout(MediaTimeout(tenant_id=1, call_id=call.id, endpoint_id=leg.id, silent_for=60.0))
    assert [r.method for r in sip.requests] == ["BYE", "BYE"]
    await asyncio.wait(list(engine._tasks), timeout=5)
    assert call.ended and not engine.calls and not engine.dialogs


async def test_a_finished_call_is_freed_without_the_cycle_collector() -> None:
    sip = Sip()
    engine = _engine(sip)
    call = _answered_call(engine, sip)
    caller = call.caller
    assert caller is not None
    engine._hangup(call, None, ev.HangupSide.SYSTEM, "test")
    await asyncio.wait(list(engine._tasks), timeout=5)
    assert call.ended and not engine.calls and not engine.dialogs
    gc.disable()  # only reference counting may free the call
    try:
        live = len(Call.live)
        del call, caller
        assert len(Call.live) == live - 1
    finally:
        gc.enable()
