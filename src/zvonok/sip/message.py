"""SIP messages: parse from bytes, serialize to bytes (RFC 3261 §7, §18.3, §20; RFC 4475).

How it works: :func:`parse_datagram` and :class:`StreamFramer` find one message's boundaries (the empty
line, then Content-Length octets of body). :func:`parse_message` splits the start line and header
fields, joins folded lines, and checks what every later layer relies on: the mandatory headers
(Via, From, To, Call-ID, CSeq) exist once, parse, and agree with the start line. Anything wrong raises
:class:`SipParseError` carrying the status to answer (400, 505 …) and, for requests, the partly parsed
message so that the answer can still be built. Header values are ``str`` decoded as UTF-8 with
``surrogateescape``, so arbitrary octets survive a round trip; a message that was not changed
serializes back to the exact bytes received.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from .errors import FramingError, SipParseError
from .headers import (
    _KEY_CACHE,
    SINGLE_VALUED,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    header_key,
    is_token,
    parse_cseq,
    parse_name_addr,
    parse_via,
)
from .uri import Uri, parse_uri

SIP_VERSION = "SIP/2.0"
_VERSION_RE = re.compile(r"^SIP/(\d+)\.(\d+)$", re.IGNORECASE)
_FOLD_RE = re.compile(rb"\r?\n[ \t]+")

REASONS: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
    200: "OK", 202: "Accepted", 301: "Moved Permanently", 302: "Moved Temporarily", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
    413: "Request Entity Too Large", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    420: "Bad Extension", 421: "Extension Required", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 603: "Decline",
}


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class Headers:
    """Ordered header fields with case-insensitive, compact-form-aware look-up by name.

    Each field keeps its look-up key (the lower-case long name) beside it, computed once when the field
    is added: look-ups are on the hot path of every message.
    """

    __slots__ = ("_fields", "_keys", "changed")

    def __init__(self, fields: Iterable[tuple[str, str]] = (), keys: list[str] | None = None) -> None:
        self._fields: list[tuple[str, str]] = list(fields)
        self._keys: list[str] = keys if keys is not None else [header_key(name) for name, _ in self._fields]
        self.changed = False

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def keys(self) -> list[str]:
        """The look-up key of every field, in order."""
        return self._keys

    def get(self, name: str) -> str | None:
        """The first value of a header, or None."""
        key = header_key(name)
        try:
            return self._fields[self._keys.index(key)][1]
        except ValueError:
            return None

    def get_all(self, name: str) -> list[str]:
        """Every header field of that name, in order (not split at commas)."""
        key = header_key(name)
        keys = self._keys
        count = keys.count(key)  # C speed; nearly every header appears once or not at all
        if count == 0:
            return []
        if count == 1:
            return [self._fields[keys.index(key)][1]]
        return [field[1] for k, field in zip(keys, self._fields, strict=True) if k == key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and header_key(name) in self._keys

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        if first:
            self._fields.insert(0, (name, value))
            self._keys.insert(0, header_key(name))
        else:
            self._fields.append((name, value))
            self._keys.append(header_key(name))
        self.changed = True

    def set(self, name: str, value: str) -> None:
        """Replace every field of that name with one (where the first stood)."""
        key = header_key(name)
        if key not in self._keys:
            self.add(canonical_name(name), value)
            return
        first = self._keys.index(key)
        self._fields[first] = (self._fields[first][0], value)
        self._drop(key, keep=first)

    def replace_first(self, name: str, value: str) -> None:
        """Change the value of the first field of that name (e.g. the top Via line), keeping the others."""
        key = header_key(name)
        index = self._keys.index(key)
        self._fields[index] = (self._fields[index][0], value)
        self.changed = True

    def remove(self, name: str) -> None:
        self._drop(header_key(name), keep=-1)

    def _drop(self, key: str, keep: int) -> None:
        pairs = [(k, f) for i, (k, f) in enumerate(zip(self._keys, self._fields, strict=True))
                 if k != key or i == keep]
        self._keys = [k for k, _ in pairs]
        self._fields = [f for _, f in pairs]
        self.changed = True

    def copy(self) -> Headers:
        return Headers(self._fields)


class Message:
    """What requests and responses share: header fields, body, and the parsed core headers."""

    __slots__ = ("headers", "body", "raw", "_vias", "_from", "_to", "_cseq")

    def __init__(self, headers: Headers, body: bytes = b"") -> None:
        self.headers = headers
        self.body = body
        self.raw: bytes | None = None
        self._vias: list[Via] | None = None
        self._from: NameAddr | None = None
        self._to: NameAddr | None = None
        self._cseq: CSeq | None = None

    # -- the core headers, parsed once ---------------------------------------------------------------
    @property
    def vias(self) -> list[Via]:
        if self._vias is None:
            vias: list[Via] = []
            for value in self.headers.get_all("via"):
                vias.extend(parse_via(value))
            self._vias = vias
        return self._vias

    @property
    def top_via(self) -> Via:
        return self.vias[0]

    @property
    def from_(self) -> NameAddr:
        if self._from is None:
            self._from = parse_name_addr(self._required("from"))
        return self._from

    @property
    def to(self) -> NameAddr:
        if self._to is None:
            self._to = parse_name_addr(self._required("to"))
        return self._to

    @property
    def cseq(self) -> CSeq:
        if self._cseq is None:
            self._cseq = parse_cseq(self._required("cseq"))
        return self._cseq

    @property
    def call_id(self) -> str:
        return self._required("call-id").strip()

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {canonical_name(name)} header")
        return value

    def invalidate(self) -> None:
        """Forget parsed views and the raw bytes after the headers were changed."""
        self._vias = self._from = self._to = self._cseq = None
        self.raw = None

    # -- serialization -------------------------------------------------------------------------------
    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The message on the wire; the bytes received when nothing was changed."""
        if self.raw is not None and not self.headers.changed:
            return self.raw
        lines = [self.start_line()]
        has_length = False
        for name, value in self.headers:
            if header_key(name) == "content-length":
                has_length = True
                value = str(len(self.body))
            lines.append(f"{name}: {value}")
        if not has_length:
            lines.append(f"Content-Length: {len(self.body)}")
        lines.append("")
        lines.append("")
        return _encode("\r\n".join(lines)) + self.body


