"""RFC 3261 §12 dialogs, checked against the RFC 3665 §3.1–3.3 flows from both ends."""

from __future__ import annotations

import ast
import dataclasses
import itertools
from pathlib import Path

import pytest

from zvonok.sip import dialog as dialog_module
from zvonok.sip.dialog import (
    Dialog,
    DialogState,
    add_top_via,
    credentials_of,
    dialog_key_for_request,
    dialog_key_for_response,
    dialog_response,
)
from zvonok.sip.errors import SipUsageError
from zvonok.sip.headers import NameAddr, parse_name_addr, split_commas
from zvonok.sip.message import Request, Response, make_response, parse_datagram
from zvonok.sip.peer import Peer
from zvonok.sip.transaction import TransactionLayer
from zvonok.sip.uri import SipUri, parse_uri

TESTDATA = Path(__file__).parents[1] / "data"
RFC3665 = TESTDATA / "rfc3665"

ALICE_CONTACT = "<sip:alice@client.atlanta.example.com;transport=tcp>"
BOB_CONTACT = "<sip:bob@client.biloxi.example.com;transport=tcp>"


def flow(name: str) -> Request | Response:
    return parse_datagram((RFC3665 / f"{name}.sip").read_bytes())


def request(name: str) -> Request:
    msg = flow(name)
    assert isinstance(msg, Request)
    return msg


def response(name: str) -> Response:
    msg = flow(name)
    assert isinstance(msg, Response)
    return msg


def routes(msg: Request | Response, name: str = "route") -> list[str]:
    return [str(parse_name_addr(v)) for field in msg.headers.get_all(name) for v in split_commas(field)]


def uri_without_transport(text: str) -> str:
    # RFC 3665 writes the Contact with ;transport=tcp but drops it from the Request-URI of later
    # requests (one of its simplifications, §1.3); the URI is otherwise the remote target
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    params = {k: v for k, v in uri.params.items() if k != "transport"}
    return str(dataclasses.replace(uri, params=params))  # parsed URIs are shared: never change one


def assert_same_request(built: Request, expected: Request) -> None:
    """Equal in what §12.2.1.1 fixes: method, Request-URI, Route, From/To tags and URIs, Call-ID, CSeq."""
    assert built.method == expected.method
    assert uri_without_transport(built.uri_text) == uri_without_transport(expected.uri_text)
    assert routes(built) == routes(expected)
    assert (built.from_.tag, built.to.tag) == (expected.from_.tag, expected.to.tag)
    assert (str(built.from_.uri), str(built.to.uri)) == (str(expected.from_.uri), str(expected.to.uri))
    assert built.call_id == expected.call_id
    assert built.cseq == expected.cseq
    assert built.headers.get("max-forwards") == "70"
    # it goes on the wire and comes back the same
    add_top_via(built, "TCP", "client.example.com", 5060, branch="z9hG4bKtest")
    again = parse_datagram(built.to_bytes())
    assert isinstance(again, Request)
    assert routes(again) == routes(expected)


# -- RFC 3665 §3.1: Alice calls Bob directly --------------------------------------------------------------------

def test_3_1_bob_as_uas_builds_the_bye() -> None:
    invite, ok = request("3.1_F1"), response("3.1_F3")
    bob = Dialog.from_uas(invite, ok, BOB_CONTACT)
    assert bob.state is DialogState.CONFIRMED
    assert bob.key == ("3848276298220188511@atlanta.example.com", "8321234356", "9fxced76sl")
    assert str(bob.remote_target) == "sip:alice@client.atlanta.example.com;transport=tcp"
    assert (bob.route_set, bob.local_seq, bob.remote_seq, bob.secure) == ([], 0, 1, False)
    assert str(bob.local_uri) == '"Bob" <sip:bob@biloxi.example.com>'  # the tag is kept apart
    assert_same_request(bob.create_request("BYE"), request("3.1_F5"))
    assert bob.local_seq == 1


def test_3_1_alice_as_uac_builds_the_ack_and_takes_the_bye() -> None:
    invite = request("3.1_F1")
    alice = Dialog.from_uac(invite, response("3.1_F2"))  # the 180 with a tag: an early dialog
    assert alice.state is DialogState.EARLY
    alice.receive_response(response("3.1_F3"))
    assert alice.state is DialogState.CONFIRMED
    assert alice.key == ("3848276298220188511@atlanta.example.com", "9fxced76sl", "8321234356")
    assert alice.key == dialog_key_for_response(response("3.1_F3"))
    assert_same_request(alice.create_ack(invite.cseq.number), request("3.1_F4"))
    assert alice.local_seq == 1  # the ACK takes no new CSeq
    bye = request("3.1_F5")
    assert dialog_key_for_request(bye) == alice.key
    assert alice.receive_request(bye) is None
    assert alice.state is DialogState.TERMINATED
    assert alice.remote_seq == 1
    # a retransmitted BYE after the transaction is gone: the dialog no longer exists
    assert alice.receive_request(bye) == 481


