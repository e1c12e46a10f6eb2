"""Queue calls in the real call engine (the harness: fake SIP, fake media, virtual clock) with the real
:class:`~zvonok.callcenter.center.ContactCenter` behind the real :class:`~zvonok.callcenter.desk.CenterDesk`
(only its runtime is an in-memory stand-in): the caller answered with music, offers ringing the agent's
devices, answer and bridge, an unanswered or busy offer going on to the next agent, abandon, position
announcements over the music, overflow, and an agent in another call."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from callengine_harness import TENANT, Device, Harness, PhoneCall
from test_pickup_park_engine import _refer_from_caller
from test_ring_group_engine import FakeGroups
from test_voicemail_engine import advance, finish, threads, with_voicemail

from zvonok.callcenter import log as ql
from zvonok.callcenter.agents import Agent
from zvonok.callcenter.center import Action, ContactCenter
from zvonok.callcenter.desk import CenterDesk
from zvonok.callcenter.log import QueueLogEntry
from zvonok.callcenter.queues import HoldSound, QueueConfig, Strategy, VipNumber
from zvonok.cdr.state import CallRecord
from zvonok.media.interface import RINGBACK_RU, Prompt
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

    # the agent inputs the REST API (and the agents' feature codes) make, as the real runtime has them
    def agent(self, tenant_id: int, employee_id: int) -> Agent | None:
        return self.center.agents.get(employee_id) if tenant_id == TENANT else None

    def login(self, tenant_id: int, employee_id: int, queue_ids: list[int], skills: dict[str, int]) -> Agent:
        self.feed(lambda c, now: c.login(employee_id, queue_ids, now, skills=skills))
        return self.center.agents[employee_id]

    def logout(self, employee_id: int, queue_ids: list[int] | None) -> None:
        self.feed(lambda c, now: c.logout(employee_id, queue_ids, now))

    def pause(self, employee_id: int, reason: str) -> None:
        self.feed(lambda c, now: c.pause(employee_id, reason, now))

    def unpause(self, employee_id: int) -> None:
        self.feed(lambda c, now: c.unpause(employee_id, now))


class FakeMusic:
    def source_for(self, tenant_id: int) -> Prompt:
        return MUSIC


class MemoryDesk(CenterDesk):
    """The real desk; queues and agents' extensions from memory instead of the database."""

    def __init__(self, runtime: Any) -> None:
        super().__init__(runtime)
        self.queues: dict[str, QueueRef] = {}
        self.extensions: dict[int, list[str]] = {}
        self.members: dict[int, list[int]] = {}  # employee -> the queues it is a member of (feature codes)
        self.reasons: dict[str, str] = {}  # a not-ready reason's *47 code -> its name (feature codes)

    async def queue(self, tenant_id: int, key: str) -> QueueRef | None:
        return self.queues.get(key) if tenant_id == TENANT else None

    async def agent_extensions(self, tenant_id: int, agent_id: int) -> list[str]:
        return self.extensions.get(agent_id, [])

    async def membership(self, tenant_id: int, employee_id: int) -> tuple[list[int], dict[str, int]] | None:
        queues = self.members.get(employee_id) if tenant_id == TENANT else None
        return (queues, {}) if queues is not None else None

    async def reason_for_code(self, tenant_id: int, code: str) -> str | None:
        return self.reasons.get(code) if tenant_id == TENANT else None


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
            ringback=settings.get("hold_sound") is HoldSound.RINGBACK,
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


def center(recordings_dir: Path | None = None) -> Center:
    h = Harness(recordings_dir=recordings_dir)
    h.engine.hold_music = FakeMusic()  # type: ignore[assignment]
    runtime = FakeRuntime(h)
    desk = MemoryDesk(runtime)
    h.engine.queue_calls = QueueCalls(h.engine, desk)
    desk.attach(h.engine.queue_calls)
    # as the composition root wires it: a device registering or going is announced on the bus
    h.location.on_change = lambda tenant, extension: h.bus.publish(ev.RegistrationChanged(
        tenant_id=tenant, extension_id=extension, devices=len(h.location.lookup(tenant, extension, h.now)),
        at=h.now))
    return Center(h, runtime, desk)


