"""RFC 3261 §17 transactions: the four state machines and the layer, driven by hand with a fake clock.

Every time here is an exact binary fraction (T1 = 0.5 …), so the timer values are asserted with ==.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.sip import transaction as transaction_module
from zvonok.sip import transaction_events, transaction_machines, transaction_messages
from zvonok.sip.errors import SipUsageError
from zvonok.sip.message import Request, Response, make_response, parse_datagram
from zvonok.sip.peer import Peer
from zvonok.sip.transaction import (
    AckReceived,
    CancelReceived,
    ClientTransaction,
    Event,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    State,
    StrayResponse,
    TransactionLayer,
    TransactionTimeout,
    TransportError,
    TransportSend,
    build_ack,
    build_cancel,
    is_rfc3261_branch,
    response_peer,
    stamp_via,
)

TESTDATA = Path(__file__).parents[1] / "data"
RFC4475 = TESTDATA / "rfc4475"
RFC3665 = TESTDATA / "rfc3665"

CLIENT = Peer(transport="udp", host="192.0.2.1", port=5060)  # the UA, as the server sees it
SERVER = Peer(transport="udp", host="192.0.2.2", port=5060)  # the server, as the UA sends to it

# the retransmission instants with T1 = 0.5, T2 = 4 (RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.1)
DOUBLING_CAPPED = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # Timers E and G
DOUBLING = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Timer A


# -- helpers ---------------------------------------------------------------------------------------------

def new_layer(**kwargs: Any) -> TransactionLayer:
    counter = itertools.count(1)
    kwargs.setdefault("trying_delay", None)
    return TransactionLayer(branch_factory=lambda: f"test{next(counter)}", **kwargs)


def parse(data: bytes) -> Request | Response:
    return parse_datagram(data)


def parse_request(data: bytes) -> Request:
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    return msg


def parse_response(data: bytes) -> Response:
    msg = parse_datagram(data)
    assert isinstance(msg, Response)
    return msg


def wire_request(method: str = "REGISTER", *, branch: str | None = "z9hG4bKabc", via: str = "192.0.2.1:5060",
                 transport: str = "UDP", cseq: int = 1, call_id: str = "call-1@192.0.2.1",
                 to_tag: str | None = None, extra: str = "") -> Request:
    """A request as a UA puts it on the wire (parsed from bytes, as the transport would hand it over)."""
    branch_param = f";branch={branch}" if branch is not None else ""
    to_param = f";tag={to_tag}" if to_tag is not None else ""
    text = (
        f"{method} sip:bob@192.0.2.2 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {via}{branch_param}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=from1\r\n"
        f"To: <sip:bob@example.com>{to_param}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    return parse_request(text.encode())


def client_request(method: str = "REGISTER", *, transport: str = "UDP") -> Request:
    """A request the TU hands to send_request: a top Via with the sent-by and rport, but no branch."""
    return wire_request(method, branch=None, via="192.0.2.1:5060;rport", transport=transport)


def step_timers(layer: TransactionLayer, until: float) -> list[tuple[float, list[Event], list[TransportSend]]]:
    """Fire the timers one deadline at a time, as an adapter's call_at would."""
    log: list[tuple[float, list[Event], list[TransportSend]]] = []
    while (deadline := layer.get_timer()) is not None and deadline <= until:
        events = layer.handle_timer(deadline)
        log.append((deadline, events, layer.data_to_send()))
    return log


def assert_empty(*layers: TransactionLayer) -> None:
    for layer in layers:
        assert len(layer) == 0
        assert layer.get_timer() is None
        assert layer.data_to_send() == []


def only(events: list[Event]) -> Event:
    assert len(events) == 1, events
    return events[0]


def receive_new(layer: TransactionLayer, request: Request, peer: Peer = CLIENT, now: float = 0.0
                ) -> ServerTransaction:
    event = only(layer.receive(request, peer, now))
    assert isinstance(event, RequestReceived)
    assert event.request is request
    return event.transaction


# -- non-INVITE client (§17.1.2) ---------------------------------------------------------------------------

def test_non_invite_client_retransmits_with_timer_e_and_times_out_with_f() -> None:
    layer = new_layer()
    txn = layer.send_request(client_request(), SERVER, 0.0)
    [first] = layer.data_to_send()
    assert first.peer == SERVER
    assert b"Via: SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bKtest1\r\n" in first.data
    assert txn.state is State.TRYING
    assert txn.timers == {"E": 0.5, "F": 32.0}
    assert layer.get_timer() == 0.5

    log = step_timers(layer, 100.0)
    assert [t for t, _, out in log if out] == DOUBLING_CAPPED
    assert all(out == [TransportSend(data=first.data, peer=SERVER)] for _, _, out in log[:-1])
    assert log[-1] == (32.0, [TransactionTimeout(transaction=txn, timer="F")], [])
    assert txn.state is State.TERMINATED
    assert_empty(layer)


def test_non_invite_client_after_a_provisional_retransmits_every_t2() -> None:
    layer = new_layer()
    txn = layer.send_request(client_request(), SERVER, 0.0)
    [request] = layer.data_to_send()
    assert [t for t, _, _ in step_timers(layer, 0.5)] == [0.5]

    trying = make_response(parse_request(request.data), 100)
    event = only(layer.receive(trying, SERVER, 0.75))
    assert event == ResponseReceived(response=trying, peer=SERVER, transaction=txn)
    assert txn.state is State.PROCEEDING
    # the pending E (interval 1 s) runs out, then E is reset to T2 (§17.1.2.2)
    assert [t for t, _, out in step_timers(layer, 10.0) if out] == [1.5, 5.5, 9.5]

    ok = make_response(parse_request(request.data), 200, to_tag="reg")
    assert only(layer.receive(ok, SERVER, 10.0)) == ResponseReceived(response=ok, peer=SERVER, transaction=txn)
    assert txn.state is State.COMPLETED
    assert txn.timers == {"K": 15.0}  # T4; E and F stop
    assert layer.receive(ok, SERVER, 11.0) == []  # a retransmitted final response is absorbed
    assert step_timers(layer, 100.0) == [(15.0, [], [])]
    assert txn.state is State.TERMINATED
    assert_empty(layer)


