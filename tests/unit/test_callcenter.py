"""The contact center's sans-I/O core: strategies, skills and relaxation, offers, wrap-up, overflow,
callbacks, the queue log and the KPIs computed from it — on a hand-stepped clock."""

from __future__ import annotations

import random
from typing import Any

import pytest

from zvonok.callcenter import log as ql
from zvonok.callcenter.agents import AgentError, AgentStatus
from zvonok.callcenter.center import (
    Announce,
    CallbackRequest,
    Caller,
    CancelOffer,
    CenterError,
    ContactCenter,
    Offer,
    Overflow,
)
from zvonok.callcenter.kpi import agent_kpis, queue_kpis
from zvonok.callcenter.log import QueueLogEntry
from zvonok.callcenter.queues import QueueConfig, Relaxation, SkillRequirement, Strategy, VipNumber

S = AgentStatus


def center(**queue: Any) -> ContactCenter:
    cc = ContactCenter(rng=random.Random(7))
    cc.set_queue(QueueConfig(id=1, tenant_id=1, **queue), 0.0)
    return cc


def offers(cc: ContactCenter) -> list[tuple[str, int]]:
    return [(a.call_id, a.agent_id) for a in cc.take_actions() if isinstance(a, Offer)]


def events(log: list[QueueLogEntry], *names: str) -> list[QueueLogEntry]:
    return [e for e in log if e.event in names]


def login(cc: ContactCenter, *agents: int, at: float = 0.0, queues: tuple[int, ...] = (1,),
          skills: dict[str, int] | None = None) -> None:
    for n, agent in enumerate(agents):
        cc.login(agent, queues, at + n, skills=skills)


def answer_and_end(cc: ContactCenter, call: str, agent: int, answered: float, ended: float) -> None:
    assert cc.offer_answered(call, agent, answered)
    cc.call_ended(call, ended, by_agent=True)


# -- strategies -----------------------------------------------------------------------------------------
def test_longest_idle_agent_gets_the_call() -> None:
    cc = center(strategy=Strategy.LONGEST_IDLE)
    login(cc, 3, 1, 2)  # idle since 0, 1, 2
    cc.join("c1", 1, 10.0)
    assert offers(cc) == [("c1", 3)]
    assert cc.agents[3].status is S.RINGING and cc.agents[1].status is S.AVAILABLE


def test_round_robin_remembers_the_last_agent_offered() -> None:
    cc = center(strategy=Strategy.ROUND_ROBIN, wrap_up=0)
    login(cc, 30, 10, 20)
    got = []
    for n in range(5):
        call = f"c{n}"
        cc.join(call, 1, 10.0 + n)
        [(_, agent)] = offers(cc)
        got.append(agent)
        answer_and_end(cc, call, agent, 10.5 + n, 10.6 + n)
    assert got == [10, 20, 30, 10, 20]


def test_fewest_calls_and_least_talk_time() -> None:
    cc = center(strategy=Strategy.FEWEST_CALLS, wrap_up=0)
    login(cc, 1, 2)
    cc.join("a", 1, 10.0)
    assert offers(cc) == [("a", 1)]
    answer_and_end(cc, "a", 1, 11.0, 100.0)  # agent 1: one call, long
    cc.join("b", 1, 101.0)
    assert offers(cc) == [("b", 2)]
    answer_and_end(cc, "b", 2, 102.0, 103.0)  # agent 2: one call, short
    cc.set_queue(QueueConfig(id=1, tenant_id=1, strategy=Strategy.LEAST_TALK_TIME, wrap_up=0), 104.0)
    cc.join("c", 1, 105.0)
    assert offers(cc) == [("c", 2)]


def test_random_strategy_spreads_calls_over_every_agent() -> None:
    cc = center(strategy=Strategy.RANDOM, wrap_up=0)
    login(cc, 1, 2, 3)
    seen = set()
    for n in range(40):
        cc.join(f"c{n}", 1, 10.0 + n)
        [(_, agent)] = offers(cc)
        seen.add(agent)
        answer_and_end(cc, f"c{n}", agent, 10.1 + n, 10.2 + n)
    assert seen == {1, 2, 3}


