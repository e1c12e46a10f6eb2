"""SDP (RFC 4566) parsing and serialization, and offer/answer (RFC 3264) for our audio-only B2BUA leg."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.sip import sdp as sdp_module
from zvonok.sip import sdp_offer_answer
from zvonok.sip.errors import SipParseError
from zvonok.sip.message import parse_datagram
from zvonok.sip.sdp import (
    Attribute,
    Connection,
    Direction,
    RtpMap,
    SdpError,
    SessionDescription,
    parse_sdp,
)
from zvonok.sip.sdp_offer_answer import (
    DEFAULT_CODECS,
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Codec,
    LocalSession,
    NegotiatedMedia,
    accept_answer,
    build_offer,
    is_hold,
    media_direction,
    negotiate,
)

TESTDATA = Path(__file__).parents[1] / "data"
RFC4475 = TESTDATA / "rfc4475"
RFC3665 = TESTDATA / "rfc3665"

LOCAL_HOST = "203.0.113.5"
LOCAL_PORT = 40000


def crlf(text: str) -> bytes:
    return text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n"


def body_of(path: Path) -> bytes:
    return parse_datagram(path.read_bytes()).body


def sdp_files() -> list[Path]:
    return sorted(p for p in RFC3665.glob("*.sip") if b"application/sdp" in p.read_bytes())


def new_session() -> LocalSession:
    return LocalSession(sess_id=3800000000, username="zvonok")


def answer(offer: bytes, **kwargs: Any) -> tuple[SessionDescription, NegotiatedMedia]:
    return negotiate(parse_sdp(offer), DEFAULT_CODECS, LOCAL_HOST, LOCAL_PORT, new_session(), **kwargs)


# offers as typical phones send them ------------------------------------------------------------------------

BARESIP = crlf("""
v=0
o=- 1838536392 2903734911 IN IP4 192.168.1.33
s=-
c=IN IP4 192.168.1.33
t=0 0
m=audio 10462 RTP/AVP 96 9 0 8 101
b=AS:64
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=ssrc:1289346725 cname:3b1c0a8e-a4b8-4e0c-9e5e-0a3e1d7a2c51
a=rtcp-rsize
a=ptime:20
""")

# SIPp's built-in uac scenario, with its [keywords] filled in
SIPP_UAC = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
""")

POLYCOM = crlf("""
v=0
o=- 1690000000 1690000000 IN IP4 10.0.0.20
s=Polycom IP Phone
c=IN IP4 10.0.0.20
t=0 0
a=sendrecv
m=audio 2226 RTP/AVP 9 102 8 0 18 127
a=rtpmap:9 G722/8000
a=rtpmap:102 G7221/16000
a=fmtp:102 bitrate=32000
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:127 telephone-event/8000
m=video 2228 RTP/AVP 109 34
b=TIAS:1024000
a=rtpmap:109 H264/90000
a=fmtp:109 profile-level-id=42800d
a=rtpmap:34 H263/90000
""")


# -- parsing and serialization -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", sdp_files(), ids=lambda p: p.stem)
def test_rfc3665_bodies_round_trip(path: Path) -> None:
    body = body_of(path)
    sdp = parse_sdp(body)
    assert sdp.to_bytes() == body
    assert sdp.origin.nettype == "IN" and sdp.origin.addrtype == "IP4"
    assert sdp.origin.username in ("alice", "bob")
    assert [m.media for m in sdp.media] == ["audio"]
    assert sdp.media[0].formats == ["0"]
    assert sdp.media[0].rtpmap(0) == RtpMap(0, "PCMU", 8000)


def test_rfc3665_offer_fields() -> None:
    sdp = parse_sdp(body_of(RFC3665 / "3.1_F1.sip"))
    assert sdp.version == 0
    assert (sdp.origin.sess_id, sdp.origin.sess_version) == ("2890844526", 2890844526)
    assert sdp.origin.address == "client.atlanta.example.com"
    assert sdp.name == "-"
    assert sdp.connection == Connection("IN", "IP4", "192.0.2.101")
    assert sdp.timing == [("t", "0 0")]
    audio = sdp.media[0]
    assert (audio.port, audio.proto, audio.connection) == (49172, "RTP/AVP", None)
    assert sdp.connection_for(audio) == sdp.connection


