"""Client-side digest: RFC 2617/7616 vectors, challenge choice, request rewriting, our own verifier."""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from zvonok.sip import digest_client
from zvonok.sip.digest import (
    Algorithm,
    AuthResult,
    Challenge,
    DigestVerifier,
    NonceManager,
    ha1,
    parse_credentials,
)
from zvonok.sip.digest_client import (
    ReceivedChallenge,
    authorization_value,
    authorize_request,
    can_answer,
    challenges_of,
    select_challenges,
)
from zvonok.sip.message import Request, Response, make_response, parse_datagram

TESTDATA = Path(__file__).parents[1] / "data"
VECTORS: list[dict[str, Any]] = json.loads((TESTDATA / "digest-vectors.json").read_text())["vectors"]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _counter(prefix: str) -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


def _request(extra: str = "", cseq: int = 1) -> Request:
    text = (
        "REGISTER sip:carrier.test SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bKfirst\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:trunk@carrier.test>;tag=t1\r\n"
        "To: <sip:trunk@carrier.test>\r\n"
        "Call-ID: c1@zvonok\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        "Contact: <sip:trunk@192.0.2.1:5060>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_datagram(text.encode())
    assert isinstance(msg, Request)
    return msg


def _challenge_response(request: Request, *values: str, status: int = 401) -> Response:
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    return make_response(request, status, to_tag="srv", headers=[(name, v) for v in values])


# -- RFC vectors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("v", VECTORS, ids=[v["id"] for v in VECTORS])
def test_vector_answer(v: dict[str, Any]) -> None:
    challenge = Challenge(v["realm"], v["nonce"], Algorithm(v["algorithm"]), qop=v["challenge_qop_offered"],
                          opaque=v["opaque"])
    value = authorization_value(challenge, method=v["method"], uri=v["uri"], username=v["username"],
                                password=v["password"], cnonce=v["cnonce"], nc=int(v["nc"], 16))
    creds = parse_credentials(value)
    assert creds.response == v["expected_response"]
    assert (creds.nc, creds.cnonce, creds.qop, creds.opaque) == (v["nc"], v["cnonce"], "auth", v["opaque"])
    assert (creds.realm, creds.nonce, creds.uri, creds.algorithm) == (
        v["realm"], v["nonce"], v["uri"], Algorithm(v["algorithm"]))


def test_rfc2617_answer_exact_text() -> None:
    v = VECTORS[0]
    challenge = Challenge(v["realm"], v["nonce"], qop="auth,auth-int", opaque=v["opaque"])
    value = authorization_value(challenge, method="GET", uri="/dir/index.html", username="Mufasa",
                                password="Circle Of Life", cnonce="0a4f113b", nc=1)
    assert value == (
        'Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'uri="/dir/index.html", response="6629fae49393a05397450978507c4ef1", algorithm=MD5, '
        'cnonce="0a4f113b", qop=auth, nc=00000001, opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )


def test_no_qop_falls_back_to_rfc2069() -> None:
    challenge = Challenge("r", "n0", qop=None)
    value = authorization_value(challenge, method="REGISTER", uri="sip:r", username="u", password="p",
                                cnonce="unused", nc=1)
    expected = _md5(f"{_md5('u:r:p')}:n0:{_md5('REGISTER:sip:r')}")
    assert value == f'Digest username="u", realm="r", nonce="n0", uri="sip:r", response="{expected}", algorithm=MD5'


def test_md5_sess_hashes_nonce_and_cnonce_into_ha1() -> None:
    challenge = Challenge("r", "n0", Algorithm.MD5_SESS, qop="auth")
    creds = parse_credentials(authorization_value(challenge, method="REGISTER", uri="sip:r", username="u",
                                                  password="p", cnonce="cn", nc=3))
    session_key = _md5(f"{_md5('u:r:p')}:n0:cn")
    assert creds.response == _md5(f"{session_key}:n0:00000003:cn:auth:{_md5('REGISTER:sip:r')}")
    assert creds.algorithm is Algorithm.MD5_SESS and creds.nc == "00000003"


def test_quotes_in_values_are_escaped_and_round_trip() -> None:
    challenge = Challenge('we "quote"', "n0", opaque="o\\1")
    creds = parse_credentials(authorization_value(challenge, method="REGISTER", uri="sip:r", username='a"b',
                                                  password="p", cnonce="c", nc=1))
    assert (creds.realm, creds.username, creds.opaque) == ('we "quote"', 'a"b', "o\\1")


@pytest.mark.parametrize(("username", "nc"), [("evil\r\nX: 1", 1), ("u", 0), ("u", 2**32)])
def test_bad_local_input_is_refused(username: str, nc: int) -> None:
    with pytest.raises(ValueError):
        authorization_value(Challenge("r", "n"), method="REGISTER", uri="sip:r", username=username,
                            password="p", cnonce="c", nc=nc)


# -- choosing a challenge -------------------------------------------------------------------------------

@pytest.mark.parametrize(("challenge", "answerable"), [
    (Challenge("r", "n", Algorithm.MD5, qop="auth"), True),
    (Challenge("r", "n", Algorithm.SHA256, qop="auth-int, auth"), True),
    (Challenge("r", "n", Algorithm.MD5, qop=None), True),
    (Challenge("r", "n", Algorithm.MD5, qop="auth-int"), False),
    (Challenge("r", "n", Algorithm.MD5_SESS, qop=None), False),
    (Challenge("r", "n", Algorithm.SHA256_SESS, qop="AUTH"), True),
])
def test_can_answer(challenge: Challenge, answerable: bool) -> None:
    assert can_answer(challenge) is answerable


def test_challenges_of_skips_foreign_schemes_and_unknown_algorithms() -> None:
    response = _challenge_response(
        _request(), 'Basic realm="r"', 'Digest realm="r", nonce="a", algorithm=SHA-512-256',
        'Digest realm="r", nonce="b", algorithm=SHA-256, qop="auth"', 'Digest realm="r", nonce="c"')
    found = challenges_of(response)
    assert [(c.challenge.nonce, c.challenge.algorithm, c.proxy) for c in found] == [
        ("b", Algorithm.SHA256, False), ("c", Algorithm.MD5, False)]
    assert found[0].credentials_header == "Authorization"


def test_challenges_of_a_407_are_proxy_challenges_and_others_have_none() -> None:
    proxy = challenges_of(_challenge_response(_request(), 'Digest realm="p", nonce="x"', status=407))
    assert [(c.proxy, c.credentials_header) for c in proxy] == [(True, "Proxy-Authorization")]
    assert challenges_of(make_response(_request(), 200, headers=[("WWW-Authenticate", 'Digest realm="r", nonce="x"')])) == []


def _rc(realm: str, nonce: str, algorithm: Algorithm = Algorithm.MD5, qop: str | None = "auth",
        proxy: bool = False) -> ReceivedChallenge:
    return ReceivedChallenge(challenge=Challenge(realm, nonce, algorithm, qop=qop), proxy=proxy)


@pytest.mark.parametrize(("offered", "chosen"), [
    # the topmost answerable one of each realm, realms in order of appearance (RFC 8760 §2.4)
    ([_rc("r", "1", Algorithm.SHA256), _rc("r", "2")], ["1"]),
    ([_rc("r", "1", qop="auth-int"), _rc("r", "2", Algorithm.SHA256)], ["2"]),
    ([_rc("a", "1"), _rc("b", "2"), _rc("a", "3")], ["1", "2"]),
    ([_rc("a", "1"), _rc("a", "2", proxy=True)], ["1", "2"]),
    ([_rc("a", "1"), _rc("b", "2", qop="auth-int")], None),  # realm b cannot be answered
    ([], None),
])
def test_select_challenges(offered: list[ReceivedChallenge], chosen: list[str] | None) -> None:
    selected = select_challenges(offered)
    assert (None if selected is None else [c.challenge.nonce for c in selected]) == chosen


# -- authorize_request -------------------------------------------------------------------------------------

def test_authorize_request_copies_with_credentials_next_cseq_and_new_branch() -> None:
    request = _request()
    original = request.to_bytes()
    counts: dict[str, int] = {}
    response = _challenge_response(request, 'Digest realm="carrier.test", nonce="n1", algorithm=MD5, '
                                            'qop="auth", opaque="op"')
    out = authorize_request(request, response, "trunk", "pw", _counter("cn"), counts,
                            branch_gen=_counter("z9hG4bKnew"))
    assert out is not None
    assert request.to_bytes() == original  # the challenged request is left alone
    expected = _md5(f"{_md5('trunk:carrier.test:pw')}:n1:00000001:cn1:auth:{_md5('REGISTER:sip:carrier.test')}")
    assert out.to_bytes().decode() == (
        "REGISTER sip:carrier.test SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bKnew1\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:trunk@carrier.test>;tag=t1\r\n"
        "To: <sip:trunk@carrier.test>\r\n"
        "Call-ID: c1@zvonok\r\n"
        "CSeq: 2 REGISTER\r\n"
        "Contact: <sip:trunk@192.0.2.1:5060>\r\n"
        "Content-Length: 0\r\n"
        'Authorization: Digest username="trunk", realm="carrier.test", nonce="n1", uri="sip:carrier.test", '
        f'response="{expected}", algorithm=MD5, cnonce="cn1", qop=auth, nc=00000001, opaque="op"\r\n\r\n'
    )
    assert counts == {"n1": 1}


def test_branch_without_cookie_gets_it_and_no_generator_leaves_branch_to_the_layer() -> None:
    request = _request()
    response = _challenge_response(request, 'Digest realm="r", nonce="n1"')
    with_gen = authorize_request(request, response, "u", "p", _counter("c"), {}, branch_gen=lambda: "abc")
    without = authorize_request(request, response, "u", "p", _counter("c"), {})
    assert with_gen is not None and without is not None
    assert with_gen.top_via.branch == "z9hG4bKabc"
    assert without.top_via.branch is None and without.top_via.params == {"rport": None}


def test_nonce_count_grows_per_nonce_and_stale_is_answered_again() -> None:
    counts: dict[str, int] = {"other": 7}
    first = _request()
    answered = authorize_request(first, _challenge_response(first, 'Digest realm="r", nonce="n1", qop="auth"'),
                                 "u", "p", _counter("c"), counts)
    assert answered is not None
    # the same nonce again, but stale: answer it (nc 2), replacing our old Authorization
    again = authorize_request(answered, _challenge_response(
        answered, 'Digest realm="r", nonce="n1", qop="auth", stale=true'), "u", "p", _counter("d"), counts)
    assert again is not None
    values = again.headers.get_all("authorization")
    assert len(values) == 1
    creds = parse_credentials(values[0])
    assert (creds.nonce, creds.nc, creds.cnonce) == ("n1", "00000002", "d1")
    assert again.cseq.number == 3
    assert counts == {"other": 7, "n1": 2}


def test_same_nonce_challenged_again_without_stale_gives_up() -> None:
    first = _request()
    challenge = 'Digest realm="r", nonce="n1", qop="auth"'
    answered = authorize_request(first, _challenge_response(first, challenge), "u", "p", _counter("c"), {})
    assert answered is not None
    assert authorize_request(answered, _challenge_response(answered, challenge), "u", "p", _counter("c"), {}) is None


def test_a_new_nonce_after_credentials_is_answered() -> None:
    # a registrar that forgot our nonce sends a fresh one without stale=true: answering once is right
    previous = _request('Authorization: Digest username="u", realm="r", nonce="old", uri="sip:carrier.test", '
                        'response="00"\r\n')
    out = authorize_request(previous, _challenge_response(previous, 'Digest realm="r", nonce="new"'),
                            "u", "p", _counter("c"), {})
    assert out is not None
    assert [parse_credentials(v).nonce for v in out.headers.get_all("authorization")] == ["new"]


def test_unanswerable_challenge_gives_none() -> None:
    request = _request()
    for response in (
        _challenge_response(request, 'Digest realm="r", nonce="n", algorithm=SHA-512-256'),
        _challenge_response(request, 'Digest realm="r", nonce="n", qop="auth-int"'),
        _challenge_response(request),  # a 401 with no challenge at all
    ):
        assert authorize_request(request, response, "u", "p", _counter("c"), {}) is None


def test_401_after_proxy_auth_keeps_proxy_credentials() -> None:
    request = _request('Proxy-Authorization: Digest username="u", realm="proxy", nonce="pn", '
                       'uri="sip:carrier.test", response="11"\r\n')
    out = authorize_request(request, _challenge_response(request, 'Digest realm="r", nonce="n"'),
                            "u", "p", _counter("c"), {})
    assert out is not None
    assert [parse_credentials(v).realm for v in out.headers.get_all("proxy-authorization")] == ["proxy"]
    assert [parse_credentials(v).realm for v in out.headers.get_all("authorization")] == ["r"]


def test_407_is_answered_in_proxy_authorization() -> None:
    request = _request()
    out = authorize_request(request, _challenge_response(request, 'Digest realm="p", nonce="n"', status=407),
                            "u", "p", _counter("c"), {})
    assert out is not None
    assert "authorization" not in out.headers
    assert parse_credentials(out.headers.get_all("proxy-authorization")[0]).realm == "p"


# -- round trip with our own server side --------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_round_trip_with_digest_verifier(algorithm: Algorithm) -> None:
    nonces = NonceManager(b"s" * 32, 300.0, random.Random(1).randbytes)
    verifier = DigestVerifier(nonces, [algorithm])
    request = _request()
    challenges = verifier.challenges("carrier.test", now=100.0)
    response = _challenge_response(request, *(c.to_header_value() for c in challenges))
    counts: dict[str, int] = {}
    out = authorize_request(request, response, "trunk", "pw", _counter("cn"), counts)
    assert out is not None
    creds = parse_credentials(out.headers.get_all("authorization")[0])
    assert creds.uri == out.uri_text

    def verify(password: str, creds_value: str) -> AuthResult:
        return verifier.verify(parse_credentials(creds_value), method="REGISTER",
                               ha1=ha1("trunk", "carrier.test", password, algorithm), realm="carrier.test",
                               now=101.0)

    assert verify("pw", out.headers.get_all("authorization")[0]) is AuthResult.OK
    assert verify("wrong", out.headers.get_all("authorization")[0]) is AuthResult.FAILED
    # a later request reusing the nonce with nc 2 is accepted; replaying nc 1 is not
    second = authorize_request(out, _challenge_response(out, *(
        Challenge(c.realm, c.nonce, c.algorithm, stale=True).to_header_value() for c in challenges)),
        "trunk", "pw", _counter("cx"), counts)
    assert second is not None
    assert parse_credentials(second.headers.get_all("authorization")[0]).nc == "00000002"
    assert verify("pw", second.headers.get_all("authorization")[0]) is AuthResult.OK
    assert verify("pw", out.headers.get_all("authorization")[0]) is AuthResult.STALE


def test_module_is_sans_io() -> None:
    tree = ast.parse(Path(digest_client.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert not imported & {"asyncio", "socket", "time", "random", "os", "secrets"}
