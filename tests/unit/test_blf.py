"""Busy-lamp field and presence: the extension dialogs folded from call events (telephony/blf_state.py),
the subscription table's limits and NOTIFY pacing (telephony/subscription_state.py), and the dialog /
presence server (telephony/presence.py) with the call-engine harness's fake SIP stack: a phone watching
102 sees trying → early (with the **102 pickup target) → confirmed → terminated; presence follows the
registration and the call; another tenant's extension is 404; limits give 503."""

from __future__ import annotations

import ast
import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import pytest
from callengine_harness import DOMAIN, TENANT, FakeAuth, FakeClientTxn, FakeDirectory, FakeServerTxn, FakeSip

from zvonok.sip.dialog_info import DialogState, parse_dialog_info, parse_pidf
from zvonok.sip.message import Headers, Request, make_response
from zvonok.sip.peer import Peer
from zvonok.sip.transaction import ResponseReceived
from zvonok.sip.transaction_events import TransactionTimeout
from zvonok.telephony import events as ev
from zvonok.telephony.blf_state import ExtensionActivity
from zvonok.telephony.directory import ExtensionInfo
from zvonok.telephony.location import Binding, Location
from zvonok.telephony.presence import BusyLamps
from zvonok.telephony.subscription_state import Limits, Subscription, Subscriptions, TableFull

PHONE = Peer(transport="udp", host="198.51.100.7", port=5062)
OTHER = 2  # another tenant


def party(number: str, ext_id: int | None) -> ev.Party:
    return ev.Party(number=number, display_name=f"Ext {number}", extension_id=ext_id, external=ext_id is None)


def call_events(call: str = "c1", *, answer: bool = True) -> list[object]:
    """101 (id 11) calls 102 (id 12): rings, is answered (or cancelled), hangs up."""
    base: dict[str, Any] = {"tenant_id": TENANT, "call_id": call, "at": 1.0}
    out: list[object] = [
        ev.CallStarted(**base, caller=party("101", 11), callee_number="102", direction=ev.Direction.INTERNAL),
        ev.LegCreated(**base, leg_id=f"{call}-a", role=ev.LegRole.CALLER, party=party("101", 11)),
        ev.LegCreated(**base, leg_id=f"{call}-b", role=ev.LegRole.CALLEE, party=party("102", 12)),
        ev.LegRinging(**base, leg_id=f"{call}-b"),
    ]
    if answer:
        out += [
            ev.LegAnswered(**base, leg_id=f"{call}-b"),
            ev.CallAnswered(**base, answered_leg_id=f"{call}-b"),
            ev.LegEnded(**base, leg_id=f"{call}-b", cause="normal_clearing"),
            ev.LegEnded(**base, leg_id=f"{call}-a", cause="normal_clearing"),
            ev.CallEnded(
                **base,
                disposition=ev.Disposition.ANSWERED,
                hangup_side=ev.HangupSide.CALLEE,
                cause="normal_clearing",
            ),
        ]
    else:
        out += [
            ev.CallEnded(
                **base,
                disposition=ev.Disposition.CANCELLED,
                hangup_side=ev.HangupSide.CALLER,
                cause="cancelled",
            )
        ]
    return out


def test_activity_follows_a_call() -> None:
    act = ExtensionActivity()
    seen: list[tuple[str, str]] = []
    for event in call_events():
        act.apply(event)
        (b,) = act.dialogs(TENANT, 12) or [None]
        (a,) = act.dialogs(TENANT, 11) or [None]
        seen.append((a.state.value if a else "-", b.state.value if b else "-"))
    assert seen == [
        ("-", "-"),
        ("trying", "-"),
        ("trying", "trying"),
        ("early", "early"),
        ("confirmed", "confirmed"),
        ("confirmed", "confirmed"),
        ("confirmed", "terminated"),
        ("terminated", "terminated"),
        ("terminated", "terminated"),
    ]
    (b,) = act.dialogs(TENANT, 12)
    assert (b.caller, b.remote_number, b.remote_display) == (False, "101", "Ext 101")
    (a,) = act.dialogs(TENANT, 11)
    assert (a.caller, a.remote_number) == (True, "102")
    assert len(act) == 0 and act.dialogs(OTHER, 12) == []
    # a cancelled call: the callee's dialog ends "cancelled"; its early dialog named the pickup code
    act.apply(call_events("c2", answer=False)[0])
    for event in call_events("c2", answer=False)[1:4]:
        act.apply(event)
    (early,) = act.dialogs(TENANT, 12)
    d = early.to_dialog(DOMAIN, "**")
    assert (d.state, d.direction, d.remote_target, d.remote_identity) == (
        DialogState.EARLY,
        "recipient",
        f"sip:**102@{DOMAIN}",
        f"sip:101@{DOMAIN}",
    )
    assert act.busy(TENANT, 12) is False
    assert act.apply(call_events("c2", answer=False)[-1]) == {(TENANT, 11), (TENANT, 12)}
    (ended,) = act.dialogs(TENANT, 12)
    assert (
        ended.state,
        ended.to_dialog(DOMAIN, "**").event,
        ended.to_dialog(DOMAIN, "**").remote_target,
    ) == (DialogState.TERMINATED, "cancelled", None)