@pytest.mark.parametrize("name", ["wsinv", "esc01", "sdp01"])
def test_rfc4475_bodies(name: str) -> None:
    body = body_of(RFC4475 / f"{name}.dat")
    sdp = parse_sdp(body)
    assert sdp.to_bytes() == body
    assert [(m.media, m.port, m.formats) for m in sdp.media] == [
        ("audio", 49217, ["0", "12"]), ("video", 3227, ["31"])]
    video = sdp.media[1]
    assert video.attributes == [Attribute("rtpmap", "31 LPC")]
    assert video.rtpmap(31) is None  # no clock rate: malformed, so ignored rather than fatal
    offer_answer, media = negotiate(sdp, DEFAULT_CODECS, LOCAL_HOST, LOCAL_PORT, new_session())
    assert (media.codec_name, media.remote_port) == ("PCMU", 49217)
    assert [(m.media, m.port, m.formats) for m in offer_answer.media] == [
        ("audio", LOCAL_PORT, ["0"]), ("video", 0, ["31"])]


@pytest.mark.parametrize("body", [BARESIP, SIPP_UAC, POLYCOM], ids=["baresip", "sipp", "polycom"])
def test_phone_offers_round_trip(body: bytes) -> None:
    assert parse_sdp(body).to_bytes() == body


def test_unknown_lines_and_attributes_are_kept() -> None:
    body = crlf("""
v=0
o=- 1 2 IN IP4 192.0.2.1
s=Talk
i=A call
u=http://example.com/call
e=ops@example.com
p=+1 555 0100
c=IN IP4 192.0.2.1
b=CT:128
t=2873397496 2873404696
r=7d 1h 0 25h
t=0 0
z=2882844526 -1h
k=prompt
x=vendor whatever
a=tool:fancyphone 1.0
a=group:BUNDLE audio
m=audio 5004/2 RTP/AVP 0
i=voice
c=IN IP4 192.0.2.2
c=IN IP4 192.0.2.3
b=AS:80
k=clear:secret
y=media-level-unknown
a=x-unknown
a=mid:audio
a=rtcp:5005 IN IP4 192.0.2.2
""")
    sdp = parse_sdp(body)
    assert sdp.to_bytes() == body
    assert sdp.timing == [("t", "2873397496 2873404696"), ("r", "7d 1h 0 25h"), ("t", "0 0")]
    assert ("x", "vendor whatever") in sdp.other
    assert sdp.attribute("tool") == "fancyphone 1.0"
    audio = sdp.media[0]
    assert (audio.port, audio.port_count) == (5004, 2)
    assert audio.connection == Connection("IN", "IP4", "192.0.2.2")
    assert ("c", "IN IP4 192.0.2.3") in audio.other
    assert audio.attribute("x-unknown") == ""
    assert audio.attribute("missing") is None
    assert audio.bandwidths == ["AS:80"]


def test_lenient_input_is_written_back_in_rfc_form() -> None:
    # LF line ends, blank lines, no s= or t=, a=ptime with a fraction, attributes with odd spacing
    body = b"v=0\no=- 7 7 IN IP4 192.0.2.9\n\nc=IN IP4 192.0.2.9\nm=audio 4000 RTP/AVP 8\na=ptime:20.0\n"
    sdp = parse_sdp(body)
    assert sdp.name is None and sdp.timing == []
    assert sdp.media[0].ptime == 20
    out = sdp.to_bytes()
    assert out == body.replace(b"\n\n", b"\n").replace(b"\n", b"\r\n")
    assert parse_sdp(out).to_bytes() == out


def test_media_accessors() -> None:
    audio = parse_sdp(POLYCOM).media[0]
    assert audio.rtpmap(102) == RtpMap(102, "G7221", 16000)
    assert audio.rtpmap(96) is None
    assert audio.fmtp(18) == "annexb=no"
    assert audio.fmtp(0) is None
    assert audio.ptime is None
    stereo = parse_sdp(BARESIP).media[0]
    assert stereo.rtpmap(96) == RtpMap(96, "opus", 48000, 2)
    assert stereo.ptime == 20


