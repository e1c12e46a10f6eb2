"""Originated calls (telephony/originate.py) on the real engine with a fake SIP stack and a virtual clock:
the employee's phones ring first, then the target; the CDR sees an ordinary call of the employee."""

from __future__ import annotations

from typing import Any

import pytest
from callengine_harness import Device, FakeClientTxn, Harness

from zvonok.cdr.state import CallRecord, FinishedCall
from zvonok.media.interface import RINGBACK_RU
from zvonok.pstn.routing import PolicyInfo
from zvonok.sip.message import Response
from zvonok.telephony import events as ev
from zvonok.telephony.call import Call
from zvonok.telephony.originate import (
    TRANSITIONS,
    Originate,
    OriginateQuota,
    OriginateRecord,
    OriginateRefused,
    Originator,
    Phase,
    employee_failure,
    target_failure,
)

TENANT = 1


def _originator(h: Harness, **options: Any) -> Originator:
    h._snapshot()  # the tenant (its domain) in the routing snapshot
    originator = Originator(h.engine, **options)
    h.engine.originator = originator
    return originator


def _start(h: Harness, originator: Originator, extension: str, to: str) -> Originate:
    return h.run(originator.start(TENANT, extension, to))  # type: ignore[no-any-return]


def _cdr(h: Harness) -> FinishedCall:
    """The CDR the writer would make of the call's events."""
    started = h.events_of(ev.CallStarted)
    assert len(started) == 1
    record = CallRecord.started(started[0])
    ended = None
    for event in h.events:
        if isinstance(event, ev.CallEvent) and not isinstance(event, ev.CallStarted) and event.call_id == record.call_id:
            if isinstance(event, ev.CallEnded):
                ended = event
            elif type(event) in ev.CALL_EVENT_TYPES:
                record.apply(event)
    assert ended is not None
    return record.finish_with(ended)


def _answer(h: Harness, txn: FakeClientTxn, device: Device) -> Response:
    h.reply(txn, 180)
    return h.reply(txn, 200, device=device)


def _engine_call(h: Harness) -> Call:
    (call,) = h.engine.calls.values()
    return call


def test_the_employee_answers_then_the_extension_answers_and_they_talk() -> None:
    with Harness() as h:
        alice = h.extension("101", devices=2)
        bob = h.extension("102")
        originator = _originator(h)
        session = _start(h, originator, "101", "102")
        assert session.phase is Phase.RINGING_EMPLOYEE
        first, second = h.invites_to(alice[0])[0], h.invites_to(alice[1])[0]
        assert "sip:102@" in (first.request.headers.get("from") or "")  # the phone shows whom it will call
        assert h.invites_to(bob) == []  # nobody else rings before the employee answers
        h.reply(second, 180)
        ok = _answer(h, first, alice[0])
        assert second.cancelled is not None  # the other phone stops ringing
        h.reply(second, 487)
        assert session.phase is Phase.DIALING
        call = _engine_call(h)
        assert call.caller is not None and call.caller.endpoint is not None
        assert h.media.playing.get(call.caller.endpoint.id) == RINGBACK_RU  # the employee hears ringback
        fork = h.invites_to(bob)[0]
        assert "sip:101@" in (fork.request.headers.get("from") or "")  # bob sees alice calling
        ok_bob = _answer(h, fork, bob[0])
        assert call.caller.endpoint.id not in h.media.playing  # the tone stops at the answer
        assert call.callee is not None and call.callee.endpoint is not None
        assert (call.caller.endpoint.id, call.callee.endpoint.id) in h.media.bridges
        assert session.phase is Phase.CONNECTED
        assert len(h.events_of(ev.CallAnswered)) == 1
        h.request_from(fork, ok_bob, "BYE")  # bob hangs up: alice's phone gets our BYE
        assert len(h.sent_requests("BYE", to=alice[0])) == 1
        assert session.phase is Phase.ENDED
        assert not h.engine.calls and not h.engine.dialogs and h.media.in_use == 0
        cdr = _cdr(h)
        assert cdr.caller.number == "101" and cdr.callee.number == "102"
        assert cdr.disposition is ev.Disposition.ANSWERED and cdr.direction is ev.Direction.INTERNAL
        assert ok is not None and not h.events_of(ev.OriginateFailed)
        assert [e.to for e in h.events_of(ev.CallOriginated)] == ["102"]


