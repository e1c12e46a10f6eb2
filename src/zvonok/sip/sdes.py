"""SDES: SRTP keys in the SDP ``a=crypto`` attribute (RFC 4568).

How it works: ``a=crypto:<tag> <crypto-suite> <key-params> [<session-params>]`` (§9.1), where key-params
are ``inline:<base64 master key || salt>[|<lifetime>][|<MKI>:<length>]``, several joined by ``;``.
:func:`parse_crypto` reads one attribute value into a :class:`CryptoAttribute` and its ``str()`` writes it
back (the base64 of a decoded key is canonical, so a well-formed line round-trips byte for byte).
:func:`usable_crypto` picks, from a media section's lines, the first one we can run: a suite we have
(:data:`SUITES`), one key of the suite's length, no MKI and no session parameters (libsrtp is set up with
one master key per direction; RFC 4568 §6.3 lets the answerer ignore lines it cannot do). The keys travel
in the SDP in the clear, so they are only ever offered or accepted on TLS legs (RFC 4568 §8.3) — the call
engine's decision, not this module's.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .sdp import SdpError

# suite -> master key + master salt length in bytes (RFC 4568 §6.2.1: 128-bit key, 112-bit salt)
SUITES: dict[str, int] = {"AES_CM_128_HMAC_SHA1_80": 30}
DEFAULT_SUITE = "AES_CM_128_HMAC_SHA1_80"
SRTP_PROFILES = frozenset({"RTP/SAVP", "RTP/SAVPF"})

_CRYPTO_RE = re.compile(r"\A([0-9]{1,9})[ \t]+([A-Za-z0-9_]+)[ \t]+([^ \t]+)((?:[ \t]+[^ \t]+)*)[ \t]*\Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyParams:
    """One ``inline:`` key: master key followed by master salt, with its optional lifetime and MKI."""

    key: bytes
    lifetime: str | None = None
    mki: str | None = None

    def __str__(self) -> str:
        text = "inline:" + base64.b64encode(self.key).decode("ascii")
        if self.lifetime is not None:
            text += "|" + self.lifetime
        if self.mki is not None:
            text += "|" + self.mki
        return text


@dataclass(frozen=True, slots=True, kw_only=True)
class CryptoAttribute:
    """The value of one ``a=crypto`` line (RFC 4568 §9.1)."""

    tag: int
    suite: str
    keys: tuple[KeyParams, ...]
    session_params: tuple[str, ...] = ()

    def __str__(self) -> str:
        parts = [str(self.tag), self.suite, ";".join(str(k) for k in self.keys), *self.session_params]
        return " ".join(parts)


def _key_params(text: str) -> KeyParams:
    method, _, info = text.partition(":")
    if method.lower() != "inline" or not info:
        raise SdpError(f"crypto key method {method!r} is not inline")
    key_text, *rest = info.split("|")
    if len(rest) > 2:
        raise SdpError("crypto key-params with more than a lifetime and an MKI")
    lifetime = mki = None
    for item in rest:
        if ":" in item:
            mki = item
        else:
            lifetime = item
    try:
        key = base64.b64decode(key_text, validate=True)
    except (binascii.Error, ValueError):
        raise SdpError("crypto key is not base64") from None
    return KeyParams(key=key, lifetime=lifetime, mki=mki)


def parse_crypto(value: str) -> CryptoAttribute:
    """One ``a=crypto`` value; :class:`SdpError` (400) when malformed."""
    match = _CRYPTO_RE.match(value)
    if match is None:
        raise SdpError(f"malformed crypto attribute {value[:80]!r}")
    tag, suite, key_params, session = match.groups()
    keys = tuple(_key_params(item) for item in key_params.split(";"))
    return CryptoAttribute(tag=int(tag), suite=suite, keys=keys, session_params=tuple(session.split()))


def usable_crypto(values: Sequence[str]) -> CryptoAttribute | None:
    """The first ``a=crypto`` value we can run (see the module doc); malformed lines are skipped."""
    for value in values:
        try:
            crypto = parse_crypto(value)
        except SdpError:
            continue
        length = SUITES.get(crypto.suite.upper())
        if (length is not None and len(crypto.keys) == 1 and crypto.keys[0].mki is None
                and len(crypto.keys[0].key) == length and not crypto.session_params):
            return crypto
    return None


def crypto_line(tag: int, key: bytes, suite: str = DEFAULT_SUITE) -> str:
    """Our ``a=crypto`` value for ``key`` (master key || salt)."""
    return str(CryptoAttribute(tag=tag, suite=suite, keys=(KeyParams(key=key),)))
