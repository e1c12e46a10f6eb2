"""Ad-hoc three-way calling (telephony/threeway.py): *3 on a second call joins it with the held one.

A (101) talks to B (102), holds B, calls C (103) and presses *3: driven through the real engine with the
fake SIP stack and media engine (tests/unit/callengine_harness.py); the mix and its matrix are what the
fake media engine was told. The audio itself: tests/integration/test_threeway_softphones.py.
"""

from __future__ import annotations

from typing import Any

from callengine_harness import Device, FakeClientTxn, Harness, PhoneCall

from zvonok.sip.message import Response
from zvonok.sip.sdp import Direction, parse_sdp
from zvonok.telephony import events as ev
from zvonok.telephony.call import Call
from zvonok.telephony.threeway import KeySequence


def test_the_code_is_star_three_with_keys_close_together() -> None:
    keys = KeySequence()
    assert [keys.feed(d, t) for d, t in (("1", 0.0), ("*", 1.0), ("3", 2.0))] == [False, False, True]
    assert not keys.feed("3", 2.5)  # matched once: the buffer starts again
    assert not keys.feed("*", 3.0) and not keys.feed("3", 6.5)  # more than 3 s between the keys
    assert not keys.feed("*", 7.0) and keys.feed("3", 7.1)
    assert not keys.feed("*", 8.0) and not keys.feed("4", 8.1) and not keys.feed("3", 8.2)


def _reinvites(h: Harness, device: Device) -> list[FakeClientTxn]:
    return [t for t in h.sent_requests("INVITE", to=device) if ";tag=" in (t.request.headers.get("to") or "")]


def _answer_reinvites(h: Harness, device: Device) -> None:
    for txn in _reinvites(h, device):
        if txn.final is None:
            h.reply(txn, 200, device=device)


def _direction(txn: FakeClientTxn) -> Direction:
    return parse_sdp(txn.request.body).media[0].direction


