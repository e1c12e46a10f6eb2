"""Outbound registration of one SIP trunk to a carrier's registrar (RFC 3261 §10.2), sans-I/O.

How it works
------------
One :class:`RegistrationClient` per trunk registration, driven like an aioquic connection: the adapter
calls :meth:`~RegistrationClient.start`, feeds final responses (:meth:`~RegistrationClient.receive_response`)
and transaction failures (:meth:`~RegistrationClient.transaction_failed`), re-arms one timer from
:meth:`~RegistrationClient.get_timer` and calls :meth:`~RegistrationClient.handle_timer` when it
passes; after every call it sends :meth:`~RegistrationClient.requests_to_send` to
:attr:`~RegistrationClient.peer` through the transaction layer and logs/publishes
:meth:`~RegistrationClient.next_event`. Time is always the ``now`` argument; the Call-ID, From tag,
Via branches and cnonces come from injected generators.

The REGISTER (§10.2): Request-URI the registrar, From and To the AOR, From tag and Call-ID fixed for
the client's life (§10.2: one Call-ID for all registrations to a registrar, so that it orders them by
CSeq), CSeq one higher for every request, our Contact and ``Expires``.

==================  ===============================================================================
state               meaning
==================  ===============================================================================
UNREGISTERED        not started, or stopped and the binding removed (or given up on)
REGISTERING         a REGISTER is outstanding and no binding is known to exist
REGISTERED          the registrar granted a binding; a refresh may be outstanding
FAILED              the last attempt failed (``last_error``); a retry is scheduled
UNREGISTERING       :meth:`stop` sent ``Expires: 0`` and waits for the answer
==================  ===============================================================================

Answers to a REGISTER:

* 401/407: answered once with credentials from :mod:`.digest_client`. Another challenge to that answer
  means the password is wrong (FAILED "authentication failed") unless it says ``stale=true`` (RFC 7616
  §3.3), which is answered again, at most :data:`MAX_STALE_ANSWERS` times per attempt. The accepted
  challenge is kept: refreshes carry credentials for its nonce with nc + 1 straight away (RFC 7616
  §3.4 allows nonce reuse), which saves the carrier a round trip; a registrar that has forgotten the
  nonce challenges again and is answered as usual.
* 2xx: REGISTERED. The granted time is the ``expires`` parameter of our Contact in the response, else
  the ``Expires`` header, else what we asked (§10.2.4). The refresh is due at
  ``max(expires / 2, expires - REFRESH_MARGIN)`` — see :func:`refresh_delay`.
* 423 Interval Too Brief: ask again at once with the ``Min-Expires`` value (§10.2.8), if it is larger.
* anything else, a transaction timeout or a transport error: FAILED; retry after ``Retry-After`` when
  the response has one (§20.33), else after 30 s, 60 s, 120 s … capped at 300 s (:func:`retry_delay`).
  A failed refresh leaves ``registered_until`` as it was: the registrar may still hold that binding.

§10.2 forbids a new REGISTER before the previous one completes, so :meth:`stop` during an outstanding
REGISTER waits for it, then removes the binding if the registrar may hold one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from .dialog import MAX_FORWARDS, add_top_via
from .digest_client import (
    ReceivedChallenge,
    add_credentials,
    authorize_request,
    challenges_of,
    select_challenges,
)
from .errors import SipParseError, SipUsageError
from .headers import get_param, parse_contacts
from .message import Headers, Request, Response
from .peer import Peer
from .uri import SipUri, Uri, parse_uri

__all__ = [
    "MAX_STALE_ANSWERS",
    "REFRESH_MARGIN",
    "Registered",
    "RegistrationClient",
    "RegistrationEvent",
    "RegistrationFailed",
    "RegistrationState",
    "RegistrationStatus",
    "Unregistered",
    "refresh_delay",
    "retry_delay",
]

# A refresh is sent this long before the binding lapses (for long bindings): the 64*T1 = 32 s of
# Timer F with the default T1, so that a refresh that times out has been reported as FAILED before
# the carrier drops the binding, and no call is refused by a trunk that looks registered.
REFRESH_MARGIN = 32.0
# A registrar that says stale=true forever (a clock problem on its side) must not keep us in a loop.
MAX_STALE_ANSWERS = 2
AUTH_FAILED = "authentication failed"


class RegistrationState(StrEnum):
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"
    UNREGISTERING = "unregistering"


@dataclass(frozen=True, slots=True, kw_only=True)
class Registered:
    """The registrar granted (or renewed) the binding for ``expires`` seconds."""

    aor: str
    at: float
    expires: int
    registered_until: float
    refresh_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationFailed:
    """An attempt failed: ``error`` is "403 Forbidden", "timeout", "authentication failed" …"""

    aor: str
    at: float
    error: str
    status: int | None
    retry_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Unregistered:
    """After :meth:`RegistrationClient.stop`: ``error`` is None when the registrar confirmed removal."""

    aor: str
    at: float
    error: str | None


RegistrationEvent = Registered | RegistrationFailed | Unregistered


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationStatus:
    """What the REST API shows for a trunk registration."""

    state: RegistrationState
    last_error: str | None
    registered_until: float | None
    last_attempt_at: float | None
    next_attempt_at: float | None


def refresh_delay(expires: float, margin: float = REFRESH_MARGIN) -> float:
    """Seconds after a 2xx to refresh a binding granted for ``expires`` seconds.

    ``expires - margin`` for long bindings (3600 → 3568), half the time for short ones (60 → 30,
    where ``expires - margin`` would leave too little or nothing), as the two meet at 2 × margin.
    """
    return max(expires / 2, expires - margin)


def retry_delay(failures: int, base: float = 30.0, cap: float = 300.0) -> float:
    """Back-off after ``failures`` consecutive failures (1 → base, 2 → 2·base, … at most ``cap``)."""
    if failures < 1:
        raise ValueError("failures starts at 1")
    return min(base * (1 << min(failures - 1, 16)), cap)


def _digits(value: str | None) -> int | None:
    """The leading integer of a header value (``Retry-After: 120 (busy);duration=60`` → 120)."""
    if value is None:
        return None
    text = value.strip()
    end = 0
    while end < len(text) and text[end].isdigit():
        end += 1
    return int(text[:end]) if 0 < end <= 10 else None


def _status_text(response: Response) -> str:
    return f"{response.status} {response.reason}".strip()


def _same_binding(a: Uri, b: Uri) -> bool:
    """Is ``a`` our contact ``b``? User, host and port as §19.1.4 compares them, an absent port taken
    as the default one (registrars add or drop ``:5060``); URI parameters are ignored, since
    registrars reorder or add them."""
    if not isinstance(a, SipUri) or not isinstance(b, SipUri):
        return str(a) == str(b)
    default = 5061 if b.scheme == "sips" else 5060
    return (a.scheme == b.scheme and a.user_unescaped == b.user_unescaped and a.host_lower == b.host_lower
            and (a.port or default) == (b.port or default))


def _parse_config_uri(text: str, what: str) -> Uri:
    try:
        return parse_uri(text)
    except SipParseError as exc:
        raise SipUsageError(f"bad {what} URI {text!r}: {exc.reason}") from exc


class RegistrationClient:
    """The registration of one trunk: see the module docstring for the states and the rules."""

    def __init__(
        self,
        *,
        registrar: str,
        aor: str,
        username: str,
        password: str,
        contact: str,
        peer: Peer,
        local_host: str,
        local_port: int | None,
        call_id_gen: Callable[[], str],
        tag_gen: Callable[[], str],
        branch_gen: Callable[[], str],
        cnonce_gen: Callable[[], str],
        expires: int = 3600,
        user_agent: str | None = None,
        retry_base: float = 30.0,
        retry_max: float = 300.0,
    ) -> None:
        if expires <= 0:
            raise SipUsageError("expires must be positive")
        self.registrar = str(_parse_config_uri(registrar, "registrar"))
        self.aor = str(_parse_config_uri(aor, "AOR"))
        self._contact_uri = _parse_config_uri(contact, "contact")
        self.username = username
        self._password = password
        self.peer = peer
        self.local_host = local_host
        self.local_port = local_port
        self.expires = expires  # what we ask for; raised by a 423's Min-Expires
        self.user_agent = user_agent
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._branch_gen = branch_gen
        self._cnonce_gen = cnonce_gen
        self.call_id = call_id_gen()
        self.tag = tag_gen()

        self.state = RegistrationState.UNREGISTERED
        self.last_error: str | None = None
        self.registered_until: float | None = None
        self.last_attempt_at: float | None = None
        self._running = False
        self._cseq = 0
        self._pending: Request | None = None
        self._pending_unregister = False
        self._deadline: float | None = None
        self._failures = 0
        # per attempt: did the outstanding request answer a challenge received in this attempt?
        self._answered_in_attempt = False
        self._stale_answers = 0
        # the challenges last answered successfully, for credentials on the next requests
        self._auth: list[ReceivedChallenge] = []
        self._nonce_counts: dict[str, int] = {}
        self._outbox: list[Request] = []
        self._events: deque[RegistrationEvent] = deque()

    # -- the adapter's side ---------------------------------------------------------------------------
    def requests_to_send(self) -> list[Request]:
        """The REGISTERs to send to :attr:`peer` (each in a new client transaction), in order."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> RegistrationEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is next due (a refresh or a retry), or None."""
        return self._deadline

    def status(self) -> RegistrationStatus:
        return RegistrationStatus(state=self.state, last_error=self.last_error,
                                  registered_until=self.registered_until,
                                  last_attempt_at=self.last_attempt_at, next_attempt_at=self._deadline)

    # -- inputs ------------------------------------------------------------------------------------------
    def start(self, now: float) -> None:
        """Register (again after :meth:`stop`); a client that is already started is a usage error."""
        if self._running:
            raise SipUsageError("registration already started")
        self._running = True
        self._failures = 0
        if self._pending is None:  # else an unregister is outstanding: its end starts us
            self._begin(now, unregister=False)

    def stop(self, now: float) -> None:
        """Remove the binding (REGISTER with ``Expires: 0``); no more refreshes or retries."""
        if not self._running:
            return
        self._running = False
        self._deadline = None
        if self._pending is None:
            self._wind_down(now)

    def handle_timer(self, now: float) -> None:
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        if self._running and self._pending is None:
            self._begin(now, unregister=False)

    def receive_response(self, response: Response, now: float) -> None:
        """A final response of our client transaction; others (provisional, stale) are ignored."""
        pending = self._pending
        if pending is None or response.status < 200:
            return
        try:
            if response.call_id != self.call_id or response.cseq.number != pending.cseq.number:
                return
        except SipParseError:
            return
        self._pending = None
        status = response.status
        if not self._running and not self._pending_unregister:
            # stop() came while this REGISTER was out: only whether it created a binding matters.
            if status < 300:
                self.registered_until = now + self._granted(response)
            self._wind_down(now)
        elif status in (401, 407):
            self._on_challenge(pending, response, now)
        elif self._pending_unregister:
            self._unregistered(now, None if status < 300 else _status_text(response))
        elif status < 300:
            self._on_success(response, now)
        elif status == 423:
            self._on_interval_too_brief(response, now)
        else:
            self._fail(now, _status_text(response), status, _digits(response.headers.get("retry-after")))

    def transaction_failed(self, now: float, *, request: Request | None = None,
                           reason: str = "timeout") -> None:
        """The outstanding REGISTER timed out (Timer F) or could not be sent (``reason`` says which).

        ``request``, when given, must be the outstanding one, else the call is ignored (a late report
        about a transaction we have moved on from).
        """
        pending = self._pending
        if pending is None or (request is not None and request.cseq.number != pending.cseq.number):
            return
        self._pending = None
        if self._pending_unregister:
            self._unregistered(now, reason)
        elif not self._running:
            self._wind_down(now, uncertain=True)  # the lost REGISTER may have created a binding
        else:
            self._fail(now, reason, None, None)

    # -- transitions ---------------------------------------------------------------------------------
    def _begin(self, now: float, *, unregister: bool) -> None:
        """A new attempt: a first registration, a refresh, a retry, or the removal."""
        self._pending_unregister = unregister
        self._answered_in_attempt = False
        self._stale_answers = 0
        self._deadline = None
        self.last_attempt_at = now
        if unregister:
            self.state = RegistrationState.UNREGISTERING
        elif self.state is not RegistrationState.REGISTERED:
            self.state = RegistrationState.REGISTERING
        self._send(0 if unregister else self.expires)

    def _send(self, expires: int) -> None:
        self._cseq += 1
        headers = Headers()
        headers.add("Max-Forwards", MAX_FORWARDS)
        headers.add("From", f"<{self.aor}>;tag={self.tag}")
        headers.add("To", f"<{self.aor}>")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self._cseq} REGISTER")
        headers.add("Contact", f"<{self._contact_uri}>")
        headers.add("Expires", str(expires))
        if self.user_agent is not None:
            headers.add("User-Agent", self.user_agent)
        request = Request("REGISTER", self.registrar, headers)
        add_top_via(request, self.peer.transport, self.local_host, self.local_port, branch=self._branch_gen())
        if self._auth:
            add_credentials(request, self._auth, username=self.username, password=self._password,
                            cnonce_gen=self._cnonce_gen, nonce_counts=self._nonce_counts)
        self._pending = request
        self._outbox.append(request)

    def _on_challenge(self, pending: Request, response: Response, now: float) -> None:
        challenges = challenges_of(response)
        stale = any(item.challenge.stale for item in challenges)
        answer: Request | None = None
        if stale:
            self._stale_answers += 1
        if (stale or not self._answered_in_attempt) and self._stale_answers <= MAX_STALE_ANSWERS:
            answer = authorize_request(pending, response, self.username, self._password, self._cnonce_gen,
                                       self._nonce_counts, branch_gen=self._branch_gen)
        if answer is None:
            self._auth = []
            self._nonce_counts.clear()
            error = AUTH_FAILED
            if select_challenges(challenges) is None:
                error = f"{_status_text(response)}: no digest challenge we can answer"
            if self._pending_unregister:
                self._unregistered(now, error)
            else:
                self._fail(now, error, response.status, None)
            return
        self._auth = select_challenges(challenges) or []
        nonces = {item.challenge.nonce for item in self._auth}
        for nonce in [n for n in self._nonce_counts if n not in nonces]:
            del self._nonce_counts[nonce]  # bounded: only the nonces we may still reuse
        self._answered_in_attempt = True
        self._cseq = answer.cseq.number
        self._pending = answer
        self._outbox.append(answer)

    def _granted(self, response: Response) -> int:
        for value in response.headers.get_all("contact"):
            try:
                contacts = parse_contacts(value)
            except SipParseError:
                continue  # someone else's odd binding must not hide ours
            for addr in contacts or ():
                if _same_binding(addr.uri, self._contact_uri):
                    granted = _digits(get_param(addr.params, "expires"))
                    if granted is not None:
                        return granted
        header = _digits(response.headers.get("expires"))
        return header if header is not None else self.expires

    def _on_success(self, response: Response, now: float) -> None:
        granted = self._granted(response)
        if granted <= 0:
            self._fail(now, f"{_status_text(response)} without a binding", response.status, None)
            return
        self.state = RegistrationState.REGISTERED
        self.last_error = None
        self._failures = 0
        self.registered_until = now + granted
        self._deadline = now + refresh_delay(granted)
        self._events.append(Registered(aor=self.aor, at=now, expires=granted,
                                       registered_until=self.registered_until, refresh_at=self._deadline))

    def _on_interval_too_brief(self, response: Response, now: float) -> None:
        minimum = _digits(response.headers.get("min-expires"))
        if minimum is None or minimum <= self.expires:
            # Nothing larger to offer: asking again would loop.
            self._fail(now, _status_text(response), response.status,
                       _digits(response.headers.get("retry-after")))
            return
        self.expires = minimum
        self._send(self.expires)  # same attempt (§10.2.8); credentials as for any later request

    def _fail(self, now: float, error: str, status: int | None, retry_after: int | None) -> None:
        self._failures += 1
        delay = float(max(retry_after, 1)) if retry_after is not None else retry_delay(
            self._failures, self.retry_base, self.retry_max)
        self.state = RegistrationState.FAILED
        self.last_error = error
        self._deadline = now + delay
        self._events.append(RegistrationFailed(aor=self.aor, at=now, error=error, status=status,
                                               retry_at=self._deadline))

    def _wind_down(self, now: float, *, uncertain: bool = False) -> None:
        """After stop(), with nothing outstanding: remove a binding the registrar may hold.

        ``uncertain``: the last REGISTER got no answer, so it may have created one.
        """
        maybe_bound = self.state is RegistrationState.REGISTERED or (
            self.registered_until is not None and self.registered_until > now)
        if maybe_bound or uncertain:
            self._begin(now, unregister=True)
        else:
            self._unregistered(now, None)

    def _unregistered(self, now: float, error: str | None) -> None:
        self._pending_unregister = False
        self.state = RegistrationState.UNREGISTERED
        self.registered_until = None
        self._deadline = None
        self._events.append(Unregistered(aor=self.aor, at=now, error=error))
        if self._running:  # start() was called while the removal was outstanding
            self._begin(now, unregister=False)
