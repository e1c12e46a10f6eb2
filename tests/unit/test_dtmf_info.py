"""DTMF in SIP INFO bodies (application/dtmf-relay and application/dtmf)."""

from __future__ import annotations

import pytest

from zvonok.sip.dtmf_info import InfoDigit, parse_dtmf_info


@pytest.mark.parametrize(("ctype", "body", "expected"), [
    ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", InfoDigit(digit="5", duration_ms=160)),
    ("application/dtmf-relay", b"Signal= *\r\nDuration= 250\r\n", InfoDigit(digit="*", duration_ms=250)),
    ("Application/DTMF-Relay; charset=x", b"signal=#\nduration=100", InfoDigit(digit="#", duration_ms=100)),
    ("application/dtmf-relay", b"Signal=11\r\n", InfoDigit(digit="#")),
    ("application/dtmf-relay", b"Signal=1\r\nDuration=bad\r\n", InfoDigit(digit="1")),
    ("application/dtmf", b"7", InfoDigit(digit="7")),
    ("application/dtmf", b"10\r\n", InfoDigit(digit="*")),
    ("application/dtmf", b"d", InfoDigit(digit="D")),
])
def test_parsed(ctype: str, body: bytes, expected: InfoDigit) -> None:
    assert parse_dtmf_info(ctype, body) == expected


@pytest.mark.parametrize(("ctype", "body"), [
    ("application/dtmf-relay", b"Duration=160\r\n"),
    ("application/dtmf-relay", b"Signal=X\r\n"),
    ("application/dtmf-relay", b"Signal=16\r\n"),
    ("application/dtmf", b"16"),
    ("application/dtmf", b"\xff"),
    ("application/sdp", b"Signal=5"),
])
def test_no_digit(ctype: str, body: bytes) -> None:
    assert parse_dtmf_info(ctype, body) is None
