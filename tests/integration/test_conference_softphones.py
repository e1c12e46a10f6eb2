"""A conference with three real softphones (baresip): 440, 620 and 1000 Hz into one room.

Each phone records what it receives. While all three talk, each must hear the other two tones and not
its own (FFT: the power at its own frequency is a small fraction of the others'); then the 1000 Hz phone
is muted through the REST API and nobody hears 1000 Hz any more, while it still hears the other two.
The members list, the websocket-visible events (via the CDR: the room is the callee) and the teardown
when everyone hangs up are checked too.
"""

from __future__ import annotations

import sys
import time
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from . import pjsua_fixtures
from .baresip import Baresip
from .pjsua_fixtures import PhoneFactory, power
from .test_calls_softphone import calls_server, cdrs, dominant_frequency, phone

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]

NUMBERS = ["721", "722", "723"]
TONES = {"721": 440, "722": 620, "723": 1000}
ROOM = "850"


@pytest.fixture(scope="module")
def conf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    with calls_server(tmp_path_factory, "conf", NUMBERS, {}) as running:
        yield running


def api(server: tuple[Any, Any], path: str, *, method: str = "GET", body: Any = None) -> Any:
    srv, seeded = server
    return harness.http_json(f"{srv.http_url}/api/v1/tenants/{seeded.tenant_id}{path}", seeded.token,
                             method=method, body=body)