def test_3_1_uas_dialog_from_the_180() -> None:
    invite = request("3.1_F1")
    bob = Dialog.from_uas(invite, response("3.1_F2"), BOB_CONTACT)
    assert bob.state is DialogState.EARLY
    bob.confirm()
    assert bob.state is DialogState.CONFIRMED
    # the key Bob files the dialog under is the one Alice's later requests map to
    assert dialog_key_for_request(request("3.1_F4")) == bob.key
    assert dialog_key_for_request(request("3.1_F5"), as_uas=False) == bob.key


# -- RFC 3665 §3.2: through two record-routing proxies ---------------------------------------------------------

def test_3_2_bob_as_uas_keeps_record_route_order() -> None:
    bob = Dialog.from_uas(request("3.2_F7"), response("3.2_F12"), BOB_CONTACT)
    assert [str(r) for r in bob.route_set] == ["<sip:ss2.biloxi.example.com;lr>",
                                               "<sip:ss1.atlanta.example.com;lr>"]
    bye = bob.create_request("BYE")
    assert_same_request(bye, request("3.2_F18"))
    assert routes(bye) == ["<sip:ss2.biloxi.example.com;lr>", "<sip:ss1.atlanta.example.com;lr>"]


def test_3_2_alice_as_uac_reverses_record_route() -> None:
    invite = request("3.2_F4")
    alice = Dialog.from_uac(invite, response("3.2_F14"))
    assert [str(r) for r in alice.route_set] == ["<sip:ss1.atlanta.example.com;lr>",
                                                 "<sip:ss2.biloxi.example.com;lr>"]
    assert alice.local_seq == 2
    assert_same_request(alice.create_ack(invite.cseq.number), request("3.2_F15"))
    bye = request("3.2_F20")
    assert dialog_key_for_request(bye) == alice.key
    assert alice.receive_request(bye) is None
    assert alice.state is DialogState.TERMINATED


def test_3_2_bob_answers_with_the_record_route_copied() -> None:
    invite = request("3.2_F7")
    expected = response("3.2_F12")
    ok = dialog_response(invite, 200, "314159", BOB_CONTACT, body=expected.body)
    assert ok.headers.get_all("record-route") == invite.headers.get_all("record-route")
    assert routes(ok, "record-route") == routes(expected, "record-route")
    assert ok.to.tag == "314159"
    assert ok.headers.get("contact") == BOB_CONTACT
    assert ok.headers.get("content-type") == "application/sdp"
    assert (ok.call_id, ok.cseq, ok.from_.tag) == (expected.call_id, expected.cseq, expected.from_.tag)
    # and the dialog Alice builds from it routes like the flow's own 200
    wire = parse_datagram(ok.to_bytes())
    assert isinstance(wire, Response)
    alice = Dialog.from_uac(request("3.2_F4"), wire)
    assert_same_request(alice.create_ack(2), request("3.2_F15"))


def test_3_3_ack_carries_the_invite_credentials() -> None:
    invite = request("3.3_F11")
    alice = Dialog.from_uac(invite, response("3.3_F18"))
    ack = alice.create_ack(invite.cseq.number, extra_headers=credentials_of(invite))
    expected = request("3.3_F19")
    assert_same_request(ack, expected)
    assert ack.headers.get_all("proxy-authorization") == expected.headers.get_all("proxy-authorization")


# -- route sets and strict routing (§12.2.1.1) ------------------------------------------------------------------

def dialog_with_routes(*route_set: str, target: str = "sip:user@remoteua.example.com") -> Dialog:
    return Dialog(
        call_id="c1", local_tag="lt", remote_tag="rt", local_uri=parse_name_addr("<sip:me@example.com>"),
        remote_uri=parse_name_addr("<sip:you@example.com>"), remote_target=parse_uri(target),
        route_set=[parse_name_addr(r) for r in route_set], local_seq=10, state=DialogState.CONFIRMED,
        local_contact="<sip:me@192.0.2.10:5060>",
    )


