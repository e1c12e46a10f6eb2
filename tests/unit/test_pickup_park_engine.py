"""Call pickup (*8, **<ext>) and call park (transfer to 700, dial 701–720, ring-back) in the real call
engine (the harness: fake SIP, fake media, virtual clock)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from callengine_harness import TENANT, Device, FakeClientTxn, Harness, PhoneCall

from zvonok.cdr.state import CallRecord
from zvonok.media.hold_music import HoldMusic
from zvonok.media.interface import BUSY_RU, Prompt
from zvonok.sip.message import Response
from zvonok.telephony import events as ev
from zvonok.telephony.park import Parking
from zvonok.telephony.pickup import Pickup

ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'


def _features(h: Harness, tmp_path: Path, **park: Any) -> None:
    h.engine.pickup = Pickup(h.engine)
    h.engine.parking = Parking(h.engine, **park)
    h.engine.hold_music = HoldMusic(tmp_path)


def _recording(h: Harness) -> list[list[str]]:
    """Recordings in the fake media engine (the harness has none): which endpoints each one records."""
    recorded: list[list[str]] = []

    async def record(endpoints: Any, path: Any, *, stereo: bool) -> Any:
        recorded.append([e.id for e in endpoints])
        return object()

    async def stop_record(recording: Any) -> Any:
        return None

    h.media.record = record  # type: ignore[method-assign]
    h.media.stop_record = stop_record  # type: ignore[method-assign]
    return recorded


def _group(h: Harness, number: str, *, department: int | None = None, group: str | None = None,
           tenant: int = TENANT) -> None:
    key = (TENANT, number)
    h.directory.extensions[key] = dataclasses.replace(h.directory.extensions[key], department_id=department,
                                                      pickup_group=group, tenant_id=tenant)


def _cdr(h: Harness, call_id: str) -> Any:
    events = [e for e in h.events if isinstance(e, ev.CallEvent) and e.call_id == call_id]
    started = next(e for e in events if isinstance(e, ev.CallStarted))
    record = CallRecord.started(started)
    for event in events:
        if event is not started and not isinstance(event, ev.CallEnded):
            record.apply(event)
    return record.finish_with(next(e for e in events if isinstance(e, ev.CallEnded)))


def _ringing(h: Harness, caller: list[Device], callee: list[Device], number: str) -> tuple[PhoneCall, list[FakeClientTxn]]:
    call = h.call(caller, number)
    forks = [txn for device in callee for txn in h.invites_to(device)]
    for fork in forks:
        h.reply(fork, 180)
    return call, forks


# -- pickup -------------------------------------------------------------------------------------------------
def test_group_pickup_takes_the_ringing_call(tmp_path: Path) -> None:
    with Harness(recordings_dir=tmp_path / "rec") as h:
        _features(h, tmp_path)
        recorded = _recording(h)
        alice, bob, carol = h.extension("101"), h.extension("102", devices=2), h.extension("103")
        _group(h, "102", department=7)
        _group(h, "103", department=7)
        call, forks = _ringing(h, alice, bob, "102")
        ringing_call = call.engine_call
        assert ringing_call is not None
        picker = h.call(carol, "*8")
        assert picker.final_status() == 200  # carol is answered by us
        assert [fork.cancelled for fork in forks] == [ELSEWHERE, ELSEWHERE]  # bob's phones stop ringing
        assert call.final_status() == 200  # alice is connected
        picker_leg = ringing_call.callee
        assert picker_leg is not None and picker_leg.party.number == "103"
        assert ringing_call.caller is not None and ringing_call.caller.endpoint is not None
        assert picker_leg.endpoint is not None
        assert h.media.bridges[-1] == (ringing_call.caller.endpoint.id, picker_leg.endpoint.id)
        (picked,) = h.events_of(ev.CallPickedUp)
        assert (picked.call_id, picked.by.number, picked.from_number, picked.directed) == (
            ringing_call.id, "103", "102", False)
        for fork in forks:  # bob's phones confirm the CANCEL: nothing changes for the call
            h.reply(fork, 487)
        assert call.final_status() == 200 and not ringing_call.ended
        call.ack()
        picker.ack()
        picker.bye()  # carol hangs up: alice gets our BYE
        assert len(h.sent_requests("BYE", to=alice)) == 1
        cdr = _cdr(h, ringing_call.id)
        assert cdr.callee.number == "103" and cdr.disposition is ev.Disposition.ANSWERED
        assert cdr.recording_path is not None  # recorded from the pickup on
        assert len(recorded) == 1 and len(recorded[0]) == 2
        assert cdr.hangup_side is ev.HangupSide.CALLEE
        picker_cdr = _cdr(h, picked_call_id(h, "*8"))
        assert picker_cdr.cause == "picked_up" and picker_cdr.dialed_number == "*8"
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0


def picked_call_id(h: Harness, dialed: str) -> str:
    return next(e.call_id for e in h.events_of(ev.CallStarted) if e.callee_number == dialed)


def test_a_200_crossing_the_pickup_is_ended_with_bye(tmp_path: Path) -> None:
    with Harness() as h:
        _features(h, tmp_path)
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        _group(h, "102", group="sales")
        _group(h, "103", group="sales")
        call, (fork,) = _ringing(h, alice, bob, "102")
        picker = h.call(carol, "*8")
        assert picker.final_status() == 200
        h.reply(fork, 200)  # bob's phone answered as our CANCEL went out
        assert len(h.sent_requests("BYE", to=bob)) == 1
        assert call.engine_call is not None and call.engine_call.callee is not None
        assert call.engine_call.callee.party.number == "103"


def test_directed_pickup_needs_no_group(tmp_path: Path) -> None:
    with Harness() as h:
        _features(h, tmp_path)
        alice, bob, carol, dave = (h.extension(n) for n in ("101", "102", "103", "104"))
        _group(h, "102", department=1)
        _group(h, "104", department=2)
        call_bob, (to_bob,) = _ringing(h, alice, bob, "102")
        call_carol, (to_carol,) = _ringing(h, alice, carol, "103")
        picker = h.call(dave, "**103")
        assert picker.final_status() == 200
        assert to_carol.cancelled == ELSEWHERE and to_bob.cancelled is None  # only carol's call
        assert call_carol.final_status() == 200 and call_bob.final_status() is None
        assert h.events_of(ev.CallPickedUp)[0].directed is True


def test_nothing_to_pick_up_is_a_tone_then_404(tmp_path: Path) -> None:
    with Harness() as h:
        _features(h, tmp_path)
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        _group(h, "102", department=1)
        _group(h, "103", department=2)  # another department's call is not carol's to take
        call, (fork,) = _ringing(h, alice, bob, "102")
        picker = h.call(carol, "*8")
        assert picker.statuses()[-1] == 183 and picker.final_status() is None
        assert any(source == BUSY_RU for _, source in h.media.played)
        h.advance(2.0)
        assert picker.final_status() == 404
        assert fork.cancelled is None and call.final_status() is None  # alice's call rings on
        directed = h.call(carol, "**109")  # nobody's ringing 109
        h.advance(2.0)
        assert directed.final_status() == 404
        assert h.events_of(ev.CallPickedUp) == []


def test_a_call_of_another_company_is_never_picked_up(tmp_path: Path) -> None:
    with Harness() as h:
        _features(h, tmp_path)
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        _group(h, "103", group="sales")
        call, (fork,) = _ringing(h, alice, bob, "102")
        assert call.engine_call is not None
        call.engine_call.tenant_id = 2  # the ringing call is another company's, its extension in "sales" too
        _group(h, "102", group="sales", tenant=2)
        for dialed in ("*8", "**102"):
            picker = h.call(carol, dialed)
            h.advance(2.0)
            assert picker.final_status() == 404
        assert fork.cancelled is None and call.final_status() is None


# -- park ----------------------------------------------------------------------------------------------------
def _answered(h: Harness, caller: list[Device], callee: list[Device], number: str) -> tuple[PhoneCall, FakeClientTxn, Response]:
    call = h.call(caller, number)
    fork = h.invites_to(callee)[0]
    ok = h.reply(fork, 200)
    call.ack()
    return call, fork, ok


def _refer(h: Harness, fork: FakeClientTxn, ok: Response, target: str) -> None:
    refer = h.request_from(fork, ok, "REFER", headers=[("Refer-To", f"<sip:{target}@acme.test>")])
    assert [r.status for r in refer.responses] == [202]


def _last_notify(h: Harness, to: list[Device]) -> bytes:
    return h.sent_requests("NOTIFY", to=to)[-1].request.body


def test_park_and_retrieve(tmp_path: Path) -> None:
    with Harness(recordings_dir=tmp_path / "rec") as h:
        _features(h, tmp_path)
        recorded = _recording(h)
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        call, fork, ok = _answered(h, alice, bob, "102")
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None
        alice_endpoint = engine_call.caller.endpoint
        assert alice_endpoint is not None
        _refer(h, fork, ok, "700")
        assert _last_notify(h, bob).startswith(b"SIP/2.0 200")
        assert len(h.sent_requests("BYE", to=bob)) == 1  # bob leaves the call
        assert h.media.playing[alice_endpoint.id] == Prompt(path=tmp_path / "default.wav", loop=True)
        (parked,) = h.events_of(ev.CallParked)
        assert (parked.slot, parked.parked_by.number, parked.call_id) == (701, "102", engine_call.id)
        assert h.engine.parking is not None
        assert [(p.slot, p.item.leg.party.number) for p in h.engine.parking.parked(TENANT)] == [(701, "101")]
        retriever = h.call(carol, "701")
        assert retriever.final_status() == 200
        assert alice_endpoint.id not in h.media.playing  # the music stops
        carol_leg = engine_call.callee
        assert carol_leg is not None and carol_leg.party.number == "103" and carol_leg.endpoint is not None
        assert h.media.bridges[-1] == (alice_endpoint.id, carol_leg.endpoint.id)
        (unparked,) = h.events_of(ev.CallUnparked)
        assert (unparked.slot, unparked.reason, unparked.by.number if unparked.by else None) == (701, "retrieved", "103")
        assert h.engine.parking.parked(TENANT) == []
        assert [e.path for e in h.events_of(ev.RecordingStarted)][-1].endswith("-2.wav")  # alice with carol
        assert recorded[-1] == [alice_endpoint.id, carol_leg.endpoint.id]
        retriever.ack()
        call.bye()  # alice hangs up: carol gets our BYE
        assert len(h.sent_requests("BYE", to=carol)) == 1
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0


def test_the_caller_parks_the_callee_and_an_empty_slot_is_404(tmp_path: Path) -> None:
    with Harness() as h:
        _features(h, tmp_path)
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        call, fork, _ = _answered(h, alice, bob, "102")
        refer = call.request("REFER")  # without Refer-To: refused
        assert refer.responses[-1].status == 400
        parked_by_alice = _refer_from_caller(h, call, "705")
        assert parked_by_alice.responses[-1].status == 202
        assert [e.slot for e in h.events_of(ev.CallParked)] == [705]
        assert len(h.sent_requests("BYE", to=alice)) == 1
        empty = h.call(carol, "701")
        assert empty.final_status() == 404
        retriever = h.call(carol, "705")
        assert retriever.final_status() == 200
        engine_call = h.engine.calls[h.events_of(ev.CallParked)[0].call_id]
        assert engine_call.caller is not None and engine_call.caller.party.number == "103"
        retriever.ack()
        h.reply(fork, 200)  # a retransmitted 2xx from bob: ACKed, nothing else
        retriever.bye()
        assert len(h.sent_requests("BYE", to=bob)) == 1


def _refer_from_caller(h: Harness, call: PhoneCall, target: str) -> Any:
    dialog = call._confirmed()
    from callengine_harness import FakeServerTxn, _via
    request = dialog.create_request("REFER", extra_headers=[("Refer-To", f"<sip:{target}@acme.test>")])
    _via(request, call.device.peer)
    txn = FakeServerTxn(request, call.device.peer)
    h.deliver(h.engine.on_request, txn, request, call.device.peer)
    return txn


def test_a_taken_slot_fails_the_transfer_and_700_takes_the_next(tmp_path: Path) -> None:
    with Harness() as h:
        _features(h, tmp_path)
        alice, bob, carol, dave = (h.extension(n) for n in ("101", "102", "103", "104"))
        _, fork1, ok1 = _answered(h, alice, bob, "102")
        _refer(h, fork1, ok1, "701")
        call2, fork2, ok2 = _answered(h, carol, dave, "104")
        _refer(h, fork2, ok2, "701")
        assert _last_notify(h, dave).startswith(b"SIP/2.0 486")  # taken: the transfer failed
        assert h.sent_requests("BYE", to=dave) == [] and call2.engine_call is not None
        assert not call2.engine_call.ended  # carol and dave still talk
        _refer(h, fork2, ok2, "700")
        assert _last_notify(h, dave).startswith(b"SIP/2.0 200")
        assert [e.slot for e in h.events_of(ev.CallParked)] == [701, 702]


def test_two_companies_both_have_slot_701(tmp_path: Path) -> None:
    with Harness() as h:
        _features(h, tmp_path)
        alice, bob, carol, dave = (h.extension(n) for n in ("101", "102", "103", "104"))
        call1, fork1, ok1 = _answered(h, alice, bob, "102")
        _refer(h, fork1, ok1, "700")
        call2, fork2, ok2 = _answered(h, carol, dave, "104")
        assert call2.engine_call is not None
        call2.engine_call.tenant_id = 2  # the second call is another company's
        _refer(h, fork2, ok2, "700")
        assert [(e.tenant_id, e.slot) for e in h.events_of(ev.CallParked)] == [(1, 701), (2, 701)]
        assert h.engine.parking is not None
        assert [p.item.leg.party.number for p in h.engine.parking.parked(1)] == ["101"]
        assert [p.item.leg.party.number for p in h.engine.parking.parked(2)] == ["103"]
        retriever = h.call(bob, "701")  # tenant 1's phone gets tenant 1's call
        assert retriever.final_status() == 200
        assert call1.engine_call is not None and call1.engine_call.callee is not None
        assert call1.engine_call.callee.party.number == "102"
        assert [p.slot for p in h.engine.parking.parked(2)] == [701]


def test_park_timeout_rings_back_the_parker(tmp_path: Path) -> None:
    with Harness() as h:
        _features(h, tmp_path, timeout=120.0, ringback_timeout=30.0)
        alice, bob = h.extension("101"), h.extension("102")
        call, fork, ok = _answered(h, alice, bob, "102")
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None
        alice_endpoint = engine_call.caller.endpoint
        assert alice_endpoint is not None
        _refer(h, fork, ok, "700")
        h.advance(119.0)
        assert len(h.invites_to(bob)) == 1  # only the original call's
        h.advance(2.0)
        ring_back = h.invites_to(bob)[-1]
        assert len(h.invites_to(bob)) == 2 and "101" in (ring_back.request.headers.get("from") or "")
        assert [e.reason for e in h.events_of(ev.CallUnparked)] == ["timeout"]
        assert h.media.playing[alice_endpoint.id] == Prompt(path=tmp_path / "default.wav", loop=True)
        h.reply(ring_back, 180)
        h.reply(ring_back, 200, to_tag="back")
        assert alice_endpoint.id not in h.media.playing
        assert engine_call.callee is not None and engine_call.callee.endpoint is not None
        assert h.media.bridges[-1] == (alice_endpoint.id, engine_call.callee.endpoint.id)
        call.bye()
        assert len([t for t in h.sent_requests("BYE", to=bob)]) == 2  # the transferor's, then the ring-back's
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0


def test_an_unanswered_ring_back_ends_the_call(tmp_path: Path) -> None:
    with Harness() as h:
        _features(h, tmp_path, timeout=60.0, ringback_timeout=30.0)
        alice, bob = h.extension("101"), h.extension("102")
        call, fork, ok = _answered(h, alice, bob, "102")
        _refer(h, fork, ok, "700")
        h.advance(61.0)
        ring_back = h.invites_to(bob)[-1]
        h.reply(ring_back, 180)
        h.advance(28.0)  # the ring-back started at 60 s
        assert h.sent_requests("BYE", to=alice) == []
        h.advance(2.0)
        assert len(h.sent_requests("BYE", to=alice)) == 1
        assert ring_back.cancelled is not None
        ended = h.events_of(ev.CallEnded)[-1]
        assert ended.cause == "park_timeout"


def test_a_parked_party_hanging_up_frees_the_slot(tmp_path: Path) -> None:
    with Harness() as h:
        _features(h, tmp_path)
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        call, fork, ok = _answered(h, alice, bob, "102")
        _refer(h, fork, ok, "700")
        call.bye()
        assert [e.reason for e in h.events_of(ev.CallUnparked)] == ["hangup"]
        assert h.engine.parking is not None and h.engine.parking.parked(TENANT) == []
        assert h.call(carol, "701").final_status() == 404
        h.advance(200.0)  # no ring-back for a call that is gone
        assert len(h.invites_to(bob)) == 1
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0


def test_the_callee_parked_by_the_caller_rings_the_caller_back(tmp_path: Path) -> None:
    with Harness() as h:
        _features(h, tmp_path, timeout=120.0, ringback_timeout=30.0)
        alice, bob = h.extension("101"), h.extension("102")
        call, fork, _ = _answered(h, alice, bob, "102")
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.callee is not None
        bob_endpoint = engine_call.callee.endpoint
        assert bob_endpoint is not None
        assert _refer_from_caller(h, call, "700").responses[-1].status == 202
        assert len(h.sent_requests("BYE", to=alice)) == 1  # alice left the call; bob waits in 701
        h.advance(121.0)
        ring_back = h.invites_to(alice)[-1]
        assert "102" in (ring_back.request.headers.get("from") or "")  # bob calls alice's phone back
        ok = h.reply(ring_back, 200, to_tag="back")
        assert engine_call.caller is not None and engine_call.caller.endpoint is not None
        assert h.media.bridges[-1] == (bob_endpoint.id, engine_call.caller.endpoint.id)
        assert bob_endpoint.id not in h.media.playing
        h.request_from(ring_back, ok, "BYE")  # alice hangs up: bob gets our BYE
        assert len(h.sent_requests("BYE", to=bob)) == 1
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0


def test_a_refused_ring_back_ends_the_call_at_once(tmp_path: Path) -> None:
    with Harness() as h:
        _features(h, tmp_path, timeout=10.0)
        alice, bob = h.extension("101"), h.extension("102")
        call, fork, ok = _answered(h, alice, bob, "102")
        _refer(h, fork, ok, "700")
        h.advance(11.0)
        h.reply(h.invites_to(bob)[-1], 486)
        assert len(h.sent_requests("BYE", to=alice)) == 1
        assert h.events_of(ev.CallEnded)[-1].cause == "park_timeout"
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0


def test_a_held_party_parked_is_resumed_when_retrieved(tmp_path: Path) -> None:
    from zvonok.sip.sdp import Direction

    with Harness() as h:
        _features(h, tmp_path)
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        call, fork, ok = _answered(h, alice, bob, "102")
        h.request_from(fork, ok, "INVITE", body=h.offer(bob[0], Direction.SENDONLY))  # bob holds, then parks
        (hold,) = [t for t in h.sent_requests("INVITE", to=alice) if t.request.to.tag]
        h.reply(hold, 200)
        _refer(h, fork, ok, "700")
        retriever = h.call(carol, "701")
        assert retriever.final_status() == 200
        offers = [t for t in h.sent_requests("INVITE", to=alice) if t.request.to.tag]
        assert len(offers) == 2 and b"a=sendrecv" in offers[-1].request.body  # alice's phone: resumed
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None and engine_call.caller.endpoint is not None
        assert engine_call.caller.endpoint.id not in h.media.playing