def test_ring_all_rings_everyone_and_the_first_answer_takes_the_call() -> None:
    cc = center(strategy=Strategy.RING_ALL)
    login(cc, 1, 2, 3)
    cc.join("c1", 1, 10.0)
    assert sorted(offers(cc)) == [("c1", 1), ("c1", 2), ("c1", 3)]
    assert cc.offer_answered("c1", 2, 12.0)
    actions = cc.take_actions()
    assert sorted((a.call_id, a.agent_id) for a in actions if isinstance(a, CancelOffer)) == [("c1", 1), ("c1", 3)]
    assert [cc.agents[n].status for n in (1, 2, 3)] == [S.AVAILABLE, S.ON_CALL, S.AVAILABLE]
    assert not cc.offer_answered("c1", 3, 12.1)  # a late answer: the engine hangs that leg up
    [connect] = events(cc.take_log(), ql.CONNECT)
    assert (connect.agent_id, connect.data["hold"], connect.data["ring"]) == (2, 2.0, 2.0)


# -- skills --------------------------------------------------------------------------------------------
def test_skills_pick_the_agent_and_relax_with_the_wait() -> None:
    cc = center(strategy=Strategy.LONGEST_IDLE, requirements=(SkillRequirement("english", 5),),
                relaxations=(Relaxation(after=30, min_level=3), Relaxation(after=60, min_level=0)))
    cc.login(1, [1], 0.0, skills={"english": 3})
    cc.login(2, [1], 1.0, skills={"english": 7})
    cc.login(3, [1], 2.0, skills={})
    cc.join("a", 1, 10.0)
    assert offers(cc) == [("a", 2)]  # agent 1 idles longer but knows too little English
    assert cc.offer_answered("a", 2, 11.0)
    cc.join("b", 1, 11.0)
    assert offers(cc) == [] and cc.next_deadline() == 41.0  # agent 1 is good enough after 30 s
    cc.handle_timer(41.0)
    assert offers(cc) == [("b", 1)]
    assert cc.offer_answered("b", 1, 42.0)
    cc.join("c", 1, 50.0)
    assert offers(cc) == [] and cc.next_deadline() == 80.0
    cc.handle_timer(80.0)  # level 3 is still more than agent 3 has
    assert offers(cc) == [] and cc.next_deadline() == 110.0
    cc.handle_timer(110.0)  # after 60 s any agent of the queue will do
    assert offers(cc) == [("c", 3)]


def test_skills_strategy_prefers_the_most_proficient() -> None:
    cc = center(strategy=Strategy.SKILLS, requirements=(SkillRequirement("sales", 1), SkillRequirement("ru", 1)))
    cc.login(1, [1], 0.0, skills={"sales": 4, "ru": 4})
    cc.login(2, [1], 1.0, skills={"sales": 9, "ru": 5})
    cc.login(3, [1], 2.0, skills={"sales": 10})  # lacks "ru": never offered
    cc.join("a", 1, 10.0)
    cc.join("b", 1, 11.0)
    assert offers(cc) == [("a", 2), ("b", 1)]


# -- the order of the line ---------------------------------------------------------------------------
def test_a_vip_is_offered_first_and_positions_follow_priority() -> None:
    cc = center()
    cc.join("a", 1, 1.0)
    cc.join("b", 1, 2.0)
    cc.join("vip", 1, 3.0, priority=5)
    assert [cc.position(c) for c in ("vip", "a", "b")] == [1, 2, 3]
    [enter] = [e for e in events(cc.take_log(), ql.ENTERQUEUE) if e.call_id == "vip"]
    assert enter.data == {"number": "", "position": 1, "priority": 5}
    login(cc, 1, at=4.0)
    assert offers(cc) == [("vip", 1)]


