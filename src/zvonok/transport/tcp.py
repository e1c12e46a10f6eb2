"""SIP over TCP (RFC 3261 §18): connections, Content-Length framing, connection reuse for responses.

Each accepted connection gets a number; a message received on it carries that number in its
:class:`Peer`, and anything sent to such a peer goes back on the same connection (§18.2.2). A framing
error (bad Content-Length, oversized message) closes the connection: the stream cannot be resynchronised
(RFC 4475 §3.1.2.3, §3.3.9). Connections beyond a per-address or per-/48 cap are closed as soon as
they are accepted; at the overall cap the oldest connection not yet trusted (see
:meth:`TcpTransport.trust`) is closed to make room, the newcomer only when every connection is trusted.
One sweep closes those whose deadline passed (idle, a message begun but not finished, no message at
all: see :mod:`zvonok.transport.limits`). A later TLS or WebSocket transport
produces the same (message or error, Peer) pairs, so nothing above changes: SIP over TLS (RFC 3261
§26.2, :mod:`.tls`) is this same transport given an SSL context (its peers say ``tls``).

Connections are also opened *to* a peer when something is to be sent and none is open, but only to the
peers :attr:`TcpTransport.dialer` names (trunks: a carrier is reached on its own TCP or TLS port; a phone
is reached only on the connection it keeps to us). The messages sent meanwhile wait for the connection; a
connection that cannot be opened drops them, and the transaction's timer reports the failure. A TLS
connection we open verifies the carrier's certificate as :class:`Dial` says, with SNI = the trunk's host.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from ssl import SSLContext

from zvonok import metrics
from zvonok.logs import get_logger
from zvonok.sip.errors import SipParseError
from zvonok.sip.message import Request, Response, StreamFramer
from zvonok.sip.peer import Peer
from zvonok.transport.limits import ConnectionTable, StreamDeadlines

log = get_logger(__name__)

StreamHandler = Callable[[Request | Response | SipParseError, bytes, Peer], None]


@dataclass(frozen=True, kw_only=True)
class Dial:
    """How to open a connection to a peer we may connect to: ``ssl`` (TLS only) is the client context
    (verifying or not), ``server_hostname`` the name sent as SNI and checked against the certificate."""

    ssl: SSLContext | None = None
    server_hostname: str | None = None


Dialer = Callable[[Peer], "Dial | None"]
MAX_PENDING = 64  # messages held per peer while its connection opens
_ids = itertools.count(1)


@dataclass(frozen=True, kw_only=True)
class TcpLimits:
    """The caps and deadlines of the listener (their defaults and meaning: ``zvonok.config.Settings.sip_tcp_*``)."""

    max_connections: int
    max_per_address: int
    idle_timeout: float
    message_timeout: float
    first_message_timeout: float


class TcpConnection(asyncio.Protocol):
    def __init__(self, server: TcpTransport) -> None:
        self.server = server
        self.id = next(_ids)
        self.framer = StreamFramer(server.max_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.deadlines: StreamDeadlines | None = None  # None: not counted (refused, or evicted)
        self.outbound = False  # we opened it (to a trunk): trusted from the start

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is no subclass
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer(transport=self.server.name, host=host, port=port, connection=self.id)
        if not self.server.table.admit(host, self):
            # closed at once, before reading a byte: the descriptor is back within this callback
            metrics.child(metrics.CONNECTIONS_CLOSED, "sip", "refused").inc()
            log.debug("sip connection refused: connection cap", peer=str(self.peer))
            transport.abort()  # type: ignore[attr-defined]
            return
        limits = self.server.limits
        self.deadlines = StreamDeadlines(asyncio.get_running_loop().time(), idle=limits.idle_timeout,
                                         message=limits.message_timeout, first=limits.first_message_timeout)
        self.server.connections[self.id] = self
        if self.outbound:
            self.server.table.trust(self)

    def data_received(self, data: bytes) -> None:
        if self.deadlines is None:
            return  # refused, closing
        assert self.peer is not None and self.transport is not None
        try:
            items = self.framer.feed(data)
        except SipParseError as exc:
            log.info("closing sip connection after framing error", peer=str(self.peer), error=exc.reason)
            self.transport.close()
            return
        self.deadlines.on_data(asyncio.get_running_loop().time(), buffered=self.framer.buffered,
                               completed=len(items) + self.framer.pongs,
                               valid=any(not isinstance(item, SipParseError) for item, _ in items))
        if self.framer.pongs:
            self.transport.write(b"\r\n" * self.framer.pongs)  # RFC 5626 §4.4.1 keep-alive pong
            self.framer.pongs = 0
        for item, raw in items:
            self.server.handler(item, raw, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadlines is not None and self.peer is not None:
            self.server.table.release(self.peer.host, self)
        self.server.connections.pop(self.id, None)

    def evict(self) -> None:
        """Closed for a newcomer at the overall cap; the table has already released this slot."""
        self.deadlines = None
        metrics.child(metrics.CONNECTIONS_CLOSED, "sip", "evicted").inc()
        log.debug("sip connection evicted for a newcomer", peer=str(self.peer))
        if self.transport is not None:
            self.transport.abort()

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class TcpTransport:
    """A listening TCP socket and its connections; with ``ssl``, SIP over TLS (the peers' transport ``tls``)."""

    def __init__(self, handler: StreamHandler, max_size: int, limits: TcpLimits, *,
                 ssl: SSLContext | None = None) -> None:
        self.ssl = ssl
        self.name = "tls" if ssl is not None else "tcp"
        self.handler = handler
        self.max_size = max_size
        self.limits = limits
        self.table = ConnectionTable(self.limits.max_connections, self.limits.max_per_address)
        self.connections: dict[int, TcpConnection] = {}
        self._server: asyncio.Server | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.local: tuple[str, int] = ("", 0)
        self.dialer: Dialer | None = None  # which peers we may connect to, and how
        self._pending: dict[tuple[str, int], list[bytes]] = {}  # messages waiting for a connection we open
        self._dials: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: TcpConnection(self), host, port, reuse_address=True,
                                                ssl=self.ssl)
        self.local = self._server.sockets[0].getsockname()[:2]
        self._reaper = asyncio.create_task(self._reap())

    async def _reap(self) -> None:
        """One sweep for every connection's deadlines: a few thousand comparisons a second cost less than
        a timer handle per connection re-armed on every segment."""
        limits = self.limits
        tick = max(0.05, min(1.0, limits.message_timeout / 4, limits.first_message_timeout / 4,
                             limits.idle_timeout / 4))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for conn in list(self.connections.values()):
                reason = conn.deadlines.expired(now) if conn.deadlines is not None else None
                if reason is not None and conn.transport is not None and not conn.transport.is_closing():
                    metrics.child(metrics.CONNECTIONS_CLOSED, "sip", reason).inc()
                    log.debug("closing sip connection", peer=str(conn.peer), reason=reason)
                    conn.transport.close()

    def trust(self, peer: Peer) -> None:
        """The connection ``peer`` came on carried an authenticated request: never evict it for a newcomer."""
        conn = self.connections.get(peer.connection) if peer.connection is not None else None
        if conn is not None and conn.deadlines is not None:
            self.table.trust(conn)

    def send(self, data: bytes, peer: Peer) -> bool:
        """Send on the connection the peer used; False when it is gone (the caller may reconnect)."""
        conn = self.connections.get(peer.connection) if peer.connection is not None else None
        if conn is None:
            for candidate in self.connections.values():  # the device's open connection to us (NAT)
                if candidate.peer is not None and (candidate.peer.host, candidate.peer.port) == (peer.host, peer.port):
                    conn = candidate
                    break
        if conn is None:
            return self._dial(data, peer)
        conn.send(data)
        return True

    def _dial(self, data: bytes, peer: Peer) -> bool:
        key = (peer.host, peer.port)
        waiting = self._pending.get(key)
        if waiting is not None:
            if len(waiting) < MAX_PENDING:
                waiting.append(data)
            return True
        how = self.dialer(peer) if self.dialer is not None else None
        if how is None or (self.ssl is not None and how.ssl is None):
            return False
        self._pending[key] = [data]
        task = asyncio.ensure_future(self._connect(key, how))
        self._dials.add(task)
        task.add_done_callback(self._dials.discard)
        return True

    async def _connect(self, key: tuple[str, int], how: Dial) -> None:
        loop = asyncio.get_running_loop()

        def made() -> TcpConnection:
            conn = TcpConnection(self)
            conn.outbound = True
            return conn

        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                made, key[0], key[1], ssl=how.ssl,
                server_hostname=how.server_hostname if how.ssl is not None else None), timeout=10.0)
        except (TimeoutError, OSError) as exc:  # ssl.SSLError (a certificate refused) is an OSError
            dropped = self._pending.pop(key, [])
            metrics.child(metrics.CONNECTIONS_CLOSED, "sip", "connect_failed").inc()
            log.warning("sip connection could not be opened", transport=self.name, host=key[0], port=key[1],
                        error=str(exc) or type(exc).__name__, dropped=len(dropped))
            return
        for data in self._pending.pop(key, []):
            conn.send(data)

    async def close(self) -> None:
        for task in list(self._dials):
            task.cancel()
        if self._reaper is not None:
            self._reaper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
