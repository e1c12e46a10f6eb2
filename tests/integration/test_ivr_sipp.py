"""IVR menus with real callers: a carrier (SIPp on 127.0.0.2) delivers calls to DIDs routed to menus.

* A caller keys ``1`` (into the second-level menu) and ``2`` with RFC 4733 events and reaches the desk
  extension (a SIPp phone answering); the CDR says so.
* The same walk with the keys sent as SIP INFO, and as tones in the audio (a caller offering no
  telephone-event: the in-band detector).
* A caller keying a wrong key in a menu without retries gets our BYE (the menu's invalid target: hang up).
* A silent caller hears the configured greeting — a 1 kHz tone uploaded as a 44.1 kHz WAV, checked by FFT,
  its length, its replay after the configured timeout — and after the last timeout is carried to the
  configured extension (Anna). This caller's SDP points at a socket of this test, which records
  the RTP we send: SIPp itself cannot record.

The menus and greetings are set up through the REST API, as an admin would.
"""

from __future__ import annotations

import io
import secrets
import socket
import struct
import sys
import threading
import time
import urllib.request
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zvonok.media.g711 import ALAW_DECODE

from .dtmf_pcap import write_dtmf_pcap, write_inband_pcap
from .test_calls_sipp import Pbx, assert_all_ok, start_callee
from .test_trunks_sipp import ACCESS_CALL, HANG_UP_AFTER, WAIT_FOR_OUR_BYE

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]

DESK, ANNA = "7501", "7502"
DID_WALK = "+74957650101"
DID_TIMEOUT = "+74957650102"
DID_STRICT = "+74957650103"
CARRIER = "127.0.0.2"
GREETING_HZ, GREETING_S = 1000.0, 1.0
TIMEOUT_S, RETRIES = 2, 1


@dataclass
class World:
    pbx: Pbx
    menus: dict[str, int]


