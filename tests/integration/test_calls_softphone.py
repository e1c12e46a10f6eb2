"""Calls between two real softphones (baresip) through Zvonok, with the audio checked by FFT.

Phone A sends a 440 Hz sine, phone B a 1000 Hz sine; each records what it receives (baresip's sndfile
module). The call is good when A's recording is dominated by 1000 Hz and B's by 440 Hz: the audio went
through our B2BUA and media relay both ways.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
import time
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .baresip import Baresip

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]  # loaded by conftest.py (bench/_common.py)

NUMBERS = ["701", "702", "703", "704", "705"]


@contextlib.contextmanager
def calls_server(tmp_path_factory: pytest.TempPathFactory, name: str, numbers: list[str],
                 env: dict[str, str]) -> Iterator[tuple[Any, Any]]:
    """A seeded tenant with ``numbers`` and a running server (on PostgreSQL when the suite says so)."""
    data_dir = tmp_path_factory.mktemp(name) / "data"
    domain = f"{name}-{secrets.token_hex(3)}.test"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(data_dir, domain=domain, numbers=numbers, database_url=database_url)
    srv = harness.ZvonokServer(data_dir=data_dir, database_url=database_url, env=env)
    srv.start()
    try:
        yield srv, seeded
    finally:
        assert srv.stop() == 0, srv.log_tail()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    with calls_server(tmp_path_factory, "calls", NUMBERS,
                      {"ZVONOK_CALL_NO_ANSWER_TIMEOUT": "30", "ZVONOK_RECORD_CALLS": "true"}) as running:
        yield running


def phone(phones: list[Baresip], tmp_path: Path, server: tuple[Any, Any], number: str, *, frequency: int = 440,
          auto_answer: bool = False, record: bool = False, trace: bool = False) -> Baresip:
    srv, seeded = server
    account = (f"<sip:{number}@{seeded.domain}>;auth_pass={harness.password_for(number)};"
               f'outbound="sip:127.0.0.1:{srv.sip_port}";regint=600'
               + (";answermode=auto" if auto_answer else ""))
    p = Baresip(tmp_path / f"phone{number}", account, frequency=frequency, record=record, trace=trace)
    phones.append(p)
    p.start()
    p.wait_event({"REGISTER_OK"})
    return p


def cdrs(server: tuple[Any, Any], caller: str, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The CDRs of calls placed by extension ``caller``, oldest first, once ``count`` of them exist."""
    srv, seeded = server
    url = f"{srv.http_url}/api/v1/tenants/{seeded.tenant_id}/cdrs?extension={caller}&limit=100"
    deadline = time.monotonic() + timeout
    while True:
        items = [c for c in harness.http_json(url, seeded.token)["items"] if c["caller_number"] == caller]
        if len(items) >= count or time.monotonic() > deadline:
            return sorted(items, key=lambda c: c["started_at"])
        time.sleep(0.2)


