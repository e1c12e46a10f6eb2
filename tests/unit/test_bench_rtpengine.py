"""The pure parts of bench/_rtpengine.py: bencode both ways, and the SDP relay's Via and SDP handling
(requests get our Via and rtpengine's offer, responses lose our Via — also when SIPp folded the Vias
into one line — and a 2xx gets rtpengine's answer)."""

from __future__ import annotations

from typing import Any

from bench_script import load

rtpe: Any = load("_rtpengine")

SDP = b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 8\r\n"


class FakeNg:
    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []

    def request(self, command: dict[str, object]) -> dict[bytes, object]:
        self.requests.append(command)
        return {b"result": b"ok", b"sdp": b"m=audio 42000 RTP/AVP 8\r\n"}


def test_bencode_round_trip() -> None:
    value = {"command": "offer", "replace": ["origin", "session-connection"], "n": 42}
    decoded, end = rtpe.bdecode(rtpe.bencode(value))
    assert decoded == {b"command": b"offer", b"replace": [b"origin", b"session-connection"], b"n": 42}
    assert end == len(rtpe.bencode(value))


def test_the_relay_adds_its_via_and_offers_then_strips_it_and_answers() -> None:
    relay = rtpe.SdpRelay(("127.0.0.1", 5070), ng_port=0, port=5080)
    ng = FakeNg()
    invite = (b"INVITE sip:7001@d SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1;rport\r\n"
              b"From: <sip:a@d>;tag=f1\r\nTo: <sip:7001@d>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
              b"Content-Length:   %d\r\n\r\n" % len(SDP)) + SDP
    out, dest = relay._relay(invite, ng)
    assert dest == ("127.0.0.1", 5070)
    head, body = out.split(b"\r\n\r\n", 1)
    assert head.split(b"\r\n")[1].startswith(b"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK")
    assert body == b"m=audio 42000 RTP/AVP 8\r\n" and b"Content-Length: %d" % len(body) in head
    assert ng.requests[0]["command"] == "offer" and ng.requests[0]["from-tag"] == b"f1"
    ours = head.split(b"\r\n")[1][len(b"Via: "):]
    ok = (b"SIP/2.0 200 OK\r\nVia: " + ours + b", SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1;rport\r\n"
          b"From: <sip:a@d>;tag=f1\r\nTo: <sip:7001@d>;tag=t2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
          b"Content-Length: %d\r\n\r\n" % len(SDP)) + SDP
    out, dest = relay._relay(ok, ng)
    assert dest == ("127.0.0.1", 5090)
    assert out.split(b"\r\n")[1] == b"Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1;rport"
    assert ng.requests[1]["command"] == "answer" and ng.requests[1]["to-tag"] == b"t2"
