"""Secrets handling: digest HA1 values, web password hashes, API token and password generation.

Nothing here stores or logs a clear-text secret; callers show generated secrets once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from zvonok.sip.digest import Algorithm, ha1

_password_hash = PasswordHash.recommended()  # argon2id with pwdlib's recommended cost
# Verified when the login name is unknown, so both failure paths cost one argon2 verification. The hash of a
# random secret nobody kept, at the recommended cost (a unit test checks that its parameters are still the
# hasher's, so that verifying against it costs the same): hashing one at import took ~0.1 s of CPU in
# every process, and tests start hundreds of them.
_PRODUCTION_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$6IACipfizMwe/MR/0PpRlA$FpGw1Gy/w5RLKLs6unMbgL1ioFXJKjgLA37iUyHmyOQ"
_DUMMY_HASH = _PRODUCTION_DUMMY_HASH


def slow_hash(secret: str) -> str:
    """argon2id of a web password or PIN (blocking: callers run it in a thread)."""
    return _password_hash.hash(secret)


def slow_verify(secret: str, hashed: str | None) -> bool:
    """Check ``secret`` against ``hashed``, or against the dummy hash when None (the same time either way)."""
    return _password_hash.verify(secret, hashed if hashed is not None else _DUMMY_HASH)


def use_cheap_hashes_in_tests() -> None:
    """Swap in the cheapest argon2id for this process.  Only the test suite calls this (tests/conftest.py):
    hundreds of hashes at the production cost took minutes of CI.  Nothing in the product or its
    settings reaches it, and a test checks that a fresh process still hashes at the production cost.
    Hashes stay verifiable either way (argon2 stores its parameters in the hash)."""
    global _password_hash, _DUMMY_HASH
    _password_hash = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))
    _DUMMY_HASH = _password_hash.hash(secrets.token_urlsafe(16))

TOKEN_PREFIX = "zv_"


def sip_ha1s(username: str, realm: str, password: str) -> tuple[str, str]:
    """(MD5, SHA-256) HA1 pair for an extension."""
    return ha1(username, realm, password, Algorithm.MD5), ha1(username, realm, password, Algorithm.SHA256)


def generate_sip_password() -> str:
    """12 URL-safe characters (~72 bits), typeable on a desk phone's keypad-less web UI."""
    return secrets.token_urlsafe(9)


def generate_web_password() -> str:
    return secrets.token_urlsafe(12)


async def hash_password(password: str) -> str:
    """argon2id in a worker thread: ~0.1 s of CPU must not stall the SIP event loop."""
    return await asyncio.to_thread(slow_hash, password)


async def verify_password(password: str, hashed: str | None) -> bool:
    """Check a password; with ``hashed=None`` still spend the same time on a dummy hash."""
    ok = await asyncio.to_thread(slow_verify, password, hashed)
    return ok and hashed is not None


@dataclass(frozen=True)
class NewToken:
    """A freshly generated API token: ``secret`` is shown once, only ``secret_hash`` is stored."""

    secret: str
    prefix: str
    secret_hash: str


def token_hash(secret: str) -> str:
    # A plain SHA-256 suffices: the secret has 256 bits of entropy, so no slow hash is needed.
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_token() -> NewToken:
    body = secrets.token_urlsafe(32)
    secret = f"{TOKEN_PREFIX}{body}"
    return NewToken(secret=secret, prefix=secret[:10], secret_hash=token_hash(secret))


def hashes_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