def test_the_queues_vip_list_gives_a_callers_number_its_priority_and_the_higher_counts() -> None:
    """Matched on the number as E.164 or its digits (a trunk that sent no "+"); the highest matching rule wins;
    a priority the way in asked (an IVR key's) counts when it is higher."""
    vip = (VipNumber("+74951234567", 5), VipNumber("+7495", 2, prefix=True), VipNumber("101", 3))
    config = QueueConfig(id=1, tenant_id=1, vip=vip)
    assert [config.vip_priority(n) for n in ("+74951234567", "74951234567", "+74959999999", "74959999999",
                                             "+79161234567", "101", "1011", "", "+749")] == [5, 5, 2, 2, 0, 3, 0, 0, 0]
    cc = center(vip=vip)
    cc.join("plain", 1, 1.0, number="+79161234567")
    cc.join("moscow", 1, 2.0, number="74950000000")
    cc.join("ivr", 1, 3.0, number="+79160000000", priority=4)
    cc.join("boss", 1, 4.0, number="+74951234567", priority=1)
    assert [cc.position(c) for c in ("boss", "ivr", "moscow", "plain")] == [1, 2, 3, 4]
    entered = {e.call_id: e.data["priority"] for e in events(cc.take_log(), ql.ENTERQUEUE)}
    assert entered == {"plain": 0, "moscow": 2, "ivr": 4, "boss": 5}
    login(cc, 1, at=5.0)
    assert offers(cc) == [("boss", 1)]


def test_a_heavier_queue_is_served_first_by_agents_in_both() -> None:
    cc = ContactCenter()
    cc.set_queue(QueueConfig(id=1, tenant_id=1), 0.0)
    cc.set_queue(QueueConfig(id=2, tenant_id=1, weight=10), 0.0)
    cc.join("light", 1, 1.0)
    cc.join("heavy", 2, 2.0)
    cc.login(7, [1, 2], 3.0)
    assert offers(cc) == [("heavy", 7)]


# -- offers that fail ------------------------------------------------------------------------------------
def test_an_unanswered_offer_keeps_the_callers_place_and_rests_the_agent() -> None:
    cc = center(ring_timeout=15, retry=5, max_no_answer=2)
    login(cc, 1, 2)
    cc.join("a", 1, 10.0)
    assert offers(cc) == [("a", 1)]
    cc.join("b", 1, 11.0)
    assert offers(cc) == [("b", 2)]
    assert cc.next_deadline() == 25.0
    cc.handle_timer(25.0)  # agent 1 did not answer within 15 s
    actions = cc.take_actions()
    assert [a for a in actions if isinstance(a, CancelOffer)] == [CancelOffer(call_id="a", agent_id=1)]
    assert cc.position("a") == 1 and cc.agents[1].status is S.AVAILABLE and cc.agents[1].rest_until == 30.0
    [miss] = events(cc.take_log(), ql.RINGNOANSWER)
    assert (miss.call_id, miss.agent_id, miss.data) == ("a", 1, {"ring": 15.0, "reason": "no_answer"})
    cc.handle_timer(30.0)  # the agent's rest is over: the head of the line again
    assert offers(cc) == [("a", 1)]
    cc.offer_failed("a", 1, 31.0, reason="busy")  # a second miss in a row: not ready
    assert cc.agents[1].status is S.NOT_READY and cc.agents[1].reason == "missed"
    assert [e.data for e in events(cc.take_log(), ql.PAUSE)] == [{"reason": "missed"}]
    cc.unpause(1, 40.0)
    assert offers(cc) == [("a", 1)]


def test_a_phone_that_goes_away_mid_offer_returns_the_caller_to_the_head() -> None:
    cc = center()
    login(cc, 1)
    cc.join("first", 1, 1.0)
    cc.join("second", 1, 2.0)
    assert offers(cc) == [("first", 1)]
    cc.login(2, [1], 3.0)
    assert offers(cc) == [("second", 2)]
    cc.offer_failed("first", 1, 4.0, reason="unavailable")
    assert cc.position("first") == 1 and cc.waiting["first"].offered == set()
    cc.login(3, [1], 5.0)
    assert offers(cc) == [("first", 3)]


def test_a_caller_who_hangs_up_is_an_abandon_and_stops_the_ringing() -> None:
    cc = center()
    cc.join("a", 1, 1.0)
    cc.join("b", 1, 2.0)
    login(cc, 1, at=3.0)
    assert offers(cc) == [("a", 1)]
    cc.caller_left("b", 9.0)
    cc.caller_left("a", 10.0)
    assert [a for a in cc.take_actions() if isinstance(a, CancelOffer)] == [CancelOffer(call_id="a", agent_id=1)]
    assert [(e.call_id, e.data) for e in events(cc.take_log(), ql.ABANDON)] == [
        ("b", {"position": 2, "original_position": 2, "wait": 7.0}),
        ("a", {"position": 1, "original_position": 1, "wait": 9.0})]
    assert cc.agents[1].status is S.AVAILABLE and not cc.waiting


