"""DTMF in SIP INFO bodies, as desk phones send them when set to "SIP INFO" (no RFC standard).

Two body types are in use (both informally specified by vendors, e.g. Cisco's and Polycom's docs):

* ``application/dtmf-relay``: lines ``Signal=5`` and ``Duration=160`` (ms); some phones write
  ``Signal= 5`` or lower-case keys, and ``Signal=10``/``11`` for ``*``/``#``;
* ``application/dtmf``: the key alone (``5``, ``*``, ``#``), or its RFC 4733 event code (``10``, ``11``).

:func:`parse_dtmf_info` gives the key, or None for a body that carries none (the INFO is still answered
200: the phone has nothing to retry).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DTMF_INFO_TYPES", "InfoDigit", "parse_dtmf_info"]

DTMF_INFO_TYPES = frozenset({"application/dtmf-relay", "application/dtmf"})
_DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2 event codes 0-15
DEFAULT_DURATION_MS = 160


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoDigit:
    digit: str
    duration_ms: int = DEFAULT_DURATION_MS


def _key(text: str) -> str | None:
    value = text.strip().upper()
    if len(value) == 1 and value in _DIGITS:
        return value
    if value.isdigit() and int(value) < len(_DIGITS):
        return _DIGITS[int(value)]
    return None


def parse_dtmf_info(content_type: str, body: bytes) -> InfoDigit | None:
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype not in DTMF_INFO_TYPES:
        return None
    try:
        text = body.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    if ctype == "application/dtmf":
        digit = _key(text)
        return InfoDigit(digit=digit) if digit is not None else None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    digit = _key(fields.get("signal", ""))
    if digit is None:
        return None
    duration = fields.get("duration", "")
    ms = int(duration) if duration.isdigit() and 0 < int(duration) < 60_000 else DEFAULT_DURATION_MS
    return InfoDigit(digit=digit, duration_ms=ms)
