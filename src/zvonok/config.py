"""Settings: every value can come from a flag, a ``ZVONOK_*`` environment variable, or its default."""

from __future__ import annotations

import ipaddress
import os
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DigestAlgorithm(StrEnum):
    MD5 = "MD5"
    SHA256 = "SHA-256"


class Settings(BaseSettings):
    """The whole configuration of one ``zvonok serve`` process."""

    model_config = SettingsConfigDict(env_prefix="ZVONOK_", extra="ignore")

    data_dir: Path = Field(default=Path("./data"), description="Directory for the SQLite file, recordings, keys")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default is sqlite+aiosqlite:///<data_dir>/zvonok.db "
        "(PostgreSQL: postgresql+asyncpg://user@host/db)",
    )

    tenant_quotas: dict[str, int] = Field(
        default_factory=dict, description="Most objects of a kind one company may have, over the defaults of "
        "zvonok.org.quotas (JSON: {\"extensions\": 20000, \"ivr_menus\": 500})")

    # SIP service
    sip_host: str = Field(default="127.0.0.1", description="Address the SIP service binds (UDP and TCP)")
    sip_port: int = Field(default=5060, ge=0, le=65535, description="SIP port (UDP and TCP); 0 picks a free one")
    sip_advertised_host: str | None = Field(
        default=None, description="Host put in Via/Contact/Record-Route when it differs from sip_host"
    )
    sip_max_message_size: int = Field(default=65535, description="Largest SIP message accepted, in bytes")
    sip_t1: float = Field(default=0.5, description="RFC 3261 T1 (RTT estimate), seconds")
    sip_t2: float = Field(default=4.0, description="RFC 3261 T2 (max non-INVITE retransmit interval), seconds")
    sip_t4: float = Field(default=5.0, description="RFC 3261 T4 (max time a message stays in the network)")
    sip_force_rport: bool = Field(
        default=True,
        description="Answer UDP requests at their source address and port even without rport (RFC 3581), "
        "as Asterisk's force_rport: phones behind NAT are the rule for a cloud PBX",
    )
    sip_default_domain: str | None = Field(
        default=None,
        description="Tenant domain for REGISTERs addressed to the server's IP address instead of a domain "
        "(softphones set up with just the server address); `zvonok demo` sets it to the demo domain",
    )
    sip_tcp_idle_timeout: float = Field(default=300.0, gt=0,
                                        description="Close TCP connections that sent no byte for this long, seconds")
    sip_tcp_max_connections: int = Field(
        default=2000, ge=1, description="SIP-TCP and SIP-TLS connections open at once (together); beyond it the oldest "
        "connection that has not proven itself (no REGISTER/INVITE answered 2xx on it) makes room (as "
        "Kamailio's tcp_max_connections). Lowered at start if the file-descriptor limit cannot also hold the "
        "RTP port range (the budget is logged)")
    sip_tcp_max_per_address: int = Field(
        default=64, ge=1, description="SIP-TCP connections from one IPv4 address or IPv6 /64; an office NAT "
        "with more TCP phones than this needs a higher value")
    sip_tcp_message_timeout: float = Field(
        default=10.0, gt=0, description="A SIP message must be complete this long after its first byte, "
        "seconds; bytes trickling in do not extend it (slowloris)")
    sip_tcp_first_message_timeout: float = Field(
        default=30.0, gt=0, description="Close a new SIP-TCP connection that sent no well-formed SIP message "
        "within this, seconds (as Asterisk's tcpauthtimeout)")
    sip_tls_port: int = Field(default=5061, ge=0, le=65535,
                              description="SIP over TLS port (with sip_tls_cert and sip_tls_key); 0 picks a free one")
    sip_tls_cert: Path | None = Field(default=None, description="PEM certificate (chain) of the TLS listener; "
                                      "none: no TLS. Reloaded when the file changes")
    sip_tls_key: Path | None = Field(default=None, description="PEM private key of sip_tls_cert")
    sip_tls_ca_file: Path | None = Field(
        default=None, description="PEM CA certificates that carriers' TLS certificates are verified against "
        "(trunks with transport tls); none: the system's CA store. A trunk's tls_verify=false skips the check "
        "(a self-signed office PBX)")
    sip_tls_reload_interval: float = Field(default=5.0, gt=0,
                                           description="How often the certificate files are checked for a change")
    srtp_policy: Literal["required", "optional", "off"] = Field(
        default="optional",
        description="SRTP (SDES keys, AES_CM_128_HMAC_SHA1_80) on TLS legs, unless an extension or trunk sets its "
        "own: required (plain offers get 488, devices not on TLS are not rung), optional (SRTP when the "
        "device offers it; our offers to TLS devices are SRTP), off (plain RTP). Never on UDP/TCP legs: "
        "the keys would travel in the clear")

    # Media and calls
    rtp_port_min: int = Field(default=20000, ge=1024, le=65534, description="First RTP port (even)")
    rtp_port_max: int = Field(default=29999, ge=1025, le=65535, description="Last RTP port")
    rtp_socket_pool: int = Field(
        default=1024, ge=0, description="Released RTP/RTCP socket pairs kept bound for the next calls (0: open and "
        "close the sockets per call); they stay within the RTP port range")
    call_no_answer_timeout: float = Field(default=60.0, description="Ring this long, then give up (480)")
    originate_answer_timeout: float = Field(
        default=30.0, gt=0, description="An originated call (REST, CRM click-to-call) rings the employee's phone "
        "this long before it fails with employee_no_answer")
    originate_max_active: int = Field(
        default=30, ge=1, description="Originated calls (REST, CRM click-to-call, monitoring started from the web) "
        "of one company in progress at once; more get 429")
    originate_per_minute: int = Field(
        default=60, ge=1, description="Originated calls one company may start in any minute; more get 429 with "
        "Retry-After")
    originate_keep_days: int = Field(
        default=90, ge=1, le=3650, description="Originated calls (REST, CRM click-to-call) stay this many days in "
        "originate_requests (their status, failed attempts on the CRM timeline), then are deleted; a company keeps "
        "at most 100000 of them")
    media_timeout: float = Field(default=60.0, description="End a call after this long without RTP from a leg")
    session_min_se: int = Field(default=90, ge=1, description="RFC 4028 Min-SE: shorter session intervals get 422")
    ringback: Literal["local", "inband"] = Field(
        default="local", description="local: 180 and the phone rings itself; inband: 183 and 425 Hz ringback from us")
    busy_tone_seconds: float = Field(default=3.0, ge=0, description="inband mode: busy tone played before a 486")
    music_on_hold: bool = Field(default=True, description="A party put on hold hears the company's music on "
                                "hold (its own upload, else the built-in track); off: silence")
    park_timeout: float = Field(default=120.0, gt=0, description="A call parked (transferred to 700 or a slot "
                                "701-720) this long rings back the extension that parked it")
    park_ringback_timeout: float = Field(default=30.0, gt=0, description="A parked call ringing back its parker "
                                         "ends when nobody answers within this many seconds")
    conference_tenant_members: int = Field(default=100, ge=2, description="Callers one company may have in its "
                                           "conference rooms at once (mixing costs CPU per member); more get 486")
    conference_total_members: int = Field(default=500, ge=2, description="Callers in all conference rooms of "
                                          "the server at once; more get 486")
    invite_rate_limit: int = Field(default=30, description="New calls per second from one address before it "
                                   "is refused for invite_flood_ban seconds (503)")
    invite_flood_ban: float = Field(default=30.0, description="How long a flooding address gets 503, seconds")
    record_calls: bool = Field(default=False, description="Record every answered call to <data_dir>/recordings")
    record_stereo: bool = Field(default=True, description="Recordings as stereo (caller left, callee right)")
    mwi_unsolicited: bool = Field(default=True, description="Send message-waiting NOTIFYs to registered "
                                  "phones that do not SUBSCRIBE to their mailbox (unsolicited MWI)")
    blf_subscriptions_per_device: int = Field(default=100, ge=1, description="Dialog/presence (BLF) "
                                              "subscriptions one device (source address) may hold; more get 503")
    blf_subscriptions_per_tenant: int = Field(default=5_000, ge=1, description="Dialog/presence (BLF) "
                                              "subscriptions one company may hold in all; more get 503")
    smtp_host: str | None = Field(default=None, description="SMTP server for voicemail and fax to e-mail (unset: no mail "
                                  "is sent unless a company sets its own server)")
    smtp_port: int = Field(default=25, description="SMTP port (587 with STARTTLS, 465 with implicit TLS)")
    smtp_username: str | None = Field(default=None, description="SMTP login, if the server wants one")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password")
    smtp_security: Literal["none", "starttls", "tls"] = Field(default="none", description="none | starttls | tls")
    smtp_from: str = Field(default="voicemail@localhost", description="Sender of voicemail, fax and CRM e-mails")
    web_url: str | None = Field(default=None, description="The web portal's public address (e.g. "
                                "https://pbx.example.com): voicemail e-mails without the recording link to it")
    crm_imap_poll: float = Field(default=60.0, gt=0, description="Seconds between reads of each company's IMAP "
                                 "mailbox for replies to the CRM's e-mails")
    webhooks_allow_private: bool = Field(
        default=False, description="Let webhooks point at loopback, link-local and private addresses (off: such "
                                   "URLs are refused and never called, against SSRF into the platform's network)")
    cdr_heartbeat_interval: float = Field(
        default=5.0, gt=0, description="Seconds between heartbeats of the calls in progress (one UPDATE for all): "
                                       "a call cut by a crash is closed at its last heartbeat")

    # Registrar
    register_min_expires: int = Field(default=60, description="Shorter Expires gets 423 Interval Too Brief")
    register_max_expires: int = Field(default=3600, description="Longer Expires is cut to this")
    register_default_expires: int = Field(default=3600, description="Expires when the REGISTER gives none")
    register_max_contacts: int = Field(default=10, description="Bindings per extension")
    register_commit_delay: float = Field(
        default=0.005, ge=0, le=0.1,
        description="Seconds the registrar gathers REGISTERs into one database commit before answering "
                    "them 200 (group commit: a 200 is sent only once its binding is stored)")

    # Digest authentication
    digest_algorithms: list[DigestAlgorithm] = Field(
        default=[DigestAlgorithm.MD5],
        description="Digest challenges offered, in this order, e.g. '[\"MD5\",\"SHA-256\"]'. MD5 alone by "
        "default: baresip 1.0 fails on any SHA-256 challenge, and SIPp and many desk phones copy only with "
        "MD5 first (RFC 8760 clients that do SHA-256 can be served by adding it)",
    )
    nonce_lifetime: int = Field(default=300, description="Seconds a nonce is valid; older ones get stale=true")
    digest_allow_no_qop: bool = Field(
        default=False,
        description="Accept RFC 2069 digests without qop (very old phones). Off by default: such a digest "
        "has no nonce-count, so a captured request can be replayed from anywhere while its nonce lives",
    )

    # Brute-force protection (like Kamailio pike / fail2ban)
    auth_fail_limit: int = Field(default=20, description="Failed authentications from one source address "
                                 "(IPv6: one /64) in the window; more ban the source")
    auth_target_fail_limit: int = Field(
        default=10, ge=0, description="Failed authentications against one account (domain and username) from "
        "all sources in the window; more lock the account for auth_ban_time, except from addresses where it "
        "authenticated within the last day")
    auth_fail_window: float = Field(default=60.0, description="Window for counting failures, seconds")
    auth_ban_time: float = Field(default=600.0, description="How long a source stays blocked, seconds")
    bus_url: str | None = Field(
        default=None,
        description="NATS server of the bus between nodes (e.g. 'nats://127.0.0.1:4222', JetStream on): every "
        "node's websocket and live views see the calls of all nodes. Unset: the in-process bus of one node. "
        "See docs/cluster.md")
    bus_prefix: str = Field(
        default="zvonok.events", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
        description="NATS subject prefix of the events (the JetStream stream is named after it): platforms "
        "sharing one NATS server each need their own")
    node_name: str = Field(
        default="",
        description="This node's name on the bus between nodes (default: a random one per start)")
    trusted_edges: list[str] = Field(
        default=[],
        description="SIP edge proxies (addresses or networks, e.g. '[\"10.0.0.5\", \"10.1.0.0/24\"]') in front "
        "of this node, as Kamailio in deploy/kamailio: only their REGISTERs' Path (RFC 3327) is honoured, and "
        "for a request from one of them the per-address limits "
        "(auth_fail_limit, invite_rate_limit, proven addresses) count the phone's address as the edge "
        "recorded it in the phone's Via (received, else sent-by) instead of the edge's. From other "
        "sources Via is not believed. See docs/edge.md")

    # HTTP API
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP API binds")
    http_port: int = Field(default=8080, ge=0, le=65535, description="HTTP port; 0 picks a free one")
    http_max_connections: int = Field(
        default=1000, ge=1, description="HTTP connections open at once, websockets included; more get 503 and "
        "are closed. Lowered at start if the file-descriptor limit cannot also hold the RTP port range")
    http_max_per_address: int = Field(
        default=256, ge=1, description="HTTP connections from one IPv4 address or IPv6 /64 (an office NAT: "
        "a few per browser plus one websocket per agent panel)")
    http_header_timeout: float = Field(
        default=10.0, gt=0, description="A request's headers must be complete this long after the connection "
        "is ready for it, seconds (as nginx's client_header_timeout); the connection is closed otherwise")
    http_body_timeout: float = Field(
        default=120.0, gt=0, description="A request body must be complete this long after its headers, seconds")
    http_max_body: int = Field(
        default=1 << 20, ge=1024, description="Largest request body in bytes (413 beyond, before it is read; "
        "as nginx's client_max_body_size)")
    http_max_upload: int = Field(
        default=64 << 20, ge=1024, description="Largest body of a file import (a tariff's rate deck), bytes")
    secret_key: str | None = Field(
        default=None, description="Key for login tokens and nonces; generated into data_dir when unset"
    )

    analytics_nightly: bool = Field(
        default=True, description="Export every company's calls, deals and payments into "
        "<data_dir>/analytics/t<tenant id>.duckdb each night (docs/analytics.md)")
    analytics_nightly_hour: int = Field(default=3, ge=0, le=23, description="Hour (UTC) of the nightly export")
    analytics_target: Literal["duckdb", "postgres"] = Field(
        default="duckdb", description="Where analytics exports go: 'duckdb' (the file alone) or 'postgres' (the "
        "file, and its tables also as the schema analytics_t<tenant id> of the PBX's PostgreSQL database)")
    analytics_min_interval: float = Field(
        default=600.0, ge=0, description="Seconds between the on-demand analytics exports of one company (429 "
        "sooner): each rebuilds the company's file from all its rows")

    metrics_allow: list[str] = Field(
        default=["127.0.0.0/8", "::1/128"],
        description="Networks that may read /metrics, e.g. '[\"10.0.0.0/8\"]' for a Prometheus elsewhere "
        "(loopback only by default)")
    metrics_token: str | None = Field(
        default=None, description="When set, /metrics also needs 'Authorization: Bearer <this token>'")
    login_fail_limit: int = Field(
        default=5, ge=0, description="Failed web/API logins for one login name within login_fail_window before "
        "it is locked for login_ban_time (429), known account or not")
    login_address_fail_limit: int = Field(
        default=20, ge=0, description="Failed logins from one client address (IPv6: its /64) within "
        "login_fail_window before the address is refused for login_ban_time (429)")
    login_fail_window: float = Field(default=900.0, gt=0, description="Window for counting failed logins, seconds")
    login_ban_time: float = Field(default=900.0, gt=0, description="How long a locked login name or address waits")
    login_token_ttl: int = Field(default=12 * 3600, ge=60, description="Lifetime of login (JWT) tokens, seconds")
    demo_domain: str = Field(default="demo.zvonok.local", description="SIP domain of the demo company")

    log_level: str = Field(default="info", description="debug, info, warning, error")
    log_json: bool = Field(default=False, description="Log as JSON lines instead of console text")
    malloc_arena_max: int = Field(
        default=2, ge=0, description="glibc malloc arenas (as MALLOC_ARENA_MAX; 0: glibc's default of 8 per core): "
        "fewer arenas keep RSS from creeping up as worker threads come and go")
    tracemalloc: int = Field(
        default=0, ge=0, description="Debugging: trace Python allocations with this many frames (0: off); "
        "kill -USR2 writes <data_dir>/memdump-<n>.txt either way (zvonok.memdebug)")

    @field_validator("metrics_allow", "trusted_edges")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # ValueError names the bad one at start-up
        return value

    def prepare_data_dir(self) -> Path:
        """The data directory, created if need be and kept owner-only (0700): it holds the SQLite file
        (HA1s, token hashes), the secret key and recordings."""
        private_dir(self.data_dir)
        return self.data_dir

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'zvonok.db').resolve()}"

    def resolved_secret_key(self) -> str:
        """The secret for tokens/nonces: from settings, else a random one kept in the data directory."""
        if self.secret_key:
            return self.secret_key
        import secrets

        path = self.data_dir / "secret.key"
        if path.exists():
            return path.read_text().strip()
        self.prepare_data_dir()
        key = secrets.token_hex(32)
        # Created 0600 from the start: no moment when another user could read it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key


def private_dir(path: Path) -> None:
    """Make ``path`` (with missing parents) readable by its owner only."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
