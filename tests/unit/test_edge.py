"""Zvonok behind an edge proxy: Path (RFC 3327) in the registrar and the call engine, trusted edges.

The REGISTERs are the ones an edge like Kamailio forwards: its own Via on top, the phone's below it (with
``received`` when the phone's sent-by is not where the packet came from), one or more Path headers.
"""

from __future__ import annotations

import pytest
from callengine_harness import DOMAIN as HARNESS_DOMAIN
from callengine_harness import TENANT, Harness
from test_registrar import DOMAIN, NOW, Clock, authorize, make_registrar, register

from zvonok.sip.digest import Algorithm, DigestVerifier, NonceManager
from zvonok.sip.errors import SipParseError
from zvonok.sip.message import Request, Response, parse_datagram
from zvonok.sip.peer import Peer
from zvonok.telephony.auth import Authenticator, CredentialCache
from zvonok.telephony.b2bua import CallEngine
from zvonok.telephony.edge import TrustedEdges, path_of, route_to
from zvonok.telephony.location import Binding, Location
from zvonok.telephony.registrar import Registrar
from zvonok.telephony.throttle import FailureThrottle

EDGE = Peer(transport="udp", host="10.0.0.5", port=5060)
EDGE_PATH = "<sip:10.0.0.5:5060;lr;received=sip:198.51.100.7:40000>"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registrar(clock: Clock) -> Registrar:
    reg = make_registrar(clock)
    reg.auth.edges = TrustedEdges(["10.0.0.0/29"])
    return reg


def via_edge(phone: str = "198.51.100.7", *, sent_by: str | None = None, branch: str = "e1") -> str:
    """The two Via lines of a request the edge relays: its own, then the phone's (with received when the
    phone claimed another address than the one its packet came from)."""
    received = f";received={phone}" if sent_by is not None else ""
    return (f"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKedge{branch}\r\n"
            f"Via: SIP/2.0/UDP {sent_by or phone}:40000;rport=40000{received};branch=z9hG4bKphone{branch}")