def test_the_employee_hangs_up_while_talking_ends_the_target_leg() -> None:
    with Harness() as h:
        alice = h.extension("101")
        bob = h.extension("102")
        originator = _originator(h)
        _start(h, originator, "101", "102")
        first = h.invites_to(alice)[0]
        ok = _answer(h, first, alice[0])
        _answer(h, h.invites_to(bob)[0], bob[0])
        h.request_from(first, ok, "BYE")
        assert len(h.sent_requests("BYE", to=bob)) == 1
        cdr = _cdr(h)
        assert cdr.hangup_side is ev.HangupSide.CALLER and cdr.disposition is ev.Disposition.ANSWERED


def test_an_outside_number_goes_out_as_the_employees_call_with_failover() -> None:
    with Harness() as h:
        alice = h.extension("101")
        _first, carrier1 = h.trunk(priority=1)
        _second, carrier2 = h.trunk(priority=2)
        originator = _originator(h)
        session = _start(h, originator, "101", "84951234567")
        assert session.target.number == "+74951234567"
        assert h.invites_to(carrier1) == []
        _answer(h, h.invites_to(alice)[0], alice[0])
        attempt = h.invites_to(carrier1)[0]
        h.reply(attempt, 503)  # the first carrier fails: the next one is tried
        out = h.invites_to(carrier2)[0]
        h.reply(out, 183)  # early media from the carrier: the employee hears it instead of our tone
        call = _engine_call(h)
        assert call.caller is not None and call.caller.endpoint is not None
        assert call.caller.endpoint.id not in h.media.playing
        ok = h.reply(out, 200)
        assert session.phase is Phase.CONNECTED
        h.request_from(out, ok, "BYE")
        assert len(h.sent_requests("BYE", to=alice)) == 1
        cdr = _cdr(h)
        assert cdr.caller.number == "101" and cdr.callee.number == "+74951234567" and cdr.callee.external
        assert cdr.direction is ev.Direction.OUTBOUND and cdr.disposition is ev.Disposition.ANSWERED
        routed = h.events_of(ev.CallRouted)
        assert [r.trunk_id for r in routed] == [_first.id, _second.id]
        assert h.trunks.active == {}


def test_the_employee_not_answering_fails_with_a_reason_and_nobody_else_rings() -> None:
    with Harness() as h:
        alice = h.extension("101", devices=2)
        bob = h.extension("102")
        originator = _originator(h, answer_timeout=20.0)
        session = _start(h, originator, "101", "102")
        txns = [h.invites_to(d)[0] for d in alice]
        for txn in txns:
            h.reply(txn, 180)
        h.advance(20.0)
        assert all(txn.cancelled is not None for txn in txns)
        for txn in txns:
            h.reply(txn, 487)
        assert session.phase is Phase.FAILED and session.reason == "employee_no_answer"
        assert [e.reason for e in h.events_of(ev.OriginateFailed)] == ["employee_no_answer"]
        assert h.invites_to(bob) == []
        cdr = _cdr(h)
        assert cdr.disposition is ev.Disposition.NO_ANSWER and cdr.caller.number == "101"
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0
        assert originator.status(TENANT, session.call_id) is session
        assert originator.status(TENANT + 1, session.call_id) is None  # another company never sees it


def test_a_busy_employee_phone_fails_the_originate() -> None:
    with Harness() as h:
        alice = h.extension("101")
        h.extension("102")
        originator = _originator(h)
        session = _start(h, originator, "101", "102")
        h.reply(h.invites_to(alice)[0], 486)
        assert session.phase is Phase.FAILED and session.reason == "employee_busy"
        assert _cdr(h).disposition is ev.Disposition.BUSY


def test_an_employee_without_a_registered_phone_is_refused_at_once() -> None:
    with Harness() as h:
        h.extension("101", devices=0)
        h.extension("102")
        originator = _originator(h)
        with pytest.raises(OriginateRefused) as refused:
            _start(h, originator, "101", "102")
        assert refused.value.status == 409 and refused.value.reason == "not_registered"
        assert [e.reason for e in h.events_of(ev.OriginateFailed)] == ["not_registered"]
        assert not h.events_of(ev.CallStarted) and not h.engine.calls


