"""Connection limits of the TCP listeners (SIP and HTTP) and the file-descriptor budget they share with RTP.

How it works. Every accepted connection costs a file descriptor, and so does every RTP/RTCP socket. A
flood of idle connections (3,000 in the finding of issue 8) used the descriptors that calls then lacked
for their media. So each listener admits connections through a :class:`ConnectionTable` (a cap
overall, one per source address, IPv6 counted per /64 since one host gets a whole /64, and a larger one
per IPv6 /48 since one site gets a whole /48; at the overall cap the oldest unauthenticated connection
makes room), and :func:`fd_budget` sizes those caps at start from the process's descriptor limit so
that the RTP port range keeps its share: Kamailio's ``tcp_max_connections``, Asterisk's
``tcpauthlimit``, nginx's ``limit_conn``.

:class:`StreamDeadlines` holds the timers of one SIP-TCP connection (Kamailio's
``tcp_connection_lifetime``, Asterisk's ``tcpauthtimeout``): a message must complete within its deadline
once its first byte has arrived (bytes trickling in do not extend it, unlike the idle timer), and a new
connection must deliver a well-formed message soon or it is closed. Everything here except
:func:`raise_nofile_limit` is plain counting with ``now`` passed in.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol

from zvonok.netaddr import address_key

PREFIX_FACTOR = 4  # an IPv6 /48 may hold this many times the per-address cap


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:  # a name: counted as it is
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip



def prefix_key(host: str) -> str | None:
    """The unit the per-prefix cap counts: an IPv6 /48 (one site's allocation, 65,536 /64s); None for IPv4."""
    ip = _ip(host)
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    return str(ipaddress.IPv6Network((int(ip) >> 80 << 80, 48)))


class Evictable(Protocol):
    def evict(self) -> None:
        """Close the connection now; the table has already given its slot away."""


class ConnectionTable:
    """Open connections counted overall, per source address (IPv6 per /64) and per IPv6 /48.

    ``admit`` refuses beyond the per-address or per-prefix cap. At the overall cap it makes room by
    evicting the oldest connection still *untrusted* — admitted with its ``connection`` and not yet
    passed to :meth:`trust` (the SIP service trusts a connection that carried an authenticated
    REGISTER or INVITE) — and refuses only when there is none. Why: a connection kept alive by one
    OPTIONS per idle period costs nothing, so 32 addresses (or 32 /64s of one /48) at the per-address
    cap would otherwise hold every slot and lock every tenant's TCP/TLS phones out. Evicting the oldest
    untrusted one means a flood must churn through all of them before it reaches a phone that has just
    connected, and never takes a registered phone's connection. The untrusted connections are a dict in
    admission order, so the oldest is its first entry: no clock, no scan.

    Bounded by construction: a key is present only while it has a connection open.
    """

    def __init__(self, max_total: int, max_per_address: int, max_per_prefix: int | None = None) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.max_per_prefix = max_per_prefix if max_per_prefix is not None else PREFIX_FACTOR * max_per_address
        self.total = 0
        self.refused = 0
        self.evicted = 0
        self._counts: dict[str, int] = {}  # address keys and /48 keys (their spellings differ)
        self._untrusted: dict[Evictable, str] = {}  # connection -> host, oldest first

    def admit(self, host: str, connection: Evictable | None = None) -> bool:
        """Count a new connection from ``host``; with ``connection``, it may be evicted until trusted."""
        address, prefix = address_key(host), prefix_key(host)
        if (self._counts.get(address, 0) >= self.max_per_address
                or (prefix is not None and self._counts.get(prefix, 0) >= self.max_per_prefix)
                or (self.total >= self.max_total and not self._evict_oldest())):
            self.refused += 1
            return False
        for key in (address, prefix):
            if key is not None:
                self._counts[key] = self._counts.get(key, 0) + 1
        self.total += 1
        if connection is not None:
            self._untrusted[connection] = host
        return True

    def trust(self, connection: Evictable) -> None:
        """Never evict ``connection`` for a newcomer (a no-op for one not admitted or already trusted)."""
        self._untrusted.pop(connection, None)

    def release(self, host: str, connection: Evictable | None = None) -> None:
        if connection is not None:
            self._untrusted.pop(connection, None)
        address = address_key(host)
        if self._counts.get(address, 0) <= 0:
            return
        self.total -= 1
        for key in (address, prefix_key(host)):
            if key is not None:
                count = self._counts.get(key, 0)
                if count <= 1:
                    self._counts.pop(key, None)
                else:
                    self._counts[key] = count - 1

    def count(self, host: str) -> int:
        return self._counts.get(address_key(host), 0)

    def prefix_count(self, host: str) -> int:
        key = prefix_key(host)
        return self._counts.get(key, 0) if key is not None else 0

    def _evict_oldest(self) -> bool:
        if not self._untrusted:
            return False
        victim = next(iter(self._untrusted))
        self.release(self._untrusted[victim], victim)
        self.evicted += 1
        victim.evict()
        return True


class StreamDeadlines:
    """The timers of one stream connection; :meth:`expired` names the one that ran out, if any.

    - idle: no byte at all for ``idle`` seconds (any byte resets it, keep-alive CRLFs included);
    - message: a message begun (bytes buffered) but not complete ``message`` seconds after its first
      byte — a slowloris sending a byte a second is closed here, whatever the idle timer says;
    - first message: no well-formed message within ``first`` seconds of the connection opening (a
      connection that only pings or sends garbage holds a descriptor for nothing).
    """

    __slots__ = ("first", "idle", "last_activity", "message", "message_started", "opened", "proven")

    def __init__(self, now: float, *, idle: float, message: float, first: float) -> None:
        self.idle = idle
        self.message = message
        self.first = first
        self.opened = now
        self.last_activity = now
        self.message_started: float | None = None
        self.proven = False

    def on_data(self, now: float, *, buffered: int, completed: int, valid: bool) -> None:
        """Bytes arrived; ``buffered`` are left over after framing, ``completed`` messages (and pings)
        were cut off the front, ``valid`` if one of them parsed."""
        self.last_activity = now
        if valid:
            self.proven = True
        if buffered == 0:
            self.message_started = None
        elif completed or self.message_started is None:
            self.message_started = now  # what is left over is the start of the next message

    def expired(self, now: float) -> str | None:
        if self.message_started is not None and now >= self.message_started + self.message:
            return "message deadline"
        if not self.proven and now >= self.opened + self.first:
            return "no message"
        if now >= self.last_activity + self.idle:
            return "idle"
        return None


@dataclass(frozen=True)
class FdBudget:
    """How the process's file descriptors are shared out (logged at start)."""

    nofile: int  # the soft RLIMIT_NOFILE in force
    reserved: int  # listeners, database, log and recording files, the event loop itself
    rtp: int  # RTP/RTCP sockets the port range can use (one per port)
    sip_tcp: int  # SIP-TCP connections admitted
    http: int  # HTTP connections admitted (websockets included)

    @property
    def spare(self) -> int:
        return self.nofile - self.reserved - self.rtp - self.sip_tcp - self.http


def fd_budget(nofile: int, *, rtp_ports: int, sip_tcp: int, http: int, reserved: int = 256) -> FdBudget:
    """Caps for the connection listeners that leave the RTP port range its descriptors.

    The configured caps stand when everything fits. Otherwise the connections are cut to what the RTP
    range leaves — but never below a quarter of the descriptors, so a range wider than the limit can
    serve (it then cannot be used in full: the log says so) does not shut out SIP-TCP and HTTP.
    """
    available = max(0, nofile - reserved)
    wanted = sip_tcp + http
    room = max(available - rtp_ports, available // 4)
    if wanted > room:
        sip_tcp, http = max(1, sip_tcp * room // wanted), max(1, http * room // wanted)
    return FdBudget(nofile=nofile, reserved=reserved, rtp=max(0, min(rtp_ports, available - sip_tcp - http)),
                    sip_tcp=sip_tcp, http=http)


def raise_nofile_limit() -> int:
    """Raise the soft descriptor limit to the hard one (many systems start processes at 1024); the limit now."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft and (hard == resource.RLIM_INFINITY or hard > soft):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # e.g. macOS caps the soft limit below an "unlimited" hard one
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20
