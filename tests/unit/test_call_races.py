"""Races in the call engine, each driven through the harness on a virtual clock (issue 9):

- a CANCEL crossing the callee's 200 (RFC 3261 §9.1, §15: ACK the 2xx, then BYE);
- a step of a call that raises (ports exhausted on trunk failover) ends the call cleanly;
- re-INVITE glare: 491 to the request that crosses ours (§14.2), our re-INVITE retried after 491 (§14.1);
- the access-number dialogue's actions carried out by one pump at a time.
"""

from __future__ import annotations

from callengine_harness import Harness, PhoneCall

from zvonok.sip.sdp import Direction
from zvonok.telephony import events as ev


def _answered(h: Harness) -> tuple[PhoneCall, object, object, object, object]:
    alice, bob = h.extension("101"), h.extension("102")
    call = h.call(alice, "102")
    fork = h.invites_to(bob)[0]
    h.reply(fork, 180)
    ok = h.reply(fork, 200)
    call.ack()
    assert call.final_status() == 200
    return call, alice, bob, fork, ok


def _in_dialog_invites(h: Harness, device: object) -> list:
    return [t for t in h.sent_requests("INVITE", to=device) if t.request.to.tag]  # type: ignore[arg-type]


def _ended(h: Harness) -> ev.CallEnded:
    ended = h.events_of(ev.CallEnded)
    assert len(ended) == 1
    return ended[0]  # type: ignore[no-any-return]


# -- 1. CANCEL vs 200 -----------------------------------------------------------------------------------
def test_a_cancel_crossing_the_callees_200_acks_it_and_then_byes_the_callee() -> None:
    with Harness() as h:
        alice, bob = h.extension("101"), h.extension("102")
        call = h.call(alice, "102")
        fork = h.invites_to(bob)[0]
        h.reply(fork, 180)
        # the caller gives up just as the callee picks up: our CANCEL and its 200 cross on the wire
        h.at_once(call.cancel, lambda: h.reply(fork, 200))
        assert call.final_status() == 487
        assert 200 not in call.statuses() and call.txn.dropped == []  # never a 200 to the caller
        assert len(h.sip.acks(bob[0].peer)) >= 1  # the 2xx is acknowledged first (§13.2.2.4) ...
        assert len(h.sent_requests("BYE", to=bob)) == 1  # ... and its dialog ended: bob is not left talking to nobody
        ended = _ended(h)
        assert ended.disposition is ev.Disposition.CANCELLED
        assert not h.engine.calls and not h.engine.dialogs
        assert h.media.in_use == 0


def test_a_200_after_the_cancel_was_handled_is_also_acked_and_byed() -> None:
    with Harness() as h:
        alice, bob = h.extension("101"), h.extension("102")
        call = h.call(alice, "102")
        fork = h.invites_to(bob)[0]
        h.reply(fork, 180)
        call.cancel()
        h.reply(fork, 200)
        assert call.final_status() == 487
        assert len(h.sip.acks(bob[0].peer)) == 1
        assert len(h.sent_requests("BYE", to=bob)) == 1
        assert _ended(h).disposition is ev.Disposition.CANCELLED
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0


def test_a_no_answer_timeout_crossing_the_200_byes_the_callee() -> None:
    with Harness(no_answer_timeout=30.0) as h:
        alice, bob = h.extension("101"), h.extension("102")
        call = h.call(alice, "102")
        fork = h.invites_to(bob)[0]
        h.reply(fork, 180)
        h.advance(30.0)  # the engine gives up and cancels ...
        assert fork.cancelled is not None
        h.reply(fork, 200)  # ... as the callee answers
        assert call.final_status() == 480
        assert len(h.sent_requests("BYE", to=bob)) == 1
        assert _ended(h).disposition is ev.Disposition.NO_ANSWER
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0


# -- 2. a failing step ends its call cleanly ------------------------------------------------------------------
def test_ports_exhausted_during_trunk_failover_end_the_call_cleanly() -> None:
    with Harness() as h:
        alice = h.extension("101")
        first, carrier1 = h.trunk(priority=1)
        second, carrier2 = h.trunk(priority=2)
        call = h.call(alice, "84951234567")
        attempt = h.invites_to(carrier1)[0]
        h.reply(attempt, 100)
        h.media.exhausted = True  # other calls took every port meanwhile
        h.reply(attempt, 503)  # the first carrier fails: failover needs a new endpoint, which fails
        assert call.final_status() in (500, 503)  # the caller is not left ringing
        assert h.invites_to(carrier2) == []
        assert not h.engine.calls and not h.engine.invites
        assert h.trunks.active == {}  # no trunk slot kept by the dead call
        assert h.media.in_use == 0
        ended = _ended(h)  # the CDR writer's input
        assert ended.disposition is ev.Disposition.FAILED
        h.advance(120.0)
        assert h.events_of(ev.CallEnded) == [ended]


