"""The registrar (RFC 3261 §10.3) with digest authentication (§22) and brute-force throttling.

How it works: :meth:`Registrar.handle` takes a parsed REGISTER and its source and returns the response.
The domain in the Request-URI names the tenant and is the digest realm. A REGISTER without usable
credentials gets a 401 with one challenge per configured algorithm, whatever the domain or user:
unknown domain, unknown user and wrong password all end in the same 403 after the same work, so
nobody learns which users exist. Failures are counted per source address; a source over the limit is
ignored for a while (like Kamailio's pike with fail2ban). Authenticated REGISTERs update the
:class:`Location` following §10.3 steps 6–8 and the 200 lists the current bindings.

Credentials are read through :class:`CredentialCache` so that the hot path does not touch the
database; org events drop cached entries when a password or extension changes.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from zvonok import metrics
from zvonok.logs import get_logger
from zvonok.org.service import SipCredentials
from zvonok.sip.digest import (
    AuthResult,
    DigestError,
    DigestVerifier,
    UnsupportedSchemeError,
    parse_credentials,
)
from zvonok.sip.errors import SipParseError
from zvonok.sip.headers import NameAddr, get_param, parse_contacts
from zvonok.sip.message import Request, Response, make_response
from zvonok.sip.peer import Peer
from zvonok.sip.uri import SipUri, parse_uri

from .location import Binding, Location
from .throttle import FailureThrottle

log = get_logger(__name__)

CredentialLookup = Callable[[str, str], Awaitable[SipCredentials | None]]


class CredentialCache:
    """Caches SIP credentials (and their absence) by (domain, username) for ``ttl`` seconds."""

    def __init__(self, lookup: CredentialLookup, ttl: float = 30.0, max_entries: int = 200_000) -> None:
        self._lookup = lookup
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str], tuple[float, SipCredentials | None]] = {}

    async def get(self, domain: str, username: str) -> SipCredentials | None:
        key = (domain, username)
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        creds = await self._lookup(domain, username)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (now + self.ttl, creds)
        return creds

    def invalidate(self, tenant_id: int | None = None) -> None:
        """Forget cached entries of a tenant (all when None)."""
        if tenant_id is None:
            self._entries.clear()
            return
        # entries for unknown users (None) carry no tenant: drop them too, they may exist now
        self._entries = {k: v for k, v in self._entries.items() if v[1] is not None and v[1].tenant_id != tenant_id}


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_contacts: int = 10
    default_domain: str | None = None  # the domain of REGISTERs sent to an IP address


class Registrar:
    def __init__(self, *, location: Location, credentials: CredentialCache, verifier: DigestVerifier,
                 throttle: FailureThrottle, config: RegistrarConfig, to_tag: Callable[[], str]) -> None:
        self.location = location
        self.credentials = credentials
        self.verifier = verifier
        self.throttle = throttle
        self.config = config
        self._to_tag = to_tag

    def _reply(self, request: Request, status: int, *headers: tuple[str, str], reason: str | None = None) -> Response:
        return make_response(request, status, reason, to_tag=self._to_tag(), headers=headers)

    async def handle(self, request: Request, peer: Peer, now: float) -> Response | None:
        """Answer one REGISTER; None means drop it (the source is blocked)."""
        source = peer.host
        if self.throttle.is_blocked(source, now):
            metrics.AUTH_BLOCKED.inc()
            return None
        ruri = request.uri
        aor_uri = request.to.uri
        if not isinstance(ruri, SipUri) or not isinstance(aor_uri, SipUri):
            # RFC 4475 §3.3.4: the To of a REGISTER must be a SIP or SIPS AOR
            return self._reply(request, 400, reason="To must be a SIP URI")
        domain = ruri.host_lower
        if self.config.default_domain and _is_ip(domain):
            domain = self.config.default_domain.lower()
        try:
            # the request must be well formed before it is worth a challenge (RFC 4475 §3.1.2.13)
            contacts, wildcard = _contacts(request)
        except SipParseError as exc:
            return self._reply(request, exc.status, reason=exc.reason)
        auth_value = request.headers.get("authorization")
        creds = None
        if auth_value is not None:
            try:
                creds = parse_credentials(auth_value)
            except UnsupportedSchemeError:
                creds = None  # RFC 4475 §3.3.7: ignore a scheme we do not know and challenge
            except DigestError:
                return self._reply(request, 400, reason="Malformed Authorization")
        if creds is None:
            metrics.REGISTER_RESULTS.labels("challenged").inc()
            return self._challenge(request, domain, now, stale=False)

        username = aor_uri.user_unescaped or ""
        stored = await self.credentials.get(domain, creds.username)
        ha1: str | None = None
        if stored is not None:
            ha1 = stored.ha1_sha256 if creds.algorithm.hash_name == "sha256" else stored.ha1_md5
        result = self.verifier.verify(creds, method="REGISTER", ha1=ha1, realm=domain, now=now)
        if result is AuthResult.STALE:
            metrics.REGISTER_RESULTS.labels("stale").inc()
            return self._challenge(request, domain, now, stale=True)
        if (
            result is not AuthResult.OK
            or stored is None
            or creds.username != username  # the authenticated user may only register its own AOR
            or not _same_uri(creds.uri, request.uri_text)
        ):
            metrics.AUTH_FAILURES.inc()
            metrics.REGISTER_RESULTS.labels("forbidden").inc()
            if self.throttle.record_failure(source, now):
                log.warning("sip source blocked after failed authentications", source=str(peer),
                            domain=domain, call_id=request.call_id)
            return self._reply(request, 403)
        self.throttle.record_success(source)
        if not stored.enabled or stored.tenant_suspended:
            metrics.REGISTER_RESULTS.labels("disabled").inc()
            return self._reply(request, 403, reason="Extension disabled")
        response = self._update_bindings(request, peer, stored, contacts, wildcard, now)
        metrics.REGISTER_RESULTS.labels("ok" if response.status == 200 else str(response.status)).inc()
        return response

    def _challenge(self, request: Request, domain: str, now: float, *, stale: bool) -> Response:
        challenges = self.verifier.challenges(domain, now, stale=stale)
        return self._reply(request, 401, *(("WWW-Authenticate", c.to_header_value()) for c in challenges))

    # -- RFC 3261 §10.3 steps 6-8 ------------------------------------------------------------------
    def _update_bindings(self, request: Request, peer: Peer, creds: SipCredentials, contacts: list[NameAddr],
                         wildcard: bool, now: float) -> Response:
        cfg = self.config
        header_expires = _expires_value(request.headers.get("expires"))
        tenant_id, extension_id = creds.tenant_id, creds.extension_id
        call_id = request.call_id
        cseq = request.cseq.number
        if wildcard:
            # §10.3 step 6: "*" only alone and with Expires: 0
            if contacts or header_expires != 0:
                return self._reply(request, 400, reason="Wildcard Contact needs Expires: 0")
            for binding in list(self.location.current(tenant_id, extension_id).values()):
                if binding.call_id != call_id or cseq > binding.cseq:
                    self.location.remove(tenant_id, extension_id, binding.contact)
            return self._ok(request, tenant_id, extension_id, now)

        changes: list[tuple[str, int, NameAddr]] = []
        for addr in contacts:
            if not isinstance(addr.uri, SipUri):
                return self._reply(request, 400, reason="Contact must be a SIP URI")
            expires = _expires_value(get_param(addr.params, "expires"))
            if expires is None:
                expires = header_expires if header_expires is not None else cfg.default_expires
            if 0 < expires < cfg.min_expires:
                return self._reply(request, 423, ("Min-Expires", str(cfg.min_expires)))
            changes.append((str(addr.uri), min(expires, cfg.max_expires), addr))

        user_agent = (request.headers.get("user-agent") or "")[:255]
        existing = self.location.current(tenant_id, extension_id)
        for contact, expires, addr in changes:
            old = existing.get(contact)
            if old is not None and old.call_id == call_id and cseq <= old.cseq:
                continue  # §10.3 step 7: an out-of-order or repeated REGISTER changes nothing
            if expires == 0:
                self.location.remove(tenant_id, extension_id, contact)
                continue
            q = _q_value(get_param(addr.params, "q"))
            instance = get_param(addr.params, "+sip.instance")
            reg_id = get_param(addr.params, "reg-id")
            if instance:
                # RFC 5626: a device re-registering from a new address replaces its old binding
                for other in list(existing.values()):
                    if other.instance == instance and other.contact != contact:
                        self.location.remove(tenant_id, extension_id, other.contact)
            self.location.put(Binding(
                tenant_id=tenant_id, extension_id=extension_id, aor=f"{creds.number}@{creds.realm}",
                contact=contact, expires_at=now + expires, q=q, source=str(peer),
                connection=peer.connection, user_agent=user_agent, call_id=call_id, cseq=cseq,
                instance=instance or None, reg_id=int(reg_id) if reg_id and reg_id.isdigit() else None,
                registered_at=now,
            ))
        self._enforce_limit(tenant_id, extension_id, min(creds.max_devices, cfg.max_contacts), now)
        return self._ok(request, tenant_id, extension_id, now)

    def _enforce_limit(self, tenant_id: int, extension_id: int, limit: int, now: float) -> None:
        """Keep at most ``limit`` devices: the oldest registrations give way (Asterisk remove_existing)."""
        live = sorted(self.location.current(tenant_id, extension_id).values(), key=lambda b: b.registered_at)
        for binding in live[: max(0, len(live) - limit)]:
            self.location.remove(tenant_id, extension_id, binding.contact)

    def _ok(self, request: Request, tenant_id: int, extension_id: int, now: float) -> Response:
        bindings = self.location.lookup(tenant_id, extension_id, now)
        headers = [("Contact", f"<{b.contact}>;expires={b.remaining(now)}") for b in bindings]
        headers.append(("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))))
        return self._reply(request, 200, *headers)


def _contacts(request: Request) -> tuple[list[NameAddr], bool]:
    """The Contact values of a REGISTER, and whether one of them is the ``*`` wildcard."""
    contacts: list[NameAddr] = []
    wildcard = False
    for value in request.headers.get_all("contact"):
        parsed = parse_contacts(value)
        if parsed is None:
            wildcard = True
        else:
            contacts.extend(parsed)
    return contacts, wildcard


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _expires_value(value: str | None) -> int | None:
    """An Expires value; malformed or overlarge ones count as absent (RFC 4475 §3.1.2.4: use the default)."""
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 10:
        return None
    return min(int(value), 2**32 - 1)


def _q_value(value: str | None) -> float | None:
    try:
        q = float(value) if value else None
    except ValueError:
        return None
    return q if q is not None and 0.0 <= q <= 1.0 else None


def _same_uri(digest_uri: str, request_uri: str) -> bool:
    """Does the digest ``uri`` name the Request-URI (§22.4: it must)? Compared as SIP URIs (§19.1.4)."""
    if digest_uri == request_uri:
        return True
    try:
        a, b = parse_uri(digest_uri), parse_uri(request_uri)
    except SipParseError:
        return False
    if not isinstance(a, SipUri) or not isinstance(b, SipUri):
        return False
    return (a.scheme, a.user_unescaped, a.host_lower, a.port or 5060) == (
        b.scheme, b.user_unescaped, b.host_lower, b.port or 5060)
