"""Server-side SIP digest authentication (RFC 3261 §22, RFC 2617 §3, RFC 7616 §3, RFC 8760).

How it works
------------
1. A request arrives without credentials (or with stale ones). The registrar answers 401/407 with one
   ``WWW-Authenticate``/``Proxy-Authenticate`` per :class:`Challenge` from
   :meth:`DigestVerifier.challenges`, in the configured algorithm order (RFC 8760 §2.4 lets the server
   offer several; SIPp and many phones read only the first and only know MD5, so order is policy).
2. Nonces are stateless (RFC 7616 §3.3 suggests this shape): ``time || generation || random ||
   HMAC-SHA256(secret, time || generation || random)``, base64url.  Whoever holds the secret can tell
   a genuine nonce from a forged one and how old it is, with no table; only the process that issued it
   (its generation, item 5) takes it as VALID.  An expired genuine nonce is *stale*: the client knew
   the password, so it gets ``stale=true`` and retries without asking the user (RFC 2617 §3.2.1).
3. The client answers with ``Authorization``; :func:`parse_credentials` reads it (RFC 3261 §25.1
   grammar, LWS folding §7.3.1, quoted-pair escapes) and :meth:`DigestVerifier.verify` recomputes
   ``response`` (RFC 2617 §3.2.2 / RFC 7616 §3.4.1)::

       HA1 = H(username ":" realm ":" password)         (-sess: H(HA1 ":" nonce ":" cnonce))
       HA2 = H(method ":" digest-uri)
       response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)    qop=auth
       response = H(HA1 ":" nonce ":" HA2)                                no qop (RFC 2069 form)

4. With qop=auth the nonce-count (``nc``) must grow for each use of one nonce (RFC 2617 §3.2.2
   "nonce-count"); :meth:`NonceManager.accept_nc` keeps the last accepted nc per nonce in a bounded
   table.  The RFC 2069 form has no nc, so it has no replay protection: RFC 3261 §22.4 item 8 keeps it
   acceptable for RFC 2543 clients, but a captured request then replays from anywhere for the nonce's
   lifetime, so it is refused unless ``DigestVerifier(accept_rfc2069=True)`` (old phones only).
5. The nc table lives in memory, so a restart forgets it: a nonce of another :class:`NonceManager`
   (another ``generation``, drawn at random when it is made) is STALE, never VALID, or a request
   captured just before a restart would replay once more after it.  The client gets a fresh nonce,
   useless without the password.  The generation, not the issue time, tells them apart: compared with
   the start time, every new nonce looked older than the start once the clock stepped back.

The verifier does not compare ``uri`` with the Request-URI (RFC 3261 §22.4 "the digest-uri ... MUST
match"): that needs the parsed request, so the registrar/proxy does it.  ``qop=auth-int`` and RFC 7616
``userhash`` are not supported (we never offer them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from .grammar import UNQUOTABLE_RE as _FORBIDDEN_IN_QUOTED
from .grammar import quoted_string as _quote

__all__ = [
    "Algorithm",
    "AuthResult",
    "Challenge",
    "Credentials",
    "DigestError",
    "DigestVerifier",
    "NonceManager",
    "NonceStatus",
    "UnsupportedSchemeError",
    "compute_response",
    "ha1",
    "ha2",
    "parse_challenge",
    "parse_credentials",
]


class DigestError(ValueError):
    """The peer sent credentials we cannot parse; answer with ``status``."""

    status: int = 400


class UnsupportedSchemeError(DigestError):
    """The credentials use a scheme other than Digest (e.g. RFC 4475 §3.3.7 ``regaut01``).

    A registrar ignores such credentials and challenges with Digest, hence 401 rather than 400.
    """

    status = 401

    def __init__(self, scheme: str) -> None:
        super().__init__(f"unsupported authentication scheme {scheme!r}")
        self.scheme = scheme


class Algorithm(StrEnum):
    """Digest algorithms (RFC 7616 §3.2; RFC 8760 §2.2 for SIP)."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA256 = "SHA-256"
    SHA256_SESS = "SHA-256-sess"

    @property
    def is_session(self) -> bool:
        return self.value.endswith("-sess")

    @property
    def hash_name(self) -> str:
        return "sha256" if self.value.startswith("SHA-256") else "md5"

    @classmethod
    def from_token(cls, token: str) -> Algorithm:
        """Look up an ``algorithm=`` value; tokens are case-insensitive (RFC 7616 §3.3)."""
        found = _ALGORITHMS_BY_LOWER.get(token.lower())
        if found is None:
            raise DigestError(f"unsupported digest algorithm {token!r}")
        return found