def test_non_invite_client_with_other_timer_values() -> None:
    layer = new_layer(t1=0.25, t2=2.0, t4=3.0)
    layer.send_request(client_request(), SERVER, 0.0)
    log = step_timers(layer, 100.0)
    assert [t for t, _, out in log if out] == [0.25, 0.75, 1.75, 3.75, 5.75, 7.75, 9.75, 11.75, 13.75, 15.75]
    assert log[-1][0] == 16.0  # 64*T1
    assert_empty(layer)


def test_non_invite_client_on_a_reliable_transport() -> None:
    layer = new_layer()
    tcp = Peer(transport="tcp", host="192.0.2.2", port=5060, connection=7)
    txn = layer.send_request(client_request(transport="TCP"), tcp, 0.0)
    [request] = layer.data_to_send()
    assert request.peer is tcp
    assert txn.timers == {"F": 32.0}  # no Timer E on a reliable transport (§17.1.2.2)
    ok = make_response(parse_request(request.data), 200, to_tag="x")
    assert only(layer.receive(ok, tcp, 1.0)) == ResponseReceived(response=ok, peer=tcp, transaction=txn)
    assert txn.state is State.TERMINATED  # Timer K is zero
    assert_empty(layer)


# -- INVITE client (§17.1.1) -----------------------------------------------------------------------------------

def test_invite_client_retransmits_with_timer_a_and_times_out_with_b() -> None:
    layer = new_layer()
    txn = layer.send_request(client_request("INVITE"), SERVER, 0.0)
    [first] = layer.data_to_send()
    assert txn.state is State.CALLING
    assert txn.timers == {"A": 0.5, "B": 32.0}
    log = step_timers(layer, 100.0)
    assert [t for t, _, out in log if out] == DOUBLING  # A doubles without a cap
    assert all(out[0].data == first.data for _, _, out in log[:-1])
    assert log[-1] == (32.0, [TransactionTimeout(transaction=txn, timer="B")], [])
    assert_empty(layer)


def test_invite_client_acks_a_non_2xx_response_rfc3665_3_2() -> None:
    """RFC 3665 §3.2 F1–F3 over TCP: the 407 reaches the TU, the transaction sends the ACK (§17.1.1.3)."""
    layer = new_layer()
    proxy = Peer(transport="tcp", host="192.0.2.54", port=5060, connection=3)
    f1 = (RFC3665 / "3.2_F1.sip").read_bytes()
    txn = layer.send_request(parse_request(f1), proxy, 0.0)
    assert layer.data_to_send() == [TransportSend(data=f1, peer=proxy)]  # its RFC 3261 branch is kept
    assert txn.timers == {"B": 32.0}  # no Timer A on TCP

    f2 = parse_response((RFC3665 / "3.2_F2.sip").read_bytes())
    assert only(layer.receive(f2, proxy, 0.25)) == ResponseReceived(response=f2, peer=proxy, transaction=txn)
    [ack] = layer.data_to_send()
    assert ack.peer is proxy
    # F3 is the ACK, except that RFC 3665 leaves out the Route the INVITE had (§17.1.1.3 wants it)
    f3 = (RFC3665 / "3.2_F3.sip").read_bytes()
    route = b"Route: <sip:ss1.atlanta.example.com;lr>\r\n"
    assert ack.data == f3.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\n" + route)
    assert txn.state is State.TERMINATED  # Timer D is zero on TCP
    assert_empty(layer)


def test_invite_client_non_2xx_over_udp_retransmits_the_ack_until_timer_d() -> None:
    layer = new_layer()
    txn = layer.send_request(client_request("INVITE"), SERVER, 0.0)
    [invite] = layer.data_to_send()
    invite_request = parse_request(invite.data)
    busy = make_response(invite_request, 486, to_tag="busy1")
    assert only(layer.receive(busy, SERVER, 0.25)) == ResponseReceived(response=busy, peer=SERVER, transaction=txn)
    [ack] = layer.data_to_send()
    assert txn.state is State.COMPLETED
    assert txn.timers == {"D": 32.25}

    ack_request = parse_request(ack.data)
    assert ack_request.method == "ACK"
    assert ack_request.uri_text == invite_request.uri_text
    assert len(ack_request.vias) == 1
    assert ack_request.top_via.branch == invite_request.top_via.branch == "z9hG4bKtest1"
    assert ack_request.to.tag == "busy1"
    assert ack_request.from_.tag == "from1"
    assert ack_request.call_id == invite_request.call_id
    assert str(ack_request.cseq) == "1 ACK"
    assert ack_request.body == b""
    assert ack.data == build_ack(invite_request, busy).to_bytes()

    # a retransmitted final response: the ACK again, byte for byte, and nothing for the TU
    assert layer.receive(busy, SERVER, 1.0) == []
    assert layer.data_to_send() == [ack]
    assert step_timers(layer, 100.0) == [(32.25, [], [])]
    assert_empty(layer)


