"""The trunk registration client: exact REGISTERs, timers and events on a fake clock."""

from __future__ import annotations

import ast
import hashlib
import itertools
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from zvonok.org.service import SipCredentials
from zvonok.sip import registration_client
from zvonok.sip.digest import Algorithm, DigestVerifier, NonceManager, ha1, parse_credentials
from zvonok.sip.errors import SipUsageError
from zvonok.sip.message import Request, Response, make_response, parse_datagram
from zvonok.sip.peer import Peer
from zvonok.sip.registration_client import (
    MAX_STALE_ANSWERS,
    Registered,
    RegistrationClient,
    RegistrationEvent,
    RegistrationFailed,
    RegistrationState,
    RegistrationStatus,
    Unregistered,
    refresh_delay,
    retry_delay,
)
from zvonok.telephony.auth import Authenticator, CredentialCache
from zvonok.telephony.location import Location
from zvonok.telephony.registrar import Registrar, RegistrarConfig
from zvonok.telephony.throttle import FailureThrottle

CARRIER = Peer(transport="udp", host="203.0.113.5", port=5060)
REALM = "carrier.test"
S = RegistrationState


def _counter(prefix: str) -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


def make_client(**overrides: object) -> RegistrationClient:
    kwargs: dict[str, object] = dict(
        registrar="sip:carrier.test", aor="sip:trunk@carrier.test", username="trunk", password="pw",
        contact="sip:trunk@192.0.2.1:5070", peer=CARRIER, local_host="192.0.2.1", local_port=5070,
        call_id_gen=lambda: "call1@zvonok", tag_gen=lambda: "tag1", branch_gen=_counter("br"),
        cnonce_gen=_counter("cn"),
    )
    kwargs.update(overrides)
    return RegistrationClient(**kwargs)  # type: ignore[arg-type]


def sent(client: RegistrationClient) -> Request:
    """The one REGISTER the client wants sent now, after a trip through the wire format."""
    requests = client.requests_to_send()
    assert len(requests) == 1, requests
    msg = parse_datagram(requests[0].to_bytes())
    assert isinstance(msg, Request)
    return msg


def events(client: RegistrationClient) -> list[RegistrationEvent]:
    out = []
    while (event := client.next_event()) is not None:
        out.append(event)
    return out


def reply(request: Request, status: int, *headers: tuple[str, str]) -> Response:
    msg = parse_datagram(make_response(request, status, to_tag="reg", headers=headers).to_bytes())
    assert isinstance(msg, Response)
    return msg


