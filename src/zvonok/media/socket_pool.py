"""A pool of bound, idle RTP/RTCP socket pairs, reused across calls instead of opened and closed per call.

Why: at a few hundred calls per second, two endpoints per call, opening an endpoint (two ``socket()``,
two ``bind()``, two ``create_datagram_endpoint``) and closing it again was the largest single cost of a
call set-up in the profile (issue 9). A released pair is parked here instead: its transports stay open on
the event loop with :class:`_Parked` as their protocol (dropping whatever arrives), and the next endpoint
takes it over with one ``set_protocol`` per socket.

Quarantine (why a pair is not reused at once): the previous call's peer may go on sending RTP for a moment
after its BYE. Were the pair handed to a new call straight away, that stray stream could pass the new
leg's latching probation and steal its media (the RTP-bleed the engine's latching guards against). So a
parked pair is taken only once it has been quiet — nothing received and no release — for ``quarantine``
seconds; a pair that keeps receiving goes to the back of the queue. When no fresh port is left in the
range the engine takes the oldest pair anyway (``force``): what a closed-and-rebound port would do too.

At most ``max_idle`` pairs are parked; beyond that the oldest is closed and its port returns to the range.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

MAX_ROTATIONS = 4  # noisy pairs moved to the back per take, so one take stays O(1)


class _Parked(asyncio.DatagramProtocol):
    """The protocol of an idle socket: drops what arrives, remembers when (for the quarantine)."""

    __slots__ = ("closed", "last", "loop", "lost")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.last = 0.0
        self.lost = False
        # made only when a close is awaited: every socket of every call up would hold one otherwise (issue 9)
        self.closed: asyncio.Future[None] | None = None

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.last = self.loop.time()

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable for something the previous call sent: nothing to do

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    def closing(self) -> asyncio.Future[None]:
        """Done once the transport has called :meth:`connection_lost`."""
        if self.closed is None:
            self.closed = self.loop.create_future()
            if self.lost:
                self.closed.set_result(None)
        return self.closed


@dataclass(slots=True, eq=False)
class SocketPair:
    """One bound RTP port and its RTCP port (+1), open on the loop, with their parking protocols."""

    port: int
    rtp: Any  # the transports: uvloop's UDPTransport is no asyncio.DatagramTransport subclass
    rtcp: Any
    rtp_parked: _Parked
    rtcp_parked: _Parked
    released_at: float = 0.0

    @property
    def lost(self) -> bool:
        return self.rtp_parked.lost or self.rtcp_parked.lost

    def quiet_since(self) -> float:
        return max(self.released_at, self.rtp_parked.last, self.rtcp_parked.last)

    def park(self, now: float) -> None:
        self.rtp.set_protocol(self.rtp_parked)
        self.rtcp.set_protocol(self.rtcp_parked)
        self.released_at = now

    async def close(self) -> None:
        """Close both sockets (their parked protocols see connection_lost) and wait until they are."""
        self.park(self.released_at)
        closed = [self.rtp_parked.closing(), self.rtcp_parked.closing()]
        self.rtp.close()
        self.rtcp.close()
        await asyncio.wait(closed, timeout=5.0)


async def open_pair(loop: asyncio.AbstractEventLoop, port: int, rtp_sock: Any, rtcp_sock: Any) -> SocketPair:
    """Wrap two bound non-blocking sockets in transports, parked until an endpoint takes them."""
    rtp_parked, rtcp_parked = _Parked(loop), _Parked(loop)
    rtp, _ = await loop.create_datagram_endpoint(lambda: rtp_parked, sock=rtp_sock)
    try:
        rtcp, _ = await loop.create_datagram_endpoint(lambda: rtcp_parked, sock=rtcp_sock)
    except OSError:
        rtp.close()
        raise
    return SocketPair(port=port, rtp=rtp, rtcp=rtcp, rtp_parked=rtp_parked, rtcp_parked=rtcp_parked)


class SocketPool:
    """Parked :class:`SocketPair`\\ s, oldest release first."""

    def __init__(self, *, max_idle: int, quarantine: float = 2.0) -> None:
        self.max_idle = max_idle
        self.quarantine = quarantine
        self._idle: deque[SocketPair] = deque()

    def __len__(self) -> int:
        return len(self._idle)

    def ports(self) -> list[int]:
        return [pair.port for pair in self._idle]

    def take(self, now: float, *, force: bool = False) -> tuple[SocketPair | None, list[SocketPair]]:
        """A pair quiet for the quarantine (any pair with ``force``), or None; plus pairs found closed.

        The closed ones (an error closed their socket while parked) are the caller's to forget.
        """
        dead: list[SocketPair] = []
        rotations = 0
        idle = self._idle
        while idle:
            pair = idle[0]
            if pair.lost:
                dead.append(idle.popleft())
                continue
            if force or now - pair.quiet_since() >= self.quarantine:
                return idle.popleft(), dead
            if pair.quiet_since() > pair.released_at and rotations < MAX_ROTATIONS and len(idle) > 1:
                idle.rotate(-1)  # still receiving: let the quieter ones behind it go first
                rotations += 1
                continue
            break
        return None, dead

    def put(self, pair: SocketPair, now: float) -> SocketPair | None:
        """Park ``pair``; returns the pair to close when the pool is full (the oldest), if any."""
        pair.park(now)
        if pair.lost:
            return pair
        self._idle.append(pair)
        if len(self._idle) > self.max_idle:
            return self._idle.popleft()
        return None

    def drain(self) -> list[SocketPair]:
        """Every parked pair, removed (to close them at shutdown)."""
        pairs = list(self._idle)
        self._idle.clear()
        return pairs