# -- after the call ---------------------------------------------------------------------------------------
def test_wrap_up_holds_the_next_offer_and_a_pause_waits_for_its_end() -> None:
    cc = center(wrap_up=20)
    login(cc, 1)
    cc.join("a", 1, 1.0)
    cc.join("b", 1, 2.0)
    assert offers(cc) == [("a", 1)]
    answer_and_end(cc, "a", 1, 3.0, 63.0)
    assert cc.agents[1].status is S.WRAP_UP and offers(cc) == [] and cc.next_deadline() == 83.0
    cc.handle_timer(83.0)
    assert offers(cc) == [("b", 1)]
    assert cc.offer_answered("b", 1, 84.0)
    cc.pause(1, "lunch", 90.0)  # during the call: taken after it and its wrap-up
    assert cc.agents[1].status is S.ON_CALL
    cc.caller_left("b", 100.0)
    cc.handle_timer(120.0)
    assert cc.agents[1].status is S.NOT_READY and cc.agents[1].reason == "lunch"
    log = cc.take_log()
    assert [(e.event, e.call_id) for e in events(log, ql.COMPLETEAGENT, ql.COMPLETECALLER)] == [
        (ql.COMPLETEAGENT, "a"), (ql.COMPLETECALLER, "b")]
    assert events(log, ql.COMPLETEAGENT)[0].data == {"hold": 2.0, "talk": 60.0, "original_position": 1}


def test_an_agent_on_another_call_is_not_offered_queue_calls() -> None:
    cc = center()
    login(cc, 1)
    cc.set_busy_elsewhere(1, True, 1.0)
    cc.join("a", 1, 2.0)
    assert offers(cc) == []
    assert cc.snapshot(1, 3.0).agents == {"busy": 1}
    cc.set_busy_elsewhere(1, False, 4.0)
    assert offers(cc) == [("a", 1)]


def test_an_agent_found_busy_while_offered_is_withdrawn_without_a_miss() -> None:
    cc = center(strategy=Strategy.LONGEST_IDLE)
    login(cc, 1, 2)
    cc.join("a", 1, 5.0)
    assert offers(cc) == [("a", 1)]
    cc.take_log()
    cc.set_busy_elsewhere(1, True, 6.0)  # the engine found agent 1 on another call before ringing it
    actions = cc.take_actions()
    assert [(type(a).__name__, a.agent_id) for a in actions] == [("CancelOffer", 1), ("Offer", 2)]
    (missed,) = events(cc.take_log(), ql.RINGNOANSWER)
    assert (missed.agent_id, missed.data["reason"]) == (1, "busy")
    agent = cc.agents[1]
    assert (agent.status, agent.missed, agent.rest_until, agent.offer) == (S.AVAILABLE, 0, 0.0, None)
    assert cc.snapshot(1, 7.0).agents == {"busy": 1, "ringing": 1}


# -- limits and overflow ----------------------------------------------------------------------------------
def test_full_empty_and_timed_out_callers_go_to_the_overflow_destination() -> None:
    cc = center(max_waiting=1, max_wait=60, join_empty=True, overflow={"kind": "voicemail", "number": "100"})
    assert cc.join("a", 1, 0.0)
    assert not cc.join("b", 1, 1.0)  # full
    assert cc.take_actions() == [Overflow(call_id="b", queue_id=1, reason="full",
                                          destination={"kind": "voicemail", "number": "100"})]
    assert cc.next_deadline() == 60.0
    cc.handle_timer(60.0)
    assert [a.reason for a in cc.take_actions() if isinstance(a, Overflow)] == ["timeout"]
    log = cc.take_log()
    assert [e.event for e in log] == [ql.ENTERQUEUE, ql.FULL, ql.EXITWITHTIMEOUT]
    assert log[2].data == {"position": 1, "original_position": 1, "wait": 60.0}

    cc.set_queue(QueueConfig(id=1, tenant_id=1, join_empty=False, leave_empty=True), 61.0)
    assert not cc.join("c", 1, 62.0)  # nobody logged in
    assert [e.event for e in cc.take_log()] == [ql.JOINEMPTY]
    cc.login(1, [1], 63.0)
    cc.pause(1, "meeting", 63.5)
    assert cc.join("d", 1, 64.0)
    cc.logout(1, None, 70.0)  # the last agent leaves: callers in line overflow
    assert [a.reason for a in cc.take_actions() if isinstance(a, Overflow)] == ["empty", "empty"]
    assert [e.event for e in events(cc.take_log(), ql.EXITEMPTY)] == [ql.EXITEMPTY]
    assert cc.agents[1].status is S.OFFLINE


