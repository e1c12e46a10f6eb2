"""Checks a UAS makes on every request before the method's own handling (RFC 3261 §8.2).

The order follows §8.2: method (§8.2.1), URI scheme (§8.2.2.1), Require (§8.2.2.3), content
(§8.2.3: Content-Type, Accept).

A ``sips:`` URI (RFC 3261 §26.2, RFC 5630) asks for TLS on every hop: a request that came over another
transport with a ``sips:`` Request-URI, or a REGISTER binding a ``sips:`` Contact, gets 416 (the scheme is
not served on that transport; RFC 5630 §3.1.3 / §3.1.4 — the client may retry over TLS). Each failed check names the response it implies; the RFC 4475 §3.3
application-level torture messages exercise them.
"""

from __future__ import annotations

from collections.abc import Collection

from .errors import SipParseError
from .headers import parse_contacts, split_commas
from .message import Request, Response, make_response
from .uri import SipUri, TelUri


def check_request(
    request: Request,
    *,
    allowed_methods: Collection[str],
    supported: Collection[str] = (),
    content_types: Collection[str] = ("application/sdp",),
    to_tag: str | None = None,
    secure: bool = True,
) -> Response | None:
    """The error response ``request`` must get before any method-specific handling, or None.

    ``secure``: the request came over TLS (a ``sips:`` request on any other transport is refused)."""
    def reply(status: int, *headers: tuple[str, str]) -> Response:
        return make_response(request, status, to_tag=to_tag, headers=headers)

    if request.method not in allowed_methods:
        allow = ("Allow", ", ".join(allowed_methods))
        # §8.2.1: 405 for a method we know but do not accept here, 501 for one we do not know at all
        return reply(405 if request.method in KNOWN_METHODS else 501, allow)
    uri = request.uri
    if not isinstance(uri, (SipUri, TelUri)):
        return reply(416)
    if isinstance(uri, SipUri) and uri.headers is not None:
        # RFC 4475 §3.1.2.11: escaped headers have no meaning in a Request-URI
        return reply(400)
    if not secure and request.method != "ACK" and (is_sips(uri) or _binds_sips(request)):
        return reply(416)
    if request.method not in ("ACK", "CANCEL"):
        required = [opt for value in request.headers.get_all("require") for opt in split_commas(value) if opt]
        unsupported = [opt for opt in required if opt.lower() not in {s.lower() for s in supported}]
        if unsupported:
            return reply(420, ("Unsupported", ", ".join(unsupported)))
    if request.body and request.method not in ("ACK", "CANCEL", "BYE"):
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if ctype not in content_types:
            return reply(415, ("Accept", ", ".join(content_types)))
    if request.method == "INVITE":
        accept = request.headers.get_all("accept")
        if accept:
            offered = {a.split(";")[0].strip().lower() for v in accept for a in split_commas(v)}
            if "application/sdp" not in offered and "*/*" not in offered and "application/*" not in offered:
                return reply(406, ("Accept", "application/sdp"))
    return None


def is_sips(uri: object) -> bool:
    return isinstance(uri, SipUri) and uri.scheme == "sips"


def _binds_sips(request: Request) -> bool:
    if request.method != "REGISTER":
        return False
    for value in request.headers.get_all("contact"):
        try:
            contacts = parse_contacts(value)
        except SipParseError:
            return False  # the registrar answers a bad Contact itself
        if contacts and any(is_sips(c.uri) for c in contacts):
            return True
    return False


KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH",
    "INFO", "REFER", "MESSAGE", "UPDATE",
})