def _agent_answers(h: Harness, caller: list[Device], queue: str, agent: list[Device]) -> tuple[Any, Any, Any]:
    """The caller dials the queue and waits; the agent's phone, rung, answers: (the caller's call, the agent's
    fork, its 200)."""
    call = h.call(caller, queue)
    call.ack()
    h.settle()
    fork = h.invites_to(agent)[-1]
    return call, fork, h.reply(fork, 200, device=agent[0])


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


def _two_callers_then_an_agent(c: Center) -> tuple[PhoneCall, PhoneCall, list[Device]]:
    """Two callers waiting in queue 500 (nobody logged in when they came), then agent 1 logs in: the
    first caller, at the head of the line, rings agent 1's phone."""
    h = c.h
    queue_id = c.queue("500", strategy=Strategy.LONGEST_IDLE, ring_timeout=15, retry=60)
    first, second = h.call(h.extension("101"), "500"), h.call(h.extension("102"), "500")
    first.ack()
    second.ack()
    agent = c.agent("201", 1, queue_id)
    h.reply(h.invites_to(agent)[-1], 180)
    assert first.engine_call is not None and c.runtime.center.waiting[first.engine_call.id].offered == {1}
    return first, second, agent


def _unregister_the_only_phone(h: Harness, number: str) -> None:
    """The extension's one registered phone sends REGISTER with Expires: 0."""
    extension = h.directory.extensions[(TENANT, number)]
    (binding,) = h.location.lookup(TENANT, extension.extension_id, h.now)
    h.deliver(h.location.remove, TENANT, extension.extension_id, binding.contact)


def _back_at_the_head_and_offered_to_the_next(c: Center, first: PhoneCall, second: PhoneCall, reason: str) -> None:
    h = c.h
    assert first.engine_call is not None and second.engine_call is not None
    (missed,) = c.runtime.events(ql.RINGNOANSWER)
    assert (missed.agent_id, missed.call_id, missed.data["reason"]) == (1, first.engine_call.id, reason)
    assert c.runtime.center.position(first.engine_call.id) == 1  # its place kept: still first in line
    assert c.runtime.center.waiting[first.engine_call.id].offered == set()
    queue_id = c.runtime.center.waiting[first.engine_call.id].queue_id
    nxt = c.agent("202", 2, queue_id)  # the next agent gets the first caller, not the second
    assert c.runtime.center.waiting[first.engine_call.id].offered == {2}
    answer(h, nxt)
    (connect,) = c.runtime.events(ql.CONNECT)
    assert (connect.agent_id, connect.call_id) == (2, first.engine_call.id)
    assert c.runtime.center.position(second.engine_call.id) == 1
    first.bye()
    second.bye()


@pytest.mark.parametrize(("failure", "reason"), [(503, "unavailable"), (408, "no_answer")])
def test_an_agent_phone_failing_mid_offer_returns_the_caller_to_the_head(failure: int, reason: str) -> None:
    c = center()
    h = c.h
    with h:
        first, second, agent = _two_callers_then_an_agent(c)
        fork = h.invites_to(agent)[-1]
        if failure == 408:
            h.timeout(fork)  # Timer B: the phone went away without a word
        else:
            h.reply(fork, 503)
        _back_at_the_head_and_offered_to_the_next(c, first, second, reason)


def test_an_agent_phone_unregistering_while_rung_returns_the_caller_to_the_head_at_once() -> None:
    c = center()
    h = c.h
    with h:
        first, second, agent = _two_callers_then_an_agent(c)
        rung_at = h.now
        fork = h.invites_to(agent)[-1]
        _unregister_the_only_phone(h, "201")
        assert fork.cancelled is not None  # its INVITE cancelled, without waiting for the ring timeout
        _back_at_the_head_and_offered_to_the_next(c, first, second, "unavailable")
        assert h.now == rung_at  # no timer had to fire


