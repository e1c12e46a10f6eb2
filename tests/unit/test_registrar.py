"""The registrar driven in memory: challenges, digest, bindings, expiry rules, RFC 4475 REGISTERs."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from zvonok.org.service import SipCredentials
from zvonok.sip.digest import Algorithm, DigestVerifier, NonceManager, compute_response, ha1, parse_challenge
from zvonok.sip.headers import parse_name_addr
from zvonok.sip.message import Request, Response, parse_datagram
from zvonok.sip.peer import Peer
from zvonok.telephony.auth import Authenticator, CredentialCache
from zvonok.telephony.location import Location
from zvonok.telephony.registrar import Registrar, RegistrarConfig
from zvonok.telephony.throttle import FailureThrottle

RFC4475 = Path(__file__).parents[1] / "data" / "rfc4475"
DOMAIN = "acme.test"
PEER = Peer(transport="udp", host="192.0.2.10", port=5062)
NOW = 1_800_000_000.0


def creds(number: str, password: str, **kw: object) -> SipCredentials:
    fields: dict[str, object] = dict(
        tenant_id=1, extension_id=int(number), number=number, display_name=f"Ext {number}", realm=DOMAIN,
        ha1_md5=ha1(number, DOMAIN, password, Algorithm.MD5),
        ha1_sha256=ha1(number, DOMAIN, password, Algorithm.SHA256),
        max_devices=3, enabled=True, tenant_suspended=False,
    )
    fields.update(kw)
    return SipCredentials(**fields)  # type: ignore[arg-type]


USERS = {(DOMAIN, "101"): creds("101", "secret101"), (DOMAIN, "102"): creds("102", "pw102", enabled=False),
         (DOMAIN, "103"): creds("103", "pw103")}


class Clock:
    """The throttles' monotonic clock, stepped by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_registrar(clock: Clock, location: Location | None = None) -> Registrar:
    """A registrar as the server builds it at start (a new one after a restart, over the restored
    ``location``)."""
    async def lookup(domain: str, user: str) -> SipCredentials | None:
        return USERS.get((domain, user))

    counter = itertools.count()
    location = location or Location()
    nonces = NonceManager(b"k" * 32, 300, os.urandom)
    auth = Authenticator(
        credentials=CredentialCache(lookup), verifier=DigestVerifier(nonces, [Algorithm.MD5, Algorithm.SHA256]),
        throttle=FailureThrottle(limit=3, window=60, ban_time=600), to_tag=lambda: f"tag{next(counter)}",
        target_throttle=FailureThrottle(limit=5, window=60, ban_time=600), clock=clock, location=location,
    )
    return Registrar(
        location=location, auth=auth,
        config=RegistrarConfig(min_expires=60, max_expires=3600, default_expires=1800, max_contacts=10),
    )


@pytest.fixture
def registrar(clock: Clock) -> Registrar:
    return make_registrar(clock)


