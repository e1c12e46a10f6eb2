"""What configured text may go into a SIP message, and how it is written there (RFC 3261 §19.1.2, §25.1).

How it works: two halves sharing one grammar. The ``check_*`` functions are the API's validators (and the
snapshot loader's, for rows written before they existed): they raise :class:`ValueError` with a message
that names what is wrong, so pydantic turns it into a clear 422. The writers (:func:`quoted_string`
and :func:`quote_display`, :func:`escape_user` and :func:`reescape_user`, :func:`uri_host`,
:func:`name_addr`) are what every header we build goes through, so that text that slipped past a check
(a display name from a peer's From, an old row) still cannot end a header line or close a quoted-string
or a URI early.
"""

from __future__ import annotations

import ipaddress
import re

TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
# control characters: CR and LF split a header; the others (NUL, TAB, ESC …) have no place in a name
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# what configured text may not hold besides: the C1 controls (U+0085 NEL, U+009B CSI …) and the Unicode line
# and paragraph separators, which logs, terminals, str.splitlines() and JavaScript take for line breaks
_CONFIGURED_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# what no quoted-string can hold: CR and LF (quoted-pair excludes them, §25.1), NUL (C parsers stop there)
UNQUOTABLE_RE = re.compile(r"[\x00\r\n]")
# §25.1 user = 1*( unreserved / escaped / user-unreserved ); unreserved = alphanum / mark
_USER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,;?/")
# what we write unescaped from plain text: user-unreserved less ';' '?' '/', which some phones take for
# the URI's parameters, headers or path. An escaped and an unescaped character are the same user only for
# unreserved ones (§19.1.4): configured text may choose the escaped form, a user from the wire may not
# (a received "1234;phone-context=+7495" escaped to "1234%3Bphone-context=+7495" is another user), so
# that goes back out as it came (reescape_user)
_SAFE_USER_CHARS = _USER_CHARS - frozenset(";?/")
# one piece of a received user: an escape as it is, or one character
_RECEIVED_PIECE_RE = re.compile(r"%[0-9A-Fa-f]{2}|.", re.DOTALL)
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$")


# -- checks (the API's validators) ------------------------------------------------------------------------
def is_token(text: str) -> bool:
    return bool(_TOKEN_RE.match(text))


def check_text(value: str) -> str:
    """Text that becomes a display name (names of people, offices, trunks): no control characters."""
    if _CONFIGURED_CONTROL_RE.search(value):
        raise ValueError("must not contain control characters (line breaks, tabs, NUL)")
    return value


def check_host(value: str) -> str:
    """A host: a host name or an IP address (an IPv6 one with or without brackets), in canonical form."""
    text = value.strip().lower()
    check_text(text)
    try:
        return str(ipaddress.ip_address(text.removeprefix("[").removesuffix("]")))
    except ValueError:
        pass
    if not _HOSTNAME_RE.match(text):
        raise ValueError(f"{value!r} is not a host name or an IP address")
    return text


def check_token(value: str) -> str:
    """A token (§25.1): a header parameter's name or value, a method."""
    if not is_token(value):
        raise ValueError(f"{value!r} is not a SIP token: letters, digits and -.!%*_+`'~ only")
    return value


# -- writers ----------------------------------------------------------------------------------------------
def quoted_string(text: str) -> str:
    """``text`` as a quoted-string (§25.1): backslash and double quote escaped as quoted-pairs.

    The one writer of quoted-strings (display names, digest parameters). Text holding CR, LF or NUL
    cannot be quoted (:data:`UNQUOTABLE_RE`): :class:`ValueError`, since changing it would change what
    it means (a digest username, a realm).
    """
    if UNQUOTABLE_RE.search(text):
        raise ValueError("CR, LF or NUL cannot be in a quoted-string")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_display(name: str) -> str:
    """A display name as a quoted-string: a name can lose its control characters (which confuse peers,
    and CR and LF cannot be quoted at all), so each becomes a space."""
    return quoted_string(_CONTROL_RE.sub(" ", name))


def escape_user(user: str) -> str:
    """A user part for a SIP URI (§19.1.2) from plain text: every character outside the user grammar (and
    ';' '?' '/') as ``%HH`` of UTF-8.

    It takes the unescaped text (a configured name, a number), so a ``%`` of the text itself goes out as
    ``%25``. A user taken from the wire goes back through :func:`reescape_user` instead.
    """
    if all(ch in _SAFE_USER_CHARS for ch in user):
        return user
    return "".join(ch if ch in _SAFE_USER_CHARS else _percent(ch) for ch in user)


def reescape_user(user: str) -> str:
    """A user part as received (:attr:`SipUri.user`, escapes and all), safe to write back: only what the
    user grammar (§25.1 ``1*( unreserved / escaped / user-unreserved )``) does not allow is escaped, a
    stray ``%`` too; its ``%HH`` escapes and its ``& = + $ , ; ? /`` stay as they came, so it is the
    same user (§19.1.4) and cannot end the URI early."""
    return "".join(piece if len(piece) == 3 or piece in _USER_CHARS else _percent(piece)
                   for piece in _RECEIVED_PIECE_RE.findall(user))


def _percent(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))


def uri_host(host: str) -> str:
    """A host as it goes into a URI or a Via: an IPv6 literal in brackets (§25.1 ``IPv6reference``),
    which :func:`check_host` stores without them; a name or an IPv4 address as it is."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def name_addr(display: str | None, user: str | None, host: str, *, received: bool = False) -> str:
    """A name-addr for From, To or P-Asserted-Identity: ``"display" <sip:user@host>``.

    ``display`` and ``user`` are plain (unescaped) text, escaped here; ``received``: ``user`` is a URI user
    as it came from the wire, written back as it came (:func:`reescape_user`). ``host`` is a configured
    host or domain, already checked by :func:`check_host` (a host cannot be escaped into something valid).
    """
    host = uri_host(host)
    if user:
        user = reescape_user(user) if received else escape_user(user)
    uri = f"sip:{user}@{host}" if user else f"sip:{host}"
    return f"{quote_display(display)} <{uri}>" if display else f"<{uri}>"