def test_strict_router_becomes_the_request_uri() -> None:
    # the example of §12.2.1.1
    d = dialog_with_routes("<sip:proxy1>", "<sip:proxy2>", "<sip:proxy3;lr>", "<sip:proxy4>",
                           target="sip:user@remoteua")
    req = d.create_request("BYE")
    assert req.uri_text == "sip:proxy1"
    assert routes(req) == ["<sip:proxy2>", "<sip:proxy3;lr>", "<sip:proxy4>", "<sip:user@remoteua>"]


def test_strict_router_uri_loses_the_parameters_a_request_uri_cannot_have() -> None:
    d = dialog_with_routes("<sip:p1.example.com;method=INVITE;maddr=192.0.2.1?x=y>", "<sip:p2.example.com;lr>")
    req = d.create_request("INFO")
    assert req.uri_text == "sip:p1.example.com;maddr=192.0.2.1"
    assert routes(req) == ["<sip:p2.example.com;lr>", "<sip:user@remoteua.example.com>"]


def test_loose_router_keeps_the_remote_target() -> None:
    d = dialog_with_routes("<sip:p1.example.com;lr>", "<sip:p2.example.com>")
    req = d.create_request("BYE")
    assert req.uri_text == "sip:user@remoteua.example.com"
    assert routes(req) == ["<sip:p1.example.com;lr>", "<sip:p2.example.com>"]


def test_record_route_in_separate_fields_and_with_parameters() -> None:
    invite = request("3.1_F1")
    invite.headers.add("Record-Route", "<sip:edge.example.com;lr;ftag=abc>;x=1")
    invite.headers.add("Record-Route", "<sip:core.example.com;lr>, <sip:[2001:db8::1];lr>")
    bob = Dialog.from_uas(invite, response("3.1_F3"), BOB_CONTACT)
    assert [str(r) for r in bob.route_set] == [
        "<sip:edge.example.com;lr;ftag=abc>;x=1", "<sip:core.example.com;lr>", "<sip:[2001:db8::1];lr>"]
    ok = response("3.1_F3")
    ok.headers.add("Record-Route", "<sip:edge.example.com;lr;ftag=abc>;x=1")
    ok.headers.add("Record-Route", "<sip:core.example.com;lr>, <sip:[2001:db8::1];lr>")
    alice = Dialog.from_uac(request("3.1_F1"), ok)
    assert [str(r) for r in alice.route_set] == [str(r) for r in reversed(bob.route_set)]


# -- in-dialog requests we build ------------------------------------------------------------------------------

def test_cseq_increments_and_contact_only_on_target_refresh() -> None:
    d = dialog_with_routes()
    reinvite = d.create_request("INVITE", body=b"v=0\r\n")
    assert reinvite.cseq.number == 11
    assert reinvite.headers.get("contact") == "<sip:me@192.0.2.10:5060>"
    assert reinvite.headers.get("content-type") == "application/sdp"
    update = d.create_request("UPDATE")
    notify = d.create_request("NOTIFY", body=b"SIP/2.0 200 OK", content_type="message/sipfrag",
                              extra_headers=[("Event", "refer"), ("Subscription-State", "terminated")])
    bye = d.create_request("BYE")
    assert [r.cseq.number for r in (update, notify, bye)] == [12, 13, 14]
    assert "contact" in update.headers and "contact" in notify.headers and "contact" not in bye.headers
    assert notify.headers.get("content-type") == "message/sipfrag"
    assert notify.headers.get("event") == "refer"
    assert (bye.from_.tag, bye.to.tag, bye.call_id) == ("lt", "rt", "c1")
    ack = d.create_ack(11)
    assert ack.cseq.number == 11 and ack.method == "ACK" and d.local_seq == 14


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_ack_and_cancel_are_not_created_as_requests(method: str) -> None:
    with pytest.raises(SipUsageError):
        dialog_with_routes().create_request(method)


def test_no_requests_in_a_terminated_dialog() -> None:
    d = dialog_with_routes()
    d.terminate()
    with pytest.raises(SipUsageError):
        d.create_request("BYE")


def test_rfc2543_peer_without_tags() -> None:
    ok = response("3.1_F3")
    ok.headers.set("To", "Bob <sip:bob@biloxi.example.com>")
    ok.invalidate()
    alice = Dialog.from_uac(request("3.1_F1"), ok)
    assert alice.remote_tag == ""
    bye = alice.create_request("BYE")
    assert bye.to.tag is None
    assert bye.headers.get("to") == '"Bob" <sip:bob@biloxi.example.com>'


