"""sips: URIs (RFC 3261 §26.2, RFC 5630): a sips: Request-URI, or a REGISTER binding a sips: Contact, is
taken over TLS only (416 on any other transport, before any other handling: §8.2.2.1's place), and our
Contact in a dialog with a sips: peer is a sips: URI (§12.1.1), reached over TLS only. And the same rule
for trunks: a TLS trunk's calls are taken over TLS only (its address alone proves nothing on UDP).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from callengine_harness import Device

from zvonok.sip.message import Request, parse_datagram
from zvonok.sip.peer import Peer
from zvonok.sip.uas import check_request, is_sips
from zvonok.sip.uri import parse_uri
from zvonok.telephony.b2bua import CallEngine

METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER")


def request(method: str, uri: str, contact: str) -> Request:
    raw = (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.7:5061;branch=z9hG4bK74bf9\r\nMax-Forwards: 70\r\n"
           f"From: <sips:101@example.com>;tag=9fxced76sl\r\nTo: <{uri}>\r\nCall-ID: 3848276298220188511@a\r\n"
           f"CSeq: 1 {method}\r\nContact: {contact}\r\nContent-Length: 0\r\n\r\n").encode()
    message = parse_datagram(raw)
    assert isinstance(message, Request)
    return message


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS", "BYE", "REGISTER"])
def test_sips_request_uri_over_a_plain_transport_is_416(method: str) -> None:
    message = request(method, "sips:102@example.com", "<sips:101@192.0.2.7:5061>")
    refused = check_request(message, allowed_methods=METHODS, secure=False, to_tag="t")
    assert refused is not None and refused.status == 416
    assert check_request(message, allowed_methods=METHODS, secure=True, to_tag="t") is None


def test_register_binding_a_sips_contact_only_over_tls() -> None:
    message = request("REGISTER", "sip:example.com", "<sip:101@192.0.2.7:5060>, <sips:101@192.0.2.7:5061>")
    refused = check_request(message, allowed_methods=METHODS, secure=False, to_tag="t")
    assert refused is not None and refused.status == 416
    assert check_request(message, allowed_methods=METHODS, secure=True) is None
    plain = request("REGISTER", "sip:example.com", "<sip:101@192.0.2.7:5060>")
    assert check_request(plain, allowed_methods=METHODS, secure=False) is None
    wildcard = request("REGISTER", "sip:example.com", "*")
    assert check_request(wildcard, allowed_methods=METHODS, secure=False) is None


def test_sip_uri_over_tls_is_fine_and_ack_is_never_answered() -> None:
    assert check_request(request("INVITE", "sip:102@example.com", "<sip:101@192.0.2.7>"), allowed_methods=METHODS,
                         secure=True) is None
    assert check_request(request("ACK", "sips:102@example.com", "<sips:101@192.0.2.7>"), allowed_methods=METHODS,
                         secure=False) is None


def test_is_sips() -> None:
    assert is_sips(parse_uri("sips:102@example.com")) and is_sips(parse_uri("SIPS:102@example.com"))
    assert not is_sips(parse_uri("sip:102@example.com;transport=tls")) and not is_sips(parse_uri("tel:+74951234567"))


def test_our_contact_is_sips_in_a_sips_dialog_over_tls() -> None:
    engine = SimpleNamespace(sip=SimpleNamespace(local_host="203.0.113.10",
                                                 port_for=lambda transport: 5061 if transport == "tls" else 5060))
    tls = Peer(transport="tls", host="192.0.2.7", port=40000, connection=1)
    udp = Peer(transport="udp", host="192.0.2.7", port=5060)
    assert CallEngine.contact(engine, tls, sips=True) == "<sips:zvonok@203.0.113.10:5061>"  # type: ignore[arg-type]
    assert CallEngine.contact(engine, tls) == "<sip:zvonok@203.0.113.10:5061;transport=tls>"  # type: ignore[arg-type]
    assert CallEngine.contact(engine, udp, sips=True) == "<sip:zvonok@203.0.113.10:5060>"  # type: ignore[arg-type]


# -- the call engine (tests/unit/callengine_harness.py) --------------------------------------------------------
def _tls(h: Any, device: Any) -> Any:
    """Make ``device`` a phone on TLS with a sips: contact binding (its registration came over TLS)."""
    from callengine_harness import DOMAIN, TENANT

    from zvonok.telephony.location import Binding
    device.peer = Peer(transport="tls", host=device.peer.host, port=45061)
    info = h.directory.extensions[(TENANT, device.number)]
    h.location.put(Binding(tenant_id=TENANT, extension_id=info.extension_id, aor=f"sips:{device.number}@{DOMAIN}",
                           contact=f"sips:{device.number}@{device.peer.host}:{device.peer.port}", expires_at=4e9,
                           source=f"tls:{device.peer.host}:{device.peer.port}", call_id=f"reg-tls-{device.number}"))
    return device


def test_sips_call_rings_only_tls_devices_with_sips_contacts() -> None:
    from callengine_harness import DOMAIN, Harness, _via

    with Harness(srtp_policy="off") as h:  # SDES keys are tested elsewhere; here only the URIs
        (alice,) = h.extension("101")
        _tls(h, alice)
        bob_udp = h.extension("102")[0]
        bob_tls = _tls(h, Device("102", Peer(transport="udp", host="198.51.100.99", port=5060)))
        request = h._invite(alice, f"sips:102@{DOMAIN}", "101")
        request.headers.set("Contact", f"<sips:101@{alice.peer.host}:{alice.peer.port}>")
        request.headers.remove("via")
        _via(request, alice.peer)
        call = h._send_invite(alice, request)
        assert h.invites_to(bob_udp) == []  # a sips: call never reaches a device over UDP
        (fork,) = h.invites_to(bob_tls)
        assert fork.request.uri_text.startswith("sips:102@")
        assert fork.request.headers.get("contact") == "<sips:zvonok@192.0.2.10:5061>"
        h.reply(fork, 180)
        h.reply(fork, 200)
        assert call.final_status() == 200
        contacts = {r.headers.get("contact") for r in call.txn.responses if r.status > 100}
        assert contacts == {"<sips:zvonok@192.0.2.10:5061>"}  # §12.1.1: a sips: Request-URI, a sips: Contact


def test_sips_call_to_an_extension_without_tls_devices_is_480() -> None:
    from callengine_harness import DOMAIN, Harness, _via

    with Harness(srtp_policy="off") as h:  # SDES keys are tested elsewhere; here only the URIs
        (alice,) = h.extension("101")
        _tls(h, alice)
        h.extension("102")
        request = h._invite(alice, f"sips:102@{DOMAIN}", "101")
        request.headers.remove("via")
        _via(request, alice.peer)
        call = h._send_invite(alice, request)
        assert call.final_status() == 480


def test_a_tls_trunk_takes_calls_over_tls_only() -> None:
    import dataclasses

    from callengine_harness import Harness

    with Harness(srtp_policy="off") as h:
        info, carrier = h.trunk()
        h.trunks.snapshot.trunks[info.id] = dataclasses.replace(info, transport="tls")
        (desk,) = h.extension("101")
        h.did("+74950000001", "extension", {"number": "101"})
        forged = h.call_from_trunk(carrier, "+79161234567", "+74950000001")  # over UDP from its address
        assert forged.final_status() == 403 and h.invites_to(desk) == []
        carrier.peer = Peer(transport="tls", host=carrier.peer.host, port=5061, connection=3)
        call = h.call_from_trunk(carrier, "+79161234567", "+74950000001")
        assert call.final_status() is None and len(h.invites_to(desk)) == 1  # ringing the desk
