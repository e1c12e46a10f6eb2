"""*33<ext> in the real call engine (the harness: fake SIP, fake media, virtual clock): who may, what the
mixing bridge is told for each mode and key, the way back to a relay, and the ends of either call."""

from __future__ import annotations

from typing import Any

import pytest
from callengine_harness import Harness, PhoneCall

from zvonok.telephony import events as ev
from zvonok.telephony.monitor import AuditRecord, Monitoring
from zvonok.telephony.monitor_matrix import MonitorMode
from zvonok.telephony.originate import OriginateRefused, Originator, Phase


class MixLog:
    """The fake media engine's missing mixing calls, recorded: (bridge, endpoint) joins and matrix rows."""

    def __init__(self, h: Harness) -> None:
        self.joined: list[tuple[str, str]] = []
        self.rows: dict[str, dict[str, bool]] = {}

        async def mix_bridge(bridge_id: str, endpoint: Any, **_: Any) -> None:
            self.joined.append((bridge_id, endpoint.id))

        async def set_matrix(bridge_id: str, endpoint: Any, *, hears: Any = None, **_: Any) -> None:
            self.rows[endpoint.id] = dict(hears)

        h.media.mix_bridge = mix_bridge  # type: ignore[attr-defined]
        h.media.set_matrix = set_matrix  # type: ignore[attr-defined]


def _setup(h: Harness, *, allowed: bool = True) -> tuple[MixLog, list[AuditRecord]]:
    audited: list[AuditRecord] = []

    async def policy(tenant_id: int, employee_id: int | None, target: str | None) -> bool:
        return allowed

    async def audit(record: AuditRecord) -> None:
        audited.append(record)

    h.engine.monitoring = Monitoring(h.engine, allowed=policy, audit=audit)
    return MixLog(h), audited


def _talking(h: Harness) -> tuple[PhoneCall, Any]:
    alice, bob = h.extension("101"), h.extension("102")
    call = h.call(alice, "102")
    (fork,) = h.invites_to(bob)
    h.reply(fork, 200)
    call.ack()
    assert call.final_status() == 200 and call.engine_call is not None
    return call, call.engine_call


def test_listen_then_keys_then_the_supervisor_leaves() -> None:
    with Harness() as h:
        mix, audited = _setup(h)
        call, engine_call = _talking(h)
        carol = h.extension("103")
        spy = h.call(carol, "*33102")
        assert spy.final_status() == 200
        spy.ack()
        customer, agent = engine_call.caller.endpoint, engine_call.callee.endpoint
        sup_call = spy.engine_call
        assert sup_call is not None and sup_call.caller is not None
        sup = sup_call.caller.endpoint
        bridge = f"monitor:{engine_call.id}"
        assert mix.joined == [(bridge, customer.id), (bridge, agent.id), (bridge, sup.id)]
        listen = {
            customer.id: {agent.id: True, sup.id: False},
            agent.id: {customer.id: True, sup.id: False},
            sup.id: {customer.id: True, agent.id: True},
        }
        assert mix.rows == listen
        h.dtmf(sup, "5")  # whisper: the agent hears the supervisor
        assert mix.rows[agent.id] == {customer.id: True, sup.id: True}
        assert mix.rows[customer.id] == {agent.id: True, sup.id: False}
        h.dtmf(sup, "1")  # not a mode key: nothing changes
        h.dtmf(sup, "6")  # barge: everyone hears everyone
        assert all(all(row.values()) for row in mix.rows.values())
        sessions = h.engine.monitoring.of_tenant(engine_call.tenant_id)
        assert [(s.supervisor, s.agent, s.mode.value) for s in sessions] == [("103", "102", "barge")]
        bridges_before = len(h.media.bridges)
        spy.bye()  # the supervisor hangs up: the two relay again, the call goes on
        assert h.media.bridges[bridges_before:] == [(customer.id, agent.id)]
        assert not engine_call.ended and h.engine.monitoring.of_tenant(engine_call.tenant_id) == []
        h.settle()
        assert [(r.action, r.mode, r.via) for r in audited] == [
            ("start", "listen", "feature_code"),
            ("mode", "whisper", "dtmf"),
            ("mode", "barge", "dtmf"),
            ("stop", "barge", "system"),
        ]
        call.bye()
        assert not h.engine.calls