def test_invite_client_2xx_goes_to_the_tu_and_accepted_absorbs_nothing_rfc6026() -> None:
    layer = new_layer()
    txn = layer.send_request(client_request("INVITE"), SERVER, 0.0)
    invite = parse_request(layer.data_to_send()[0].data)
    ringing = make_response(invite, 180, to_tag="fork1")
    assert only(layer.receive(ringing, SERVER, 0.25)) == ResponseReceived(
        response=ringing, peer=SERVER, transaction=txn)
    assert txn.state is State.PROCEEDING
    assert txn.timers == {}  # neither A nor B runs in Proceeding: the TU's Timer C bounds ringing
    assert layer.get_timer() is None

    ok1 = make_response(invite, 200, to_tag="fork1")
    ok2 = make_response(invite, 200, to_tag="fork2")
    assert only(layer.receive(ok1, SERVER, 10.0)) == ResponseReceived(response=ok1, peer=SERVER, transaction=txn)
    assert layer.data_to_send() == []  # the ACK for a 2xx is the TU's (§13.2.2.4)
    assert txn.state is State.ACCEPTED
    assert txn.timers == {"M": 42.0}
    # RFC 6026 §8.4: retransmissions and 2xx from other forks still reach the TU
    assert only(layer.receive(ok1, SERVER, 10.5)) == ResponseReceived(response=ok1, peer=SERVER, transaction=txn)
    assert only(layer.receive(ok2, SERVER, 11.0)) == ResponseReceived(response=ok2, peer=SERVER, transaction=txn)
    assert layer.receive(make_response(invite, 486, to_tag="fork3"), SERVER, 12.0) == []
    assert step_timers(layer, 100.0) == [(42.0, [], [])]
    assert txn.state is State.TERMINATED
    # an ended transaction may stay referenced (a call leg keeps its INVITE's): no bytes kept for retransmission
    assert txn._data == b""
    # after Timer M a 2xx is a stray: the TU (UA core) may still ACK it
    assert only(layer.receive(ok1, SERVER, 50.0)) == StrayResponse(response=ok1, peer=SERVER)
    assert_empty(layer)


# -- INVITE server (§17.2.1, RFC 6026) -----------------------------------------------------------------------

def test_invite_server_non_2xx_retransmits_with_timer_g_until_h() -> None:
    layer = new_layer()
    invite = wire_request("INVITE")
    txn = receive_new(layer, invite)
    assert txn.state is State.PROCEEDING
    assert layer.receive(wire_request("INVITE"), CLIENT, 0.0) == []  # no response yet: nothing to re-send
    assert layer.data_to_send() == []

    layer.respond(txn, make_response(invite, 486, to_tag="srv"), 0.0)
    [busy] = layer.data_to_send()
    assert busy.peer == CLIENT
    assert txn.state is State.COMPLETED
    assert txn.timers == {"G": 0.5, "H": 32.0}
    log = step_timers(layer, 100.0)
    assert [t for t, _, out in log if out] == DOUBLING_CAPPED  # G doubles up to T2
    assert all(out == [busy] for _, _, out in log[:-1])
    assert log[-1] == (32.0, [TransactionTimeout(transaction=txn, timer="H")], [])
    assert_empty(layer)


def test_invite_server_non_2xx_absorbs_retransmissions_and_acks() -> None:
    layer = new_layer()
    invite = wire_request("INVITE")
    txn = receive_new(layer, invite)
    layer.respond(txn, make_response(invite, 180, to_tag="srv"), 0.0)
    [ringing] = layer.data_to_send()
    assert layer.receive(wire_request("INVITE"), CLIENT, 0.25) == []
    assert layer.data_to_send() == [ringing]  # the last provisional again

    layer.respond(txn, make_response(invite, 486, to_tag="srv"), 1.0)
    [busy] = layer.data_to_send()
    assert layer.receive(wire_request("INVITE"), CLIENT, 1.25) == []
    assert layer.data_to_send() == [busy]  # byte-identical
    layer.respond(txn, make_response(invite, 500, to_tag="srv"), 1.25)  # discarded in Completed
    assert layer.data_to_send() == []

    ack = wire_request("ACK", to_tag="srv")  # same branch as the INVITE: the ACK for the non-2xx
    assert layer.receive(ack, CLIENT, 2.0) == []
    assert txn.state is State.CONFIRMED
    assert txn.timers == {"I": 7.0}  # T4; G and H stop
    assert layer.receive(wire_request("ACK", to_tag="srv"), CLIENT, 3.0) == []  # absorbed
    assert layer.receive(wire_request("INVITE"), CLIENT, 3.0) == []
    assert layer.data_to_send() == []
    assert step_timers(layer, 100.0) == [(7.0, [], [])]
    assert_empty(layer)


