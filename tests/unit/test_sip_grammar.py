"""Configured and received text on its way into our headers: the checks and the name-addr writer."""

from __future__ import annotations

import pytest

from zvonok.sip.dialog import add_top_via
from zvonok.sip.grammar import (
    check_host,
    check_text,
    escape_user,
    name_addr,
    quote_display,
    quoted_string,
    reescape_user,
    uri_host,
)
from zvonok.sip.headers import parse_name_addr, parse_via
from zvonok.sip.message import Request, parse_datagram
from zvonok.sip.uri import SipUri, parse_uri

HOSTILE_DISPLAYS = [
    "Anna\r\nP-Asserted-Identity: <sip:+74950000000@carrier.example>",
    "Anna\\",  # a trailing backslash would escape our closing quote
    'Anna" <sip:evil@evil.example>;x="',
    "\\\"\\",
    "Tab\there\x00nul\x7fdel",
    "Анна Петрова",
]
HOSTILE_USERS = ["a>b", "a%3Eb", "a;b=c", "+7 495 <1>", "x@y", "100%", "\r\nVia: evil", "a\\", "Пётр"]


@pytest.mark.parametrize("display", HOSTILE_DISPLAYS)
@pytest.mark.parametrize("user", HOSTILE_USERS)
def test_name_addr_round_trips_through_our_parser(display: str, user: str) -> None:
    text = name_addr(display, user, "pbx.example.com")
    assert "\r" not in text and "\n" not in text
    parsed = parse_name_addr(text + ";tag=abc")
    assert parsed.params == {"tag": "abc"}
    assert isinstance(parsed.uri, SipUri)
    assert parsed.uri.host == "pbx.example.com"
    assert parsed.uri.user_unescaped == user  # the user comes back exactly as given
    # the display name comes back whole; only control characters (which no quoted-string can hold) as spaces
    expected = "".join(" " if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in display)
    assert parsed.display == expected


