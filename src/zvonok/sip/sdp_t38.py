"""SDP for T.38 fax: ``m=image <port> udptl t38`` and its ``a=T38…`` attributes (ITU-T T.38 Annex D
§D.2.3, RFC 3362's image/t38 type), parse and produce, and the offer/answer of such a stream.

How it works: :func:`t38_params` reads a stream's attributes into :class:`T38Params` (T.38's defaults
where one is absent, unknown values ignored as Annex D asks); :func:`t38_section` writes our stream.
:func:`negotiate_t38` answers an offer holding an image stream (a carrier's re-INVITE switching a fax
call to T.38): the first ``udptl t38`` stream is accepted, every other stream (the audio one it
replaces) rejected with port 0 in its place (RFC 3264 §6). The answer follows §D.2.3's rules: the
version and bit rate are the lower of the offer's and ours, the rate management is the offer's, the
maximum datagram is ours (what *we* can receive), error correction is redundancy when the offer asks
for any (we do not do FEC; redundancy is the mandatory fallback) or none. :func:`build_t38_offer` and
:func:`accept_t38_answer` are the other direction, for a fax we send. What the fax terminal needs comes
out as :class:`NegotiatedT38`: where to send, the peer's maximum datagram, the agreed parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .sdp import Attribute, Connection, MediaDescription, Origin, SdpError, SessionDescription
from .sdp_offer_answer import NOT_ACCEPTABLE_HERE, LocalSession

TRANSFERRED_TCF = "transferredTCF"
LOCAL_TCF = "localTCF"
REDUNDANCY = "t38UDPRedundancy"
FEC = "t38UDPFEC"
NO_EC = "t38UDPNoEC"  # not a value T.38 lists, but what peers write; absence means the same
_BIT_RATES = (2400, 4800, 7200, 9600, 12000, 14400, 33600)


@dataclass(frozen=True, slots=True, kw_only=True)
class T38Params:
    version: int = 0
    max_bit_rate: int = 14400
    rate_management: str = TRANSFERRED_TCF
    max_datagram: int | None = None  # T38FaxMaxDatagram: the largest UDPTL datagram the writer receives
    max_buffer: int | None = None
    udp_ec: str | None = REDUNDANCY
    fill_bit_removal: bool = False
    mmr: bool = False
    jbig: bool = False

    def attributes(self) -> list[Attribute]:
        attrs = [Attribute("T38FaxVersion", str(self.version)), Attribute("T38MaxBitRate", str(self.max_bit_rate))]
        if self.fill_bit_removal:
            attrs.append(Attribute("T38FaxFillBitRemoval"))
        if self.mmr:
            attrs.append(Attribute("T38FaxTranscodingMMR"))
        if self.jbig:
            attrs.append(Attribute("T38FaxTranscodingJBIG"))
        attrs.append(Attribute("T38FaxRateManagement", self.rate_management))
        if self.max_buffer is not None:
            attrs.append(Attribute("T38FaxMaxBuffer", str(self.max_buffer)))
        if self.max_datagram is not None:
            attrs.append(Attribute("T38FaxMaxDatagram", str(self.max_datagram)))
        if self.udp_ec is not None:
            attrs.append(Attribute("T38FaxUdpEC", self.udp_ec))
        return attrs


@dataclass(frozen=True, slots=True, kw_only=True)
class NegotiatedT38:
    remote_host: str
    remote_port: int
    params: T38Params  # agreed: version, bit rate, rate management, error correction
    remote_max_datagram: int  # the largest datagram we may send the peer

    @property
    def redundancy(self) -> bool:
        return self.params.udp_ec == REDUNDANCY


def is_t38(media: MediaDescription) -> bool:
    return media.media.lower() == "image" and media.proto.lower() == "udptl" and "t38" in [
        f.lower() for f in media.formats
    ]


def image_stream(sdp: SessionDescription) -> MediaDescription | None:
    """The first T.38 stream that is not rejected (port 0), or None."""
    return next((m for m in sdp.media if is_t38(m) and m.port != 0), None)


def _number(value: str | None, low: int, high: int) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        return None
    number = int(text)
    return number if low <= number <= high else None


def t38_params(media: MediaDescription) -> T38Params:
    """The T.38 parameters a stream declares; attribute names in any case (peers differ), a malformed
    or unknown value treated as absent."""
    values: dict[str, str | None] = {}
    for attr in media.attributes:
        values.setdefault(attr.name.lower(), attr.value)
    flags = {name for name, value in values.items() if value is None or value.strip() in ("", "1")}
    rate = values.get("t38faxratemanagement")
    ec = values.get("t38faxudpec")
    ec_value = {v.lower(): v for v in (REDUNDANCY, FEC, NO_EC)}.get((ec or "").strip().lower())
    return T38Params(
        version=_number(values.get("t38faxversion"), 0, 3) or 0,
        max_bit_rate=_number(values.get("t38maxbitrate"), 2400, 33600) or 14400,
        rate_management=LOCAL_TCF if (rate or "").strip().lower() == LOCAL_TCF.lower() else TRANSFERRED_TCF,
        max_datagram=_number(values.get("t38faxmaxdatagram"), 1, 65535),
        max_buffer=_number(values.get("t38faxmaxbuffer"), 1, 1 << 20),
        udp_ec=None if ec_value in (None, NO_EC) else ec_value,
        fill_bit_removal="t38faxfillbitremoval" in flags,
        mmr="t38faxtranscodingmmr" in flags,
        jbig="t38faxtranscodingjbig" in flags,
    )


def t38_section(port: int, params: T38Params) -> MediaDescription:
    media = MediaDescription(media="image", port=port, proto="udptl", formats=["t38"])
    media.attributes = params.attributes()
    return media


def _addrtype(host: str) -> str:
    return "IP6" if ":" in host else "IP4"


def _rejected(offered: MediaDescription) -> MediaDescription:
    return MediaDescription(media=offered.media, port=0, proto=offered.proto, formats=list(offered.formats) or ["0"])


def _bit_rate(offered: int, ours: int) -> int:
    low = min(offered, ours)
    return max((r for r in _BIT_RATES if r <= low), default=2400)


def negotiate_t38(offer: SessionDescription, local_host: str, local_port: int, session: LocalSession,
                  ours: T38Params) -> tuple[SessionDescription, NegotiatedT38]:
    """Answer an offer with a T.38 stream (see the module doc); 488 when it has none we can use."""
    answer = SessionDescription(origin=Origin("-", "0", 0), connection=Connection("IN", _addrtype(local_host), local_host))
    chosen: NegotiatedT38 | None = None
    for offered in offer.media:
        connection = offer.connection_for(offered)
        if chosen is not None or not is_t38(offered) or offered.port == 0 or connection is None:
            answer.media.append(_rejected(offered))
            continue
        theirs = t38_params(offered)
        agreed = replace(
            ours,
            version=min(theirs.version, ours.version),
            max_bit_rate=_bit_rate(theirs.max_bit_rate, ours.max_bit_rate),
            rate_management=theirs.rate_management,
            udp_ec=REDUNDANCY if theirs.udp_ec is not None else None,
            fill_bit_removal=False,
            mmr=False,
            jbig=False,
        )
        answer.media.append(t38_section(local_port, agreed))
        chosen = NegotiatedT38(
            remote_host=connection.host, remote_port=offered.port, params=agreed,
            remote_max_datagram=theirs.max_datagram or 72,  # T.38 §D.2.3: 72 octets when unstated
        )
    if chosen is None:
        raise SdpError("no T.38 stream we can use", NOT_ACCEPTABLE_HERE)
    session.stamp(answer, local_host)
    return answer, chosen


def build_t38_offer(local_host: str, local_port: int, session: LocalSession, ours: T38Params) -> SessionDescription:
    offer = SessionDescription(origin=Origin("-", "0", 0), connection=Connection("IN", _addrtype(local_host), local_host))
    offer.media.append(t38_section(local_port, ours))
    return session.stamp(offer, local_host)


def accept_t38_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedT38:
    """The answer to our T.38 offer: 488 when it rejected the image stream (the call stays on audio)."""
    for index, answered in enumerate(answer.media):
        if index >= len(offer.media) or not is_t38(offer.media[index]) or not is_t38(answered) or answered.port == 0:
            continue
        connection = answer.connection_for(answered)
        if connection is None:
            continue
        theirs = t38_params(answered)
        ours = t38_params(offer.media[index])
        agreed = replace(
            theirs,
            version=min(theirs.version, ours.version),
            max_bit_rate=_bit_rate(theirs.max_bit_rate, ours.max_bit_rate),
            udp_ec=REDUNDANCY if theirs.udp_ec == REDUNDANCY and ours.udp_ec == REDUNDANCY else None,
        )
        return NegotiatedT38(remote_host=connection.host, remote_port=answered.port, params=agreed,
                             remote_max_datagram=theirs.max_datagram or 72)
    raise SdpError("the answer rejects T.38", NOT_ACCEPTABLE_HERE)