def test_invite_server_2xx_accepted_state_rfc6026() -> None:
    layer = new_layer()
    invite = wire_request("INVITE")
    txn = receive_new(layer, invite)
    ok = make_response(invite, 200, to_tag="srv")
    layer.respond(txn, ok, 0.5)
    [sent] = layer.data_to_send()
    assert txn.state is State.ACCEPTED
    assert txn.timers == {"L": 32.5}  # no G: 2xx retransmission is the TU's job

    # retransmitted INVITEs are absorbed, not answered and not passed up (RFC 6026 §7.1)
    assert layer.receive(wire_request("INVITE"), CLIENT, 1.0) == []
    assert layer.data_to_send() == []
    # the TU retransmits its 2xx through the transaction while it is Accepted
    layer.respond(txn, ok, 1.0)
    assert layer.data_to_send() == [sent]
    # an ACK with the INVITE's branch (a stateless or RFC 2543 peer) goes to the TU
    same_branch_ack = wire_request("ACK", to_tag="srv")
    assert only(layer.receive(same_branch_ack, CLIENT, 1.5)) == AckReceived(request=same_branch_ack, peer=CLIENT)
    # the ordinary ACK for a 2xx has a branch of its own: no transaction at all
    ack = wire_request("ACK", branch="z9hG4bKack", to_tag="srv")
    assert only(layer.receive(ack, CLIENT, 1.5)) == AckReceived(request=ack, peer=CLIENT)
    assert txn.state is State.ACCEPTED
    layer.respond(txn, make_response(invite, 486, to_tag="srv"), 2.0)  # a non-2xx after a 2xx: dropped
    assert layer.data_to_send() == []

    assert step_timers(layer, 100.0) == [(32.5, [], [])]
    assert txn.state is State.TERMINATED
    assert txn.responded and txn._response == b""  # nothing kept to re-send
    layer.respond(txn, ok, 33.0)  # too late: dropped (the TU uses send_stateless now)
    assert_empty(layer)


def test_invite_server_sends_100_trying_when_the_tu_is_slow() -> None:
    layer = new_layer(trying_delay=0.2)
    invite = wire_request("INVITE", extra="Timestamp: 54\r\n")
    txn = receive_new(layer, invite)
    assert layer.get_timer() == 0.2
    [(at, events, [trying])] = step_timers(layer, 0.2)
    assert (at, events, trying.peer) == (0.2, [], CLIENT)
    response = parse_response(trying.data)
    assert response.status == 100
    assert response.to.tag is None
    assert response.headers.get("timestamp") == "54"
    assert response.top_via.branch == "z9hG4bKabc"
    assert layer.receive(wire_request("INVITE"), CLIENT, 0.5) == []
    assert layer.data_to_send() == [trying]
    layer.respond(txn, make_response(invite, 603, to_tag="srv"), 1.0)
    assert layer.receive(wire_request("ACK", to_tag="srv"), CLIENT, 1.5) == []
    step_timers(layer, 100.0)
    assert_empty(layer)


def test_invite_server_sends_no_100_when_the_tu_answers_in_time() -> None:
    layer = new_layer(trying_delay=0.2)
    invite = wire_request("INVITE")
    txn = receive_new(layer, invite)
    layer.respond(txn, make_response(invite, 180, to_tag="srv"), 0.1)
    [ringing] = layer.data_to_send()
    assert parse_response(ringing.data).status == 180
    assert layer.get_timer() is None
    assert layer.handle_timer(0.2) == []
    assert layer.data_to_send() == []


def test_invite_server_on_a_reliable_transport_rfc3665_3_2() -> None:
    """RFC 3665 §3.2 F1–F3 seen by the proxy: responses on the same connection, no Timer G, I is zero."""
    layer = new_layer()
    alice = Peer(transport="tcp", host="192.0.2.101", port=49152, connection=9)
    invite = parse_request((RFC3665 / "3.2_F1.sip").read_bytes())
    txn = receive_new(layer, invite, alice)
    f2_bytes = (RFC3665 / "3.2_F2.sip").read_bytes()
    f2 = parse_response(f2_bytes)
    # the transport stamped received= (§18.2.1, the sent-by is a domain name): F2 copies that Via
    assert invite.vias == f2.vias
    assert make_response(invite, 407).top_via == f2.top_via

    layer.respond(txn, f2, 0.25)
    assert layer.data_to_send() == [TransportSend(data=f2_bytes, peer=alice)]
    assert txn.timers == {"H": 32.25}
    f3 = parse_request((RFC3665 / "3.2_F3.sip").read_bytes())
    assert layer.receive(f3, alice, 0.5) == []
    assert txn.state is State.TERMINATED  # Confirmed, then Timer I of zero
    assert_empty(layer)


# -- non-INVITE server (§17.2.2) -----------------------------------------------------------------------------

def test_non_invite_server_absorbs_retransmissions_and_waits_for_timer_j() -> None:
    layer = new_layer()
    register = wire_request()
    txn = receive_new(layer, register)
    assert txn.state is State.TRYING
    assert txn.timers == {"unanswered": 32.0}
    assert layer.receive(wire_request(), CLIENT, 0.5) == []
    assert layer.data_to_send() == []  # nothing to re-send in Trying

    layer.respond(txn, make_response(register, 100), 0.75)
    [trying] = layer.data_to_send()
    assert txn.state is State.PROCEEDING
    assert layer.receive(wire_request(), CLIENT, 1.0) == []
    assert layer.data_to_send() == [trying]

    layer.respond(txn, make_response(register, 200, to_tag="reg"), 1.5)
    [ok] = layer.data_to_send()
    assert txn.state is State.COMPLETED
    assert txn.timers == {"J": 33.5}
    assert layer.receive(wire_request(), CLIENT, 2.0) == []
    assert layer.data_to_send() == [ok]
    layer.respond(txn, make_response(register, 500), 2.0)  # §17.2.2: later finals are discarded
    assert layer.data_to_send() == []
    assert step_timers(layer, 100.0) == [(33.5, [], [])]
    assert_empty(layer)
    # once the transaction is gone, the same request is a new one
    assert isinstance(only(layer.receive(wire_request(), CLIENT, 40.0)), RequestReceived)


def test_non_invite_server_on_a_reliable_transport_terminates_at_once() -> None:
    layer = new_layer()
    tcp = Peer(transport="tcp", host="203.0.113.9", port=40123, connection=5)
    register = wire_request(transport="TCP")
    txn = receive_new(layer, register, tcp)
    layer.respond(txn, make_response(register, 200, to_tag="reg"), 0.25)
    [ok] = layer.data_to_send()
    assert ok.peer is tcp  # the same connection, whatever the Via says (§18.2.2)
    assert txn.state is State.TERMINATED
    assert_empty(layer)


