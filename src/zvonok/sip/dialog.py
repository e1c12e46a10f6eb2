"""Dialogs (RFC 3261 §12), with what §13–§15 ask of them for INVITE, re-INVITE, ACK and BYE.

How it works: a :class:`Dialog` is the state of §12 — Call-ID, tags, local and remote URI, remote target,
route set, sequence numbers, secure flag — plus its early/confirmed/terminated state. It is built from
the request and response that create it, as UAS (:meth:`Dialog.from_uas`) or as UAC
(:meth:`Dialog.from_uac`), and is then fed what arrives (:meth:`Dialog.receive_request`,
:meth:`Dialog.receive_response`) and asked for what to send (:meth:`Dialog.create_request`,
:meth:`Dialog.create_ack`, :meth:`Dialog.create_response`). It never touches the wire: the call engine
keeps dialogs in its own dict under :attr:`Dialog.key` and matches incoming messages with
:func:`dialog_key_for_request` / :func:`dialog_key_for_response`.

Requests come out without a Via: the transport knows the sent-by address. :func:`add_top_via` puts one
on top (with ``rport``, RFC 3581); without a ``branch`` the transaction layer adds a fresh one in
``send_request``. An ACK for a 2xx is sent outside any transaction (§13.2.2.4), so its Via needs a new
branch from the caller's generator: ``add_top_via(ack, …, branch=new_branch())``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from .errors import SipUsageError
from .grammar import uri_host
from .headers import NameAddr, parse_name_addr, split_commas
from .message import Headers, Request, Response, make_response
from .transaction_messages import MAGIC_COOKIE
from .uri import SipUri, Uri

MAX_FORWARDS = "70"
# requests that change the remote target (RFC 3261 §12.2: re-INVITE; RFC 3311 UPDATE; RFC 6665 §4.1.2,
# §4.2.2 SUBSCRIBE and NOTIFY; RFC 6665 §7.1 makes REFER one too): they carry a Contact
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})

DialogKey = tuple[str, str, str]  # (Call-ID, local tag, remote tag)


class DialogState(StrEnum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


def _without_tag(addr: NameAddr) -> NameAddr:
    if addr.tag is None:
        # no copy of an address without a tag (the To of an INVITE): parsed values are shared and never
        # changed in place (see sip/uri.py), and every dialog kept two copies (issue 9)
        return addr
    params = {k: v for k, v in addr.params.items() if k.lower() != "tag"}
    return dataclasses.replace(addr, params=params)


def _with_tag(addr: NameAddr, tag: str) -> NameAddr:
    params = dict(addr.params)
    if tag:
        params["tag"] = tag
    return dataclasses.replace(addr, params=params)


def _header_addrs(message: Request | Response, name: str) -> list[NameAddr]:
    """Every value of a header (each field may hold several, comma separated), in order."""
    return [parse_name_addr(item) for value in message.headers.get_all(name)
            for item in split_commas(value) if item]


def _contact_uri(message: Request | Response) -> Uri | None:
    contacts = _header_addrs(message, "contact")
    return contacts[0].uri if contacts else None


def _is_sips(uri: Uri) -> bool:
    return isinstance(uri, SipUri) and uri.scheme == "sips"


def _tag_of(addr: NameAddr) -> str:
    return addr.tag or ""


@dataclass(slots=True, kw_only=True)
class Dialog:
    """The dialog state of RFC 3261 §12 and the early/confirmed/terminated state around it.

    ``local_uri``/``remote_uri`` are the From/To values without their tags; ``remote_seq`` is None while
    the remote side has sent no request in the dialog (§12.1.2), ``local_seq`` 0 while we have sent none
    (§12.1.1: the first request we send then gets CSeq 1). ``local_contact`` is our Contact as written in
    our requests and responses: only ever written, so kept as text (a parsed copy per dialog, issue 9).
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: Uri
    route_set: list[NameAddr] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    secure: bool = False
    state: DialogState = DialogState.EARLY
    local_contact: str | None = None
    is_uac: bool = False

    # -- creation (§12.1) ----------------------------------------------------------------------------------
    @classmethod
    def from_uas(cls, request: Request, response: Response, local_contact: NameAddr | str, *,
                 secure: bool | None = None) -> Dialog:
        """The dialog our response (a 101–199 with a To tag, or a 2xx) creates for ``request`` (§12.1.1).

        The route set is the request's Record-Route in order; the remote target is its Contact (the
        Request-URI's place when a broken client sends none). ``secure`` defaults to "the Request-URI
        is a SIPS URI" — the caller passes False when the request did not arrive over TLS.
        """
        local_tag = response.to.tag
        if not 101 <= response.status <= 299 or not local_tag:
            raise SipUsageError("a dialog is created by a 101-299 response with a To tag")
        remote_target = _contact_uri(request) or request.uri
        return cls(
            call_id=request.call_id, local_tag=local_tag, remote_tag=_tag_of(request.from_),
            local_uri=_without_tag(request.to), remote_uri=_without_tag(request.from_),
            remote_target=remote_target, route_set=_header_addrs(request, "record-route"),
            local_seq=0, remote_seq=request.cseq.number,
            secure=_is_sips(request.uri) if secure is None else secure,
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
            local_contact=str(local_contact), is_uac=False,
        )

    @classmethod
    def from_uac(cls, request: Request, response: Response, *, secure: bool | None = None) -> Dialog:
        """The dialog a response (101–199 with a To tag, or 2xx) to our ``request`` creates (§12.1.2).

        The route set is the response's Record-Route reversed; the remote target its Contact. A 2xx
        without a To tag is from an RFC 2543 UA: its remote tag is null ('').
        """
        remote_tag = response.to.tag
        if not 101 <= response.status <= 299 or (response.status < 200 and not remote_tag):
            raise SipUsageError("a dialog is created by a 101-299 response with a To tag")
        local_tag = request.from_.tag
        if not local_tag:
            raise SipUsageError("our request has no From tag")
        contacts = _header_addrs(request, "contact")
        return cls(
            call_id=request.call_id, local_tag=local_tag, remote_tag=remote_tag or "",
            local_uri=_without_tag(request.from_), remote_uri=_without_tag(request.to),
            remote_target=_contact_uri(response) or request.uri,
            route_set=_header_addrs(response, "record-route")[::-1],
            local_seq=request.cseq.number, remote_seq=None,
            secure=_is_sips(request.uri) if secure is None else secure,
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
            local_contact=str(contacts[0]) if contacts else None, is_uac=True,
        )

    @property
    def key(self) -> DialogKey:
        """The dialog ID (§12): Call-ID, local tag, remote tag."""
        return (self.call_id, self.local_tag, self.remote_tag)

    # -- requests we send (§12.2.1.1) -------------------------------------------------------------------------
    def _routing(self) -> tuple[str, list[str]]:
        """The Request-URI and Route values: loose routing keeps the remote target as Request-URI; a strict
        router (no ``lr`` on the first route) becomes the Request-URI and the remote target the last Route."""
        routes = self.route_set
        if not routes:
            return str(self.remote_target), []
        first = routes[0].uri
        if isinstance(first, SipUri) and first.has_param("lr"):
            return str(self.remote_target), [str(r) for r in routes]
        if isinstance(first, SipUri):
            # §12.2.1.1: stripped of the parameters not allowed in a Request-URI (§19.1.1 table: method,
            # and headers)
            params = {k: v for k, v in first.params.items() if k.lower() != "method"}
            request_uri = str(dataclasses.replace(first, params=params, headers=None))
        else:
            request_uri = str(first)
        return request_uri, [str(r) for r in routes[1:]] + [f"<{self.remote_target}>"]

    def _request(self, method: str, cseq: int, body: bytes, content_type: str | None,
                 extra_headers: Iterable[tuple[str, str]]) -> Request:
        request_uri, routes = self._routing()
        headers = Headers()
        headers.add("Max-Forwards", MAX_FORWARDS)
        if routes:
            headers.add("Route", ", ".join(routes))
        headers.add("From", str(_with_tag(self.local_uri, self.local_tag)))
        headers.add("To", str(_with_tag(self.remote_uri, self.remote_tag)))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if method in TARGET_REFRESH and self.local_contact is not None:
            headers.add("Contact", self.local_contact)
        for name, value in extra_headers:
            headers.add(name, value)
        if body:
            headers.add("Content-Type", content_type or "application/sdp")
        return Request(method, request_uri, headers, body)

    def create_request(self, method: str, *, body: bytes = b"", content_type: str | None = None,
                       extra_headers: Iterable[tuple[str, str]] = ()) -> Request:
        """A request within the dialog (§12.2.1.1), with the next local CSeq; Via is left to the caller.

        Target refresh requests (re-INVITE, UPDATE, SUBSCRIBE, NOTIFY, REFER) carry our Contact. ACK and
        CANCEL are not built here: :meth:`create_ack` for the ACK of a 2xx, the transaction layer's
        ``build_cancel`` for a CANCEL (it must copy the INVITE's Via and CSeq).
        """
        if method in ("ACK", "CANCEL"):
            raise SipUsageError(f"{method} is not created with create_request()")
        if self.state is DialogState.TERMINATED:
            raise SipUsageError("the dialog is terminated")
        self.local_seq += 1
        return self._request(method, self.local_seq, body, content_type, extra_headers)

    def create_ack(self, invite_cseq: int, body: bytes = b"", *, content_type: str | None = None,
                   extra_headers: Iterable[tuple[str, str]] = ()) -> Request:
        """The ACK for a 2xx to the INVITE with CSeq ``invite_cseq`` (§13.2.2.4).

        Routed like any request in the dialog, CSeq number of the INVITE, method ACK; the caller adds a
        Via with a new branch (see the module docstring) and the INVITE's credentials in
        ``extra_headers`` if it had any. ``body``: the answer, when the 2xx carried the offer.
        """
        return self._request("ACK", invite_cseq, body, content_type, extra_headers)

    # -- what we receive (§12.2.2, §12.2.1.2) -----------------------------------------------------------------
    def receive_request(self, request: Request) -> int | None:
        """Check and absorb a request within the dialog; the error status to answer with, or None.

        481 on a terminated dialog; 500 when the CSeq is lower than the last one (§12.2.2: out of
        order). A target refresh request with a Contact replaces the remote target (§12.2.2; we do it
        on receipt, as RFC 3261 says, not on the 2xx as RFC 6141 refines). A BYE terminates the dialog
        (§15.1.2): the caller answers it 200. ACK and CANCEL do not take part in the CSeq ordering.
        """
        if self.state is DialogState.TERMINATED:
            return 481
        if request.method in ("ACK", "CANCEL"):
            return None
        cseq = request.cseq.number
        if self.remote_seq is not None and cseq < self.remote_seq:
            return 500
        self.remote_seq = cseq
        if request.method in TARGET_REFRESH:
            target = _contact_uri(request)
            if target is not None:
                self.remote_target = target
        if request.method == "BYE":
            self.state = DialogState.TERMINATED
        return None

    def receive_response(self, response: Response) -> None:
        """Update the dialog from a response to a request we sent in it, or to the INVITE creating it.

        A 2xx to the INVITE confirms an early dialog and recomputes the route set from its Record-Route
        (§13.2.2.4); a 2xx to a target refresh replaces the remote target (§12.2.1.2); a non-2xx final
        response ends an early dialog; 481 and 408 end any dialog (§12.2.1.2). A 2xx to our BYE ends it.
        """
        status = response.status
        method = response.cseq.method
        if self.state is DialogState.TERMINATED or status < 101:
            return
        if status in (408, 481):
            self.state = DialogState.TERMINATED
            return
        if self.state is DialogState.EARLY and method == "INVITE":
            if status >= 300:
                self.state = DialogState.TERMINATED
                return
            if status >= 200:
                self.state = DialogState.CONFIRMED
                if self.is_uac:
                    self.route_set = _header_addrs(response, "record-route")[::-1]
        if 200 <= status < 300 and method == "BYE":
            self.state = DialogState.TERMINATED
        elif status < 300 and method in TARGET_REFRESH:
            target = _contact_uri(response)
            if target is not None:
                self.remote_target = target

    def confirm(self) -> None:
        """We sent the 2xx to the INVITE that created this early dialog (UAS side)."""
        if self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED

    def terminate(self) -> None:
        self.state = DialogState.TERMINATED

    # -- responses we send --------------------------------------------------------------------------------
    def create_response(self, request: Request, status: int, reason: str | None = None, *, body: bytes = b"",
                        content_type: str | None = None,
                        extra_headers: Iterable[tuple[str, str]] = ()) -> Response:
        """Our response to a request in this dialog: our To tag, our Contact on a 2xx to a target refresh."""
        contact = self.local_contact if request.method in TARGET_REFRESH and status < 300 else None
        return dialog_response(request, status, self.local_tag, contact, reason=reason, body=body,
                               content_type=content_type, extra_headers=extra_headers)


