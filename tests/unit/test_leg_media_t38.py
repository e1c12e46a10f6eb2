"""A leg's offer/answer with T.38: a re-INVITE to T.38 answered only when the leg may take it, our own
T.38 offer and its answer, session refreshes that keep T.38."""

from __future__ import annotations

import pytest

from zvonok.sip.sdp import parse_sdp
from zvonok.sip.sdp_offer_answer import DEFAULT_CODECS, LocalSession
from zvonok.sip.sdp_t38 import REDUNDANCY, T38Params, image_stream
from zvonok.telephony.leg_events import LegProtocolError
from zvonok.telephony.leg_media import OfferAnswer

AUDIO_OFFER = (b"v=0\r\no=c 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
               b"m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")
T38_OFFER = (b"v=0\r\no=c 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
             b"m=image 40002 udptl t38\r\na=T38FaxVersion:0\r\na=T38MaxBitRate:14400\r\n"
             b"a=T38FaxRateManagement:transferredTCF\r\na=T38FaxMaxDatagram:300\r\na=T38FaxUdpEC:t38UDPRedundancy\r\n")
OURS = T38Params(max_datagram=400, udp_ec=REDUNDANCY)


def _leg() -> OfferAnswer:
    oa = OfferAnswer(host="198.51.100.5", port=30000, codecs=DEFAULT_CODECS, session=LocalSession(sess_id=5))
    oa.media = oa.answer(AUDIO_OFFER)
    return oa


def test_a_leg_that_may_not_take_t38_refuses_the_reinvite_with_488() -> None:
    oa = _leg()
    with pytest.raises(LegProtocolError) as raised:
        oa.answer(T38_OFFER)
    assert raised.value.status == 488
    assert oa.image is None and oa.take_image() is None


def test_a_fax_leg_answers_t38_on_its_own_port_and_keeps_the_audio_agreement() -> None:
    oa = _leg()
    audio = oa.media
    oa.t38 = OURS
    assert oa.answer(T38_OFFER) is audio
    answer = parse_sdp(oa.local_sdp)
    media = image_stream(answer)
    assert media is not None and media.port == 30000
    assert answer.origin.sess_version == 6  # the description changed: the version moved by one
    image = oa.take_image()
    assert image is not None and (image.remote_port, image.remote_max_datagram) == (40002, 300)
    assert oa.take_image() is None  # once
    oa.answer(T38_OFFER)  # the same offer again (a session refresh): no news
    assert oa.take_image() is None


def test_our_t38_offer_its_answer_and_a_refresh_that_stays_t38() -> None:
    oa = _leg()
    oa.t38 = OURS
    oa.offer_image = True
    offer = parse_sdp(oa.new_offer())
    assert image_stream(offer) is not None and not oa.offer_image
    assert oa.take_answer(T38_OFFER) is oa.media
    image = oa.take_image()
    assert image is not None and image.remote_port == 40002
    assert image_stream(parse_sdp(oa.refresh_offer())) is not None  # refreshes keep T.38
    assert image_stream(parse_sdp(oa.new_offer())) is not None


def test_a_refused_t38_offer_leaves_the_leg_on_audio() -> None:
    oa = _leg()
    oa.t38 = OURS
    oa.offer_image = True
    oa.new_offer()
    refused = T38_OFFER.replace(b"m=image 40002", b"m=image 0")
    assert oa.take_answer(refused) is None
    assert oa.image is None and oa.take_image() is None
    assert image_stream(parse_sdp(oa.new_offer())) is None  # the next offer is audio again


def test_an_audio_offer_after_t38_brings_the_leg_back_to_audio() -> None:
    oa = _leg()
    oa.t38 = OURS
    oa.answer(T38_OFFER)
    assert oa.take_image() is not None
    oa.answer(T38_OFFER)  # a session refresh of T.38: still T.38
    assert oa.image is not None
    media = oa.answer(AUDIO_OFFER.replace(b"40000", b"40004"))
    assert media.remote_port == 40004 and oa.image is None
    assert image_stream(parse_sdp(oa.local_sdp)) is None