def test_a_step_that_raises_after_the_answer_ends_the_call_with_bye() -> None:
    with Harness() as h:
        call, alice, bob, fork, ok = _answered(h)

        async def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("media engine failed")

        h.media.set_remote = broken  # type: ignore[method-assign]
        hold = h.request_from(fork, ok, "INVITE", body=h.offer(bob[0], Direction.SENDONLY))  # type: ignore[arg-type,index]
        assert [r.status for r in hold.responses] == [500]  # the request the failed step was answering
        assert len(h.sent_requests("BYE", to=alice)) == 1
        assert len(h.sent_requests("BYE", to=bob)) == 1
        assert _ended(h).disposition is ev.Disposition.ANSWERED
        assert not h.engine.calls and not h.engine.dialogs and h.media.in_use == 0


# -- 3. re-INVITE glare ------------------------------------------------------------------------------------
def test_a_reinvite_crossing_ours_is_answered_491() -> None:
    with Harness() as h:
        call, alice, bob, fork, ok = _answered(h)
        h.request_from(fork, ok, "INVITE", body=h.offer(bob[0], Direction.SENDONLY))  # type: ignore[arg-type,index]
        ours = _in_dialog_invites(h, alice)
        assert len(ours) == 1  # bob's hold relayed to alice, not answered yet
        theirs = call.request("INVITE", body=h.offer(alice[0]), content_type="application/sdp")  # type: ignore[index]
        assert [r.status for r in theirs.responses] == [491]
        h.reply(ours[0], 200)
        assert len(h.engine.calls) == 1  # the glare costs nothing: the call goes on
        assert h.sent_requests("BYE") == []


def test_our_reinvite_refused_491_is_sent_again_after_0_to_2_s_when_the_call_id_is_the_callers() -> None:
    with Harness() as h:
        call, alice, bob, fork, ok = _answered(h)
        h.request_from(fork, ok, "INVITE", body=h.offer(bob[0], Direction.SENDONLY))  # type: ignore[arg-type,index]
        first = _in_dialog_invites(h, alice)
        assert len(first) == 1
        h.reply(first[0], 491)
        assert len(_in_dialog_invites(h, alice)) == 1  # not at once
        h.advance(2.0)  # §14.1: we do not own the caller's Call-ID: 0–2 s
        again = _in_dialog_invites(h, alice)
        assert len(again) == 2
        assert b"a=sendonly" in again[1].request.body  # still the hold we had to relay
        assert again[1].request.cseq.number > first[0].request.cseq.number
        h.reply(again[1], 200)
        assert h.sent_requests("BYE") == []


def test_our_reinvite_refused_491_is_sent_again_after_2_1_to_4_s_when_we_own_the_call_id() -> None:
    with Harness() as h:
        call, alice, bob, fork, ok = _answered(h)
        call.request("INVITE", body=h.offer(alice[0], Direction.SENDONLY), content_type="application/sdp")  # type: ignore[index]
        first = _in_dialog_invites(h, bob)
        assert len(first) == 1  # alice's hold relayed to bob, on the leg whose Call-ID we chose
        h.reply(first[0], 491)
        h.advance(2.09)
        assert len(_in_dialog_invites(h, bob)) == 1
        h.advance(1.91)
        assert len(_in_dialog_invites(h, bob)) == 2


def test_a_retry_pending_when_the_call_ends_is_dropped() -> None:
    with Harness() as h:
        call, alice, bob, fork, ok = _answered(h)
        h.request_from(fork, ok, "INVITE", body=h.offer(bob[0], Direction.SENDONLY))  # type: ignore[arg-type,index]
        h.reply(_in_dialog_invites(h, alice)[0], 491)
        call.bye()
        h.advance(10.0)
        assert len(_in_dialog_invites(h, alice)) == 1
        assert not h.engine.calls


# -- 4. the access-number pump runs once at a time -----------------------------------------------------------
def test_a_key_during_a_prompt_still_loading_stops_it_and_no_second_pump_starts_one() -> None:
    with Harness(play_delay=0.05) as h:  # the real engine reads a prompt's WAV in a thread
        _trunk, carrier = h.trunk()
        h.did("+74950000001", "access", {})
        call = h.call_from_trunk(carrier, "+79161234567", "+74950000001")
        assert call.final_status() == 200  # the access number answers itself
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None
        endpoint = engine_call.caller.endpoint
        assert endpoint is not None
        h.dtmf(endpoint, "1")  # barge-in while the first prompt is still being loaded
        h.advance(0.2)
        assert endpoint.id not in h.media.playing  # the prompt the caller talked over does not start late
        assert h.media.in_flight_plays == 1
        h.dtmf(endpoint, "234#")
        h.advance(0.2)
        assert h.media.in_flight_plays == 1
