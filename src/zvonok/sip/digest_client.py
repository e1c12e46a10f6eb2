"""Client-side SIP digest authentication: answering a 401/407 challenge (RFC 3261 §22.2–22.3).

How it works
------------
1. :func:`challenges_of` reads every ``WWW-Authenticate`` (401) or ``Proxy-Authenticate`` (407) of a
   response with :func:`~zvonok.sip.digest.parse_challenge`; challenges we cannot parse (another scheme,
   an unknown algorithm) are skipped, not fatal: a server may offer Basic or SHA-512-256 beside MD5.
2. :func:`select_challenges` keeps, per realm, the topmost challenge we can answer: RFC 8760 §2.4 has
   the server list its challenges in order of preference and the client take the first it supports.
   We answer MD5, MD5-sess, SHA-256 and SHA-256-sess with ``qop=auth`` when it is offered, and the
   qop-less RFC 2069 form when no qop is offered (RFC 2617 §3.2.2.1); ``auth-int`` alone is refused,
   and so is a -sess challenge without qop (its HA1 needs a cnonce, which only travels with a qop).
3. :func:`authorization_value` builds the credentials (RFC 7616 §3.4; the hashes are
   :func:`~zvonok.sip.digest.compute_response`, shared with the server side). The digest-uri is the
   Request-URI (RFC 3261 §22.4). ``realm`` and ``opaque`` are echoed unchanged (RFC 7616 §3.4).
4. ``nc`` counts the requests sent with one nonce, this one included (RFC 7616 §3.4); the caller owns
   the ``nonce_counts`` mapping so that a later request may reuse a nonce (pre-emptive credentials)
   with ``nc`` + 1, which the server's replay check (digest.py's ``NonceManager.accept_nc``) expects.
5. :func:`authorize_request` returns a copy of the challenged request with the credentials, the next
   CSeq (§8.1.3.5: a resubmission with credentials is a new request) and a new Via branch (a new
   transaction). It returns None when answering would only loop: the challenged request already
   answered this very nonce and the server did not say ``stale=true`` (RFC 7616 §3.3: only a stale
   nonce means "the credentials were right, retry with the new nonce"), so the password is wrong.

Everything that should differ per run (cnonce, branch) comes from generators the caller injects.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass

from .digest import Challenge, DigestError, compute_response, ha1, parse_challenge, parse_credentials
from .grammar import quoted_string
from .message import Request, Response
from .transaction_messages import MAGIC_COOKIE, replace_top_via

__all__ = [
    "ReceivedChallenge",
    "add_credentials",
    "authorization_value",
    "authorize_request",
    "can_answer",
    "challenges_of",
    "select_challenges",
]

# RFC 3261 §22.2 (401, origin server or registrar) and §22.3 (407, proxy).
_CHALLENGE_HEADER = {401: "WWW-Authenticate", 407: "Proxy-Authenticate"}
_CREDENTIALS_HEADER = {False: "Authorization", True: "Proxy-Authorization"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedChallenge:
    """One parsed challenge and where it came from: ``proxy`` for a ``Proxy-Authenticate`` (407)."""

    challenge: Challenge
    proxy: bool = False

    @property
    def credentials_header(self) -> str:
        """The header that answers it: ``Authorization`` or ``Proxy-Authorization``."""
        return _CREDENTIALS_HEADER[self.proxy]


def challenges_of(response: Response) -> list[ReceivedChallenge]:
    """The Digest challenges of a 401 or 407, in order; unparsable or foreign ones are left out."""
    name = _CHALLENGE_HEADER.get(response.status)
    if name is None:
        return []
    found: list[ReceivedChallenge] = []
    for value in response.headers.get_all(name):
        try:
            challenge = parse_challenge(value)
        except DigestError:
            continue  # Basic, or an algorithm we do not know: another challenge may do
        found.append(ReceivedChallenge(challenge=challenge, proxy=response.status == 407))
    return found


def _qop_options(challenge: Challenge) -> list[str]:
    # qop-options is a quoted, comma-separated list (RFC 7616 §3.3); values are case-insensitive.
    if challenge.qop is None:
        return []
    return [item.strip().lower() for item in challenge.qop.split(",") if item.strip()]


def _chosen_qop(challenge: Challenge) -> str | None:
    """``"auth"``, or None for the RFC 2069 form; raises DigestError when neither is possible."""
    options = _qop_options(challenge)
    if "auth" in options:
        return "auth"
    if options:
        raise DigestError(f"unsupported qop {challenge.qop!r}")  # only auth-int (or unknown) offered
    if challenge.algorithm.is_session:
        raise DigestError(f"{challenge.algorithm.value} without qop")
    return None


def can_answer(challenge: Challenge) -> bool:
    """Whether :func:`authorization_value` can answer this challenge."""
    try:
        _chosen_qop(challenge)
    except DigestError:
        return False
    return True


def select_challenges(challenges: Sequence[ReceivedChallenge]) -> list[ReceivedChallenge] | None:
    """The topmost answerable challenge of every realm (RFC 8760 §2.4), in the order the realms came.

    None when some realm offers nothing we can answer: answering the others would only bring the
    same challenge back. An empty input gives None too.
    """
    chosen: dict[tuple[bool, str], ReceivedChallenge | None] = {}
    for item in challenges:
        key = (item.proxy, item.challenge.realm)
        if chosen.get(key) is None:
            chosen[key] = item if can_answer(item.challenge) else None
    if not chosen or any(item is None for item in chosen.values()):
        return None
    return [item for item in chosen.values() if item is not None]


def authorization_value(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int,
) -> str:
    """The ``Authorization``/``Proxy-Authorization`` value answering ``challenge`` (RFC 7616 §3.4).

    ``cnonce`` and ``nc`` are used only with ``qop=auth`` (the RFC 2069 form has neither). The
    parameter order puts ``nonce`` before ``cnonce``: old SIPp versions find a parameter by
    substring search and would otherwise read the cnonce as the nonce.
    """
    if not 0 < nc <= 0xFFFFFFFF:
        raise ValueError("nc must be positive and fit in 8 hex digits")
    qop = _chosen_qop(challenge)
    algorithm = challenge.algorithm
    nc_text = f"{nc:08x}"
    response = compute_response(
        ha1=ha1(username, challenge.realm, password, algorithm),
        nonce=challenge.nonce,
        method=method,
        uri=uri,
        algorithm=algorithm,
        qop=qop,
        nc=nc_text if qop is not None else None,
        cnonce=cnonce if qop is not None else None,
    )
    parts = [
        f"Digest username={quoted_string(username)}",
        f"realm={quoted_string(challenge.realm)}",
        f"nonce={quoted_string(challenge.nonce)}",
        f"uri={quoted_string(uri)}",
        f'response="{response}"',
        f"algorithm={algorithm.value}",
    ]
    if qop is not None:
        # RFC 3261 §25.1 and RFC 7616 §3.4: qop and nc are tokens, cnonce a quoted-string.
        parts += [f"cnonce={quoted_string(cnonce)}", f"qop={qop}", f"nc={nc_text}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={quoted_string(challenge.opaque)}")
    return ", ".join(parts)


def _answered_nonces(request: Request, header: str) -> set[tuple[str, str]]:
    """(realm, nonce) of the credentials ``request`` already carries in ``header``."""
    answered: set[tuple[str, str]] = set()
    for value in request.headers.get_all(header):
        try:
            creds = parse_credentials(value)
        except DigestError:
            continue
        answered.add((creds.realm, creds.nonce))
    return answered


def _realm_of(value: str) -> str | None:
    """The realm of a credentials value, or None if it does not parse (it is then replaced too)."""
    try:
        return parse_credentials(value).realm
    except DigestError:
        return None


def add_credentials(
    request: Request,
    selected: Sequence[ReceivedChallenge],
    *,
    username: str,
    password: str,
    cnonce_gen: Callable[[], str],
    nonce_counts: MutableMapping[str, int],
) -> None:
    """Put credentials answering ``selected`` into ``request`` (in place), each nonce's nc counted up.

    Credentials already there for the same realm and header are replaced; others (say, a
    Proxy-Authorization when a 401 follows) stay, as RFC 3261 §22.3 asks of a request that crosses
    several authenticating hops.
    """
    for item in selected:
        header = item.credentials_header
        realm = item.challenge.realm
        present = request.headers.get_all(header)
        kept = [value for value in present if _realm_of(value) not in (realm, None)]
        if len(kept) != len(present):
            request.headers.remove(header)
            for value in kept:
                request.headers.add(header, value)
        nonce = item.challenge.nonce
        count = nonce_counts.get(nonce, 0) + 1
        nonce_counts[nonce] = count
        request.headers.add(header, authorization_value(
            item.challenge, method=request.method, uri=request.uri_text, username=username,
            password=password, cnonce=cnonce_gen(), nc=count,
        ))
    request.invalidate()


def _copy(request: Request) -> Request:
    return Request(request.method, request.uri_text, request.headers.copy(), request.body)


def authorize_request(
    request: Request,
    response: Response,
    username: str,
    password: str,
    cnonce_gen: Callable[[], str],
    nonce_counts: MutableMapping[str, int],
    *,
    branch_gen: Callable[[], str] | None = None,
) -> Request | None:
    """A copy of ``request`` answering the 401/407 ``response``, or None if it cannot or must not be.

    The copy has the credentials, CSeq + 1 and a new top Via branch from ``branch_gen`` (without it the
    branch is removed, so that ``TransactionLayer.send_request`` adds one). ``request`` is unchanged.
    """
    selected = select_challenges(challenges_of(response))
    if selected is None:
        return None
    for item in selected:
        challenge = item.challenge
        if not challenge.stale and (challenge.realm, challenge.nonce) in _answered_nonces(
            request, item.credentials_header
        ):
            return None  # our answer to this very nonce was refused: the password is wrong
    out = _copy(request)
    cseq = request.cseq
    out.headers.set("CSeq", f"{cseq.number + 1} {cseq.method}")
    if out.headers.get_all("via"):
        via = out.top_via
        # Drop any branch however its name is spelled, then add ours (or leave it to the layer).
        via.params = {k: v for k, v in via.params.items() if k.lower() != "branch"}
        if branch_gen is not None:
            branch = branch_gen()
            via.params["branch"] = branch if branch.startswith(MAGIC_COOKIE) else MAGIC_COOKIE + branch
        replace_top_via(out, via)
    add_credentials(out, selected, username=username, password=password, cnonce_gen=cnonce_gen,
                    nonce_counts=nonce_counts)
    return out
