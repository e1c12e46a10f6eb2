"""Zvonok behind a SIP edge proxy (Kamailio): the Path of a binding (RFC 3327) and trusted edges.

How it works
------------
*Path.* An edge proxy that forwards a REGISTER adds a ``Path`` header with its own URI (Kamailio's
``add_path_received()`` adds ``;received=<where the phone really is>`` to it). The registrar stores the
Path values with the binding (:func:`path_of`) and a request to that device is then sent along them
(:func:`route_to`): the Path URIs become the Route set of our INVITE in the order they came (§5.3 of
RFC 3327: the first is the proxy nearest to us), the next hop is the first of them, and the
Request-URI stays the device's Contact. Without a Path the request goes back to the REGISTER's source
address, as before (NAT-safe for a phone that registers to us directly). A Path is taken only from a
trusted edge: from anyone else it would let a registered user point our INVITEs at any address.

*Trusted edges.* Behind an edge every phone's request comes from the edge's address, so limits counted
per source address (the INVITE flood limit, the digest-failure bans, the proven addresses of a locked
account) would count the whole platform as one caller. For a request from an address named in
``ZVONOK_TRUSTED_EDGES`` the client's address is the one the edge recorded in the Via it received the
request with: the Via just below the edge's own, its ``received`` parameter when present (RFC 3261
§18.2.1: a proxy adds it whenever the sent-by differs from the packet's source, so a phone cannot forge
it), else its sent-by host. This needs nothing in the edge's configuration beyond RFC 3261 behaviour,
and it serves REGISTER and INVITE alike. From any other source Via is not believed: the limits count
the packet's source address. An edge that hides topology (Kamailio ``topoh``/``topos``) removes those
Vias and cannot be used this way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, replace

from zvonok.sip.errors import SipParseError
from zvonok.sip.headers import NameAddr, parse_name_addr, split_commas
from zvonok.sip.message import Request
from zvonok.sip.peer import Peer
from zvonok.sip.uri import SipUri

__all__ = ["NextHop", "TrustedEdges", "path_of", "route_to"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedEdges:
    """The edge proxies whose Via records are believed (addresses or CIDR networks)."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks: tuple[_Network, ...] = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, host: str) -> bool:
        ip = _ip(host)
        if ip is None:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket's view of an IPv4 edge
        return any(ip in net for net in self.networks)

    def client_host(self, request: Request, peer: Peer) -> str:
        """The address ``request`` really comes from: the packet's source, or for a request relayed by a
        trusted edge the phone's address as the edge recorded it in the phone's Via."""
        if not self.networks or not self.trusts(peer.host):
            return peer.host
        try:
            vias = request.vias
        except SipParseError:
            return peer.host
        if len(vias) < 2:
            return peer.host  # the edge's own request (an OPTIONS probe): the edge is the client
        client = vias[1]
        host = client.received or client.host
        ip = _ip(host)
        return str(ip) if ip is not None else peer.host


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def path_of(request: Request) -> tuple[str, ...]:
    """The Path values of a REGISTER in order, each a name-addr (RFC 3327 §4); 400 when one is not a
    SIP URI or is malformed."""
    values: list[str] = []
    for field in request.headers.get_all("path"):
        for item in split_commas(field):
            addr = parse_name_addr(item)
            if not isinstance(addr.uri, SipUri):
                raise SipParseError("Path must be a SIP URI")
            if not addr.bracketed:
                # "Path: sip:edge;lr": strictly a header parameter after an addr-spec (§20.10), but a Path
                # value is a proxy's URI and lr is a URI parameter: kept in the URI, and bracketed as a
                # Route with URI parameters must be
                addr = NameAddr(uri=replace(addr.uri, params={**addr.uri.params, **addr.params}))
            values.append(str(addr))
    return tuple(values)


@dataclass(frozen=True, slots=True)
class NextHop:
    """Where a request to a binding goes: the address to send it to, its Request-URI and Route values."""

    peer: Peer
    request_uri: str
    routes: tuple[str, ...] = ()


def route_to(contact: str, path: tuple[str, ...], fallback: Peer) -> NextHop:
    """The next hop of a request to ``contact`` registered with ``path`` (RFC 3327 §5.3, RFC 3261 §12.2.1.1
    and §8.1.2): without a Path, ``fallback`` (the REGISTER's source); with one, its first URI."""
    if not path:
        return NextHop(fallback, contact)
    first = parse_name_addr(path[0]).uri
    assert isinstance(first, SipUri)  # path_of let only SIP URIs in
    transport = first.transport or ("tls" if first.scheme == "sips" else "udp")
    port = first.port or (5061 if transport == "tls" else 5060)
    peer = Peer(transport=transport, host=first.host.strip("[]"), port=port)
    if (fallback.transport, fallback.host, fallback.port) == (peer.transport, peer.host, peer.port):
        peer = fallback  # the edge that registered it: keep its stream connection
    if first.has_param("lr"):
        return NextHop(peer, contact, path)
    # a strict router (no lr): it becomes the Request-URI, the contact the last Route (§12.2.1.1)
    # stripped of what a Request-URI may not carry (§19.1.1 table 1: method, headers)
    strict = SipUri(scheme=first.scheme, host=first.host, user=first.user, port=first.port,
                    params={k: v for k, v in first.params.items() if k.lower() != "method"})
    return NextHop(peer, str(strict), (*path[1:], f"<{contact}>"))
