"""Forwarding and DND in the real call engine (the harness: fake SIP, fake media, virtual clock)."""

from __future__ import annotations

import dataclasses
from typing import Any

from callengine_harness import TENANT, Device, Harness

from zvonok.cdr.state import CallRecord
from zvonok.telephony import events as ev
from zvonok.telephony.forwarding import ForwardingSettings


def _forwarding(h: Harness, number: str, **settings: Any) -> None:
    key = (TENANT, number)
    h.directory.extensions[key] = dataclasses.replace(h.directory.extensions[key],
                                                      forwarding=ForwardingSettings(**settings))


def _cdr_of(h: Harness) -> Any:
    started = h.events_of(ev.CallStarted)[0]
    record = CallRecord.started(started)
    for event in h.events:
        if isinstance(event, ev.CallEvent) and event is not started and not isinstance(event, ev.CallEnded):
            record.apply(event)
    return record.finish_with(h.events_of(ev.CallEnded)[0])


def _answer(h: Harness, device: list[Device]) -> None:
    fork = h.invites_to(device)[-1]
    h.reply(fork, 180)
    h.reply(fork, 200, device=device[0])


def test_unconditional_rings_the_target_only() -> None:
    with Harness() as h:
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        _forwarding(h, "102", unconditional="103")
        call = h.call(alice, "102")
        assert h.invites_to(bob) == []
        _answer(h, carol)
        assert call.final_status() == 200
        forwarded = h.events_of(ev.CallForwarded)
        assert [(f.from_number, f.to_number, f.reason) for f in forwarded] == [("102", "103", "unconditional")]
        call.ack()
        call.bye()
        assert len(h.sent_requests("BYE", to=carol)) == 1
        cdr = _cdr_of(h)
        assert cdr.forwarded_from == "102" and cdr.callee.number == "103"


def test_busy_forwards_on_486() -> None:
    with Harness() as h:
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        _forwarding(h, "102", busy="103")
        call = h.call(alice, "102")
        h.reply(h.invites_to(bob)[0], 180)
        h.reply(h.invites_to(bob)[0], 486)
        assert call.final_status() is None  # not refused: carol rings
        _answer(h, carol)
        assert call.final_status() == 200
        assert [f.reason for f in h.events_of(ev.CallForwarded)] == ["busy"]


def test_busy_target_busy_too_gives_the_caller_486() -> None:
    with Harness() as h:
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        _forwarding(h, "102", busy="103")
        call = h.call(alice, "102")
        h.reply(h.invites_to(bob)[0], 486)
        h.reply(h.invites_to(carol)[0], 486)
        assert call.final_status() == 486


def test_no_answer_forwards_after_the_extensions_timer() -> None:
    with Harness(no_answer_timeout=60.0) as h:
        alice, bob, carol = h.extension("101"), h.extension("102", devices=2), h.extension("103")
        _forwarding(h, "102", no_answer="103", no_answer_seconds=15)
        call = h.call(alice, "102")
        for fork in h.invites_to(bob):
            h.reply(fork, 180)
        h.advance(14.0)
        assert h.invites_to(carol) == []
        h.advance(1.5)
        assert all(fork.cancelled is not None for fork in h.invites_to(bob))  # bob's phones: CANCEL
        assert len(h.invites_to(carol)) == 1
        for fork in h.invites_to(bob):  # bob's phones answer our CANCELs: nothing for the caller
            h.reply(fork, 487)
        assert call.final_status() is None
        _answer(h, carol)
        assert call.final_status() == 200
        assert [f.reason for f in h.events_of(ev.CallForwarded)] == ["no_answer"]


def test_unavailable_forwards_when_no_device_is_registered() -> None:
    with Harness() as h:
        alice, carol = h.extension("101"), h.extension("103")
        h.extension("102", devices=0)
        _forwarding(h, "102", unavailable="103")
        call = h.call(alice, "102")
        _answer(h, carol)
        assert call.final_status() == 200
        assert [f.reason for f in h.events_of(ev.CallForwarded)] == ["unavailable"]


def test_dnd_answers_busy_or_forwards_on_busy() -> None:
    with Harness() as h:
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        _forwarding(h, "102", dnd=True)
        call = h.call(alice, "102")
        assert call.final_status() == 486
        assert h.invites_to(bob) == []
        assert h.events_of(ev.CallEnded)[-1].disposition is ev.Disposition.BUSY
        _forwarding(h, "102", dnd=True, busy="103")
        call = h.call(alice, "102")
        assert h.invites_to(bob) == []
        _answer(h, carol)
        assert call.final_status() == 200


def test_a_forwarding_loop_stops_at_an_extension_already_in_the_chain() -> None:
    with Harness() as h:
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        _forwarding(h, "102", unconditional="103")
        _forwarding(h, "103", unconditional="102")
        call = h.call(alice, "102")
        assert h.invites_to(bob) == []
        _answer(h, carol)  # carol's phone rings: her CFU back to bob is not followed
        assert call.final_status() == 200
        assert len(h.events_of(ev.CallForwarded)) == 1


def test_forward_to_an_outside_number_is_billed_to_the_forwarding_employee() -> None:
    with Harness() as h:
        alice = h.extension("101")
        h.extension("102")
        key = (TENANT, "102")
        h.directory.extensions[key] = dataclasses.replace(h.directory.extensions[key], employee_id=42,
                                                          forwarding=ForwardingSettings(unconditional="+74951234567"))
        _trunk, carrier = h.trunk()
        call = h.call(alice, "102")
        attempt = h.invites_to(carrier)[0]
        assert "74951234567" in attempt.request.uri.user  # type: ignore[union-attr]
        h.reply(attempt, 200, device=carrier)
        assert call.final_status() == 200
        routed = [e for e in h.events_of(ev.CallRouted) if e.trunk_id is not None]
        assert routed and routed[-1].employee_id == 42 and routed[-1].number == "+74951234567"
        call.ack()
        call.bye()
        cdr = _cdr_of(h)
        assert cdr.caller.number == "101" and cdr.caller.employee_id == 42  # billed to bob's employee
        assert cdr.forwarded_from == "102"


class FakeStore:
    def __init__(self) -> None:
        self.calls: list[tuple[int, str, dict[str, Any]]] = []
        self.refuse = False

    async def __call__(self, tenant_id: int, number: str, changes: dict[str, Any]) -> bool:
        if self.refuse:
            raise ValueError("no such number")
        self.calls.append((tenant_id, number, changes))
        return True


def test_feature_codes_change_the_callers_own_settings_then_hang_up() -> None:
    with Harness() as h:
        alice = h.extension("101")
        store = FakeStore()
        h.engine.forwards.store = store
        for dialed, changes in (("*72103", {"unconditional": "103"}), ("*73", {"unconditional": None}),
                                ("*78", {"dnd": True}), ("*79", {"dnd": False})):
            call = h.call(alice, dialed)
            assert store.calls[-1] == (TENANT, "101", changes)
            assert call.final_status() == 200
            call.ack()
            assert h.media.playing  # the confirmation beeps
            byes = len(h.sent_requests("BYE", to=alice))
            h.advance(2.0)
            assert len(h.sent_requests("BYE", to=alice)) == byes + 1
        store.refuse = True
        call = h.call(alice, "*72999")
        assert call.final_status() == 404
        assert not h.engine.calls
