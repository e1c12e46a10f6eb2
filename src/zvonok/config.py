"""Settings: every value can come from a flag, a ``ZVONOK_*`` environment variable, or its default."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field
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
    sip_tcp_idle_timeout: float = Field(default=300.0, description="Close idle TCP connections after this")

    # Media and calls
    rtp_port_min: int = Field(default=20000, ge=1024, le=65534, description="First RTP port (even)")
    rtp_port_max: int = Field(default=29999, ge=1025, le=65535, description="Last RTP port")
    call_no_answer_timeout: float = Field(default=60.0, description="Ring this long, then give up (480)")
    media_timeout: float = Field(default=60.0, description="End a call after this long without RTP from a leg")
    session_min_se: int = Field(default=90, ge=1, description="RFC 4028 Min-SE: shorter session intervals get 422")
    ringback: Literal["local", "inband"] = Field(
        default="local", description="local: 180 and the phone rings itself; inband: 183 and 425 Hz ringback from us")
    busy_tone_seconds: float = Field(default=3.0, ge=0, description="inband mode: busy tone played before a 486")
    invite_rate_limit: int = Field(default=30, description="New calls per second from one address before it "
                                   "is refused for invite_flood_ban seconds (503)")
    invite_flood_ban: float = Field(default=30.0, description="How long a flooding address gets 503, seconds")
    record_calls: bool = Field(default=False, description="Record every answered call to <data_dir>/recordings")
    record_stereo: bool = Field(default=True, description="Recordings as stereo (caller left, callee right)")
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

    # Brute-force protection (like Kamailio pike / fail2ban)
    auth_fail_limit: int = Field(default=20, description="Failed authentications from one source in the window")
    auth_fail_window: float = Field(default=60.0, description="Window for counting failures, seconds")
    auth_ban_time: float = Field(default=600.0, description="How long a source stays blocked, seconds")

    # HTTP API
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP API binds")
    http_port: int = Field(default=8080, ge=0, le=65535, description="HTTP port; 0 picks a free one")
    secret_key: str | None = Field(
        default=None, description="Key for login tokens and nonces; generated into data_dir when unset"
    )

    login_token_ttl: int = Field(default=12 * 3600, ge=60, description="Lifetime of login (JWT) tokens, seconds")
    demo_domain: str = Field(default="demo.zvonok.local", description="SIP domain of the demo company")

    log_level: str = Field(default="info", description="debug, info, warning, error")
    log_json: bool = Field(default=False, description="Log as JSON lines instead of console text")

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
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        path.write_text(key)
        path.chmod(0o600)
        return key
