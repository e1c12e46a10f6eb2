"""The Replaces header (RFC 3891) and the URI headers that carry it in a REFER's Refer-To (RFC 3515 §2.1).

How it is used: in an attended transfer the transferor (B) has a call with the transferee (A) and a
consultation call with the target (C). It sends REFER on the first with
``Refer-To: <sip:C@host?Replaces=<call-id>%3Bto-tag%3D<tag>%3Bfrom-tag%3D<tag>>`` naming the second dialog;
the transferee is to call the target with ``Replaces``. A B2BUA holds both of B's dialogs itself, so it
finds the named dialog among its own and joins the two other parties without any new INVITE.

The tags are those of the dialog as its initiator wrote them (From tag = the side that sent the INVITE):
a receiver matches the pair against its own local/remote tags in either order.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from .errors import SipParseError
from .uri import SipUri

__all__ = ["Replaces", "parse_replaces", "replaces_of", "uri_headers"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Replaces:
    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False

    def dialog_keys(self) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
        """The dialog IDs (Call-ID, local tag, remote tag) this may name, seen from either side."""
        return (self.call_id, self.to_tag, self.from_tag), (self.call_id, self.from_tag, self.to_tag)


def parse_replaces(value: str) -> Replaces:
    """Parse a Replaces header value: ``callid *(;to-tag=x / ;from-tag=y / ;early-only / ;generic)``."""
    call_id, *params = (part.strip() for part in value.split(";"))
    if not call_id or any(c.isspace() for c in call_id):
        raise SipParseError("Replaces without a Call-ID", status=400)
    tags: dict[str, str] = {}
    early_only = False
    for param in params:
        name, _, pvalue = param.partition("=")
        name = name.strip().lower()
        if name in ("to-tag", "from-tag"):
            tags[name] = pvalue.strip()
        elif name == "early-only":
            early_only = True
    if not tags.get("to-tag") or not tags.get("from-tag"):
        raise SipParseError("Replaces needs both to-tag and from-tag (RFC 3891 §6.1)", status=400)
    return Replaces(call_id=call_id, to_tag=tags["to-tag"], from_tag=tags["from-tag"], early_only=early_only)


def uri_headers(uri: SipUri) -> dict[str, str]:
    """The ``?name=value&...`` headers of a SIP URI, names lower-cased, values %-decoded (RFC 3261 §19.1.1)."""
    if not uri.headers:
        return {}
    out: dict[str, str] = {}
    for item in uri.headers.split("&"):
        name, _, value = item.partition("=")
        if name:
            out[unquote(name).strip().lower()] = unquote(value)
    return out


def replaces_of(uri: SipUri) -> Replaces | None:
    """The Replaces a Refer-To URI carries, None when it has none; SipParseError when it is malformed."""
    value = uri_headers(uri).get("replaces")
    return None if value is None else parse_replaces(value)
