"""Memory of calls (issues 8 and 9): what an established call holds is small, and a finished call leaves
nothing behind. Counted in objects (the collector's view) and in bytes (tracemalloc), never in time.

The calls are driven through the real call engine (callengine_harness: the engine, its legs' dialog
machines, dialogs and SDP are real; the SIP stack and media are fakes that record what they are asked).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections import Counter
from collections.abc import Callable, Hashable, Iterator

import pytest
from callengine_harness import Device, Harness, PhoneCall

from zvonok.sip.dialog import Dialog
from zvonok.telephony import events as ev
from zvonok.telephony.call import Call, Leg
from zvonok.telephony.leg import Leg as SipLeg
from zvonok.telephony.throttle import FailureThrottle

# the engine's objects of one call; each of them must be gone once the call is
PER_CALL_TYPES = (Call, Leg, SipLeg, Dialog)


class NoFloodLimit(FailureThrottle):
    """One phone places every call here at one instant of the virtual clock: far beyond the INVITE flood
    limit (30/s per address), and a throttle would keep every one of them in its window."""

    def record_failure(self, source: Hashable, now: float, tag: Hashable = None) -> bool:
        return False


def harness(ports: int) -> Harness:
    return Harness(ports=ports, flood=NoFloodLimit(limit=30, window=1.0, ban_time=30.0))


def counts() -> Counter[str]:
    gc.collect()
    found: Counter[str] = Counter()
    for obj in gc.get_objects():
        if isinstance(obj, PER_CALL_TYPES):
            found[type(obj).__module__ + "." + type(obj).__qualname__] += 1
    return found


def established(h: Harness, alice: list[Device], bob: list[Device]) -> tuple[PhoneCall, Callable[[], object]]:
    """A call from alice to bob, answered and ACKed; with how bob's phone hangs it up."""
    call = h.call(alice, "102")
    fork = h.invites_to(bob)[-1]
    h.reply(fork, 180)
    ok = h.reply(fork, 200)
    assert call.final_status() == 200
    call.ack()
    return call, lambda: h.request_from(fork, ok, "BYE")


def _dropped(event: object) -> None:
    raise AssertionError(f"an event for a transaction that has ended: {event}")


def forget_what_the_fakes_recorded(h: Harness) -> None:
    """The fake SIP stack keeps every client transaction with its handler (which holds the leg, and the leg
    holds its transaction: a cycle of the fake's making). The real one (SipService) drops a handler when its
    transaction ends; the test does so before counting, for transactions that are over by then."""
    for txn in h.sip.clients:
        txn.handler = _dropped
    h.sip.log.clear()
    h.sip.clients.clear()
    h._far_dialogs.clear()  # the far ends' dialogs (Harness.request_from)
    for record in (h.media.released, h.media.remotes, h.media.bridges):  # what the fake media engine did
        record.clear()


@pytest.fixture
def tracing() -> Iterator[None]:
    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start(1)
    yield
    if not was:
        tracemalloc.stop()


def test_call_and_leg_records_have_no_instance_dict() -> None:
    """Slots: a dict per record costs ≈ 2 KB for a call and ≈ 0.8 KB per leg (measured in the server)."""
    with Harness() as h:
        alice, bob = h.extension("101"), h.extension("102")
        phone, _ = established(h, alice, bob)
        call = phone.engine_call
        assert call is not None and call.caller is not None and call.callee is not None
        for record in (call, call.caller, call.callee):
            assert not hasattr(record, "__dict__"), type(record)
        phone.bye()


@pytest.mark.parametrize("hangup", ["caller", "callee"])
def test_many_calls_return_every_object_count_to_its_baseline(hangup: str) -> None:
    """200 calls answered and hung up (by either side): the engine's tables empty and the number of live
    calls, legs, dialog machines and dialogs is what it was before them — and they are freed by reference
    counting alone (the collector is off while they end)."""
    with harness(20) as h:
        alice, bob = h.extension("101"), h.extension("102")
        established(h, alice, bob)[0].bye()  # warm-up: anything made once per engine exists now
        forget_what_the_fakes_recorded(h)
        baseline = counts()
        live = len(Call.live)
        gc.disable()
        try:
            for _ in range(200):
                phone, callee_hangs_up = established(h, alice, bob)
                if hangup == "caller":
                    phone.bye()
                else:
                    callee_hangs_up()
                forget_what_the_fakes_recorded(h)
                del phone, callee_hangs_up
            assert not h.engine.calls and not h.engine.dialogs and not h.engine.invites and not h.engine.extension_legs
            assert h.media.in_use == 0
            assert len(Call.live) == live, "a finished call waits for the cycle collector (or is held)"
        finally:
            gc.enable()
        assert counts() == baseline
        ended = h.events_of(ev.CallEnded)
        assert len(ended) == 201 and {e.disposition for e in ended} == {ev.Disposition.ANSWERED}