def test_one_of_an_agents_two_phones_unregistering_leaves_the_other_ringing() -> None:
    c = center()
    h = c.h
    with h:
        queue_id = c.queue("500", ring_timeout=15)
        phones = h.extension("201", devices=2)
        key = (TENANT, "201")
        h.directory.extensions[key] = dataclasses.replace(h.directory.extensions[key], employee_id=1)
        c.desk.extensions[1] = ["201"]
        h.run(c._login(1, queue_id))
        call = h.call(h.extension("101"), "500")
        call.ack()
        forks = [h.invites_to(phone)[-1] for phone in phones]
        for fork in forks:
            h.reply(fork, 180)
        gone = next(b for b in h.location.lookup(TENANT, h.directory.extensions[key].extension_id, h.now)
                    if b.contact.endswith(f"{phones[0].peer.host}:{phones[0].peer.port}"))
        h.deliver(h.location.remove, TENANT, gone.extension_id, gone.contact)
        assert forks[0].cancelled is not None and forks[1].cancelled is None
        assert c.runtime.events(ql.RINGNOANSWER) == []  # the offer goes on, on the other phone
        h.reply(forks[0], 487)  # the CANCEL's answer decides nothing
        assert c.runtime.events(ql.RINGNOANSWER) == []
        h.reply(forks[1], 200, device=phones[1])
        (connect,) = c.runtime.events(ql.CONNECT)
        assert connect.agent_id == 1
        call.bye()


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


def test_a_queue_call_is_recorded_from_the_agents_answer(tmp_path: Path) -> None:
    c = center(recordings_dir=tmp_path / "rec")
    h = c.h
    with h:
        caller = h.extension("101")
        queue_id = c.queue("500")
        call = h.call(caller, "500")
        call.ack()
        assert h.media.recordings == {}  # not while the caller waits with music
        agent = c.agent("201", 7, queue_id)
        h.settle()
        answer(h, agent)
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None and engine_call.callee is not None
        ((recording, _, _),) = h.media.recordings.values()
        caller_endpoint, agent_endpoint = engine_call.caller.endpoint, engine_call.callee.endpoint
        assert caller_endpoint is not None and agent_endpoint is not None
        assert recording.endpoint_ids == (caller_endpoint.id, agent_endpoint.id)
        (started,) = h.events_of(ev.RecordingStarted)
        assert started.call_id == engine_call.id and started.path.endswith(f"{engine_call.id}.wav")
        call.bye()
        assert h.media.stopped_recordings == [recording]


def test_a_queue_may_ring_back_instead_of_music_and_announce_over_the_tone() -> None:
    c = center()
    h = c.h
    with h:
        caller = h.extension("101")
        queue_id = c.queue("500", hold_sound=HoldSound.RINGBACK, announce_every=30)
        call = h.call(caller, "500")
        assert call.final_status() == 200
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None
        endpoint = engine_call.caller.endpoint
        assert endpoint is not None and h.media.playing[endpoint.id] == RINGBACK_RU  # the tone, not the music
        h.advance(30)  # the announcement instead of the tone while it plays
        assert h.media.playing[endpoint.id] == Prompt(path=position_prompt(1, "ru"))
        h.deliver(h.media.finish_playing, h.media.endpoints[endpoint.id])
        h.deliver(h.media.finish_playing, h.media.endpoints[endpoint.id])  # (the wait estimate after it)
        assert h.media.playing[endpoint.id] == RINGBACK_RU  # and back to the tone
        agent = c.agent("201", 7, queue_id)
        h.settle()
        answer(h, agent)
        assert endpoint.id not in h.media.playing  # the tone stopped
        (connect,) = c.runtime.events(ql.CONNECT)
        assert connect.agent_id == 7


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


def test_a_numbers_schedule_leads_into_a_queue_in_office_hours_and_elsewhere_after() -> None:
    c = center()
    h = c.h
    with h:
        _, carrier = h.trunk()
        queue_id = c.queue("500")
        agent = c.agent("201", 4, queue_id)
        desk = h.extension("102")
        today = time.gmtime().tm_wday  # the harness's clock is the real one
        for number, days in (("+74951234567", [today]), ("+74951234568", [(today + 3) % 7])):
            # the whole of one weekday into the queue; any other day to extension 102
            h.did(number, "schedule", {"timezone": "UTC", "rules": [
                {"days": days, "from": "00:00", "to": "00:00", "destination": {"kind": "queue", "number": "500"}}],
                "default": {"kind": "extension", "number": "102"}})
        call = h.call_from_trunk(carrier, "+79161234567", "+74951234567")  # today: the queue
        assert call.final_status() == 200
        call.ack()
        (enter,) = c.runtime.events(ql.ENTERQUEUE)
        assert (enter.queue_id, enter.data["number"]) == (queue_id, "+79161234567")
        answer(h, agent)
        (connect,) = c.runtime.events(ql.CONNECT)
        assert connect.agent_id == 4
        call.bye()
        other = h.call_from_trunk(carrier, "+79161234567", "+74951234568")  # not that weekday: 102 rings
        assert h.invites_to(desk)
        assert len(c.runtime.events(ql.ENTERQUEUE)) == 1
        other.cancel()


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