def test_a_callback_request_keeps_its_place_and_rings_the_agent_first() -> None:
    cc = center(max_wait=300, announce_every=30)
    cc.join("a", 1, 0.0, number="+74951234567")
    cc.join("b", 1, 1.0)
    cc.request_callback("a", 5.0)
    cc.caller_left("a", 6.0)  # the live call ends: nothing is abandoned
    assert cc.position("a") == 1 and cc.snapshot(1, 6.0).callbacks == 1
    assert cc.callbacks(1, 6.0) == [CallbackRequest(call_id="a", queue_id=1, number="+74951234567", position=1,
                                                    waiting=6.0, attempts=0, retry_in=0.0, ringing=False)]
    cc.handle_timer(301.0)  # max wait: only the live caller times out
    assert [a.call_id for a in cc.take_actions() if isinstance(a, Overflow)] == ["b"]
    cc.login(1, [1], 400.0)
    assert [a for a in cc.take_actions() if isinstance(a, Offer)] == [
        Offer(call_id="a", queue_id=1, agent_id=1, number="+74951234567", callback=True)]
    assert [e.event for e in cc.take_log() if e.call_id == "a"] == [ql.ENTERQUEUE, ql.CALLBACK]


def test_a_callback_connects_when_the_customer_answers_and_wraps_up_as_a_call() -> None:
    cc = center(wrap_up=10)
    cc.join("a", 1, 0.0, number="+74951234567")
    cc.request_callback("a", 2.0)
    cc.login(1, [1], 10.0)
    assert offers(cc) == [("a", 1)]
    assert cc.offer_answered("a", 1, 14.0)  # the agent's phone answered: the customer is dialed now
    assert cc.agents[1].status is S.ON_CALL and "a" not in cc.waiting
    assert not events(cc.take_log(), ql.CONNECT)  # not connected before the customer answers
    cc.callback_answered("a", 20.0)
    connect = events(cc.take_log(), ql.CONNECT)
    assert [(e.agent_id, e.data["hold"], e.data["ring"], e.data["callback"], e.data["attempt"])
            for e in connect] == [(1, 20.0, 4.0, True, 1)]
    cc.call_ended("a", 80.0, by_agent=False)
    assert cc.agents[1].status is S.WRAP_UP
    done = events(cc.take_log(), ql.COMPLETECALLER)
    assert [(e.data["talk"], e.data["hold"]) for e in done] == [(60.0, 20.0)]


def test_the_caller_an_agent_is_offered_then_talks_to() -> None:
    """The agent's panel: the caller while the phone rings, while they talk, none once the call is over."""
    cc = center(wrap_up=10)
    login(cc, 1)
    assert cc.caller(1) is None and cc.caller(2) is None
    cc.join("a", 1, 1.0, number="+74951234567")
    assert cc.caller(1) == Caller(call_id="a", queue_id=1, number="+74951234567", callback=False)
    assert cc.offer_answered("a", 1, 3.0)
    assert cc.caller(1) == Caller(call_id="a", queue_id=1, number="+74951234567", callback=False)
    cc.call_ended("a", 9.0, by_agent=False)
    assert cc.agents[1].status is S.WRAP_UP and cc.caller(1) is None
    # a callback: its customer while the agent's phone rings and while the customer is dialed
    cc.join("b", 1, 10.0, number="+74957654321")
    cc.request_callback("b", 11.0)
    cc.handle_timer(19.0)
    assert cc.caller(1) == Caller(call_id="b", queue_id=1, number="+74957654321", callback=True)
    assert cc.offer_answered("b", 1, 20.0)
    assert cc.caller(1) == Caller(call_id="b", queue_id=1, number="+74957654321", callback=True)
    cc.callback_answered("b", 25.0)
    assert cc.caller(1) == Caller(call_id="b", queue_id=1, number="+74957654321", callback=False)


