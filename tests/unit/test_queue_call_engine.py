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

from callengine_harness import TENANT, Device, Harness
from test_ring_group_engine import FakeGroups

from zvonok.callcenter import log as ql
from zvonok.callcenter.center import Action, ContactCenter
from zvonok.callcenter.desk import CenterDesk
from zvonok.callcenter.log import QueueLogEntry
from zvonok.callcenter.queues import QueueConfig, Strategy
from zvonok.media.interface import Prompt
from zvonok.telephony.ivr import Ivr
from zvonok.telephony.ivr_dialogue import MenuSpec, Target
from zvonok.telephony.queue_call import QueueCalls, QueueRef, position_prompt, wait_prompt

T = TypeVar("T")
MUSIC = Prompt(path=Path("/music.wav"), loop=True)


class FakeRuntime:
    """The part of :class:`~zvonok.callcenter.runtime.CallCenterRuntime` the desk uses, without a database:
    the center on the harness's clock, its actions to the handlers, its log kept, one timer."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.center = ContactCenter(rng=random.Random(3))
        self.action_handlers: list[Callable[[Action], None]] = []
        self.log: list[QueueLogEntry] = []
        self._timer: asyncio.TimerHandle | None = None

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
        self.h.run(self._set_queue(QueueConfig(id=queue_id, tenant_id=TENANT, **settings)))
        self.desk.queues[number] = QueueRef(id=queue_id, number=number, name=f"Q{number}")
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