@dataclasses.dataclass
class OneKeyMenu:
    """The menu store of a tenant with one voice menu (id 1) whose one ``key`` leads to ``target``."""

    key: str
    target: Target

    async def menus(self, tenant_id: int) -> tuple[dict[int, MenuSpec], frozenset[str]]:
        return {1: MenuSpec(id=1, prompt="/prompts/main.wav", keys={self.key: self.target})}, frozenset()


def test_an_ivr_key_leads_into_a_queue() -> None:
    c = center()
    h = c.h
    with h:
        h.engine.ivr = Ivr(h.engine, OneKeyMenu("3", Target(kind="queue", payload={"number": "500"})))
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


# -- priority (VIP) ---------------------------------------------------------------------------------
def _connected_call_id(c: Center, agent: list[Device]) -> str:
    answer(c.h, agent)
    (connect,) = c.runtime.events(ql.CONNECT)
    assert connect.call_id is not None
    return connect.call_id


def test_a_vip_caller_by_number_joining_second_is_offered_first() -> None:
    c = center()
    h = c.h
    with h:
        _, carrier = h.trunk()
        queue_id = c.queue("500", vip=(VipNumber("+7495", 5, prefix=True),))
        h.did("+74951234567", "queue", {"number": "500"})
        first = h.call_from_trunk(carrier, "+79161234567", "+74951234567")
        first.ack()
        second = h.call_from_trunk(carrier, "74950001122", "+74951234567")  # the trunk sent no "+"
        second.ack()
        entered = [(e.call_id, e.data["priority"]) for e in c.runtime.events(ql.ENTERQUEUE)]
        assert first.engine_call is not None and second.engine_call is not None
        assert entered == [(first.engine_call.id, 0), (second.engine_call.id, 5)]
        assert c.runtime.center.position(second.engine_call.id) == 1
        agent = c.agent("201", 4, queue_id)
        h.settle()
        assert len(h.invites_to(agent)) == 1
        assert _connected_call_id(c, agent) == second.engine_call.id
        assert first.engine_call.id in c.runtime.center.waiting


def test_an_ivr_key_with_a_priority_puts_its_caller_ahead_and_the_higher_priority_counts() -> None:
    c = center()
    h = c.h
    with h:
        h.engine.ivr = Ivr(h.engine, OneKeyMenu("9", Target(kind="queue", payload={"number": "500", "priority": 7})))
        _, carrier = h.trunk()
        # the queue's own list gives this caller 3: the key's 7 is higher and counts
        queue_id = c.queue("500", vip=(VipNumber("+79169999999", 3),))
        h.did("+74951234567", "queue", {"number": "500"})
        h.did("+74950000009", "ivr", {"menu": 1})
        first = h.call_from_trunk(carrier, "+79161234567", "+74951234567")
        first.ack()
        second = h.call_from_trunk(carrier, "+79169999999", "+74950000009")
        second.ack()
        engine_call = second.engine_call
        assert engine_call is not None and engine_call.caller is not None and engine_call.caller.endpoint is not None
        h.dtmf(engine_call.caller.endpoint, "9")
        entered = [(e.call_id, e.data["priority"]) for e in c.runtime.events(ql.ENTERQUEUE)]
        assert first.engine_call is not None
        assert entered == [(first.engine_call.id, 0), (engine_call.id, 7)]
        agent = c.agent("201", 4, queue_id)
        h.settle()
        assert _connected_call_id(c, agent) == engine_call.id


def test_a_number_whose_queue_destination_has_a_priority() -> None:
    c = center()
    h = c.h
    with h:
        _, carrier = h.trunk()
        c.queue("500")
        h.did("+74951234567", "queue", {"number": "500", "priority": 2})
        call = h.call_from_trunk(carrier, "+79161234567", "+74951234567")
        call.ack()
        (enter,) = c.runtime.events(ql.ENTERQUEUE)
        assert enter.data["priority"] == 2


