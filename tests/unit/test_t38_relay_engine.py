"""T.38 through the B2BUA (telephony/t38_relay.py) with the real call engine and a fake SIP stack: a
re-INVITE to T.38 from one side is offered on to the other, answered once that side agrees, and both
endpoints go to UDPTL relay; a refusal on the other side is a 488, the call staying on audio."""

from __future__ import annotations

from callengine_harness import Harness

from zvonok.sip.sdp import parse_sdp
from zvonok.sip.sdp_t38 import image_stream, t38_params

T38_OFFER = (b"v=0\r\no=bob 1 2 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
             b"m=image 4100 udptl t38\r\na=T38FaxVersion:0\r\na=T38MaxBitRate:9600\r\n"
             b"a=T38FaxRateManagement:transferredTCF\r\na=T38FaxMaxDatagram:320\r\na=T38FaxUdpEC:t38UDPRedundancy\r\n")
T38_ANSWER = (b"v=0\r\no=alice 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
              b"m=image 4200 udptl t38\r\na=T38FaxVersion:0\r\na=T38MaxBitRate:9600\r\n"
              b"a=T38FaxRateManagement:transferredTCF\r\na=T38FaxMaxDatagram:260\r\na=T38FaxUdpEC:t38UDPRedundancy\r\n")


def _bridged(h: Harness) -> tuple[object, object, object, object]:
    alice, bob = h.extension("101"), h.extension("102")
    call = h.call(alice, "102")
    fork = h.invites_to(bob)[0]
    ok = h.reply(fork, 200)
    call.ack()
    return alice, call, fork, ok


def test_a_t38_reinvite_is_offered_on_and_answered_once_the_other_side_agrees() -> None:
    with Harness() as h:
        alice, call, fork, ok = _bridged(h)
        reinvite = h.request_from(fork, ok, "INVITE", body=T38_OFFER)  # type: ignore[arg-type]
        assert not [r for r in reinvite.responses if r.status >= 200]  # waits for alice's side
        ours = [t for t in h.sent_requests("INVITE", to=alice) if t.request.to.tag]  # type: ignore[arg-type]
        assert len(ours) == 1
        offered = image_stream(parse_sdp(ours[0].request.body))
        assert offered is not None
        params = t38_params(offered)
        assert (params.max_bit_rate, params.max_datagram) == (9600, 320)  # bob's, passed on
        h.reply(ours[0], 200, body=T38_ANSWER)
        (final,) = [r for r in reinvite.responses if r.status >= 200]
        assert final.status == 200
        answered = image_stream(parse_sdp(final.body))
        assert answered is not None and t38_params(answered).max_datagram == 260  # alice's, passed back
        engine_call = call.engine_call  # type: ignore[attr-defined]
        caller, callee = engine_call.caller.endpoint.id, engine_call.callee.endpoint.id
        assert answered.port == engine_call.callee.endpoint.local_address.port  # same socket as the audio
        assert {k: v[:2] for k, v in h.media.udptl.items()} == {caller: ("10.0.0.1", 4200), callee: ("10.0.0.2", 4100)}
        assert all(sink is None for _, _, sink in h.media.udptl.values())  # relayed, no terminal


def test_the_other_side_refusing_t38_gets_the_reinvite_a_488() -> None:
    with Harness() as h:
        alice, _, fork, ok = _bridged(h)
        reinvite = h.request_from(fork, ok, "INVITE", body=T38_OFFER)  # type: ignore[arg-type]
        ours = [t for t in h.sent_requests("INVITE", to=alice) if t.request.to.tag]  # type: ignore[arg-type]
        h.reply(ours[0], 488)
        assert [r.status for r in reinvite.responses if r.status >= 200] == [488]
        assert h.media.udptl == {}
