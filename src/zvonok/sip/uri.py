"""SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966).

How it works: :func:`parse_uri` splits a URI into its parts without unescaping them, so that
serializing gives back the text received (RFC 4475 §3.1.1.3: an escape is decoded once, and only where
``escaped`` is allowed). Comparison and look-ups use :meth:`SipUri.user_unescaped` and lower-cased hosts
(§19.1.4). Unknown schemes parse as :class:`AbsoluteUri` so that the caller can answer 416.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from .errors import SipParseError

# host = hostname / IPv4address / IPv6reference (§25.1); checked loosely but never admits LWS or brackets
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?\.?|[A-Za-z0-9])$")
# user = 1*( unreserved / escaped / user-unreserved ); '%' is checked by _check_escapes
_USER_RE = re.compile(r"^[A-Za-z0-9\-_.!~*'()%&=+$,;?/]+$")
_PASSWORD_RE = re.compile(r"^[A-Za-z0-9\-_.!~*'()%&=+$,]*$")
_PARAM_RE = re.compile(r"^[A-Za-z0-9\-_.!~*'()%\[\]/:&+$]+$")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+\-.]*$")
_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f<>\"]")


def _check_escapes(text: str, what: str) -> None:
    if _ESCAPE_RE.search(text):
        raise SipParseError(f"bad escape in {what}")


@dataclass(slots=True, frozen=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI; parts are kept escaped, as received."""

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out += [":", str(self.port)]
        for name, value in self.params.items():
            out += [";", name] if value is None else [";", name, "=", value]
        if self.headers is not None:
            out += ["?", self.headers]
        return "".join(out)

    @property
    def user_unescaped(self) -> str | None:
        """The user part with %HH decoded once (``%00`` becomes a NUL, it does not truncate)."""
        if self.user is None:
            return None
        return unquote_to_bytes(self.user).decode("utf-8", "surrogateescape")

    @property
    def host_lower(self) -> str:
        return self.host.lower()

    def param(self, name: str) -> str | None:
        """A URI parameter's value by case-insensitive name ('' for a parameter without value)."""
        lname = name.lower()
        for key, value in self.params.items():
            if key.lower() == lname:
                return "" if value is None else value
        return None

    def has_param(self, name: str) -> bool:
        return self.param(name) is not None

    @property
    def transport(self) -> str | None:
        value = self.param("transport")
        return value.lower() if value else None

    def aor(self) -> str:
        """The address-of-record key: ``user@host`` unescaped, host lower-cased (§10.3 step 5)."""
        return f"{self.user_unescaped or ''}@{self.host_lower}"


@dataclass(slots=True, frozen=True)
class TelUri:
    """A ``tel:`` URI (RFC 3966): the number and its parameters, kept as received."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)
    scheme: str = "tel"

    def __str__(self) -> str:
        out = ["tel:", self.number]
        for name, value in self.params.items():
            out += [";", name] if value is None else [";", name, "=", value]
        return "".join(out)


@dataclass(slots=True, frozen=True)
class AbsoluteUri:
    """Any other scheme (RFC 4475 §3.3.2–3.3.4): parsed only far enough to name the scheme."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = SipUri | TelUri | AbsoluteUri


def _parse_params(text: str, what: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if not text:
        return params
    for item in text.split(";"):
        if not item:
            raise SipParseError(f"empty parameter in {what}")
        name, sep, value = item.partition("=")
        if not _PARAM_RE.match(name) or (sep and not _PARAM_RE.match(value)):
            raise SipParseError(f"bad parameter in {what}")
        _check_escapes(item, what)
        params[name] = value if sep else None
    return params


_MEMO: dict[str, Uri] = {}
_MEMO_MAX = 65536


def parse_uri(text: str) -> Uri:
    """Parse a URI; raise :class:`SipParseError` (400) when it is not well formed.

    Memoized: the same URIs come back in every message of a phone (its AOR in From and To, the
    registrar's domain, its contact), and parsing is a good share of the per-message cost. The result
    is shared, so callers treat URIs as immutable and use ``dataclasses.replace`` for a changed copy.
    """
    found = _MEMO.get(text)
    if found is not None:
        return found
    uri = _parse_uri(text)
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.clear()
    _MEMO[text] = uri
    return uri


def _parse_uri(text: str) -> Uri:
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.match(scheme) or _BAD_CHARS.search(text):
        raise SipParseError(f"malformed URI {text[:80]!r}")
    lscheme = scheme.lower()
    if lscheme in ("sip", "sips"):
        return _parse_sip(lscheme, rest, text)
    if lscheme == "tel":
        number, _, ptext = rest.partition(";")
        if not number or not re.match(r"^\+?[0-9A-Fa-f*#\-.()pw]+$", number):
            raise SipParseError(f"malformed tel URI {text[:80]!r}")
        return TelUri(number=number, params=_parse_params(ptext, "tel URI"))
    return AbsoluteUri(scheme=scheme, rest=rest)


def _parse_sip(scheme: str, rest: str, text: str) -> SipUri:
    # '@' cannot appear unescaped after the userinfo, while '?' and ';' can appear inside it (RFC 4475
    # §3.1.1.2, §3.1.1.9): so split off the userinfo first, then the headers
    headers: str | None = None
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        password = pw if colon else None
        if not user or not _USER_RE.match(user):
            raise SipParseError(f"malformed user part in {text[:80]!r}")
        _check_escapes(user, "user part")
        if password is not None and not _PASSWORD_RE.match(password):
            raise SipParseError("malformed password in URI")
    if "?" in rest:
        rest, _, headers = rest.partition("?")
        _check_escapes(headers, "URI headers")
    hostport, _, ptext = rest.partition(";")
    if hostport.startswith("["):
        end = hostport.find("]")
        host, portpart = hostport[: end + 1], hostport[end + 1 :]
        if end < 0 or (portpart and not portpart.startswith(":")):
            raise SipParseError("malformed IPv6 reference")
        portpart = portpart[1:]
        has_port = bool(portpart) or hostport.endswith(":")
    else:
        host, colon, portpart = hostport.partition(":")
        has_port = bool(colon)
    if not _HOST_RE.match(host):
        raise SipParseError(f"malformed host in {text[:80]!r}")
    port: int | None = None
    if has_port:
        if not portpart.isdigit() or len(portpart) > 5 or int(portpart) > 65535:
            raise SipParseError("malformed port in URI")
        port = int(portpart)
    return SipUri(
        scheme=scheme, host=host, user=user, password=password, port=port,
        params=_parse_params(ptext, "URI"), headers=headers,
    )
