"""Queue calls in the real call engine (the harness: fake SIP, fake media, virtual clock) with the real
:class:`~zvonok.callcenter.center.ContactCenter` behind the real :class:`~zvonok.callcenter.desk.CenterDesk`
(only its runtime is an in-memory stand-in): the caller answered with music, offers ringing the agent's
devices, answer and bridge, an unanswered or busy offer going on to the next agent, abandon, position
announcements over the music, overflow, and an agent in another call."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from callengine_harness import TENANT, Device, Harness
from test_ring_group_engine import FakeGroups
from test_voicemail_engine import advance, finish, threads, with_voicemail

from zvonok.callcenter import log as ql
from zvonok.callcenter.center import Action, ContactCenter
from zvonok.callcenter.desk import CenterDesk
from zvonok.callcenter.log import QueueLogEntry
from zvonok.callcenter.queues import QueueConfig, Strategy
from zvonok.cdr.state import CallRecord
from zvonok.media.interface import Prompt
from zvonok.media.prompts import prompt_path
from zvonok.pstn.routing import PolicyInfo
from zvonok.telephony import events as ev
from zvonok.telephony.ivr import Ivr
from zvonok.telephony.ivr_dialogue import MenuSpec, Target
from zvonok.telephony.originate import Originator
from zvonok.telephony.queue_call import QueueCalls, QueueRef, position_prompt, wait_prompt

T = TypeVar("T")
MUSIC = Prompt(path=Path("/music.wav"), loop=True)


class NoDatabase:
    def add_listener(self, listener: Callable[[object], None]) -> None:
        pass


class FakeRuntime:
    """The part of :class:`~zvonok.callcenter.runtime.CallCenterRuntime` the desk uses, without a database:
    the center on the harness's clock, its actions to the handlers, its log kept, one timer."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.center = ContactCenter(rng=random.Random(3))
        self.action_handlers: list[Callable[[Action], None]] = []
        self.log: list[QueueLogEntry] = []
        self._timer: asyncio.TimerHandle | None = None
        self.claims = None  # one node: offers ring at once
        self.db = NoDatabase()  # the desk listens for extension changes; the memory desk reads none

    def feed(self, step: Callable[[ContactCenter, float], T]) -> T:
        try:
            return step(self.center, self.h.now)
        finally:
            self._after()

    def _after(self) -> None:
        for action in self.center.take_actions():
            for handler in self.action_handlers:
                handler(action)
        self.log += self.center.take_log()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.center.next_deadline()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.feed(lambda c, now: c.handle_timer(now))

    def events(self, *names: str) -> list[QueueLogEntry]:
        return [e for e in self.log if e.event in names]


class FakeMusic:
    def source_for(self, tenant_id: int) -> Prompt:
        return MUSIC


class MemoryDesk(CenterDesk):
    """The real desk; queues and agents' extensions from memory instead of the database."""

    def __init__(self, runtime: Any) -> None:
        super().__init__(runtime)
        self.queues: dict[str, QueueRef] = {}
        self.extensions: dict[int, list[str]] = {}

    async def queue(self, tenant_id: int, key: str) -> QueueRef | None:
        return self.queues.get(key) if tenant_id == TENANT else None

    async def agent_extensions(self, tenant_id: int, agent_id: int) -> list[str]:
        return self.extensions.get(agent_id, [])


@dataclasses.dataclass
class Center:
    h: Harness
    runtime: FakeRuntime
    desk: MemoryDesk

    def queue(self, number: str, **settings: Any) -> int:
        queue_id = len(self.desk.queues) + 1
        self.h.run(self._set_queue(QueueConfig(id=queue_id, tenant_id=TENANT, number=number, **settings)))
        self.desk.queues[number] = QueueRef(
            id=queue_id, number=number, name=f"Q{number}", callback_key=settings.get("callback_key"),
            callback_abroad=settings.get("callback_abroad", False),
        )
        return queue_id

    async def _set_queue(self, config: QueueConfig) -> None:
        self.runtime.feed(lambda c, now: c.set_queue(config, now))

    def agent(self, number: str, agent_id: int, queue_id: int) -> list[Device]:
        """An employee with extension ``number`` (one phone), logged in to the queue."""
        phone = self.h.extension(number)
        key = (TENANT, number)
        self.h.directory.extensions[key] = dataclasses.replace(
            self.h.directory.extensions[key], employee_id=agent_id
        )
        self.desk.extensions[agent_id] = [number]
        self.h.run(self._login(agent_id, queue_id))
        return phone

    async def _login(self, agent_id: int, queue_id: int) -> None:
        self.runtime.feed(lambda c, now: c.login(agent_id, [queue_id], now))