def test_a_failed_callback_keeps_its_place_and_is_retried_after_the_delay() -> None:
    cc = center(wrap_up=0, callback_attempts=3, callback_retry=60)
    cc.join("a", 1, 0.0, number="+74951234567")
    cc.request_callback("a", 1.0)
    cc.join("b", 1, 2.0, number="+74957654321")  # joined after the request: served after it
    cc.login(1, [1], 10.0)
    assert offers(cc) == [("a", 1)]
    assert cc.offer_answered("a", 1, 12.0)
    cc.callback_failed("a", 30.0, reason="no_answer")
    failed = events(cc.take_log(), ql.CALLBACKFAILED)
    assert [(e.agent_id, e.data["attempt"], e.data["reason"], e.data["retry_in"]) for e in failed] == [
        (1, 1, "no_answer", 60.0)]
    assert cc.position("a") == 1 and cc.position("b") == 2  # still first in line ...
    assert offers(cc) == [("b", 1)]  # ... but not offered before its retry: the live caller meanwhile
    assert cc.next_deadline() == 30.0 + 15.0  # b's ring timeout first
    assert cc.offer_answered("b", 1, 31.0)
    cc.call_ended("b", 40.0, by_agent=True)
    assert offers(cc) == []  # a's next attempt is at 90
    assert cc.next_deadline() == 90.0
    cc.handle_timer(90.0)
    assert offers(cc) == [("a", 1)]


def test_a_callback_is_given_up_after_its_attempts() -> None:
    cc = center(wrap_up=0, callback_attempts=2, callback_retry=5)
    cc.join("a", 1, 0.0, number="+74951234567")
    cc.request_callback("a", 1.0)
    cc.login(1, [1], 2.0)
    for at in (2.0, 10.0):
        if at > 2.0:
            cc.handle_timer(at)
        assert offers(cc) == [("a", 1)]
        assert cc.offer_answered("a", 1, at + 1)
        cc.callback_failed("a", at + 2, reason="busy")
    assert "a" not in cc.waiting and "a" not in cc.in_call
    failed = events(cc.take_log(), ql.CALLBACKFAILED)
    assert [e.data.get("final", False) for e in failed] == [False, True]
    assert cc.agents[1].status is S.AVAILABLE and cc.next_deadline() is None


def test_an_agent_who_misses_a_callback_offer_leaves_it_in_line() -> None:
    cc = center(wrap_up=0, ring_timeout=15, retry=5)
    cc.join("a", 1, 0.0, number="+74951234567")
    cc.request_callback("a", 1.0)
    cc.login(1, [1], 2.0)
    cc.login(2, [1], 3.0)
    assert offers(cc) == [("a", 1)]
    cc.offer_failed("a", 1, 5.0, reason="no_answer")
    assert offers(cc) == [("a", 2)] and cc.waiting["a"].attempts == 0
    assert [e.agent_id for e in events(cc.take_log(), ql.RINGNOANSWER)] == [1]


def test_an_agent_hanging_up_before_the_customer_answers_is_no_attempt() -> None:
    cc = center(wrap_up=0, callback_attempts=1)
    cc.join("a", 1, 0.0, number="+74951234567")
    cc.request_callback("a", 1.0)
    cc.login(1, [1], 2.0)
    cc.login(2, [1], 3.0)
    offers(cc)
    assert cc.offer_answered("a", 1, 4.0)
    cc.call_ended("a", 6.0, by_agent=True)
    assert cc.waiting["a"].attempts == 0
    assert [e.data["reason"] for e in events(cc.take_log(), ql.CALLBACKFAILED)] == ["agent_hung_up"]
    assert offers(cc) == [("a", 2)]  # agent 2 was idle longer
    cc.callback_failed("a", 8.0, reason="not_allowed", agent_id=2, final=True)  # refused before dialing
    assert "a" not in cc.waiting and cc.agents[2].status is S.AVAILABLE
    assert [e.data["final"] for e in events(cc.take_log(), ql.CALLBACKFAILED)] == [True]


