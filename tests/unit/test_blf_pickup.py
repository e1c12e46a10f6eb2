"""BLF pickup (issue 11): the dialog-info of a ringing extension names the early dialog of our INVITE to
its phone (call-id, local-tag = the phone's tag, remote-tag = ours), and a desk phone's INVITE with
``Replaces`` (RFC 3891) naming that dialog is a directed pickup of the call (telephony/pickup.py);
a confirmed, unknown, own or other company's dialog is 481, a malformed header 400."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from callengine_harness import DOMAIN, TENANT, Device, FakeClientTxn, Harness, PhoneCall

from zvonok.sip.dialog_info import Dialog, DialogInfo, DialogState, build_dialog_info, parse_dialog_info
from zvonok.telephony import events as ev
from zvonok.telephony.blf_state import ExtensionActivity
from zvonok.telephony.pickup import Pickup

NS = "{urn:ietf:params:xml:ns:dialog-info}"
ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'


# -- the document ---------------------------------------------------------------------------------------
def test_dialog_element_carries_the_dialog_ids_and_parties() -> None:
    dialog = Dialog(id="leg1", state=DialogState.EARLY, direction="recipient", call_id="abc@10.0.0.1",
                    local_tag="phone-tag", remote_tag="our-tag", local_identity=f"sip:102@{DOMAIN}",
                    local_target=f"sip:102@{DOMAIN}", remote_identity=f"sip:101@{DOMAIN}",
                    remote_display='Ann "A" <&>', remote_target=f"sip:**102@{DOMAIN}")
    root = ET.fromstring(build_dialog_info(DialogInfo(entity=f"sip:102@{DOMAIN}", version=3,
                                                      dialogs=(dialog,))))  # noqa: S314 - our own document
    (el,) = root.findall(f"{NS}dialog")
    assert {k: el.get(k) for k in ("id", "call-id", "local-tag", "remote-tag", "direction")} == {
        "id": "leg1", "call-id": "abc@10.0.0.1", "local-tag": "phone-tag", "remote-tag": "our-tag",
        "direction": "recipient"}
    assert el.findtext(f"{NS}state") == "early"
    assert el.findtext(f"{NS}local/{NS}identity") == f"sip:102@{DOMAIN}"
    remote = el.find(f"{NS}remote/{NS}identity")
    assert remote is not None and remote.text == f"sip:101@{DOMAIN}" and remote.get("display") == 'Ann "A" <&>'
    target = el.find(f"{NS}remote/{NS}target")
    assert target is not None and target.get("uri") == f"sip:**102@{DOMAIN}"


def _events(call: str, *, answer: bool) -> list[object]:
    base: dict[str, Any] = {"tenant_id": TENANT, "call_id": call, "at": 1.0}

    def party(number: str, ext_id: int) -> ev.Party:
        return ev.Party(number=number, display_name=f"Ext {number}", extension_id=ext_id, external=False)

    out: list[object] = [
        ev.CallStarted(**base, caller=party("101", 11), callee_number="102", direction=ev.Direction.INTERNAL),
        ev.LegCreated(**base, leg_id="a", role=ev.LegRole.CALLER, party=party("101", 11)),
        ev.LegCreated(**base, leg_id="b", role=ev.LegRole.CALLEE, party=party("102", 12)),
        ev.LegRinging(**base, leg_id="b", sip_call_id="cid@zvonok", device_tag="ptag", our_tag="otag"),
    ]
    if answer:
        out += [ev.LegAnswered(**base, leg_id="b"), ev.CallAnswered(**base, answered_leg_id="b")]
    out.append(ev.CallEnded(**base, disposition=ev.Disposition.ANSWERED, hangup_side=ev.HangupSide.CALLEE,
                            cause="normal_clearing"))
    return out


def test_activity_keeps_the_ringing_dialog_ids() -> None:
    act = ExtensionActivity()
    events = _events("c1", answer=True)
    for event in events[:3]:
        act.apply(event)
    (trying,) = act.dialogs(TENANT, 12)
    assert trying.to_dialog(DOMAIN, "**").call_id is None  # no dialog with the phone yet
    act.apply(events[3])
    (early,) = act.dialogs(TENANT, 12)
    d = early.to_dialog(DOMAIN, "**")
    assert (d.state, d.call_id, d.local_tag, d.remote_tag, d.direction) == (
        DialogState.EARLY, "cid@zvonok", "ptag", "otag", "recipient")
    assert (d.local_identity, d.remote_identity) == (f"sip:102@{DOMAIN}", f"sip:101@{DOMAIN}")
    (caller,) = act.dialogs(TENANT, 11)
    assert caller.to_dialog(DOMAIN, "**").call_id is None  # the caller's leg is not the one ringing
    act.apply(events[4])
    (confirmed,) = act.dialogs(TENANT, 12)
    c = confirmed.to_dialog(DOMAIN, "**")
    assert (c.state, c.call_id, c.local_tag, c.remote_tag, c.remote_target) == (
        DialogState.CONFIRMED, "cid@zvonok", "ptag", "otag", None)
    for event in events[5:]:
        act.apply(event)
    (ended,) = act.dialogs(TENANT, 12)
    assert ended.state is DialogState.TERMINATED and ended.to_dialog(DOMAIN, "**").call_id is None


# -- INVITE with Replaces in the engine ------------------------------------------------------------------
def _ringing(h: Harness, caller: list[Device], callee: list[Device], number: str) -> tuple[PhoneCall, FakeClientTxn]:
    call = h.call(caller, number)
    (fork,) = h.invites_to(callee)
    h.reply(fork, 180, to_tag="bobphone")
    return call, fork


def _replacing(h: Harness, picker: list[Device], replaces: str, dialed: str = "102") -> PhoneCall:
    device = picker[0]
    request = h._invite(device, f"sip:{dialed}@{DOMAIN}", device.number)
    request.headers.add("Replaces", replaces)
    return h._send_invite(device, request)


def _named(fork: FakeClientTxn, *, swap: bool = False) -> str:
    """The Replaces a BLF key sends from the NOTIFY's call-id/local-tag/remote-tag."""
    req = fork.request
    ours = req.from_.tag
    if swap:
        return f"{req.call_id};to-tag={ours};from-tag=bobphone"
    return f"{req.call_id};to-tag=bobphone;from-tag={ours}"


