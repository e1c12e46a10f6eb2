"""The requests a call leg builds itself: its initial INVITE (RFC 3261 §8.1.1, §13.2.1) and that INVITE
again with credentials after a 401/407 (§22.2), and the small record of that INVITE a dialog keeps once set
up (:func:`invite_record`). Requests in the dialog come from :class:`~zvonok.sip.dialog.Dialog`.
"""

from __future__ import annotations

from collections.abc import Iterable

from zvonok.sip.headers import header_key
from zvonok.sip.message import Headers, Request

from .leg_events import LegConfig

__all__ = ["ALLOW", "initial_invite", "invite_record", "with_credentials"]

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, NOTIFY, REFER"


def initial_invite(config: LegConfig, *, tag: str, cseq: int, request_uri: str, from_uri: str, to_uri: str,
                   call_id: str, extra_headers: Iterable[tuple[str, str]] = (), from_name_addr: str | None = None,
                   to_name_addr: str | None = None) -> Request:
    """Our INVITE without Via and body (the leg adds the offer and the Via when it sends it); with a
    session timer asked for when ``config.session_expires`` is set (RFC 4028 §7.1).

    ``from_name_addr``/``to_name_addr``: the From and To fields (without the tag) when the caller wrote
    them itself — a display name, a user part escaped as it came (§20.20, §20.39); else ``<from_uri>``
    and ``<to_uri>``."""
    from_field = from_name_addr or f"<{from_uri}>"
    to_field = to_name_addr or f"<{to_uri}>"
    headers = Headers()
    for name, value in (("Max-Forwards", "70"), ("From", f"{from_field};tag={tag}"), ("To", to_field),
                        ("Call-ID", call_id), ("CSeq", f"{cseq} INVITE"), ("Contact", config.contact),
                        ("Allow", ALLOW), *extra_headers):
        headers.add(name, value)
    if config.session_expires is not None:
        headers.add("Supported", "timer")
        headers.add("Session-Expires", str(config.session_expires))
        headers.add("Min-SE", str(config.min_se))
    return Request("INVITE", request_uri, headers)


def with_credentials(invite: Request, credentials: Iterable[tuple[str, str]]) -> Request:
    """The INVITE again for a 401/407 (§22.2): same Call-ID, tags and body, the next CSeq, no Via (a new
    transaction, a new branch), the old credentials replaced by ``credentials``."""
    cseq = invite.cseq.number + 1
    headers = Headers()
    for name, value in invite.headers:
        key = name.lower()
        if key in ("via", "authorization", "proxy-authorization", "content-length"):
            continue
        headers.add(name, f"{cseq} INVITE" if key == "cseq" else value)
    for name, value in credentials:
        headers.add(name, value)
    return Request("INVITE", invite.uri_text, headers, invite.body)


# what an established dialog still reads of its INVITE: Call-ID, tags and CSeq (matching responses, a 2xx from
# another fork: Dialog.from_uac), the Contact (the engine reports it); of our own INVITE its credentials too,
# which every ACK we send repeats (§22.2)
_RECORDED = frozenset({"call-id", "from", "to", "cseq", "contact"})
_WITH_CREDENTIALS = _RECORDED | {"authorization", "proxy-authorization"}


def invite_record(invite: Request, *, credentials: bool) -> Request:
    """The INVITE as an established dialog keeps it: the Request-URI and the fields in ``_RECORDED`` (with
    the credentials for ``credentials``: an INVITE we sent); no Via, no body, none of the received bytes or
    parsed views (issue 9: the whole INVITE held for the call's life was ≈ 2 KB per leg). The same header
    tuples and strings, not copies."""
    keep = _WITH_CREDENTIALS if credentials else _RECORDED
    kept = [field for field in invite.headers if header_key(field[0]) in keep]
    return Request("INVITE", invite.uri_text, Headers(kept))
