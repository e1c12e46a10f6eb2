"""How to point a softphone at an extension: one description for the CLI (``zvonok demo``) and the web
console (the employee portal's setup card and its QR code).

A phone needs the registrar's address, port and transport, the SIP user (the extension number, which is
also the authentication name), the domain (the tenant's ``sip_domain``: the realm of the digest) and the
password. There is no common standard for a SIP account in a QR code (each softphone vendor has its own
provisioning format), so the code carries the same one-line description that is shown as text: baresip's
account line, which names all of them — what a person reads is what a scanner gets.

Addresses: the server's advertised host wins over the address it binds (``sip_advertised_host`` is what
phones must use behind NAT); an unspecified bind address (``0.0.0.0``, ``::``) says nothing a phone could
use, so the caller passes the host the user reached us by instead (the web console's own host name).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from zvonok.config import Settings
from zvonok.sip.grammar import uri_host

Transport = Literal["udp", "tcp", "tls"]
_UNSPECIFIED = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 - a bind address we refuse to show


@dataclass(frozen=True, slots=True, kw_only=True)
class SoftphoneAccount:
    """One extension as a softphone sees it. ``password`` is set only while it can be shown (just
    generated): the clear SIP password is never stored, so afterwards it is left out."""

    number: str
    domain: str
    host: str  # as it goes into a URI: an IPv6 literal in brackets
    port: int
    transport: Transport = "udp"
    password: str | None = None
    srtp: bool = False  # ask for SRTP media (only meaningful on TLS)

    @property
    def server(self) -> str:
        """``host:port``: the outbound proxy (or registrar) to set in the phone."""
        return f"{self.host}:{self.port}"

    @property
    def address_of_record(self) -> str:
        """``sip:number@domain``, with ``;transport=`` unless UDP (the default a phone assumes)."""
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{self.number}@{self.domain}{suffix}"

    def account_line(self) -> str:
        """The account as a line of baresip's ``~/.baresip/accounts`` (the password only when known)."""
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        line = f"<{self.address_of_record}>"
        if self.password is not None:
            line += f";auth_pass={self.password}"
        line += f';outbound="sip:{self.server}{suffix}"'
        if self.srtp:
            line += ";mediaenc=srtp-mand"
        return line


def server_host(settings: Settings, fallback: str | None = None) -> str:
    """The SIP server's host for phones, URI-ready (see the module docstring)."""
    host = settings.sip_advertised_host or settings.sip_host
    if host.strip() in _UNSPECIFIED and fallback:
        host = fallback
    return uri_host(host)


def softphone_accounts(settings: Settings, *, number: str, domain: str, password: str | None = None,
                       fallback_host: str | None = None) -> list[SoftphoneAccount]:
    """The ways a phone can reach this server for one extension: UDP, TCP (same port), and TLS with SRTP
    when a certificate is configured."""
    host = server_host(settings, fallback_host)

    def account(port: int, transport: Transport, srtp: bool = False) -> SoftphoneAccount:
        return SoftphoneAccount(number=number, domain=domain, host=host, port=port, transport=transport,
                                password=password, srtp=srtp)

    found = [account(settings.sip_port, "udp"), account(settings.sip_port, "tcp")]
    if settings.sip_tls_cert is not None:
        found.append(account(settings.sip_tls_port, "tls", srtp=True))
    return found
