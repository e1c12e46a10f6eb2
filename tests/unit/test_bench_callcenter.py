"""bench/callcenter.py's SIP mode reads the agents' SIPp message trace: times of INVITEs received and BYEs
sent, per agent, on a synthetic trace in SIPp 3.6's ``-trace_msg`` layout."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from bench_script import load

bench: Any = load("callcenter")


def _message(at: str, direction: str, first_line: str, call_id: str) -> str:
    return (f"----------------------------------------------- 2026-12-04 {at}\n"
            f"UDP message {direction} [300] bytes :\n\n"
            f"{first_line}\r\nVia: SIP/2.0/UDP 127.0.0.1:5060\r\nCall-ID: {call_id}\r\nCSeq: 1 X\r\n"
            "Content-Length: 0\r\n\r\n\n")


def test_agent_available_to_next_invite(tmp_path: Path) -> None:
    trace = tmp_path / "agents_messages.log"
    trace.write_text("".join([
        _message("10:00:00.000000", "received", "INVITE sip:8001@127.0.0.1:5070;transport=UDP SIP/2.0", "a"),
        _message("10:00:00.010000", "sent", "SIP/2.0 180 Ringing", "a"),
        _message("10:00:00.100000", "received", "INVITE sip:8002@127.0.0.1:5070;transport=UDP SIP/2.0", "b"),
        _message("10:00:01.000000", "sent", "BYE sip:zvonok@127.0.0.1:5060 SIP/2.0", "a"),
        _message("10:00:01.200000", "received", "INVITE sip:8001@127.0.0.1:5070;transport=UDP SIP/2.0", "c"),
        _message("10:00:01.500000", "sent", "BYE sip:zvonok@127.0.0.1:5060 SIP/2.0", "a"),  # retransmitted
        _message("10:00:01.700000", "received", "INVITE sip:8001@127.0.0.1:5070;transport=UDP SIP/2.0", "c"),
        _message("10:00:02.000000", "sent", "BYE sip:zvonok@127.0.0.1:5060 SIP/2.0", "b"),  # no caller left
    ]))
    events = bench.trace_events(trace)
    assert [(d, k, c) for _, d, k, c in events][:3] == [
        ("in", "INVITE:8001", b"a"), ("out", "180", b"a"), ("in", "INVITE:8002", b"b")]
    assert events[0][0] == datetime(2026, 12, 4, 10, 0, 0).timestamp()
    latencies, offers, span = bench.availability_latencies(events)
    assert latencies == [pytest.approx(0.2)]  # 8001: its BYE at 1.0 s, the next new INVITE at 1.2 s
    assert offers == 3 and span == pytest.approx(1.2)
