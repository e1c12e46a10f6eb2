"""The offer/answer model for our audio-only B2BUA leg (RFC 3264), over :mod:`.sdp`.

How it works: we handle one audio stream with PCMU (0), PCMA (8) and telephone-event (RFC 4733, dynamic
payload type). :func:`negotiate` answers an offer: the first audio stream it can use gets the first codec
*in the offer's order* that we support (RFC 3264 §6.1), with the offerer's own payload type numbers, and
the offerer's telephone-event payload type echoed; every other stream is rejected with port 0, in the
same order (§6, §8.2). :func:`build_offer` writes our offers (a hold is an offer with ``sendonly``,
§8.4), :func:`accept_answer` reads the answer to one of them. :class:`LocalSession` owns our o= line: the
same sess-id for the whole call, a sess-version that moves by one each time the description changes and
stays put when it does not (§8, RFC 4566 §5.2). What the media engine needs comes out as
:class:`NegotiatedMedia`, with the direction from *our* side.

SRTP with SDES keys (RFC 4568, :mod:`.sdes`): given our ``srtp_key``, an RTP/SAVP offer with a crypto
line we can run is answered RTP/SAVP with our key under the offer's tag, and so is an RTP/AVP offer that
carries one (best-effort SRTP, as baresip's ``mediaenc=srtp`` and Asterisk send it); without our key, or
with no usable crypto line, a SAVP stream is rejected. ``srtp_required`` rejects plain streams too, so
a plain offer gets 488. Our offers with a key are RTP/SAVP. The peer's key comes out in
:attr:`NegotiatedMedia.srtp_key`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .sdes import SRTP_PROFILES, crypto_line, usable_crypto
from .sdp import (
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    SdpError,
    SessionDescription,
)

NOT_ACCEPTABLE_HERE = 488
DEFAULT_PTIME = 20
RTP_PROFILES = frozenset({"RTP/AVP", "RTP/AVPF"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Codec:
    """A payload format we can send and receive: encoding name and clock rate as in a=rtpmap.

    ``payload_type`` is the number we use in our own offers; in an answer the offerer's number is used.
    """

    name: str
    clock_rate: int
    payload_type: int
    channels: int = 1
    fmtp: str | None = None

    def matches(self, name: str, clock_rate: int, channels: int | None) -> bool:
        return (name.lower() == self.name.lower() and clock_rate == self.clock_rate
                and (channels or 1) == self.channels)

    @property
    def is_telephone_event(self) -> bool:
        return self.name.lower() == "telephone-event"


PCMU = Codec(name="PCMU", clock_rate=8000, payload_type=0)
PCMA = Codec(name="PCMA", clock_rate=8000, payload_type=8)
TELEPHONE_EVENT = Codec(name="telephone-event", clock_rate=8000, payload_type=101, fmtp="0-16")
DEFAULT_CODECS: tuple[Codec, ...] = (PCMU, PCMA, TELEPHONE_EVENT)

# RFC 3551 §6 Tables 4 and 5: a static payload type may be offered without a=rtpmap
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1), 3: ("GSM", 8000, 1), 4: ("G723", 8000, 1), 5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1), 7: ("LPC", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1),
    10: ("L16", 44100, 2), 11: ("L16", 44100, 1), 12: ("QCELP", 8000, 1), 13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1), 15: ("G728", 8000, 1), 16: ("DVI4", 11025, 1), 17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1), 25: ("CelB", 90000, 1), 26: ("JPEG", 90000, 1), 28: ("nv", 90000, 1),
    31: ("H261", 90000, 1), 32: ("MPV", 90000, 1), 33: ("MP2T", 90000, 1), 34: ("H263", 90000, 1),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class NegotiatedMedia:
    """The outcome of one offer/answer exchange for the audio stream.

    ``remote_host``/``remote_port``: where to send RTP (0.0.0.0 on an RFC 2543 hold). ``payload_type``
    and ``codec_name``: what to send, numbered as the remote side expects it. ``direction``: ours — may we
    send, should we expect to receive. ``ptime``: the packetization the remote side asked for (ms).
    """

    remote_host: str
    remote_port: int
    payload_type: int
    codec_name: str
    clock_rate: int
    telephone_event_pt: int | None
    direction: Direction
    ptime: int = DEFAULT_PTIME
    srtp_key: bytes | None = None  # the remote side's SRTP master key || salt (SDES): it protects with it

    @property
    def on_hold(self) -> bool:
        """The remote side will not receive from us (it put us on hold, or we put it)."""
        return not self.direction.sends


class LocalSession:
    """Our o= line for one call leg (RFC 3264 §8, RFC 4566 §5.2).

    ``sess_id`` comes from the caller's id generator (the RFC suggests an NTP timestamp); the version
    starts at ``sess_version`` (default: the sess-id). :meth:`stamp` writes the o= line into a description
    we are about to send: the version grows by exactly one when anything but the o= line differs from
    the last description stamped, and stays the same when nothing changed (a session refresh).
    """

    __slots__ = ("username", "sess_id", "version", "name", "_last")

    def __init__(self, *, sess_id: int, sess_version: int | None = None, username: str = "zvonok",
                 name: str = "-") -> None:
        self.username = username
        self.sess_id = sess_id
        self.version = sess_id if sess_version is None else sess_version
        self.name = name
        # a digest of the last description stamped, not its bytes: every established leg keeps one
        # LocalSession (≈ 0.2 KB of SDP each, issue 9); a 128-bit digest misses a change with odds of 2^-128
        self._last: bytes | None = None

    def stamp(self, sdp: SessionDescription, address: str) -> SessionDescription:
        sdp.name = self.name
        sdp.origin = Origin(self.username, str(self.sess_id), 0, "IN", _addrtype(address), address)
        # with a placeholder version: what changed is everything else
        content = hashlib.blake2b(sdp.to_bytes(), digest_size=16).digest()
        if self._last is not None and content != self._last:
            self.version += 1
        self._last = content
        sdp.origin.sess_version = self.version
        return sdp


def _addrtype(host: str) -> str:
    return "IP6" if ":" in host else "IP4"


def _connection(host: str) -> Connection:
    return Connection("IN", _addrtype(host), host.strip("[]"))


def media_direction(sdp: SessionDescription, media: MediaDescription | None = None) -> Direction:
    """The direction the writer of ``sdp`` asks for on ``media`` (default: its first audio stream).

    The media-level attribute, else the session-level one, else sendrecv (RFC 3264 §5.1). A connection
    address of 0.0.0.0 is the RFC 2543 hold (RFC 3264 §8.4): the writer will not receive, whatever the
    attribute says. A hold is any direction that does not receive: sendonly or inactive.
    """
    if media is None:
        media = next((m for m in sdp.media if m.media == "audio"), None)
    direction = (media.direction if media is not None else None) or sdp.direction or Direction.SENDRECV
    connection = sdp.connection_for(media) if media is not None else sdp.connection
    if connection is not None and connection.is_hold_address:
        direction = Direction.from_flags(sends=direction.sends, receives=False)
    return direction


def is_hold(sdp: SessionDescription) -> bool:
    """The writer of ``sdp`` puts the call on hold (a=sendonly, a=inactive or c=0.0.0.0)."""
    return not media_direction(sdp).receives


def _codec_of(media: MediaDescription, fmt: str, supported: Sequence[Codec]) -> tuple[int, Codec] | None:
    """The payload type and our codec for one format of an m= line, or None if we do not support it."""
    if not fmt.isascii() or not fmt.isdigit() or len(fmt) > 3:
        return None
    pt = int(fmt)
    rtpmap = media.rtpmap(pt)
    if rtpmap is not None:
        name, rate, channels = rtpmap.encoding, rtpmap.clock_rate, rtpmap.channels
    elif pt in STATIC_PAYLOAD_TYPES:
        name, rate, channels = STATIC_PAYLOAD_TYPES[pt]
    else:
        return None
    for codec in supported:
        if codec.matches(name, rate, channels):
            return pt, codec
    return None


def _usable(media: MediaDescription) -> bool:
    return (media.media.lower() == "audio" and media.port != 0
            and media.proto.upper() in RTP_PROFILES | SRTP_PROFILES)


def _remote_key(media: MediaDescription, srtp: bool, required: bool) -> tuple[int, bytes] | None | Literal[False]:
    """The crypto tag and key we run ``media`` with; None for plain RTP; False when we cannot run it."""
    crypto = usable_crypto(media.attribute_values("crypto")) if srtp else None
    if crypto is None:
        return False if required or media.proto.upper() in SRTP_PROFILES else None
    return crypto.tag, crypto.keys[0].key


def _select(media: MediaDescription, supported: Sequence[Codec]) -> tuple[int, Codec, int | None] | None:
    """The first voice codec in the m= line's order that we support, and the telephone-event PT at its
    clock rate (None if not offered or not supported)."""
    voice: tuple[int, Codec] | None = None
    events: dict[int, int] = {}  # clock rate -> first telephone-event payload type
    for fmt in media.formats:
        found = _codec_of(media, fmt, supported)
        if found is None:
            continue
        pt, codec = found
        if codec.is_telephone_event:
            events.setdefault(codec.clock_rate, pt)
        elif voice is None:
            voice = found
    if voice is None:
        return None
    return voice[0], voice[1], events.get(voice[1].clock_rate)


def _audio_section(port: int, proto: str, entries: Sequence[tuple[int, Codec]], ptime: int,
                   direction: Direction, crypto: tuple[int, bytes] | None = None) -> MediaDescription:
    media = MediaDescription(media="audio", port=port, proto=proto, formats=[str(pt) for pt, _ in entries])
    for pt, codec in entries:
        channels = f"/{codec.channels}" if codec.channels != 1 else ""
        media.attributes.append(Attribute("rtpmap", f"{pt} {codec.name}/{codec.clock_rate}{channels}"))
        if codec.fmtp is not None:
            media.attributes.append(Attribute("fmtp", f"{pt} {codec.fmtp}"))
    media.attributes.append(Attribute("ptime", str(ptime)))
    media.attributes.append(Attribute(direction.value))
    if crypto is not None:
        media.attributes.append(Attribute("crypto", crypto_line(*crypto)))
    return media


def _rejected(offered: MediaDescription) -> MediaDescription:
    # §6: a rejected stream keeps its media type, transport and at least one format; port 0
    return MediaDescription(media=offered.media, port=0, proto=offered.proto,
                            formats=list(offered.formats) or ["0"])


def negotiate(offer: SessionDescription, supported: Sequence[Codec], local_host: str, local_port: int,
              session: LocalSession, *, direction: Direction = Direction.SENDRECV,
              srtp_key: bytes | None = None, srtp_required: bool = False,
              ) -> tuple[SessionDescription, NegotiatedMedia]:
    """Answer ``offer`` (RFC 3264 §6): accept the first usable audio stream, reject the rest with port 0.

    ``direction`` is what we want (sendonly to hold the caller while answering); the answer carries it
    limited by the reverse of the offer's (§6.1: sendonly is answered recvonly, recvonly sendonly,
    inactive inactive). Raises :class:`SdpError` with 488 when no stream has a codec in common (or, see
    the module doc, no SRTP we can run where it is needed).
    """
    answer = SessionDescription(origin=Origin("-", "0", 0), connection=_connection(local_host))
    chosen: NegotiatedMedia | None = None
    for offered in offer.media:
        selection = _select(offered, supported) if chosen is None and _usable(offered) else None
        connection = offer.connection_for(offered)
        remote = _remote_key(offered, srtp_key is not None, srtp_required) if selection is not None else False
        if selection is None or connection is None or remote is False:
            answer.media.append(_rejected(offered))
            continue
        pt, codec, event_pt = selection
        entries = [(pt, codec)]
        if event_pt is not None:
            events = next(c for c in supported if c.is_telephone_event and c.clock_rate == codec.clock_rate)
            entries.append((event_pt, events))
        ours = direction.limit(media_direction(offer, offered).reverse())
        ptime = offered.ptime or DEFAULT_PTIME
        ours_crypto = (remote[0], srtp_key) if remote is not None and srtp_key is not None else None
        answer.media.append(_audio_section(local_port, offered.proto, entries, ptime, ours, ours_crypto))
        chosen = NegotiatedMedia(
            remote_host=connection.host, remote_port=offered.port, payload_type=pt, codec_name=codec.name,
            clock_rate=codec.clock_rate, telephone_event_pt=event_pt, direction=ours, ptime=ptime,
            srtp_key=remote[1] if remote is not None else None,
        )
    if chosen is None:
        raise SdpError("no audio stream with a codec in common", NOT_ACCEPTABLE_HERE)
    session.stamp(answer, local_host)
    return answer, chosen


def build_offer(local_host: str, local_port: int, codecs: Sequence[Codec], direction: Direction,
                session: LocalSession, *, ptime: int = DEFAULT_PTIME,
                srtp_key: bytes | None = None) -> SessionDescription:
    """Our offer of one audio stream with ``codecs`` in order of preference (RFC 3264 §5); with
    ``srtp_key``, RTP/SAVP with our key in ``a=crypto:1`` (RFC 4568).

    A hold is an offer with ``Direction.SENDONLY`` (or INACTIVE if we are held already), never
    c=0.0.0.0 (§8.4). Stamped by ``session``, so re-offering the same thing keeps the version.
    """
    offer = SessionDescription(origin=Origin("-", "0", 0), connection=_connection(local_host))
    offer.media.append(
        _audio_section(local_port, "RTP/SAVP" if srtp_key is not None else "RTP/AVP",
                       [(c.payload_type, c) for c in codecs], ptime, direction,
                       (1, srtp_key) if srtp_key is not None else None)
    )
    return session.stamp(offer, local_host)


def accept_answer(offer: SessionDescription, answer: SessionDescription,
                  supported: Sequence[Codec]) -> NegotiatedMedia:
    """Read the answer to our ``offer`` (RFC 3264 §7): the audio stream accepted and what to send on it.

    Media streams pair up by position (§6). The codec is the first in the answer's list that we support;
    the direction is ours as offered, limited by the reverse of the answer's. 488 when the answer has no
    usable audio stream (the caller then ends or re-offers). When we offered SRTP the answer must accept
    it with a key under the tag we offered (RFC 4568 §5.1.2).
    """
    for index, answered in enumerate(answer.media):
        if index >= len(offer.media) or not _usable(answered):
            continue
        selection = _select(answered, supported)
        connection = answer.connection_for(answered)
        offered = offer.media[index]
        srtp = offered.proto.upper() in SRTP_PROFILES
        remote = _remote_key(answered, srtp, srtp)
        if selection is None or connection is None or remote is False:
            continue
        if remote is not None and str(remote[0]) not in [v.split(" ", 1)[0] for v in offered.attribute_values("crypto")]:
            continue
        pt, codec, event_pt = selection
        ours = media_direction(offer, offered).limit(media_direction(answer, answered).reverse())
        return NegotiatedMedia(
            remote_host=connection.host, remote_port=answered.port, payload_type=pt, codec_name=codec.name,
            clock_rate=codec.clock_rate, telephone_event_pt=event_pt, direction=ours,
            ptime=answered.ptime or DEFAULT_PTIME, srtp_key=remote[1] if remote is not None else None,
        )
    raise SdpError("the answer accepts no audio stream we can use", NOT_ACCEPTABLE_HERE)
