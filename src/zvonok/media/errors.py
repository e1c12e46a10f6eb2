"""Typed media errors, in the two families of :mod:`zvonok.sip.errors`: the peer's fault vs our misuse."""

from __future__ import annotations


class MediaError(Exception):
    """Base of all errors raised by :mod:`zvonok.media`."""


class PacketError(MediaError, ValueError):
    """A peer sent a malformed RTP/RTCP packet or event payload (dropped, never answered)."""


class MediaUsageError(MediaError):
    """We called the media API wrongly: unknown or released endpoint, codec not offered, … (a bug)."""


class PortsExhausted(MediaError):
    """No free even/odd RTP/RTCP port pair is left in the configured range (answer the call with 503)."""