def test_the_call_ends_under_the_supervisor() -> None:
    with Harness() as h:
        _setup(h)
        call, _ = _talking(h)
        carol = h.extension("103")
        spy = h.call(carol, "*33101")  # the caller's side may be monitored too
        assert spy.final_status() == 200
        spy.ack()
        call.bye()
        assert len(h.sent_requests("BYE", to=carol)) == 1  # the supervisor's phone is hung up
        h.settle()
        assert not h.engine.calls


def test_refusals() -> None:
    with Harness() as h:
        _, audited = _setup(h, allowed=False)
        _talking(h)
        carol = h.extension("103")
        assert h.call(carol, "*33102").final_status() == 403  # not a supervisor
        h.settle()
        assert [(r.action, r.supervisor, r.agent) for r in audited] == [("refused", "103", "102")]
    with Harness() as h:
        _setup(h)
        _talking(h)
        carol, dave = h.extension("103"), h.extension("104")
        assert h.call(carol, "*33105").final_status() == 404  # no call of that extension
        assert h.call(carol, "*33103").final_status() == 404  # oneself
        first = h.call(carol, "*33102")
        assert first.final_status() == 200
        first.ack()
        assert h.call(dave, "*33102").final_status() == 486  # one supervisor per call


def test_a_mode_that_cannot_apply_leaves_the_call_alone() -> None:
    """The legs left the bridge (a transfer re-bridged them): a key must not end the monitored call."""
    from zvonok.media.errors import MediaUsageError

    with Harness() as h:
        _setup(h)
        _, engine_call = _talking(h)
        spy = h.call(h.extension("103"), "*33102")
        spy.ack()

        async def gone(*_: Any, **__: Any) -> None:
            raise MediaUsageError("not in mixing bridge")

        h.media.set_matrix = gone  # type: ignore[attr-defined]
        sup_call = spy.engine_call
        assert sup_call is not None and sup_call.caller is not None
        h.dtmf(sup_call.caller.endpoint, "6")
        h.settle()
        assert not engine_call.ended and not sup_call.ended


def test_monitoring_started_by_the_pbx_rings_the_supervisor_first() -> None:
    """``POST .../monitor-sessions`` (telephony/originate.py): the supervisor's phone rings; answered, it
    joins the agent's call in the mode asked for; the supervisor hanging up leaves the call alone."""
    with Harness() as h:
        mix, audited = _setup(h)
        h._snapshot()
        originator = Originator(h.engine)
        h.engine.originator = originator
        carol = h.extension("103")
        with pytest.raises(OriginateRefused) as refused:  # nobody talks yet: nothing rings
            h.run(originator.start_monitor(1, "103", "102", MonitorMode.WHISPER))
        assert refused.value.status == 404 and h.invites_to(carol) == []
        call, engine_call = _talking(h)
        session = h.run(originator.start_monitor(1, "103", "102", MonitorMode.WHISPER))
        assert mix.joined == []  # not before the supervisor answers
        (invite,) = h.invites_to(carol)
        h.reply(invite, 180)
        ok = h.reply(invite, 200)
        customer, agent = engine_call.caller.endpoint, engine_call.callee.endpoint
        sup_call = h.engine.calls[session.call_id]
        sup = sup_call.caller.endpoint
        assert [e for _, e in mix.joined] == [customer.id, agent.id, sup.id]
        assert mix.rows[agent.id] == {customer.id: True, sup.id: True}  # whisper: the agent hears them
        assert mix.rows[customer.id] == {agent.id: True, sup.id: False}
        assert session.phase is Phase.CONNECTED
        assert [(r.action, r.mode, r.via) for r in audited] == [("start", "whisper", "api")]
        h.request_from(invite, ok, "BYE")  # the supervisor hangs up: the call goes on as a relay
        assert not engine_call.ended and h.engine.monitoring.of_tenant(1) == []
        assert session.phase is Phase.ENDED
        ended = [e for e in h.events_of(ev.CallEnded) if e.call_id == session.call_id]
        assert [e.disposition for e in ended] == [ev.Disposition.ANSWERED]
        call.bye()
        assert not h.engine.calls


def test_monitoring_by_the_pbx_is_refused_for_a_non_supervisor() -> None:
    with Harness() as h:
        _setup(h, allowed=False)
        h._snapshot()
        originator = Originator(h.engine)
        carol = h.extension("103")
        _talking(h)
        with pytest.raises(OriginateRefused) as refused:
            h.run(originator.start_monitor(1, "103", "102", MonitorMode.LISTEN))
        assert refused.value.status == 403 and h.invites_to(carol) == []
