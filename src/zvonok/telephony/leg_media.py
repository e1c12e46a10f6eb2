"""The offer/answer state of one call leg (RFC 3264), over :mod:`zvonok.sip.sdp_offer_answer`.

How it works: :class:`OfferAnswer` keeps what one leg has agreed and what is in flight — the media last
agreed, our offer awaiting its answer, the description we last sent, the direction we want (sendonly
holds the peer, §8.4) and whether the peer holds us. The :class:`~zvonok.telephony.leg.Leg` decides *when*
an offer or an answer goes (in which message, RFC 3261 §13.2.1 and §14); this object only writes and reads
the descriptions, with our one :class:`LocalSession` so that the o= version moves only on a change.
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

from .leg_events import Held, LegEvent, LegProtocolError, OfferReceived, Resumed

__all__ = ["OfferAnswer"]


class OfferAnswer:
    """RFC 3264 for one leg: ``host``/``port`` is our RTP endpoint, ``codecs`` what we may use."""

    __slots__ = ("codecs", "host", "port", "session", "srtp_key", "srtp_required", "media", "offer",
                 "local_sdp", "direction", "remote_held")

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

    def new_offer(self) -> bytes:
        """Our offer with the wanted direction; a re-offer keeps the codec agreed (and telephone-event)."""
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
        try:
            answer, media = negotiate(parse_sdp(body), self.codecs, self.host, self.port, self.session,
                                      direction=self.direction, srtp_key=self.srtp_key,
                                      srtp_required=self.srtp_required)
        except SdpError as exc:
            raise LegProtocolError(str(exc), 488 if exc.status == 488 else 400) from exc
        self.local_sdp = answer.to_bytes()
        self.offer = None
        return media

    def take_answer(self, body: bytes) -> NegotiatedMedia | None:
        """Apply the answer to our offer; None when no offer is out, no body, or it cannot be used."""
        if self.offer is None or not body:
            return None
        try:
            media = accept_answer(self.offer, parse_sdp(body), self.codecs)
        except SdpError:
            return None
        self.offer = None
        self.media = media
        return media

    def offer_taken(self, media: NegotiatedMedia) -> list[LegEvent]:
        """The peer's offer was answered: the events for the Call, hold or resume as its direction says."""
        self.media = media
        events: list[LegEvent] = [OfferReceived(media=media)]
        held = not media.direction.sends  # the peer will not receive what we send
        if held != self.remote_held:
            self.remote_held = held
            events.append(Held() if held else Resumed())
        return events