MALFORMED = {
    "empty": b"",
    "blank": b"\r\n\r\n",
    "no version": b"o=- 1 1 IN IP4 192.0.2.1\r\n",
    "version 1": b"v=1\r\no=- 1 1 IN IP4 192.0.2.1\r\n",
    "no origin": b"v=0\r\ns=-\r\n",
    "origin short": b"v=0\r\no=- 1 1 IN IP4\r\n",
    "sess-version text": b"v=0\r\no=- 1 one IN IP4 192.0.2.1\r\n",
    "sess-version superscript": "v=0\r\no=- 1 ²3 IN IP4 192.0.2.1\r\n".encode(),
    "two origins": b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\no=- 1 1 IN IP4 192.0.2.1\r\n",
    "second version": b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nv=0\r\n",
    "no equals": b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm audio 1 RTP/AVP 0\r\n",
    "long type": b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nab=c\r\n",
    "connection short": b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4\r\n",
    "media short": b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio 1\r\n",
    "port text": b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio x RTP/AVP 0\r\n",
    "port too big": b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio 70000 RTP/AVP 0\r\n",
    "port negative": b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio -1 RTP/AVP 0\r\n",
    "empty attribute": b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\na=\r\n",
    "repeat before time": b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nr=7d 1h 0\r\n",
    "NUL": b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=a\x00b\r\n",
    "bare CR": b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=a\rb\r\n",
}


@pytest.mark.parametrize("body", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_sdp_is_400(body: bytes) -> None:
    with pytest.raises(SdpError) as info:
        parse_sdp(body)
    assert info.value.status == 400
    assert isinstance(info.value, SipParseError)


SDP_LINES = st.sampled_from([
    "v=0", "o=- 1 2 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "c=IN IP4 0.0.0.0", "t=0 0",
    "r=1 2 3", "b=AS:64", "m=audio 4000 RTP/AVP 0 8 101", "m=video 0 RTP/AVP 31", "m=audio 0 RTP/SAVP 0",
    "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=rtpmap:8 PCMA", "a=fmtp:101 0-16",
    "a=sendonly", "a=inactive", "a=recvonly", "a=ptime:30", "a=ptime:x", "i=x", "x=y", "", "a=",
    "m=audio 4000", "c=IN", "v=1", "o=x",
])


def check_total(data: bytes) -> None:
    """Either a description that serializes stably and negotiates (or 488s), or SdpError: nothing else."""
    try:
        sdp = parse_sdp(data)
    except SdpError as exc:
        assert exc.status == 400
        return
    out = sdp.to_bytes()
    assert parse_sdp(out).to_bytes() == out
    try:
        negotiate(sdp, DEFAULT_CODECS, LOCAL_HOST, LOCAL_PORT, new_session())
    except SdpError as exc:
        assert exc.status == 488
    media_direction(sdp)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes(data: bytes) -> None:
    check_total(data)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(SDP_LINES, st.text(max_size=20)), max_size=15),
       st.sampled_from(["\r\n", "\n"]))
def test_fuzz_lines(lines: list[str], eol: str) -> None:
    check_total(eol.join(["v=0", "o=- 1 2 IN IP4 192.0.2.1", *lines]).encode("utf-8", "surrogatepass"))


# -- answering (RFC 3264 §6) ---------------------------------------------------------------------------------

def test_answer_to_rfc3665_offer() -> None:
    session = new_session()
    sdp, media = negotiate(parse_sdp(body_of(RFC3665 / "3.1_F1.sip")), DEFAULT_CODECS, LOCAL_HOST,
                           LOCAL_PORT, session)
    assert sdp.to_bytes() == crlf(f"""
v=0
o=zvonok 3800000000 3800000000 IN IP4 {LOCAL_HOST}
s=-
c=IN IP4 {LOCAL_HOST}
t=0 0
m=audio {LOCAL_PORT} RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=ptime:20
a=sendrecv
""")
    assert media == NegotiatedMedia(
        remote_host="192.0.2.101", remote_port=49172, payload_type=0, codec_name="PCMU", clock_rate=8000,
        telephone_event_pt=None, direction=Direction.SENDRECV, ptime=20)


def test_answer_to_baresip_picks_first_supported_in_offer_order() -> None:
    sdp, media = answer(BARESIP)
    # opus and G722 come first in the offer but are not ours; PCMU is the offerer's next choice
    assert (media.payload_type, media.codec_name, media.telephone_event_pt) == (0, "PCMU", 101)
    assert (media.remote_host, media.remote_port, media.ptime) == ("192.168.1.33", 10462, 20)
    audio = sdp.media[0]
    assert audio.formats == ["0", "101"]
    assert audio.attribute_values("rtpmap") == ["0 PCMU/8000", "101 telephone-event/8000"]
    assert audio.fmtp(101) == "0-16"
    assert audio.direction is Direction.SENDRECV