def test_non_invite_server_left_unanswered_is_dropped() -> None:
    layer = new_layer(unanswered_limit=10.0)
    txn = receive_new(layer, wire_request())
    assert step_timers(layer, 100.0) == [(10.0, [TransactionTimeout(transaction=txn, timer="unanswered")], [])]
    assert_empty(layer)


# -- CANCEL (§9) -------------------------------------------------------------------------------------------------

def test_build_cancel_follows_section_9_1() -> None:
    f1 = parse_request((RFC3665 / "3.2_F1.sip").read_bytes())
    cancel = build_cancel(f1)
    assert cancel.to_bytes() == (
        b"CANCEL sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74b43\r\n"
        b"Max-Forwards: 70\r\n"
        b"Route: <sip:ss1.atlanta.example.com;lr>\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>\r\n"
        b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
        b"CSeq: 1 CANCEL\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_cancel_needs_a_provisional_response() -> None:
    layer = new_layer()
    invite = layer.send_request(client_request("INVITE"), SERVER, 0.0)
    with pytest.raises(SipUsageError):
        layer.cancel_request(invite, 0.1)  # §9.1: wait for a provisional response
    register = layer.send_request(client_request(), SERVER, 0.0)
    with pytest.raises(SipUsageError):
        layer.cancel_request(register, 0.1)


def test_cancel_of_an_unknown_invite() -> None:
    layer = new_layer()
    cancel = wire_request("CANCEL")
    event = only(layer.receive(cancel, CLIENT, 0.0))
    assert isinstance(event, CancelReceived)
    assert event.invite is None  # the TU answers 481 (§9.2)
    layer.respond(event.transaction, make_response(cancel, 481, to_tag="x"), 0.0)
    assert parse_response(layer.data_to_send()[0].data).status == 481


# -- a client and a server wired together in memory, with loss injection ----------------------------------------

class Pair:
    """A UA's layer and a server's layer exchanging datagrams in memory; the first N in each direction
    are lost (or those a ``drop`` predicate picks); ``answer`` plays the server's TU."""

    def __init__(self, answer: Callable[[Pair, Event, float], None], *, drop_to_server: int = 0,
                 drop_to_client: int = 0, lose: Callable[[str, int], bool] | None = None) -> None:
        self.client = new_layer()
        self.server = new_layer()
        self.answer = answer
        self.drop = {"c2s": drop_to_server, "s2c": drop_to_client}
        self.lose = lose
        self.sent: dict[str, list[tuple[float, str]]] = {"c2s": [], "s2c": []}
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []

    def _lost(self, direction: str) -> bool:
        if self.lose is not None:
            return self.lose(direction, len(self.sent[direction]) - 1)
        if self.drop[direction] > 0:
            self.drop[direction] -= 1
            return True
        return False

    def _log(self, direction: str, data: bytes, now: float) -> None:
        msg = parse(data)
        what = msg.method if isinstance(msg, Request) else str(msg.status)
        self.sent[direction].append((now, what))

    def flush(self, now: float) -> None:
        moved = True
        while moved:
            moved = False
            for out in self.client.data_to_send():
                moved = True
                assert out.peer == SERVER
                self._log("c2s", out.data, now)
                if not self._lost("c2s"):
                    self.server_got(self.server.receive(parse(out.data), CLIENT, now), now)
            for out in self.server.data_to_send():
                moved = True
                assert out.peer == CLIENT  # rport: back to the source address
                self._log("s2c", out.data, now)
                if not self._lost("s2c"):
                    self.client_events += self.client.receive(parse(out.data), SERVER, now)

    def server_got(self, events: list[Event], now: float) -> None:
        for event in events:
            self.server_events.append(event)
            self.answer(self, event, now)

    def run(self, until: float = 1000.0) -> float:
        """Advance the fake clock from deadline to deadline until nothing is left; returns the last time."""
        now = 0.0
        self.flush(now)
        while True:
            deadlines = [t for t in (self.client.get_timer(), self.server.get_timer()) if t is not None]
            if not deadlines or min(deadlines) > until:
                return now
            now = min(deadlines)
            self.client_events += self.client.handle_timer(now)
            self.flush(now)
            self.server_got(self.server.handle_timer(now), now)
            self.flush(now)


def answer_with(status: int) -> Callable[[Pair, Event, float], None]:
    def answer(pair: Pair, event: Event, now: float) -> None:
        if isinstance(event, RequestReceived):
            pair.server.respond(event.transaction, make_response(event.request, status, to_tag="srv"), now)
    return answer


def statuses(events: list[Event]) -> list[int]:
    return [e.response.status for e in events if isinstance(e, ResponseReceived)]


def test_register_survives_lost_requests_and_a_lost_response() -> None:
    pair = Pair(answer_with(200), drop_to_server=2, drop_to_client=1)
    txn = pair.client.send_request(client_request(), SERVER, 0.0)
    end = pair.run()
    # lost at 0 and 0.5, delivered at 1.5; the 200 is lost; the retransmission at 3.5 gets it re-sent
    assert pair.sent["c2s"] == [(0.0, "REGISTER"), (0.5, "REGISTER"), (1.5, "REGISTER"), (3.5, "REGISTER")]
    assert pair.sent["s2c"] == [(1.5, "200"), (3.5, "200")]
    assert statuses(pair.client_events) == [200]
    assert [type(e) for e in pair.server_events] == [RequestReceived]  # the TU saw it once
    assert txn.state is State.TERMINATED
    assert end == 33.5  # the server's Timer J: 1.5 + 64*T1
    assert_empty(pair.client, pair.server)


@pytest.mark.parametrize(("lost", "transmissions", "completed"), [
    (0, 1, True), (3, 4, True), (10, 11, True), (11, 11, False),
])
def test_register_under_loss_of_the_first_n_requests(lost: int, transmissions: int, completed: bool) -> None:
    pair = Pair(answer_with(200), drop_to_server=lost)
    pair.client.send_request(client_request(), SERVER, 0.0)
    pair.run()
    assert len(pair.sent["c2s"]) == transmissions
    if completed:
        assert statuses(pair.client_events) == [200]
    else:
        assert [e.timer for e in pair.client_events if isinstance(e, TransactionTimeout)] == ["F"]
        assert pair.server_events == []
    assert_empty(pair.client, pair.server)


def test_rejected_invite_survives_a_lost_response() -> None:
    pair = Pair(answer_with(486), drop_to_client=1)
    txn = pair.client.send_request(client_request("INVITE"), SERVER, 0.0)
    end = pair.run()
    # the 486 is lost; at 0.5 the client's Timer A re-sends the INVITE first, which the server answers
    # with the 486 again, the ACK follows, and the server's Timer G (also due at 0.5) has been stopped
    assert pair.sent["c2s"] == [(0.0, "INVITE"), (0.5, "INVITE"), (0.5, "ACK")]
    assert pair.sent["s2c"] == [(0.0, "486"), (0.5, "486")]
    assert statuses(pair.client_events) == [486]
    assert [type(e) for e in pair.server_events] == [RequestReceived]
    assert txn.state is State.TERMINATED
    assert end == 32.5  # the client's Timer D
    assert_empty(pair.client, pair.server)


def test_invite_cancelled_after_ringing() -> None:
    def answer(pair: Pair, event: Event, now: float) -> None:
        if isinstance(event, RequestReceived):
            pair.server.respond(event.transaction, make_response(event.request, 180, to_tag="srv"), now)
        elif isinstance(event, CancelReceived):
            assert event.invite is not None
            pair.server.respond(event.transaction, make_response(event.request, 200, to_tag="srv"), now)
            pair.server.respond(event.invite, make_response(event.invite.request, 487, to_tag="srv"), now)

    pair = Pair(answer)
    invite = pair.client.send_request(client_request("INVITE"), SERVER, 0.0)
    pair.flush(0.0)
    assert statuses(pair.client_events) == [180]
    cancel = pair.client.cancel_request(invite, 1.0)
    assert cancel.request.top_via.branch == invite.request.top_via.branch
    assert cancel.key != invite.key
    pair.flush(1.0)
    assert [type(e) for e in pair.server_events] == [RequestReceived, CancelReceived]
    received = pair.server_events[1]
    assert isinstance(received, CancelReceived) and received.invite is not None
    assert received.invite.request.method == "INVITE"
    assert [(e.response.status, e.transaction) for e in pair.client_events if isinstance(e, ResponseReceived)
            ] == [(180, invite), (200, cancel), (487, invite)]
    assert pair.sent["c2s"] == [(0.0, "INVITE"), (1.0, "CANCEL"), (1.0, "ACK")]
    assert received.invite.state is State.CONFIRMED
    pair.run()
    assert_empty(pair.client, pair.server)


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(0, 12)), st.sets(st.integers(0, 12)), st.sampled_from(["REGISTER", "INVITE"]))
def test_any_loss_pattern_leaves_consistent_ends(lost_c2s: set[int], lost_s2c: set[int], method: str) -> None:
    lost = {"c2s": lost_c2s, "s2c": lost_s2c}
    pair = Pair(answer_with(200 if method == "REGISTER" else 486), lose=lambda d, n: n in lost[d])
    pair.client.send_request(client_request(method), SERVER, 0.0)
    pair.run()
    finals = [s for s in statuses(pair.client_events) if s >= 200]
    timeouts = [e for e in pair.client_events if isinstance(e, TransactionTimeout)]
    assert len(finals) + len(timeouts) == 1  # exactly one outcome for the TU
    assert len([e for e in pair.server_events if isinstance(e, RequestReceived)]) <= 1
    if finals:
        assert pair.server_events
    requests = [what for _, what in pair.sent["c2s"] if what == method]
    assert len(requests) <= (11 if method == "REGISTER" else 7)
    assert_empty(pair.client, pair.server)