def test_a_busy_target_ends_the_employees_dialog_with_bye() -> None:
    with Harness(busy_tone_seconds=0.0) as h:
        alice = h.extension("101")
        bob = h.extension("102")
        originator = _originator(h)
        session = _start(h, originator, "101", "102")
        _answer(h, h.invites_to(alice)[0], alice[0])
        h.reply(h.invites_to(bob)[0], 486)
        assert len(h.sent_requests("BYE", to=alice)) == 1
        assert session.phase is Phase.FAILED and session.reason == "busy"
        assert _cdr(h).disposition is ev.Disposition.BUSY
        assert not h.engine.calls and not h.engine.dialogs and h.media.in_use == 0


def test_the_employee_hanging_up_while_the_target_rings_cancels_it() -> None:
    with Harness() as h:
        alice = h.extension("101")
        bob = h.extension("102")
        originator = _originator(h)
        session = _start(h, originator, "101", "102")
        first = h.invites_to(alice)[0]
        ok = _answer(h, first, alice[0])
        fork = h.invites_to(bob)[0]
        h.reply(fork, 180)
        h.request_from(first, ok, "BYE")
        assert fork.cancelled is not None
        h.reply(fork, 487)
        assert session.phase is Phase.FAILED and session.reason == "employee_hung_up"
        assert _cdr(h).disposition is ev.Disposition.CANCELLED
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0


def test_bad_requests_are_refused_before_anything_rings() -> None:
    with Harness() as h:
        h.extension("101")
        h.trunk()
        originator = _originator(h)
        cases = [("199", "102", 404, "no_extension"), ("101", "12", 422, "invalid_number"),
                 ("101", "101", 422, "invalid_number"), ("101", "", 422, "invalid_number"),
                 ("101", "8495123", 422, "invalid_number")]
        for extension, to, status, reason in cases:
            with pytest.raises(OriginateRefused) as refused:
                _start(h, originator, extension, to)
            assert (refused.value.status, refused.value.reason) == (status, reason), (extension, to)
        # the tenant's calling permissions: local numbers only
        h._snapshot(policies={(TENANT, "tenant", None): PolicyInfo(tenant_id=TENANT, level="tenant", ref_id=None,
                                                                    service_class="local")})
        with pytest.raises(OriginateRefused) as refused:
            _start(h, originator, "101", "+12125551234")
        assert refused.value.status == 403 and refused.value.reason == "not_allowed"
        assert not h.events_of(ev.CallStarted) and h.sip.log == []


