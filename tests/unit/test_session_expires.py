"""Session-Expires (RFC 4028 §4) as the call engine reads it: interval and refresher."""

from __future__ import annotations

import pytest

from zvonok.sip.message import parse_datagram
from zvonok.telephony.b2bua import session_expires_of


def response_with(header: str) -> object:
    return parse_datagram(("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
                           f"To: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{header}"
                           "Content-Length: 0\r\n\r\n").encode())


@pytest.mark.parametrize(("header", "expected"), [
    ("Session-Expires: 1800;refresher=uac\r\n", (1800, "uac")),
    ("Session-Expires: 90 ; refresher=UAS\r\n", (90, "uas")),
    ("x: 600\r\n", (600, None)),  # compact form, refresher left to us
    ("Session-Expires: 600;x-other=1\r\n", (600, None)),
    ("Session-Expires: soon;refresher=uac\r\n", None),
    ("", None),
])
def test_session_expires_of(header: str, expected: tuple[int, str | None] | None) -> None:
    assert session_expires_of(response_with(header)) == expected  # type: ignore[arg-type]
