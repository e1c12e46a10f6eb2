"""Connection limits of the TCP listeners (SIP and HTTP) and the file-descriptor budget they share with RTP.

How it works. Every accepted connection costs a file descriptor, and so does every RTP/RTCP socket. A
flood of idle connections (3,000 in the finding of issue 8) used the descriptors that calls then lacked
for their media. So each listener admits connections through a :class:`ConnectionTable` (a cap overall and
one per source address, IPv6 counted per /64 since one host gets a whole /64), and :func:`fd_budget`
sizes those caps at start from the process's descriptor limit so that the RTP port range keeps its share:
Kamailio's ``tcp_max_connections``, Asterisk's ``tcpauthlimit``, nginx's ``limit_conn``.

:class:`StreamDeadlines` holds the timers of one SIP-TCP connection (Kamailio's
``tcp_connection_lifetime``, Asterisk's ``tcpauthtimeout``): a message must complete within its deadline
once its first byte has arrived (bytes trickling in do not extend it, unlike the idle timer), and a new
connection must deliver a well-formed message soon or it is closed. Everything here except
:func:`raise_nofile_limit` is plain counting with ``now`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

from zvonok.netaddr import address_key


class ConnectionTable:
    """Open connections counted overall and per source address; ``admit`` refuses beyond either cap.

    Bounded by construction: an address is a key only while it has a connection open.
    """

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.total = 0
        self.refused = 0
        self._per_address: dict[str, int] = {}

    def admit(self, host: str) -> bool:
        key = address_key(host)
        count = self._per_address.get(key, 0)
        if self.total >= self.max_total or count >= self.max_per_address:
            self.refused += 1
            return False
        self._per_address[key] = count + 1
        self.total += 1
        return True

    def release(self, host: str) -> None:
        key = address_key(host)
        count = self._per_address.get(key, 0)
        if count <= 0:
            return
        self.total -= 1
        if count == 1:
            del self._per_address[key]
        else:
            self._per_address[key] = count - 1

    def count(self, host: str) -> int:
        return self._per_address.get(address_key(host), 0)


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