# -- matching (§17.1.3, §17.2.3) ---------------------------------------------------------------------------

@pytest.mark.parametrize(("branch", "valid"), [
    ("z9hG4bK", False), ("z9hG4bK1", True), ("z9hG4bKnashds8", True), ("Z9HG4BKabc", False), ("abc", False),
    (None, False), ("", False),
])
def test_rfc3261_branch(branch: str | None, valid: bool) -> None:
    assert is_rfc3261_branch(branch) is valid


def test_badbranch_rfc4475_is_matched_the_rfc2543_way() -> None:
    data = (RFC4475 / "badbranch.dat").read_bytes()
    layer = new_layer()
    first = parse_request(data)
    txn = receive_new(layer, first, CLIENT)
    assert txn.rfc2543
    assert layer.receive(parse_request(data), CLIENT, 0.25) == []  # its retransmission
    # another request with the same bare cookie is another transaction, not a retransmission
    other = parse_request(data.replace(b"Call-ID: badbranch.", b"Call-ID: other."))
    assert receive_new(layer, other, CLIENT, 0.25) is not txn
    assert len(layer) == 2
    # and so is one with the same Call-ID but a new CSeq
    assert receive_new(layer, parse_request(data.replace(b"CSeq: 8", b"CSeq: 9")), CLIENT, 0.25) is not txn
    assert len(layer) == 3

    layer.respond(txn, make_response(first, 200, to_tag="t1"), 0.5)
    [ok] = layer.data_to_send()
    assert layer.receive(parse_request(data), CLIENT, 1.0) == []
    assert layer.data_to_send() == [ok]
    # a request that differs in the To tag is not a retransmission (§17.2.3)
    tagged = parse_request(data.replace(b"To: sip:user@example.com", b"To: sip:user@example.com;tag=zz"))
    assert receive_new(layer, tagged, CLIENT, 1.0) is not txn


