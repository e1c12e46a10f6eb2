"""Which INVITEs a trunk's allow-list admits: never one answering our digest challenge, and a tenant's
trunk never one addressed to another tenant's domain (a PBX of company B trusting a range that holds
company A's phones must not take their calls)."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest

from zvonok.pstn.routing import NumberInfo, PstnSnapshot, TenantInfo, TrunkInfo, networks
from zvonok.sip.message import Request, parse_datagram
from zvonok.sip.peer import Peer
from zvonok.telephony.auth import Authenticator
from zvonok.telephony.outside import Outside

A, B = 1, 2
A_NUMBER, B_NUMBER = "+74951110001", "+74952220002"
PHONES = Peer(transport="udp", host="127.0.0.1", port=5070)


def _tenant(tenant_id: int, domain: str) -> TenantInfo:
    return TenantInfo(id=tenant_id, domain=domain, timezone="UTC", currency="RUB", locale="ru-RU", suspended=False)


def _trunk(trunk_id: int, tenant_id: int | None, kind: str = "pbx") -> TrunkInfo:
    return TrunkInfo(id=trunk_id, tenant_id=tenant_id, name=f"t{trunk_id}", kind=kind, host="192.0.2.1",
                     address="192.0.2.1", port=5060, transport="udp", inbound=networks(["127.0.0.1"]))


def _engine(trunk: TrunkInfo, default_domain: str | None = "a.example") -> SimpleNamespace:
    """``default_domain``: the server's sip_default_domain, whose a request to our bare IP address is."""
    numbers = {n: NumberInfo(id=i, tenant_id=t, number=n, office_id=None, kind="extension", destination={})
               for i, (n, t) in enumerate([(A_NUMBER, A), (B_NUMBER, B)])}
    snapshot = PstnSnapshot(trunks={trunk.id: trunk}, numbers=numbers,
                            tenants={A: _tenant(A, "a.example"), B: _tenant(B, "B.example")})
    # the real mapping of a Request-URI to a domain, without the rest of an Authenticator
    engine = SimpleNamespace(trunks=SimpleNamespace(snapshot=snapshot), auth=SimpleNamespace(
        domain_of=functools.partial(Authenticator.domain_of, SimpleNamespace(default_domain=default_domain))))
    engine.outside = Outside(engine)  # type: ignore[arg-type]
    return engine


def _invite(uri: str, *extra: str) -> Request:
    raw = (f"INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
           "From: <sip:101@a.example>;tag=1\r\nTo: <sip:102@a.example>\r\nCall-ID: c1\r\nCSeq: 2 INVITE\r\n"
           "Max-Forwards: 70\r\n" + "".join(f"{h}\r\n" for h in extra) + "Content-Length: 0\r\n\r\n")
    request = parse_datagram(raw.encode())
    assert isinstance(request, Request)
    return request


def _credentials(realm: str, header: str = "Proxy-Authorization") -> str:
    return (f'{header}: Digest username="101", realm="{realm}", nonce="n", uri="sip:102@a.example", '
            'response="0123456789abcdef0123456789abcdef"')


@pytest.mark.parametrize(("uri", "headers", "trusted"), [
    # to our bare address: the default domain's (tenant A's) call, as its phones' first INVITE is
    ("sip:102@127.0.0.1", [], False),
    ("sip:102@[::1]", [], False),
    ("sip:102@b.example", [], True),  # to the trunk's own tenant (domains compare case-blind)
    ("sip:102@a.example", [], False),  # to another tenant's domain: a phone's call, challenged
    ("sip:102@127.0.0.1", [_credentials("a.example")], False),  # answers our challenge: a phone
    ("sip:102@127.0.0.1", [_credentials("b.example", "Authorization")], False),
    ("sip:102@b.example", [_credentials("carrier.example")], True),  # not our realm: proves nothing
    ("sip:102@b.example", ["Proxy-Authorization: Digest junk"], True),
], ids=["ip", "ipv6", "own-domain", "other-domain", "our-realm", "our-realm-authorization", "foreign-realm",
        "junk"])
def test_a_tenants_trunk_takes_only_what_is_its_own(uri: str, headers: list[str], trusted: bool) -> None:
    trunk = _trunk(7, B)
    assert _engine(trunk).outside.trunk_for(_invite(uri, *headers), PHONES) == (trunk if trusted else None)


@pytest.mark.parametrize(("default_domain", "trusted"), [
    ("b.example", True),  # the trunk's own tenant is the default one
    (None, True),  # no default domain: a bare address is no tenant's, the allow-list decides
])
def test_a_request_to_our_address_is_the_default_domains(default_domain: str | None, trusted: bool) -> None:
    trunk = _trunk(7, B)
    engine = _engine(trunk, default_domain)
    assert engine.outside.trunk_for(_invite("sip:102@127.0.0.1"), PHONES) == (trunk if trusted else None)


@pytest.mark.parametrize(("kind", "uri", "trusted"), [
    ("carrier", f"sip:{B_NUMBER}@127.0.0.1", True),  # its tenant's number, addressed to our IP as carriers do
    ("carrier", f"sip:{B_NUMBER[1:]}@[::1]", True),
    ("carrier", f"sip:{A_NUMBER}@127.0.0.1", False),  # another tenant's number: not its to take
    ("carrier", "sip:102@127.0.0.1", False),  # no number at all: a phone's call
    ("carrier", f"sip:{B_NUMBER}@a.example", False),  # to another tenant's domain by name
    ("pbx", f"sip:{B_NUMBER}@127.0.0.1", False),  # a PBX addresses its tenant's domain
], ids=["own-number", "own-number-ipv6", "other-number", "extension", "other-domain", "pbx"])
def test_a_tenants_carrier_delivers_its_own_numbers_to_our_address(kind: str, uri: str, trusted: bool) -> None:
    """The default domain is another tenant's, yet the carrier of B delivering B's numbers to our bare
    address is B's trunk (else B's inbound calls would be refused as an unknown carrier's)."""
    trunk = _trunk(7, B, kind)
    assert _engine(trunk).outside.trunk_for(_invite(uri), PHONES) == (trunk if trusted else None)


def test_the_operators_trunk_serves_every_domain_but_not_our_phones() -> None:
    trunk = _trunk(8, None)
    engine = _engine(trunk)
    assert engine.outside.trunk_for(_invite("sip:+74951234567@a.example"), PHONES) == trunk
    assert engine.outside.trunk_for(_invite("sip:102@a.example", _credentials("a.example")), PHONES) is None
    assert engine.outside.trunk_for(_invite("sip:102@a.example"), Peer(transport="udp", host="127.0.0.2", port=5060)) is None