def test_announcements_tell_the_position_and_a_wait_estimate() -> None:
    cc = center(announce_every=30, wrap_up=30)
    cc.login(1, [1], 0.0)
    cc.join("x", 1, 0.0)
    answer_and_end(cc, "x", 1, 0.0, 90.0)  # one handled call: 90 s talk + 30 s wrap-up
    cc.pause(1, "away", 91.0)
    cc.handle_timer(120.0)
    cc.unpause(1, 121.0)
    cc.pause(1, "away", 122.0)
    cc.take_actions()
    cc.join("a", 1, 130.0)
    cc.join("b", 1, 131.0)
    cc.handle_timer(160.0)
    cc.handle_timer(161.0)
    announced = [a for a in cc.take_actions() if isinstance(a, Announce)]
    # position x average handle (120 s) / one agent not paused... none working: counted as one
    assert announced == [Announce(call_id="a", position=1, wait_estimate=120),
                         Announce(call_id="b", position=2, wait_estimate=240)]


# -- misuse --------------------------------------------------------------------------------------------
def test_misuse_is_refused() -> None:
    cc = center()
    with pytest.raises(CenterError):
        cc.join("a", 99, 0.0)
    cc.join("a", 1, 0.0)
    with pytest.raises(CenterError):
        cc.join("a", 1, 1.0)
    with pytest.raises(AgentError):
        cc.pause(5, "lunch", 1.0)  # never logged in
    cc.login(5, [1], 2.0)
    cc.logout(5, None, 3.0)
    with pytest.raises(AgentError):
        cc.pause(5, "lunch", 4.0)  # logged out


# -- the KPIs, exactly, on a scripted day -------------------------------------------------------------------
def test_kpis_of_a_scripted_scenario() -> None:
    """Two agents, five callers: three answered (waits 0, 10, 40 s), one abandons after 25 s, one times
    out at 120 s; service level threshold 20 s."""
    cc = center(wrap_up=10, max_wait=120, service_level=20, strategy=Strategy.LONGEST_IDLE)
    log: list[QueueLogEntry] = []
    cc.login(1, [1], 0.0)
    cc.login(2, [1], 0.0)
    cc.join("c1", 1, 100.0)  # agent 1
    cc.join("c2", 1, 100.0)  # agent 2
    assert offers(cc) == [("c1", 1), ("c2", 2)]
    assert cc.offer_answered("c1", 1, 100.0)  # wait 0
    assert cc.offer_answered("c2", 2, 110.0)  # wait 10 (rang 10 s)
    cc.join("c3", 1, 120.0)
    cc.join("c4", 1, 130.0)
    cc.call_ended("c1", 150.0, by_agent=True)  # talk 50, wrap-up until 160
    cc.caller_left("c4", 155.0)  # abandoned after 25 s
    cc.handle_timer(160.0)
    assert offers(cc) == [("c3", 1)]
    assert cc.offer_answered("c3", 1, 160.0)  # wait 40
    cc.join("c5", 1, 170.0)
    cc.call_ended("c2", 200.0, by_agent=False)  # talk 90
    cc.pause(2, "lunch", 200.0)  # during wrap-up: after it
    cc.handle_timer(210.0)
    cc.transferred("c3", 220.0, target="105")  # talk 60
    cc.pause(1, "lunch", 220.0)
    cc.handle_timer(230.0)
    cc.handle_timer(290.0)  # c5 times out
    log = cc.take_log()
    kpi = queue_kpis(log, 1, service_level=20)
    assert (kpi.offered, kpi.answered, kpi.abandoned, kpi.overflowed, kpi.refused) == (5, 3, 1, 1, 0)
    assert kpi.answered_in_time == 2 and kpi.service_level == pytest.approx(2 / 5)
    assert kpi.asa == pytest.approx((0 + 10 + 40) / 3)
    assert kpi.talk_time == 200.0 and kpi.wrap_up_time == 30.0
    assert kpi.aht == pytest.approx((200 + 30) / 3)
    assert kpi.abandon_rate == pytest.approx(1 / 5)
    one = agent_kpis(log, 1)
    # agent 1: available 0-100, on calls 100-150 and 160-220, wrap-up 150-160 and 220-230; ringing 0 s
    assert (one.calls, one.talk_time, one.available_time, one.busy_time) == (2, 110.0, 100.0, 130.0)
    assert one.occupancy == pytest.approx(130 / 230)
    both = agent_kpis(log)
    assert both.calls == 3 and both.not_ready_time == 0.0  # the pauses have not ended yet