def test_replaces_naming_a_ringing_dialog_picks_the_call_up(tmp_path: Path) -> None:
    with Harness() as h:
        h.engine.pickup = Pickup(h.engine)
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        call, fork = _ringing(h, alice, bob, "102")
        ringing_call = call.engine_call
        assert ringing_call is not None
        (rang,) = h.events_of(ev.LegRinging)
        assert (rang.sip_call_id, rang.device_tag, rang.our_tag) == (
            fork.request.call_id, "bobphone", fork.request.from_.tag)
        picker = _replacing(h, carol, f"{rang.sip_call_id};to-tag={rang.device_tag};from-tag={rang.our_tag}")
        assert picker.final_status() == 200
        assert fork.cancelled == ELSEWHERE  # bob's phone stops ringing
        assert call.final_status() == 200  # alice is connected to carol
        picked = ringing_call.callee
        assert picked is not None and picked.party.number == "103"
        assert ringing_call.caller is not None and ringing_call.caller.endpoint is not None
        assert picked.endpoint is not None
        assert h.media.bridges[-1] == (ringing_call.caller.endpoint.id, picked.endpoint.id)
        (event,) = h.events_of(ev.CallPickedUp)
        assert (event.by.number, event.from_number, event.directed) == ("103", "102", True)
        h.reply(fork, 487)
        call.ack()
        picker.ack()
        call.bye()  # alice hangs up: carol gets our BYE
        assert len(h.sent_requests("BYE", to=carol)) == 1
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0


def test_replaces_tags_in_either_order(tmp_path: Path) -> None:
    with Harness() as h:
        h.engine.pickup = Pickup(h.engine)
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        call, fork = _ringing(h, alice, bob, "102")
        picker = _replacing(h, carol, _named(fork, swap=True))
        assert picker.final_status() == 200 and call.final_status() == 200


def test_replaces_refusals(tmp_path: Path) -> None:
    with Harness() as h:
        h.engine.pickup = Pickup(h.engine)
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        call, fork = _ringing(h, alice, bob, "102")
        # malformed: 400; unknown dialog / wrong tag: 481; the ringing phone's own extension: 481
        assert _replacing(h, carol, "nothing-here").final_status() == 400
        assert _replacing(h, carol, "unknown@x;to-tag=a;from-tag=b").final_status() == 481
        assert _replacing(h, carol, f"{fork.request.call_id};to-tag=other;from-tag=x").final_status() == 481
        assert _replacing(h, bob, _named(fork)).final_status() == 481
        assert _replacing(h, alice, _named(fork)).final_status() == 481  # one's own outgoing call
        # another company's call: the same ids are not found
        ringing_call = call.engine_call
        assert ringing_call is not None
        ringing_call.tenant_id = TENANT + 1
        assert _replacing(h, carol, _named(fork)).final_status() == 481
        ringing_call.tenant_id = TENANT
        assert fork.cancelled is None and call.final_status() is None  # still ringing bob
        # answered: the dialog is confirmed, no pickup
        h.reply(fork, 200, to_tag="bobphone")
        assert call.final_status() == 200
        assert _replacing(h, carol, _named(fork)).final_status() == 481
        assert ringing_call.callee is not None and ringing_call.callee.party.number == "102"
        assert not h.events_of(ev.CallPickedUp)


def test_replaces_without_the_pickup_application_is_481() -> None:
    with Harness() as h:
        alice, bob, carol = h.extension("101"), h.extension("102"), h.extension("103")
        call, fork = _ringing(h, alice, bob, "102")
        assert _replacing(h, carol, _named(fork)).final_status() == 481
        assert fork.cancelled is None


def test_notify_names_the_ringing_dialog() -> None:
    from test_blf import Setup, subscribe

    s = Setup()
    try:
        s.send(subscribe("101", "102"))
        events = _events("c1", answer=False)
        s.events(events[:4])
        early = next(d for n in s.notifies()[1:] for d in parse_dialog_info(n.request.body).dialogs
                     if d.state is DialogState.EARLY)
        assert (early.call_id, early.local_tag, early.remote_tag, early.direction) == (
            "cid@zvonok", "ptag", "otag", "recipient")
        assert (early.local_identity, early.remote_identity) == (f"sip:102@{DOMAIN}", f"sip:101@{DOMAIN}")
    finally:
        s.loop.close()