# -- transfers into a queue ---------------------------------------------------------------------------
def _refer(h: Harness, fork: Any, ok: Any, target: str, uri_headers: str = "") -> None:
    refer = h.request_from(fork, ok, "REFER", headers=[("Refer-To", f"<sip:{target}@acme.test{uri_headers}>")])
    assert [r.status for r in refer.responses] == [202]


def _notifies(h: Harness, to: list[Device]) -> list[bytes]:
    return [t.request.body.split(b"\r\n")[0] for t in h.sent_requests("NOTIFY", to=to)]


def test_an_agent_transfers_its_caller_into_another_queue() -> None:
    c = center()
    h = c.h
    with h:
        _, carrier = h.trunk()
        sales = c.queue("500", wrap_up=30)
        support = c.queue("600")
        first = c.agent("201", 7, sales)
        h.did("+74951234567", "queue", {"number": "500"})
        call = h.call_from_trunk(carrier, "+79161234567", "+74951234567")
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None
        endpoint = engine_call.caller.endpoint
        assert endpoint is not None
        fork = h.invites_to(first)[-1]
        h.reply(fork, 180)
        ok = h.reply(fork, 200, device=first[0])
        h.advance(40)  # 40 s of talk
        _refer(h, fork, ok, "600")
        assert _notifies(h, first) == [b"SIP/2.0 100 Trying", b"SIP/2.0 200 OK"]
        assert len(h.sent_requests("BYE", to=first)) == 1  # the agent leaves the call
        (transfer,) = c.runtime.events(ql.TRANSFER)
        assert (transfer.queue_id, transfer.call_id, transfer.agent_id) == (sales, engine_call.id, 7)
        assert (transfer.data["target"], transfer.data["talk"]) == ("600", 40)
        assert c.runtime.center.agents[7].status.value == "wrap_up"
        # the caller waits in the second queue, with music, as a caller of its number would
        assert h.media.playing[endpoint.id] == MUSIC
        enters = [(e.queue_id, e.data["number"]) for e in c.runtime.events(ql.ENTERQUEUE)]
        assert enters == [(sales, "+79161234567"), (support, "+79161234567")]
        (moved,) = h.events_of(ev.CallTransferred)
        assert (moved.kind, moved.to.number) == (ev.TransferKind.BLIND, "600")
        second = c.agent("202", 8, support)
        h.settle()
        answer(h, second)
        connects = [(e.queue_id, e.agent_id) for e in c.runtime.events(ql.CONNECT)]
        assert connects == [(sales, 7), (support, 8)]
        callee = engine_call.callee
        assert callee is not None and callee.endpoint is not None and callee.party.number == "202"
        assert h.media.bridges[-1] == (endpoint.id, callee.endpoint.id)
        call.bye()  # the caller hangs up: the second queue's call completes, no second TRANSFER
        (complete,) = c.runtime.events(ql.COMPLETEAGENT, ql.COMPLETECALLER)
        assert (complete.event, complete.queue_id, complete.agent_id) == (ql.COMPLETECALLER, support, 8)
        assert len(c.runtime.events(ql.TRANSFER)) == 1
        assert not h.engine.calls and h.media.in_use == 0


def test_the_caller_transfers_the_extension_it_called_into_a_queue() -> None:
    """An extension's REFER to a queue's number (the caller's, here): the transferee takes the caller's place
    and waits; its hanging up is an abandon. A number that is neither an extension, a park slot nor a queue is
    still 404."""
    c = center()
    h = c.h
    with h:
        alice, bob = h.extension("101"), h.extension("102")
        queue_id = c.queue("500")
        call = h.call(alice, "102")
        fork = h.invites_to(bob)[0]
        ok = h.reply(fork, 200)
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None
        nowhere = _refer_from_caller(h, call, "599")
        assert nowhere.responses[-1].status == 202 and _notifies(h, alice)[-1] == b"SIP/2.0 404 Not Found"
        assert not engine_call.ended
        _refer_from_caller(h, call, "500")
        assert _notifies(h, alice)[-1] == b"SIP/2.0 200 OK"
        assert len(h.sent_requests("BYE", to=alice)) == 1
        bob_leg = engine_call.caller
        assert bob_leg is not None and bob_leg.party.number == "102" and bob_leg.endpoint is not None
        assert engine_call.callee is None and h.media.playing[bob_leg.endpoint.id] == MUSIC
        (enter,) = c.runtime.events(ql.ENTERQUEUE)
        assert (enter.queue_id, enter.call_id, enter.data["number"]) == (queue_id, engine_call.id, "102")
        assert c.runtime.events(ql.TRANSFER) == []  # no queue call was transferred
        h.advance(3)
        h.request_from(fork, ok, "BYE")  # bob hangs up in line
        (abandon,) = c.runtime.events(ql.ABANDON)
        assert (abandon.call_id, abandon.data["wait"]) == (engine_call.id, 3)
        assert not h.engine.calls and h.media.in_use == 0