def test_answer_to_sipp() -> None:
    sdp, media = answer(SIPP_UAC)
    assert (media.remote_host, media.remote_port, media.codec_name) == ("127.0.0.1", 6000, "PCMU")
    assert media.telephone_event_pt is None
    assert sdp.media[0].formats == ["0"]


def test_answer_to_polycom_rejects_video_in_place() -> None:
    sdp, media = answer(POLYCOM)
    # PCMA is before PCMU in the offer: the offerer's order wins over ours (RFC 3264 §6.1)
    assert (media.payload_type, media.codec_name, media.telephone_event_pt) == (8, "PCMA", 127)
    assert [(m.media, m.port, m.proto, m.formats) for m in sdp.media] == [
        ("audio", LOCAL_PORT, "RTP/AVP", ["8", "127"]), ("video", 0, "RTP/AVP", ["109", "34"])]
    assert sdp.media[1].attributes == []
    # the session-level a=sendrecv of the offer is honoured
    assert media.direction is Direction.SENDRECV


def test_answer_echoes_dynamic_payload_types() -> None:
    offer = crlf("""
v=0
o=- 5 5 IN IP4 192.0.2.7
s=-
c=IN IP4 192.0.2.7
t=0 0
m=audio 7078 RTP/AVP 112 96 97
a=rtpmap:112 PCMU/8000
a=rtpmap:96 telephone-event/48000
a=rtpmap:97 telephone-event/8000
a=fmtp:97 0-11
a=ptime:30
""")
    sdp, media = answer(offer)
    assert (media.payload_type, media.telephone_event_pt, media.ptime) == (112, 97, 30)
    assert sdp.media[0].formats == ["112", "97"]
    assert sdp.media[0].attribute("ptime") == "30"


def test_static_payload_type_without_rtpmap() -> None:
    offer = crlf("""
v=0
o=- 5 5 IN IP4 192.0.2.7
s=-
c=IN IP4 192.0.2.7
t=0 0
m=audio 7078 RTP/AVP 18 8
""")
    _, media = answer(offer)
    assert (media.payload_type, media.codec_name) == (8, "PCMA")


def test_telephone_event_only_when_we_support_it() -> None:
    sdp, media = negotiate(parse_sdp(BARESIP), [PCMA, PCMU], LOCAL_HOST, LOCAL_PORT, new_session())
    assert (media.codec_name, media.telephone_event_pt) == ("PCMU", None)
    assert sdp.media[0].formats == ["0"]


def test_second_audio_stream_and_srtp_are_rejected() -> None:
    offer = crlf("""
v=0
o=- 5 5 IN IP4 192.0.2.7
s=-
c=IN IP4 192.0.2.7
t=0 0
m=audio 5000 RTP/SAVP 0
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
m=audio 6000 RTP/AVP 8
m=audio 7000 RTP/AVP 0
""")
    sdp, media = answer(offer)
    assert (media.remote_port, media.codec_name) == (6000, "PCMA")
    assert [(m.port, m.proto) for m in sdp.media] == [(0, "RTP/SAVP"), (LOCAL_PORT, "RTP/AVP"), (0, "RTP/AVP")]


def test_media_level_connection_wins() -> None:
    offer = crlf("""
v=0
o=- 5 5 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
t=0 0
m=audio 5000 RTP/AVP 0
c=IN IP4 192.0.2.50
""")
    _, media = answer(offer)
    assert media.remote_host == "192.0.2.50"
    sdp, _ = negotiate(parse_sdp(offer), DEFAULT_CODECS, "2001:db8::5", LOCAL_PORT, new_session())
    assert sdp.connection == Connection("IN", "IP6", "2001:db8::5")
    assert sdp.origin.addrtype == "IP6"


NOT_ACCEPTABLE = {
    "only G729": "m=audio 5000 RTP/AVP 18\na=rtpmap:18 G729/8000",
    "only video": "m=video 5000 RTP/AVP 31",
    "audio disabled": "m=audio 0 RTP/AVP 0",
    "only SRTP": "m=audio 5000 RTP/SAVP 0 8",
    "only telephone-event": "m=audio 5000 RTP/AVP 101\na=rtpmap:101 telephone-event/8000",
    "PCMU at 16 kHz": "m=audio 5000 RTP/AVP 96\na=rtpmap:96 PCMU/16000",
    "no media": "",
}


