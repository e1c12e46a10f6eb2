"""Where a message came from or goes to: the transport and the address (RFC 3261 §18)."""

from __future__ import annotations

from dataclasses import dataclass

from .grammar import uri_host

RELIABLE_TRANSPORTS = frozenset({"tcp", "tls", "ws", "wss"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """A remote SIP address as seen by a transport.

    ``transport`` is lower case (``udp``, ``tcp``, ``tls``, ``ws``, ``wss``); ``connection`` identifies the
    stream connection a message arrived on, so that responses reuse it (§18.2.2), and is None for UDP.
    """

    transport: str
    host: str
    port: int
    connection: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE_TRANSPORTS

    def __str__(self) -> str:
        return f"{self.transport}:{uri_host(self.host)}:{self.port}"
