"""Header fields: names with compact forms, and the structured values the core needs (RFC 3261 §7.3, §20, §25).

How it works: a message keeps its header fields as an ordered list of (name, value) strings, as received
(folded lines joined). The few headers the core works with — Via, From, To, Contact, CSeq, Call-ID —
are parsed into small objects by the functions here; every other header stays an opaque string and is
passed through untouched (the sippy idea of lazy parsing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import SipParseError
from .grammar import TOKEN_CHARS, is_token, quote_display
from .uri import SipUri, Uri, parse_uri

# RFC 3261 §7.3.3 and the IANA registry of compact forms
COMPACT_FORMS: dict[str, str] = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via",
    "o": "event", "r": "refer-to", "b": "referred-by", "u": "allow-events", "x": "session-expires",
    "a": "accept-contact", "j": "reject-contact", "d": "request-disposition", "y": "identity",
    "n": "identity-info",
}
# how we write a header name we create
CANONICAL: dict[str, str] = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate", "mime-version": "MIME-Version",
}
# headers that may appear once only (RFC 4475 §3.3.8)
SINGLE_VALUED = frozenset({"to", "from", "call-id", "cseq", "max-forwards", "content-length", "content-type"})

# parameters without quotes or white space: ;name or ;name=value, one after another
_SIMPLE_PARAMS_RE = re.compile(r"(?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~\[\]:]+)?)+")
_LWS_RE = re.compile(r"[ \t]+")


_KEY_CACHE: dict[str, str] = {}


def header_key(name: str) -> str:
    """The lower-case long form of a header name: the key all look-ups use (memoized: it is per field)."""
    key = _KEY_CACHE.get(name)
    if key is None:
        low = name.lower()
        key = COMPACT_FORMS.get(low, low)
        if len(_KEY_CACHE) < 4096:  # bounded: a peer can invent names
            _KEY_CACHE[name] = key
    return key


def canonical_name(name: str) -> str:
    low = header_key(name)
    return CANONICAL.get(low) or "-".join(part.capitalize() for part in low.split("-"))


def split_commas(value: str) -> list[str]:
    """Split a header value at the commas that separate values, not those inside quotes or <> (§7.3.1)."""
    if "," not in value:
        return [value.strip()]
    out: list[str] = []
    start = 0
    quoted = False
    angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == "," and not angle:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    out.append(value[start:].strip())
    return out


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    """Read a quoted-string starting at ``text[pos] == '"'``; returns (content unescaped, index after)."""
    out: list[str] = []
    i = pos + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise SipParseError("unterminated quoted string")


def parse_params(text: str, what: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` header parameters, allowing LWS around ';' and '=' (§25.1 SEMI, EQUAL).

    Names keep their case; values may be quoted strings (kept with their quotes, so they serialize back).
    """
    params: dict[str, str | None] = {}
    text = text.strip()
    if not text:
        return params
    if _SIMPLE_PARAMS_RE.fullmatch(text):
        # the usual case (";tag=as8d7;expires=3600"): validated by one regex, split without a loop
        for item in text[1:].split(";"):
            key, eq, val = item.partition("=")
            params[key] = val if eq else None
        return params
    if not text.startswith(";"):
        raise SipParseError(f"junk after {what}")
    i = 0
    n = len(text)
    while i < n:
        # at a ';'
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        start = i
        while i < n and text[i] in TOKEN_CHARS:
            i += 1
        name = text[start:i]
        if not name:
            raise SipParseError(f"empty parameter in {what}")
        while i < n and text[i] in " \t":
            i += 1
        value: str | None = None
        if i < n and text[i] == "=":
            i += 1
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] == '"':
                _, end = _read_quoted(text, i)
                value = text[i:end]
                i = end
            else:
                start = i
                while i < n and (text[i] in TOKEN_CHARS or text[i] in "[]:"):
                    i += 1
                value = text[start:i]
                if not value:
                    raise SipParseError(f"empty value of parameter {name} in {what}")
            while i < n and text[i] in " \t":
                i += 1
        if i < n and text[i] != ";":
            raise SipParseError(f"malformed parameters in {what}")
        params[name] = value
    return params