def challenge(request: Request, nonce: str, *, stale: bool = False, status: int = 401) -> Response:
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    value = f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5, qop="auth"' + (", stale=true" if stale else "")
    return reply(request, status, (name, value))


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def assert_auth(request: Request, *, nonce: str, nc: int, cnonce: str, header: str = "authorization") -> None:
    """The request carries exactly this answer, checked with an independent MD5 computation."""
    values = request.headers.get_all(header)
    assert len(values) == 1, values
    ha2 = _md5("REGISTER:sip:carrier.test")
    response = _md5(f"{_md5('trunk:carrier.test:pw')}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
    assert values[0] == (
        f'Digest username="trunk", realm="carrier.test", nonce="{nonce}", uri="sip:carrier.test", '
        f'response="{response}", algorithm=MD5, cnonce="{cnonce}", qop=auth, nc={nc:08x}'
    )


def registered(client: RegistrationClient, now: float = 100.0) -> None:
    """start → 401 n1 → 200 (3600 s)."""
    client.start(now)
    client.receive_response(challenge(sent(client), "n1"), now)
    client.receive_response(reply(sent(client), 200, ("Expires", "3600")), now)
    assert client.state is S.REGISTERED
    events(client)


# -- the rules as functions ------------------------------------------------------------------------------

@pytest.mark.parametrize(("expires", "delay"), [(3600, 3568.0), (600, 568.0), (64, 32.0), (60, 30.0), (20, 10.0)])
def test_refresh_delay(expires: int, delay: float) -> None:
    assert refresh_delay(expires) == delay


@pytest.mark.parametrize(("failures", "delay"), [(1, 30.0), (2, 60.0), (3, 120.0), (4, 240.0), (5, 300.0),
                                                  (80, 300.0)])
def test_retry_delay(failures: int, delay: float) -> None:
    assert retry_delay(failures) == delay


# -- flows -------------------------------------------------------------------------------------------------

def test_first_register_is_exact() -> None:
    client = make_client(user_agent="Zvonok/1")
    assert client.state is S.UNREGISTERED and client.get_timer() is None
    client.start(100.0)
    request = sent(client)
    assert request.to_bytes().decode() == (
        "REGISTER sip:carrier.test SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5070;rport;branch=z9hG4bKbr1\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:trunk@carrier.test>;tag=tag1\r\n"
        "To: <sip:trunk@carrier.test>\r\n"
        "Call-ID: call1@zvonok\r\n"
        "CSeq: 1 REGISTER\r\n"
        "Contact: <sip:trunk@192.0.2.1:5070>\r\n"
        "Expires: 3600\r\n"
        "User-Agent: Zvonok/1\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    assert client.state is S.REGISTERING and client.last_attempt_at == 100.0
    assert client.get_timer() is None  # the transaction layer times the REGISTER, not us
    with pytest.raises(SipUsageError):
        client.start(101.0)


def test_challenge_register_refresh_stale_challenge_register() -> None:
    client = make_client()
    client.start(100.0)
    first = sent(client)
    client.receive_response(challenge(first, "n1"), 100.1)
    second = sent(client)
    assert (second.cseq.number, second.top_via.branch, second.call_id) == (2, "z9hG4bKbr2", "call1@zvonok")
    assert second.from_.tag == "tag1" and second.to.tag is None
    assert_auth(second, nonce="n1", nc=1, cnonce="cn1")
    assert client.state is S.REGISTERING

    # our Contact's expires parameter wins over the Expires header
    client.receive_response(reply(second, 200, ("Contact", "<sip:other@198.51.100.9>;expires=50"),
                                  ("Contact", "<sip:trunk@192.0.2.1:5070;transport=udp>;expires=600"),
                                  ("Expires", "3600")), 100.2)
    assert client.state is S.REGISTERED and client.last_error is None
    assert client.registered_until == pytest.approx(700.2)
    assert client.get_timer() == pytest.approx(100.2 + 568)
    assert events(client) == [Registered(aor="sip:trunk@carrier.test", at=100.2, expires=600,
                                         registered_until=pytest.approx(700.2), refresh_at=pytest.approx(668.2))]

    client.handle_timer(668.0)  # early: nothing
    assert client.requests_to_send() == []
    client.handle_timer(668.2)
    refresh = sent(client)
    # the refresh answers the known nonce straight away, nc 2, same Call-ID and tag, next CSeq
    assert (refresh.cseq.number, refresh.call_id, refresh.from_.tag) == (3, "call1@zvonok", "tag1")
    assert refresh.headers.get("expires") == "3600"
    assert_auth(refresh, nonce="n1", nc=2, cnonce="cn2")
    assert client.state is S.REGISTERED and client.last_attempt_at == 668.2
    assert client.get_timer() is None

    client.receive_response(challenge(refresh, "n2", stale=True), 668.3)
    again = sent(client)
    assert again.cseq.number == 4 and again.top_via.branch == "z9hG4bKbr4"
    assert_auth(again, nonce="n2", nc=1, cnonce="cn3")
    client.receive_response(reply(again, 200, ("Contact", "<sip:trunk@192.0.2.1:5070>"), ("Expires", "3600")),
                            668.4)
    assert client.state is S.REGISTERED
    assert client.registered_until == pytest.approx(4268.4)
    assert client.get_timer() == pytest.approx(668.4 + 3568)
    assert [type(e) for e in events(client)] == [Registered]


def test_403_fails_with_retry_and_backoff_grows_then_resets() -> None:
    client = make_client()
    client.start(0.0)
    client.receive_response(challenge(sent(client), "n1"), 0.0)
    client.receive_response(reply(sent(client), 403), 1.0)
    assert (client.state, client.last_error, client.get_timer()) == (S.FAILED, "403 Forbidden", 31.0)
    assert events(client) == [RegistrationFailed(aor="sip:trunk@carrier.test", at=1.0, error="403 Forbidden",
                                                 status=403, retry_at=31.0)]
    assert client.status() == RegistrationStatus(state=S.FAILED, last_error="403 Forbidden", registered_until=None,
                                                 last_attempt_at=0.0, next_attempt_at=31.0)

    client.handle_timer(31.0)
    retry = sent(client)
    assert client.state is S.REGISTERING and client.last_error == "403 Forbidden"  # kept until success
    assert retry.cseq.number == 3
    assert_auth(retry, nonce="n1", nc=2, cnonce="cn2")
    client.receive_response(reply(retry, 404), 31.0)
    assert (client.last_error, client.get_timer()) == ("404 Not Found", 91.0)
    client.handle_timer(91.0)
    client.receive_response(reply(sent(client), 503, ("Retry-After", "120 (maintenance);duration=60")), 91.0)
    assert (client.last_error, client.get_timer()) == ("503 Service Unavailable", 211.0)
    client.handle_timer(211.0)
    client.receive_response(reply(sent(client), 500), 211.0)
    assert client.get_timer() == 211.0 + 240  # the fourth failure in a row
    client.handle_timer(451.0)
    client.receive_response(reply(sent(client), 200, ("Expires", "120")), 451.0)
    assert (client.state, client.last_error, client.get_timer()) == (S.REGISTERED, None, 451.0 + 88)
    client.handle_timer(539.0)
    client.receive_response(reply(sent(client), 403), 539.0)
    assert client.get_timer() == 569.0  # success reset the back-off
    assert client.registered_until == 571.0  # a failed refresh leaves the granted binding's end


def test_timeouts_back_off_to_the_cap() -> None:
    client = make_client()
    client.start(0.0)
    now = 0.0
    delays = []
    for _ in range(6):
        assert len(client.requests_to_send()) == 1
        now += 32.0
        client.transaction_failed(now)
        assert (client.state, client.last_error) == (S.FAILED, "timeout")
        timer = client.get_timer()
        assert timer is not None
        delays.append(timer - now)
        now = timer
        client.handle_timer(now)
    assert delays == [30.0, 60.0, 120.0, 240.0, 300.0, 300.0]
    client.transaction_failed(now + 1, reason="transport error")
    assert client.last_error == "transport error"
    assert [e.error for e in events(client) if isinstance(e, RegistrationFailed)][-1] == "transport error"


def test_423_retries_at_once_with_min_expires() -> None:
    client = make_client(expires=30)
    client.start(0.0)
    client.receive_response(challenge(sent(client), "n1"), 0.0)
    answered = sent(client)
    client.receive_response(reply(answered, 423, ("Min-Expires", "120")), 0.1)
    retry = sent(client)
    assert (retry.cseq.number, retry.headers.get("expires"), client.expires) == (3, "120", 120)
    assert_auth(retry, nonce="n1", nc=2, cnonce="cn2")
    assert client.state is S.REGISTERING and client.get_timer() is None
    client.receive_response(reply(retry, 200, ("Contact", "<sip:trunk@192.0.2.1:5070>;expires=120")), 0.2)
    assert client.state is S.REGISTERED and client.get_timer() == pytest.approx(0.2 + 88)


@pytest.mark.parametrize("headers", [(), (("Min-Expires", "30"),), (("Min-Expires", "soon"),)])
def test_423_without_a_larger_minimum_fails(headers: tuple[tuple[str, str], ...]) -> None:
    client = make_client(expires=30)
    client.start(0.0)
    client.receive_response(reply(sent(client), 423, *headers), 0.0)
    assert (client.state, client.last_error, client.get_timer()) == (S.FAILED, "423 Interval Too Brief", 30.0)


def test_stop_sends_expires_zero_and_ends_unregistered() -> None:
    client = make_client()
    registered(client, 100.0)
    client.stop(200.0)
    request = sent(client)
    assert request.headers.get("expires") == "0"
    assert request.headers.get("contact") == "<sip:trunk@192.0.2.1:5070>"
    assert (request.cseq.number, request.call_id, request.from_.tag) == (3, "call1@zvonok", "tag1")
    assert_auth(request, nonce="n1", nc=2, cnonce="cn2")
    assert client.state is S.UNREGISTERING and client.get_timer() is None
    client.receive_response(reply(request, 200), 200.1)
    assert (client.state, client.registered_until, client.get_timer()) == (S.UNREGISTERED, None, None)
    assert events(client) == [Unregistered(aor="sip:trunk@carrier.test", at=200.1, error=None)]
    client.stop(201.0)  # idempotent
    assert client.requests_to_send() == []
    client.start(300.0)  # and it can register again, with the same Call-ID and next CSeq
    again = sent(client)
    assert (again.cseq.number, again.call_id, again.headers.get("expires")) == (4, "call1@zvonok", "3600")


def test_stop_answers_a_challenge_and_reports_a_timeout() -> None:
    client = make_client()
    registered(client)
    client.stop(200.0)
    client.receive_response(challenge(sent(client), "n9", stale=True), 200.0)
    answered = sent(client)
    assert answered.headers.get("expires") == "0"
    assert_auth(answered, nonce="n9", nc=1, cnonce="cn3")
    client.transaction_failed(232.0)
    assert client.state is S.UNREGISTERED
    assert events(client) == [Unregistered(aor="sip:trunk@carrier.test", at=232.0, error="timeout")]


def test_stop_waits_for_the_outstanding_register() -> None:
    client = make_client()
    client.start(0.0)
    first = sent(client)
    client.stop(0.5)
    assert client.requests_to_send() == []  # RFC 3261 §10.2: one REGISTER at a time
    client.receive_response(reply(first, 200, ("Expires", "60")), 0.6)
    removal = sent(client)
    assert removal.headers.get("expires") == "0" and removal.cseq.number == 2
    client.receive_response(reply(removal, 200), 0.7)
    assert client.state is S.UNREGISTERED
    assert [type(e) for e in events(client)] == [Unregistered]


def test_start_during_the_removal_registers_again_after_it() -> None:
    client = make_client()
    registered(client)
    client.stop(200.0)
    removal = sent(client)
    client.start(200.5)
    assert client.requests_to_send() == [] and client.state is S.UNREGISTERING
    client.receive_response(reply(removal, 200), 200.6)
    again = sent(client)
    assert (again.cseq.number, again.headers.get("expires")) == (4, "3600")
    assert client.state is S.REGISTERING and client.last_attempt_at == 200.6
    assert events(client) == [Unregistered(aor="sip:trunk@carrier.test", at=200.6, error=None)]


def test_stop_during_a_challenged_register_needs_no_removal() -> None:
    client = make_client()
    client.start(0.0)
    first = sent(client)
    client.stop(0.5)
    client.receive_response(challenge(first, "n1"), 0.6)  # a 401 created no binding
    assert client.requests_to_send() == []
    assert client.state is S.UNREGISTERED and client.get_timer() is None
    assert events(client) == [Unregistered(aor="sip:trunk@carrier.test", at=0.6, error=None)]


def test_same_nonce_challenged_again_gives_up() -> None:
    client = make_client()
    client.start(0.0)
    client.receive_response(challenge(sent(client), "n1"), 0.0)
    client.receive_response(challenge(sent(client), "n1"), 0.1)
    assert client.requests_to_send() == []
    assert (client.state, client.last_error, client.get_timer()) == (S.FAILED, "authentication failed", 30.1)
    assert events(client) == [RegistrationFailed(aor="sip:trunk@carrier.test", at=0.1,
                                                 error="authentication failed", status=401, retry_at=30.1)]
    client.handle_timer(30.1)
    retry = sent(client)
    assert "authorization" not in retry.headers  # the refused credentials are not sent again


def test_fresh_nonce_after_our_answer_without_stale_gives_up() -> None:
    # what a registrar with a nonce per challenge (ours) does for a wrong password
    client = make_client()
    client.start(0.0)
    client.receive_response(challenge(sent(client), "n1"), 0.0)
    client.receive_response(challenge(sent(client), "n2"), 0.1)
    assert (client.state, client.last_error) == (S.FAILED, "authentication failed")


def test_stale_answers_are_bounded() -> None:
    client = make_client()
    client.start(0.0)
    client.receive_response(challenge(sent(client), "n0"), 0.0)
    for i in range(MAX_STALE_ANSWERS):
        client.receive_response(challenge(sent(client), f"s{i}", stale=True), 0.1)
    client.receive_response(challenge(sent(client), "s9", stale=True), 0.2)
    assert client.requests_to_send() == []
    assert (client.state, client.last_error) == (S.FAILED, "authentication failed")


def test_407_from_an_outbound_proxy_is_answered_in_proxy_authorization() -> None:
    client = make_client()
    client.start(0.0)
    client.receive_response(challenge(sent(client), "p1", status=407), 0.0)
    answered = sent(client)
    assert "authorization" not in answered.headers
    assert_auth(answered, nonce="p1", nc=1, cnonce="cn1", header="proxy-authorization")


def test_unanswerable_challenge_says_why() -> None:
    client = make_client()
    client.start(0.0)
    client.receive_response(reply(sent(client), 401, ("WWW-Authenticate", 'Digest realm="r", nonce="n", '
                                                      'algorithm=SHA-512-256')), 0.0)
    assert client.last_error == "401 Unauthorized: no digest challenge we can answer"


def test_other_responses_are_ignored() -> None:
    client = make_client()
    client.start(0.0)
    first = sent(client)
    client.receive_response(reply(first, 100), 0.0)
    client.receive_response(challenge(first, "n1"), 0.0)
    second = sent(client)
    client.receive_response(reply(first, 200), 0.1)  # a late answer to the first REGISTER
    client.transaction_failed(0.1, request=first)  # a late failure of it
    assert client.state is S.REGISTERING and client.requests_to_send() == []
    client.receive_response(reply(second, 200, ("Expires", "600")), 0.2)
    assert client.state is S.REGISTERED
    client.receive_response(reply(second, 200, ("Expires", "5")), 0.3)  # a retransmitted 200: no effect
    assert client.registered_until == pytest.approx(600.2)


def test_200_granting_nothing_is_a_failure() -> None:
    client = make_client()
    client.start(0.0)
    client.receive_response(reply(sent(client), 200, ("Contact", "<sip:trunk@192.0.2.1:5070>;expires=0")), 0.0)
    assert (client.state, client.last_error) == (S.FAILED, "200 OK without a binding")


@pytest.mark.parametrize("field", ["registrar", "aor", "contact"])
def test_bad_configuration_is_a_usage_error(field: str) -> None:
    with pytest.raises(SipUsageError):
        make_client(**{field: "sip:bad host"})
    with pytest.raises(SipUsageError):
        make_client(expires=0)


# -- against our own registrar ---------------------------------------------------------------------------

async def test_pair_with_our_registrar() -> None:
    domain = "acme.test"
    creds = SipCredentials(
        tenant_id=1, extension_id=101, number="101", display_name="Trunk", realm=domain,
        ha1_md5=ha1("101", domain, "secret101", Algorithm.MD5),
        ha1_sha256=ha1("101", domain, "secret101", Algorithm.SHA256),
        max_devices=3, enabled=True, tenant_suspended=False,
    )

    async def lookup(d: str, user: str) -> SipCredentials | None:
        return creds if (d, user) == (domain, "101") else None

    tags = _counter("srv")
    auth = Authenticator(credentials=CredentialCache(lookup),
                         verifier=DigestVerifier(NonceManager(b"k" * 32, 300, os.urandom), [Algorithm.MD5]),
                         throttle=FailureThrottle(limit=3, window=60, ban_time=600), to_tag=tags)
    registrar = Registrar(location=Location(), auth=auth,
                          config=RegistrarConfig(min_expires=60, max_expires=3600, default_expires=1800))
    client = make_client(registrar=f"sip:{domain}", aor=f"sip:101@{domain}", username="101",
                         password="secret101", contact="sip:101@192.0.2.1:5070", expires=30)
    source = Peer(transport="udp", host="192.0.2.1", port=5070)
    now = 1_800_000_000.0

    sent_nc: list[str | None] = []

    async def exchange() -> int:
        (request,) = client.requests_to_send()
        values = request.headers.get_all("authorization")
        sent_nc.append(parse_credentials(values[0]).nc if values else None)
        response = await registrar.handle(request, source, now)
        assert response is not None
        wire = parse_datagram(response.to_bytes())
        assert isinstance(wire, Response)
        client.receive_response(wire, now)
        return wire.status

    client.start(now)
    assert [await exchange() for _ in range(3)] == [401, 423, 200]  # challenge, then Min-Expires 60
    assert client.state is S.REGISTERED and client.expires == 60
    assert len(registrar.location.lookup(1, 101, now)) == 1
    now = client.get_timer() or 0.0
    assert now == 1_800_000_030.0
    client.handle_timer(now)
    assert await exchange() == 200  # the refresh's pre-emptive credentials (nc 2) are accepted
    client.stop(now)
    assert await exchange() == 200
    assert client.state is S.UNREGISTERED
    assert registrar.location.lookup(1, 101, now) == []
    assert [type(e) for e in events(client)] == [Registered, Registered, Unregistered]
    assert sent_nc == [None, "00000001", "00000002", "00000003", "00000004"]


def test_module_is_sans_io() -> None:
    tree = ast.parse(Path(registration_client.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert not imported & {"asyncio", "socket", "time", "random", "os", "secrets"}
