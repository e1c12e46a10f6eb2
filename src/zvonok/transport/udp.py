"""SIP over UDP (RFC 3261 §18): a thin asyncio adapter that feeds datagrams in and sends bytes out."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from zvonok.sip.peer import Peer

DatagramHandler = Callable[[bytes, Peer], None]


class UdpTransport(asyncio.DatagramProtocol):
    def __init__(self, handler: DatagramHandler) -> None:
        self._handler = handler
        self._transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's UDPTransport is no subclass
        self.local = transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._handler(data, Peer(transport="udp", host=str(addr[0]), port=addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable for an earlier sendto: nothing to do, the transaction times out
        pass

    def send(self, data: bytes, peer: Peer) -> None:
        if self._transport is not None:
            self._transport.sendto(data, (peer.host, peer.port))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


RECEIVE_BUFFER = 8 * 1024 * 1024  # absorbs bursts (thousands of REGISTERs at once) while the loop is busy


async def open_udp(host: str, port: int, handler: DatagramHandler) -> UdpTransport:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if option is None:
                continue
            try:  # FORCE passes the rmem_max cap when we run as root; otherwise the capped size is taken
                sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
                break
            except OSError:
                continue
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    _, protocol = await loop.create_datagram_endpoint(lambda: UdpTransport(handler), sock=sock)
    return protocol
