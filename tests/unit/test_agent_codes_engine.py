"""Agents' feature codes (``*45`` log in, ``*46`` log out, ``*47`` pause, ``*47<code>`` pause with a reason) in the real call engine (fake SIP,
fake media, virtual clock) with the real call center behind the real desk (test_queue_call_engine's stand-ins
for the runtime and the database)."""

from __future__ import annotations

import dataclasses

import pytest
from callengine_harness import TENANT, Device, Harness, PhoneCall
from test_queue_call_engine import Center, center

from zvonok.callcenter import log as ql
from zvonok.callcenter.agents import AgentStatus
from zvonok.telephony import events as ev
from zvonok.telephony.agent_codes import OFF_TONE, AgentCode, AgentRequest, agent_code
from zvonok.telephony.call_forward import CONFIRM_TONE


def employee_phone(c: Center, number: str, employee_id: int | None, queues: list[int] | None) -> list[Device]:
    """Extension ``number`` of employee ``employee_id`` (None: of nobody), a member of ``queues`` (None: of
    no queue at all), not logged in."""
    phone = c.h.extension(number)
    key = (TENANT, number)
    c.h.directory.extensions[key] = dataclasses.replace(c.h.directory.extensions[key], employee_id=employee_id)
    if employee_id is not None:
        c.desk.extensions[employee_id] = [number]
        if queues is not None:
            c.desk.members[employee_id] = queues
    return phone


def dial_code(h: Harness, phone: list[Device], dialed: str) -> PhoneCall:
    """Dial a code that is carried out: answered, a tone, our BYE 1.5 s later."""
    call = h.call(phone, dialed)
    assert call.final_status() == 200
    call.ack()
    byes = len(h.sent_requests("BYE", to=phone))
    h.advance(2.0)
    assert len(h.sent_requests("BYE", to=phone)) == byes + 1
    return call


def last_tone(h: Harness) -> object:
    return h.media.played[-1][1]


@pytest.mark.parametrize(("dialed", "expected"), [
    ("*45", AgentRequest(AgentCode.LOGIN)),
    ("*45500", AgentRequest(AgentCode.LOGIN, "500")),
    ("*46", AgentRequest(AgentCode.LOGOUT)),
    ("*46501", AgentRequest(AgentCode.LOGOUT, "501")),
    ("*47", AgentRequest(AgentCode.PAUSE)),
    ("*471", AgentRequest(AgentCode.PAUSE, reason_code="1")),  # a not-ready reason's code, not a queue's number
    ("*47012", AgentRequest(AgentCode.PAUSE, reason_code="012")),
    ("*47x", None),
    ("*45abc", None),
    ("*45\u0661", None),  # digits, but not ASCII ones
    ("*4", None),
    ("*72101", None),
])
def test_agent_code_parsing(dialed: str, expected: AgentRequest | None) -> None:
    assert agent_code(dialed) == expected


def test_log_in_from_the_phone_then_a_queue_caller_rings_it_and_after_log_out_not() -> None:
    c = center()
    h = c.h
    with h:
        sales = c.queue("500")
        support = c.queue("501")
        agent = employee_phone(c, "201", 7, [sales, support])
        dial_code(h, agent, "*45")
        assert last_tone(h) == CONFIRM_TONE
        assert c.runtime.center.agents[7].queues == {sales, support}
        assert [(e.event, e.queue_id) for e in c.runtime.events(ql.ADDMEMBER)] == [
            (ql.ADDMEMBER, sales), (ql.ADDMEMBER, support)]
        assert [e.cause for e in h.events_of(ev.CallEnded)] == ["feature_code"]  # a call with its CDR

        customer = h.extension("101")
        first = h.call(customer, "500")
        first.ack()
        assert len(h.invites_to(agent)) == 1  # the queue's offer rings the phone
        h.reply(h.invites_to(agent)[-1], 486)  # (busy: nobody else; the caller keeps waiting)
        first.bye()

        dial_code(h, agent, "*46")
        assert last_tone(h) == OFF_TONE
        assert c.runtime.center.agents[7].status is AgentStatus.OFFLINE
        invites = len(h.invites_to(agent))
        second = h.call(customer, "500")
        second.ack()
        h.advance(10.0)
        assert len(h.invites_to(agent)) == invites  # logged out: never offered
        assert c.runtime.center.position(second.engine_call.id if second.engine_call else "") == 1
        second.bye()


def test_one_queue_by_its_number() -> None:
    c = center()
    h = c.h
    with h:
        sales = c.queue("500")
        support = c.queue("501")
        agent = employee_phone(c, "201", 7, [sales, support])
        dial_code(h, agent, "*45501")
        assert c.runtime.center.agents[7].queues == {support}
        dial_code(h, agent, "*45500")
        dial_code(h, agent, "*46501")
        assert c.runtime.center.agents[7].queues == {sales}
        assert c.runtime.center.agents[7].status is AgentStatus.AVAILABLE
        assert h.call(agent, "*46501").final_status() == 404  # logged out of it already