def test_a_caller_the_agent_held_before_transferring_it_into_a_queue_is_resumed() -> None:
    """Desk phones hold the call before their REFER: the caller's phone, told it is held, is told it is not
    (it may press the callback key, and the next agent is heard without a re-INVITE of its own)."""
    from zvonok.sip.sdp import Direction

    c = center()
    h = c.h
    with h:
        caller = h.extension("101")
        sales, support = c.queue("500"), c.queue("600")
        agent = c.agent("201", 7, sales)
        call, fork, ok = _agent_answers(h, caller, "500", agent)
        h.request_from(fork, ok, "INVITE", body=h.offer(agent[0], Direction.SENDONLY))  # the agent holds
        (hold,) = [t for t in h.sent_requests("INVITE", to=caller) if t.request.to.tag]
        assert b"a=sendonly" in hold.request.body
        h.reply(hold, 200)
        _refer(h, fork, ok, "600")
        offers = [t for t in h.sent_requests("INVITE", to=caller) if t.request.to.tag]
        assert len(offers) == 2 and b"a=sendrecv" in offers[-1].request.body
        h.reply(offers[-1], 200)
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None and engine_call.caller.endpoint is not None
        assert h.media.playing[engine_call.caller.endpoint.id] == MUSIC  # the queue's music, not the hold's end
        assert [e.queue_id for e in c.runtime.events(ql.ENTERQUEUE)] == [sales, support]


def test_an_agent_transferring_its_caller_to_an_extension_writes_transfer_and_wraps_up() -> None:
    c = center()
    h = c.h
    with h:
        caller, boss = h.extension("101"), h.extension("301")
        queue_id = c.queue("500", wrap_up=30)
        agent = c.agent("201", 7, queue_id)
        call, fork, ok = _agent_answers(h, caller, "500", agent)
        h.advance(10)
        _refer(h, fork, ok, "301")
        answer(h, boss)
        assert _notifies(h, agent)[-1] == b"SIP/2.0 200 OK"
        (transfer,) = c.runtime.events(ql.TRANSFER)
        assert (transfer.queue_id, transfer.agent_id, transfer.data["target"], transfer.data["talk"]) == (
            queue_id, 7, "301", 10)
        assert c.runtime.center.agents[7].status.value == "wrap_up"  # not on the call it has left
        call.bye()  # the caller and the boss finish: the queue's part was over already
        assert c.runtime.events(ql.COMPLETEAGENT, ql.COMPLETECALLER) == []


def test_an_agent_completing_an_attended_transfer_writes_transfer() -> None:
    c = center()
    h = c.h
    with h:
        caller, boss = h.extension("101"), h.extension("301")
        queue_id = c.queue("500", wrap_up=30)
        agent = c.agent("201", 7, queue_id)
        call, fork, ok = _agent_answers(h, caller, "500", agent)
        consult = h.call(agent, "301")  # the agent asks the boss first (the caller on hold meanwhile)
        h.reply(h.invites_to(boss)[0], 200)
        consult.ack()
        call_id, agent_tag, our_tag = consult._confirmed().key
        replaces = f"{call_id}%3Bto-tag%3D{our_tag}%3Bfrom-tag%3D{agent_tag}"
        _refer(h, fork, ok, "301", f"?Replaces={replaces}")
        assert _notifies(h, agent)[-1] == b"SIP/2.0 200 OK"
        (transfer,) = c.runtime.events(ql.TRANSFER)
        assert (transfer.queue_id, transfer.agent_id, transfer.data["target"]) == (queue_id, 7, "301")
        assert c.runtime.center.agents[7].status.value == "wrap_up"
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.callee is not None
        assert engine_call.callee.party.number == "301"  # the caller talks to the boss


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


