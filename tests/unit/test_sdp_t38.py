"""SDP for T.38 (m=image udptl t38, T.38 Annex D §D.2.3): parse, produce, offer/answer."""

from __future__ import annotations

import pytest

from zvonok.sip.sdp import SdpError, parse_sdp
from zvonok.sip.sdp_offer_answer import LocalSession
from zvonok.sip.sdp_t38 import (
    FEC,
    LOCAL_TCF,
    REDUNDANCY,
    TRANSFERRED_TCF,
    T38Params,
    accept_t38_answer,
    build_t38_offer,
    image_stream,
    negotiate_t38,
    t38_params,
)

# a carrier's re-INVITE switching a fax call to T.38, in the shape Asterisk and most SBCs write it
CARRIER_REINVITE = (
    b"v=0\r\no=carrier 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=image 40000 udptl t38\r\n"
    b"a=T38FaxVersion:0\r\na=T38MaxBitRate:14400\r\na=T38FaxRateManagement:transferredTCF\r\n"
    b"a=T38FaxMaxBuffer:200\r\na=T38FaxMaxDatagram:200\r\na=T38FaxUdpEC:t38UDPRedundancy\r\n"
)
OURS = T38Params(version=0, max_bit_rate=14400, max_datagram=400, udp_ec=REDUNDANCY)


def test_parse_a_carriers_stream() -> None:
    sdp = parse_sdp(CARRIER_REINVITE)
    media = image_stream(sdp)
    assert media is not None and media.port == 40000
    assert t38_params(media) == T38Params(version=0, max_bit_rate=14400, rate_management=TRANSFERRED_TCF,
                                          max_datagram=200, max_buffer=200, udp_ec=REDUNDANCY)


def test_attribute_names_in_any_case_and_bad_values_default() -> None:
    sdp = parse_sdp(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                    b"m=image 4000 UDPTL T38\r\na=t38faxversion:9\r\na=t38maxbitrate:fast\r\n"
                    b"a=t38faxfillbitremoval\r\na=T38FaxRateManagement:localTCF\r\na=T38FaxUdpEC:t38UDPFEC\r\n")
    media = image_stream(sdp)
    assert media is not None
    params = t38_params(media)
    assert (params.version, params.max_bit_rate, params.rate_management, params.udp_ec) == (0, 14400, LOCAL_TCF, FEC)
    assert params.fill_bit_removal and params.max_datagram is None


def test_answer_to_a_reinvite_accepts_t38_and_keeps_stream_positions() -> None:
    offer = parse_sdp(CARRIER_REINVITE.replace(b"m=image", b"m=audio 0 RTP/AVP 8\r\nm=image"))
    answer, negotiated = negotiate_t38(offer, "198.51.100.5", 30000, LocalSession(sess_id=7), OURS)
    wire = answer.to_bytes()
    assert b"m=audio 0 RTP/AVP 8\r\nm=image 30000 udptl t38\r\n" in wire
    for line in (b"a=T38FaxVersion:0", b"a=T38MaxBitRate:14400", b"a=T38FaxRateManagement:transferredTCF",
                 b"a=T38FaxMaxDatagram:400", b"a=T38FaxUdpEC:t38UDPRedundancy"):
        assert line + b"\r\n" in wire
    assert (negotiated.remote_host, negotiated.remote_port, negotiated.remote_max_datagram) == ("192.0.2.10", 40000, 200)
    assert negotiated.redundancy
    assert image_stream(parse_sdp(wire)) is not None  # what we write parses back


def test_answer_takes_the_lower_version_and_rate_and_never_fec() -> None:
    offer = parse_sdp(CARRIER_REINVITE.replace(b"T38FaxVersion:0", b"T38FaxVersion:3")
                      .replace(b"T38MaxBitRate:14400", b"T38MaxBitRate:9600")
                      .replace(b"t38UDPRedundancy", b"t38UDPFEC"))
    _, negotiated = negotiate_t38(offer, "198.51.100.5", 30000, LocalSession(sess_id=7),
                                  T38Params(version=1, max_bit_rate=14400, max_datagram=400))
    assert (negotiated.params.version, negotiated.params.max_bit_rate, negotiated.params.udp_ec) == (1, 9600, REDUNDANCY)


def test_an_offer_without_t38_gets_488() -> None:
    audio_only = parse_sdp(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                           b"m=audio 4000 RTP/AVP 8\r\n")
    with pytest.raises(SdpError) as raised:
        negotiate_t38(audio_only, "198.51.100.5", 30000, LocalSession(sess_id=7), OURS)
    assert raised.value.status == 488


def test_our_offer_and_the_answer_to_it() -> None:
    offer = build_t38_offer("198.51.100.5", 30000, LocalSession(sess_id=7), OURS)
    wire = offer.to_bytes()
    assert b"m=image 30000 udptl t38\r\n" in wire and b"a=T38FaxMaxDatagram:400\r\n" in wire
    answer = parse_sdp(CARRIER_REINVITE)
    negotiated = accept_t38_answer(parse_sdp(wire), answer)
    assert (negotiated.remote_port, negotiated.remote_max_datagram, negotiated.redundancy) == (40000, 200, True)
    refused = parse_sdp(CARRIER_REINVITE.replace(b"m=image 40000", b"m=image 0"))
    with pytest.raises(SdpError):
        accept_t38_answer(parse_sdp(wire), refused)