def test_pause_toggles_with_the_reason_phone() -> None:
    c = center()
    h = c.h
    with h:
        sales = c.queue("500")
        agent = employee_phone(c, "201", 7, [sales])
        dial_code(h, agent, "*45")
        dial_code(h, agent, "*47")
        assert last_tone(h) == OFF_TONE
        state = c.runtime.center.agents[7]
        assert (state.status, state.reason) == (AgentStatus.NOT_READY, "phone")
        customer = h.extension("101")
        call = h.call(customer, "500")
        call.ack()
        assert h.invites_to(agent) == []  # paused: not offered
        dial_code(h, agent, "*47")
        assert last_tone(h) == CONFIRM_TONE
        assert c.runtime.center.agents[7].status is AgentStatus.RINGING  # resumed: the waiting caller at once
        assert [(e.event, e.data["reason"]) for e in c.runtime.events(ql.PAUSE, ql.UNPAUSE)] == [
            (ql.PAUSE, "phone"), (ql.UNPAUSE, "phone")]
        call.bye()


def test_pause_with_a_reasons_code_and_change_it_while_paused() -> None:
    """``*47<code>`` pauses with the company's reason of that code; dialed again (or another code) while paused,
    the agent stays paused with that reason: a speed-dial key is never a toggle. ``*47`` alone resumes."""
    c = center()
    h = c.h
    with h:
        sales = c.queue("500")
        c.desk.reasons.update({"1": "Lunch", "22": "Training"})
        agent = employee_phone(c, "201", 7, [sales])
        dial_code(h, agent, "*45")
        dial_code(h, agent, "*471")
        assert last_tone(h) == OFF_TONE
        state = c.runtime.center.agents[7]
        assert (state.status, state.reason) == (AgentStatus.NOT_READY, "Lunch")
        customer = h.extension("101")
        call = h.call(customer, "500")
        call.ack()
        assert h.invites_to(agent) == []  # paused: not offered
        dial_code(h, agent, "*4722")
        assert last_tone(h) == OFF_TONE
        assert (state.status, state.reason) == (AgentStatus.NOT_READY, "Training")
        dial_code(h, agent, "*4722")  # the same key again: still paused
        assert (state.status, state.reason) == (AgentStatus.NOT_READY, "Training")
        assert h.invites_to(agent) == []
        dial_code(h, agent, "*47")
        assert last_tone(h) == CONFIRM_TONE
        assert state.status is AgentStatus.RINGING  # resumed: the waiting caller at once
        assert [(e.event, e.data["reason"]) for e in c.runtime.events(ql.PAUSE, ql.UNPAUSE)] == [
            (ql.PAUSE, "Lunch"), (ql.PAUSE, "Training"), (ql.PAUSE, "Training"), (ql.UNPAUSE, "Training")]
        assert [e.cause for e in h.events_of(ev.CallEnded)][:5] == ["feature_code"] * 5
        call.bye()


@pytest.mark.parametrize("logged_in", [True, False])
def test_a_code_no_reason_has_is_refused_and_changes_nothing(logged_in: bool) -> None:
    c = center()
    h = c.h
    with h:
        sales = c.queue("500")
        c.desk.reasons["1"] = "Lunch"
        agent = employee_phone(c, "201", 7, [sales])
        if logged_in:
            dial_code(h, agent, "*45")
        played = len(h.media.played)
        call = h.call(agent, "*479")
        assert call.final_status() == 404
        assert h.events_of(ev.CallEnded)[-1].cause == "unknown_reason"  # (not a number dialed that is nobody's)
        assert len(h.media.played) == played
        state = c.runtime.center.agents.get(7)
        assert (state.status if state is not None else AgentStatus.OFFLINE) is (
            AgentStatus.AVAILABLE if logged_in else AgentStatus.OFFLINE)
        assert c.runtime.events(ql.PAUSE) == []
        if logged_in:  # the known code
            dial_code(h, agent, "*471")
            assert c.runtime.center.agents[7].reason == "Lunch"
        else:
            assert h.call(agent, "*471").final_status() == 404
            assert h.events_of(ev.CallEnded)[-1].cause == "not_logged_in"


def test_logging_in_again_while_paused_says_paused() -> None:
    c = center()
    h = c.h
    with h:
        sales = c.queue("500")
        support = c.queue("501")
        agent = employee_phone(c, "201", 7, [sales, support])
        dial_code(h, agent, "*45500")
        dial_code(h, agent, "*47")
        dial_code(h, agent, "*45")  # now in both queues, and still not ready: the low beeps
        assert last_tone(h) == OFF_TONE
        state = c.runtime.center.agents[7]
        assert (state.queues, state.status) == ({sales, support}, AgentStatus.NOT_READY)


@pytest.mark.parametrize(("employee", "queues", "dialed"), [
    (7, None, "*45"),  # no member of any queue
    (7, [], "*45"),
    (None, None, "*45"),  # an extension of nobody
    (7, [1], "*45599"),  # no such queue
    (7, [1], "*45502"),  # a queue it is no member of
    (7, [1], "*46"),  # logged in nowhere
    (7, [1], "*47"),
])
def test_refused_like_a_wrong_forwarding_code(employee: int | None, queues: list[int] | None, dialed: str) -> None:
    c = center()
    h = c.h
    with h:
        c.queue("500")
        c.queue("502")
        phone = employee_phone(c, "201", employee, queues)
        call = h.call(phone, dialed)
        assert call.final_status() == 404
        assert not h.engine.calls and not h.media.played
        assert 7 not in c.runtime.center.agents or c.runtime.center.agents[7].status is AgentStatus.OFFLINE


def test_without_a_call_center_the_codes_get_503() -> None:
    with Harness() as h:
        phone = h.extension("201")
        assert h.call(phone, "*45").final_status() == 503
        assert not h.engine.calls
