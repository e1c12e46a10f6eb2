"""The call-engine harness itself: a whole call driven through it, and its clock."""

from __future__ import annotations

from callengine_harness import Harness

from zvonok.sip.sdp import Direction
from zvonok.telephony import events as ev


def test_a_call_answered_and_hung_up_by_the_caller() -> None:
    with Harness() as h:
        alice, bob = h.extension("101"), h.extension("102")
        call = h.call(alice, "102")
        fork = h.invites_to(bob)[0]
        h.reply(fork, 180)
        assert call.statuses() == [100, 180]
        h.reply(fork, 200)
        assert call.final_status() == 200
        assert len(h.sip.acks(bob[0].peer)) == 1
        call.ack()
        h.advance(30.0)
        bye = call.bye()
        assert [r.status for r in bye.responses] == [200]
        assert len(h.sent_requests("BYE", to=bob)) == 1
        ended = h.events_of(ev.CallEnded)
        assert [e.disposition for e in ended] == [ev.Disposition.ANSWERED]
        assert ended[0].hangup_side is ev.HangupSide.CALLER
        assert not h.engine.calls and not h.engine.dialogs and h.media.in_use == 0


def test_the_no_answer_timer_runs_on_the_virtual_clock() -> None:
    with Harness(no_answer_timeout=60.0) as h:
        alice, bob = h.extension("101"), h.extension("102")
        call = h.call(alice, "102")
        fork = h.invites_to(bob)[0]
        h.reply(fork, 180)
        start = h.now
        h.advance(59.9)
        assert call.final_status() is None and fork.cancelled is None
        h.advance(0.1)
        assert h.now == start + 60.0
        assert fork.cancelled is not None
        h.reply(fork, 487)
        assert call.final_status() == 480
        assert [e.disposition for e in h.events_of(ev.CallEnded)] == [ev.Disposition.NO_ANSWER]


def test_every_device_of_the_callee_rings_and_the_first_answer_wins() -> None:
    with Harness() as h:
        alice, bob = h.extension("101"), h.extension("102", devices=2)
        call = h.call(alice, "102")
        desk, mobile = h.invites_to(bob[0])[0], h.invites_to(bob[1])[0]
        h.reply(desk, 180)
        h.reply(mobile, 180)
        h.reply(mobile, 200)
        assert call.final_status() == 200
        assert desk.cancelled == 'SIP;cause=200;text="Call completed elsewhere"'
        assert mobile.cancelled is None


def test_a_hold_while_our_last_reinvite_is_in_progress_waits_for_it() -> None:
    """One INVITE at a time in a dialog (RFC 3261 §14.1): a second hold relay waits for the first."""
    with Harness() as h:
        alice, bob = h.extension("101"), h.extension("102")
        call = h.call(alice, "102")
        fork = h.invites_to(bob)[0]
        ok = h.reply(fork, 200)
        call.ack()
        h.request_from(fork, ok, "INVITE", body=h.offer(bob[0], Direction.SENDONLY))
        h.request_from(fork, ok, "INVITE", body=h.offer(bob[0], Direction.SENDRECV))
        ours = [t for t in h.sent_requests("INVITE", to=alice) if t.request.to.tag]
        assert len(ours) == 1 and b"a=sendonly" in ours[0].request.body
        h.reply(ours[0], 200)
        ours = [t for t in h.sent_requests("INVITE", to=alice) if t.request.to.tag]
        assert len(ours) == 2 and b"a=sendrecv" in ours[1].request.body


def test_a_blind_transfer_by_the_callee() -> None:
    with Harness() as h:
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        call = h.call(alice, "102")
        fork = h.invites_to(bob)[0]
        ok = h.reply(fork, 200)
        call.ack()
        refer = h.request_from(fork, ok, "REFER", headers=[("Refer-To", "<sip:103@acme.test>"),
                                                            ("Referred-By", "<sip:102@acme.test>")])
        assert [r.status for r in refer.responses] == [202]
        to_carol = h.invites_to(carol)[0]
        h.reply(to_carol, 180)
        h.reply(to_carol, 200, to_tag="carol")
        notifies = [t.request.body for t in h.sent_requests("NOTIFY", to=bob)]
        assert notifies[0].startswith(b"SIP/2.0 100") and notifies[-1].startswith(b"SIP/2.0 200")
        assert len(h.sent_requests("BYE", to=bob)) == 1
        transferred = h.events_of(ev.CallTransferred)
        assert [t.to.number for t in transferred] == ["103"]
        assert h.media.bridges[-1] == (call.engine_call.caller.endpoint.id,  # type: ignore[union-attr]
                                       h.engine.calls[transferred[0].call_id].callee.endpoint.id)  # type: ignore[union-attr]
        call.bye()
        assert len(h.sent_requests("BYE", to=carol)) == 1
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0