def post_action(server: tuple[Any, Any], path: str) -> int:
    """POST without a body; the status (the member actions answer 204 No Content)."""
    srv, seeded = server
    request = urllib.request.Request(f"{srv.http_url}/api/v1/tenants/{seeded.tenant_id}{path}", method="POST",
                                     headers={"Authorization": f"Bearer {seeded.token}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return int(response.status)


def window(path: Path, start_before_end: float, end_before_end: float) -> np.ndarray:
    """The recording's samples from ``start_before_end`` to ``end_before_end`` seconds before its end."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)[:: w.getnchannels()]
    assert rate == 8000 or rate == 48000, rate
    step = rate // 8000  # baresip may record at the player's rate: take every n-th sample (tones < 4 kHz)
    data = data[::step].astype(np.float64)
    start, end = len(data) - int(start_before_end * 8000), len(data) - int(end_before_end * 8000)
    assert start >= 0 and end - start >= 8000, (path, len(data), start, end)
    return data[start:end]


def test_three_softphones_in_one_room_then_one_muted(conf_server: tuple[Any, Any], phones: list[Baresip],
                                                     tmp_path: Path) -> None:
    srv, seeded = conf_server
    room = api(conf_server, "/conferences", method="POST", body={"number": ROOM, "name": "Stand-up"})
    members_url = f"/conferences/{room['id']}/members"
    talkers = {number: phone(phones, tmp_path, conf_server, number, frequency=freq, record=True)
               for number, freq in TONES.items()}
    for p in talkers.values():
        p.command("dial", f"sip:{ROOM}@{seeded.domain}")
        p.wait_event({"CALL_ESTABLISHED"})
    deadline = time.monotonic() + 20
    while len(members := api(conf_server, members_url)) < 3:
        assert time.monotonic() < deadline, members
        time.sleep(0.2)
    assert sorted(m["number"] for m in members) == NUMBERS
    assert not any(m["muted"] or m["waiting"] for m in members)
    time.sleep(4)  # all three talk
    muted = next(m for m in members if m["number"] == "723")
    assert post_action(conf_server, f"{members_url}/{muted['call_id']}/mute") == 204
    t_mute = time.monotonic()
    assert [m["muted"] for m in api(conf_server, members_url) if m["number"] == "723"] == [True]
    time.sleep(4)
    t_end = time.monotonic()
    for p in talkers.values():
        p.command("hangup")
    for p in talkers.values():
        p.wait_event({"CALL_CLOSED"})
        p.stop()  # the WAV files are complete once baresip has quit
    after_mute = t_end - t_mute
    for number, p in talkers.items():
        (heard,) = p.received_audio()
        # all three: the 2.5 s before the mute (ending 0.5 s before it)
        before = window(heard, after_mute + 3.0, after_mute + 0.5)
        pw = {n: power(before, f) for n, f in TONES.items()}
        others = [pw[n] for n in TONES if n != number]
        assert min(others) > 1e5, (number, pw)
        assert pw[number] < min(others) / 50, (number, pw)  # not itself
        # muted 723: from 0.7 s after the mute to 0.5 s before the end
        after = window(heard, after_mute - 0.7, 0.5)
        pw = {n: power(after, f) for n, f in TONES.items()}
        if number == "723":
            assert pw["721"] > 1e5 and pw["722"] > 1e5, pw  # a muted member still hears
        else:
            other = "722" if number == "721" else "721"
            assert pw[other] > 1e5, (number, pw)
            assert pw["723"] < pw[other] / 50, (number, pw)  # heard by nobody
    # the room empties and goes away; each call has its CDR with the room as the callee
    deadline = time.monotonic() + 10
    while api(conf_server, members_url):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    for number in NUMBERS:
        (cdr,) = cdrs(conf_server, number, 1)
        assert (cdr["callee_number"], cdr["callee_name"], cdr["disposition"]) == (ROOM, "Stand-up", "answered"), cdr
        assert cdr["billsec"] >= 6, cdr
    # the mixing counters on /metrics: eight seconds of three members is hundreds of ticks
    with urllib.request.urlopen(f"{srv.http_url}/metrics", timeout=10) as resp:  # noqa: S310
        metrics = {line.split()[0]: float(line.split()[1]) for line in resp.read().decode().splitlines()
                   if line.startswith("zvonok_media_mix_")}
    assert metrics["zvonok_media_mix_ticks"] >= 300, metrics
    assert {"zvonok_media_mix_late_ticks", "zvonok_media_mix_skipped_ticks", "zvonok_media_mix_trimmed_frames",
            "zvonok_media_mix_missing_frames"} <= set(metrics), metrics


pjsua_phones = pjsua_fixtures.pjsua_phones


def test_pin_and_wait_for_the_moderator_with_pjsua(conf_server: tuple[Any, Any],
                                                   pjsua_phones: PhoneFactory) -> None:
    """A room with a PIN and a moderator PIN, members waiting for the moderator: RFC 4733 keys from pjsua2.

    The member keys a wrong PIN (asked again), then the right one, and waits (neither hears nor is heard);
    the moderator's PIN lets it in and the two hear each other."""
    srv, seeded = conf_server
    room = api(conf_server, "/conferences", method="POST",
               body={"number": "851", "pin": "4711", "moderator_pin": "9020", "wait_for_moderator": True})
    members_url = f"/conferences/{room['id']}/members"
    phones = {}
    for number, tone in (("721", 440), ("722", 1000)):
        p = pjsua_phones(number, tone=tone)
        p.register(number, harness.password_for(number), seeded.domain, f"127.0.0.1:{srv.sip_port}")
        phones[number] = p
    member, moderator = phones["721"], phones["722"]
    m_call = member.call(f"sip:851@{seeded.domain}")
    member.wait_state(m_call, "CONFIRMED")
    time.sleep(1.0)
    member.dtmf(m_call, "1111#")  # wrong
    deadline = time.monotonic() + 15  # keys during the check are not kept: wait for the verdict
    while "PIN checked" not in srv.log_tail(200_000):
        assert time.monotonic() < deadline, srv.log_tail()
        time.sleep(0.2)
    assert "role=None" in srv.log_tail(200_000)
    time.sleep(0.5)
    assert api(conf_server, members_url) == []
    member.dtmf(m_call, "4711#")
    deadline = time.monotonic() + 15
    while not (members := api(conf_server, members_url)):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert [(m["number"], m["moderator"], m["waiting"]) for m in members] == [("721", False, True)]
    o_call = moderator.call(f"sip:851@{seeded.domain}")
    moderator.wait_state(o_call, "CONFIRMED")
    time.sleep(1.0)
    moderator.dtmf(o_call, "9020#")
    deadline = time.monotonic() + 15
    while len(members := api(conf_server, members_url)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert sorted((m["number"], m["moderator"], m["waiting"]) for m in members) == [
        ("721", False, False), ("722", True, False)]
    time.sleep(3)
    member.hangup(m_call)
    member.wait_ended(m_call)
    time.sleep(0.5)
    assert [m["number"] for m in api(conf_server, members_url)] == ["722"]
    moderator.hangup(o_call)
    moderator.wait_ended(o_call)
    assert abs(dominant_frequency(member.recording(m_call), last=2.0) - 1000) < 20
    assert abs(dominant_frequency(moderator.recording(o_call), last=2.0) - 440) < 20