def center() -> Center:
    h = Harness()
    h.engine.hold_music = FakeMusic()  # type: ignore[assignment]
    runtime = FakeRuntime(h)
    desk = MemoryDesk(runtime)
    h.engine.queue_calls = QueueCalls(h.engine, desk)
    desk.attach(h.engine.queue_calls)
    return Center(h, runtime, desk)


def answer(h: Harness, device: list[Device]) -> Any:
    fork = h.invites_to(device)[-1]
    h.reply(fork, 180)
    return h.reply(fork, 200, device=device[0])


def test_the_caller_waits_with_music_and_the_agent_who_answers_is_bridged() -> None:
    c = center()
    h = c.h
    with h:
        caller = h.extension("101")
        queue_id = c.queue("500", strategy=Strategy.LONGEST_IDLE, wrap_up=5)
        call = h.call(caller, "500")
        assert call.final_status() == 200  # answered by us at once
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None
        endpoint = engine_call.caller.endpoint
        assert endpoint is not None and h.media.playing[endpoint.id] == MUSIC
        (enter,) = c.runtime.events(ql.ENTERQUEUE)
        assert (enter.queue_id, enter.data["number"], enter.data["position"]) == (queue_id, "101", 1)
        agent = c.agent("201", 7, queue_id)  # the agent logs in: the waiting caller is offered at once
        h.settle()
        ok = answer(h, agent)
        callee = engine_call.callee
        assert callee is not None and callee.endpoint is not None
        assert (endpoint.id, callee.endpoint.id) in h.media.bridges
        assert endpoint.id not in h.media.playing  # the music stopped
        (connect,) = c.runtime.events(ql.CONNECT)
        assert (connect.agent_id, connect.call_id) == (7, engine_call.id)
        h.request_from(h.invites_to(agent)[-1], ok, "BYE")  # the agent hangs up: the caller gets our BYE
        assert len(call.harness.sip.requests("BYE", caller[0].peer)) == 1
        (complete,) = c.runtime.events(ql.COMPLETEAGENT, ql.COMPLETECALLER)
        assert (complete.event, complete.agent_id) == (ql.COMPLETEAGENT, 7)
        assert c.runtime.center.agents[7].status.value == "wrap_up"


def test_an_unanswered_or_busy_offer_goes_on_to_the_next_agent() -> None:
    c = center()
    h = c.h
    with h:
        caller = h.extension("101")
        queue_id = c.queue("500", strategy=Strategy.ROUND_ROBIN, ring_timeout=15, retry=60)
        first = c.agent("201", 1, queue_id)
        second = c.agent("202", 2, queue_id)
        third = c.agent("203", 3, queue_id)
        call = h.call(caller, "500")
        call.ack()
        h.reply(h.invites_to(first)[-1], 180)
        h.advance(15)  # the center's ring timeout: our CANCEL, the next agent rings
        assert h.invites_to(first)[-1].cancelled is not None
        h.reply(h.invites_to(second)[-1], 486)  # busy: the next again
        assert len(h.invites_to(third)) == 1
        missed = c.runtime.events(ql.RINGNOANSWER)
        assert [(e.agent_id, e.data["reason"]) for e in missed] == [(1, "no_answer"), (2, "busy")]
        answer(h, third)
        (connect,) = c.runtime.events(ql.CONNECT)
        assert connect.agent_id == 3