_ALGORITHMS_BY_LOWER: dict[str, Algorithm] = {a.value.lower(): a for a in Algorithm}
_HASHES: dict[str, Callable[[bytes], hashlib._Hash]] = {"md5": hashlib.md5, "sha256": hashlib.sha256}


def _h(algorithm: Algorithm, text: str) -> str:
    # surrogateescape: a header decoded with it hashes as the bytes the client hashed.
    return _HASHES[algorithm.hash_name](text.encode("utf-8", "surrogateescape")).hexdigest()


def ha1(username: str, realm: str, password: str, algorithm: Algorithm = Algorithm.MD5) -> str:
    """``H(username:realm:password)``, the value a user store keeps instead of the password.

    For the -sess algorithms this is the same storable value; the per-nonce session key
    ``H(HA1:nonce:cnonce)`` (RFC 7616 §3.4.2) is derived inside :func:`compute_response`.
    """
    return _h(algorithm, f"{username}:{realm}:{password}")


def ha2(method: str, uri: str, algorithm: Algorithm = Algorithm.MD5) -> str:
    """``H(method:digest-uri)`` for qop=auth or no qop (RFC 7616 §3.4.3)."""
    return _h(algorithm, f"{method}:{uri}")


def compute_response(
    *,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    algorithm: Algorithm,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The ``response`` value (RFC 7616 §3.4.1; RFC 2617 §3.2.2.1 for the qop-less RFC 2069 form).

    ``ha1`` is the stored value from :func:`ha1`.  Raises :class:`DigestError` for combinations the
    RFCs do not define (qop other than auth, qop=auth without nc/cnonce, -sess without cnonce).
    """
    if algorithm.is_session:
        if cnonce is None:
            raise DigestError(f"{algorithm.value} needs a cnonce")
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce}")
    a2 = ha2(method, uri, algorithm)
    if qop is None:
        return _h(algorithm, f"{ha1}:{nonce}:{a2}")
    if qop != "auth":
        raise DigestError(f"unsupported qop {qop!r}")
    if nc is None or cnonce is None:
        raise DigestError("qop=auth needs nc and cnonce")
    return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{a2}")


# --- parsing (RFC 3261 §25.1: credentials, auth-param, quoted-string; §7.3.1 folding) -------------

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_SCHEME_RE = re.compile(rf"({_TOKEN})(?:[ \t]+|$)")
# The name, EQUAL (SWS "=" SWS), then a quoted-string or an unquoted value.  Unquoted values are taken
# a little wider than `token` (anything up to whitespace, comma or quote) to accept sloppy clients.
_PARAM_RE = re.compile(rf'({_TOKEN})[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^ \t,"]+))', re.DOTALL)
_SEP_RE = re.compile(r"[ \t]*(,[ \t]*)?")
_FOLD_RE = re.compile(r"\r?\n(?=[ \t])")
_UNESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_NC_RE = re.compile(r"[0-9A-Fa-f]{8}")


def _unfold(value: str) -> str:
    try:
        value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise DigestError("header value is not UTF-8") from exc
    value = _FOLD_RE.sub("", value)
    if "\r" in value or "\n" in value:
        raise DigestError("line break inside header value")
    return value.strip(" \t")


def _split_scheme(value: str) -> tuple[str, str]:
    value = _unfold(value)
    m = _SCHEME_RE.match(value)
    if m is None:
        raise DigestError("missing authentication scheme")
    return m.group(1), value[m.end() :]


def _parse_params(text: str) -> dict[str, str]:
    """``auth-param *(COMMA auth-param)``; names lower-cased, duplicates rejected."""
    params: dict[str, str] = {}
    pos, end = 0, len(text)
    while True:
        m = _PARAM_RE.match(text, pos)
        if m is None:
            raise DigestError(f"bad auth-param at offset {pos}")
        name = m.group(1).lower()
        if name in params:
            # Two values for one name is how parser-differential attacks start: refuse.
            raise DigestError(f"duplicate parameter {name!r}")
        quoted = m.group(2)
        if quoted is None:
            params[name] = m.group(3)
        else:
            params[name] = _UNESCAPE_RE.sub(r"\1", quoted) if "\\" in quoted else quoted
        pos = m.end()
        sep = _SEP_RE.match(text, pos)
        assert sep is not None  # the pattern matches the empty string
        pos = sep.end()
        if pos == end:
            return params
        # A missing comma between two params (RFC 3665 §2.1 F3 has one) is accepted when whitespace
        # separates them; a value glued to the next name is not.
        if sep.group(1) is None and sep.end() == m.end():
            raise DigestError(f"expected ',' at offset {pos}")


def _digest_params(value: str) -> tuple[str, dict[str, str]]:
    scheme, rest = _split_scheme(value)
    if scheme.lower() != "digest":
        raise UnsupportedSchemeError(scheme)
    if not rest:
        raise DigestError("Digest without parameters")
    return scheme, _parse_params(rest)


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """A parsed ``Authorization``/``Proxy-Authorization`` value (RFC 3261 §25.1 digest-response)."""

    scheme: str
    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: Algorithm = Algorithm.MD5
    cnonce: str | None = None
    nc: str | None = None
    qop: str | None = None
    opaque: str | None = None
    extra_params: Mapping[str, str] = field(default_factory=dict, hash=False)


_CREDENTIAL_FIELDS = ("username", "realm", "nonce", "uri", "response")
_KNOWN = frozenset({*_CREDENTIAL_FIELDS, "algorithm", "cnonce", "nc", "qop", "opaque"})


def parse_credentials(value: str) -> Credentials:
    """Parse credentials; raises only :class:`DigestError` (or its subclass
    :class:`UnsupportedSchemeError`, which the caller may ignore and challenge instead)."""
    scheme, params = _digest_params(value)
    missing = [name for name in _CREDENTIAL_FIELDS if name not in params]
    if missing:
        raise DigestError(f"missing {', '.join(missing)}")
    algorithm = Algorithm.from_token(params["algorithm"]) if "algorithm" in params else Algorithm.MD5
    nc = params.get("nc")
    if nc is not None and _NC_RE.fullmatch(nc) is None:
        raise DigestError("nc must be 8 hex digits")
    qop = params.get("qop")
    return Credentials(
        scheme=scheme,
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"],
        algorithm=algorithm,
        cnonce=params.get("cnonce"),
        nc=nc,
        # qop is a token in credentials, but many UAs quote it; values are case-insensitive.
        qop=qop.lower() if qop is not None else None,
        opaque=params.get("opaque"),
        extra_params={k: v for k, v in params.items() if k not in _KNOWN},
    )


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate``/``Proxy-Authenticate`` value (RFC 3261 §22.1, RFC 7616 §3.3)."""

    realm: str
    nonce: str
    algorithm: Algorithm = Algorithm.MD5
    qop: str | None = "auth"
    opaque: str | None = None
    stale: bool = False

    def __post_init__(self) -> None:
        for text in (self.realm, self.nonce, self.opaque or "", self.qop or ""):
            if _FORBIDDEN_IN_QUOTED.search(text):
                raise ValueError("CR, LF or NUL in a challenge parameter")

    def to_header_value(self) -> str:
        parts = [f"Digest realm={_quote(self.realm)}", f"nonce={_quote(self.nonce)}"]
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        parts.append(f"algorithm={self.algorithm.value}")
        if self.qop is not None:
            # qop-options is always a quoted list in a challenge (RFC 7616 §3.3).
            parts.append(f"qop={_quote(self.qop)}")
        if self.stale:
            parts.append("stale=true")
        return ", ".join(parts)


def parse_challenge(value: str) -> Challenge:
    """Parse a Digest challenge (the UAC side, e.g. registering to a trunk); raises DigestError."""
    _, params = _digest_params(value)
    if "realm" not in params or "nonce" not in params:
        raise DigestError("challenge without realm or nonce")
    algorithm = Algorithm.from_token(params["algorithm"]) if "algorithm" in params else Algorithm.MD5
    try:
        return Challenge(
            realm=params["realm"],
            nonce=params["nonce"],
            algorithm=algorithm,
            qop=params.get("qop"),
            opaque=params.get("opaque"),
            stale=params.get("stale", "false").lower() == "true",
        )
    except ValueError as exc:  # only reachable through escapes like \<NUL>
        raise DigestError(str(exc)) from exc


# --- nonces ----------------------------------------------------------------------------------------


class NonceStatus(Enum):
    VALID = "valid"
    STALE = "stale"  # genuine, but older than the lifetime (or from the future: clock stepped back)
    INVALID = "invalid"  # forged, truncated or garbage


_NONCE_TIME = struct.Struct(">q")  # issue time in milliseconds
# 6 + 6 where 12 random bytes were: the nonce keeps its length and MAC, so one issued before an
# upgrade is still genuine, and its first 6 random bytes make it another generation (STALE, not a
# failure that would count towards a ban). 48 bits each: two starts sharing a generation, or two nonces
# of one millisecond sharing their random part, are 2^-48 events.
_NONCE_GENERATION = 6
_NONCE_RANDOM = 6
_NONCE_MAC = 16  # HMAC-SHA256 truncated to 128 bits
_NONCE_BODY = _NONCE_TIME.size + _NONCE_GENERATION + _NONCE_RANDOM
_NONCE_RAW = _NONCE_BODY + _NONCE_MAC  # 36 bytes -> 48 base64url chars, no padding
_NONCE_LEN = _NONCE_RAW * 4 // 3
_NONCE_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_MAC_LABEL = b"zvonok-digest-nonce-v1\x00"
# The issue time given to a genuine nonce of another generation: no real nonce has it (times are
# non-negative), and it is always STALE
_OTHER_GENERATION = -1
# Nodes sharing the secret may disagree slightly about the time; a nonce a little "from the future"
# is still ours.
_CLOCK_SKEW = 5.0


class NonceManager:
    """Issues and checks stateless HMAC nonces; remembers the last nc accepted per nonce.

    The nc table is bounded: entries of expired nonces are dropped as time passes, and when it holds
    ``max_entries`` the oldest entry is evicted.  Eviction raises a floor: a nonce issued at or before
    the newest evicted one and absent from the table is refused by :meth:`accept_nc`, so eviction
    never re-opens a replay (the client gets ``stale=true`` and a fresh nonce instead).
    """

    def __init__(
        self,
        secret: bytes,
        lifetime: float,
        random_bytes: Callable[[int], bytes],
        *,
        max_entries: int = 100_000,
        generation: bytes | None = None,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        if lifetime <= 0:
            raise ValueError("nonce lifetime must be positive")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._secret = secret
        self.lifetime = lifetime
        self._random_bytes = random_bytes
        self._max_entries = max_entries
        # nonce -> (issue time in ms, last accepted nc); insertion order ~ issue order.
        self._nc: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._floor_ms: int | None = None
        # this manager's nonces; another generation's (an earlier process) may have had ncs accepted
        # that we no longer know
        self.generation = random_bytes(_NONCE_GENERATION) if generation is None else generation
        if len(self.generation) != _NONCE_GENERATION:
            raise ValueError(f"generation must be {_NONCE_GENERATION} bytes")
        self._last: tuple[str | None, int] = (None, 0)  # the last nonce whose MAC was checked

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, _MAC_LABEL + body, hashlib.sha256).digest()[:_NONCE_MAC]

    def issue(self, now: float) -> str:
        body = _NONCE_TIME.pack(round(now * 1000)) + self.generation + self._random_bytes(_NONCE_RANDOM)
        if len(body) != _NONCE_BODY:
            raise ValueError("random_bytes returned the wrong length")
        return base64.urlsafe_b64encode(body + self._mac(body)).decode("ascii")

    def _issued_ms(self, nonce: str) -> int | None:
        """The issue time of a genuine nonce (:data:`_OTHER_GENERATION` for one of another generation),
        or None (the HMAC is checked once per nonce and request:
        a nonce already in the nc table, or the one just checked, is known to be genuine)."""
        entry = self._nc.get(nonce)
        if entry is not None:
            return entry[0]
        if self._last[0] == nonce:
            return self._last[1]
        issued = self._verify_mac(nonce)
        if issued is not None:
            self._last = (nonce, issued)
        return issued

    def _verify_mac(self, nonce: str) -> int | None:
        if len(nonce) != _NONCE_LEN or _NONCE_CHARS.fullmatch(nonce) is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce)
        except ValueError:
            return None
        body, mac = raw[:-_NONCE_MAC], raw[-_NONCE_MAC:]
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        if body[_NONCE_TIME.size : _NONCE_TIME.size + _NONCE_GENERATION] != self.generation:
            return _OTHER_GENERATION
        (issued_ms,) = _NONCE_TIME.unpack_from(body)
        return int(issued_ms)

    def _status(self, issued_ms: int, now: float) -> NonceStatus:
        if issued_ms == _OTHER_GENERATION:
            return NonceStatus.STALE
        age = now - issued_ms / 1000
        if age > self.lifetime or age < -_CLOCK_SKEW:
            return NonceStatus.STALE
        return NonceStatus.VALID

    def check(self, nonce: str, now: float) -> NonceStatus:
        issued_ms = self._issued_ms(nonce)
        if issued_ms is None:
            return NonceStatus.INVALID
        return self._status(issued_ms, now)

    def accept_nc(self, nonce: str, nc: str, now: float) -> bool:
        """Record ``nc`` for a valid nonce; False for a replayed/out-of-order nc, a bad nc or a nonce
        that is not VALID."""
        if _NC_RE.fullmatch(nc) is None:
            return False
        issued_ms = self._issued_ms(nonce)
        if issued_ms is None or self._status(issued_ms, now) is not NonceStatus.VALID:
            return False
        self._prune(now)
        count = int(nc, 16)
        entry = self._nc.get(nonce)
        if entry is None:
            if self._floor_ms is not None and issued_ms <= self._floor_ms:
                return False
            while len(self._nc) >= self._max_entries:
                _, (evicted_ms, _) = self._nc.popitem(last=False)
                if self._floor_ms is None or evicted_ms > self._floor_ms:
                    self._floor_ms = evicted_ms
        elif count <= entry[1]:
            return False
        self._nc[nonce] = (issued_ms, count)
        return True

    def _prune(self, now: float) -> None:
        # Expired nonces are STALE whatever the table says, so their entries can go.
        horizon_ms = (now - self.lifetime) * 1000
        while self._nc:
            nonce, (issued_ms, _) = next(iter(self._nc.items()))
            if issued_ms >= horizon_ms:
                break
            del self._nc[nonce]

    def __len__(self) -> int:
        return len(self._nc)