def test_rfc2543_invite_and_its_ack_are_matched_without_a_branch() -> None:
    layer = new_layer()
    invite = wire_request("INVITE", branch=None)
    txn = receive_new(layer, invite)
    assert txn.rfc2543
    assert layer.receive(wire_request("INVITE", branch=None), CLIENT, 0.25) == []
    layer.respond(txn, make_response(invite, 486, to_tag="srv"), 0.5)
    [busy] = layer.data_to_send()
    assert layer.receive(wire_request("INVITE", branch=None), CLIENT, 0.75) == []
    assert layer.data_to_send() == [busy]
    # §17.2.3: the ACK matches when its To tag is that of the response the transaction sent
    stranger = wire_request("ACK", branch=None, to_tag="other")
    assert only(layer.receive(stranger, CLIENT, 1.0)) == AckReceived(request=stranger, peer=CLIENT)
    assert txn.state is State.COMPLETED
    assert layer.receive(wire_request("ACK", branch=None, to_tag="srv"), CLIENT, 1.0) == []
    assert txn.state is State.CONFIRMED
    step_timers(layer, 100.0)
    assert_empty(layer)


def test_server_matching_uses_sent_by_and_method() -> None:
    layer = new_layer()
    txn = receive_new(layer, wire_request())
    # same branch from another sent-by: another transaction (§17.2.3)
    assert receive_new(layer, wire_request(via="192.0.2.99:5060")) is not txn
    # same branch, another method: another transaction
    assert receive_new(layer, wire_request("OPTIONS")) is not txn
    assert len(layer) == 3


def test_responses_match_client_transactions_by_branch_and_method() -> None:
    layer = new_layer()
    txn = layer.send_request(client_request(), SERVER, 0.0)
    request = parse_request(layer.data_to_send()[0].data)
    ok = make_response(request, 200, to_tag="x")
    wrong_method = parse_response(ok.to_bytes().replace(b"CSeq: 1 REGISTER", b"CSeq: 1 OPTIONS"))
    assert only(layer.receive(wrong_method, SERVER, 0.1)) == StrayResponse(response=wrong_method, peer=SERVER)
    wrong_branch = parse_response(ok.to_bytes().replace(b"z9hG4bKtest1", b"z9hG4bKtest2"))
    assert only(layer.receive(wrong_branch, SERVER, 0.1)) == StrayResponse(response=wrong_branch, peer=SERVER)
    assert txn.state is State.TRYING
    assert isinstance(only(layer.receive(ok, SERVER, 0.2)), ResponseReceived)


# -- the top Via: received, rport, where responses go (§18.2, RFC 3581) ---------------------------------------

def test_stamp_via_leaves_a_matching_via_byte_exact() -> None:
    request = wire_request()
    raw = request.to_bytes()
    assert stamp_via(request, CLIENT) is request
    assert request.to_bytes() == raw
    assert response_peer(request, CLIENT) is CLIENT


def test_stamp_via_adds_received_when_the_source_differs() -> None:
    request = wire_request(via="pc33.example.com:5070")
    source = Peer(transport="udp", host="198.51.100.7", port=5070)
    stamp_via(request, source)
    assert request.top_via.received == "198.51.100.7"
    assert b"Via: SIP/2.0/UDP pc33.example.com:5070;branch=z9hG4bKabc;received=198.51.100.7\r\n" in (
        request.to_bytes())
    assert parse_request(request.to_bytes()).vias == request.vias
    assert make_response(request, 200).top_via.received == "198.51.100.7"
    # no rport: to received, at the sent-by port (§18.2.2)
    assert response_peer(request, source) == source
    behind_nat = Peer(transport="udp", host="198.51.100.7", port=40000)
    assert response_peer(request, behind_nat) == Peer(transport="udp", host="198.51.100.7", port=5070)


def test_stamp_via_fills_rport_and_always_adds_received_rfc3581() -> None:
    request = wire_request(via="192.0.2.1:5060;rport")
    nat = Peer(transport="udp", host="192.0.2.1", port=40000)
    assert response_peer(request, nat) is nat  # an unfilled rport: the source
    stamp_via(request, nat)
    assert b"Via: SIP/2.0/UDP 192.0.2.1:5060;rport=40000;branch=z9hG4bKabc;received=192.0.2.1\r\n" in (
        request.to_bytes())
    assert response_peer(request, nat) == nat
    stamp_via(request, nat)  # idempotent
    assert request.to_bytes().count(b"rport") == 1
    # a stamped Via routes the response by itself (say, for a response sent statelessly later)
    assert response_peer(request, CLIENT) == nat


