"""Ring groups in the real call engine (the harness: fake SIP, fake media, virtual clock): each strategy's
steps on the wire, ring times, skipped members, the no-answer destination, round robin's memory, a
number (DID) routed to a group, an outside member, loops, and the CDR."""

from __future__ import annotations

import dataclasses
from typing import Any

from callengine_harness import TENANT, Device, Harness

from zvonok.cdr.state import CallRecord
from zvonok.pstn.routing import PolicyInfo
from zvonok.telephony import events as ev
from zvonok.telephony.forwarding import ForwardingSettings
from zvonok.telephony.ring_group import RingGroupInfo, Strategy


class FakeGroups:
    """The engine's ring-group port (zvonok.ringgroup.service.RingGroupDirectory) in memory."""

    def __init__(self) -> None:
        self.groups: dict[str, RingGroupInfo] = {}
        self.remembered: list[tuple[int, int, str]] = []

    def add(self, number: str, members: tuple[str, ...], strategy: Strategy = Strategy.HUNT, **kw: Any) -> None:
        self.groups[number] = RingGroupInfo(id=len(self.groups) + 1, tenant_id=TENANT, number=number, name=f"G{number}",
                                            strategy=strategy, members=members, **kw)

    async def group(self, tenant_id: int, number: str) -> RingGroupInfo | None:
        return self.groups.get(number) if tenant_id == TENANT else None

    async def remember(self, tenant_id: int, group_id: int, member: str) -> None:
        self.remembered.append((tenant_id, group_id, member))
        for number, g in self.groups.items():
            if g.id == group_id:
                self.groups[number] = dataclasses.replace(g, last_answered=member)


def harness() -> tuple[Harness, FakeGroups]:
    h = Harness()
    groups = FakeGroups()
    h.engine.group_calls.groups = groups
    return h, groups


def cdr_of(h: Harness) -> Any:
    started = h.events_of(ev.CallStarted)[0]
    record = CallRecord.started(started)
    for event in h.events:
        if isinstance(event, ev.CallEvent) and event is not started and not isinstance(event, ev.CallEnded):
            record.apply(event)
    return record.finish_with(h.events_of(ev.CallEnded)[0])


def answer(h: Harness, device: list[Device]) -> None:
    fork = h.invites_to(device)[-1]
    h.reply(fork, 180)
    h.reply(fork, 200, device=device[0])


def ring(h: Harness, *devices: list[Device]) -> None:
    """The devices' phones ring (180): our CANCEL of an INVITE waits for a provisional response (§9.1)."""
    for device in devices:
        for txn in h.invites_to(device):
            h.reply(txn, 180)


def cancelled(h: Harness, device: list[Device]) -> bool:
    return all(t.cancelled is not None for t in h.invites_to(device))


def test_hunt_rings_the_next_member_after_the_ring_time() -> None:
    h, groups = harness()
    with h:
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        groups.add("600", ("102", "103"), ring_seconds=15)
        call = h.call(alice, "600")
        assert len(h.invites_to(bob)) == 1 and h.invites_to(carol) == []
        h.reply(h.invites_to(bob)[0], 180)
        assert 180 in call.statuses()
        h.advance(14.9)
        assert h.invites_to(carol) == [] and not cancelled(h, bob)
        h.advance(0.2)
        assert cancelled(h, bob) and len(h.invites_to(carol)) == 1
        h.reply(h.invites_to(bob)[0], 487)  # bob's phone confirms the CANCEL: it decides nothing
        assert call.final_status() is None
        answer(h, carol)
        assert call.final_status() == 200
        steps = h.events_of(ev.RingGroupRinging)
        assert [(s.step, s.members, s.seconds) for s in steps] == [(0, ("102",), 15.0), (1, ("103",), 15.0)]
        [called] = h.events_of(ev.RingGroupCalled)
        assert (called.group_number, called.group_name, called.strategy) == ("600", "G600", "hunt")
        call.ack()
        call.bye()
        cdr = cdr_of(h)
        assert (cdr.callee.number, cdr.ring_group, cdr.disposition) == ("103", "600", ev.Disposition.ANSWERED)
        assert groups.remembered == []  # hunt keeps no memory


