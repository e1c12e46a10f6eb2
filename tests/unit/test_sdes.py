"""SDES (RFC 4568): a=crypto parse/serialize on the RFC's own examples, and SRTP in offer/answer."""

from __future__ import annotations

import base64

import pytest

from zvonok.sip.sdes import CryptoAttribute, KeyParams, crypto_line, parse_crypto, usable_crypto
from zvonok.sip.sdp import Direction, SdpError, parse_sdp
from zvonok.sip.sdp_offer_answer import (
    DEFAULT_CODECS,
    LocalSession,
    accept_answer,
    build_offer,
    negotiate,
)

# RFC 4568 §9.1 (the a=crypto line of the example offer and answer) and §6.1/§10 (two keys with MKIs,
# a session parameter; F8 is a suite we do not run)
RFC_OFFER = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"
RFC_OFFER_32 = "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32"
RFC_ANSWER = "1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj|2^20|1:32"
RFC_F8 = ("2 F8_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm|2^20|1:4;"
          "inline:QUJjZGVmMTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5|2^20|2:4 FEC_ORDER=FEC_SRTP")
KEY = bytes(range(30))
PEER_KEY = bytes(range(100, 130))


@pytest.mark.parametrize("value", [RFC_OFFER, RFC_OFFER_32, RFC_ANSWER, RFC_F8])
def test_rfc4568_examples_round_trip(value: str) -> None:
    assert str(parse_crypto(value)) == value


def test_fields_of_the_examples() -> None:
    offer = parse_crypto(RFC_OFFER)
    assert (offer.tag, offer.suite) == (1, "AES_CM_128_HMAC_SHA1_80")
    (key,) = offer.keys
    assert key.key == base64.b64decode("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR") and len(key.key) == 30
    assert (key.lifetime, key.mki) == ("2^20", "1:4")
    f8 = parse_crypto(RFC_F8)
    assert [k.mki for k in f8.keys] == ["1:4", "2:4"] and f8.session_params == ("FEC_ORDER=FEC_SRTP",)
    assert crypto_line(3, KEY) == str(CryptoAttribute(tag=3, suite="AES_CM_128_HMAC_SHA1_80",
                                                      keys=(KeyParams(key=KEY),)))


@pytest.mark.parametrize("value", ["", "x AES_CM_128_HMAC_SHA1_80 inline:AAAA", "1 AES_CM_128_HMAC_SHA1_80",
                                   "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64", "1 S uri:http://x"])
def test_malformed_crypto_is_400(value: str) -> None:
    with pytest.raises(SdpError) as info:
        parse_crypto(value)
    assert info.value.status == 400


def test_usable_crypto_skips_what_we_cannot_run() -> None:
    ours = crypto_line(5, KEY)
    # MKIs, an unknown suite, a session parameter, a short key, garbage: the line after them is taken
    assert usable_crypto([RFC_OFFER, RFC_F8, "9 AES_CM_128_HMAC_SHA1_32 inline:" + base64.b64encode(KEY).decode(),
                          "7 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(KEY[:20]).decode(), "junk",
                          ours]) == parse_crypto(ours)
    assert usable_crypto([RFC_OFFER]) is None


def offer_sdp(proto: str, *crypto: str) -> bytes:
    lines = ["v=0", "o=phone 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0",
             f"m=audio 4000 {proto} 0 8", *(f"a=crypto:{c}" for c in crypto), ""]
    return "\r\n".join(lines).encode()


def session() -> LocalSession:
    return LocalSession(sess_id=1)


def test_savp_offer_answered_with_our_key_under_its_tag() -> None:
    offer = parse_sdp(offer_sdp("RTP/SAVP", RFC_OFFER, "4 AES_CM_128_HMAC_SHA1_80 inline:"
                                + base64.b64encode(PEER_KEY).decode()))
    answer, media = negotiate(offer, DEFAULT_CODECS, "203.0.113.5", 20000, session(), srtp_key=KEY)
    (m,) = answer.media
    assert m.proto == "RTP/SAVP"
    assert m.attribute_values("crypto") == [crypto_line(4, KEY)]
    assert media.srtp_key == PEER_KEY


def test_best_effort_srtp_on_an_avp_offer() -> None:
    offer = parse_sdp(offer_sdp("RTP/AVP", crypto_line(1, PEER_KEY)))
    answer, media = negotiate(offer, DEFAULT_CODECS, "203.0.113.5", 20000, session(), srtp_key=KEY)
    assert (answer.media[0].proto, media.srtp_key) == ("RTP/AVP", PEER_KEY)
    assert answer.media[0].attribute_values("crypto") == [crypto_line(1, KEY)]
    # SRTP off for this leg: the same offer is answered plain, no key given away
    answer, media = negotiate(offer, DEFAULT_CODECS, "203.0.113.5", 20000, session())
    assert (answer.media[0].attribute_values("crypto"), media.srtp_key) == ([], None)


@pytest.mark.parametrize(("proto", "crypto", "kwargs"), [
    ("RTP/SAVP", (crypto_line(1, PEER_KEY),), {}),  # SRTP offered, off here
    ("RTP/SAVP", (RFC_OFFER,), {"srtp_key": KEY}),  # only a key with an MKI
    ("RTP/AVP", (), {"srtp_key": KEY, "srtp_required": True}),  # plain offer, SRTP required
])
def test_488_when_srtp_cannot_be_agreed(proto: str, crypto: tuple[str, ...], kwargs: dict[str, object]) -> None:
    with pytest.raises(SdpError) as info:
        negotiate(parse_sdp(offer_sdp(proto, *crypto)), DEFAULT_CODECS, "203.0.113.5", 20000, session(),
                  **kwargs)  # type: ignore[arg-type]
    assert info.value.status == 488


def test_our_srtp_offer_and_the_answer() -> None:
    offer = build_offer("203.0.113.5", 20000, DEFAULT_CODECS, Direction.SENDRECV, session(), srtp_key=KEY)
    assert offer.media[0].proto == "RTP/SAVP" and offer.media[0].attribute_values("crypto") == [crypto_line(1, KEY)]
    media = accept_answer(offer, parse_sdp(offer_sdp("RTP/SAVP", crypto_line(1, PEER_KEY))), DEFAULT_CODECS)
    assert media.srtp_key == PEER_KEY
    for bad in (offer_sdp("RTP/AVP"), offer_sdp("RTP/SAVP"), offer_sdp("RTP/SAVP", crypto_line(2, PEER_KEY))):
        with pytest.raises(SdpError):
            accept_answer(offer, parse_sdp(bad), DEFAULT_CODECS)