# --- verification ----------------------------------------------------------------------------------


class AuthResult(Enum):
    OK = "ok"
    STALE = "stale"  # the digest was right but the nonce is expired or its nc was reused: re-challenge
    FAILED = "failed"


class DigestVerifier:
    """Challenges and verifies digest credentials for one or more algorithms.

    ``algorithms`` is the order of the challenges; put MD5 first for SIPp and most desk phones.

    nc replay (a correct digest with an nc not above the last accepted one) gives STALE, not FAILED:
    whoever sent it either knows the password (parallel requests on one nonce can arrive out of order)
    or replays a captured request, and both are answered safely by a fresh nonce, which is useless
    without the password; STALE also keeps the honest case from counting as a brute-force failure.
    """

    def __init__(
        self,
        nonces: NonceManager,
        algorithms: Sequence[Algorithm],
        *,
        accept_rfc2069: bool = False,
    ) -> None:
        if not algorithms:
            raise ValueError("at least one algorithm is required")
        self.nonces = nonces
        self.algorithms: tuple[Algorithm, ...] = tuple(algorithms)
        self.accept_rfc2069 = accept_rfc2069
        # Stands in for the HA1 of unknown users so that they cost the same work as a wrong password.
        # It need not be secret: a match against it is still FAILED.
        self._dummy_ha1 = {a: ha1("zvonok-unknown-user", "", "", a) for a in Algorithm}

    def challenges(self, realm: str, now: float, stale: bool = False) -> list[Challenge]:
        # One nonce for all offered algorithms, as in RFC 7616 §3.9.1: the client answers only one.
        nonce = self.nonces.issue(now)
        return [Challenge(realm, nonce, algorithm, stale=stale) for algorithm in self.algorithms]

    def verify(
        self,
        creds: Credentials,
        *,
        method: str,
        ha1: str | None,
        realm: str,
        now: float,
    ) -> AuthResult:
        """Check ``creds`` against the stored ``ha1`` (None for an unknown user).

        The caller must also check that ``creds.uri`` matches the Request-URI (RFC 3261 §22.4) and
        look ``ha1`` up for ``creds.username`` and ``creds.realm`` hashed with ``creds.algorithm``.
        """
        # Checks that do not depend on the user come first; only the digest comparison must cost the
        # same whether or not the user exists.
        if creds.scheme.lower() != "digest" or creds.algorithm not in self.algorithms or creds.realm != realm:
            return AuthResult.FAILED
        if creds.qop is None:
            if not self.accept_rfc2069 or creds.nc is not None or creds.algorithm.is_session:
                return AuthResult.FAILED
        elif creds.qop != "auth" or creds.nc is None or creds.cnonce is None:
            return AuthResult.FAILED
        status = self.nonces.check(creds.nonce, now)
        if status is NonceStatus.INVALID:
            return AuthResult.FAILED
        expected = compute_response(
            ha1=ha1 if ha1 is not None else self._dummy_ha1[creds.algorithm],
            nonce=creds.nonce,
            method=method,
            uri=creds.uri,
            algorithm=creds.algorithm,
            qop=creds.qop,
            nc=creds.nc,
            cnonce=creds.cnonce,
        )
        given = creds.response.lower().encode("utf-8", "surrogateescape")
        matches = hmac.compare_digest(expected.encode("ascii"), given)
        if not matches or ha1 is None:
            return AuthResult.FAILED
        if status is NonceStatus.STALE:
            return AuthResult.STALE
        if creds.nc is not None and not self.nonces.accept_nc(creds.nonce, creds.nc, now):
            return AuthResult.STALE
        return AuthResult.OK