@pytest.mark.parametrize("display", HOSTILE_DISPLAYS)
def test_a_hostile_display_name_adds_no_header_to_a_message(display: str) -> None:
    raw = (
        "INVITE sip:101@pbx.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
        f"From: {name_addr(display, '100', 'pbx.example.com')};tag=1\r\n"
        f"To: {name_addr(None, '101', 'pbx.example.com')}\r\n"
        "Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    message = parse_datagram(raw)
    assert isinstance(message, Request)
    assert [name.lower() for name, _ in message.headers] == [
        "via", "from", "to", "call-id", "cseq", "max-forwards", "content-length"]
    assert message.from_.display is not None and message.from_.uri == SipUri(
        scheme="sip", host="pbx.example.com", user="100")


def test_writers_exact_forms() -> None:
    assert quote_display('Anna "A" \\') == '"Anna \\"A\\" \\\\"'
    assert quote_display("a\r\nb") == '"a  b"'
    assert escape_user("a>b") == "a%3Eb"
    assert escape_user("+7916>;x") == "+7916%3E%3Bx"
    assert escape_user("a%3Eb") == "a%253Eb"  # plain text in, so its '%' is escaped too
    assert escape_user("+74951234567") == "+74951234567"
    assert name_addr(None, "101", "acme.example") == "<sip:101@acme.example>"
    assert name_addr("", "", "acme.example") == "<sip:acme.example>"


def test_check_host_and_text() -> None:
    assert check_host("SIP.Carrier.example") == "sip.carrier.example"
    assert check_host("[2001:DB8::1]") == "2001:db8::1"
    for bad in ("sip.carrier.example\r\nX: y", "a b", "a_b.example", "-a.example", "a..b"):
        with pytest.raises(ValueError):
            check_host(bad)
    assert check_text("Anna 'Quote' \"Petrova\" \\") == "Anna 'Quote' \"Petrova\" \\"
    # C1 controls and the Unicode line separators too: logs, terminals and str.splitlines() break lines there
    for bad in ("Anna\r\nX: y", "Anna\n", "A\x00", "A\tB", "A\x85B", "A\x9b31mB", "A\u2028B", "A\u2029B"):
        with pytest.raises(ValueError, match="control characters"):
            check_text(bad)


@pytest.mark.parametrize(("configured", "parsed_host"), [
    ("2001:db8::1", "[2001:db8::1]"),  # as check_host stores an IPv6 trunk host: without brackets
    ("[2001:db8::1]", "[2001:db8::1]"),
    ("192.0.2.1", "192.0.2.1"),
    ("pbx.example.com", "pbx.example.com"),
])
def test_a_host_goes_into_uris_and_via_in_a_form_our_parser_reads(configured: str, parsed_host: str) -> None:
    host = check_host(configured)
    parsed = parse_name_addr(name_addr("Anna", "+74951234567", host))
    assert isinstance(parsed.uri, SipUri) and parsed.uri.user == "+74951234567"
    assert (parsed.uri.host, parsed.uri.port) == (parsed_host, None)
    target = parse_uri(f"sip:{escape_user('102')}@{uri_host(host)}:5080")
    assert isinstance(target, SipUri) and (target.host, target.port) == (parsed_host, 5080)
    request = Request(method="OPTIONS", uri=target)
    add_top_via(request, "udp", host, 5062, branch="z9hG4bK1")
    via = parse_via(request.headers.get("via") or "")[0]
    assert (via.host, via.port) == (parsed_host, 5062)


def test_one_writer_of_quoted_strings() -> None:
    """Display names and both digest directions quote through grammar.quoted_string (no copies drifting
    apart): what it cannot quote is refused, where a display name only loses its control characters."""
    from zvonok.sip import digest, digest_client

    assert digest._quote is quoted_string and digest_client.quoted_string is quoted_string
    assert quoted_string('a\\"b\tc') == '"a\\\\\\"b\tc"'
    for bad in ("a\rb", "a\nb", "a\x00b"):
        with pytest.raises(ValueError, match="cannot be in a quoted-string"):
            quoted_string(bad)
        assert quote_display(bad) == '"a b"'


@pytest.mark.parametrize(("received", "written"), [
    ("1234;phone-context=+7495", "1234;phone-context=+7495"),  # ';' is reserved: %3B would be another user
    ("1234%3Bphone-context=+7495", "1234%3Bphone-context=+7495"),  # ... and the escaped one stays escaped
    ("a&b=c+d$e,f?g/h", "a&b=c+d$e,f?g/h"),  # every user-unreserved character as it came
    ("%41lice%2a", "%41lice%2a"),  # escapes are kept as they are, case and all
    ("a>b", "a%3Eb"), ("a b", "a%20b"), ("100%", "100%25"), ("50%zz", "50%25zz"),  # what the grammar forbids
    ("a@b", "a%40b"), ("Пётр", "%D0%9F%D1%91%D1%82%D1%80"),
])
def test_a_user_from_the_wire_goes_back_as_it_came(received: str, written: str) -> None:
    assert reescape_user(received) == written
    parsed = parse_name_addr(name_addr("Anna", received, "pbx.example.com", received=True))
    assert isinstance(parsed.uri, SipUri) and parsed.uri.user == written
    assert parsed.uri.host == "pbx.example.com" and parsed.uri.params == {}


def test_escape_user_escapes_plain_text_but_a_received_user_is_not_plain_text() -> None:
    wire = parse_uri("sip:1234;phone-context=+7495@carrier.example")
    assert isinstance(wire, SipUri) and wire.user_unescaped == "1234;phone-context=+7495"
    assert escape_user(wire.user_unescaped) == "1234%3Bphone-context=+7495"  # configured text's form
    assert name_addr(None, wire.user, "pbx.example.com", received=True) == (
        "<sip:1234;phone-context=+7495@pbx.example.com>")
