"""Our 2xx to a caller's INVITE, re-sent until its ACK (RFC 3261 §13.3.1.4), through the whole engine.

The retransmission lives in the caller's leg machine (telephony/leg.py, driven by its one deadline:
tests/unit/test_leg.py has the machine alone); these drive the real engine on the virtual clock and
look at what reaches the caller's phone: T1 doubling to T2, nothing after the ACK, the call ended after
64*T1 without one, and a call hung up before the ACK keeps re-sending until it comes, then sends BYE.
"""

from __future__ import annotations

from callengine_harness import Harness, PhoneCall

from zvonok.sip.message import Response
from zvonok.telephony import events as ev


def _resent_200s(h: Harness, call: PhoneCall) -> int:
    return sum(1 for s in h.sip.log if s.kind == "stateless" and isinstance(s.message, Response)
               and s.message.status == 200 and s.peer == call.device.peer)


def _answered_not_acked(h: Harness) -> tuple[PhoneCall, object, object, list]:  # type: ignore[type-arg]
    alice, bob = h.extension("101"), h.extension("102")
    call = h.call(alice, "102")
    fork = h.invites_to(bob)[0]
    ok = h.reply(fork, 200, device=bob[0])
    assert call.final_status() == 200
    return call, fork, ok, bob


def test_the_200_is_re_sent_t1_doubling_to_t2_until_the_ack() -> None:
    with Harness() as h:  # T1 0.5 s, T2 4 s
        call, _fork, _ok, _bob = _answered_not_acked(h)
        seen = []
        for step in (0.5, 1.0, 2.0, 4.0, 4.0):
            h.advance(step - 0.01)
            before = _resent_200s(h, call)
            h.advance(0.01)
            seen.append(_resent_200s(h, call) - before)
        assert seen == [1, 1, 1, 1, 1]  # at 0.5, 1.5, 3.5, 7.5, 11.5 s: each on its deadline
        call.ack()
        count = _resent_200s(h, call)
        h.advance(30.0)
        assert _resent_200s(h, call) == count
        assert not h.events_of(ev.CallEnded)


def test_no_ack_in_64_t1_ends_the_call() -> None:
    with Harness() as h:
        call, _fork, _ok, bob = _answered_not_acked(h)
        h.advance(31.0)
        assert not h.events_of(ev.CallEnded)
        h.advance(1.5)
        (ended,) = h.events_of(ev.CallEnded)
        assert ended.cause == "no_ack"
        assert len(h.sent_requests("BYE", to=bob)) == 1
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0


def test_a_call_hung_up_before_the_ack_sends_its_bye_after_it() -> None:
    with Harness() as h:
        call, fork, ok, _bob = _answered_not_acked(h)
        h.request_from(fork, ok, "BYE")  # type: ignore[arg-type]
        assert len(h.events_of(ev.CallEnded)) == 1
        assert not h.sent_requests("BYE", to=call.device)  # §15: not before the ACK of our 2xx
        count = _resent_200s(h, call)
        h.advance(0.6)
        assert _resent_200s(h, call) == count + 1  # still re-sent after the call ended
        call.ack()
        assert len(h.sent_requests("BYE", to=call.device)) == 1
        assert not h.engine.unacked
