"""Session descriptions: parse from bytes, serialize to bytes (RFC 4566), and media direction (RFC 3264).

How it works: :func:`parse_sdp` reads the ``<type>=<value>`` lines of a body into a
:class:`SessionDescription` (the session part) holding :class:`MediaDescription` items (one per ``m=``
line). The lines the offer/answer code needs — v, o, s, c, t/r, b, a, m — are parsed into fields; every
other line (i, u, e, p, k, z and unknown types) is kept as ``(type, value)`` in ``other`` and every
attribute is kept, known or not, in order, so that an SDP we pass through or edit keeps what we did not
understand. :meth:`SessionDescription.to_bytes` writes the lines back with CRLF in the order of RFC 4566
§5 (v o s i u e p c b t r z k a, then per media m i c b k a); a well-ordered body serializes back to the
same bytes. Anything malformed raises :class:`SdpError` (status 400) and nothing else; an offer we cannot
accept raises it with 488 (see :mod:`.sdp_offer_answer`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from .errors import SipParseError

_DIGITS_RE = re.compile(r"\A[0-9]{1,18}\Z")  # ASCII only: str.isdigit() admits '²', which int() refuses
_TYPE_RE = re.compile(r"\A[A-Za-z]\Z")
_PORT_RE = re.compile(r"\A([0-9]{1,5})(?:/([0-9]{1,5}))?\Z")
# some phones write "20.0" or "20 "; a fractional ptime is legal (RFC 4566 §6) and rounded down here
_PTIME_RE = re.compile(r"\A[ \t]*([0-9]{1,4})(?:\.[0-9]*)?[ \t]*\Z")
_RTPMAP_RE = re.compile(r"\A([0-9]{1,3})[ \t]+([^/ \t]+)/([0-9]{1,9})(?:/([0-9]{1,3}))?[ \t]*\Z")

# the order of the session-level and media-level lines (RFC 4566 §5); unknown types go before the a= lines
_SESSION_ORDER = "vosiuepcbtrzk"
_MEDIA_ORDER = "micbk"


class SdpError(SipParseError):
    """A session description we cannot use: 400 when malformed, 488 when acceptable but not for us."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason, status)


class Direction(StrEnum):
    """The direction attributes (RFC 4566 §6, RFC 3264 §5.1), from the point of view of who wrote them."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def from_flags(cls, *, sends: bool, receives: bool) -> Direction:
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def reverse(self) -> Direction:
        """The direction the other side sees: sendonly <-> recvonly (the answer to it, RFC 3264 §6.1)."""
        return Direction.from_flags(sends=self.receives, receives=self.sends)

    def limit(self, other: Direction) -> Direction:
        """Only what both allow: our wish limited by what the offer permits."""
        return Direction.from_flags(sends=self.sends and other.sends, receives=self.receives and other.receives)


_DIRECTIONS = {d.value: d for d in Direction}


@dataclass(slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`` (RFC 4566 §5.2)."""

    username: str
    sess_id: str
    sess_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    def __str__(self) -> str:
        return (f"{self.username} {self.sess_id} {self.sess_version} {self.nettype} {self.addrtype} "
                f"{self.address}")