def test_a_caller_hanging_up_in_line_abandons_and_hears_its_position_meanwhile() -> None:
    c = center()
    h = c.h
    with h:
        ann, bob = h.extension("101"), h.extension("102")
        queue_id = c.queue("500", announce_every=20)
        first = h.call(ann, "500")
        first.ack()
        second = h.call(bob, "500")
        second.ack()
        engine_call = second.engine_call
        assert engine_call is not None and engine_call.caller is not None
        endpoint = engine_call.caller.endpoint
        assert endpoint is not None
        h.advance(20)
        assert h.media.playing[endpoint.id] == Prompt(path=position_prompt(2, "ru"))
        assert position_prompt(2, "ru").name == "queue_position_2.wav" and position_prompt(2, "ru").exists()
        h.deliver(h.media.finish_playing, h.media.endpoints[endpoint.id])
        # then the estimated wait: two callers ahead of nobody handled yet, no agent working: the default
        # handle time (120 s) for each of the 2 positions: 240 s, "about five minutes"
        assert h.media.playing[endpoint.id] == Prompt(path=wait_prompt(240, "ru"))
        assert wait_prompt(240, "ru").name == "queue_wait_5.wav" and wait_prompt(240, "ru").exists()
        h.deliver(h.media.finish_playing, h.media.endpoints[endpoint.id])
        assert h.media.playing[endpoint.id] == MUSIC  # back to the music
        h.advance(5)
        second.bye()
        (abandon,) = c.runtime.events(ql.ABANDON)
        assert (abandon.call_id, abandon.queue_id, abandon.data["position"]) == (engine_call.id, queue_id, 2)
        assert abandon.data["wait"] == 25
        assert list(c.runtime.center.waiting) == [first.engine_call.id]  # type: ignore[union-attr]


def test_join_empty_sends_the_caller_to_the_overflow_extension() -> None:
    c = center()
    h = c.h
    with h:
        caller, night = h.extension("101"), h.extension("301")
        c.queue("500", join_empty=False, overflow={"kind": "extension", "number": "301"})
        call = h.call(caller, "500")
        call.ack()
        assert [e.event for e in c.runtime.log] == [ql.JOINEMPTY]
        answer(h, night)
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.callee is not None
        assert engine_call.callee.party.number == "301"


def test_an_agent_in_another_call_is_not_offered_until_it_ends() -> None:
    c = center()
    h = c.h
    with h:
        caller, friend = h.extension("101"), h.extension("102")
        queue_id = c.queue("500")
        agent = c.agent("201", 9, queue_id)
        direct = h.call(friend, "201")
        ok = answer(h, agent)
        direct.ack()
        assert c.runtime.center.agents[9].busy_elsewhere
        call = h.call(caller, "500")
        call.ack()
        assert len(h.invites_to(agent)) == 1  # only the direct call
        h.request_from(h.invites_to(agent)[-1], ok, "BYE")  # the direct call ends: the agent is offered
        assert not c.runtime.center.agents[9].busy_elsewhere
        assert len(h.invites_to(agent)) == 2


def test_the_engine_tells_the_call_center_who_talks_in_a_call_not_a_queues() -> None:
    """What the call center asks when an agent logs in (``on_other_call``, set by the desk): busy from the
    login when already in such a call; a queue call of the agent's is the center's own and does not count."""
    c = center()
    h = c.h
    with h:
        caller, friend = h.extension("101"), h.extension("102")
        queue_id = c.queue("500")
        agent = c.agent("201", 9, queue_id)
        on_other_call = c.runtime.on_other_call  # type: ignore[attr-defined]
        assert on_other_call(9) is False
        direct = h.call(friend, "201")
        assert on_other_call(9) is False  # ringing: not in the call yet
        ok = answer(h, agent)
        direct.ack()
        assert on_other_call(9) is True and on_other_call(7) is False
        h.request_from(h.invites_to(agent)[-1], ok, "BYE")
        assert on_other_call(9) is False
        call = h.call(caller, "500")
        call.ack()
        h.settle()
        answer(h, agent)
        assert c.runtime.center.agents[9].status.value == "on_call" and on_other_call(9) is False


def test_a_number_whose_destination_is_a_queue() -> None:
    c = center()
    h = c.h
    with h:
        _, carrier = h.trunk()
        queue_id = c.queue("500")
        agent = c.agent("201", 4, queue_id)
        h.did("+74951234567", "queue", {"number": "500"})
        call = h.call_from_trunk(carrier, "+79161234567", "+74951234567")
        assert call.final_status() == 200
        call.ack()
        (enter,) = c.runtime.events(ql.ENTERQUEUE)
        assert (enter.queue_id, enter.data["number"]) == (queue_id, "+79161234567")
        answer(h, agent)
        (connect,) = c.runtime.events(ql.CONNECT)
        assert connect.agent_id == 4
        call.bye()  # the caller hangs up
        (complete,) = c.runtime.events(ql.COMPLETEAGENT, ql.COMPLETECALLER)
        assert complete.event == ql.COMPLETECALLER