@pytest.mark.parametrize("media", list(NOT_ACCEPTABLE.values()), ids=list(NOT_ACCEPTABLE))
def test_no_common_codec_is_488(media: str) -> None:
    offer = crlf("v=0\no=- 5 5 IN IP4 192.0.2.7\ns=-\nc=IN IP4 192.0.2.7\nt=0 0\n" + media)
    with pytest.raises(SdpError) as info:
        answer(offer)
    assert info.value.status == 488


def test_no_connection_address_is_488() -> None:
    offer = crlf("v=0\no=- 5 5 IN IP4 192.0.2.7\ns=-\nt=0 0\nm=audio 5000 RTP/AVP 0")
    with pytest.raises(SdpError) as info:
        answer(offer)
    assert info.value.status == 488


# -- hold and resume (RFC 3264 §8.4, RFC 2543 c=0.0.0.0) -----------------------------------------------------

def offer_with(*, direction: str | None = None, session_direction: str | None = None,
               host: str = "192.0.2.7") -> bytes:
    lines = ["v=0", "o=- 5 6 IN IP4 192.0.2.7", "s=-", f"c=IN IP4 {host}", "t=0 0"]
    if session_direction:
        lines.append(f"a={session_direction}")
    lines += ["m=audio 5000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000"]
    if direction:
        lines.append(f"a={direction}")
    return crlf("\n".join(lines))


@pytest.mark.parametrize(("offered", "answered", "hold"), [
    (None, Direction.SENDRECV, False),
    ("sendrecv", Direction.SENDRECV, False),
    ("sendonly", Direction.RECVONLY, True),
    ("recvonly", Direction.SENDONLY, False),
    ("inactive", Direction.INACTIVE, True),
])
def test_answer_direction(offered: str | None, answered: Direction, hold: bool) -> None:
    offer = parse_sdp(offer_with(direction=offered))
    assert is_hold(offer) is hold
    sdp, media = negotiate(offer, DEFAULT_CODECS, LOCAL_HOST, LOCAL_PORT, new_session())
    assert sdp.media[0].direction is answered
    assert media.direction is answered
    assert media.on_hold is (not answered.sends)


def test_session_level_direction_and_media_override() -> None:
    assert media_direction(parse_sdp(offer_with(session_direction="sendonly"))) is Direction.SENDONLY
    both = parse_sdp(offer_with(session_direction="sendonly", direction="sendrecv"))
    assert media_direction(both) is Direction.SENDRECV


def test_rfc2543_hold_with_zero_address() -> None:
    offer = parse_sdp(offer_with(host="0.0.0.0"))
    assert media_direction(offer) is Direction.SENDONLY
    assert is_hold(offer)
    sdp, media = negotiate(offer, DEFAULT_CODECS, LOCAL_HOST, LOCAL_PORT, new_session())
    assert sdp.media[0].direction is Direction.RECVONLY
    assert (media.remote_host, media.direction, media.on_hold) == ("0.0.0.0", Direction.RECVONLY, True)
    inactive = parse_sdp(offer_with(host="0.0.0.0", direction="recvonly"))
    assert media_direction(inactive) is Direction.INACTIVE


def test_we_answer_on_hold() -> None:
    offer = parse_sdp(offer_with())
    sdp, media = negotiate(offer, DEFAULT_CODECS, LOCAL_HOST, LOCAL_PORT, new_session(),
                           direction=Direction.SENDONLY)
    assert sdp.media[0].direction is Direction.SENDONLY
    # an offer that is itself sendonly: we can neither send nor receive
    held = parse_sdp(offer_with(direction="sendonly"))
    _, media = negotiate(held, DEFAULT_CODECS, LOCAL_HOST, LOCAL_PORT, new_session(),
                         direction=Direction.SENDONLY)
    assert media.direction is Direction.INACTIVE


def test_hold_resume_session_versions() -> None:
    session = new_session()

    def version_after(offer: bytes) -> int:
        sdp, _ = negotiate(parse_sdp(offer), DEFAULT_CODECS, LOCAL_HOST, LOCAL_PORT, session)
        return sdp.origin.sess_version

    first = version_after(offer_with())
    assert version_after(offer_with()) == first  # a session refresh: nothing changed
    assert version_after(offer_with(direction="sendonly")) == first + 1  # held: we answer recvonly
    assert version_after(offer_with(direction="sendonly")) == first + 1
    assert version_after(offer_with(direction="sendrecv")) == first + 2  # resumed
    assert session.version == first + 2


