"""The offer/answer state of one call leg (RFC 3264), over :mod:`zvonok.sip.sdp_offer_answer`.

How it works: :class:`OfferAnswer` keeps what one leg has agreed and what is in flight — the media last
agreed, our offer awaiting its answer, the description we last sent, the direction we want (sendonly
holds the peer, §8.4) and whether the peer holds us. The :class:`~zvonok.telephony.leg.Leg` decides *when*
an offer or an answer goes (in which message, RFC 3261 §13.2.1 and §14); this object only writes and reads
the descriptions, with our one :class:`LocalSession` so that the o= version moves only on a change.

T.38 (a fax call, :mod:`zvonok.sip.sdp_t38`): when the owner sets ``t38`` (our parameters), an offer
holding an image stream is answered with T.38 and its outcome kept in ``image`` (``image_new`` until the
owner takes it with :meth:`take_image`); the audio agreement stays in ``media`` as it was (the engine
keeps the endpoint, whose socket then carries UDPTL). ``offer_image`` makes our next offer a T.38 one.
"""

from __future__ import annotations

from zvonok.sip.sdp import Direction, SdpError, SessionDescription, parse_sdp
from zvonok.sip.sdp_offer_answer import (
    Codec,
    LocalSession,
    NegotiatedMedia,
    accept_answer,
    build_offer,
    negotiate,
)
from zvonok.sip.sdp_t38 import (
    NegotiatedT38,
    T38Params,
    accept_t38_answer,
    build_t38_offer,
    image_stream,
    negotiate_t38,
)

from .leg_events import Held, LegEvent, LegProtocolError, OfferReceived, Resumed

__all__ = ["OfferAnswer"]


class OfferAnswer:
    """RFC 3264 for one leg: ``host``/``port`` is our RTP endpoint, ``codecs`` what we may use."""

    __slots__ = ("codecs", "host", "port", "session", "srtp_key", "srtp_required", "media", "offer",
                 "local_sdp", "direction", "remote_held", "t38", "image", "image_new", "offer_image")

    def __init__(self, *, host: str, port: int, codecs: tuple[Codec, ...], session: LocalSession,
                 srtp_key: bytes | None = None, srtp_required: bool = False) -> None:
        self.codecs = codecs
        self.srtp_key = srtp_key  # ours (SDES, RFC 4568)
        self.srtp_required = srtp_required
        self.host = host
        self.port = port
        self.session = session
        self.media: NegotiatedMedia | None = None  # as last agreed
        self.offer: SessionDescription | None = None  # ours, awaiting its answer
        self.local_sdp = b""  # what we last sent, offer or answer
        self.direction = Direction.SENDRECV  # what we offer and answer with
        self.remote_held = False  # the peer's last offer does not receive
        self.t38: T38Params | None = None  # ours, when this leg carries a fax that may go T.38
        self.image: NegotiatedT38 | None = None  # T.38 as last agreed
        self.image_new = False  # agreed and not yet taken by the owner
        self.offer_image = False  # our next offer is T.38's

    def new_offer(self) -> bytes:
        """Our offer with the wanted direction; a re-offer keeps the codec agreed (and telephone-event)."""
        if self.t38 is not None and (self.offer_image or self.image is not None):
            self.offer_image = False  # (once T.38 runs, our re-offers keep it)
            self.offer = build_t38_offer(self.host, self.port, self.session, self.t38)
            self.local_sdp = self.offer.to_bytes()
            return self.local_sdp
        codecs, key = self.codecs, self.srtp_key
        if self.media is not None:
            codecs = tuple(c for c in codecs if c.name == self.media.codec_name or c.is_telephone_event)
            if self.media.srtp_key is None:
                key = None  # SRTP stays as agreed: a leg that runs plain RTP is re-offered plain
        self.offer = build_offer(self.host, self.port, codecs, self.direction, self.session, srtp_key=key)
        self.local_sdp = self.offer.to_bytes()
        return self.local_sdp

    def refresh_offer(self) -> bytes:
        """The offer of a session refresh: the description last sent, version unchanged (RFC 4028 §7.4,
        RFC 6337 §3.1), unless a hold asks for another direction than that description's."""
        if not self.local_sdp or self.remote_held or self.direction is not Direction.SENDRECV:
            return self.new_offer()
        self.offer = parse_sdp(self.local_sdp)
        return self.local_sdp

    def answer(self, body: bytes) -> NegotiatedMedia:
        """Answer the peer's offer into ``local_sdp``; :class:`LegProtocolError` 488 or 400 when we cannot."""
        if self.t38 is not None and self.media is not None:
            try:
                offer = parse_sdp(body)
                if image_stream(offer) is not None:
                    answer, image = negotiate_t38(offer, self.host, self.port, self.session, self.t38)
                    self.local_sdp = answer.to_bytes()
                    self.offer = None
                    self.image_new = image != self.image
                    self.image = image
                    return self.media
            except SdpError as exc:
                raise LegProtocolError(str(exc), 488 if exc.status == 488 else 400) from exc
        try:
            answer, media = negotiate(parse_sdp(body), self.codecs, self.host, self.port, self.session,
                                      direction=self.direction, srtp_key=self.srtp_key,
                                      srtp_required=self.srtp_required)
        except SdpError as exc:
            raise LegProtocolError(str(exc), 488 if exc.status == 488 else 400) from exc
        self.local_sdp = answer.to_bytes()
        self.offer = None
        self.image = None  # (an audio offer after T.38: the call is back on audio)
        return media

    def take_answer(self, body: bytes) -> NegotiatedMedia | None:
        """Apply the answer to our offer; None when no offer is out, no body, or it cannot be used."""
        if self.offer is None or not body:
            return None
        if image_stream(self.offer) is not None:
            try:
                image = accept_t38_answer(self.offer, parse_sdp(body))
            except SdpError:
                self.offer = None
                return None
            self.offer = None
            self.image_new = image != self.image
            self.image = image
            return self.media
        try:
            media = accept_answer(self.offer, parse_sdp(body), self.codecs)
        except SdpError:
            return None
        self.offer = None
        self.media = media
        return media

    def take_image(self) -> NegotiatedT38 | None:
        """T.38 newly agreed (once), or None."""
        if not self.image_new:
            return None
        self.image_new = False
        return self.image

    def offer_taken(self, media: NegotiatedMedia) -> list[LegEvent]:
        """The peer's offer was answered: the events for the Call, hold or resume as its direction says."""
        self.media = media
        events: list[LegEvent] = [OfferReceived(media=media)]
        held = not media.direction.sends  # the peer will not receive what we send
        if held != self.remote_held:
            self.remote_held = held
            events.append(Held() if held else Resumed())
        return events