class Request(Message):
    __slots__ = ("method", "uri_text", "_uri")

    def __init__(self, method: str, uri: str | Uri, headers: Headers | None = None, body: bytes = b"") -> None:
        super().__init__(headers if headers is not None else Headers(), body)
        self.method = method
        self.uri_text = str(uri)
        self._uri: Uri | None = None if isinstance(uri, str) else uri

    @property
    def uri(self) -> Uri:
        if self._uri is None:
            self._uri = parse_uri(self.uri_text)
        return self._uri

    def start_line(self) -> str:
        return f"{self.method} {self.uri_text} {SIP_VERSION}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri_text}>"


class Response(Message):
    __slots__ = ("status", "reason")

    def __init__(self, status: int, reason: str | None = None, headers: Headers | None = None,
                 body: bytes = b"") -> None:
        super().__init__(headers if headers is not None else Headers(), body)
        self.status = status
        self.reason = REASONS.get(status, "Unknown") if reason is None else reason

    def start_line(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


# -- parsing ---------------------------------------------------------------------------------------------

def _split_head(data: bytes) -> tuple[bytes, bytes] | None:
    """Split at the empty line ending the header section (CRLF CRLF; a bare LF LF is tolerated)."""
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return data[:end], data[end + 4 :]
    end = data.find(b"\n\n")
    if end >= 0:
        return data[:end], data[end + 2 :]
    return None


def _content_length(headers: Headers, *, framing: bool) -> int | None:
    values = headers.get_all("content-length")
    if not values:
        return None
    lengths = {v.strip() for v in values}
    if len(lengths) != 1:  # RFC 4475 §3.3.9: conflicting lengths are a framing error
        raise FramingError("conflicting Content-Length values")
    text = lengths.pop()
    if not text.isdigit() or len(text) > 9:  # RFC 4475 §3.1.2.3: never use a negative count
        raise FramingError("malformed Content-Length")
    return int(text)


def _parse_head(head: bytes, *, strict: bool = True) -> tuple[str, Headers]:
    """The start line and header fields; ``strict=False`` skips malformed lines instead of raising
    (used only to salvage enough of a bad request to answer it with 400)."""
    head = head.lstrip(b"\r\n")  # RFC 3261 §7.5: CRLFs before the start line are ignored
    if b"\n " in head or b"\n\t" in head:
        head = _FOLD_RE.sub(b" ", head)
    text = _decode(head)
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    fields: list[tuple[str, str]] = []
    keys: list[str] = []
    known = _KNOWN_NAMES
    key_cache = _KEY_CACHE
    for line in lines[1:]:
        colon = line.find(":")
        if colon <= 0:
            if not strict:
                continue
            raise SipParseError("malformed header line")
        name = line[:colon]
        if name not in known:
            name = name.rstrip(" \t")
            if not is_token(name):
                if not strict:
                    continue
                raise SipParseError("malformed header name")
        fields.append((name, line[colon + 1 :].strip(" \t")))
        keys.append(key_cache.get(name) or header_key(name))
    return lines[0], Headers(fields, keys)


# names seen in nearly every message: skip the token check for them
_KNOWN_NAMES = frozenset(
    variant
    for name in ("Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Length",
                 "Content-Type", "Expires", "User-Agent", "Authorization", "Allow", "Supported", "Route",
                 "Record-Route", "Server", "WWW-Authenticate", "Proxy-Authorization", "Accept", "Event",
                 "v", "f", "t", "i", "m", "l", "c", "k")
    for variant in (name, name.lower(), name.upper())
)


def _parse_start(start: str, headers: Headers) -> Request | Response:
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if len(parts) < 2 or parts[0].upper() != SIP_VERSION:
            raise SipParseError("malformed status line")
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
            raise SipParseError("malformed status code")
        return Response(int(code), parts[2] if len(parts) > 2 else "", headers)
    parts = start.split(" ")
    if len(parts) != 3:
        # RFC 4475 §3.1.2.7–3.1.2.10: extra SP, LWS inside the Request-URI
        raise SipParseError("malformed request line", 400, _partial_request(start, headers))
    method, uri_text, version = parts
    if not is_token(method):
        raise SipParseError("malformed method")
    request = Request(method, uri_text, headers)
    if version.upper() != SIP_VERSION:
        status = 505 if _VERSION_RE.match(version) else 400
        raise SipParseError(f"unsupported version {version[:20]}", status, request)
    if uri_text.startswith("<"):
        raise SipParseError("Request-URI enclosed in <>", 400, request)
    return request


# the From of nearly every message: <sip:user@host>;tag=x, with or without a quoted or token display name.
# It is checked by this one pattern and parsed only when a layer asks for it.
_PLAIN_NAME_ADDR = re.compile(
    r'(?:"[^"\\\r\n]*" ?|[A-Za-z0-9\-.!%*_+`\'~]+ )?<sips?:[A-Za-z0-9\-_.!~*\'()&=+$,;?/%]+@'
    r'[A-Za-z0-9\-.]+(?::[0-9]{1,5})?>(?:;[A-Za-z0-9\-.!%*_+`\'~]+(?:=[A-Za-z0-9\-.!%*_+`\'~]+)?)*'
)


def _validate(msg: Request | Response) -> None:
    """The checks every layer above relies on (RFC 3261 §8.1.1, §8.2.1; RFC 4475 §3.1.2, §3.3.1, §3.3.8)."""
    headers = msg.headers
    seen: dict[str, int] = {}
    for key in headers.keys():
        if key in SINGLE_VALUED:
            seen[key] = seen.get(key, 0) + 1
    for key in ("via", "from", "to", "call-id", "cseq"):
        if key not in seen and key != "via":
            raise SipParseError(f"missing {canonical_name(key)} header")
    repeated = [k for k, count in seen.items() if count > 1 and k != "content-length"]
    if repeated:
        raise SipParseError(f"more than one {canonical_name(repeated[0])} header")
    if not headers.get_all("via"):
        raise SipParseError("missing Via header")
    _ = msg.vias, msg.to
    from_value = headers.get("from") or ""
    if _PLAIN_NAME_ADDR.fullmatch(from_value) is None:
        _ = msg.from_  # anything but the plain form is parsed now, so that errors answer 400 here
    if not msg.call_id:
        raise SipParseError("empty Call-ID")
    cseq = msg.cseq
    max_forwards = headers.get("max-forwards")
    if max_forwards is not None and (not max_forwards.isdigit() or int(max_forwards) > 255):
        raise SipParseError("malformed Max-Forwards")
    if isinstance(msg, Request):
        if cseq.method != msg.method:
            raise SipParseError("CSeq method does not match the request method")  # RFC 4475 §3.1.2.17
        _ = msg.uri


def parse_datagram(data: bytes, *, max_size: int = 65535) -> Request | Response:
    """Parse one message received in a UDP datagram (RFC 3261 §18.3).

    The body is Content-Length octets; octets after it are ignored (RFC 4475 §3.1.1.8). Without
    Content-Length the body is the rest of the datagram (RFC 2543 compatibility, RFC 4475 §3.4.1).
    A Content-Length larger than what arrived is answered with 400 (RFC 4475 §3.1.2.2).
    """
    if len(data) > max_size:
        raise SipParseError("message too large", 513)
    parts = _split_head(data)
    if parts is None:
        head, rest = data.rstrip(b"\r\n"), b""
    else:
        head, rest = parts
    try:
        start, headers = _parse_head(head)
    except SipParseError as exc:
        exc.partial = _partial_request(*_parse_head(head, strict=False))
        raise
    try:
        length = _content_length(headers, framing=True)
    except SipParseError as exc:
        exc.partial = _partial_request(start, headers)
        raise
    if length is None:
        body = rest
    elif length > len(rest):
        raise SipParseError("Content-Length larger than the message", 400, _partial_request(start, headers))
    else:
        body = rest[:length]
    msg = parse_message_parts(start, headers, body)
    msg.raw = data[: len(data) - len(rest) + len(body)] if parts is not None else None
    return msg


def parse_message_parts(start: str, headers: Headers, body: bytes) -> Request | Response:
    msg = _parse_start(start, headers)
    msg.body = body
    try:
        _validate(msg)
    except SipParseError as exc:
        if exc.partial is None and isinstance(msg, Request):
            exc.partial = msg
        raise
    return msg


def _partial_request(start: str, headers: Headers) -> Request | None:
    """Enough of a request to answer it with 400 (its header fields), whatever its start line."""
    if start.startswith("SIP/"):
        return None
    parts = start.split()
    return Request(parts[0] if parts else "", parts[1] if len(parts) > 1 else "", headers)


class StreamFramer:
    """Cuts a byte stream (TCP, TLS) into messages by Content-Length (RFC 3261 §18.3).

    ``feed()`` returns the messages completed so far, as (start line, headers, body, raw bytes).
    A :class:`FramingError` means the stream can no longer be trusted: close the connection.
    Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are skipped.
    """

    def __init__(self, max_size: int = 65535) -> None:
        self._buf = bytearray()
        self.max_size = max_size
        self.pongs = 0  # double-CRLF pings seen, each to be answered with a single CRLF

    @property
    def buffered(self) -> int:
        """Bytes of a message begun but not yet complete (the transport's message deadline runs on them)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[Request | Response | SipParseError, bytes]]:
        self._buf += data
        out: list[tuple[Request | Response | SipParseError, bytes]] = []
        while True:
            while self._buf[:2] == b"\r\n":
                if self._buf[:4] == b"\r\n\r\n":
                    self.pongs += 1
                    del self._buf[:4]
                else:
                    del self._buf[:2]
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > self.max_size:
                    raise FramingError("header section too large", 513)
                return out
            head = bytes(self._buf[:end])
            bad: SipParseError | None = None
            try:
                start, headers = _parse_head(head)
            except SipParseError as exc:  # a bad header line: the framing (Content-Length) may still hold
                start, headers = _parse_head(head, strict=False)
                exc.partial = _partial_request(start, headers)
                bad = exc
            length = _content_length(headers, framing=True) or 0
            total = end + 4 + length
            if total > self.max_size:
                raise FramingError("message too large", 513)
            if len(self._buf) < total:
                return out
            raw = bytes(self._buf[:total])
            del self._buf[:total]
            if bad is not None:
                out.append((bad, raw))
                continue
            try:
                msg = parse_message_parts(start, headers, raw[end + 4 :])
                msg.raw = raw
                out.append((msg, raw))
            except SipParseError as exc:
                out.append((exc, raw))


# -- building responses ----------------------------------------------------------------------------------

_COPIED = {"via": "Via", "from": "From", "call-id": "Call-ID", "cseq": "CSeq"}


def make_response(request: Request, status: int, reason: str | None = None, *, to_tag: str | None = None,
                  headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> Response:
    """A response to ``request`` with the headers §8.2.6.2 says to copy (Via, From, To, Call-ID, CSeq).

    Works on the raw header values, so it also serves a request that failed to parse.
    """
    fields: list[tuple[str, str]] = []
    keys: list[str] = []
    for key, (_, value) in zip(request.headers.keys(), request.headers, strict=True):
        if key in _COPIED:
            fields.append((_COPIED[key], value))
            keys.append(key)
        elif key == "to":
            if to_tag is not None and status > 100 and not _has_tag(request):
                value = f"{value};tag={to_tag}"
            fields.append(("To", value))
            keys.append(key)
    for name, value in headers:
        fields.append((name, value))
        keys.append(header_key(name))
    out = Headers(fields, keys)
    out.changed = True
    return Response(status, reason, out, body)


def _has_tag(request: Request) -> bool:
    """Does the request's To carry a tag? (By the parsed header; by its text if it does not parse.)"""
    try:
        return request.to.tag is not None
    except SipParseError:
        value = (request.headers.get("to") or "").replace(" ", "").lower()
        return ";tag=" in value.rpartition(">")[2] if ">" in value else ";tag=" in value