# -- offering (RFC 3264 §5, §7) ------------------------------------------------------------------------------

def test_build_offer() -> None:
    session = LocalSession(sess_id=42, sess_version=7, username="zvonok", name="call")
    offer = build_offer(LOCAL_HOST, LOCAL_PORT, DEFAULT_CODECS, Direction.SENDRECV, session)
    assert offer.to_bytes() == crlf(f"""
v=0
o=zvonok 42 7 IN IP4 {LOCAL_HOST}
s=call
c=IN IP4 {LOCAL_HOST}
t=0 0
m=audio {LOCAL_PORT} RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
""")
    again = build_offer(LOCAL_HOST, LOCAL_PORT, DEFAULT_CODECS, Direction.SENDRECV, session)
    assert again.origin.sess_version == 7
    hold = build_offer(LOCAL_HOST, LOCAL_PORT, DEFAULT_CODECS, Direction.SENDONLY, session)
    assert hold.origin.sess_version == 8
    assert hold.media[0].direction is Direction.SENDONLY
    assert hold.connection == Connection("IN", "IP4", LOCAL_HOST)  # never 0.0.0.0 (RFC 3264 §8.4)
    assert (hold.origin.sess_id, hold.origin.username) == ("42", "zvonok")
    # what we offer, we can answer ourselves
    _, media = negotiate(parse_sdp(offer.to_bytes()), DEFAULT_CODECS, "192.0.2.1", 5000, new_session())
    assert (media.payload_type, media.telephone_event_pt) == (0, 101)


def test_accept_answer_from_rfc3665() -> None:
    offer = build_offer(LOCAL_HOST, LOCAL_PORT, [PCMU], Direction.SENDRECV, new_session())
    media = accept_answer(offer, parse_sdp(body_of(RFC3665 / "3.1_F3.sip")), DEFAULT_CODECS)
    assert media == NegotiatedMedia(
        remote_host="192.0.2.201", remote_port=3456, payload_type=0, codec_name="PCMU", clock_rate=8000,
        telephone_event_pt=None, direction=Direction.SENDRECV, ptime=20)


def test_accept_answer_direction_and_events() -> None:
    offer = build_offer(LOCAL_HOST, LOCAL_PORT, DEFAULT_CODECS, Direction.SENDONLY, new_session())
    their = crlf("""
v=0
o=- 9 9 IN IP4 192.0.2.9
s=-
c=IN IP4 192.0.2.9
t=0 0
m=audio 9000 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=recvonly
""")
    media = accept_answer(offer, parse_sdp(their), DEFAULT_CODECS)
    assert (media.codec_name, media.telephone_event_pt, media.direction) == ("PCMA", 101, Direction.SENDONLY)


def test_accept_answer_rejected_is_488() -> None:
    offer = build_offer(LOCAL_HOST, LOCAL_PORT, DEFAULT_CODECS, Direction.SENDRECV, new_session())
    rejected = crlf("v=0\no=- 9 9 IN IP4 192.0.2.9\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 0 RTP/AVP 0")
    with pytest.raises(SdpError) as info:
        accept_answer(offer, parse_sdp(rejected), DEFAULT_CODECS)
    assert info.value.status == 488


def test_direction_algebra() -> None:
    for direction in Direction:
        assert direction.reverse().reverse() is direction
        assert Direction.SENDRECV.limit(direction) is direction
    assert Direction.SENDONLY.limit(Direction.RECVONLY) is Direction.INACTIVE


def test_codec_matching_is_case_insensitive() -> None:
    offer = crlf("""
v=0
o=- 5 5 IN IP4 192.0.2.7
s=-
c=IN IP4 192.0.2.7
t=0 0
m=audio 5000 RTP/AVP 100 101
a=rtpmap:100 pcma/8000
a=rtpmap:101 Telephone-Event/8000
""")
    _, media = answer(offer)
    assert (media.payload_type, media.codec_name, media.telephone_event_pt) == (100, "PCMA", 101)
    assert Codec(name="PCMU", clock_rate=8000, payload_type=0) == PCMU
    assert TELEPHONE_EVENT.is_telephone_event and not PCMA.is_telephone_event


@pytest.mark.parametrize("module", [sdp_module, sdp_offer_answer])
def test_modules_are_sans_io(module: Any) -> None:
    tree = ast.parse(Path(module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert not imported & {"asyncio", "socket", "time", "random", "os", "secrets", "selectors"}