def test_the_wait_prompt_covers_the_estimate() -> None:
    names = {s: wait_prompt(s, "en").name for s in (0, 60, 61, 180, 181, 300, 301, 600, 601)}
    assert names == {
        0: "queue_wait_1.wav",
        60: "queue_wait_1.wav",
        61: "queue_wait_2.wav",
        180: "queue_wait_3.wav",
        181: "queue_wait_5.wav",
        300: "queue_wait_5.wav",
        301: "queue_wait_10.wav",
        600: "queue_wait_10.wav",
        601: "queue_wait_more.wav",
    }
    assert all(wait_prompt(s, lang).exists() for s in (0, 601) for lang in ("en", "ru"))


class QueueMenu:
    async def menus(self, tenant_id: int) -> tuple[dict[int, MenuSpec], frozenset[str]]:
        target = Target(kind="queue", payload={"number": "500"})
        return {1: MenuSpec(id=1, prompt="/prompts/main.wav", keys={"3": target})}, frozenset()


def test_an_ivr_key_leads_into_a_queue() -> None:
    c = center()
    h = c.h
    with h:
        h.engine.ivr = Ivr(h.engine, QueueMenu())
        _, carrier = h.trunk()
        queue_id = c.queue("500")
        h.did("+74950000007", "ivr", {"menu": 1})
        call = h.call_from_trunk(carrier, "+79161234567", "+74950000007")
        call.ack()
        engine_call = call.engine_call
        assert (
            engine_call is not None
            and engine_call.caller is not None
            and engine_call.caller.endpoint is not None
        )
        endpoint = engine_call.caller.endpoint
        h.dtmf(endpoint, "3")
        assert h.media.playing[endpoint.id] == MUSIC  # in line, with music (no ringback)
        (enter,) = c.runtime.events(ql.ENTERQUEUE)
        assert (enter.queue_id, enter.call_id) == (queue_id, engine_call.id)
        agent = c.agent("201", 5, queue_id)
        h.settle()
        answer(h, agent)
        (connect,) = c.runtime.events(ql.CONNECT)
        assert connect.agent_id == 5
        assert any(endpoint.id in pair for pair in h.media.bridges)


def test_a_ring_group_nobody_answers_sends_the_caller_into_a_queue() -> None:
    c = center()
    h = c.h
    groups = FakeGroups()
    h.engine.group_calls.groups = groups
    with h:
        alice, bob = h.extension("101"), h.extension("102")
        queue_id = c.queue("500")
        groups.add("600", ("102",), ring_seconds=5, no_answer={"kind": "queue", "number": "500"})
        call = h.call(alice, "600")
        fork = h.invites_to(bob)[0]
        h.reply(fork, 180)
        h.advance(5)  # nobody in the group answered: the queue answers the caller
        assert fork.cancelled is not None
        assert call.final_status() == 200
        call.ack()
        h.reply(fork, 487)  # the group's cancelled fork ends after the caller is in line: it decides nothing
        engine_call = call.engine_call
        assert engine_call is not None and not engine_call.ended
        (enter,) = c.runtime.events(ql.ENTERQUEUE)
        assert (enter.queue_id, enter.call_id) == (queue_id, engine_call.id)
        assert not h.sent_requests("BYE", to=alice)


# -- callbacks -----------------------------------------------------------------------------------------
def _callback_center() -> tuple[Center, Any]:
    c = center()
    c.h._snapshot()  # the tenant (its domain) in the routing snapshot
    c.h.engine.originator = Originator(c.h.engine)
    _, carrier = c.h.trunk()
    return c, carrier


def _request_callback(c: Center, carrier: Any, queue_id: int, number: str = "+79161234567") -> str:
    """A customer calls the queue's number from ``number``, presses the callback key and is let go."""
    h = c.h
    h.did("+74951234567", "queue", {"number": "500"})
    call = h.call_from_trunk(carrier, number, "+74951234567")
    call.ack()
    engine_call = call.engine_call
    assert engine_call is not None and engine_call.caller is not None and engine_call.caller.endpoint is not None
    endpoint = engine_call.caller.endpoint
    h.dtmf(endpoint, "5")  # not the key: nothing happens
    assert h.media.playing[endpoint.id] == MUSIC
    h.dtmf(endpoint, "1")
    assert h.media.playing[endpoint.id] == Prompt(path=prompt_path("queue_callback", "ru"))
    assert prompt_path("queue_callback", "ru").exists() and prompt_path("queue_callback", "en").exists()
    h.deliver(h.media.finish_playing, h.media.endpoints[endpoint.id])
    assert engine_call.ended  # we hung up on the customer (our BYE)
    assert [e.event for e in c.runtime.log if e.call_id == engine_call.id] == [ql.ENTERQUEUE, ql.CALLBACK]
    assert list(c.runtime.center.waiting) == [engine_call.id]  # its place is kept, no ABANDON
    return engine_call.id