def _callback_ringing_agent(c: Center, carrier: Any) -> tuple[str, int, list[Device]]:
    """A callback request in line, then agent 4 (extension 201) logs in: its phone rings for the callback
    (180): (the request, the queue, the phone)."""
    h = c.h
    queue_id = c.queue("500", callback_key="1", ring_timeout=15, retry=60, wrap_up=0)
    request = _request_callback(c, carrier, queue_id)
    agent = c.agent("201", 4, queue_id)
    h.settle()
    h.reply(h.invites_to(agent)[-1], 180)
    assert c.runtime.center.waiting[request].offered == {4}
    return request, queue_id, agent


def test_an_agent_phone_unregistering_while_a_callback_rings_it_offers_the_callback_on_at_once() -> None:
    """As for a caller in line: the phone gone will not answer, so the callback offer fails now (the request
    keeps its place and goes to the next agent), not at the center's ring timeout."""
    c, carrier = _callback_center()
    h = c.h
    with h:
        request, queue_id, agent = _callback_ringing_agent(c, carrier)
        rung_at = h.now
        fork = h.invites_to(agent)[-1]
        _unregister_the_only_phone(h, "201")
        assert fork.cancelled is not None  # its INVITE cancelled, without waiting for the ring timeout
        (missed,) = c.runtime.events(ql.RINGNOANSWER)
        assert (missed.call_id, missed.agent_id, missed.data["reason"]) == (request, 4, "unavailable")
        assert c.runtime.center.waiting[request].offered == set() and not c.runtime.events(ql.CALLBACKFAILED)
        (failed,) = h.events_of(ev.OriginateFailed)
        assert failed.reason == "employee_unavailable"
        outgoing = len(h.invites_to(carrier))
        nxt = c.agent("202", 5, queue_id)  # the next agent gets the callback
        h.settle()
        assert c.runtime.center.waiting[request].offered == {5}
        answer(h, nxt)
        assert len(h.invites_to(carrier)) == outgoing + 1  # the customer is called for agent 5
        h.reply(h.invites_to(carrier)[-1], 200)
        (connect,) = c.runtime.events(ql.CONNECT)
        assert (connect.call_id, connect.agent_id, connect.data["callback"]) == (request, 5, True)
        assert h.now == rung_at  # no timer had to fire
        h.reply(fork, 487)  # the gone phone's late answer to our CANCEL changes nothing
        assert len(c.runtime.events(ql.RINGNOANSWER)) == 1


def test_a_callback_ringing_an_agents_two_phones_fails_only_when_both_are_gone() -> None:
    c, carrier = _callback_center()
    h = c.h
    with h:
        queue_id = c.queue("500", callback_key="1", ring_timeout=15, retry=60)
        request = _request_callback(c, carrier, queue_id)
        phones = h.extension("201", devices=2)
        key = (TENANT, "201")
        h.directory.extensions[key] = dataclasses.replace(h.directory.extensions[key], employee_id=4)
        c.desk.extensions[4] = ["201"]
        h.run(c._login(4, queue_id))
        h.settle()
        forks = [h.invites_to(phone)[-1] for phone in phones]
        for fork in forks:
            h.reply(fork, 180)
        rung_at = h.now

        def unregister(phone: Device) -> None:
            gone = next(b for b in h.location.lookup(TENANT, h.directory.extensions[key].extension_id, h.now)
                        if b.contact.endswith(f"{phone.peer.host}:{phone.peer.port}"))
            h.deliver(h.location.remove, TENANT, gone.extension_id, gone.contact)

        unregister(phones[0])
        assert forks[0].cancelled is not None and forks[1].cancelled is None
        assert c.runtime.events(ql.RINGNOANSWER) == []  # the offer goes on, on the other phone
        unregister(phones[1])  # the first one's CANCEL still unanswered: neither rings any more
        assert forks[1].cancelled is not None
        (missed,) = c.runtime.events(ql.RINGNOANSWER)
        assert (missed.call_id, missed.agent_id, missed.data["reason"]) == (request, 4, "unavailable")
        assert request in c.runtime.center.waiting and not c.runtime.events(ql.CALLBACKFAILED)
        assert h.now == rung_at


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


def test_max_wait_overflow_to_a_voice_menu_plays_it() -> None:
    c = center()
    h = c.h
    with h:
        h.engine.ivr = Ivr(h.engine, OneKeyMenu("1", Target(kind="extension", payload={"number": "301"})))
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
