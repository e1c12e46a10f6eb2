"""Typed SIP errors.

Two families, as in h11: :class:`SipParseError` is the peer's fault and names the response it implies
(400, 416, 505 …); :class:`SipUsageError` is our own misuse of the API (a bug, never answered on the wire).
"""

from __future__ import annotations


class SipError(Exception):
    """Base of all errors raised by :mod:`zvonok.sip`."""


class SipParseError(SipError):
    """The peer sent something we cannot accept; ``status`` is the response it implies.

    ``partial`` is whatever could be parsed (a request's raw headers), so the transport can still answer
    a malformed request statelessly (RFC 3261 §8.2.6) instead of dropping it.
    """

    def __init__(self, reason: str, status: int = 400, partial: object | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.partial = partial


class FramingError(SipParseError):
    """The message boundaries cannot be trusted (bad Content-Length): on a stream, close the connection."""


class SipUsageError(SipError):
    """We called the API wrongly (a bug in our code, not the peer's)."""