def sub(key: str, *, source: str = "udp:a:1", tenant: int = 1, ext: int = 1) -> Subscription:
    return Subscription(
        key=(key, "t", "l"),
        tenant_id=tenant,
        extension_id=ext,
        account="sip:1@a",
        source=source,
        expires_at=100.0,
        event="dialog",
    )


def test_limits_per_device_and_tenant() -> None:
    table = Subscriptions(
        limits=Limits(per_extension=10, per_source=2, per_tenant=3, total=100, replace_same_source=True)
    )
    table.add(sub("1", ext=1))
    table.add(sub("2", ext=2))
    with pytest.raises(TableFull):  # a third BLF key from the same device
        table.add(sub("3", ext=3))
    assert table.count(source="udp:a:1") == 2
    again = sub("4", ext=2)  # the device again for ext 2 without its dialog: replaces, not a third
    assert table.add(again).key == ("2", "t", "l")  # type: ignore[union-attr]
    table.add(sub("5", source="udp:b:1"))
    with pytest.raises(TableFull):  # the tenant's fourth
        table.add(sub("6", source="udp:c:1"))
    table.add(sub("7", source="udp:c:1", tenant=2))  # another tenant is not affected
    assert table.count(tenant_id=1) == 3 and table.count(tenant_id=2) == 1 and len(table) == 4
    for s in table.expire(1e9):
        assert table.get(s.key) is None
    assert table.count(source="udp:a:1") == 0 and table.count(tenant_id=1) == 0


def test_notify_pacing_token_bucket() -> None:
    limits = Limits(burst=3, interval=0.5)
    s = sub("x")
    assert [s.take(10.0, limits) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert s.take(10.0, limits) == pytest.approx(0.5)
    assert s.take(10.25, limits) == pytest.approx(0.25)
    assert s.take(10.5, limits) == 0.0
    assert s.take(20.0, limits) == 0.0  # refilled, never above the burst
    assert [s.take(20.0, limits) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]


def subscribe(
    number: str,
    watched: str,
    *,
    event: str = "dialog",
    expires: int = 600,
    to_tag: str = "",
    call_id: str = "sub-1",
    cseq: int = 1,
    peer: Peer = PHONE,
) -> Request:
    headers = Headers()
    for name, value in (
        ("Via", f"SIP/2.0/UDP {peer.host}:{peer.port};branch=z9hG4bK{call_id}{cseq}"),
        ("Max-Forwards", "70"),
        ("From", f"<sip:{number}@{DOMAIN}>;tag=phone"),
        ("To", f"<sip:{watched}@{DOMAIN}>" + (f";tag={to_tag}" if to_tag else "")),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} SUBSCRIBE"),
        ("Event", event),
        ("Accept", "application/dialog-info+xml"),
        ("Expires", str(expires)),
        ("Contact", f"<sip:{number}@{peer.host}:{peer.port}>"),
    ):
        headers.add(name, value)
    return Request("SUBSCRIBE", f"sip:{watched}@{DOMAIN}", headers)


