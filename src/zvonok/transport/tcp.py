"""SIP over TCP (RFC 3261 §18): connections, Content-Length framing, connection reuse for responses.

Each accepted connection gets a number; a message received on it carries that number in its
:class:`Peer`, and anything sent to such a peer goes back on the same connection (§18.2.2). A framing
error (bad Content-Length, oversized message) closes the connection: the stream cannot be resynchronised
(RFC 4475 §3.1.2.3, §3.3.9). Idle connections are closed after a timeout. A later TLS or WebSocket
transport produces the same (message or error, Peer) pairs, so nothing above changes: SIP over TLS
(RFC 3261 §26.2, :mod:`.tls`) is this same transport given an SSL context (its peers say ``tls``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from ssl import SSLContext

from zvonok.logs import get_logger
from zvonok.sip.errors import SipParseError
from zvonok.sip.message import Request, Response, StreamFramer
from zvonok.sip.peer import Peer

log = get_logger(__name__)

StreamHandler = Callable[[Request | Response | SipParseError, bytes, Peer], None]
_ids = itertools.count(1)


class TcpConnection(asyncio.Protocol):
    def __init__(self, server: TcpTransport) -> None:
        self.server = server
        self.id = next(_ids)
        self.framer = StreamFramer(server.max_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.last_activity = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is no subclass
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer(transport=self.server.name, host=host, port=port, connection=self.id)
        self.server.connections[self.id] = self
        self.last_activity = asyncio.get_running_loop().time()

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None and self.transport is not None
        self.last_activity = asyncio.get_running_loop().time()
        try:
            items = self.framer.feed(data)
        except SipParseError as exc:
            log.info("closing sip connection after framing error", peer=str(self.peer), error=exc.reason)
            self.transport.close()
            return
        if self.framer.pongs:
            self.transport.write(b"\r\n" * self.framer.pongs)  # RFC 5626 §4.4.1 keep-alive pong
            self.framer.pongs = 0
        for item, raw in items:
            self.server.handler(item, raw, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.pop(self.id, None)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class TcpTransport:
    """A listening TCP socket and its connections; with ``ssl``, SIP over TLS (the peers' transport ``tls``)."""

    def __init__(self, handler: StreamHandler, max_size: int = 65535, idle_timeout: float = 300.0, *,
                 ssl: SSLContext | None = None) -> None:
        self.ssl = ssl
        self.name = "tls" if ssl is not None else "tcp"
        self.handler = handler
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self.connections: dict[int, TcpConnection] = {}
        self._server: asyncio.Server | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.local: tuple[str, int] = ("", 0)

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: TcpConnection(self), host, port, reuse_address=True,
                                                ssl=self.ssl)
        self.local = self._server.sockets[0].getsockname()[:2]
        self._reaper = asyncio.create_task(self._reap_idle())

    async def _reap_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(30.0, self.idle_timeout / 2))
            limit = loop.time() - self.idle_timeout
            for conn in list(self.connections.values()):
                if conn.last_activity < limit and conn.transport is not None:
                    conn.transport.close()

    def send(self, data: bytes, peer: Peer) -> bool:
        """Send on the connection the peer used; False when it is gone (the caller may reconnect)."""
        conn = self.connections.get(peer.connection) if peer.connection is not None else None
        if conn is None:
            for candidate in self.connections.values():  # the device's open connection to us (NAT)
                if candidate.peer is not None and (candidate.peer.host, candidate.peer.port) == (peer.host, peer.port):
                    conn = candidate
                    break
        if conn is None:
            return False
        conn.send(data)
        return True

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