def test_top_via_for_the_transaction_layer() -> None:
    d = dialog_with_routes()
    bye = add_top_via(d.create_request("BYE"), "udp", "192.0.2.10", 5060)
    assert bye.headers.get("via") == "SIP/2.0/UDP 192.0.2.10:5060;rport"
    counter = itertools.count(1)
    layer = TransactionLayer(branch_factory=lambda: f"dlg{next(counter)}", trying_delay=None)
    peer = Peer(transport="udp", host="192.0.2.99", port=5060)
    layer.send_request(bye, peer, 0.0)
    (sent,) = layer.data_to_send()
    wire = parse_datagram(sent.data)
    assert wire.headers.get("via") == "SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bKdlg1"
    assert list(wire.headers)[0][0] == "Via"
    # the ACK for a 2xx is sent statelessly: its Via gets its own branch here
    ack = add_top_via(d.create_ack(11), "tcp", "2001:db8::10", None, branch="ack2")
    assert ack.top_via.branch == "z9hG4bKack2"
    assert ack.headers.get("via") == "SIP/2.0/TCP [2001:db8::10];rport;branch=z9hG4bKack2"
    layer.send_stateless(ack, peer)
    (sent_ack,) = layer.data_to_send()
    assert parse_datagram(sent_ack.data).cseq.method == "ACK"


# -- what we receive ----------------------------------------------------------------------------------------------

def in_dialog(method: str, cseq: int, contact: str | None = None) -> Request:
    """A request from the remote side of :func:`dialog_with_routes`."""
    req = Request(method, "sip:me@192.0.2.10:5060")
    add_top_via(req, "UDP", "192.0.2.20", 5060, branch=f"z9hG4bK{method}{cseq}")
    req.headers.add("From", "<sip:you@example.com>;tag=rt")
    req.headers.add("To", "<sip:me@example.com>;tag=lt")
    req.headers.add("Call-ID", "c1")
    req.headers.add("CSeq", f"{cseq} {method}")
    if contact is not None:
        req.headers.add("Contact", contact)
    wire = parse_datagram(req.to_bytes())
    assert isinstance(wire, Request)
    return wire


def test_cseq_order_is_enforced() -> None:
    d = dialog_with_routes()
    assert d.remote_seq is None
    assert d.receive_request(in_dialog("INFO", 5)) is None  # the first sets it (§12.2.2)
    assert d.receive_request(in_dialog("INFO", 7)) is None
    assert d.remote_seq == 7
    assert d.receive_request(in_dialog("INFO", 6)) == 500  # out of order
    assert d.remote_seq == 7
    assert d.receive_request(in_dialog("ACK", 3)) is None  # ACK and CANCEL are not ordered
    assert d.receive_request(in_dialog("CANCEL", 1)) is None
    assert d.remote_seq == 7
    assert dialog_key_for_request(in_dialog("INFO", 8)) == d.key


def test_uas_dialog_orders_against_the_invite() -> None:
    bob = Dialog.from_uas(request("3.2_F7"), response("3.2_F12"), BOB_CONTACT)
    assert bob.remote_seq == 2
    stale = request("3.2_F7")
    stale.headers.set("CSeq", "1 INVITE")
    stale.headers.set("To", "Bob <sip:bob@biloxi.example.com>;tag=314159")
    stale.invalidate()
    assert bob.receive_request(stale) == 500


def test_target_refresh_by_reinvite() -> None:
    d = dialog_with_routes()
    assert d.receive_request(in_dialog("INVITE", 20, "<sip:you@198.51.100.7:5080;transport=udp>")) is None
    assert str(d.remote_target) == "sip:you@198.51.100.7:5080;transport=udp"
    assert d.create_request("BYE").uri_text == "sip:you@198.51.100.7:5080;transport=udp"
    # UPDATE refreshes too; INFO with a Contact does not; a re-INVITE without one keeps the target
    d.receive_request(in_dialog("UPDATE", 21, "<sip:you@198.51.100.8>"))
    assert str(d.remote_target) == "sip:you@198.51.100.8"
    d.receive_request(in_dialog("INFO", 22, "<sip:you@198.51.100.9>"))
    d.receive_request(in_dialog("INVITE", 23))
    assert str(d.remote_target) == "sip:you@198.51.100.8"
    # our answer to the re-INVITE carries our Contact and tag, once
    ok = d.create_response(in_dialog("INVITE", 24), 200, body=b"v=0\r\n")
    assert ok.headers.get("contact") == "<sip:me@192.0.2.10:5060>"
    assert ok.to.tag == "lt" and ok.headers.get("to") == "<sip:me@example.com>;tag=lt"
    assert "record-route" not in ok.headers
    assert "contact" not in d.create_response(in_dialog("BYE", 25), 200).headers