def test_hunt_moves_on_at_once_when_a_member_refuses() -> None:
    h, groups = harness()
    with h:
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        groups.add("600", ("102", "103"))
        call = h.call(alice, "600")
        h.reply(h.invites_to(bob)[0], 486)
        assert len(h.invites_to(carol)) == 1 and call.final_status() is None
        h.reply(h.invites_to(carol)[0], 603)  # declined too: nobody left, no no-answer destination
        assert call.final_status() == 480
        cdr = cdr_of(h)
        assert (cdr.callee.number, cdr.callee.display_name, cdr.disposition) == ("600", "G600", ev.Disposition.NO_ANSWER)


def test_simultaneous_rings_everyone_then_the_no_answer_destination() -> None:
    h, groups = harness()
    with h:
        alice, bob, carol, dave = h.extension("101"), h.extension("102"), h.extension("103"), h.extension("104")
        groups.add("600", ("102", "103"), Strategy.SIMULTANEOUS, ring_seconds=20,
                   no_answer={"kind": "extension", "number": "104"})
        call = h.call(alice, "600")
        assert len(h.invites_to(bob)) == 1 and len(h.invites_to(carol)) == 1
        ring(h, bob, carol)  # (a CANCEL waits for a provisional response, RFC 3261 §9.1)
        h.advance(20.1)
        assert cancelled(h, bob) and cancelled(h, carol) and len(h.invites_to(dave)) == 1
        [none] = h.events_of(ev.RingGroupNoAnswer)
        assert (none.group_number, none.kind) == ("600", "extension")
        answer(h, dave)
        assert call.final_status() == 200


def test_the_overall_limit_ends_the_last_step_early() -> None:
    h, groups = harness()
    with h:
        alice, _bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        groups.add("600", ("102", "103"), ring_seconds=20, max_seconds=25)
        call = h.call(alice, "600")
        h.advance(20.1)
        assert len(h.invites_to(carol)) == 1
        ring(h, carol)
        h.advance(5.0)
        assert cancelled(h, carol) and call.final_status() == 480


def test_busy_dnd_and_unregistered_members_are_skipped() -> None:
    h, groups = harness()
    with h:
        alice, bob, carol, dave, erin = (h.extension("101"), h.extension("102"), h.extension("103"),
                                         h.extension("104"), h.extension("105"))
        key = (TENANT, "103")
        h.directory.extensions[key] = dataclasses.replace(h.directory.extensions[key],
                                                          forwarding=ForwardingSettings(dnd=True))
        h.directory.extensions[(TENANT, "106")] = dataclasses.replace(h.directory.extensions[key], number="106",
                                                                      extension_id=99, forwarding=ForwardingSettings())
        # bob is in an answered call with erin
        busy = h.call(erin, "102")
        answer(h, bob)
        assert busy.final_status() == 200
        groups.add("600", ("102", "103", "106", "104"))
        call = h.call(alice, "600")
        assert len(h.invites_to(bob)) == 1  # only the first call's
        assert h.invites_to(carol) == [] and len(h.invites_to(dave)) == 1
        assert [s.members for s in h.events_of(ev.RingGroupRinging)] == [("104",)]
        answer(h, dave)
        assert call.final_status() == 200


def test_nobody_available_is_480_at_once() -> None:
    h, groups = harness()
    with h:
        alice = h.extension("101")
        groups.add("600", ("101",))  # the caller is its only member
        call = h.call(alice, "600")
        assert call.final_status() == 480


def test_round_robin_starts_after_the_last_answerer_and_remembers() -> None:
    h, groups = harness()
    with h:
        alice, bob, carol, dave = h.extension("101"), h.extension("102"), h.extension("103"), h.extension("104")
        groups.add("600", ("102", "103", "104"), Strategy.ROUND_ROBIN, last_answered="102")
        call = h.call(alice, "600")
        assert h.invites_to(bob) == [] and len(h.invites_to(carol)) == 1
        h.advance(20.1)
        answer(h, dave)
        assert call.final_status() == 200
        assert groups.remembered == [(TENANT, 1, "104")]
        call.ack()
        call.bye()
        # the next call starts after dave: bob first
        second = h.call(alice, "600")
        assert len(h.invites_to(bob)) == 1 and len(h.invites_to(carol)) == 1  # carol's from the first call only
        assert [s.members for s in h.events_of(ev.RingGroupRinging)][-1] == ("102",)
        answer(h, bob)
        assert second.final_status() == 200 and groups.remembered[-1] == (TENANT, 1, "102")