def test_an_idle_established_call_holds_less_than_its_budget(tracing: None) -> None:
    """Issue 9's target is < 20 KB of Python memory per idle established call in the server (measured there
    by bench/idle_calls.py --traced). Here the engine's share (the call, its two legs with their dialog
    machines, dialogs, the INVITEs and answers they keep, timers, events) plus the harness's own record of
    each phone call (its INVITE, our responses, the phone's dialog, the bus events): 25.1 KB per call before
    the call and leg records had slots, 20.4 KB after (2026-12-04); 20,837 bytes later that day, 17,211
    (16.8 KB) once past the set-up the legs kept only a record of their INVITE and no ACK, the o= session a
    digest instead of a copy of the SDP, the dialogs our Contact as text and tagless addresses uncopied, the
    call's inbox was a list and the answer dropped the no-answer timer (docs/benchmarks.md); 16,609 once the
    silence check and the three-way code listener were one callback for every leg, not a closure per leg.
    The bound catches a regression."""
    with harness(200) as h:
        alice, bob = h.extension("101"), h.extension("102")
        established(h, alice, bob)[0].bye()
        forget_what_the_fakes_recorded(h)
        phones = []
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        n = 100
        for _ in range(n):
            phones.append(established(h, alice, bob)[0])
            forget_what_the_fakes_recorded(h)
        h.advance(40.0)  # past the set-up's transaction timers: the calls are at rest
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        assert len(h.engine.calls) == n
        # the harness's own record of each phone call (its INVITE, our responses, the phone's dialog) is in
        # the figure too: an upper bound of the engine's share
        per_call = held / n
        assert per_call < 17 * 1024, f"{per_call:.0f} bytes per idle call"
        for phone in phones:
            phone.bye()


def test_sequential_calls_hold_no_more_bytes_as_they_go(tracing: None) -> None:
    """Issue 8's soak, in-process: after 300 calls, 600 more leave the traced memory where it was (a
    table, cache or timer that kept something per finished call would grow by hundreds of bytes per call)."""
    with harness(20) as h:
        alice, bob = h.extension("101"), h.extension("102")

        def calls(n: int) -> int:
            for _ in range(n):
                phone, _ = established(h, alice, bob)
                phone.bye()
                forget_what_the_fakes_recorded(h)
            h.bus.events.clear()
            h.advance(40.0)  # every transaction and timer of theirs over
            gc.collect()
            return tracemalloc.get_traced_memory()[0]

        calls(300)
        before = calls(0)
        after = calls(600)
        # a leaked call, leg, dialog or timer would be hundreds of bytes per call; a few bytes are noise
        assert (after - before) / 600 < 64, f"{(after - before) / 600:.0f} bytes kept per finished call"


def test_past_the_set_up_the_engine_keeps_a_record_of_each_invite_and_no_transaction() -> None:
    """64*T1 after the 2xx (RFC 6026) the legs' INVITEs give way to their records and the engine lets the
    INVITE transactions go; until then a CANCEL still finds the caller's INVITE (it is answered 200)."""
    with harness(2) as h:
        alice, bob = h.extension("101"), h.extension("102")
        phone, _ = established(h, alice, bob)
        call = phone.engine_call
        assert call is not None and call.caller is not None and call.callee is not None
        caller, callee = call.caller, call.callee
        assert call.no_answer is None  # the answer cancelled the no-answer timer and let its handle go
        assert caller.server_txn is not None and h.engine.invites == {caller.server_txn: caller}
        assert caller.invite is phone.invite and callee.client_txn is not None
        h.advance(40.0)
        assert caller.server_txn is None and callee.client_txn is None and not h.engine.invites
        for leg in (caller, callee):
            record = leg.invite
            assert record is not None and record.method == "INVITE" and record.body == b"" and record.vias == []
            assert leg.sip is not None and leg.sip.call_id == record.call_id
        assert caller.invite is not phone.invite and caller.invite.call_id == phone.invite.call_id
        assert caller.invite.headers.get("contact") == phone.invite.headers.get("contact")
        phone.bye()
        assert [e.disposition for e in h.events_of(ev.CallEnded)] == [ev.Disposition.ANSWERED]