def test_target_refresh_by_our_reinvite() -> None:
    alice = Dialog.from_uac(request("3.2_F4"), response("3.2_F14"))
    reinvite = alice.create_request("INVITE")
    assert reinvite.headers.get("contact") == ALICE_CONTACT
    assert reinvite.cseq.number == 3
    ok = make_response(reinvite, 200, headers=[("Contact", "<sip:bob@192.0.2.201:5062>"),
                                               ("Record-Route", "<sip:elsewhere.example.com;lr>")])
    alice.receive_response(ok)
    assert str(alice.remote_target) == "sip:bob@192.0.2.201:5062"
    # a 2xx to a re-INVITE does not change the route set (§12.2.1.2)
    assert [str(r) for r in alice.route_set] == ["<sip:ss1.atlanta.example.com;lr>",
                                                 "<sip:ss2.biloxi.example.com;lr>"]
    alice.receive_response(make_response(alice.create_request("BYE"), 200))
    assert alice.state is DialogState.TERMINATED


def test_early_dialog_route_set_is_recomputed_by_the_2xx() -> None:
    invite = request("3.1_F1")
    ringing = response("3.1_F2")
    ringing.headers.add("Record-Route", "<sip:early.example.com;lr>")
    alice = Dialog.from_uac(invite, ringing)
    assert [str(r) for r in alice.route_set] == ["<sip:early.example.com;lr>"]
    ok = response("3.1_F3")
    ok.headers.add("Record-Route", "<sip:final.example.com;lr>")
    alice.receive_response(ok)
    assert (alice.state, [str(r) for r in alice.route_set]) == (DialogState.CONFIRMED,
                                                               ["<sip:final.example.com;lr>"])


@pytest.mark.parametrize(("status", "state"), [(486, DialogState.TERMINATED), (183, DialogState.EARLY),
                                               (200, DialogState.CONFIRMED)])
def test_early_dialog_and_final_responses(status: int, state: DialogState) -> None:
    invite = request("3.1_F1")
    alice = Dialog.from_uac(invite, response("3.1_F2"))
    alice.receive_response(make_response(invite, status, to_tag="8321234356",
                                         headers=[("Contact", "<sip:bob@192.0.2.201>")]))
    assert alice.state is state


@pytest.mark.parametrize("status", [408, 481])
def test_481_and_408_end_the_dialog(status: int) -> None:
    d = dialog_with_routes()
    d.receive_response(make_response(d.create_request("INFO"), status))
    assert d.state is DialogState.TERMINATED


def test_creation_needs_a_dialog_creating_response() -> None:
    invite = request("3.1_F1")
    with pytest.raises(SipUsageError):
        Dialog.from_uas(invite, make_response(invite, 100), BOB_CONTACT)
    with pytest.raises(SipUsageError):
        Dialog.from_uac(invite, make_response(invite, 180))  # no To tag
    with pytest.raises(SipUsageError):
        Dialog.from_uac(invite, make_response(invite, 486, to_tag="x"))


def test_secure_flag_follows_a_sips_request_uri() -> None:
    plain = request("3.1_F1")
    invite = Request("INVITE", "sips:bob@biloxi.example.com", plain.headers, plain.body)
    ok = response("3.1_F3")
    assert Dialog.from_uas(invite, ok, "<sips:bob@client.biloxi.example.com>").secure
    assert not Dialog.from_uas(invite, ok, BOB_CONTACT, secure=False).secure
    assert Dialog.from_uac(invite, ok).secure


def test_missing_contact_falls_back_to_the_request_uri() -> None:
    invite = request("3.1_F1")
    ringing = make_response(invite, 183, to_tag="t1")  # some gateways send 183 without a Contact
    alice = Dialog.from_uac(invite, ringing)
    assert str(alice.remote_target) == "sip:bob@biloxi.example.com"
    alice.receive_response(make_response(invite, 200, to_tag="t1", headers=[("Contact", "<sip:b@192.0.2.2>")]))
    assert str(alice.remote_target) == "sip:b@192.0.2.2"


def test_dialog_key_needs_a_to_tag() -> None:
    assert dialog_key_for_request(request("3.1_F1")) is None


def test_local_contact_as_name_addr() -> None:
    contact = NameAddr(uri=parse_uri("sip:bob@192.0.2.201:5060"))
    bob = Dialog.from_uas(request("3.1_F1"), response("3.1_F3"), contact)
    assert bob.create_request("INVITE").headers.get("contact") == "<sip:bob@192.0.2.201:5060>"


def test_module_is_sans_io() -> None:
    assert dialog_module.__file__ is not None
    tree = ast.parse(Path(dialog_module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert not imported & {"asyncio", "socket", "time", "random", "os", "secrets", "selectors"}