def edge_register(vias: str, *, path: list[str] = [], contact: str = "<sip:101@192.168.1.20:5060>",  # noqa: B006
                  expires: str = "600", cseq: int = 1, call_id: str = "reg-edge", auth: str | None = None) -> Request:
    """A REGISTER of 101 as the edge relays it: the Vias given, the Path headers, then the phone's own."""
    lines = [
        f"REGISTER sip:{DOMAIN} SIP/2.0", vias, "Max-Forwards: 69",
        *(f"Path: {p}" for p in path),
        f"From: <sip:101@{DOMAIN}>;tag=f1", f"To: <sip:101@{DOMAIN}>", f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER", f"Contact: {contact}", f"Expires: {expires}",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    msg = parse_datagram(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


async def register_via_edge(reg: Registrar, *, path: list[str], phone: str = "198.51.100.7", cseq: int = 1,
                            call_id: str = "reg-edge", expires: str = "600", password: str = "secret101",
                            contact: str = "<sip:101@192.168.1.20:5060>", sent_by: str | None = None,
                            peer: Peer = EDGE) -> Response:
    """A REGISTER of 101 relayed by the edge: challenged, then sent again with the digest."""
    def build(n: int, auth: str | None) -> Request:
        return edge_register(via_edge(phone, sent_by=sent_by, branch=f"{call_id}{n}"), path=path, contact=contact,
                             expires=expires, cseq=n, call_id=call_id, auth=auth)

    challenge = await reg.handle(build(cseq, None), peer, NOW)
    assert challenge is not None and challenge.status == 401
    response = await reg.handle(build(cseq + 1, authorize(challenge, "101", password)), peer, NOW)
    assert response is not None
    return response


# -- Path in the registrar ----------------------------------------------------------------------------------
async def test_path_is_stored_echoed_and_supported(registrar: Registrar) -> None:
    response = await register_via_edge(registrar, path=[EDGE_PATH])
    assert response.status == 200
    assert response.headers.get_all("path") == [EDGE_PATH]
    assert response.headers.get("supported") == "path"
    (binding,) = registrar.location.lookup(1, 101, NOW)
    assert binding.path == (EDGE_PATH,)
    assert binding.source == "udp:10.0.0.5:5060"  # where the REGISTER came from: the edge
    assert binding.client == "198.51.100.7"  # where the phone is, as the trusted edge recorded it


async def test_several_path_headers_and_a_comma_list_keep_their_order(registrar: Registrar) -> None:
    near, middle, far = ("<sip:10.0.0.5;lr>", "<sip:edge2.example.net;lr;transport=tcp>",
                         "<sip:sbc.example.net:5070;lr>")
    response = await register_via_edge(registrar, path=[near, f"{middle}, {far}"])
    assert response.headers.get_all("path") == [near, middle, far]
    (binding,) = registrar.location.lookup(1, 101, NOW)
    assert binding.path == (near, middle, far)


async def test_a_path_given_as_a_bare_uri_is_stored_bracketed(registrar: Registrar) -> None:
    await register_via_edge(registrar, path=["sip:10.0.0.5:5060;lr"])
    (binding,) = registrar.location.lookup(1, 101, NOW)
    # a bare URI's ;lr would be a header parameter; the edge meant a URI parameter as in every Path
    assert binding.path == ("<sip:10.0.0.5:5060;lr>",)
    hop = route_to(binding.contact, binding.path, EDGE)
    assert hop.request_uri == binding.contact and hop.routes == binding.path  # a loose router


async def test_a_refresh_through_another_edge_replaces_the_path(registrar: Registrar) -> None:
    await register_via_edge(registrar, path=[EDGE_PATH])
    other_edge = Peer(transport="udp", host="10.0.0.6", port=5060)
    new_path = "<sip:10.0.0.6:5060;lr;received=sip:198.51.100.7:40001>"
    response = await register_via_edge(registrar, path=[new_path], cseq=5, peer=other_edge)
    assert response.headers.get_all("path") == [new_path]
    (binding,) = registrar.location.lookup(1, 101, NOW)
    assert binding.path == (new_path,) and binding.source == "udp:10.0.0.6:5060"


async def test_a_refresh_straight_to_us_drops_the_path(registrar: Registrar) -> None:
    await register_via_edge(registrar, path=[EDGE_PATH])
    phone = Peer(transport="udp", host="198.51.100.7", port=40000)
    response = await register_via_edge(registrar, path=[], cseq=5, peer=phone)
    assert response.status == 200 and response.headers.get_all("path") == []
    (binding,) = registrar.location.lookup(1, 101, NOW)
    assert binding.path == () and binding.client == ""  # an untrusted source: Via is not believed


async def test_a_path_from_an_untrusted_source_is_ignored(registrar: Registrar) -> None:
    # else any registered phone could point the node's INVITEs at any address it likes
    phone = Peer(transport="udp", host="198.51.100.7", port=40000)
    response = await register_via_edge(registrar, path=["<sip:203.0.113.66:9;lr>"], peer=phone)
    assert response.status == 200 and response.headers.get_all("path") == []
    (binding,) = registrar.location.lookup(1, 101, NOW)
    assert binding.path == ()
    hop = route_to(binding.contact, binding.path, phone)
    assert hop.peer == phone and hop.routes == ()  # the call goes back to where the REGISTER came from


async def test_deregistration_through_the_edge_removes_the_binding(registrar: Registrar) -> None:
    await register_via_edge(registrar, path=[EDGE_PATH])
    response = await register_via_edge(registrar, path=[EDGE_PATH], cseq=5, expires="0")
    assert response.status == 200
    assert response.headers.get_all("contact") == [] and registrar.location.count == 0
    assert response.headers.get_all("path") == [EDGE_PATH]


async def test_a_malformed_path_is_refused_before_any_challenge(registrar: Registrar) -> None:
    request = register(extra="Path: <tel:+15551234567>")
    response = await registrar.handle(request, EDGE, NOW)
    assert response is not None and response.status == 400
    with pytest.raises(SipParseError):
        path_of(register(extra="Path: <sip:10.0.0.5;lr"))


# -- the INVITE to a device registered with a Path ----------------------------------------------------------
def test_route_to_without_path_goes_back_to_the_source() -> None:
    source = Peer(transport="tcp", host="198.51.100.7", port=40000, connection=7)
    hop = route_to("sip:101@192.168.1.20:5060", (), source)
    assert (hop.peer, hop.request_uri, hop.routes) == (source, "sip:101@192.168.1.20:5060", ())


def test_route_to_a_loose_path_keeps_the_contact_as_request_uri() -> None:
    path = ("<sip:10.0.0.5:5070;lr;transport=tcp>", "<sip:sbc.example.net;lr>")
    hop = route_to("sip:101@192.168.1.20:5060", path, Peer(transport="udp", host="10.0.0.9", port=5060))
    assert hop.peer == Peer(transport="tcp", host="10.0.0.5", port=5070)
    assert hop.request_uri == "sip:101@192.168.1.20:5060" and hop.routes == path


def test_route_to_keeps_the_edges_stream_connection() -> None:
    source = Peer(transport="tcp", host="10.0.0.5", port=5060, connection=3)
    hop = route_to("sip:101@192.168.1.20", ("<sip:10.0.0.5:5060;transport=tcp;lr>",), source)
    assert hop.peer is source


def test_route_to_a_strict_router_puts_the_contact_last() -> None:
    hop = route_to("sip:101@192.168.1.20", ("<sip:10.0.0.5;method=INVITE>", "<sip:sbc.example.net;lr>"),
                   Peer(transport="udp", host="10.0.0.9", port=5060))
    assert hop.peer == Peer(transport="udp", host="10.0.0.5", port=5060)
    assert hop.request_uri == "sip:10.0.0.5"
    assert hop.routes == ("<sip:sbc.example.net;lr>", "<sip:101@192.168.1.20>")


def test_a_call_to_a_device_with_a_path_is_sent_along_it() -> None:
    with Harness() as h:
        alice = h.extension("101")
        bob = h.extension("102", devices=0)
        del bob
        (ext,) = [e for (t, n), e in h.directory.extensions.items() if (t, n) == (TENANT, "102")]
        h.location.put(Binding(
            tenant_id=TENANT, extension_id=ext.extension_id, aor=f"sip:102@{HARNESS_DOMAIN}",
            contact="sip:102@192.168.1.20:5060;transport=udp", expires_at=4e9, source="udp:10.0.0.5:5060",
            call_id="reg-102", path=(EDGE_PATH, "<sip:sbc.example.net;lr>"), client="198.51.100.7"))
        call = h.call(alice, "102")
        (fork,) = h.sip.requests("INVITE", EDGE)
        assert fork.request.uri_text == "sip:102@192.168.1.20:5060;transport=udp"
        assert fork.request.headers.get_all("route") == [EDGE_PATH, "<sip:sbc.example.net;lr>"]
        h.reply(fork, 180)
        h.reply(fork, 200, headers=[("Record-Route", "<sip:10.0.0.5:5060;lr>")])
        assert call.final_status() == 200
        (ack,) = h.sip.acks(EDGE)  # the ACK of the 2xx follows the dialog's route set, to the edge
        assert ack.headers.get_all("route") == ["<sip:10.0.0.5:5060;lr>"]


# -- trusted edges and the per-address limits ---------------------------------------------------------------
def test_client_host_believes_via_only_from_a_trusted_edge() -> None:
    edges = TrustedEdges(["10.0.0.0/29", "2001:db8:e::1"])
    relayed = _invite(via_edge("198.51.100.7", sent_by="192.168.1.20"))
    assert edges.client_host(relayed, EDGE) == "198.51.100.7"  # received, not the private sent-by
    assert edges.client_host(_invite(via_edge("198.51.100.8")), EDGE) == "198.51.100.8"  # sent-by
    stranger = Peer(transport="udp", host="203.0.113.9", port=5060)
    assert edges.client_host(relayed, stranger) == "203.0.113.9"
    own = _invite("Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKprobe")
    assert edges.client_host(own, EDGE) == "10.0.0.5"  # the edge's own request
    v6_edge = Peer(transport="udp", host="2001:db8:e::1", port=5060)
    assert edges.client_host(relayed, v6_edge) == "198.51.100.7"
    mapped = Peer(transport="udp", host="::ffff:10.0.0.5", port=5060)
    assert edges.client_host(relayed, mapped) == "198.51.100.7"
    assert not TrustedEdges().trusts("10.0.0.5")
    with pytest.raises(ValueError):
        TrustedEdges(["not-a-network"])


def _invite(vias: str, n: int = 0, user: str = "101") -> Request:
    msg = parse_datagram((
        f"INVITE sip:102@acme.test SIP/2.0\r\n{vias}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{user}@acme.test>;tag=f{n}\r\nTo: <sip:102@acme.test>\r\n"
        f"Call-ID: flood-{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


async def test_the_invite_flood_limit_counts_each_phone_behind_a_trusted_edge() -> None:
    answered: list[Response] = []

    class Sip:
        local_host, local_port, t1, t2 = "192.0.2.1", 5060, 0.5, 4.0

        def respond(self, _txn: object, response: Response) -> None:
            answered.append(response)

    async def nobody(_domain: str, _user: str) -> None:
        return None

    def engine(edges: TrustedEdges) -> CallEngine:
        auth = Authenticator(credentials=CredentialCache(nobody),
                             verifier=DigestVerifier(NonceManager(b"k" * 32, 300, bytes), [Algorithm.MD5]),
                             throttle=FailureThrottle(100, 60, 60), to_tag=lambda: "t", edges=edges)
        return CallEngine(sip=Sip(), media=None, auth=auth, location=Location(), directory=None,  # type: ignore[arg-type]
                          bus=None, flood=FailureThrottle(limit=1, window=1.0, ban_time=30.0))  # type: ignore[arg-type]

    trusting = engine(TrustedEdges(["10.0.0.5"]))
    phones = ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.1"]
    for n, phone in enumerate(phones):
        await trusting._invite(object(), _invite(via_edge(phone, branch=str(n)), n), EDGE)  # type: ignore[arg-type]
    # three phones behind the edge each get their challenge; the first phone's second call is over its limit
    assert [r.status for r in answered] == [407, 407, 407, 503]

    answered.clear()
    untrusting = engine(TrustedEdges())  # the same requests from an edge nobody named: one source
    for n, phone in enumerate(phones[:3]):
        await untrusting._invite(object(), _invite(via_edge(phone, branch=str(n)), n), EDGE)  # type: ignore[arg-type]
    assert [r.status for r in answered] == [407, 503, 503]

    answered.clear()
    stranger = Peer(transport="udp", host="203.0.113.9", port=5060)  # forged Vias from an untrusted source
    for n, phone in enumerate(phones[:3]):
        await trusting._invite(object(), _invite(via_edge(phone, branch=f"s{n}"), n), stranger)  # type: ignore[arg-type]
    assert [r.status for r in answered] == [407, 503, 503]


async def test_digest_failures_behind_a_trusted_edge_ban_only_the_guessing_phone(registrar: Registrar) -> None:
    for n in range(4):  # over the source limit of 3
        response = await register_via_edge(registrar, path=[EDGE_PATH], phone="198.51.100.66",
                                           password="guess", call_id=f"g{n}")
        assert response.status == 403
    attacker = edge_register(via_edge("198.51.100.66", branch="x"))
    assert await registrar.handle(attacker, EDGE, NOW) is None  # the guessing phone is dropped
    ok = await register_via_edge(registrar, path=[EDGE_PATH], phone="198.51.100.7")
    assert ok.status == 200  # everyone else behind the same edge still registers


async def test_a_forged_via_from_an_untrusted_source_does_not_dodge_the_ban(registrar: Registrar) -> None:
    attacker = Peer(transport="udp", host="203.0.113.9", port=5060)
    for n in range(4):  # each claiming to be another phone behind an edge
        response = await register_via_edge(registrar, path=[], phone=f"198.51.100.{n}", password="guess",
                                           call_id=f"f{n}", peer=attacker)
        assert response.status == 403
    assert await registrar.handle(edge_register(via_edge("198.51.100.99", branch="y")), attacker, NOW) is None


async def test_a_locked_account_is_not_open_to_everyone_behind_the_edge(registrar: Registrar) -> None:
    # the account's phone registered through the edge: its binding's source is the edge's address, but
    # only the phone's own address (the binding's client) may pass the account's lock
    assert (await register_via_edge(registrar, path=[EDGE_PATH], phone="198.51.100.7")).status == 200
    for n in range(6):  # over the account's limit of 5, from 6 phones behind the edge
        guess = await register_via_edge(registrar, path=[EDGE_PATH], phone=f"198.51.100.{20 + n}",
                                        password="guess", call_id=f"l{n}")
        assert guess.status == 403
    registrar.auth._proven.clear()  # as after a restart: only the binding proves the phone
    other = await register_via_edge(registrar, path=[EDGE_PATH], phone="198.51.100.30", call_id="other")
    assert other.status == 503
    mine = await register_via_edge(registrar, path=[EDGE_PATH], phone="198.51.100.7", cseq=9)
    assert mine.status == 200