# -- matching -------------------------------------------------------------------------------------------------

def dialog_key_for_request(request: Request, as_uas: bool = True) -> DialogKey | None:
    """The ID of the dialog a request belongs to, or None for a request outside any dialog (no To tag).

    ``as_uas``: we received the request, so our tag is in To (§12.2.2); False for a request we sent.
    """
    to_tag = request.to.tag
    if not to_tag:
        return None
    from_tag = _tag_of(request.from_)
    return (request.call_id, to_tag, from_tag) if as_uas else (request.call_id, from_tag, to_tag)


def dialog_key_for_response(response: Response) -> DialogKey:
    """The ID of the dialog, on our (the UAC's) side, that a response to our request belongs to."""
    return (response.call_id, _tag_of(response.from_), _tag_of(response.to))


# -- building -------------------------------------------------------------------------------------------------

def dialog_response(request: Request, status: int, local_tag: str, contact: NameAddr | str | None, *,
                    reason: str | None = None, body: bytes = b"", content_type: str | None = None,
                    extra_headers: Iterable[tuple[str, str]] = ()) -> Response:
    """A UAS response that creates or belongs to a dialog (§12.1.1, §8.2.6).

    Adds our To tag, copies every Record-Route value of the request in order for a 101–299 (§12.1.1:
    the route set the UAC will see) and our Contact when given (required in a 2xx to INVITE, §13.3.1.4).
    """
    headers: list[tuple[str, str]] = []
    if 101 <= status <= 299:
        headers += [("Record-Route", value) for value in request.headers.get_all("record-route")]
    if contact is not None:
        headers.append(("Contact", str(contact)))
    headers += list(extra_headers)
    if body:
        headers.append(("Content-Type", content_type or "application/sdp"))
    return make_response(request, status, reason, to_tag=local_tag, headers=headers, body=body)


def credentials_of(request: Request) -> list[tuple[str, str]]:
    """The Authorization and Proxy-Authorization fields of an INVITE, for its ACK to a 2xx (§13.2.2.4,
    §22.2–22.3: the ACK carries the credentials the INVITE carried)."""
    return [(name, value) for name, value in request.headers
            if name.lower() in ("authorization", "proxy-authorization")]


def add_top_via(request: Request, transport: str, host: str, port: int | None, *,
                branch: str | None = None) -> Request:
    """Put ``Via: SIP/2.0/{TRANSPORT} host:port;rport[;branch=…]`` on top of ``request`` (§8.1.1.7, RFC 3581).

    Without ``branch`` the transaction layer adds one in ``send_request``; an ACK for a 2xx needs one
    here (it is sent with ``send_stateless``). A branch without the magic cookie gets it prepended.
    """
    host = uri_host(host)
    sent_by = host if port is None else f"{host}:{port}"
    value = f"SIP/2.0/{transport.upper()} {sent_by};rport"
    if branch is not None:
        if not branch.startswith(MAGIC_COOKIE):
            branch = MAGIC_COOKIE + branch
        value += f";branch={branch}"
    request.headers.add("Via", value, first=True)
    request.invalidate()
    return request

