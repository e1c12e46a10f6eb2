"""Digest authentication of requests from devices (RFC 3261 §22), shared by REGISTER and INVITE.

How it works: the domain a request is addressed to names the tenant and is the realm. A request
without usable credentials gets a challenge (401 for a registrar, 407 for calls), one per configured
algorithm, whatever the domain or user. Unknown domain, unknown user and wrong password all end in the
same 403 after the same work, so nobody learns which users exist.

Failures are counted twice (like Kamailio's pike with fail2ban, plus a per-account lock):

* per source address (an IPv6 /64 counts as one), each failure tagged with the account it was against;
  a source over the limit is ignored for a while. A success forgets only that address's failures
  against that same account, so a valid login of one's own never resets guesses at someone else's;
* per target account (domain, username; unknown names too, so a lock says nothing about existence),
  never forgotten on success: guesses spread over many addresses still lock the account. A locked
  account is refused without a check (503 with Retry-After: a phone retries then, where a 403 would
  leave it unregistered, RFC 3261 §21.4.4), except from addresses the account has proven: the source
  of one of its live bindings (the location service, restored from the database after a restart) or
  an address where it authenticated recently (a few per account, so no account can push out another's).
  So anyone may lock an extension against guessing, but not its own phones out.

Behind a trusted edge proxy (``edges``) the source address of these counts is the phone's address as the
edge reports it (:class:`~zvonok.telephony.edge.TrustedEdges`), not the edge's.

Throttles run on a monotonic clock (``clock``), never on the wall-clock ``now`` that nonces and
bindings use: a step of the system clock must neither lift nor stretch a ban.
Credentials are read through :class:`CredentialCache` so the hot path does not touch the database.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from zvonok import metrics
from zvonok.logs import get_logger
from zvonok.netaddr import address_key
from zvonok.org.service import SipCredentials
from zvonok.sip.digest import (
    AuthResult,
    Credentials,
    DigestError,
    DigestVerifier,
    UnsupportedSchemeError,
    parse_credentials,
)
from zvonok.sip.errors import SipParseError
from zvonok.sip.message import Request, Response, make_response
from zvonok.sip.peer import Peer
from zvonok.sip.uri import SipUri, parse_uri

from .cache import BoundedCache
from .edge import TrustedEdges
from .location import Location
from .throttle import FailureThrottle

log = get_logger(__name__)

CredentialLookup = Callable[[str, str], Awaitable[SipCredentials | None]]


class CredentialCache:
    """SIP credentials by (domain, username), held in memory like a registrar's user table.

    The server preloads every extension (:meth:`preload`, at start and then every ``ttl`` seconds), and
    org events drop what changed. While the preloaded table is whole it is authoritative: a name it does
    not hold is unknown, answered from memory at the cost of a known one. Asking the database for
    unknown names only (≈1–3 ms against ≈0.3 ms) told a scanner which names exist. The database is
    asked only for names an event said changed (until the next preload), and for every miss when no
    preload was made or the table outgrew ``max_entries`` (then found users stay ``ttl`` seconds,
    unknown ones ``negative_ttl`` seconds in a separate, smaller table, so a scanner's guesses never
    push real users out).

    A reload builds the new table beside the old one, yielding to the event loop every ``RELOAD_CHUNK``
    entries (200,000 in one go held the loop for 0.6 s), and swaps it in at once. Changed names are
    unsure per (domain, username): a change in one tenant must not make "100" a database question (and
    so a known/unknown timing difference) in every domain.
    """

    RELOAD_CHUNK = 5_000

    def __init__(self, lookup: CredentialLookup, ttl: float = 600.0, negative_ttl: float = 30.0,
                 max_entries: int = 500_000, max_misses: int = 50_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self.ttl = ttl
        self._table_options: dict[str, Any] = dict(ttl=ttl, negative_ttl=negative_ttl, max_entries=max_entries,
                                                   max_misses=max_misses, clock=clock)
        self._cache = self._new_table()
        self._complete = False
        self._evicted_at_preload = 0
        # (domain, username) changed since the preload: ask the database. Domain None: in any domain
        # (a change in a tenant whose domain we do not know)
        self._unsure: set[tuple[str | None, str]] = set()
        self._changed_in_reload: set[tuple[str | None, str]] | None = None  # changed while a reload runs
        self._domains: dict[int, str] = {}  # tenant id -> its domain, as far as the table tells

    @property
    def complete(self) -> bool:
        """Does memory hold every extension (a name not found is unknown without asking)?"""
        return self._complete and self._cache.evicted == self._evicted_at_preload

    def peek(self, domain: str, username: str) -> tuple[bool, SipCredentials | None]:
        """(found, credentials) from memory only; found is False when the database must be asked."""
        found, creds = self._cache.get((domain, username))
        if found:
            return True, creds
        if self.complete and (domain, username) not in self._unsure and (None, username) not in self._unsure:
            return True, None
        return False, None

    async def get(self, domain: str, username: str) -> SipCredentials | None:
        found, creds = self.peek(domain, username)
        if found:
            return creds
        creds = await self._lookup(domain, username)
        self._cache.put((domain, username), creds)
        if creds is not None:
            self._domains[creds.tenant_id] = creds.realm
        return creds

    def _new_table(self) -> BoundedCache[tuple[str, str], SipCredentials]:
        return BoundedCache[tuple[str, str], SipCredentials](**self._table_options)

    def preload(self, credentials: Iterable[SipCredentials]) -> int:
        """Replace the table with ``credentials``, every extension there is; they stay until the next
        preload (events drop the ones that change)."""
        table, domains = self._new_table(), dict[int, str]()
        for creds in credentials:
            self._add(table, domains, creds)
        return self._install(table, domains, set())

    async def reload(self, fetch: Callable[[], Awaitable[Iterable[SipCredentials]]]) -> int:
        """:meth:`preload` what ``fetch`` reads, in chunks between which the event loop runs; a name
        changed while it reads and builds stays unsure (the rows read may predate the change)."""
        changed: set[tuple[str | None, str]] = set()
        self._changed_in_reload = changed
        try:
            rows = await fetch()
            table, domains = self._new_table(), dict[int, str]()
            for count, creds in enumerate(rows, 1):
                self._add(table, domains, creds)
                if count % self.RELOAD_CHUNK == 0:
                    await asyncio.sleep(0)
        finally:
            self._changed_in_reload = None
        return self._install(table, domains, changed)

    @staticmethod
    def _add(table: BoundedCache[tuple[str, str], SipCredentials], domains: dict[int, str],
             creds: SipCredentials) -> None:
        table.put((creds.realm, creds.number), creds, ttl=math.inf)
        domains[creds.tenant_id] = creds.realm

    def _install(self, table: BoundedCache[tuple[str, str], SipCredentials], domains: dict[int, str],
                 unsure: set[tuple[str | None, str]]) -> int:
        self._cache = table
        self._evicted_at_preload = 0  # one pushed out while building or from here on: the table is not whole
        self._domains = domains
        self._unsure = unsure
        self._complete = True
        return len(table)

    def _mark_unsure(self, names: Iterable[tuple[str | None, str]]) -> None:
        names = set(names)
        self._unsure |= names
        if self._changed_in_reload is not None:
            self._changed_in_reload |= names

    def invalidate_extension(self, extension_id: int, number: str | None = None,
                             tenant_id: int | None = None) -> None:
        """Forget one extension (and any cached "unknown user" under its number) of tenant ``tenant_id``."""
        dropped = self._cache.discard_where(
            lambda key, creds: (creds.extension_id == extension_id) if creds is not None else key[1] == number)
        names: list[tuple[str | None, str]] = [(creds.realm, creds.number) for creds in dropped]
        if number is not None:
            names.append((self._domains.get(tenant_id) if tenant_id is not None else None, number))
        self._mark_unsure(names)

    def invalidate(self, tenant_id: int | None = None) -> None:
        """Forget cached entries of a tenant (all when None)."""
        if tenant_id is None:
            self._cache.clear()
            self._complete = False
            return
        # entries for unknown users (None) carry no tenant: drop them too, they may exist now
        dropped = self._cache.discard_where(lambda _key, creds: creds is None or creds.tenant_id == tenant_id)
        # every name it had is asked for again, in its domain (which cannot change while it has extensions)
        self._mark_unsure((creds.realm, creds.number) for creds in dropped)
        if not dropped:  # its domain may have changed (it has no extensions then): learned again later
            self._domains.pop(tenant_id, None)


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """``credentials`` when authenticated; else ``response`` to send (a challenge or a refusal), or
    neither when the request must be dropped (its source is blocked)."""

    credentials: SipCredentials | None = None
    response: Response | None = None


# How long an address stays "proven" for an account after a success there (it may then authenticate
# while the account is locked): longer than any registration interval, so a phone refreshing its
# registration keeps proving itself.
PROVEN_TIME = 86_400.0
# Addresses remembered per account (a desk phone, a softphone, a mobile; the oldest goes first): an
# account's own successes can push out only its own addresses.
PROVEN_PER_ACCOUNT = 8


class Authenticator:
    """``throttle`` counts failures per source address (tagged by account), ``target_throttle`` per account."""

    def __init__(self, *, credentials: CredentialCache, verifier: DigestVerifier, throttle: FailureThrottle,
                 to_tag: Callable[[], str], default_domain: str | None = None,
                 target_throttle: FailureThrottle | None = None, clock: Callable[[], float] = time.monotonic,
                 location: Location | None = None, edges: TrustedEdges | None = None) -> None:
        self.credentials = credentials
        self.verifier = verifier
        self.throttle = throttle
        self.target_throttle = target_throttle
        self.default_domain = default_domain.lower() if default_domain else None
        self._to_tag = to_tag
        self._clock = clock
        self.location = location
        self.edges = edges or TrustedEdges()
        # (domain, username) -> {address: proven until (monotonic)}; accounts in order of their last
        # success, so those whose every address expired are pruned from the front. Only a correct
        # password adds an entry: at most PROVEN_PER_ACCOUNT per real account.
        self._proven: OrderedDict[tuple[str, str], OrderedDict[str, float]] = OrderedDict()

    def domain_of(self, uri: SipUri) -> str:
        """The tenant domain a request to ``uri`` is for (the default domain for a bare IP address)."""
        domain = uri.host_lower
        if self.default_domain and _is_ip(domain):
            return self.default_domain
        return domain

    def client_host(self, request: Request, peer: Peer) -> str:
        """Where ``request`` really comes from (the phone behind a trusted edge, else the packet's source)."""
        return self.edges.client_host(request, peer)

    def source_key(self, request: Request, peer: Peer) -> str:
        """The source per-address limits count ``request`` against (:func:`zvonok.netaddr.address_key`)."""
        return address_key(self.edges.client_host(request, peer))

    def blocked(self, peer: Peer, request: Request | None = None) -> bool:
        """Is the request's source banned (drop it before any work)? Without the request: the packet's
        source (a request relayed by a trusted edge is then counted as the edge's)."""
        source = self.source_key(request, peer) if request is not None else address_key(peer.host)
        if self.throttle.is_blocked(source, self._clock()):
            metrics.AUTH_BLOCKED.inc()
            return True
        return False

    def _locked_out(self, address: str, now: float, domain: str, username: str,
                    stored: SipCredentials | None) -> float | None:
        """Seconds until the account's lock ends when it refuses this source, else None (not locked,
        or the source is one the account has proven)."""
        if self.target_throttle is None:
            return None
        mono = self._clock()
        until = self.target_throttle.blocked_until((domain, username), mono)
        if until is None:
            return None
        proven = self._proven.get((domain, username))
        if proven is not None and proven.get(address, -math.inf) > mono:
            return None
        if stored is not None and self.location is not None and any(
            binding.expires_at > now
            and (address_key(binding.client) if binding.client else _source_address(binding.source)) == address
            for binding in self.location.current(stored.tenant_id, stored.extension_id).values()
        ):
            return None
        return until - mono

    def _prove(self, address: str, domain: str, username: str) -> None:
        mono = self._clock()
        while self._proven:  # accounts whose last success is older than PROVEN_TIME hold nothing live
            account, addresses = next(iter(self._proven.items()))
            if next(reversed(addresses.values())) > mono:
                break
            del self._proven[account]
        addresses = self._proven.pop((domain, username)) if (domain, username) in self._proven else OrderedDict()
        self._proven[(domain, username)] = addresses
        addresses.pop(address, None)
        while len(addresses) >= PROVEN_PER_ACCOUNT:
            addresses.popitem(last=False)
        addresses[address] = mono + PROVEN_TIME

    def reply(self, request: Request, status: int, *headers: tuple[str, str], reason: str | None = None) -> Response:
        return make_response(request, status, reason, to_tag=self._to_tag(), headers=headers)

    async def authenticate(self, request: Request, peer: Peer, now: float, *, domain: str,
                           user: str | None = None, proxy: bool = False) -> AuthOutcome:
        """Check the request's digest credentials for ``domain``.

        ``user``: the only username allowed (a REGISTER may bind only its own AOR). ``proxy``: use
        Proxy-Authorization and 407 (a request to be routed onwards, RFC 3261 §22.3) instead of 401.
        """
        outcome = self.check(request, peer, now, domain=domain, user=user, proxy=proxy)
        if isinstance(outcome, AuthOutcome):
            return outcome
        stored = await self.credentials.get(domain, outcome)
        return self._decide(request, peer, now, domain, user, proxy, stored)

    def check(self, request: Request, peer: Peer, now: float, *, domain: str, user: str | None = None,
              proxy: bool = False) -> AuthOutcome | str:
        """:meth:`authenticate` without waiting: the outcome, or the username whose credentials must be
        fetched first (not in the cache). Keeps the hot path free of a task per request."""
        auth_value = request.headers.get("proxy-authorization" if proxy else "authorization")
        creds = None
        if auth_value is not None:
            try:
                creds = parse_credentials(auth_value)
            except UnsupportedSchemeError:
                creds = None  # RFC 4475 §3.3.7: ignore a scheme we do not know and challenge
            except DigestError:
                return AuthOutcome(response=self.reply(request, 400, reason="Malformed Authorization"))
        if creds is None:
            return AuthOutcome(response=self._challenge(request, domain, now, stale=False, proxy=proxy))
        hit, stored = self.credentials.peek(domain, creds.username)
        if not hit:
            return creds.username
        return self._decide(request, peer, now, domain, user, proxy, stored, creds)

    def _decide(self, request: Request, peer: Peer, now: float, domain: str, user: str | None, proxy: bool,
                stored: SipCredentials | None, creds: Credentials | None = None) -> AuthOutcome:
        if creds is None:
            creds = parse_credentials(request.headers.get("proxy-authorization" if proxy else "authorization") or "")
        # before any check of the digest: a locked account tells an unproven source nothing, not even
        # whether its password was right (the lock is there to stop guessing)
        address = self.source_key(request, peer)
        locked_for = self._locked_out(address, now, domain, creds.username, stored)
        if locked_for is not None:
            metrics.AUTH_BLOCKED.inc()
            return AuthOutcome(response=self.reply(request, 503, ("Retry-After", str(max(1, math.ceil(locked_for))))))
        ha1: str | None = None
        if stored is not None:
            ha1 = stored.ha1_sha256 if creds.algorithm.hash_name == "sha256" else stored.ha1_md5
        result = self.verifier.verify(creds, method=request.method, ha1=ha1, realm=domain, now=now)
        if result is AuthResult.STALE:
            return AuthOutcome(response=self._challenge(request, domain, now, stale=True, proxy=proxy))
        if (
            result is not AuthResult.OK
            or stored is None
            or (user is not None and creds.username != user)
            or not _same_uri(creds.uri, request.uri_text)  # §22.4: the digest names this request
        ):
            metrics.AUTH_FAILURES.inc()
            mono = self._clock()
            target = (domain, creds.username)
            if self.throttle.record_failure(address, mono, target):
                log.warning("sip source blocked after failed authentications", source=str(peer),
                            domain=domain, method=request.method, call_id=request.call_id)
            if self.target_throttle is not None and self.target_throttle.record_failure(target, mono):
                log.warning("sip account locked after failed authentications", domain=domain,
                            username=creds.username, source=str(peer), method=request.method)
            return AuthOutcome(response=self.reply(request, 403))
        self.throttle.record_success(address, (domain, creds.username))
        self._prove(address, domain, creds.username)
        if not stored.enabled or stored.tenant_suspended:
            return AuthOutcome(response=self.reply(request, 403, reason="Extension disabled"))
        return AuthOutcome(credentials=stored)

    def _challenge(self, request: Request, domain: str, now: float, *, stale: bool, proxy: bool) -> Response:
        challenges = self.verifier.challenges(domain, now, stale=stale)
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        return self.reply(request, 407 if proxy else 401, *((name, c.to_header_value()) for c in challenges))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _source_address(source: str) -> str:
    """The address key of a binding's ``source`` ("udp:203.0.113.5:5060", "tcp:[2001:db8::1]:5061")."""
    host = source.partition(":")[2].rpartition(":")[0]
    return address_key(host)


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