def test_a_number_routed_to_a_group_with_an_outside_member() -> None:
    h, groups = harness()
    with h:
        bob, carol = h.extension("102"), h.extension("103")
        _, carrier = h.trunk()
        groups.add("600", ("+74957654321", "102"), ring_seconds=10)
        h.did("+74951112233", "ring_group", {"number": "600"})
        call = h.call_from_trunk(carrier, "+79161234567", "+74951112233")
        outs = [t for t in h.sent_requests("INVITE", to=carrier) if "74957654321" in str(t.request.uri)]
        assert len(outs) == 1 and h.invites_to(bob) == []
        h.reply(outs[0], 100)  # (a CANCEL waits for a provisional response, RFC 3261 §9.1)
        h.advance(10.1)
        assert outs[0].cancelled is not None and len(h.invites_to(bob)) == 1
        answer(h, bob)
        assert call.final_status() == 200
        call.ack()
        call.bye()
        cdr = cdr_of(h)
        # the outside step's route is not the call's: bob answered an inbound call, nothing to bill out
        assert cdr.callee.number == "102" and cdr.ring_group == "600"
        assert cdr.rating.destination_class == "inbound" and cdr.rating.cost == 0
        assert carol  # (unused member of the tenant)


def test_an_outside_member_the_company_may_not_call_is_skipped() -> None:
    h, groups = harness()
    with h:
        alice, bob = h.extension("101"), h.extension("102")
        _, carrier = h.trunk()
        h._snapshot(policies={(TENANT, "tenant", None): PolicyInfo(tenant_id=TENANT, level="tenant", ref_id=None,
                                                                    service_class="local")})
        groups.add("600", ("+4420712345678", "102"))
        call = h.call(alice, "600")
        assert h.sent_requests("INVITE", to=carrier) == [] and len(h.invites_to(bob)) == 1
        assert [s.members for s in h.events_of(ev.RingGroupRinging)] == [("102",)]
        answer(h, bob)
        assert call.final_status() == 200


def test_the_cdr_snapshot_keeps_the_group() -> None:
    h, groups = harness()
    with h:
        alice, bob = h.extension("101"), h.extension("102")
        groups.add("600", ("102",))
        h.call(alice, "600")
        started = h.events_of(ev.CallStarted)[0]
        record = CallRecord.started(started)
        for event in h.events:
            if isinstance(event, ev.CallEvent) and event is not started:
                record.apply(event)
        again = CallRecord.from_json(record.to_json())
        assert again.ring_group == ("600", "G600") and again.callee().number == "600"
        assert bob


def test_the_caller_hanging_up_stops_the_plan() -> None:
    h, groups = harness()
    with h:
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        groups.add("600", ("102", "103"))
        call = h.call(alice, "600")
        ring(h, bob)
        call.cancel()
        assert call.final_status() == 487 and cancelled(h, bob)
        h.advance(60)
        assert h.invites_to(carol) == []


def test_groups_sending_calls_to_each_other_stop() -> None:
    h, groups = harness()
    with h:
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        groups.add("600", ("102",), ring_seconds=5, no_answer={"kind": "ring_group", "number": "601"})
        groups.add("601", ("103",), ring_seconds=5, no_answer={"kind": "ring_group", "number": "600"})
        call = h.call(alice, "600")
        h.advance(5.1)
        assert len(h.invites_to(carol)) == 1
        h.advance(5.1)
        assert call.final_status() == 480 and len(h.invites_to(bob)) == 1
        assert cdr_of(h).ring_group == "600"


def test_members_forwarding_does_not_take_the_call_out_of_the_group() -> None:
    h, groups = harness()
    with h:
        alice, bob, carol, dave = h.extension("101"), h.extension("102"), h.extension("103"), h.extension("104")
        key = (TENANT, "102")
        h.directory.extensions[key] = dataclasses.replace(h.directory.extensions[key], forwarding=ForwardingSettings(
            unconditional="104", no_answer="104", no_answer_seconds=5))
        groups.add("600", ("102", "103"), ring_seconds=15)
        call = h.call(alice, "600")
        assert len(h.invites_to(bob)) == 1 and h.invites_to(dave) == []
        h.advance(15.1)
        assert len(h.invites_to(carol)) == 1 and h.invites_to(dave) == []
        assert h.events_of(ev.CallForwarded) == [] and call.final_status() is None
