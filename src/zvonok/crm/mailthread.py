"""Threading headers of a reply (RFC 5322 §3.6.4 and §3.6.5). No I/O: values in, values out.

How it works: a reply's ``In-Reply-To`` is the parent's Message-ID; its ``References`` are the parent's
References (or, when it has none, its In-Reply-To if that names a single message) followed by the
parent's Message-ID. A long thread keeps the first id (the thread's root, which mail clients thread by)
and the newest ones, at most :data:`MAX_REFERENCES`, so the header stays a sensible size. The subject
gets one ``Re: `` (RFC 5322 §3.6.5: "Re: " is the reply's marker, not repeated): the parent's own
``Re:`` / ``RE:`` / ``Re[2]:`` / ``Ответ:`` prefixes are taken off first, so a long exchange never reads
"Re: Re: Re:". :func:`quoted` writes the parent's text below the answer, each line marked with ``> ``
(RFC 3676 §4.5), as mail clients do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_REFERENCES = 20
MAX_SUBJECT = 500
# any run of reply markers: "Re:", "RE :", "re[2]:", "Re(3):", and "Ответ:" of Russian mail clients
_REPLY_PREFIX = re.compile(r"^(?:\s*(?:re|ответ)\s*(?:\[\d+\]|\(\d+\))?\s*:)+\s*", re.IGNORECASE)
_MSGID = re.compile(r"<[^<>\s]{1,250}>")


def reply_subject(subject: str) -> str:
    """``Re: `` and the parent's subject without its own reply markers."""
    bare = _REPLY_PREFIX.sub("", " ".join(subject.split()))
    return ("Re: " + bare)[:MAX_SUBJECT] if bare else "Re:"


def message_ids(value: str | None) -> list[str]:
    """The ``<id>`` tokens of a header value or a stored space-separated list, in order, without repeats."""
    return list(dict.fromkeys(_MSGID.findall(value or "")))


def parent_references(references: Iterable[str], in_reply_to: Iterable[str]) -> list[str]:
    """What a message carries on to its replies: its References, else its In-Reply-To if that is one id."""
    refs = list(dict.fromkeys(references))
    if refs:
        return refs
    parents = list(dict.fromkeys(in_reply_to))
    return parents if len(parents) == 1 else []


def reply_references(parent_refs: Iterable[str], parent_id: str | None) -> list[str]:
    """A reply's References: the parent's, then the parent's Message-ID; the root and the newest kept."""
    refs = [r for r in dict.fromkeys(parent_refs) if r != parent_id]
    if parent_id:
        refs.append(parent_id)
    return trimmed(refs)


def trimmed(refs: list[str]) -> list[str]:
    """At most MAX_REFERENCES ids: the first (the thread's root) and the newest."""
    return refs[:1] + refs[-(MAX_REFERENCES - 1) :] if len(refs) > MAX_REFERENCES else refs


def quoted(text: str, attribution: str) -> str:
    """The parent's text quoted under an attribution line ("On ..., ... wrote:", in the writer's language),
    with an empty line above it for the answer."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    body = "\n".join(">" + line if line.startswith(">") else "> " + line if line else ">" for line in lines)
    return f"\n\n{attribution}\n{body}\n"