def download_recording(server: tuple[Any, Any], cdr: dict[str, Any], path: Path) -> Path:
    srv, seeded = server
    request = urllib.request.Request(
        f"{srv.http_url}/api/v1/tenants/{seeded.tenant_id}/cdrs/{cdr['id']}/recording",
        headers={"Authorization": f"Bearer {seeded.token}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        path.write_bytes(response.read())
    return path


def dominant_frequency(path: Path, channel: int = 0, last: float | None = None) -> float:
    """The strongest frequency of a WAV channel (after the first half second, or in its ``last`` seconds)."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)[channel :: w.getnchannels()]
    samples = (samples[-int(last * rate):] if last else samples[rate // 2 :]).astype(np.float64)
    assert len(samples) >= (last or 1) * rate, f"only {len(samples)} samples in {path}"
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def test_two_softphones_hear_each_other(server: tuple[Any, Any], phones: list[Baresip], tmp_path: Path) -> None:
    srv, seeded = server
    a = phone(phones, tmp_path, server, "701", frequency=440, record=True)
    b = phone(phones, tmp_path, server, "702", frequency=1000, auto_answer=True, record=True)
    a.command("dial", f"sip:702@{seeded.domain}")
    a.wait_event({"CALL_ESTABLISHED"})
    b.wait_event({"CALL_ESTABLISHED"})
    time.sleep(3)  # let a few seconds of audio flow
    a.command("hangup")
    a.wait_event({"CALL_CLOSED"})
    b.wait_event({"CALL_CLOSED"})  # our BYE reached B
    a.stop()
    b.stop()  # the WAV files are complete once baresip has quit
    (heard_by_a,) = a.received_audio()
    (heard_by_b,) = b.received_audio()
    assert abs(dominant_frequency(heard_by_a) - 1000) < 20
    assert abs(dominant_frequency(heard_by_b) - 440) < 20
    (cdr,) = cdrs(server, "701", 1)
    assert (cdr["callee_number"], cdr["disposition"], cdr["hangup_side"]) == ("702", "answered", "caller")
    assert cdr["internal"] is True and float(cdr["cost"]) == 0
    assert cdr["billsec"] >= 2 and cdr["duration"] >= cdr["billsec"]
    # the call recording: stereo, the caller's 440 Hz on the left, the callee's 1000 Hz on the right
    assert cdr["has_recording"] is True
    recording = download_recording(server, cdr, tmp_path / "recording.wav")
    with wave.open(str(recording)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000)
        assert w.getnframes() >= 2 * 8000
    assert abs(dominant_frequency(recording, channel=0) - 440) < 20
    assert abs(dominant_frequency(recording, channel=1) - 1000) < 20


def test_callee_hangs_up(server: tuple[Any, Any], phones: list[Baresip], tmp_path: Path) -> None:
    srv, seeded = server
    earlier = len(cdrs(server, "703", 0))
    a = phone(phones, tmp_path, server, "703")
    b = phone(phones, tmp_path, server, "704", auto_answer=True)
    a.command("dial", f"sip:704@{seeded.domain}")
    b.wait_event({"CALL_ESTABLISHED"})
    a.wait_event({"CALL_ESTABLISHED"})
    time.sleep(1)
    b.command("hangup")
    a.wait_event({"CALL_CLOSED"})  # our BYE reached the caller
    cdr = cdrs(server, "703", earlier + 1)[-1]
    assert (cdr["callee_number"], cdr["disposition"], cdr["hangup_side"]) == ("704", "answered", "callee"), cdr
    assert cdr["billsec"] >= 1, cdr


def test_busy_cancel_unavailable_and_unknown(server: tuple[Any, Any], phones: list[Baresip],
                                            tmp_path: Path) -> None:
    srv, seeded = server
    a = phone(phones, tmp_path, server, "703")
    b = phone(phones, tmp_path, server, "704")  # rings, answers nothing by itself
    # the callee rejects: baresip answers 486 Busy Here to a hangup while ringing
    a.command("dial", f"sip:704@{seeded.domain}")
    b.wait_event({"CALL_INCOMING"})
    b.command("hangup")
    closed = a.wait_event({"CALL_CLOSED"})
    assert "486" in closed.get("param", ""), closed
    b.wait_event({"CALL_CLOSED"})
    # the caller gives up while it rings: CANCEL reaches the callee's phone
    a.command("dial", f"sip:704@{seeded.domain}")
    b.wait_event({"CALL_INCOMING"})
    a.wait_event({"CALL_RINGING"})
    a.command("hangup")
    a.wait_event({"CALL_CLOSED"})
    b.wait_event({"CALL_CLOSED"})
    # nobody registered on 705: 480; 799 does not exist: 404
    a.command("dial", f"sip:705@{seeded.domain}")
    closed = a.wait_event({"CALL_CLOSED"})
    assert "480" in closed.get("param", ""), closed
    a.command("dial", f"sip:799@{seeded.domain}")
    closed = a.wait_event({"CALL_CLOSED"})
    assert "404" in closed.get("param", ""), closed
    # every attempt has its CDR (the earlier test's answered call from 703 first)
    records = cdrs(server, "703", 5)
    assert [(c["disposition"], c["sip_status"]) for c in records[-4:]] == [
        ("busy", 486), ("cancelled", 487), ("failed", 480), ("failed", 404)]
    assert records[-3]["hangup_side"] == "caller"


def test_hold_and_resume_are_seen_on_the_event_stream(server: tuple[Any, Any], phones: list[Baresip],
                                                      tmp_path: Path) -> None:
    from websockets.sync.client import connect

    srv, seeded = server
    ws_url = srv.http_url.replace("http://", "ws://") + f"/api/v1/tenants/{seeded.tenant_id}/events"
    earlier = len(cdrs(server, "701", 0))
    with connect(ws_url, additional_headers={"Authorization": f"Bearer {seeded.token}"}, open_timeout=10) as ws:
        a = phone(phones, tmp_path, server, "701", frequency=440)
        b = phone(phones, tmp_path, server, "702", frequency=1000, auto_answer=True)
        a.command("dial", f"sip:702@{seeded.domain}")
        a.wait_event({"CALL_ESTABLISHED"})
        b.wait_event({"CALL_ESTABLISHED"})
        time.sleep(1)
        a.command("hold")
        time.sleep(1)
        a.command("resume")
        time.sleep(3)
        a.command("hangup")
        b.wait_event({"CALL_CLOSED"})
        seen: list[dict[str, Any]] = []
        while not any(e.get("type") == "CdrWritten" for e in seen):
            seen.append(json.loads(ws.recv(timeout=15)))
    # the phones registering meanwhile put RegistrationChanged on the same stream: the call's events
    # keep their own order among them
    types = [e["type"] for e in seen if e["type"] != "RegistrationChanged"]
    assert types[0] == "CallStarted"
    caller_leg = next(e["leg_id"] for e in seen if e["type"] == "LegCreated" and e["role"] == "caller")
    held = [e for e in seen if e["type"] in ("LegHeld", "LegResumed")]
    assert [(e["type"], e["leg_id"]) for e in held] == [("LegHeld", caller_leg), ("LegResumed", caller_leg)]
    assert types.index("CallAnswered") < types.index("LegHeld") < types.index("CallEnded") < types.index("CdrWritten")
    # after the resume both directions flow again: the last second of the call recording has both tones
    recording = download_recording(server, cdrs(server, "701", earlier + 1)[-1], tmp_path / "hold.wav")
    assert abs(dominant_frequency(recording, channel=0, last=1.0) - 440) < 20
    assert abs(dominant_frequency(recording, channel=1, last=1.0) - 1000) < 20


def test_a_vanished_phone_ends_the_call(tmp_path_factory: pytest.TempPathFactory, phones: list[Baresip],
                                        tmp_path: Path) -> None:
    """Kill the caller's softphone mid-call: no BYE ever comes, the RTP timeout ends the call."""
    data_dir = tmp_path_factory.mktemp("vanish") / "data"
    domain = f"vanish-{secrets.token_hex(3)}.test"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(data_dir, domain=domain, numbers=["801", "802"], database_url=database_url)
    srv = harness.ZvonokServer(data_dir=data_dir, database_url=database_url, env={"ZVONOK_MEDIA_TIMEOUT": "3"})
    srv.start()
    try:
        server = (srv, seeded)
        a = phone(phones, tmp_path, server, "801")
        b = phone(phones, tmp_path, server, "802", auto_answer=True)
        a.command("dial", f"sip:802@{domain}")
        b.wait_event({"CALL_ESTABLISHED"})
        assert a.proc is not None
        a.proc.kill()  # no BYE, no RTP
        b.wait_event({"CALL_CLOSED"}, timeout=30)
        (cdr,) = cdrs(server, "801", 1)
        assert (cdr["disposition"], cdr["hangup_side"], cdr["cause"]) == ("answered", "system", "media_timeout")
    finally:
        assert srv.stop() == 0, srv.log_tail()


def test_blind_transfer(server: tuple[Any, Any], phones: list[Baresip], tmp_path: Path) -> None:
    """A calls B; B transfers A to C (REFER); A and C then hear each other, B is released."""
    srv, seeded = server
    earlier = len(cdrs(server, "703", 0))
    a = phone(phones, tmp_path, server, "703", frequency=440, record=True)
    b = phone(phones, tmp_path, server, "704", frequency=1000, auto_answer=True)
    c = phone(phones, tmp_path, server, "705", frequency=1500, auto_answer=True, record=True)
    a.command("dial", f"sip:704@{seeded.domain}")
    a.wait_event({"CALL_ESTABLISHED"})
    b.wait_event({"CALL_ESTABLISHED"})
    # talk a moment first, as people do: a REFER within a packet or two of the answer left baresip's
    # sndfile dump with one frame (seen once; the call itself went on)
    time.sleep(1)
    b.command("transfer", f"sip:705@{seeded.domain}")
    c.wait_event({"CALL_ESTABLISHED"})
    b.wait_event({"CALL_CLOSED"})  # the transferor is released
    time.sleep(3)
    a.command("hangup")
    c.wait_event({"CALL_CLOSED"})
    a.stop()
    c.stop()
    (heard_by_a,) = a.received_audio()
    (heard_by_c,) = c.received_audio()
    assert abs(dominant_frequency(heard_by_a, last=2.0) - 1500) < 20  # C's tone after the transfer
    assert abs(dominant_frequency(heard_by_c) - 440) < 20
    # one CDR for the call as dialed (A to B), whose legs show where it went
    cdr = cdrs(server, "703", earlier + 1)[-1]
    assert (cdr["disposition"], cdr["callee_number"]) == ("answered", "704")
    detail = harness.http_json(f"{srv.http_url}/api/v1/tenants/{seeded.tenant_id}/cdrs/{cdr['id']}", seeded.token)
    legs = {(leg["number"], leg["cause"]) for leg in detail["legs"]}
    assert ("704", "transferred") in legs and ("705", "normal_clearing") in legs


def test_two_devices_ring_and_the_first_to_answer_wins(server: tuple[Any, Any], phones: list[Baresip],
                                                       tmp_path: Path) -> None:
    srv, seeded = server
    a = phone(phones, tmp_path, server, "701")
    desk = phone(phones, tmp_path / "desk", server, "702", trace=True)  # rings, is never answered
    mobile = phone(phones, tmp_path / "mobile", server, "702", auto_answer=True)
    a.command("dial", f"sip:702@{seeded.domain}")
    desk.wait_event({"CALL_INCOMING"})
    mobile.wait_event({"CALL_ESTABLISHED"})
    a.wait_event({"CALL_ESTABLISHED"})
    desk.wait_event({"CALL_CLOSED"})  # our CANCEL, with Reason: answered elsewhere
    cancel = desk.log(100_000).split("CANCEL sip:", 1)[1]
    assert 'Reason: SIP;cause=200;text="Call completed elsewhere"' in cancel.split("\r\n\r\n", 1)[0]
    a.command("hangup")
    mobile.wait_event({"CALL_CLOSED"})
