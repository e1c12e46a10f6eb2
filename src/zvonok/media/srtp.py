"""SRTP on one endpoint (RFC 3711, libsrtp through ``pylibsrtp``), keyed by SDES (RFC 4568).

How it works: an endpoint whose leg negotiated SRTP gets two libsrtp sessions — ``tx`` with our master
key (any SSRC we send: the continuity rewriter's), ``rx`` with the peer's (any SSRC it sends). The engine
puts :class:`SrtpSender` in place of the leg's socket transport, so every path that sends to the peer
(relay fast path, transcoded relay, playback) is protected without knowing it, and
:class:`SrtpReceiver` in front of the leg's protocol, so the leg sees plain RTP. A plain endpoint has
neither: the relay of plain calls runs exactly as before. The B2BUA terminates SRTP per leg: one leg
may be SRTP while its peer is plain RTP.

RTCP on an SRTP leg is SRTCP (RFC 3711 §3.4), with the same sessions: :class:`SrtcpReceiver` in front of
the leg's RTCP protocol drops what fails authentication or replay checks (so forged reports never count)
and hands on plain RTCP; :class:`SrtcpSender` in place of the leg's RTCP transport encrypts and appends the
E flag, the 31-bit SRTCP index and the tag to anything sent there. The engine sends no RTCP of its own
today (it reads the peer's reports) and relays none from the other leg, so an SRTP leg never carries
plain RTCP; the sender is there so that no future report can go out in the clear.

``allow_repeat_tx``: the relay may send one index twice (a peer's duplicate passed through unchanged);
libsrtp would refuse it as a replay of our own stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

__all__ = ["SrtcpReceiver", "SrtcpSender", "SrtpError", "SrtpKeys", "SrtpReceiver", "SrtpSender", "rx_session",
           "tx_session"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SrtpKeys:
    """AES_CM_128_HMAC_SHA1_80 master key || salt (30 bytes) of each direction of one leg."""

    local: bytes  # ours: we protect what we send with it (it went to the peer in our a=crypto)
    remote: bytes  # the peer's: it protects what it sends with it (from its a=crypto)


def tx_session(key: bytes) -> Session:
    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    policy.allow_repeat_tx = True
    return Session(policy)


def rx_session(key: bytes) -> Session:
    return Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND,
                          srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80))


class SrtpSender:
    """The leg's datagram transport, protecting every RTP packet sent through it."""

    __slots__ = ("inner", "protect")

    def __init__(self, inner: Any, session: Session) -> None:
        self.inner = inner
        self.protect = session.protect

    def sendto(self, data: bytes | bytearray, addr: Any) -> None:
        try:
            self.inner.sendto(self.protect(bytes(data)), addr)
        except SrtpError:
            pass  # a packet libsrtp refuses (malformed header) is dropped, as the relay drops bad ones

    def __getattr__(self, name: str) -> Any:  # close(), is_closing(), get_extra_info() …
        return getattr(self.inner, name)


class SrtpReceiver:
    """The protocol of an SRTP leg's socket: unprotects, then hands plain RTP to the leg.

    Packets failing authentication or replay checks are dropped, as a forged source is by latching.
    """

    __slots__ = ("leg", "unprotect", "failed")

    def __init__(self, leg: Any, session: Session) -> None:
        self.leg = leg
        self.unprotect = session.unprotect
        self.failed = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            plain = self.unprotect(data)
        except SrtpError:
            self.failed += 1
            return
        self.leg.datagram_received(plain, addr)

    def connection_made(self, transport: Any) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.leg.connection_lost(exc)

    def error_received(self, exc: Exception) -> None:
        pass


class SrtcpSender:
    """The leg's RTCP datagram transport, protecting every RTCP packet sent through it (§3.4)."""

    __slots__ = ("inner", "protect")

    def __init__(self, inner: Any, session: Session) -> None:
        self.inner = inner
        self.protect = session.protect_rtcp

    def sendto(self, data: bytes | bytearray, addr: Any) -> None:
        try:
            self.inner.sendto(self.protect(bytes(data)), addr)
        except SrtpError:
            pass  # never the plain packet instead

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SrtcpReceiver:
    """The protocol of an SRTP leg's RTCP socket: unprotects, then hands plain RTCP to the leg's RTCP
    protocol; what fails authentication (or is a replay) is dropped and counted."""

    __slots__ = ("inner", "unprotect", "failed")

    def __init__(self, inner: Any, session: Session) -> None:
        self.inner = inner
        self.unprotect = session.unprotect_rtcp
        self.failed = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            plain = self.unprotect(data)
        except SrtpError:
            self.failed += 1
            return
        self.inner.datagram_received(plain, addr)

    def connection_made(self, transport: Any) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def error_received(self, exc: Exception) -> None:
        pass