def test_a_callback_rings_the_agent_first_then_calls_the_customer_and_bridges_them() -> None:
    c, carrier = _callback_center()
    h = c.h
    with h:
        queue_id = c.queue("500", callback_key="1", wrap_up=5)
        request = _request_callback(c, carrier, queue_id)
        outgoing_before = len(h.invites_to(carrier))
        agent = c.agent("201", 4, queue_id)
        h.settle()
        assert len(h.invites_to(carrier)) == outgoing_before  # the customer is not called before the agent answers
        assert c.runtime.center.agents[4].status.value == "ringing"
        answer(h, agent)
        assert c.runtime.center.agents[4].status.value == "on_call"
        assert not c.runtime.events(ql.CONNECT)
        out = h.invites_to(carrier)[-1]
        assert "79161234567" in str(out.request.uri)  # the customer's number, out through the trunk
        ok = h.reply(out, 200)
        (connect,) = c.runtime.events(ql.CONNECT)
        assert (connect.call_id, connect.agent_id, connect.data["callback"], connect.data["attempt"]) == (
            request, 4, True, 1)
        (call,) = [x for x in h.engine.calls.values() if not x.ended]
        assert call.caller is not None and call.callee is not None
        assert call.caller.endpoint is not None and call.callee.endpoint is not None
        assert (call.caller.endpoint.id, call.callee.endpoint.id) in h.media.bridges
        (placed,) = h.events_of(ev.QueueCallbackPlaced)
        assert (placed.call_id, placed.queue_number, placed.agent_id, placed.request_call_id) == (
            call.id, "500", 4, request)
        routed = [r for r in h.events_of(ev.CallRouted) if r.call_id == call.id]
        assert routed and routed[-1].number == "+79161234567"
        h.request_from(out, ok, "BYE")  # the customer hangs up
        (complete,) = c.runtime.events(ql.COMPLETECALLER)
        assert complete.call_id == request and complete.agent_id == 4
        assert c.runtime.center.agents[4].status.value == "wrap_up"
        record = CallRecord.started(next(e for e in h.events_of(ev.CallStarted) if e.call_id == call.id))
        for event in h.events:
            if isinstance(event, ev.CallEvent) and event.call_id == call.id and type(event) in ev.CALL_EVENT_TYPES \
                    and not isinstance(event, ev.CallStarted | ev.CallEnded):
                record.apply(event)
        ended = next(e for e in h.events_of(ev.CallEnded) if e.call_id == call.id)
        cdr = record.finish_with(ended)
        assert cdr.queue == "500" and cdr.caller.employee_id == 4 and cdr.callee.number == "+79161234567"
        assert cdr.disposition is ev.Disposition.ANSWERED and cdr.rating.trunk_id is not None


def test_a_customer_who_does_not_answer_is_called_again_after_the_delay_then_given_up() -> None:
    c, carrier = _callback_center()
    h = c.h
    with h:
        queue_id = c.queue("500", callback_key="1", wrap_up=0, callback_attempts=2, callback_retry=60)
        request = _request_callback(c, carrier, queue_id)
        agent = c.agent("201", 4, queue_id)
        h.settle()
        answer(h, agent)
        h.reply(h.invites_to(carrier)[-1], 486)  # busy: the agent hears the busy tone, then our BYE
        h.advance(10)
        (failed,) = c.runtime.events(ql.CALLBACKFAILED)
        assert (failed.agent_id, failed.data["attempt"], failed.data["reason"], failed.data["retry_in"]) == (
            4, 1, "busy", 60.0)
        assert len(h.sent_requests("BYE", to=agent)) == 1  # the agent's call ends
        assert request in c.runtime.center.waiting and c.runtime.center.agents[4].status.value == "available"
        rung = len(h.invites_to(agent))
        h.advance(30)
        assert len(h.invites_to(agent)) == rung  # not before the delay
        h.advance(31)
        assert len(h.invites_to(agent)) == rung + 1
        answer(h, agent)
        h.reply(h.invites_to(carrier)[-1], 480)  # no answer this time: given up
        h.advance(10)
        last = c.runtime.events(ql.CALLBACKFAILED)[-1]
        assert (last.data["attempt"], last.data["reason"], last.data["final"]) == (2, "no_answer", True)
        assert request not in c.runtime.center.waiting and request not in c.runtime.center.in_call