def register(user: str = "101", *, contact: str = "<sip:101@192.0.2.10:5062>", expires: str | None = "600",
             cseq: int = 1, call_id: str = "reg-1", auth: str | None = None, domain: str = DOMAIN,
             extra: str = "") -> Request:
    lines = [
        f"REGISTER sip:{domain} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK" + f"{cseq}{call_id}",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{domain}>;tag=f1",
        f"To: <sip:{user}@{domain}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if auth:
        lines.append(f"Authorization: {auth}")
    if extra:
        lines.append(extra)
    msg = parse_datagram(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def authorize(challenge: Response, user: str, password: str, *, domain: str = DOMAIN, nc: int = 1,
              algorithm: str = "MD5") -> str:
    chosen = next(parse_challenge(v) for v in challenge.headers.get_all("www-authenticate")
                  if parse_challenge(v).algorithm.value == algorithm)
    uri = f"sip:{domain}"
    response = compute_response(
        ha1=ha1(user, chosen.realm, password, chosen.algorithm), nonce=chosen.nonce, method="REGISTER",
        uri=uri, algorithm=chosen.algorithm, qop="auth", nc=f"{nc:08x}", cnonce="c0ffee",
    )
    return (f'Digest username="{user}", realm="{chosen.realm}", nonce="{chosen.nonce}", uri="{uri}", '
            f'response="{response}", algorithm={chosen.algorithm.value}, qop=auth, nc={nc:08x}, cnonce="c0ffee"')


async def do_register(reg: Registrar, password: str = "secret101", user: str = "101", now: float = NOW,
                      algorithm: str = "MD5", peer: Peer = PEER, **kw: object) -> Response:
    challenge = await reg.handle(register(user, **kw), peer, now)  # type: ignore[arg-type]
    assert challenge is not None and challenge.status == 401
    cseq = int(kw.pop("cseq", 1)) + 1  # type: ignore[call-overload]
    auth = authorize(challenge, user, password, algorithm=algorithm)
    response = await reg.handle(register(user, auth=auth, cseq=cseq, **kw), peer, now)  # type: ignore[arg-type]
    assert response is not None
    return response


async def test_challenge_lists_md5_first_then_sha256(registrar: Registrar) -> None:
    response = await registrar.handle(register(), PEER, NOW)
    assert response is not None and response.status == 401
    algorithms = [parse_challenge(v).algorithm for v in response.headers.get_all("www-authenticate")]
    assert algorithms == [Algorithm.MD5, Algorithm.SHA256]
    assert parse_challenge(response.headers.get_all("www-authenticate")[0]).realm == DOMAIN
    assert response.to.tag


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_register_binds_contact_and_lists_it(registrar: Registrar, algorithm: str) -> None:
    response = await do_register(registrar, algorithm=algorithm)
    assert response.status == 200
    (contact,) = response.headers.get_all("contact")
    assert contact == "<sip:101@192.0.2.10:5062>;expires=600"
    (binding,) = registrar.location.lookup(1, 101, NOW)
    assert binding.contact == "sip:101@192.0.2.10:5062"
    assert binding.source == "udp:192.0.2.10:5062" and binding.expires_at == NOW + 600
    assert binding.aor == "101@acme.test"


async def test_wrong_password_unknown_user_unknown_domain_look_the_same(registrar: Registrar) -> None:
    wrong = await do_register(registrar, password="nope")
    unknown = await do_register(registrar, user="999", password="x")
    foreign = await do_register(registrar, domain="other.test")
    for response in (wrong, unknown, foreign):
        assert (response.status, response.reason) == (403, "Forbidden")
        assert sorted(n.lower() for n, _ in response.headers) == sorted(n.lower() for n, _ in wrong.headers)
    assert registrar.location.count == 0


async def test_failures_from_one_source_get_it_blocked(registrar: Registrar, clock: Clock) -> None:
    for _ in range(4):
        response = await do_register(registrar, password="guess")
        assert response.status == 403
    assert await registrar.handle(register(), PEER, NOW + 1) is None  # dropped while banned
    other = Peer(transport="udp", host="192.0.2.99", port=5060)
    answered = await registrar.handle(register(), other, NOW + 1)
    assert answered is not None and answered.status == 401
    clock.now = 601.0  # bans run on the monotonic clock: the wall clock's NOW has no say
    assert (await do_register(registrar, now=NOW)).status == 200  # the ban expires


async def test_a_valid_login_does_not_reset_guesses_at_another_account(registrar: Registrar) -> None:
    # issue 8: one's own valid login every few guesses used to clear the address's count
    for _ in range(3):
        assert (await do_register(registrar, user="101", password="guess")).status == 403
        assert (await do_register(registrar, user="103", password="pw103")).status == 200
    assert (await do_register(registrar, user="101", password="guess")).status == 403  # the 4th: banned
    assert await registrar.handle(register("103"), PEER, NOW) is None


async def test_a_success_forgets_that_accounts_own_typos(registrar: Registrar) -> None:
    for _ in range(3):
        assert (await do_register(registrar, password="typo")).status == 403
    assert (await do_register(registrar)).status == 200
    for _ in range(3):
        assert (await do_register(registrar, password="typo")).status == 403
    assert (await do_register(registrar)).status == 200  # 3 + 3 typos, but never more than 3 unforgiven


async def test_guesses_from_many_addresses_lock_the_account(registrar: Registrar) -> None:
    assert (await do_register(registrar, user="101")).status == 200  # PEER proves itself for 101
    for i in range(6):  # 6 > the target limit of 5, each address well under its own limit
        attacker = Peer(transport="udp", host=f"198.51.100.{i}", port=5060)
        assert (await do_register(registrar, user="101", password=f"guess{i}", peer=attacker)).status == 403
    newcomer = Peer(transport="udp", host="203.0.113.5", port=5060)
    locked = await do_register(registrar, user="101", peer=newcomer)  # locked, even when right
    # 503 with Retry-After, not 403 (RFC 3261 §21.4.4: do not retry): a phone tries again later
    assert locked.status == 503 and locked.headers.get("retry-after") == "600"
    guess = await do_register(registrar, user="101", password="guess", peer=newcomer)
    assert (guess.status, guess.headers.get("retry-after")) == (503, "600")  # a guess learns nothing more
    assert (await do_register(registrar, user="103", password="pw103", peer=newcomer)).status == 200
    assert (await do_register(registrar, user="101")).status == 200  # its own phone still registers


async def test_a_registered_phone_refreshes_through_a_lock_after_a_restart(clock: Clock) -> None:
    # issue 8 review: the addresses an account had proven were in memory only; after a restart anyone
    # who locked the account (11 wrong digests) kept every phone of it from refreshing its registration
    before = make_registrar(clock)
    assert (await do_register(before, call_id="phone")).status == 200
    restored = Location()
    restored.restore(before.location.current(1, 101).values())  # what the database gives back at start
    after = make_registrar(clock, restored)  # new authenticator, throttles and nonce generation
    for i in range(6):
        attacker = Peer(transport="udp", host=f"198.51.100.{i}", port=5060)
        assert (await do_register(after, password=f"guess{i}", peer=attacker)).status == 403
    moved = Peer(transport="udp", host="203.0.113.5", port=5060)
    assert (await do_register(after, peer=moved)).status == 503  # an address without a binding: locked
    refresh = await do_register(after, call_id="phone", cseq=10)  # from the binding's source address
    assert refresh.status == 200
    v6 = Peer(transport="udp", host="2001:db8::7", port=5060)  # a binding's IPv6 source, parsed from "[...]"
    clock.now = 700.0  # the lock is over
    assert (await do_register(after, user="103", password="pw103", peer=v6, call_id="v6")).status == 200
    for i in range(6):
        attacker = Peer(transport="udp", host=f"198.51.100.{10 + i}", port=5060)
        assert (await do_register(after, user="103", password=f"guess{i}", peer=attacker)).status == 403
    fresh = make_registrar(clock, after.location)
    for i in range(6):
        attacker = Peer(transport="udp", host=f"198.51.100.{20 + i}", port=5060)
        assert (await do_register(fresh, user="103", password=f"guess{i}", peer=attacker)).status == 403
    same_64 = Peer(transport="udp", host="2001:db8::8", port=5060)
    assert (await do_register(fresh, user="103", password="pw103", peer=same_64, call_id="v6", cseq=9)).status == 200


async def test_one_accounts_logins_cannot_push_out_anothers_proven_address(registrar: Registrar) -> None:
    # issue 8 review: one global table of proven addresses, oldest dropped first, let a tenant's logins
    # from many addresses evict every other account's
    auth = registrar.auth
    auth.location = None  # the in-memory part alone
    assert (await do_register(registrar, user="101", contact="")).status == 200  # PEER proves itself for 101
    for i in range(3):
        other = Peer(transport="udp", host=f"203.0.113.{i}", port=5060)
        assert (await do_register(registrar, user="103", password="pw103", peer=other, contact="")).status == 200
    for i in range(100_001):  # as many more successes of 103 as the global table held (fast, without digests)
        auth._prove(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", DOMAIN, "103")
    for i in range(6):
        attacker = Peer(transport="udp", host=f"198.51.100.{i}", port=5060)
        assert (await do_register(registrar, user="101", password=f"guess{i}", peer=attacker)).status == 403
    assert (await do_register(registrar, user="101", contact="")).status == 200


async def test_an_ipv6_64_counts_as_one_source(registrar: Registrar) -> None:
    for i in range(4):
        peer = Peer(transport="udp", host=f"2001:db8::{i + 1}", port=5060)
        assert (await do_register(registrar, password="guess", peer=peer)).status == 403
    same_64 = Peer(transport="udp", host="2001:db8::ffff", port=5060)
    assert await registrar.handle(register(), same_64, NOW) is None
    next_64 = Peer(transport="udp", host="2001:db8:0:1::1", port=5060)
    answered = await registrar.handle(register(), next_64, NOW)
    assert answered is not None and answered.status == 401


async def test_disabled_extension_is_refused(registrar: Registrar) -> None:
    response = await do_register(registrar, user="102", password="pw102")
    assert response.status == 403 and response.reason == "Extension disabled"


async def test_digest_uri_must_match_request_uri(registrar: Registrar) -> None:
    challenge = await registrar.handle(register(), PEER, NOW)
    assert challenge is not None
    auth = authorize(challenge, "101", "secret101").replace('uri="sip:acme.test"', 'uri="sip:127.0.0.1:5060"')
    response = await registrar.handle(register(auth=auth, cseq=2), PEER, NOW)
    assert response is not None and response.status == 403


async def test_cannot_register_someone_elses_aor(registrar: Registrar) -> None:
    challenge = await registrar.handle(register("103"), PEER, NOW)
    assert challenge is not None
    response = await registrar.handle(register("103", auth=authorize(challenge, "101", "secret101"), cseq=2),
                                      PEER, NOW)
    assert response is not None and response.status == 403


async def test_interval_too_brief(registrar: Registrar) -> None:
    response = await do_register(registrar, expires="30")
    assert response.status == 423 and response.headers.get("min-expires") == "60"


async def test_expires_capped_and_defaulted(registrar: Registrar) -> None:
    response = await do_register(registrar, expires="999999")
    assert response.headers.get("contact") == "<sip:101@192.0.2.10:5062>;expires=3600"
    response = await do_register(registrar, expires=None, contact="<sip:101@192.0.2.10:6000>", call_id="b")
    assert "<sip:101@192.0.2.10:6000>;expires=1800" in response.headers.get_all("contact")


async def test_refresh_remove_and_wildcard(registrar: Registrar) -> None:
    await do_register(registrar, contact="<sip:101@192.0.2.10:5062>", call_id="a")
    await do_register(registrar, contact="<sip:101@198.51.100.7:5060>;expires=120", call_id="b")
    assert len(registrar.location.lookup(1, 101, NOW)) == 2
    response = await do_register(registrar, contact="<sip:101@192.0.2.10:5062>", expires="0", call_id="a", cseq=5)
    assert response.headers.get_all("contact") == ["<sip:101@198.51.100.7:5060>;expires=120"]
    assert registrar.location.lookup(1, 101, NOW + 121) == []  # expired on time
    await do_register(registrar, contact="<sip:101@192.0.2.10:5062>", call_id="a", cseq=9)
    bad = await do_register(registrar, contact="*", expires="600", call_id="c")
    assert bad.status == 400
    response = await do_register(registrar, contact="*", expires="0", call_id="c")
    assert response.status == 200 and response.headers.get_all("contact") == []
    assert registrar.location.count == 0


async def test_out_of_order_register_is_ignored(registrar: Registrar) -> None:
    await do_register(registrar, call_id="a", cseq=10, expires="600")
    await do_register(registrar, call_id="a", cseq=3, expires="0")  # older CSeq in the same Call-ID
    assert len(registrar.location.lookup(1, 101, NOW)) == 1


async def test_fetch_bindings_without_contact(registrar: Registrar) -> None:
    await do_register(registrar)
    response = await do_register(registrar, contact="", call_id="query")
    assert response.headers.get_all("contact") == ["<sip:101@192.0.2.10:5062>;expires=600"]


async def test_device_limit_keeps_the_newest(registrar: Registrar) -> None:
    for i in range(5):
        await do_register(registrar, contact=f"<sip:101@192.0.2.{i}:5060>", call_id=f"d{i}", now=NOW + i)
    contacts = sorted(b.contact for b in registrar.location.lookup(1, 101, NOW + 5))
    assert contacts == [f"sip:101@192.0.2.{i}:5060" for i in (2, 3, 4)]


async def test_instance_id_replaces_old_binding(registrar: Registrar) -> None:
    inst = ';+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
    await do_register(registrar, contact=f"<sip:101@192.0.2.10:5062>{inst}", call_id="x")
    await do_register(registrar, contact=f"<sip:101@192.0.2.11:5062>{inst}", call_id="y")
    assert [b.contact for b in registrar.location.lookup(1, 101, NOW)] == ["sip:101@192.0.2.11:5062"]


def _torture(name: str, user: str) -> Request:
    msg = parse_datagram((RFC4475 / f"{name}.dat").read_bytes())
    assert isinstance(msg, Request)
    return msg


@pytest.mark.parametrize("name", ["unksm2", "regbadct"])
async def test_rfc4475_bad_registers_get_400(registrar: Registrar, name: str) -> None:
    response = await registrar.handle(_torture(name, ""), PEER, NOW)
    assert response is not None and response.status == 400


@pytest.mark.parametrize("name", ["cparam01", "cparam02", "regescrt", "regaut01", "escnull"])
async def test_rfc4475_good_registers_are_challenged(registrar: Registrar, name: str) -> None:
    response = await registrar.handle(_torture(name, ""), PEER, NOW)
    assert response is not None and response.status == 401


async def test_contact_parameters_stay_where_they_belong(registrar: Registrar) -> None:
    """RFC 4475 §3.3.12–3.3.14: contact-params are not URI params; URI params and headers are kept."""
    for name, contact, stored in [
        ("cparam01", "<sip:101@192.0.2.1>;unknownparam", "sip:101@192.0.2.1"),
        ("cparam02", "<sip:101@192.0.2.1;unknownparam>", "sip:101@192.0.2.1;unknownparam"),
        ("regescrt", "<sip:101@192.0.2.1?Route=%3Csip:sip.example.com%3E>",
         "sip:101@192.0.2.1?Route=%3Csip:sip.example.com%3E"),
    ]:
        response = await do_register(registrar, contact=contact, call_id=name, expires="600")
        assert response.status == 200
        assert any(b.contact == stored for b in registrar.location.lookup(1, 101, NOW)), name
        listed = [parse_name_addr(v) for v in response.headers.get_all("contact")]
        assert any(str(a.uri) == stored for a in listed)


async def test_replayed_authorization_gets_a_fresh_stale_challenge(registrar: Registrar) -> None:
    challenge = await registrar.handle(register(), PEER, NOW)
    assert challenge is not None
    auth = authorize(challenge, "101", "secret101")
    first = await registrar.handle(register(auth=auth, cseq=2), PEER, NOW)
    replay = await registrar.handle(register(auth=auth, cseq=3), PEER, NOW)
    assert first is not None and first.status == 200
    assert replay is not None and replay.status == 401
    assert all(parse_challenge(v).stale for v in replay.headers.get_all("www-authenticate"))


async def test_a_digest_without_qop_is_refused(registrar: Registrar) -> None:
    # issue 8: an RFC 2069 digest has no nonce-count and replays from anywhere while its nonce lives
    challenge = await registrar.handle(register(), PEER, NOW)
    assert challenge is not None
    chosen = parse_challenge(challenge.headers.get_all("www-authenticate")[0])
    response = compute_response(ha1=ha1("101", DOMAIN, "secret101"), nonce=chosen.nonce, method="REGISTER",
                                uri=f"sip:{DOMAIN}", algorithm=Algorithm.MD5)
    auth = (f'Digest username="101", realm="{DOMAIN}", nonce="{chosen.nonce}", uri="sip:{DOMAIN}", '
            f'response="{response}", algorithm=MD5')
    refused = await registrar.handle(register(auth=auth, cseq=2), PEER, NOW)
    assert refused is not None and refused.status == 403
    assert registrar.location.count == 0


async def test_expired_nonce_is_stale_not_forbidden(registrar: Registrar) -> None:
    challenge = await registrar.handle(register(), PEER, NOW)
    assert challenge is not None
    late = await registrar.handle(register(auth=authorize(challenge, "101", "secret101"), cseq=2), PEER, NOW + 301)
    assert late is not None and late.status == 401
    assert parse_challenge(late.headers.get_all("www-authenticate")[0]).stale


async def test_register_to_an_ip_address_uses_the_default_domain(registrar: Registrar) -> None:
    plain = await registrar.handle(register(domain="192.0.2.1"), PEER, NOW)
    assert plain is not None
    assert parse_challenge(plain.headers.get_all("www-authenticate")[0]).realm == "192.0.2.1"
    registrar.auth.default_domain = DOMAIN
    challenge = await registrar.handle(register(domain="192.0.2.1"), PEER, NOW)
    assert challenge is not None and challenge.status == 401
    chosen = parse_challenge(challenge.headers.get_all("www-authenticate")[0])
    assert chosen.realm == DOMAIN
    response = compute_response(ha1=ha1("101", DOMAIN, "secret101"), nonce=chosen.nonce, method="REGISTER",
                                uri="sip:192.0.2.1", algorithm=Algorithm.MD5, qop="auth", nc="00000001",
                                cnonce="c")
    auth = (f'Digest username="101", realm="{DOMAIN}", nonce="{chosen.nonce}", uri="sip:192.0.2.1", '
            f'response="{response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c"')
    ok = await registrar.handle(register(domain="192.0.2.1", auth=auth, cseq=2), PEER, NOW)
    assert ok is not None and ok.status == 200
    assert [b.aor for b in registrar.location.lookup(1, 101, NOW)] == ["101@acme.test"]