class Scene:
    """A holds B and calls C; both calls answered."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.a, self.b, self.c = h.extension("101"), h.extension("102"), h.extension("103")
        self.call1, self.fork_b, self.ok_b = self._answered(self.b, "102")
        # A's phone holds B: the engine offers B sendonly
        self.call1.request("INVITE", body=h.offer(self.a[0], Direction.SENDONLY), content_type="application/sdp")
        assert _direction(_reinvites(h, self.b[0])[-1]) is Direction.SENDONLY
        _answer_reinvites(h, self.b[0])
        self.call2, self.fork_c, self.ok_c = self._answered(self.c, "103")

    def _answered(self, callee: list[Device], number: str) -> tuple[PhoneCall, FakeClientTxn, Response]:
        call = self.h.call(self.a, number)
        fork = self.h.invites_to(callee)[-1]
        ok = self.h.reply(fork, 200, device=callee[0])
        call.ack()
        return call, fork, ok

    @property
    def engine1(self) -> Call:
        found = self.call1.engine_call
        assert found is not None
        return found

    @property
    def engine2(self) -> Call:
        found = self.call2.engine_call
        assert found is not None
        return found

    def endpoints(self) -> dict[str, str]:
        c1, c2 = self.engine1, self.engine2
        assert c1.caller and c1.callee and c2.caller and c2.callee
        legs = {"a1": c1.caller, "b": c1.callee, "a2": c2.caller, "c": c2.callee}
        return {name: leg.endpoint.id for name, leg in legs.items() if leg.endpoint is not None}

    def star3(self) -> dict[str, str]:
        ids = self.endpoints()
        caller = self.engine2.caller
        assert caller is not None and caller.endpoint is not None
        self.h.dtmf(caller.endpoint, "*3")
        return ids

    def mix(self) -> dict[str, dict[str, Any]]:
        assert len(self.h.media.mixes) == 1
        return next(iter(self.h.media.mixes.values()))


def test_star_three_joins_the_held_call_and_the_second_one_in_one_mix() -> None:
    with Harness() as h:
        s = Scene(h)
        ids = s.endpoints()
        # A's keys on the second call are listened to and kept from C (the code's keys are not heard); no
        # other leg is gated
        assert h.media.dtmf_gates == {ids["a2"]: (("*3",), 3.0)}
        ids = s.star3()
        mix = s.mix()
        assert set(mix) == set(ids.values())
        # A's two legs do not hear each other; A's held leg is heard by nobody (its phone may play music)
        assert mix[ids["a1"]]["hears"] == {ids["a2"]: False}
        assert mix[ids["a2"]]["hears"] == {ids["a1"]: False}
        assert mix[ids["a1"]]["speaks"] is False
        assert all(mix[ids[n]]["speaks"] and mix[ids[n]]["listens"] for n in ("b", "c", "a2"))
        # B is no longer held by us: offered sendrecv again
        assert _direction(_reinvites(h, s.b[0])[-1]) is Direction.SENDRECV
        assert s.engine1.threeway is s.engine2.threeway is not None
        assert not h.events_of(ev.CallEnded)
        joined = {(e.call_id, e.other_call_id, e.people) for e in h.events_of(ev.ThreeWayJoined)}
        assert joined == {(s.engine1.id, s.engine2.id, 3), (s.engine2.id, s.engine1.id, 3)}
        assert ev.deserialize(ev.serialize(h.events_of(ev.ThreeWayJoined)[0])) == h.events_of(ev.ThreeWayJoined)[0]


def test_without_a_held_call_the_keys_do_nothing() -> None:
    with Harness() as h:
        a, c = h.extension("101"), h.extension("103")
        call = h.call(a, "103")
        h.reply(h.invites_to(c)[0], 200, device=c[0])
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None and engine_call.caller.endpoint is not None
        assert h.media.dtmf_callbacks.get(engine_call.caller.endpoint.id) is None  # not even listened for
        assert not h.media.dtmf_gates  # nor kept from C
        call.bye()
        assert not h.media.mixes and h.media.in_use == 0


def test_when_a_hangs_up_b_and_c_stay_connected_each_call_billed_on_its_own() -> None:
    with Harness() as h:
        s = Scene(h)
        ids = s.star3()
        call1, call2 = s.engine1, s.engine2
        s.call2.bye()  # A hangs up the second call
        assert not h.sent_requests("BYE", to=s.c)  # C stays
        assert set(s.mix()) == {ids["a1"], ids["b"], ids["c"]}
        s.call1.bye()  # and the held one
        assert not h.sent_requests("BYE", to=s.b) and not h.sent_requests("BYE", to=s.c)
        assert set(s.mix()) == {ids["b"], ids["c"]}
        assert not h.events_of(ev.CallEnded)
        ended_legs = {e.leg_id for e in h.events_of(ev.LegEnded)}
        assert call1.caller is not None and call2.caller is not None
        assert ended_legs == {call1.caller.id, call2.caller.id}
        # C hangs up: call 2 ends; B alone is not a conversation: B gets BYE and call 1 ends
        h.request_from(s.fork_c, s.ok_c, "BYE")
        assert len(h.sent_requests("BYE", to=s.b)) == 1
        ended = {e.call_id: e for e in h.events_of(ev.CallEnded)}
        assert set(ended) == {call1.id, call2.id}
        assert all(e.disposition is ev.Disposition.ANSWERED for e in ended.values())
        assert not h.engine.calls and not h.engine.dialogs and h.media.in_use == 0 and not h.media.mixes


def test_when_c_hangs_up_a_is_back_with_the_held_b() -> None:
    with Harness() as h:
        s = Scene(h)
        ids = s.star3()
        call1, call2 = s.engine1, s.engine2
        _answer_reinvites(h, s.b[0])
        h.request_from(s.fork_c, s.ok_c, "BYE")
        # call 2 has done its part (A is in the room by call 1 too): A's phone gets BYE for it
        assert len(h.sent_requests("BYE", to=s.a)) == 1
        assert [e.call_id for e in h.events_of(ev.CallEnded)] == [call2.id]
        # back to one two-party call, relayed; A's phone still holds it: B is told and hears music again
        assert not h.media.mixes
        assert h.media.bridges[-1] == (ids["a1"], ids["b"])
        assert call1.threeway is None and not call1.ended
        assert _direction(_reinvites(h, s.b[0])[-1]) is Direction.SENDONLY
        # A resumes and hangs up: an ordinary call
        s.call1.request("INVITE", body=h.offer(s.a[0]), content_type="application/sdp")
        s.call1.bye()
        assert len(h.sent_requests("BYE", to=s.b)) == 1
        assert len(h.events_of(ev.CallEnded)) == 2 and h.media.in_use == 0


def test_a_holding_the_second_call_in_the_room_plays_no_music_to_c() -> None:
    with Harness() as h:
        s = Scene(h)
        ids = s.star3()
        before = len(_reinvites(h, s.c[0]))
        s.call2.request("INVITE", body=h.offer(s.a[0], Direction.SENDONLY), content_type="application/sdp")
        assert len(_reinvites(h, s.c[0])) == before  # C is not put on hold: B still talks to C
        assert s.mix()[ids["a2"]]["speaks"] is False
        s.call1.request("INVITE", body=h.offer(s.a[0]), content_type="application/sdp")  # A talks on call 1 now
        assert s.mix()[ids["a1"]]["speaks"] is True


def test_the_room_ends_when_b_and_c_both_hang_up() -> None:
    with Harness() as h:
        s = Scene(h)
        s.star3()
        h.request_from(s.fork_b, s.ok_b, "BYE")
        h.request_from(s.fork_c, s.ok_c, "BYE")
        assert len(h.events_of(ev.CallEnded)) == 2
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0 and not h.media.mixes


def test_star_three_on_a_second_call_that_came_in() -> None:
    """C calls A while A holds B: A's leg of the second call is its callee leg; *3 there joins the same."""
    with Harness() as h:
        a, b, c = h.extension("101"), h.extension("102"), h.extension("103")
        call1 = h.call(a, "102")
        fork_b = h.invites_to(b)[0]
        h.reply(fork_b, 200, device=b[0])
        call1.ack()
        call1.request("INVITE", body=h.offer(a[0], Direction.SENDONLY), content_type="application/sdp")
        _answer_reinvites(h, b[0])
        call2 = h.call(c, "101")
        h.reply(h.invites_to(a)[-1], 200, device=a[0])
        call2.ack()
        second = call2.engine_call
        assert second is not None and second.callee is not None and second.callee.endpoint is not None
        h.dtmf(second.callee.endpoint, "*3")
        assert len(h.media.mixes) == 1 and len(next(iter(h.media.mixes.values()))) == 4
        call2.bye()  # C leaves: A is back with B, held
        assert not h.media.mixes
        call1.bye()
        assert len(h.events_of(ev.CallEnded)) == 2 and h.media.in_use == 0
