"""Fetched e-mail -> what the timeline keeps, and which client it belongs to. No I/O: bytes in, values out.

How it works: :func:`parse` reads a message (RFC 5322, MIME; stdlib ``email`` with ``policy.default``,
which decodes RFC 2047 encoded words and transfer encodings) into an :class:`Inbound`: the sender's
address in lower case, the Message-ID and the ids it answers (In-Reply-To, then References, RFC 5322
§3.6.4), the subject, the Date, and the text: the text/plain part of a multipart/alternative if there is
one, else the HTML part stripped to text (:func:`html_to_text`), cut at ``max_body`` characters.
:func:`match` then names the client: a reply to one of our messages belongs to that message's client
(the conversation outranks the address, which may be a shared one), else the client one of whose
e-mails is the sender; else nobody, and the message is not logged.

A message's raw bytes may have been cut by the fetch (the poller reads a bounded prefix): a cut MIME
tree still parses (the missing closing boundary is a defect, not an error), so the text part that came
first is kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser

from .mailthread import parent_references, trimmed

MAX_BODY = 20_000  # characters of text kept per message
MAX_SUBJECT = 500
_MSGID = re.compile(r"<[^<>\s]{1,250}>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Inbound:
    from_addr: str  # lower case; "" when the message names no usable sender
    to_addr: str
    message_id: str | None  # with the angle brackets
    replies_to: tuple[str, ...]  # In-Reply-To first, then References newest first
    subject: str
    date: datetime | None
    text: str
    # what a reply to it carries on in its References (mailthread.parent_references), in order
    references: tuple[str, ...] = ()


def _one_line(value: str, limit: int) -> str:
    return " ".join(_CONTROL.sub(" ", value).split())[:limit]


def _address(msg: EmailMessage, header: str) -> str:
    try:
        values = msg.get_all(header) or []
        pairs = getaddresses([str(v) for v in values])
    except (ValueError, TypeError, IndexError):  # a header the parser could not make sense of
        return ""
    for _name, addr in pairs:
        if "@" in addr and len(addr) <= 254:
            return addr.strip().lower()
    return ""


def _ids(value: object) -> list[str]:
    return _MSGID.findall(str(value)) if value is not None else []


def _date(msg: EmailMessage) -> datetime | None:
    raw = msg.get("date")
    if raw is None:
        return None
    try:
        when = parsedate_to_datetime(str(raw))
    except (TypeError, ValueError, IndexError):
        return None
    return when.astimezone(UTC) if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _text_of(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # an unknown charset, a broken transfer encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def body_text(msg: EmailMessage, max_body: int = MAX_BODY) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    if not isinstance(part, EmailMessage):
        return ""
    text = _text_of(part)
    if part.get_content_subtype() == "html":
        text = html_to_text(text)
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _BLANK_LINES.sub("\n\n", text).strip()
    return text[:max_body]


def parse(raw: bytes, *, max_body: int = MAX_BODY) -> Inbound:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)  # policy.default's message class
    ids = _ids(msg.get("message-id"))
    in_reply_to, references = _ids(msg.get("in-reply-to")), _ids(msg.get("references"))
    replies = in_reply_to + list(reversed(references))
    replies_to = tuple(dict.fromkeys(replies))  # without repeats, in order
    try:
        subject = str(msg.get("subject") or "")
    except (ValueError, TypeError, IndexError):
        subject = ""
    return Inbound(from_addr=_address(msg, "from"), to_addr=_address(msg, "to"),
                   message_id=ids[0] if ids else None, replies_to=replies_to[:50],
                   subject=_one_line(subject, MAX_SUBJECT), date=_date(msg), text=body_text(msg, max_body),
                   references=tuple(trimmed(parent_references(references, in_reply_to))))


def match(mail: Inbound, ours: Mapping[str, int], clients_by_address: Mapping[str, int]) -> int | None:
    """The client of a fetched message: by the conversation (one of ``ours``, our Message-IDs -> their
    client, is in In-Reply-To/References), else by the sender's address (lower case -> client)."""
    for msgid in mail.replies_to:
        if msgid in ours:
            return ours[msgid]
    return clients_by_address.get(mail.from_addr) if mail.from_addr else None


class _Text(HTMLParser):
    _BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
                        "table", "ul", "ol", "hr"})
    _SKIP = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skipping += 1
        elif tag in self._BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self._BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(data)


def html_to_text(html: str) -> str:
    """Readable text of an HTML mail: tags dropped, scripts and styles skipped, entities decoded, one
    line per block, runs of spaces folded."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.out).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
