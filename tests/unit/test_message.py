"""SIP message parsing and serialization: RFC 4475 torture messages, RFC 3665 flows, fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.sip.errors import FramingError, SipParseError
from zvonok.sip.headers import parse_name_addr, parse_via
from zvonok.sip.message import (
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_datagram,
)
from zvonok.sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri

TESTDATA = Path(__file__).parents[1] / "data"
RFC4475 = TESTDATA / "rfc4475"
RFC3665 = TESTDATA / "rfc3665"

# what the parser itself must do with each RFC 4475 message: None = parses, or the status it implies;
# "drop" = a malformed response, which has nobody to answer
PARSE_EXPECTED: dict[str, int | str | None] = {
    "wsinv": None, "intmeth": None, "esc01": None, "escnull": None, "esc02": None, "lwsdisp": None,
    "longreq": None, "dblreq": None, "semiuri": None, "transports": None, "mpart01": None,
    "unreason": None, "noreason": None,
    "badinv01": 400, "clerr": 400, "ncl": 400, "scalar02": 400, "scalarlg": "drop", "quotbal": 400,
    "ltgtruri": 400, "lwsruri": 400, "lwsstart": 400, "trws": 400, "escruri": None, "baddate": None,
    "regbadct": None, "badaspec": 400, "baddn": 400, "badvers": 505, "mismatch01": 400, "mismatch02": 400,
    "bigcode": "drop", "badbranch": None, "insuf": 400, "unkscm": None, "novelsc": None, "unksm2": None,
    "bext01": None, "invut": None, "regaut01": None, "multi01": 400, "mcl01": 400, "bcast": None,
    "zeromf": None, "cparam01": None, "cparam02": None, "regescrt": None, "sdp01": None, "inv2543": None,
}


def load(name: str) -> bytes:
    return (RFC4475 / f"{name}.dat").read_bytes()


def test_every_torture_message_is_classified() -> None:
    assert {p.stem for p in RFC4475.glob("*.dat")} == set(PARSE_EXPECTED)


@pytest.mark.parametrize("name", sorted(PARSE_EXPECTED))
def test_rfc4475_parse(name: str) -> None:
    expected = PARSE_EXPECTED[name]
    data = load(name)
    if expected is None:
        msg = parse_datagram(data)
        # whatever parses serializes, and re-parses to the same thing
        again = parse_datagram(msg.to_bytes())
        assert type(again) is type(msg)
        assert list(again.headers) == list(msg.headers)
        assert again.body == msg.body
        return
    with pytest.raises(SipParseError) as info:
        parse_datagram(data)
    if expected == "drop":
        assert info.value.partial is None
    else:
        assert info.value.status == expected
        # every rejected request can still be answered: the raw headers survive for make_response
        assert isinstance(info.value.partial, Request)
        response = make_response(info.value.partial, info.value.status)
        assert response.to_bytes().startswith(f"SIP/2.0 {expected} ".encode())


def test_wsinv_details() -> None:
    msg = parse_datagram(load("wsinv"))
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert msg.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert msg.cseq.number == 9 and msg.cseq.method == "INVITE"
    assert msg.headers.get("Max-Forwards") == "0068"
    assert msg.to.tag == "1918181833n"
    assert msg.from_.display == 'J Rosenberg \\"'  # the quoted-string unescaped once
    assert msg.from_.tag == "98asjd8"
    assert [v.transport for v in msg.vias] == ["UDP", "TCP", "UDP"]
    assert [v.branch for v in msg.vias] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert len(msg.body) == 150
    contact = parse_name_addr(msg.headers.get("m") or "")
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}


def test_unchanged_message_serializes_byte_exact() -> None:
    for name in ("esc01", "escnull", "semiuri", "cparam01", "regescrt"):
        data = load(name)
        assert parse_datagram(data).to_bytes() == data


def test_escapes_are_decoded_once() -> None:
    msg = parse_datagram(load("esc01"))
    assert isinstance(msg, Request) and isinstance(msg.uri, SipUri)
    assert msg.uri.user_unescaped == "sips:user@example.com"
    contact = parse_name_addr(msg.headers.get("contact") or "")
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.param("n%61me") == "v%61lue%25%34%31"  # kept as received, never unescaped twice
    to = msg.to.uri
    assert isinstance(to, SipUri) and to.user_unescaped == "user"


def test_escaped_nulls_do_not_truncate() -> None:
    msg = parse_datagram(load("escnull"))
    contacts = [parse_name_addr(v).uri for v in msg.headers.get_all("contact")]
    users = [u.user_unescaped for u in contacts if isinstance(u, SipUri)]
    assert users == ["\x00", "\x00\x00"]
    assert isinstance(msg.to.uri, SipUri) and msg.to.uri.aor() == "null-\x00-null@example.com"


def test_percent_that_is_not_an_escape() -> None:
    msg = parse_datagram(load("esc02"))
    assert isinstance(msg, Request) and msg.method == "RE%47IST%45R"
    assert msg.from_.display == "%Z%45"
    assert len(msg.headers.get_all("contact")) == 2  # C%6Fntact is another header
    assert msg.headers.get("C%6Fntact") is not None


def test_semicolon_in_user_part() -> None:
    msg = parse_datagram(load("semiuri"))
    assert isinstance(msg, Request) and isinstance(msg.uri, SipUri)
    assert msg.uri.user == "user;par=u%40example.net"
    assert msg.uri.host == "example.com" and msg.uri.params == {}


def test_trailing_octets_ignored_and_rfc2543_body() -> None:
    msg = parse_datagram(load("dblreq"))
    assert isinstance(msg, Request) and msg.method == "REGISTER" and msg.body == b""
    old = parse_datagram(load("inv2543"))
    assert old.body.startswith(b"v=0")  # no Content-Length: the rest of the datagram


def test_binary_multipart_body_framed_by_length() -> None:
    data = load("mpart01")
    msg = parse_datagram(data)
    assert msg.body.count(b"\x00") == data.count(b"\x00") == 2
    assert len(msg.body) == int(msg.headers.get("Content-Length") or -1)


def test_responses_with_odd_reasons() -> None:
    msg = parse_datagram(load("unreason"))
    assert isinstance(msg, Response) and msg.status == 200
    assert "простое" in msg.reason
    empty = parse_datagram(load("noreason"))
    assert isinstance(empty, Response) and empty.reason == ""


def test_uri_schemes() -> None:
    assert isinstance(parse_uri("sip:alice@example.com"), SipUri)
    assert isinstance(parse_uri("tel:+74951234567;phone-context=+7"), TelUri)
    assert isinstance(parse_uri("soap.beep://192.0.2.103:3002"), AbsoluteUri)
    uri = parse_uri("sips:[2001:db8::1]:5061;transport=TCP;lr")
    assert isinstance(uri, SipUri)
    assert (uri.host, uri.port, uri.transport, uri.has_param("lr")) == ("[2001:db8::1]", 5061, "tcp", True)
    for bad in ("sip:", "sip:a b@example.com", "sip:user@exa mple.com", "sip:u@h:99999", "sip:u@h;;x", "sip:u%zz@h"):
        with pytest.raises(SipParseError):
            parse_uri(bad)


def test_via_with_rport_and_received() -> None:
    (via,) = parse_via("SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1;rport;received=192.0.2.9")
    assert (via.host, via.port, via.branch, via.received) == ("10.0.0.1", 5062, "z9hG4bK1", "192.0.2.9")
    assert "rport" in via.params and via.params["rport"] is None
    assert str(via) == "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1;rport;received=192.0.2.9"


@pytest.mark.parametrize("path", sorted(RFC3665.glob("*.sip")), ids=lambda p: p.stem)
def test_rfc3665_flows_parse_and_round_trip(path: Path) -> None:
    data = path.read_bytes()
    msg = parse_datagram(data)
    assert msg.to_bytes() == data[: len(msg.to_bytes())]
    msg.headers.add("X-Test", "1")  # a changed message is re-serialized and still parses the same
    again = parse_datagram(msg.to_bytes())
    assert again.headers.get("x-test") == "1"
    assert again.call_id == msg.call_id and again.cseq == msg.cseq and again.body == msg.body


def test_make_response_copies_headers_and_adds_tag() -> None:
    request = parse_datagram((RFC3665 / "2.1_F1.sip").read_bytes())
    assert isinstance(request, Request)
    response = make_response(request, 401, to_tag="abc", headers=[("WWW-Authenticate", "Digest realm=\"x\"")])
    parsed = parse_datagram(response.to_bytes())
    assert isinstance(parsed, Response) and parsed.status == 401 and parsed.reason == "Unauthorized"
    assert parsed.to.tag == "abc"
    assert parsed.call_id == request.call_id and parsed.cseq == request.cseq
    assert [str(v) for v in parsed.vias] == [str(v) for v in request.vias]
    assert parsed.headers.get("www-authenticate") == 'Digest realm="x"'


# -- stream framing (TCP) ------------------------------------------------------------------------------

def test_stream_framer_splits_and_waits() -> None:
    one = load("cparam01")
    two = load("semiuri")
    framer = StreamFramer()
    stream = b"\r\n\r\n" + one + two
    out = []
    for i in range(0, len(stream), 7):  # arbitrary chunking
        out.extend(framer.feed(stream[i : i + 7]))
    assert [raw for _, raw in out] == [one, two]
    assert framer.pongs == 1


def test_stream_framer_reports_bad_messages_and_framing_errors() -> None:
    framer = StreamFramer()
    (item, _), = framer.feed(load("badvers"))
    assert isinstance(item, SipParseError) and item.status == 505
    with pytest.raises(FramingError):
        StreamFramer().feed(load("ncl"))
    with pytest.raises(FramingError):
        StreamFramer().feed(load("mcl01"))
    # Content-Length larger than what arrived: a stream waits for the rest
    assert StreamFramer().feed(load("clerr")) == []


def test_size_cap() -> None:
    with pytest.raises(SipParseError) as info:
        parse_datagram(load("longreq"), max_size=1000)
    assert info.value.status == 513
    with pytest.raises(FramingError):
        StreamFramer(max_size=1000).feed(load("longreq"))


# -- fuzzing: nothing but SipParseError may come out of the parser --------------------------------------

SEEDS = [load(name) for name in ("wsinv", "esc01", "cparam01", "badinv01", "mpart01", "unreason")]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SEEDS), st.integers(min_value=0, max_value=1100), st.binary(max_size=40))
def test_truncated_and_corrupted_messages_never_crash(seed: bytes, cut: int, junk: bytes) -> None:
    for data in (seed[:cut], seed[:cut] + junk + seed[cut:], junk + seed):
        try:
            msg = parse_datagram(data)
        except SipParseError:
            continue
        msg.to_bytes()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_datagrams_never_crash(data: bytes) -> None:
    try:
        parse_datagram(data)
    except SipParseError:
        pass
    try:
        StreamFramer().feed(data)
    except SipParseError:
        pass


def test_a_header_line_without_colon_is_still_answerable() -> None:
    data = load("cparam01").replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\n101[authentication x]\r\n")
    with pytest.raises(SipParseError) as info:
        parse_datagram(data)
    assert info.value.status == 400 and isinstance(info.value.partial, Request)
    assert make_response(info.value.partial, 400).to_bytes().startswith(b"SIP/2.0 400 ")
    ((item, raw),) = StreamFramer().feed(data)  # on a stream: answered, and the connection survives
    assert isinstance(item, SipParseError) and isinstance(item.partial, Request) and raw == data
