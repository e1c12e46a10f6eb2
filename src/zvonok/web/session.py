"""The web session and CSRF tokens.

The session is a cookie holding a JWT signed with the settings' secret key (``typ: web``): the account
id and its ``token_version``. Every request re-reads the account (as the API does for login tokens), so
a password change, demotion or deactivation ends every web session of the account at once. The cookie
is HttpOnly, SameSite=Lax, and Secure when the request came over https.

CSRF: each browser holds a random seed in the ``zv_csrf`` cookie (HttpOnly); forms carry
``HMAC(secret, seed)`` in a hidden ``csrf_token`` field and htmx sends it as ``X-CSRF-Token``. Another
site can neither read the page nor compute the HMAC of a seed it planted (cookie injection from a
sibling domain), so a forged POST fails. The seed is replaced at login (no fixation).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import jwt
from starlette.requests import HTTPConnection
from starlette.responses import Response

from zvonok.config import Settings
from zvonok.storage.base import utcnow

SESSION_COOKIE = "zv_session"
CSRF_COOKIE = "zv_csrf"
LANG_COOKIE = "zv_lang"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_ALG = "HS256"
_YEAR = 365 * 24 * 3600


@dataclass(frozen=True)
class WebSession:
    account_id: int
    token_version: int


def encode_session(settings: Settings, account_id: int, token_version: int) -> str:
    now = utcnow()
    claims = {"sub": str(account_id), "typ": "web", "ver": token_version, "iat": now,
              "exp": now + timedelta(seconds=settings.login_token_ttl)}
    return jwt.encode(claims, settings.resolved_secret_key(), algorithm=_ALG)


def decode_session(settings: Settings, raw: str | None) -> WebSession | None:
    if not raw:
        return None
    try:
        claims = jwt.decode(raw, settings.resolved_secret_key(), algorithms=[_ALG],
                            options={"require": ["exp", "sub", "ver"]})
        account_id, version = int(claims["sub"]), claims["ver"]
    except (jwt.PyJWTError, ValueError, KeyError):
        return None
    if claims.get("typ") != "web" or type(version) is not int or not 0 < account_id <= 2**31 - 1:
        return None
    return WebSession(account_id, version)


def new_csrf_seed() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(settings: Settings, seed: str) -> str:
    key = settings.resolved_secret_key().encode()
    return hmac.new(key, b"zvonok-csrf:" + seed.encode(), hashlib.sha256).hexdigest()


def csrf_valid(settings: Settings, seed: str | None, sent: str | None) -> bool:
    if not seed or not sent:
        return False
    return hmac.compare_digest(sent.encode(), csrf_token(settings, seed).encode())


def set_cookie(response: Response, conn: HTTPConnection, name: str, value: str, *, max_age: int | None,
               httponly: bool = True) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=httponly, samesite="lax",
                        secure=conn.url.scheme == "https")


def set_session(response: Response, conn: HTTPConnection, settings: Settings, account_id: int, version: int) -> None:
    set_cookie(response, conn, SESSION_COOKIE, encode_session(settings, account_id, version),
               max_age=settings.login_token_ttl)


def set_language(response: Response, conn: HTTPConnection, locale: str) -> None:
    set_cookie(response, conn, LANG_COOKIE, locale, max_age=_YEAR)


def clear_session(response: Response, conn: HTTPConnection) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=conn.url.scheme == "https")