def test_outcome_tables() -> None:
    assert employee_failure([480, 487], timed_out=True) == "employee_no_answer"
    assert employee_failure([486, 480], timed_out=False) == "employee_busy"
    assert employee_failure([603], timed_out=False) == "employee_declined"
    assert employee_failure([408], timed_out=False) == "employee_unavailable"
    assert target_failure(ev.Disposition.NO_ANSWER, "no_answer") == "no_answer"
    assert target_failure(ev.Disposition.FAILED, "no_trunk") == "no_trunk"
    assert all(Phase.FAILED not in TRANSITIONS[p] for p in (Phase.CONNECTED, Phase.ENDED, Phase.FAILED))
    session = Originate(call_id="x", tenant_id=1, extension=None, target=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        session.advance(Phase.CONNECTED)


def test_no_free_media_ports_refuse_the_originate_and_end_its_call() -> None:
    with Harness() as h:
        alice = h.extension("101")
        h.extension("102")
        originator = _originator(h)
        h.media.exhausted = True
        with pytest.raises(OriginateRefused) as refused:
            _start(h, originator, "101", "102")
        assert refused.value.status == 503
        assert h.invites_to(alice) == [] and not h.engine.calls
        assert _cdr(h).disposition is ev.Disposition.FAILED
        assert [e.reason for e in h.events_of(ev.OriginateFailed)] == ["no_ports"]


def test_a_company_at_its_originate_limit_gets_429_until_one_of_its_calls_ends() -> None:
    with Harness() as h:
        alice = h.extension("101")
        h.extension("102")
        h.extension("103")
        originator = _originator(h, quota=OriginateQuota(max_active=2, per_minute=100))
        first = _start(h, originator, "101", "102")
        _start(h, originator, "101", "103")
        with pytest.raises(OriginateRefused) as refused:
            _start(h, originator, "101", "102")
        assert refused.value.status == 429 and refused.value.reason == "too_many_originates"
        assert refused.value.retry_after is not None and refused.value.retry_after > 0
        assert len(h.invites_to(alice)) == 2  # the refused one rang nothing
        h.reply(h.invites_to(alice)[0], 486)  # the first one fails: a place is free again
        assert first.phase is Phase.FAILED
        assert originator.quota.active(TENANT) == 1
        _start(h, originator, "101", "102")
        assert len(h.invites_to(alice)) == 3


def test_originate_quota_counts_per_company_and_per_minute() -> None:
    quota = OriginateQuota(max_active=10, per_minute=3)
    for second in (0.0, 1.0, 2.0):
        quota.admit(1, second)
    with pytest.raises(OriginateRefused) as refused:
        quota.admit(1, 30.0)
    assert refused.value.status == 429 and refused.value.retry_after == pytest.approx(30.0)  # the first leaves at 60
    quota.admit(2, 30.0)  # another company is not held back by the first one's burst
    quota.admit(1, 60.5)  # 60 s after the first start: one place in the minute again
    with pytest.raises(OriginateRefused):
        quota.admit(1, 60.8)  # the second start (at 1 s) still counts
    quota.started(1, "a")
    quota.ended(1, "a")
    quota.ended(1, "a")  # twice: harmless
    assert quota.active(1) == 0
    quota.admit(2, 200.0)
    assert set(quota._starts) == {2}  # a company with nothing in the last minute leaves no entry
    with pytest.raises(ValueError):
        OriginateQuota(max_active=0, per_minute=1)


def test_every_phase_change_reaches_the_journal_with_its_times() -> None:
    with Harness() as h:
        alice = h.extension("101")
        bob = h.extension("102")
        h.extension("103", devices=0)  # registered nowhere
        journal: list[OriginateRecord] = []
        originator = _originator(h, journal=journal.append)
        session = h.run(originator.start(TENANT, "101", "102", requested_by="account:7", client_id=42))
        first = h.invites_to(alice)[0]
        ok = _answer(h, first, alice[0])
        ok_bob = _answer(h, h.invites_to(bob)[0], bob[0])
        h.request_from(first, ok, "BYE")
        assert ok_bob is not None
        assert [(r.phase, r.reason) for r in journal] == [
            (Phase.RINGING_EMPLOYEE, None), (Phase.DIALING, None), (Phase.CONNECTED, None), (Phase.ENDED, None)]
        assert {(r.call_id, r.kind, r.requested_by, r.client_id, r.extension, r.to) for r in journal} == {
            (session.call_id, "call", "account:7", 42, "101", "102")}
        last = journal[-1]
        assert last.dialing_at is not None and last.connected_at is not None and last.finished_at is not None
        assert last.started_at <= last.dialing_at <= last.connected_at <= last.finished_at
        # no phone registered: refused (409), and the attempt is journaled as failed all the same
        journal.clear()
        with pytest.raises(OriginateRefused):
            h.run(originator.start(TENANT, "103", "102", client_id=42))
        (refused,) = journal
        assert (refused.phase, refused.reason, refused.client_id, refused.extension) == (
            Phase.FAILED, "not_registered", 42, "103")


def test_a_busy_target_is_journaled_as_failed_with_its_reason() -> None:
    with Harness(busy_tone_seconds=0.0) as h:
        alice = h.extension("101")
        bob = h.extension("102")
        journal: list[OriginateRecord] = []
        originator = _originator(h, journal=journal.append)
        _start(h, originator, "101", "102")
        _answer(h, h.invites_to(alice)[0], alice[0])
        h.reply(h.invites_to(bob)[0], 486)
        assert [(r.phase, r.reason) for r in journal] == [
            (Phase.RINGING_EMPLOYEE, None), (Phase.DIALING, None), (Phase.FAILED, "busy")]
        assert journal[-1].connected_at is None and journal[-1].finished_at is not None
