"""What the transaction layer reads from and writes into messages (RFC 3261 §9.1, §17, §18.2; RFC 3581).

Pure functions, no state: transaction keys for matching (§17.1.3, §17.2.3 with the RFC 2543 fallback),
the ``received``/``rport`` stamp of a request's top Via (§18.2.1, RFC 3581 §4), where a response goes
(§18.2.2, RFC 3581 §4), and the two requests the core builds from an INVITE: the ACK for a non-2xx final
response (§17.1.1.3) and the CANCEL (§9.1).
"""

from __future__ import annotations

from .headers import Via, get_param, split_commas
from .message import Headers, Message, Request, Response
from .peer import Peer

MAGIC_COOKIE = "z9hG4bK"
_COOKIE_LEN = len(MAGIC_COOKIE)

# Keys of the transaction tables. RFC 3261 server: (branch, sent-by host, sent-by port, method);
# RFC 2543 server: (Request-URI, From tag, Call-ID, CSeq number, top Via, method); client: (branch, method).
# ACK and CANCEL are looked up with method "INVITE" to find the INVITE they belong to.
ServerKey = tuple[object, ...]
ClientKey = tuple[str, str]


def is_rfc3261_branch(branch: str | None) -> bool:
    """True for a branch that starts with the magic cookie and has more after it (§8.1.1.7).

    A bare ``z9hG4bK`` is not an RFC 3261 branch (RFC 4475 §3.3.11 badbranch): such a request is matched
    the RFC 2543 way, or every client sending the bare cookie would share one transaction.
    """
    return branch is not None and len(branch) > _COOKIE_LEN and branch.startswith(MAGIC_COOKIE)


def server_key(request: Request) -> tuple[ServerKey, bool]:
    """The server transaction key of a request, and whether it is an RFC 3261 (branch) key (§17.2.3)."""
    via = request.top_via
    method = request.method
    if method == "ACK":
        method = "INVITE"
    branch = via.branch
    if branch is not None and len(branch) > _COOKIE_LEN and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host.lower(), via.port, method), True
    # RFC 2543: Request-URI, From tag, Call-ID, CSeq number and top Via; the To tag is checked after the
    # look-up (that of the request for a retransmission, that of the response for an ACK)
    top = (via.transport, via.host.lower(), via.port, branch or "")
    return (request.uri_text, request.from_.tag, request.call_id, request.cseq.number, top, method), False


def client_key(message: Message) -> ClientKey | None:
    """The client transaction a response belongs to: top Via branch and CSeq method (§17.1.3)."""
    branch = message.top_via.branch
    if branch is None:
        return None
    return (branch, message.cseq.method)


# -- the top Via ----------------------------------------------------------------------------------------

def top_via_text(message: Message) -> str:
    """The top Via value as received (the first value of the first Via header field)."""
    first = message.headers.get("via")
    if first is None:
        raise ValueError("message without Via")
    return split_commas(first)[0] if "," in first else first.strip()


def replace_top_via(message: Message, via: Via) -> None:
    """Write ``via`` (the message's parsed top Via, changed in place) back into the first Via field.

    The field is marked changed, so :meth:`Message.to_bytes` serializes the new value; the parsed views
    stay valid.
    """
    value = message.headers.get("via") or ""
    items = split_commas(value) if "," in value else [value]
    items[0] = str(via)
    message.headers.replace_first("via", ", ".join(items))


def _find_param(params: dict[str, str | None], name: str) -> str | None:
    """The actual (case-preserving) key of a parameter, or None."""
    if name in params:
        return name
    for key in params:
        if key.lower() == name:
            return key
    return None


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


def stamp_via(request: Request, peer: Peer) -> Request:
    """Add ``received`` and fill ``rport`` in the top Via of a request just received from ``peer``.

    §18.2.1: ``received`` is added when the sent-by host is not the source address (a domain name never
    is). RFC 3581 §4: when the ``rport`` flag is present, ``rport`` gets the source port and ``received``
    is added even if the address is the same. Changes the request in place (header text included, so
    responses built from it copy the stamped Via) and returns it; a request that needs no stamp is left
    byte-exact.
    """
    via = request.top_via
    params = via.params
    rport_key = _find_param(params, "rport")
    received_key = _find_param(params, "received")
    changed = False
    if rport_key is not None:
        if not params[rport_key]:
            params[rport_key] = str(peer.port)
            changed = True
        if received_key is None or params[received_key] != peer.host:
            params[received_key or "received"] = peer.host
            changed = True
    elif _bare(via.host).lower() != peer.host.lower() and (
        received_key is None or params[received_key] != peer.host
    ):
        params[received_key or "received"] = peer.host
        changed = True
    if changed:
        replace_top_via(request, via)
    return request


def response_peer(request: Request, peer: Peer) -> Peer:
    """Where responses to ``request`` (received from ``peer``) are sent (§18.2.2, RFC 3581 §4).

    On a reliable transport: back on the connection the request came in on. Otherwise to ``maddr`` if
    present, else to ``received`` (or the sent-by host) at the ``rport`` port (or the sent-by port,
    default 5060). An unfilled ``rport`` flag means the source address and port.
    """
    if peer.reliable:
        return peer
    via = request.top_via
    params = via.params
    maddr = get_param(params, "maddr")
    if maddr:
        return Peer(transport=peer.transport, host=_bare(maddr), port=via.port or 5060)
    rport = get_param(params, "rport")
    if rport is not None and not rport.isdigit():
        return peer
    host = via.received or _bare(via.host)
    port = int(rport) if rport else (via.port or 5060)
    if host == peer.host and port == peer.port:
        return peer
    return Peer(transport=peer.transport, host=host, port=port)


# -- requests the core builds ---------------------------------------------------------------------------

def _copy_routing(request: Request, out: Headers) -> None:
    max_forwards = request.headers.get("max-forwards")
    if max_forwards is not None:
        out.add("Max-Forwards", max_forwards)
    for route in request.headers.get_all("route"):
        out.add("Route", route)


def _required(message: Message, name: str) -> str:
    value = message.headers.get(name)
    if value is None:
        raise ValueError(f"message without {name}")
    return value


def build_ack(request: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response to ``request``, as the INVITE client transaction sends it.

    §17.1.1.3: the Request-URI, Call-ID, From, CSeq number and Route of the INVITE, the To of the
    response (with its tag), one Via equal to the INVITE's top Via (so the same branch), CSeq method ACK.
    """
    out = Headers()
    out.add("Via", top_via_text(request))
    _copy_routing(request, out)
    out.add("From", _required(request, "from"))
    out.add("To", _required(response, "to"))
    out.add("Call-ID", request.call_id)
    out.add("CSeq", f"{request.cseq.number} ACK")
    return Request("ACK", request.uri_text, out)


def build_cancel(request: Request) -> Request:
    """The CANCEL of a request (§9.1): the same Request-URI, Call-ID, To, From, CSeq number, Route and
    top Via (so the same branch: the server matches the CANCEL to the INVITE by it), CSeq method CANCEL.
    """
    out = Headers()
    out.add("Via", top_via_text(request))
    _copy_routing(request, out)
    out.add("From", _required(request, "from"))
    out.add("To", _required(request, "to"))
    out.add("Call-ID", request.call_id)
    out.add("CSeq", f"{request.cseq.number} CANCEL")
    return Request("CANCEL", request.uri_text, out)