def test_an_agent_not_answering_a_callback_leaves_it_in_line() -> None:
    c, carrier = _callback_center()
    h = c.h
    with h:
        queue_id = c.queue("500", callback_key="1", ring_timeout=15, retry=60)
        request = _request_callback(c, carrier, queue_id)
        outgoing = len(h.invites_to(carrier))
        agent = c.agent("201", 4, queue_id)
        h.settle()
        h.reply(h.invites_to(agent)[-1], 180)
        h.advance(15)  # the center's ring timeout: our CANCEL to the agent's phone
        assert h.invites_to(agent)[-1].cancelled is not None
        (missed,) = c.runtime.events(ql.RINGNOANSWER)
        assert (missed.call_id, missed.agent_id, missed.data["reason"]) == (request, 4, "no_answer")
        assert request in c.runtime.center.waiting and len(h.invites_to(carrier)) == outgoing
        assert not c.runtime.events(ql.CALLBACKFAILED)


def test_a_callback_the_company_may_not_call_is_given_up_before_anyone_rings() -> None:
    c, carrier = _callback_center()
    h = c.h
    with h:
        queue_id = c.queue("500", callback_key="1")
        request = _request_callback(c, carrier, queue_id)
        h._snapshot(policies={(TENANT, "tenant", None): PolicyInfo(
            tenant_id=TENANT, level="tenant", ref_id=None, service_class="internal_only")})
        agent = c.agent("201", 4, queue_id)
        h.settle()
        assert h.invites_to(agent) == []  # checked as the company before the agent's phone rings
        (failed,) = c.runtime.events(ql.CALLBACKFAILED)
        assert (failed.call_id, failed.agent_id, failed.data["reason"], failed.data["final"]) == (
            request, 4, "not_allowed", True)
        assert request not in c.runtime.center.waiting
        assert c.runtime.center.agents[4].status.value == "available"


def test_an_employee_calling_from_an_extension_is_called_back_on_it() -> None:
    """With trunks configured, the caller's number goes through the dial plan, where a short number is no
    outside number: an extension of the company's own is still called back (an internal call)."""
    c, _ = _callback_center()
    h = c.h
    with h:
        queue_id = c.queue("500", callback_key="1", wrap_up=0)
        bob = h.extension("102")
        call = h.call(bob, "500")
        assert call.final_status() == 200
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None and engine_call.caller.endpoint is not None
        endpoint = engine_call.caller.endpoint
        h.dtmf(endpoint, "1")
        assert h.media.playing[endpoint.id] == Prompt(path=prompt_path("queue_callback", "ru"))
        h.deliver(h.media.finish_playing, h.media.endpoints[endpoint.id])
        assert engine_call.ended and [e.event for e in c.runtime.log if e.call_id == engine_call.id] == [
            ql.ENTERQUEUE, ql.CALLBACK]
        rung_bob = len(h.invites_to(bob))
        agent = c.agent("201", 4, queue_id)
        h.settle()
        answer(h, agent)
        assert len(h.invites_to(bob)) == rung_bob + 1  # the callback rings the employee's own phone
        h.reply(h.invites_to(bob)[-1], 200)
        (connect,) = c.runtime.events(ql.CONNECT)
        assert (connect.call_id, connect.agent_id, connect.data["callback"]) == (engine_call.id, 4, True)


def test_an_anonymous_caller_cannot_ask_for_a_callback() -> None:
    c, carrier = _callback_center()
    h = c.h
    with h:
        c.queue("500", callback_key="1")
        h.did("+74951234567", "queue", {"number": "500"})
        call = h.call_from_trunk(carrier, "anonymous", "+74951234567")
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None and engine_call.caller.endpoint is not None
        h.dtmf(engine_call.caller.endpoint, "1")
        assert h.media.playing[engine_call.caller.endpoint.id] == MUSIC  # still waiting on the line
        assert not engine_call.ended and not c.runtime.events(ql.CALLBACK)