@dataclass(slots=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (RFC 4566 §5.7); a multicast /ttl/count stays in
    ``address``."""

    nettype: str
    addrtype: str
    address: str

    @property
    def host(self) -> str:
        return self.address.split("/", 1)[0]

    @property
    def is_hold_address(self) -> bool:
        """0.0.0.0: the RFC 2543 way to put a call on hold (RFC 3264 §8.4); ``::`` likewise for IPv6."""
        return self.host in ("0.0.0.0", "::")

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(slots=True)
class Attribute:
    """``a=<name>`` (a flag, ``value`` None) or ``a=<name>:<value>`` (RFC 4566 §5.13)."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]`` (RFC 4566 §6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None


@dataclass(slots=True)
class _Section:
    """What session and media sections share: bandwidths, attributes, the lines kept verbatim."""

    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        """The value of the first attribute of that name ('' for a flag), or None."""
        for attr in self.attributes:
            if attr.name == name:
                return "" if attr.value is None else attr.value
        return None

    def attribute_values(self, name: str) -> list[str]:
        return ["" if a.value is None else a.value for a in self.attributes if a.name == name]

    @property
    def direction(self) -> Direction | None:
        """The direction attribute written in this section (the last one wins), or None."""
        found: Direction | None = None
        for attr in self.attributes:
            if attr.value is None and attr.name in _DIRECTIONS:
                found = _DIRECTIONS[attr.name]
        return found

    def set_direction(self, direction: Direction | None) -> None:
        """Replace the direction attribute (None: remove it, meaning sendrecv)."""
        self.attributes = [a for a in self.attributes if not (a.value is None and a.name in _DIRECTIONS)]
        if direction is not None:
            self.attributes.append(Attribute(direction.value))

    def _lines(self, order: str, own: dict[str, list[str]]) -> list[str]:
        """The lines in RFC 4566 order: for each type, ours (``own``: whole lines) then those kept verbatim;
        types we do not know go just before the attributes."""
        known = set(order) | {"a", "m"}
        lines: list[str] = []
        for kind in order:
            lines += own.get(kind, ())
            lines += [f"{kind}={value}" for k, value in self.other if k == kind]
        lines += [f"{k}={value}" for k, value in self.other if k not in known]
        lines += [f"a={attr}" for attr in self.attributes]
        return lines


@dataclass(slots=True, kw_only=True)
class MediaDescription(_Section):
    """One ``m=<media> <port>[/<count>] <proto> <fmt> ...`` section (RFC 4566 §5.14)."""

    media: str
    port: int
    proto: str
    formats: list[str] = field(default_factory=list)
    port_count: int | None = None

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        """The rtpmap of a payload type; a malformed one counts as absent (the static table may still
        apply), so one odd attribute does not fail a whole call."""
        prefix = f"{payload_type} "
        for value in self.attribute_values("rtpmap"):
            if value.startswith(prefix) or value.startswith(f"{payload_type}\t"):
                m = _RTPMAP_RE.match(value)
                if m is None:
                    return None
                return RtpMap(payload_type, m.group(2), int(m.group(3)),
                              int(m.group(4)) if m.group(4) else None)
        return None

    def fmtp(self, payload_type: int) -> str | None:
        """The format parameters of a payload type (``a=fmtp:<pt> <params>``), or None."""
        for value in self.attribute_values("fmtp"):
            pt, _, params = value.partition(" ")
            if pt == str(payload_type):
                return params.strip()
        return None

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds when it is a sane number (RFC 4566 §6), else None."""
        value = self.attribute("ptime")
        if value is None:
            return None
        m = _PTIME_RE.match(value)
        if m is None or not 0 < int(m.group(1)) <= 1000:
            return None
        return int(m.group(1))

    def to_lines(self) -> list[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        own = {"m": ["m=" + " ".join([self.media, port, self.proto, *self.formats])],
               "b": [f"b={b}" for b in self.bandwidths]}
        if self.connection is not None:
            own["c"] = [f"c={self.connection}"]
        return self._lines(_MEDIA_ORDER, own)


@dataclass(slots=True, kw_only=True)
class SessionDescription(_Section):
    """A whole SDP body (RFC 4566 §5): the session part and its media sections.

    ``timing`` holds the t= lines with their r= lines, in order; ``name`` is the s= line (None only when a
    lenient parse met a body without one).
    """

    origin: Origin
    name: str | None = "-"
    version: int = 0
    timing: list[tuple[str, str]] = field(default_factory=lambda: [("t", "0 0")])
    media: list[MediaDescription] = field(default_factory=list)

    def to_lines(self) -> list[str]:
        own = {"v": [f"v={self.version}"], "o": [f"o={self.origin}"],
               "s": [] if self.name is None else [f"s={self.name}"],
               "b": [f"b={b}" for b in self.bandwidths],
               "t": [f"{kind}={value}" for kind, value in self.timing]}  # r= lines follow their t=
        if self.connection is not None:
            own["c"] = [f"c={self.connection}"]
        lines = self._lines(_SESSION_ORDER, own)
        for media in self.media:
            lines += media.to_lines()
        return lines

    def to_bytes(self) -> bytes:
        return ("\r\n".join(self.to_lines()) + "\r\n").encode("utf-8", "surrogateescape")

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The media-level c= line, else the session-level one (RFC 4566 §5.7)."""
        return media.connection if media.connection is not None else self.connection


# -- parsing ---------------------------------------------------------------------------------------------

def _split_fields(value: str, count: int, what: str) -> list[str]:
    parts = value.split()
    if len(parts) != count:
        raise SdpError(f"malformed {what} line")
    return parts


def _connection(value: str) -> Connection:
    nettype, addrtype, address = _split_fields(value, 3, "c=")
    return Connection(nettype, addrtype, address)


def _media(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise SdpError("malformed m= line")
    media, port_text, proto, *formats = parts
    m = _PORT_RE.match(port_text)
    if m is None or int(m.group(1)) > 65535:
        raise SdpError("malformed port in m= line")
    count = int(m.group(2)) if m.group(2) is not None else None
    return MediaDescription(media=media, port=int(m.group(1)), port_count=count, proto=proto, formats=formats)


def _attribute(value: str) -> Attribute:
    name, colon, rest = value.partition(":")
    if not name or not name.strip() or name != name.strip():
        raise SdpError("malformed a= line")
    return Attribute(name, rest if colon else None)


def parse_sdp(body: bytes) -> SessionDescription:
    """Parse an SDP body; :class:`SdpError` (400) when it is not a well-formed session description.

    Lenient where phones are sloppy: LF line ends, blank lines, a missing s= or t= line, lines out of the
    RFC 4566 order. Strict where a mistake would mislead us: v=0 first, one o= line with a numeric
    sess-version, well-formed c= and m= lines, no CR or NUL inside a line.
    """
    text = body.decode("utf-8", "surrogateescape")
    session: SessionDescription | None = None
    current: _Section | None = None
    timing: list[tuple[str, str]] = []
    seen_version = False
    name: str | None = None
    for raw in text.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line.strip():
            continue
        if "\r" in line or "\x00" in line:
            raise SdpError("control character in an SDP line")
        kind, eq, value = line[:1], line[1:2], line[2:]
        if eq != "=" or not _TYPE_RE.match(kind):
            raise SdpError("malformed SDP line")
        if not seen_version:
            if kind != "v" or value.strip() != "0":
                raise SdpError("SDP must start with v=0")
            seen_version = True
            continue
        if session is None:
            # everything before o= is out of order (RFC 4566 §5: v, o, s ...)
            if kind != "o":
                raise SdpError("o= line missing after v=")
            username, sess_id, version, nettype, addrtype, address = _split_fields(value, 6, "o=")
            if not _DIGITS_RE.match(version):
                raise SdpError("malformed sess-version in o= line")
            session = SessionDescription(
                origin=Origin(username, sess_id, int(version), nettype, addrtype, address), timing=timing
            )
            current = session
            continue
        assert current is not None
        if kind in "vo":
            raise SdpError(f"repeated {kind}= line")
        if kind == "m":
            media = _media(value)
            session.media.append(media)
            current = media
        elif kind == "c":
            if current.connection is None:
                current.connection = _connection(value)
            else:
                _connection(value)
                current.other.append((kind, value))  # extra c= (layered multicast, RFC 4566 §5.7)
        elif kind == "b":
            current.bandwidths.append(value)
        elif kind == "a":
            current.attributes.append(_attribute(value))
        elif current is session and kind == "s" and name is None:
            name = value
        elif current is session and kind in "tr":
            if kind == "r" and not timing:
                raise SdpError("r= line without t= line")
            timing.append((kind, value))
        else:
            current.other.append((kind, value))
    if session is None:
        raise SdpError("empty or truncated SDP")
    session.name = name
    return session
