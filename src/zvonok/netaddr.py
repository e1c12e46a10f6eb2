"""The unit per-address limits count a peer by, shared by every one of them (connection caps, the SIP
authentication and INVITE flood throttles, access-number PINs, web logins): one definition, so an IPv6
host rotating through its /64 gains nothing against any of them."""

from __future__ import annotations

import ipaddress

__all__ = ["address_key"]


def address_key(host: str) -> str:
    """An IPv4 address; an IPv6 address's /64 (the smallest block one subscriber is normally given), an
    IPv4-mapped one as IPv4 (a dual-stack socket's view of an IPv4 peer). Brackets ("[2001:db8::1]")
    are ignored; a host name or an already-built key is used as given."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)