@pytest.mark.parametrize("number", ["+442071234567", "+78091234567", "112"])
def test_a_caller_from_abroad_or_a_premium_number_cannot_ask_for_a_callback(number: str) -> None:
    """The number called back is the caller ID, which anyone can forge: even with international calls allowed
    to the company, a callback never dials abroad, a premium-rate or an emergency number (toll fraud)."""
    c, carrier = _callback_center()
    h = c.h
    with h:
        c.queue("500", callback_key="1")
        h._snapshot(policies={(TENANT, "tenant", None): PolicyInfo(
            tenant_id=TENANT, level="tenant", ref_id=None, service_class="international")})
        h.did("+74951234567", "queue", {"number": "500"})
        call = h.call_from_trunk(carrier, number, "+74951234567")
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None and engine_call.caller.endpoint is not None
        h.dtmf(engine_call.caller.endpoint, "1")
        assert h.media.playing[engine_call.caller.endpoint.id] == MUSIC  # still waiting on the line
        assert not engine_call.ended and not c.runtime.events(ql.CALLBACK)


def test_a_queue_that_opted_in_calls_back_abroad_and_never_a_premium_number() -> None:
    """``callback_abroad``: a company with customers abroad lets its queue call them back (the international
    rate, its calling permissions); a premium-rate or emergency caller ID still gets no callback."""
    c, carrier = _callback_center()
    h = c.h
    with h:
        queue_id = c.queue("500", callback_key="1", callback_abroad=True)
        h._snapshot(policies={(TENANT, "tenant", None): PolicyInfo(
            tenant_id=TENANT, level="tenant", ref_id=None, service_class="international")})
        h.did("+74951234567", "queue", {"number": "500"})
        for premium in ("+78091234567", "112"):
            call = h.call_from_trunk(carrier, premium, "+74951234567")
            call.ack()
            engine_call = call.engine_call
            assert engine_call is not None and engine_call.caller is not None
            assert engine_call.caller.endpoint is not None
            h.dtmf(engine_call.caller.endpoint, "1")
            assert h.media.playing[engine_call.caller.endpoint.id] == MUSIC  # still waiting on the line
            assert not engine_call.ended and not c.runtime.events(ql.CALLBACK)
            call.bye()
            assert engine_call.ended
        request = _request_callback(c, carrier, queue_id, number="+442071234567")
        agent = c.agent("201", 4, queue_id)
        h.settle()
        answer(h, agent)
        out = h.invites_to(carrier)[-1]
        assert "442071234567" in str(out.request.uri)  # dialled abroad through the trunk
        h.reply(out, 200)
        (connect,) = c.runtime.events(ql.CONNECT)
        assert (connect.call_id, connect.data["callback"]) == (request, True)


def test_ring_all_rings_every_agent_for_a_callback_and_the_first_answer_takes_it() -> None:
    c, carrier = _callback_center()
    h = c.h
    with h:
        queue_id = c.queue("500", callback_key="1", strategy=Strategy.RING_ALL, wrap_up=0)
        first = c.agent("201", 4, queue_id)
        second = c.agent("202", 5, queue_id)
        h.did("+74951234567", "queue", {"number": "500"})
        call = h.call_from_trunk(carrier, "+79161234567", "+74951234567")
        call.ack()
        request = call.engine_call.id  # type: ignore[union-attr]
        endpoint = call.engine_call.caller.endpoint  # type: ignore[union-attr]
        assert len(h.invites_to(first)) == 1 and len(h.invites_to(second)) == 1  # the live call rings both
        h.reply(h.invites_to(first)[0], 180)
        h.reply(h.invites_to(second)[0], 180)
        h.dtmf(endpoint, "1")  # the key while both ring: their phones stop, the callback rings both again
        assert h.invites_to(first)[0].cancelled is not None and h.invites_to(second)[0].cancelled is not None
        assert len(h.invites_to(first)) == 2 and len(h.invites_to(second)) == 2
        assert len(h.invites_to(carrier)) == 0
        h.reply(h.invites_to(second)[-1], 180)
        answer(h, first)
        assert h.invites_to(second)[-1].cancelled is not None  # the other agent's phone stops ringing
        assert c.runtime.center.agents[5].status.value == "available"
        out = h.invites_to(carrier)[-1]
        ok = h.reply(out, 200)
        (connect,) = c.runtime.events(ql.CONNECT)
        assert (connect.call_id, connect.agent_id) == (request, 4)
        h.request_from(out, ok, "BYE")


