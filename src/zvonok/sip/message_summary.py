"""The ``application/simple-message-summary`` body of the ``message-summary`` event package (RFC 3842):
message-waiting indication (MWI), how a phone learns that its mailbox holds new messages.

Grammar (RFC 3842 §5.2), one field per line, CRLF-separated::

    Messages-Waiting: yes
    Message-Account: sip:101@acme.example
    Voice-Message: 2/8 (0/2)

``Messages-Waiting`` is required (``yes`` when there is at least one new message); ``Message-Account``
optional; then one line per message class (``Voice-Message``, ``Fax-Message`` …) with
``new/old`` and optionally ``(new-urgent/old-urgent)``. A parser must ignore lines it does not know
(§5.2 leaves room for extension headers and message bodies after a blank line). Sans-I/O: bytes in and
out, nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import SipParseError

__all__ = ["CONTENT_TYPE", "EVENT", "MessageCounts", "MessageSummary", "build_summary", "parse_summary"]

CONTENT_TYPE = "application/simple-message-summary"
EVENT = "message-summary"
_CLASS = re.compile(rb"^([A-Za-z-]+-Message)\s*:\s*(\d+)\s*/\s*(\d+)(?:\s*\(\s*(\d+)\s*/\s*(\d+)\s*\))?\s*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageCounts:
    new: int = 0
    old: int = 0
    new_urgent: int = 0
    old_urgent: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSummary:
    waiting: bool
    account: str | None = None
    classes: dict[str, MessageCounts] = field(default_factory=dict)  # "Voice-Message" -> counts

    @classmethod
    def voice(cls, new: int, old: int, account: str | None = None) -> MessageSummary:
        return cls(waiting=new > 0, account=account, classes={"Voice-Message": MessageCounts(new=new, old=old)})


def build_summary(summary: MessageSummary) -> bytes:
    lines = [b"Messages-Waiting: " + (b"yes" if summary.waiting else b"no")]
    if summary.account:
        lines.append(b"Message-Account: " + summary.account.encode())
    for name, c in summary.classes.items():
        line = f"{name}: {c.new}/{c.old}"
        if c.new_urgent or c.old_urgent:
            line += f" ({c.new_urgent}/{c.old_urgent})"
        lines.append(line.encode())
    return b"\r\n".join(lines) + b"\r\n"


def parse_summary(body: bytes) -> MessageSummary:
    """A message-summary body; :class:`SipParseError` (400) without a valid ``Messages-Waiting``."""
    waiting: bool | None = None
    account: str | None = None
    classes: dict[str, MessageCounts] = {}
    for raw in body.replace(b"\r\n", b"\n").split(b"\n"):
        line = raw.strip()
        if not line:
            if waiting is not None:
                break  # what follows a blank line is message headers (§5.2), not the summary
            continue
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"messages-waiting":
            flag = value.strip().lower()
            if flag not in (b"yes", b"no"):
                raise SipParseError(f"Messages-Waiting: {flag!r} is neither yes nor no", status=400)
            waiting = flag == b"yes"
        elif key == b"message-account":
            account = value.strip().decode("utf-8", "replace")
        else:
            match = _CLASS.match(line)
            if match is not None:
                urgent = (int(match[4]), int(match[5])) if match[4] is not None else (0, 0)
                classes[match[1].decode()] = MessageCounts(new=int(match[2]), old=int(match[3]),
                                                            new_urgent=urgent[0], old_urgent=urgent[1])
    if waiting is None:
        raise SipParseError("no Messages-Waiting line", status=400)
    return MessageSummary(waiting=waiting, account=account, classes=classes)