def tone_wav(hz: float, seconds: float, rate: int = 44100) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((9000 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes())
    return buf.getvalue()


def api(world_pbx: Pbx, path: str, *, method: str = "GET", body: Any = None) -> Any:
    url = f"{world_pbx.server.http_url}/api/v1/tenants/{world_pbx.seeded.tenant_id}{path}"
    return harness.http_json(url, world_pbx.seeded.token, method=method, body=body)


def upload(world_pbx: Pbx, menu_id: int, data: bytes) -> None:
    url = f"{world_pbx.server.http_url}/api/v1/tenants/{world_pbx.seeded.tenant_id}/ivr-menus/{menu_id}/greeting"
    req = urllib.request.Request(url, data=data, method="PUT",
                                 headers={"Authorization": f"Bearer {world_pbx.seeded.token}"})
    with urllib.request.urlopen(req, timeout=20) as resp:  # noqa: S310 - loopback URL we built
        assert resp.status == 200


def snapshot_loads(pbx: Pbx) -> float:
    with urllib.request.urlopen(f"{pbx.server.http_url}/metrics", timeout=10) as resp:  # noqa: S310
        for line in resp.read().decode().splitlines():
            if line.startswith("zvonok_routing_snapshot_loads_total "):
                return float(line.split()[1])
    return 0.0


def route(pbx: Pbx, number: str, menu_id: int) -> None:
    loads = snapshot_loads(pbx)
    numbers = api(pbx, "/numbers?limit=100")["items"]
    number_id = next(n["id"] for n in numbers if n["number"] == number)
    api(pbx, f"/numbers/{number_id}", method="PATCH", body={"destination_kind": "ivr", "destination": {"menu": menu_id}})
    deadline = time.monotonic() + 30
    while snapshot_loads(pbx) <= loads:
        assert time.monotonic() < deadline, "the routing snapshot was not reloaded"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if harness.shutil.which("sipp") is None:
        pytest.fail("SIPp (Debian sip-tester) is not installed: `make test` installs it")
    tmp = tmp_path_factory.mktemp("ivr")
    data_dir = tmp / "data"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(data_dir, domain=f"ivr-{secrets.token_hex(3)}.test", numbers=[DESK, ANNA],
                          database_url=database_url)
    harness.seed_pstn(data_dir, seeded.tenant_id, {
        "offices": [{"name": "Moscow", "area_code": "495", "timezone": "Europe/Moscow"}],
        "trunks": [{"name": "Main", "host": CARRIER, "port": harness.free_sip_port()}],
        "numbers": [{"number": n, "office": "Moscow", "kind": "extension", "destination": {"number": DESK}}
                    for n in (DID_WALK, DID_TIMEOUT, DID_STRICT)],
    }, database_url=database_url)
    server = harness.ZvonokServer(data_dir=data_dir, database_url=database_url,
                                  env={"ZVONOK_CALL_NO_ANSWER_TIMEOUT": "20"})
    server.start()
    pbx = Pbx(server=server, seeded=seeded, workdir=tmp / "sipp")
    pbx.workdir.mkdir(parents=True, exist_ok=True)
    try:
        sub = api(pbx, "/ivr-menus", method="POST", body={
            "name": "Sales", "keys": {"2": {"kind": "extension", "number": DESK}, "3": {"kind": "extension",
                                                                                        "number": ANNA}}})
        main = api(pbx, "/ivr-menus", method="POST", body={
            "name": "Main", "prompt_text": "Здравствуйте. Нажмите один для отдела продаж.", "voice": "ru",
            "keys": {"1": {"kind": "menu", "menu": sub["id"]}, "2": {"kind": "extension", "number": ANNA}},
            "timeout": 10, "timeout_destination": {"kind": "hangup"}})
        silent = api(pbx, "/ivr-menus", method="POST", body={
            "name": "Night", "keys": {"1": {"kind": "extension", "number": DESK}}, "timeout": TIMEOUT_S,
            "retries": RETRIES, "timeout_destination": {"kind": "extension", "number": ANNA}})
        upload(pbx, silent["id"], tone_wav(GREETING_HZ, GREETING_S))
        strict = api(pbx, "/ivr-menus", method="POST", body={
            "name": "Strict", "keys": {"1": {"kind": "extension", "number": DESK}}, "retries": 0, "timeout": 10,
            "invalid_destination": {"kind": "hangup"}})
        route(pbx, DID_STRICT, strict["id"])
        route(pbx, DID_WALK, main["id"])
        route(pbx, DID_TIMEOUT, silent["id"])
        yield World(pbx, {"main": main["id"], "sub": sub["id"], "silent": silent["id"]})
    finally:
        code = server.stop()
        assert code == 0, f"zvonok serve exited with {code} on SIGTERM:\n{server.log_tail()}"


def inbound_cdrs(pbx: Pbx, did: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        items = [c for c in api(pbx, "/cdrs?limit=100")["items"] if c["dialed_number"] == did]
        if len(items) >= count or time.monotonic() > deadline:
            return sorted(items, key=lambda c: c["started_at"])
        time.sleep(0.2)


def test_caller_walks_two_levels_with_rfc4733_keys_to_the_desk(world: World) -> None:
    pbx = world.pbx
    pcap = write_dtmf_pcap(pbx.workdir / "ivr_walk.pcap", "12", start=1.0)
    scenario = pbx.workdir / "ivr_walk.xml"
    scenario.write_text(ACCESS_CALL.format(keys="12", pcap=pcap, then="hangs up 6 s later",
                                           ending=HANG_UP_AFTER.format(ms=6000)))
    desk = start_callee(pbx, DESK, "call_uas.xml", codec="PCMA")
    try:
        result = harness.run_sipp(scenario, pbx.target, workdir=pbx.workdir, rows=[["74957650101", "79161234567"]],
                                  rate=1, timeout=40, extra=["-i", CARRIER, "-mi", CARRIER], name="ivr_walk")
        assert desk.wait_for("SuccessfulCall(C)", 1, timeout=15), desk.stats()
        desk_result = desk.stop()
    finally:
        desk.kill()
    assert_all_ok(result, 1)
    assert_all_ok(desk_result, 1)
    cdr = inbound_cdrs(pbx, DID_WALK, 1)[-1]
    assert (cdr["caller_number"], cdr["callee_number"], cdr["disposition"]) == ("+79161234567", DESK, "answered"), cdr
    log = pbx.server.log_tail(200_000)
    assert f'kind=extension menus="[{world.menus["main"]}, {world.menus["sub"]}]"' in log, log[-3000:]


SILENT_CALLER = ACCESS_CALL.replace("[media_port]", "{rtp_port}").replace("[media_ip]", "{rtp_host}")


class RtpRecorder:
    """A UDP socket that keeps the PCMA payloads sent to it (what the caller hears), with arrival times
    and RTP timestamps."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets: list[tuple[float, int, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            if len(data) > 12 and data[1] & 0x7F == 8:
                self.packets.append((time.monotonic(), struct.unpack_from("!I", data, 4)[0], data[12:]))

    def close(self) -> np.ndarray:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        # on the RTP timestamps' timeline: we send no RTP between prompts, and those gaps are what the caller
        # hears as the wait for a key (RFC 3550 §5.1: the clock runs on through them)
        if not self.packets:
            return np.zeros(0)
        first = self.packets[0][1]
        at = [(ts - first) & 0xFFFFFFFF for _, ts, _ in self.packets]
        out = np.zeros(max(at) + 160)
        for offset, (_, _, payload) in zip(at, self.packets, strict=True):
            samples = ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)].astype(np.float64)
            out[offset:offset + len(samples)] = samples
        return out


def tone_runs(samples: np.ndarray, hz: float, rate: int = 8000, frame: int = 160) -> list[tuple[float, float]]:
    """(start, length) in seconds of the runs of 20 ms frames whose loudest frequency is ``hz`` (±20 Hz)."""
    runs: list[tuple[float, float]] = []
    current = 0
    for i in range(0, len(samples) - frame + 1, frame):
        chunk = samples[i:i + frame]
        spectrum = np.abs(np.fft.rfft(chunk * np.hanning(frame), n=1600))
        peak = np.argmax(spectrum) * rate / 1600
        if np.sqrt(np.mean(chunk ** 2)) > 500 and abs(peak - hz) <= 20:
            current += 1
        elif current:
            runs.append(((i - current * frame) / rate, current * frame / rate))
            current = 0
    if current:
        runs.append(((len(samples) // frame * frame - current * frame) / rate, current * frame / rate))
    return runs


def test_silent_caller_hears_the_greeting_then_goes_where_configured(world: World, tmp_path: Path) -> None:
    pbx = world.pbx
    recorder = RtpRecorder(CARRIER)
    pcap = write_dtmf_pcap(pbx.workdir / "ivr_none.pcap", "")
    scenario = pbx.workdir / "ivr_silent.xml"
    # the caller keys nothing: greeting, 2 s, greeting again, 2 s, then Anna rings and answers
    scenario.write_text(SILENT_CALLER.format(keys="nothing", pcap=pcap, then="hangs up 12 s later",
                                             ending=HANG_UP_AFTER.format(ms=12000), rtp_port=recorder.port,
                                             rtp_host=CARRIER).replace(
        f'  <nop>\n    <action>\n      <exec play_pcap_audio="{pcap}"/>\n    </action>\n  </nop>\n', ""))
    anna = start_callee(pbx, ANNA, "call_uas.xml", codec="PCMA")
    try:
        result = harness.run_sipp(scenario, pbx.target, workdir=pbx.workdir, rows=[["74957650102", "79160000777"]],
                                  rate=1, timeout=40, extra=["-i", CARRIER, "-mi", CARRIER], name="ivr_silent")
        assert anna.wait_for("SuccessfulCall(C)", 1, timeout=15), anna.stats()
        anna_result = anna.stop()
    finally:
        anna.kill()
        heard = recorder.close()
    assert_all_ok(result, 1)
    assert_all_ok(anna_result, 1)
    cdr = inbound_cdrs(pbx, DID_TIMEOUT, 1)[-1]
    assert (cdr["callee_number"], cdr["disposition"]) == (ANNA, "answered"), cdr
    # the greeting, played 1 + RETRIES times, each as long as the uploaded file; then the ringback
    greetings = [r for r in tone_runs(heard, GREETING_HZ) if r[1] >= 0.2]
    assert len(greetings) == 1 + RETRIES, greetings
    assert all(abs(length - GREETING_S) <= 0.15 for _, length in greetings), greetings
    # the wait for a key is counted from the end of the greeting
    gap = greetings[1][0] - (greetings[0][0] + greetings[0][1])
    assert abs(gap - TIMEOUT_S) <= 0.3, greetings
    spectrum = np.abs(np.fft.rfft(heard[: int(GREETING_S * 8000)]))
    assert abs(np.argmax(spectrum) * 8000 / int(GREETING_S * 8000) - GREETING_HZ) < 5


INFO_KEY = """  <send retrans="500">
    <![CDATA[

      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: "Outside Caller" <sip:[field1]@[local_ip]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Contact: <sip:[field1]@[local_ip]:[local_port]>
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={key}
      Duration=160

    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="300"/>
"""


def test_desk_phone_keys_by_sip_info_walk_the_menu(world: World) -> None:
    """The same walk with keys sent as SIP INFO (application/dtmf-relay), as desk phones do."""
    pbx = world.pbx
    pcap = write_dtmf_pcap(pbx.workdir / "ivr_info.pcap", "")
    keys = '  <pause milliseconds="1000"/>\n' + INFO_KEY.format(cseq=2, key="1") + INFO_KEY.format(cseq=3, key="2")
    ending = keys + HANG_UP_AFTER.format(ms=5000).replace("CSeq: 2 BYE", "CSeq: 4 BYE")
    scenario = pbx.workdir / "ivr_info.xml"
    scenario.write_text(ACCESS_CALL.format(keys="1 2 by SIP INFO", pcap=pcap, then="hangs up 5 s later",
                                           ending=ending).replace(
        f'  <nop>\n    <action>\n      <exec play_pcap_audio="{pcap}"/>\n    </action>\n  </nop>\n', ""))
    before = len(inbound_cdrs(pbx, DID_WALK, 0))
    desk = start_callee(pbx, DESK, "call_uas.xml", codec="PCMA")
    try:
        result = harness.run_sipp(scenario, pbx.target, workdir=pbx.workdir, rows=[["74957650101", "79161234568"]],
                                  rate=1, timeout=40, extra=["-i", CARRIER, "-mi", CARRIER], name="ivr_info")
        assert desk.wait_for("SuccessfulCall(C)", 1, timeout=15), desk.stats()
        desk_result = desk.stop()
    finally:
        desk.kill()
    assert_all_ok(result, 1)
    assert_all_ok(desk_result, 1)
    cdr = inbound_cdrs(pbx, DID_WALK, before + 1)[-1]
    assert (cdr["caller_number"], cdr["callee_number"], cdr["disposition"]) == ("+79161234568", DESK, "answered"), cdr


def test_keys_heard_in_the_audio_of_a_caller_without_telephone_events(world: World) -> None:
    """An old gateway offers no telephone-event and sends the keys as tones: the in-band detector hears
    1 and 2 and the caller reaches the desk."""
    pbx = world.pbx
    pcap = write_inband_pcap(pbx.workdir / "ivr_inband.pcap", "12", start=1.0)
    template = ACCESS_CALL.replace("m=audio [media_port] RTP/AVP 8 101", "m=audio [media_port] RTP/AVP 8").replace(
        "      a=rtpmap:101 telephone-event/8000\n      a=fmtp:101 0-15\n", "")
    assert "telephone-event" not in template
    scenario = pbx.workdir / "ivr_inband.xml"
    scenario.write_text(template.format(keys="12 in band", pcap=pcap, then="hangs up 6 s later",
                                        ending=HANG_UP_AFTER.format(ms=6000)))
    before = len(inbound_cdrs(pbx, DID_WALK, 0))
    desk = start_callee(pbx, DESK, "call_uas.xml", codec="PCMA")
    try:
        result = harness.run_sipp(scenario, pbx.target, workdir=pbx.workdir, rows=[["74957650101", "79161234569"]],
                                  rate=1, timeout=40, extra=["-i", CARRIER, "-mi", CARRIER], name="ivr_inband")
        assert desk.wait_for("SuccessfulCall(C)", 1, timeout=15), desk.stats()
        desk_result = desk.stop()
    finally:
        desk.kill()
    assert_all_ok(result, 1)
    assert_all_ok(desk_result, 1)
    cdr = inbound_cdrs(pbx, DID_WALK, before + 1)[-1]
    assert (cdr["caller_number"], cdr["callee_number"], cdr["disposition"]) == ("+79161234569", DESK, "answered"), cdr


def test_a_wrong_key_ends_where_configured(world: World) -> None:
    """A menu with no retries whose wrong key hangs up: the caller keys 7 and gets our BYE at once."""
    pbx = world.pbx
    pcap = write_dtmf_pcap(pbx.workdir / "ivr_wrong.pcap", "7", start=1.0)
    scenario = pbx.workdir / "ivr_wrong.xml"
    scenario.write_text(ACCESS_CALL.format(keys="7", pcap=pcap, then="waits for our BYE", ending=WAIT_FOR_OUR_BYE))
    result = harness.run_sipp(scenario, pbx.target, workdir=pbx.workdir, rows=[["74957650103", "79161234570"]],
                              rate=1, timeout=40, extra=["-i", CARRIER, "-mi", CARRIER], name="ivr_wrong")
    assert_all_ok(result, 1)
    cdr = inbound_cdrs(pbx, DID_STRICT, 1)[-1]
    assert (cdr["caller_number"], cdr["disposition"], cdr["cause"]) == ("+79161234570", "answered", "ivr_invalid"), cdr