def test_the_agent_hanging_up_before_the_customer_answers_puts_the_callback_back() -> None:
    c, carrier = _callback_center()
    h = c.h
    with h:
        queue_id = c.queue("500", callback_key="1", wrap_up=0, callback_attempts=1)
        request = _request_callback(c, carrier, queue_id)
        agent = c.agent("201", 4, queue_id)
        h.settle()
        ok = answer(h, agent)
        out = h.invites_to(carrier)[-1]
        h.reply(out, 180)
        h.request_from(h.invites_to(agent)[-1], ok, "BYE")  # the agent gives up while the customer rings
        assert out.cancelled is not None  # our CANCEL to the carrier
        (failed,) = c.runtime.events(ql.CALLBACKFAILED)
        assert (failed.data["reason"], failed.data["attempt"]) == ("agent_hung_up", 0)
        assert request in c.runtime.center.waiting  # no attempt spent: still in line


def test_max_wait_overflow_to_a_mailbox_takes_a_message(tmp_path: Path) -> None:
    """The queue answered the caller (music); its overflow to voicemail must not answer it again (it did, and
    the call failed: a second 200 on a confirmed leg)."""
    c = center()
    h = c.h
    with h:
        port = with_voicemail(h, tmp_path)
        caller = h.extension("101")
        h.extension("301")
        port.add("301")
        queue_id = c.queue("500", max_wait=10, overflow={"kind": "voicemail", "number": "301"})
        call = h.call(caller, "500")
        assert call.final_status() == 200
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None
        endpoint = engine_call.caller.endpoint
        assert endpoint is not None and h.media.playing[endpoint.id] == MUSIC
        advance(h, 10)
        (exit_row,) = c.runtime.events(ql.EXITWITHTIMEOUT)
        assert (exit_row.queue_id, exit_row.call_id) == (queue_id, engine_call.id)
        assert not engine_call.ended
        assert h.media.playing[endpoint.id] == Prompt(path=prompt_path("vm_unavailable", "ru"))
        assert not engine_call.ringback
        finish(h, h.media.endpoints[endpoint.id])  # the greeting ran out: the beep, then the recording
        advance(h, 0.5)
        advance(h, 3.0)
        call.bye()
        threads(h)
        ((box, message),) = port.stored
        assert (box.number, message.call_id) == ("301", engine_call.id)
        assert 2.9 <= message.duration <= 3.1
        (ended,) = h.events_of(ev.CallEnded)
        assert ended.disposition is ev.Disposition.VOICEMAIL


class OverflowMenu:
    async def menus(self, tenant_id: int) -> tuple[dict[int, MenuSpec], frozenset[str]]:
        target = Target(kind="extension", payload={"number": "301"})
        return {1: MenuSpec(id=1, prompt="/prompts/main.wav", keys={"1": target})}, frozenset()


def test_max_wait_overflow_to_a_voice_menu_plays_it() -> None:
    c = center()
    h = c.h
    with h:
        h.engine.ivr = Ivr(h.engine, OverflowMenu())
        caller, night = h.extension("101"), h.extension("301")
        c.queue("500", max_wait=10, overflow={"kind": "ivr", "menu": 1})
        call = h.call(caller, "500")
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None
        endpoint = engine_call.caller.endpoint
        assert endpoint is not None
        h.advance(10)
        assert [e.event for e in c.runtime.log if e.call_id] == [ql.ENTERQUEUE, ql.EXITWITHTIMEOUT]
        assert not engine_call.ended
        assert h.media.playing[endpoint.id] == Prompt(path=Path("/prompts/main.wav"))
        h.dtmf(endpoint, "1")
        answer(h, night)
        assert engine_call.callee is not None and engine_call.callee.party.number == "301"


def test_max_wait_overflow_to_the_access_number_service_starts_its_dialogue() -> None:
    c = center()
    h = c.h
    with h:
        caller = h.extension("101")
        c.queue("500", max_wait=10, overflow={"kind": "access"})
        call = h.call(caller, "500")
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None
        endpoint = engine_call.caller.endpoint
        assert endpoint is not None
        h.advance(10)
        assert not engine_call.ended and engine_call.access is not None
        assert not engine_call.ringback
        assert h.media.playing[endpoint.id] != MUSIC  # the service's prompt, not the queue's music