def params_to_str(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def get_param(params: dict[str, str | None], name: str) -> str | None:
    """Case-insensitive parameter look-up; '' for a flag without value, None when absent."""
    value = params.get(name)
    if value is not None:
        return value
    if name in params:
        return ""
    lname = name.lower()
    for key, val in params.items():
        if key.lower() == lname:
            return "" if val is None else val
    return None


@dataclass(slots=True)
class NameAddr:
    """A From, To, Contact, Route or Record-Route value: display name, URI, header parameters (§20.10)."""

    uri: Uri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    bracketed: bool = True

    @property
    def tag(self) -> str | None:
        return get_param(self.params, "tag")

    def __str__(self) -> str:
        head = f"{quote_display(self.display)} " if self.display is not None else ""
        if self.bracketed or self.display is not None:
            return f"{head}<{self.uri}>{params_to_str(self.params)}"
        return f"{self.uri}{params_to_str(self.params)}"


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``name-addr / addr-spec`` followed by header parameters; 400 on the RFC 4475 §3.1.2 faults."""
    text = value.strip()
    display: str | None = None
    if text.startswith('"'):
        display, end = _read_quoted(text, 0)
        text = text[end:].lstrip(" \t")
        if not text.startswith("<"):
            raise SipParseError("quoted display name without <URI>")
    lt = text.find("<")
    if lt >= 0:
        if display is None and lt > 0:
            name = text[:lt].strip()
            # an unquoted display name is 1*(token LWS) (§25.1); "Bell, Alexander" is not (RFC 4475 §3.1.2.15)
            if not all(is_token(word) for word in _LWS_RE.split(name)):
                raise SipParseError("display name with characters that need quoting")
            display = name
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError("missing > after URI")
        uri_text = text[lt + 1 : gt]
        if uri_text != uri_text.strip():
            raise SipParseError("spaces within addr-spec")  # RFC 4475 §3.1.2.14
        return NameAddr(uri=parse_uri(uri_text), display=display, params=parse_params(text[gt + 1 :], "name-addr"))
    # addr-spec without brackets: parameters after the URI are header parameters; a URI with
    # parameters, headers or a comma must be bracketed (§20.10, RFC 4475 §3.1.2.13)
    semi = text.find(";")
    uri_text = text if semi < 0 else text[:semi]
    if "?" in uri_text or "," in uri_text:
        raise SipParseError("URI with headers must be enclosed in <>")
    uri_text = uri_text.rstrip(" \t")
    return NameAddr(
        uri=parse_uri(uri_text), params=parse_params(text[len(uri_text):], "addr-spec"), bracketed=False
    )


@dataclass(slots=True)
class Via:
    """One Via value (§20.42, §18.2.1, RFC 3581)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return get_param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return get_param(self.params, "received")

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{params_to_str(self.params)}"


_VIA_RE = re.compile(
    r"^SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?[ \t]*(;.*)?$",
    re.IGNORECASE | re.DOTALL,
)


def parse_via(value: str) -> list[Via]:
    """All Via values in one header field (they may be comma separated)."""
    vias: list[Via] = []
    for item in split_commas(value):
        m = _VIA_RE.match(item)
        if not m:
            raise SipParseError("malformed Via")
        port = int(m.group(3)) if m.group(3) else None
        if port is not None and port > 65535:
            raise SipParseError("malformed Via port")
        vias.append(Via(m.group(1).upper(), m.group(2), port, parse_params(m.group(4) or "", "Via")))
    return vias


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or not is_token(parts[1]):
        raise SipParseError("malformed CSeq")
    number = int(parts[0])
    if number > 0xFFFFFFFF:  # RFC 3261 §8.1.1.5: less than 2**31 when sent; 32 bits at most when received
        raise SipParseError("CSeq number out of range")
    return CSeq(number, parts[1])


def parse_contacts(value: str) -> list[NameAddr] | None:
    """Contact values of one header field; ``None`` for the ``*`` wildcard (§10.2.2)."""
    if value.strip() == "*":
        return None
    return [parse_name_addr(item) for item in split_commas(value)]


def sip_uri_of(addr: NameAddr) -> SipUri | None:
    return addr.uri if isinstance(addr.uri, SipUri) else None