def test_stamp_via_changes_only_the_top_via() -> None:
    text = wire_request().to_bytes().replace(
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n",
        b"v: SIP/2.0/UDP host.example.com;rport;branch=z9hG4bKabc, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKold\r\n"
        b"Via: SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKolder\r\n",
    )
    request = parse_request(text)
    stamp_via(request, Peer(transport="udp", host="192.0.2.1", port=5060))
    assert (b"v: SIP/2.0/UDP host.example.com;rport=5060;branch=z9hG4bKabc;received=192.0.2.1, "
            b"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKold\r\nVia: SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKolder\r\n"
            ) in request.to_bytes()
    assert [v.branch for v in parse_request(request.to_bytes()).vias] == [
        "z9hG4bKabc", "z9hG4bKold", "z9hG4bKolder"]


def test_response_peer_on_a_reliable_transport_is_the_connection() -> None:
    tcp = Peer(transport="tcp", host="203.0.113.9", port=40123, connection=5)
    assert response_peer(wire_request(transport="TCP", via="10.0.0.1:5060"), tcp) is tcp


def test_response_peer_defaults_to_port_5060_and_honours_maddr() -> None:
    request = wire_request(via="pc33.example.com;received=198.51.100.7")
    source = Peer(transport="udp", host="198.51.100.7", port=1234)
    assert response_peer(request, source) == Peer(transport="udp", host="198.51.100.7", port=5060)
    multicast = wire_request(via="pc33.example.com:5070;maddr=239.255.255.1")
    assert response_peer(multicast, source) == Peer(transport="udp", host="239.255.255.1", port=5070)


def test_the_layer_answers_to_the_nat_address() -> None:
    layer = new_layer()
    nat = Peer(transport="udp", host="203.0.113.50", port=61000)
    request = wire_request(via="10.0.0.5:5060;rport")
    txn = receive_new(layer, request, nat)
    assert txn.peer == nat
    layer.respond(txn, make_response(request, 200, to_tag="x"), 0.0)
    [ok] = layer.data_to_send()
    assert ok.peer == nat
    assert parse_response(ok.data).top_via.params == {
        "rport": "61000", "branch": "z9hG4bKabc", "received": "203.0.113.50"}


# -- the layer as a whole --------------------------------------------------------------------------------------

def test_send_request_misuse() -> None:
    layer = new_layer()
    with pytest.raises(SipUsageError):
        layer.send_request(wire_request("ACK"), SERVER, 0.0)
    with pytest.raises(SipUsageError):
        layer.send_request(wire_request(branch="1234"), SERVER, 0.0)  # not an RFC 3261 branch
    layer.send_request(wire_request(), SERVER, 0.0)
    with pytest.raises(SipUsageError):
        layer.send_request(wire_request(), SERVER, 0.0)  # the same branch twice
    client = layer.send_request(client_request(), SERVER, 0.0)
    with pytest.raises(SipUsageError):
        layer.respond(client, Response(200), 0.0)  # type: ignore[arg-type]
    server = receive_new(layer, wire_request("OPTIONS"))
    with pytest.raises(SipUsageError):
        layer.respond(server, Response(700), 0.0)


def test_branch_factory_output_gets_the_magic_cookie_once() -> None:
    layer = TransactionLayer(branch_factory=lambda: "z9hG4bKready")
    layer.send_request(client_request(), SERVER, 0.0)
    assert parse_request(layer.data_to_send()[0].data).top_via.branch == "z9hG4bKready"


def test_send_stateless_and_transport_error() -> None:
    layer = new_layer()
    ack = wire_request("ACK", branch="z9hG4bKack2xx", to_tag="srv")
    layer.send_stateless(ack, SERVER)
    assert layer.data_to_send() == [TransportSend(data=ack.to_bytes(), peer=SERVER)]
    txn = layer.send_request(client_request("INVITE"), SERVER, 0.0)
    layer.data_to_send()
    assert layer.transport_error(txn, 0.1) == [TransportError(transaction=txn)]
    assert layer.transport_error(txn, 0.2) == []
    assert_empty(layer)


def test_cancelled_timers_are_compacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transaction_module, "_COMPACT_MIN", 3)
    layer = new_layer()
    requests = [wire_request(branch=f"z9hG4bK{n}") for n in range(10)]
    txns = [receive_new(layer, r) for r in requests]
    for request, txn in zip(requests, txns, strict=True):
        layer.respond(txn, make_response(request, 200, to_tag="x"), 1.0)  # stops "unanswered", starts J
    assert len(layer.data_to_send()) == 10
    assert len(layer._heap) == 10  # the ten cancelled guards were dropped
    assert layer._stale == 0
    assert step_timers(layer, 100.0) == [(33.0, [], [])]  # the ten Timers J
    assert_empty(layer)


def test_many_transactions_leave_nothing_behind() -> None:
    layer = new_layer(trying_delay=0.2)
    for n in range(200):
        request = wire_request("INVITE" if n % 2 else "REGISTER", branch=f"z9hG4bKmany{n}")
        txn = receive_new(layer, request, CLIENT, n / 100)
        layer.respond(txn, make_response(request, 200 if n % 4 else 404, to_tag="x"), n / 100)
    assert len(layer) == 200
    step_timers(layer, 1000.0)
    assert_empty(layer)


@pytest.mark.parametrize("module", [transaction_module, transaction_machines, transaction_messages,
                                    transaction_events])
def test_modules_are_sans_io(module: Any) -> None:
    tree = ast.parse(Path(module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert not imported & {"asyncio", "socket", "time", "random", "os", "secrets", "selectors"}


def test_handles_are_the_transactions() -> None:
    layer = new_layer()
    client = layer.send_request(client_request(), SERVER, 0.0)
    assert isinstance(client, ClientTransaction)
    assert "REGISTER" in repr(client) and "Trying" in repr(client)