class Setup:
    def __init__(self, limits: Limits | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.sip = FakeSip()
        self.directory = FakeDirectory()
        for tenant, number, ext_id in ((TENANT, "101", 11), (TENANT, "102", 12), (OTHER, "301", 31)):
            self.directory.extensions[(tenant, number)] = ExtensionInfo(
                tenant_id=tenant,
                extension_id=ext_id,
                number=number,
                display_name=number,
                employee_id=None,
                office_id=None,
                department_id=None,
                enabled=True,
            )
        self.location = Location()
        kwargs: dict[str, Any] = {"limits": limits} if limits is not None else {}
        self.lamps = BusyLamps(
            sip=self.sip,
            auth=FakeAuth(self.directory),
            directory=self.directory,  # type: ignore[arg-type]
            location=self.location,
            **kwargs,
        )

    def run(self, coro: Any) -> Any:
        result = self.loop.run_until_complete(coro)
        self.loop.run_until_complete(asyncio.sleep(0.01))
        return result

    def send(self, request: Request, peer: Peer = PHONE) -> FakeServerTxn:
        txn = FakeServerTxn(request, peer)

        async def go() -> None:
            self.lamps.on_subscribe(txn, request, peer)  # type: ignore[arg-type]

        self.run(go())
        return txn

    def events(self, events: list[object]) -> None:
        async def go() -> None:
            for event in events:
                await self.lamps.on_call_event(event)

        self.run(go())

    def notifies(self) -> list[FakeClientTxn]:
        return self.sip.requests("NOTIFY")


def test_dialog_subscription_sees_a_call() -> None:
    s = Setup()
    try:
        txn = s.send(subscribe("101", "102"))
        (ok,) = txn.responses
        assert ok.status == 200 and ok.headers.get("expires") == "600"
        (first,) = s.notifies()
        assert first.request.headers.get("event") == "dialog"
        assert first.request.headers.get("content-type") == "application/dialog-info+xml"
        info = parse_dialog_info(first.request.body)
        assert (info.entity, info.version, info.full, info.dialogs) == (f"sip:102@{DOMAIN}", 0, True, ())
        states = []
        s.events(call_events())  # all at once, as the bus delivers a burst: each NOTIFY has its own state
        for n in s.notifies()[1:]:
            doc = parse_dialog_info(n.request.body)
            states.append((doc.version, [(d.state.value, d.direction) for d in doc.dialogs]))
        assert states == [
            (1, [("trying", "recipient")]),
            (2, [("early", "recipient")]),
            (3, [("confirmed", "recipient")]),
            (4, [("terminated", "recipient")]),
        ]
        early = parse_dialog_info(s.notifies()[2].request.body).dialogs[0]
        assert early.remote_target == f"sip:**102@{DOMAIN}" and early.remote_identity == f"sip:101@{DOMAIN}"
        # unsubscribe: a last NOTIFY, terminated
        end = s.send(subscribe("101", "102", to_tag=ok.to.tag or "", cseq=2, expires=0))
        assert end.responses[0].status == 200
        assert (s.notifies()[-1].request.headers.get("subscription-state") or "").startswith("terminated")
        assert len(s.lamps.subscriptions) == 0
    finally:
        s.loop.close()


def test_presence_follows_registration_and_calls() -> None:
    s = Setup(Limits(per_extension=10, burst=50, replace_same_source=True))  # no pacing in the way
    try:
        assert s.send(subscribe("101", "102", event="presence")).responses[0].status == 200
        assert parse_pidf(s.notifies()[0].request.body).open is False
        s.location.put(
            Binding(
                tenant_id=TENANT,
                extension_id=12,
                aor=f"102@{DOMAIN}",
                contact="sip:102@198.51.100.9:5060",
                expires_at=4e9,
                source="udp:198.51.100.9:5060",
            )
        )

        async def registered() -> None:
            s.lamps.registration_changed(TENANT, 12)

        s.run(registered())
        second = parse_pidf(s.notifies()[1].request.body)
        assert (second.open, second.on_the_phone, second.note) == (True, False, "Available")
        s.events(call_events()[:5])  # answered
        last = parse_pidf(s.notifies()[-1].request.body)
        assert (last.open, last.on_the_phone, last.note) == (True, True, "On the phone")
        assert s.notifies()[-1].request.headers.get("content-type") == "application/pidf+xml"
        s.events(call_events()[5:])  # hung up
        assert parse_pidf(s.notifies()[-1].request.body).note == "Available"

        async def unregistered() -> None:
            s.location.remove(TENANT, 12, "sip:102@198.51.100.9:5060")
            s.lamps.registration_changed(TENANT, 12)

        s.run(unregistered())
        gone = parse_pidf(s.notifies()[-1].request.body)
        assert (gone.open, gone.on_the_phone, gone.note) == (False, False, "Offline")
    finally:
        s.loop.close()


def test_refusals_and_tenant_isolation() -> None:
    s = Setup(Limits(per_extension=10, per_source=2, per_tenant=100, total=100, replace_same_source=True))
    try:
        r = s.send(subscribe("101", "102", event="message-summary"))
        assert (
            r.responses[0].status == 489 and r.responses[0].headers.get("allow-events") == "dialog, presence"
        )
        assert s.send(subscribe("101", "301")).responses[0].status == 404  # another tenant's: not found
        assert s.send(subscribe("101", "999")).responses[0].status == 404
        assert s.send(subscribe("555", "102")).responses[0].status == 403  # not authenticated
        assert s.send(subscribe("101", "102", to_tag="nope", cseq=2)).responses[0].status == 481
        assert s.notifies() == []
        assert s.send(subscribe("101", "102", call_id="a")).responses[0].status == 200
        assert s.send(subscribe("101", "101", call_id="b")).responses[0].status == 200
        over = s.send(subscribe("101", "102", event="presence", call_id="c"))  # the device's third
        assert over.responses[0].status == 503 and over.responses[0].headers.get("retry-after") == "60"
    finally:
        s.loop.close()


def test_flapping_state_is_coalesced() -> None:
    s = Setup(Limits(per_extension=10, burst=2, interval=0.2, replace_same_source=True))
    try:
        s.send(subscribe("101", "102"))  # its first NOTIFY spends a token
        s.events(call_events())  # 4 changes at once: one more now, the rest in one NOTIFY later
        assert len(s.notifies()) == 2
        s.run(asyncio.sleep(0.3))
        notifies = s.notifies()
        assert len(notifies) == 3
        last = parse_dialog_info(notifies[-1].request.body)
        assert [d.state for d in last.dialogs] == [DialogState.TERMINATED]  # the latest state arrived
        assert [parse_dialog_info(n.request.body).version for n in notifies] == [0, 1, 2]
    finally:
        s.loop.close()


def test_expiry_ends_with_a_terminated_notify_and_refresh_moves_it() -> None:
    s = Setup()
    try:
        ok = s.send(subscribe("101", "102", expires=60)).responses[0]
        (sub,) = s.lamps.subscriptions.of_extension(TENANT, 12, "dialog")
        first_deadline = sub.expires_at
        refresh = s.send(subscribe("101", "102", to_tag=ok.to.tag or "", cseq=2, expires=3600))
        assert refresh.responses[0].headers.get("expires") == "3600" and sub.expires_at > first_deadline
        refreshed = s.notifies()[-1].request
        assert parse_dialog_info(refreshed.body).version == 1  # a refresh is answered with the state too
        sub.expires_at = 0.0  # its time is up

        async def expire() -> None:
            s.lamps._arm()
            await asyncio.sleep(0.01)

        s.run(expire())
        last = s.notifies()[-1].request
        assert (last.headers.get("subscription-state") or "").startswith("terminated")
        assert len(s.lamps.subscriptions) == 0 and s.lamps.subscriptions.count(tenant_id=TENANT) == 0
        s.events(call_events())  # nobody to tell
        assert s.notifies()[-1].request is last
    finally:
        s.run(s.lamps.stop())
        s.loop.close()


def test_a_watcher_that_is_gone_is_forgotten() -> None:
    s = Setup()
    try:
        s.send(subscribe("101", "102", call_id="a"))
        s.send(subscribe("101", "101", call_id="b"))
        s.send(subscribe("101", "102", event="presence", call_id="c"))
        first, second, third = s.notifies()
        assert len(s.lamps.subscriptions) == 3
        first.handler(TransactionTimeout(transaction=first, timer="F"))  # type: ignore[arg-type]
        assert len(s.lamps.subscriptions) == 2
        ok = make_response(second.request, 200)
        second.handler(ResponseReceived(transaction=second, response=ok, peer=PHONE))  # type: ignore[arg-type]
        challenged = make_response(second.request, 401)
        second.handler(ResponseReceived(transaction=second, response=challenged, peer=PHONE))  # type: ignore[arg-type]
        assert len(s.lamps.subscriptions) == 2  # a 200, or a response asking to retry, keep it
        rejected = make_response(third.request, 603)
        third.handler(ResponseReceived(transaction=third, response=rejected, peer=PHONE))  # type: ignore[arg-type]
        assert len(s.lamps.subscriptions) == 1 and s.lamps.subscriptions.count(source=str(PHONE)) == 1
    finally:
        s.loop.close()


@pytest.mark.parametrize(
    "module", ["zvonok.sip.dialog_info", "zvonok.telephony.blf_state", "zvonok.telephony.subscription_state"]
)
def test_state_modules_are_sans_io(module: str) -> None:
    path = importlib.util.find_spec(module).origin  # type: ignore[union-attr]
    tree = ast.parse(Path(path or "").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {
        n.module.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0
    }
    assert not imported & {"asyncio", "socket", "time", "random", "os", "secrets", "selectors"}, imported
