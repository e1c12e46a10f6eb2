"""The registrar (RFC 3261 §10.3).

How it works: :meth:`Registrar.handle` takes a parsed REGISTER and its source and returns the response.
The domain in the Request-URI names the tenant; :class:`~zvonok.telephony.auth.Authenticator` checks
the digest (same answer for unknown domains, users and wrong passwords; throttling of failures).
Authenticated REGISTERs update the :class:`Location` following §10.3 steps 6–8, and the 200 lists the
current bindings. Behind an edge proxy (one of the trusted edges) the REGISTER's Path values (RFC 3327)
are stored with each of its bindings and echoed in the 200, which says ``Supported: path`` (see
:mod:`zvonok.telephony.edge`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from zvonok import metrics
from zvonok.org.service import SipCredentials
from zvonok.sip.errors import SipParseError
from zvonok.sip.headers import NameAddr, get_param, parse_contacts
from zvonok.sip.message import Request, Response
from zvonok.sip.peer import Peer
from zvonok.sip.uri import SipUri

from .auth import Authenticator
from .edge import path_of
from .location import Binding, Location


@dataclass(frozen=True, slots=True)
class Lookup:
    """What :meth:`Registrar.handle_now` needs fetched before it can answer."""

    domain: str
    username: str


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_contacts: int = 10


class Registrar:
    def __init__(self, *, location: Location, auth: Authenticator, config: RegistrarConfig) -> None:
        self.location = location
        self.auth = auth
        self.config = config

    def _reply(self, request: Request, status: int, *headers: tuple[str, str], reason: str | None = None) -> Response:
        return self.auth.reply(request, status, *headers, reason=reason)

    async def handle(self, request: Request, peer: Peer, now: float) -> Response | None:
        """Answer one REGISTER; None means drop it (the source is blocked)."""
        result = self.handle_now(request, peer, now)
        if isinstance(result, Lookup):
            await self.auth.credentials.get(result.domain, result.username)  # into the cache, then again
            result = self.handle_now(request, peer, now, fetched=True)
        assert not isinstance(result, Lookup)
        return result

    def handle_now(self, request: Request, peer: Peer, now: float, *,
                   fetched: bool = False) -> Response | None | Lookup:
        """:meth:`handle` without waiting, or the :class:`Lookup` to make first (credentials not cached).

        The SIP service calls this inline, so a REGISTER whose user is in memory costs no task.
        """
        auth = self.auth
        if auth.blocked(peer, request):
            return None
        ruri = request.uri
        aor_uri = request.to.uri
        if not isinstance(ruri, SipUri) or not isinstance(aor_uri, SipUri):
            # RFC 4475 §3.3.4: the To of a REGISTER must be a SIP or SIPS AOR
            return auth.reply(request, 400, reason="To must be a SIP URI")
        try:
            # the request must be well formed before it is worth a challenge (RFC 4475 §3.1.2.13)
            contacts, wildcard = _contacts(request)
            path = path_of(request)
        except SipParseError as exc:
            return auth.reply(request, exc.status, reason=exc.reason)
        if path and not auth.edges.trusts(peer.host):
            # only an edge we know may say where our INVITEs go: from anyone else a Path would point the
            # node's requests at any address (a reflector); its calls go back to the REGISTER's source
            path = ()
        domain = auth.domain_of(ruri)
        outcome = auth.check(request, peer, now, domain=domain, user=aor_uri.user_unescaped or "")
        if isinstance(outcome, str):
            if not fetched:
                return Lookup(domain, outcome)
            # pushed out of a full cache between the fetch and now: let the phone ask once more
            return auth.reply(request, 500, ("Retry-After", "1"))
        if outcome.credentials is None:
            status = outcome.response.status if outcome.response is not None else 0
            metrics.child(metrics.REGISTER_RESULTS, {401: "challenged", 403: "forbidden"}.get(status, str(status))).inc()
            return outcome.response
        response = self._update_bindings(request, peer, outcome.credentials, contacts, wildcard, path, now)
        metrics.child(metrics.REGISTER_RESULTS, "ok" if response.status == 200 else str(response.status)).inc()
        return response

    # -- RFC 3261 §10.3 steps 6-8 ------------------------------------------------------------------
    def _update_bindings(self, request: Request, peer: Peer, creds: SipCredentials, contacts: list[NameAddr],
                         wildcard: bool, path: tuple[str, ...], now: float) -> Response:
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
            return self._ok(request, tenant_id, extension_id, path, now)

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
        client = self.auth.client_host(request, peer)
        client = "" if client == peer.host else client
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
                registered_at=now, path=path, client=client,
            ))
        self._enforce_limit(tenant_id, extension_id, min(creds.max_devices, cfg.max_contacts), now)
        return self._ok(request, tenant_id, extension_id, path, now)

    def _enforce_limit(self, tenant_id: int, extension_id: int, limit: int, now: float) -> None:
        """Keep at most ``limit`` devices: the oldest registrations give way (Asterisk remove_existing)."""
        live = sorted(self.location.current(tenant_id, extension_id).values(), key=lambda b: b.registered_at)
        for binding in live[: max(0, len(live) - limit)]:
            self.location.remove(tenant_id, extension_id, binding.contact)

    def _ok(self, request: Request, tenant_id: int, extension_id: int, path: tuple[str, ...],
            now: float) -> Response:
        bindings = self.location.lookup(tenant_id, extension_id, now)
        headers = [("Contact", f"<{b.contact}>;expires={b.remaining(now)}") for b in bindings]
        # RFC 3327 §5.3: a copy of the path list goes back, so the phone can see the path it was given
        # (echoed whether or not it said Supported: path: edges add Path for phones that never heard of
        # it, and a phone ignores a header field it does not understand)
        headers += [("Path", value) for value in path]
        headers += [("Supported", "path"), ("Date", _http_date(int(now)))]
        return self._reply(request, 200, *headers)


_DATE_CACHE: list[object] = [0, ""]


def _http_date(second: int) -> str:
    """The Date header value (RFC 3261 §20.17), formatted once a second."""
    if _DATE_CACHE[0] != second:
        _DATE_CACHE[:] = [second, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(second))]
    return str(_DATE_CACHE[1])


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


