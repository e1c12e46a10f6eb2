"""Call-center queues with real calls: SIPp and baresip callers dial a queue's number, SIPp and baresip agents
(employees whose extensions are registered) take the calls the center offers them.

- round robin: six calls one after another go to the three agents in turn (the queue log's CONNECT rows);
- twenty callers at once share three agents who each answer, talk a second and hang up: every caller is
  connected (ENTERQUEUE, CONNECT, COMPLETEAGENT for each), every agent takes a share, the report's KPIs
  count 20 offered, 20 answered, none abandoned;
- a caller who hangs up while nobody is logged in is an ABANDON with its position and wait (it heard music
  and its position announced meanwhile);
- a queue that takes no callers while nobody is logged in sends the caller to its overflow destination
  (JOINEMPTY), an extension that answers;
- an agent on a direct call is busy elsewhere from its answer: the caller goes to the next agent, and the
  agent is available for queue calls again when the direct call ends;
- a baresip caller waiting alone hears music on hold, then its position and estimated wait: the prompts'
  own samples are found in what it received (normalized cross-correlation, far above the other prompts'),
  one after the other, with the music (its notes, by FFT) before and after them;
- a baresip caller's 440 Hz reaches the baresip agent who answered (FFT of what the agent heard), and the
  agent's 1000 Hz the caller; the caller hanging up is COMPLETECALLER;
- an agent logs in from its phone (``*45``): the next caller is offered to it; after ``*46`` it is not;
- an agent's phone answering an offer with 503: the caller keeps its place at the head of the line and the
  next agent to log in gets it before the caller who came second;
- a pjsua2 agent's blind transfer (REFER) of its caller to another queue's number: TRANSFER in the first
  queue's log, the caller waits in the second and its agent (pjsua2) answers; the caller's 440 Hz reaches
  that agent and the agent's 1500 Hz the caller.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from zvonok.callcenter.models import QueueLogRow
from zvonok.media.hold_music import DEFAULT_NOTES
from zvonok.media.wav import read_wav
from zvonok.storage.db import Database
from zvonok.telephony.queue_call import position_prompt, wait_prompt

from . import pjsua_fixtures
from .baresip import Baresip
from .pjsua_fixtures import PhoneFactory
from .pjsua_phone import PjsuaPhone
from .test_calls_sipp import Pbx, assert_all_ok, finish_callee, harness, place_calls, start_callee
from .test_calls_softphone import dominant_frequency, download_recording, phone

pytestmark = pytest.mark.integration

ROBIN = ("7101", "7102", "7103")  # SIPp agents of the round-robin queue
CROWD = ("7111", "7112", "7113")  # SIPp agents of the busy queue
SOFT_AGENT = "7121"  # a baresip agent
ELSEWHERE = ("7141", "7142")  # SIPp agents: the first is on a direct (non-queue) call
CALLERS = ("7201", "7202", "7203", "7204", "7205", "7206", "7207", "7208")  # SIPp; baresip; SIPp; baresip
OVERFLOW = "7131"  # an extension (no agent) that takes a queue's overflow
BY_PHONE = "7151"  # a SIPp agent that logs in and out with feature codes
FAILING, HEALTHY = "7161", "7162"  # SIPp agents: the first answers every offer with 503
MORE_CALLERS = ("7211", "7212", "7213", "7214")
TRANSFERRING = ("7171", "7172")  # pjsua2 agents: the first transfers its caller into the second's queue
TRANSFERRED = "7219"  # a pjsua2 caller
RINGBACK_CALLER = "7215"  # a baresip caller of the queue that rings back instead of playing music
AGENTS = (*ROBIN, *CROWD, SOFT_AGENT, *ELSEWHERE, BY_PHONE, FAILING, HEALTHY, *TRANSFERRING)
NUMBERS = [*AGENTS, *CALLERS, OVERFLOW, *MORE_CALLERS, TRANSFERRED, RINGBACK_CALLER]
pjsua_phones = pjsua_fixtures.pjsua_phones


@pytest.fixture(scope="module")
def center(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if harness.shutil.which("sipp") is None or harness.shutil.which("baresip") is None:
        pytest.fail("SIPp and baresip are needed: `make test` installs them")
    tmp = tmp_path_factory.mktemp("queue_calls")
    data_dir = tmp / "data"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(
        data_dir, domain=f"queues-{secrets.token_hex(3)}.test", numbers=NUMBERS, database_url=database_url
    )
    ids = harness.seed_pstn(
        data_dir,
        seeded.tenant_id,
        {"employees": [{"name": f"Agent {n}", "extension": n} for n in AGENTS]},
        database_url=database_url,
    )
    server = harness.ZvonokServer(
        data_dir=data_dir,
        database_url=database_url,
        env={"ZVONOK_INVITE_RATE_LIMIT": "1000", "ZVONOK_CALL_NO_ANSWER_TIMEOUT": "30", "ZVONOK_RECORD_CALLS": "true"},
    )
    server.start()
    try:
        yield {
            "pbx": Pbx(server=server, seeded=seeded, workdir=tmp / "sipp"),
            "employees": {n: ids["employees"][f"Agent {n}"] for n in AGENTS},
            "database_url": harness.database_url_for(data_dir, database_url),
        }
    finally:
        code = server.stop()
        assert code == 0, f"zvonok serve exited with {code} on SIGTERM:\n{server.log_tail()}"


def api(c: dict[str, Any], path: str, body: Any = None, method: str | None = None) -> Any:
    pbx: Pbx = c["pbx"]
    url = f"{pbx.server.http_url}/api/v1/tenants/{pbx.seeded.tenant_id}/callcenter{path}"
    return harness.http_json(
        url, pbx.seeded.token, method=method or ("POST" if body is not None else "GET"), body=body
    )


def make_queue(c: dict[str, Any], number: str, agents: tuple[str, ...], **settings: Any) -> int:
    queue = api(c, "/queues", {"name": f"Queue {number}", "number": number, **settings})
    employees = [c["employees"][n] for n in agents]
    api(c, f"/queues/{queue['id']}/members", {"employee_ids": employees}, method="PUT")
    for employee in employees:
        assert api(c, f"/agents/{employee}/login", {"queue_ids": [queue["id"]]})["status"] == "available"
    return int(queue["id"])


def queue_log(c: dict[str, Any], queue_id: int, until: dict[str, int], timeout: float = 15.0) -> list[Any]:
    """The queue's log rows (oldest first), once at least ``until`` rows of each event are written."""

    async def rows() -> list[Any]:
        db = Database(c["database_url"])
        try:
            async with db.session() as session:
                return list(
                    (
                        await session.execute(
                            select(QueueLogRow)
                            .where(QueueLogRow.queue_id == queue_id)
                            .order_by(QueueLogRow.id)
                        )
                    ).scalars()
                )
        finally:
            await db.dispose()

    deadline = time.monotonic() + timeout
    while True:
        found = asyncio.run(rows())
        counts = {e: sum(1 for r in found if r.event == e) for e in until}
        if all(counts[e] >= n for e, n in until.items()) or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def events(rows: list[Any], name: str) -> list[Any]:
    return [r for r in rows if r.event == name]


def report(c: dict[str, Any], queue_id: int) -> dict[str, Any]:
    now = time.time()
    (row,) = api(
        c, f"/reports/queues?from={int(now - 3600)}&to={int(now + 3600)}&group=day&queue_id={queue_id}"
    )
    return dict(row)


def test_round_robin_gives_each_agent_a_call_in_turn(center: dict[str, Any]) -> None:
    pbx: Pbx = center["pbx"]
    queue_id = make_queue(center, "750", ROBIN, strategy="round_robin", wrap_up=0, ring_timeout=10)
    agents = [start_callee(pbx, n, "call_uas_bye.xml", rtp_echo=True, timeout=90) for n in ROBIN]
    try:
        for _ in range(6):  # one at a time: each starts after the one before has ended
            assert_all_ok(
                place_calls(pbx, CALLERS[0], "750", "call_uac_callee_bye.xml", 1, rate=1, timeout=30), 1
            )
        results = [finish_callee(agent, 2) for agent in agents]
    finally:
        for agent in agents:
            agent.kill()
    for result in results:
        assert_all_ok(result, 2)
    rows = queue_log(center, queue_id, {"CONNECT": 6, "COMPLETEAGENT": 6})
    ids = [center["employees"][n] for n in ROBIN]
    assert [r.agent_id for r in events(rows, "CONNECT")] == ids + ids
    assert len(events(rows, "ENTERQUEUE")) == 6 and len(events(rows, "COMPLETEAGENT")) == 6
    assert events(rows, "ABANDON") == []


def test_twenty_callers_share_three_agents(center: dict[str, Any]) -> None:
    pbx: Pbx = center["pbx"]
    count = 20
    queue_id = make_queue(center, "751", CROWD, strategy="longest_idle", wrap_up=0, ring_timeout=10)
    agents = [start_callee(pbx, n, "call_uas_bye.xml", rtp_echo=True, timeout=120) for n in CROWD]
    try:
        result = place_calls(pbx, CALLERS[1], "751", "call_uac_callee_bye.xml", count, rate=10, timeout=90)
        for agent in agents:
            agent.wait_for("SuccessfulCall(C)", 1, timeout=10)
        rows = queue_log(center, queue_id, {"CONNECT": count, "COMPLETEAGENT": count}, timeout=30)
        per_agent = {
            n: sum(1 for r in events(rows, "CONNECT") if r.agent_id == center["employees"][n]) for n in CROWD
        }
        agent_results = [finish_callee(agent, per_agent[n]) for n, agent in zip(CROWD, agents, strict=True)]
    finally:
        for agent in agents:
            agent.kill()
    assert_all_ok(result, count)  # every caller was answered by us, connected, and got the agent's BYE
    for n, agent_result in zip(CROWD, agent_results, strict=True):
        assert_all_ok(agent_result, per_agent[n])
    assert sum(per_agent.values()) == count, per_agent
    assert min(per_agent.values()) >= 5, per_agent  # longest idle: the agents take turns
    assert len(events(rows, "ENTERQUEUE")) == count
    assert len(events(rows, "COMPLETEAGENT")) == count
    assert events(rows, "ABANDON") == [] and events(rows, "COMPLETECALLER") == []
    connects = events(rows, "CONNECT")
    assert len({r.call_id for r in connects}) == count
    assert all(r.data["hold"] >= 0 for r in connects)
    kpis = report(center, queue_id)
    assert (kpis["offered"], kpis["answered"], kpis["abandoned"]) == (count, count, 0), kpis
    # the live view: nobody waits any more, the three agents are available again
    (live,) = [q for q in api(center, "/live")["queues"] if q["queue_id"] == queue_id]
    assert live["waiting"] == 0 and live["agents"] == {"available": 3}, live


def test_a_caller_hanging_up_in_line_is_an_abandon(center: dict[str, Any]) -> None:
    pbx: Pbx = center["pbx"]
    queue = api(center, "/queues", {"name": "Nobody", "number": "752", "announce_every": 1})
    result = place_calls(pbx, CALLERS[2], "752", "call_uac.xml", 1, rate=1, timeout=30, hold_ms=3000)
    assert_all_ok(result, 1)  # we answered at once; the caller hung up after three seconds of music
    rows = queue_log(center, queue["id"], {"ABANDON": 1})
    (enter,) = events(rows, "ENTERQUEUE")
    (abandon,) = events(rows, "ABANDON")
    assert abandon.call_id == enter.call_id
    assert (abandon.data["position"], abandon.data["original_position"]) == (1, 1)
    assert 2.5 <= abandon.data["wait"] < 10, abandon.data
    kpis = report(center, queue["id"])
    assert (kpis["offered"], kpis["answered"], kpis["abandoned"]) == (1, 0, 1), kpis


def test_the_agent_hears_the_caller(center: dict[str, Any], phones: list[Baresip], tmp_path: Path) -> None:
    pbx: Pbx = center["pbx"]
    queue_id = make_queue(center, "753", (SOFT_AGENT,), wrap_up=0)
    server = (pbx.server, pbx.seeded)
    agent = phone(phones, tmp_path, server, SOFT_AGENT, frequency=1000, auto_answer=True, record=True)
    caller = phone(phones, tmp_path, server, CALLERS[3], frequency=440, record=True)
    caller.command("dial", f"sip:753@{pbx.seeded.domain}")
    caller.wait_event({"CALL_ESTABLISHED"})  # we answer: music on hold
    agent.wait_event({"CALL_ESTABLISHED"})  # the center offered the call to the agent, who answered
    time.sleep(3)  # audio both ways
    caller.command("hangup")
    caller.wait_event({"CALL_CLOSED"})
    agent.wait_event({"CALL_CLOSED"})
    caller.stop()
    agent.stop()
    (heard_by_agent,) = agent.received_audio()
    assert abs(dominant_frequency(heard_by_agent) - 440) < 20
    heard_by_caller = caller.received_audio()[-1]
    assert abs(dominant_frequency(heard_by_caller, last=2.0) - 1000) < 20
    rows = queue_log(center, queue_id, {"COMPLETECALLER": 1})
    (connect,) = events(rows, "CONNECT")
    (complete,) = events(rows, "COMPLETECALLER")
    assert connect.agent_id == complete.agent_id == center["employees"][SOFT_AGENT]
    assert complete.data["talk"] >= 2.5, complete.data
    # recorded from the agent's answer, as any call: the caller's 440 Hz on the left, the agent's 1000 Hz on the right
    (cdr,) = pbx.cdrs(CALLERS[3], 1)
    assert cdr["has_recording"] is True, cdr
    recording = download_recording(server, cdr, tmp_path / "queue-call.wav")
    with wave.open(str(recording)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000) and w.getnframes() >= 2 * 8000
    assert abs(dominant_frequency(recording, channel=0) - 440) < 20
    assert abs(dominant_frequency(recording, channel=1) - 1000) < 20


def test_join_empty_sends_the_caller_to_the_overflow_destination(center: dict[str, Any]) -> None:
    pbx: Pbx = center["pbx"]
    queue = api(
        center,
        "/queues",
        {
            "name": "Closed",
            "number": "754",
            "join_empty": False,
            "overflow": {"kind": "extension", "number": OVERFLOW},
        },
    )
    target = start_callee(pbx, OVERFLOW, "call_uas_bye.xml", rtp_echo=True)
    try:
        result = place_calls(pbx, CALLERS[4], "754", "call_uac_callee_bye.xml", 1, rate=1, timeout=30)
        target_result = finish_callee(target, 1)
    finally:
        target.kill()
    assert_all_ok(result, 1)  # answered by us, then connected to the overflow extension, which hung up
    assert_all_ok(target_result, 1)
    rows = queue_log(center, queue["id"], {"JOINEMPTY": 1})
    assert [r.event for r in rows] == ["JOINEMPTY"], rows
    (cdr,) = pbx.cdrs(CALLERS[4], 1)
    assert (cdr["callee_number"], cdr["disposition"]) == (OVERFLOW, "answered"), cdr


def test_an_agent_on_another_call_is_not_offered(center: dict[str, Any]) -> None:
    pbx: Pbx = center["pbx"]
    busy, free = ELSEWHERE
    queue_id = make_queue(center, "755", ELSEWHERE, strategy="longest_idle", wrap_up=0)  # busy: longest idle
    busy_phone = start_callee(pbx, busy, "call_uas.xml", rtp_echo=True, timeout=60)
    free_phone = start_callee(pbx, free, "call_uas_bye.xml", rtp_echo=True, timeout=60)
    direct: dict[str, Any] = {}
    talking = threading.Thread(
        target=lambda: direct.update(
            result=place_calls(pbx, CALLERS[5], busy, "call_uac.xml", 1, rate=1, timeout=40, hold_ms=8000)
        )
    )
    try:
        talking.start()
        assert busy_phone.wait_for("IncomingCall(C)", 1, timeout=15)
        agent_url = f"/agents/{center['employees'][busy]}"
        deadline = time.monotonic() + 10
        while not api(center, agent_url)["busy_elsewhere"] and time.monotonic() < deadline:
            time.sleep(0.2)  # the direct call is answered: the agent is busy elsewhere
        assert api(center, agent_url)["busy_elsewhere"] is True
        result = place_calls(pbx, CALLERS[6], "755", "call_uac_callee_bye.xml", 1, rate=1, timeout=30)
        talking.join(timeout=40)
        free_result = finish_callee(free_phone, 1)
        busy_result = finish_callee(busy_phone, 1)
    finally:
        busy_phone.kill()
        free_phone.kill()
    assert_all_ok(result, 1)
    assert_all_ok(direct["result"], 1)
    assert_all_ok(free_result, 1)
    assert_all_ok(busy_result, 1)  # only the direct call reached the busy agent's phone
    rows = queue_log(center, queue_id, {"COMPLETEAGENT": 1})
    (connect,) = events(rows, "CONNECT")
    assert connect.agent_id == center["employees"][free]
    assert events(rows, "RINGNOANSWER") == []  # the busy agent was never offered the call
    # the direct call over, the agent may take queue calls again
    state = api(center, agent_url)
    assert (state["status"], state["busy_elsewhere"]) == ("available", False), state


def _mono(path: Path) -> tuple[np.ndarray, int]:
    import wave

    with wave.open(str(path)) as w:
        rate, channels = w.getframerate(), w.getnchannels()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)[::channels]
    return samples.astype(np.float64), rate


def _prompt_at(rate: int, path: Path) -> np.ndarray:
    """A built-in prompt (8 kHz) at the recording's rate (linear interpolation is enough to correlate)."""
    samples, prompt_rate = read_wav(path)
    x = samples.astype(np.float64)
    if prompt_rate == rate:
        return x
    t = np.arange(int(len(x) * rate / prompt_rate)) / rate
    return np.interp(t, np.arange(len(x)) / prompt_rate, x)


def _best_match(received: np.ndarray, prompt: np.ndarray) -> tuple[float, int]:
    """The normalized cross-correlation's peak of ``prompt`` within ``received``: (coefficient, offset).

    1.0 is the prompt's samples exactly (up to a gain); G.711 and the phone's resampling leave about 0.9.
    """
    n = len(received) + len(prompt)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(received, size) * np.conj(np.fft.rfft(prompt, size)), size)[: len(received) - len(prompt) + 1]
    window = np.concatenate(([0.0], np.cumsum(received**2)))
    energy = window[len(prompt):] - window[: -len(prompt)]  # the received energy under each placement
    coefficient = corr / (np.sqrt(np.maximum(energy, 1e-9)) * np.linalg.norm(prompt))
    at = int(coefficient.argmax())
    return float(coefficient[at]), at


def _music_notes(segment: np.ndarray, rate: int) -> tuple[float, float]:
    """(RMS, strongest frequency) of a stretch of what the caller heard."""
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    freqs = np.fft.rfftfreq(len(segment), 1 / rate)
    band = (freqs > 200) & (freqs < 1200)  # the melody's fundamentals
    return float(np.sqrt(np.mean(segment**2))), float(freqs[band][spectrum[band].argmax()])


def test_a_waiting_caller_hears_music_then_its_position_and_wait(
    center: dict[str, Any], phones: list[Baresip], tmp_path: Path
) -> None:
    pbx: Pbx = center["pbx"]
    every = 8  # seconds of music, then the announcement (about 4 s), music again until the next one
    api(center, "/queues", {"name": "Announced", "number": "756", "announce_every": every})
    tenant = harness.http_json(f"{pbx.server.http_url}/api/v1/tenants/{pbx.seeded.tenant_id}", pbx.seeded.token)
    # alone in line, nobody logged in: position 1, and 1 x the default handle time (120 s) = "two minutes"
    expected = [position_prompt(1, tenant["locale"]), wait_prompt(120, tenant["locale"])]
    caller = phone(phones, tmp_path, (pbx.server, pbx.seeded), CALLERS[7], frequency=440, record=True)
    caller.command("dial", f"sip:756@{pbx.seeded.domain}")
    caller.wait_event({"CALL_ESTABLISHED"})
    time.sleep(every + 7)  # music, the announcement, music again (the next one would begin at 2 x every)
    caller.command("hangup")
    caller.wait_event({"CALL_CLOSED"})
    caller.stop()
    received, rate = _mono(caller.received_audio()[-1])
    assert len(received) >= (every + 5) * rate, f"{len(received) / rate:.1f} s recorded"

    found = []
    for path in expected:
        coefficient, at = _best_match(received, _prompt_at(rate, path))
        found.append((coefficient, at))
        assert coefficient > 0.8, f"{path.name}: best match {coefficient:.2f}: the prompt did not reach the caller"
        # the right prompt, not another one of its family (another number of callers or of minutes)
        for other in sorted(path.parent.glob(path.name.rsplit("_", 1)[0] + "_*.wav")):
            if other != path:
                theirs, _ = _best_match(received, _prompt_at(rate, other))
                assert theirs < coefficient - 0.1, f"{other.name} ({theirs:.2f}) vs {path.name} ({coefficient:.2f})"
    (_, position_at), (_, wait_at) = found
    position_len = len(_prompt_at(rate, expected[0]))
    wait_end = wait_at + len(_prompt_at(rate, expected[1]))
    assert wait_at >= position_at + 0.9 * position_len, "the wait is told after the position"
    assert wait_at <= position_at + position_len + rate // 2, "the two prompts follow each other"
    assert wait_end <= len(received) - rate, "the announcement ended before the caller hung up"

    # music on hold before the announcement and after it: sound, at one of the melody's notes
    before = received[rate // 2 : position_at - rate // 5]
    after = received[wait_end + rate // 5 : wait_end + rate // 5 + rate]
    for name, segment in (("before", before), ("after", after)):
        assert len(segment) >= rate // 2, f"{name}: {len(segment) / rate:.2f} s of music only"
        rms, peak = _music_notes(segment, rate)
        assert rms > 300, f"music {name} the announcement: silence (RMS {rms:.0f})"
        assert min(abs(peak - note) for note in DEFAULT_NOTES) < 15, f"music {name}: strongest {peak:.0f} Hz"


def test_a_queue_set_to_ring_back_plays_the_ringback_tone_to_its_waiting_caller(
    center: dict[str, Any], phones: list[Baresip], tmp_path: Path
) -> None:
    pbx: Pbx = center["pbx"]
    api(center, "/queues", {"name": "Ringing", "number": "761", "hold_sound": "ringback"})
    caller = phone(phones, tmp_path, (pbx.server, pbx.seeded), RINGBACK_CALLER, frequency=440, record=True)
    caller.command("dial", f"sip:761@{pbx.seeded.domain}")
    caller.wait_event({"CALL_ESTABLISHED"})
    time.sleep(7)  # 425 Hz 1 s on / 4 s off: at least one tone and the silence after it
    caller.command("hangup")
    caller.wait_event({"CALL_CLOSED"})
    caller.stop()
    received, rate = _mono(caller.received_audio()[-1])
    assert len(received) >= 5 * rate, f"{len(received) / rate:.1f} s recorded"
    spectrum = np.abs(np.fft.rfft(received.astype(np.float64) * np.hanning(len(received))))
    peak = float(np.fft.rfftfreq(len(received), 1 / rate)[spectrum.argmax()])
    assert abs(peak - 425) < 10, f"strongest {peak:.0f} Hz: not the ringback tone"
    # the cadence, not a steady tone (nor the music): loud and silent tenths of a second, about 1 to 4
    tenths = received[: len(received) // (rate // 10) * (rate // 10)].astype(np.float64).reshape(-1, rate // 10)
    loud = np.sqrt((tenths**2).mean(axis=1)) > 300
    assert 0.1 < loud.mean() < 0.45, f"{loud.mean():.0%} of the tenths carry the tone"


def agent_state(c: dict[str, Any], number: str) -> dict[str, Any]:
    return dict(api(c, f"/agents/{c['employees'][number]}"))


def test_an_agent_logs_in_and_out_from_its_phone(center: dict[str, Any]) -> None:
    pbx: Pbx = center["pbx"]
    queue = api(center, "/queues", {"name": "By phone", "number": "757", "wrap_up": 0, "ring_timeout": 10})
    api(center, f"/queues/{queue['id']}/members", {"employee_ids": [center["employees"][BY_PHONE]]}, method="PUT")
    assert agent_state(center, BY_PHONE)["status"] == "offline"
    agent = start_callee(pbx, BY_PHONE, "call_uas_bye.xml", rtp_echo=True, timeout=90)
    try:
        # *45: we answer, beep and hang up (the scenario waits for our BYE)
        assert_all_ok(place_calls(pbx, BY_PHONE, "*45", "call_uac_callee_bye.xml", 1, rate=1), 1)
        state = agent_state(center, BY_PHONE)
        assert (state["status"], state["queue_ids"]) == ("available", [queue["id"]]), state
        served = place_calls(pbx, MORE_CALLERS[0], "757", "call_uac_callee_bye.xml", 1, rate=1, timeout=30)
        assert agent.wait_for("SuccessfulCall(C)", 1, timeout=10)
        assert_all_ok(place_calls(pbx, BY_PHONE, "*46", "call_uac_callee_bye.xml", 1, rate=1), 1)
        assert agent_state(center, BY_PHONE)["status"] == "offline"
        # logged out: a caller waits with music (nobody is offered it) and hangs up after four seconds
        waited = place_calls(pbx, MORE_CALLERS[1], "757", "call_uac.xml", 1, rate=1, timeout=30, hold_ms=4000)
        agent_result = agent.stop()
    finally:
        agent.kill()
    assert_all_ok(served, 1)  # connected to the agent, who hung up
    assert_all_ok(waited, 1)
    assert (agent_result.created, agent_result.successful) == (1, 1), agent_result.describe()
    rows = queue_log(center, queue["id"], {"ABANDON": 1})
    seen = [r.event for r in rows if r.event != "AGENTSTATUS"]
    assert seen == ["ADDMEMBER", "ENTERQUEUE", "CONNECT", "COMPLETEAGENT", "REMOVEMEMBER", "ENTERQUEUE",
                    "ABANDON"], seen
    cdrs = pbx.cdrs(BY_PHONE, 2)
    assert [(c["callee_number"], c["disposition"]) for c in cdrs] == [("*45", "answered"), ("*46", "answered")], cdrs


def test_an_offer_answered_503_leaves_the_caller_first_in_line(center: dict[str, Any]) -> None:
    pbx: Pbx = center["pbx"]
    queue = api(center, "/queues", {"name": "Failing", "number": "758", "wrap_up": 0, "ring_timeout": 10,
                                    "retry": 120, "strategy": "longest_idle"})
    employees = [center["employees"][FAILING], center["employees"][HEALTHY]]
    api(center, f"/queues/{queue['id']}/members", {"employee_ids": employees}, method="PUT")
    failing = start_callee(pbx, FAILING, "carrier_503.xml", timeout=90)
    healthy = start_callee(pbx, HEALTHY, "call_uas_bye.xml", rtp_echo=True, timeout=90)
    results: dict[str, Any] = {}

    def caller(number: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: results.update({number: place_calls(
            pbx, number, "758", "call_uac_callee_bye.xml", 1, rate=1, timeout=60)}))
        thread.start()
        return thread

    try:
        first = caller(MORE_CALLERS[2])  # nobody logged in yet: both callers wait, this one ahead
        queue_log(center, queue["id"], {"ENTERQUEUE": 1})
        second = caller(MORE_CALLERS[3])
        queue_log(center, queue["id"], {"ENTERQUEUE": 2})
        api(center, f"/agents/{employees[0]}/login", {"queue_ids": [queue["id"]]})
        assert failing.wait_for("SuccessfulCall(C)", 1, timeout=10)  # its 503 was ACKed
        queue_log(center, queue["id"], {"RINGNOANSWER": 1})
        api(center, f"/agents/{employees[1]}/login", {"queue_ids": [queue["id"]]})
        first.join(timeout=60)
        second.join(timeout=60)
        healthy_result = finish_callee(healthy, 2)
        failing_result = failing.stop()
    finally:
        failing.kill()
        healthy.kill()
    for number in MORE_CALLERS[2:]:
        assert_all_ok(results[number], 1)
    assert_all_ok(healthy_result, 2)
    assert (failing_result.created, failing_result.failed) == (1, 0), failing_result.describe()
    rows = queue_log(center, queue["id"], {"COMPLETEAGENT": 2})
    enter_first, enter_second = events(rows, "ENTERQUEUE")
    (missed,) = events(rows, "RINGNOANSWER")
    assert (missed.call_id, missed.agent_id, missed.data["reason"]) == (enter_first.call_id, employees[0],
                                                                         "unavailable"), missed.data
    # the first caller, back at the head of the line, is the healthy agent's first call
    assert [(r.call_id, r.agent_id) for r in events(rows, "CONNECT")] == [
        (enter_first.call_id, employees[1]), (enter_second.call_id, employees[1])]


def _pjsua(phones: PhoneFactory, pbx: Pbx, number: str, tone: float, **options: Any) -> PjsuaPhone:
    phone = phones(number, tone=tone)
    phone.register(number, harness.password_for(number), pbx.seeded.domain, f"127.0.0.1:{pbx.server.sip_port}",
                   **options)
    return phone


def test_an_agent_transfers_its_caller_into_another_queue(center: dict[str, Any], pjsua_phones: PhoneFactory) -> None:
    pbx: Pbx = center["pbx"]
    first_agent, second_agent = TRANSFERRING
    sales = make_queue(center, "759", (first_agent,), wrap_up=5)
    support = make_queue(center, "760", (second_agent,), wrap_up=0)
    caller = _pjsua(pjsua_phones, pbx, TRANSFERRED, 440)
    first = _pjsua(pjsua_phones, pbx, first_agent, 1000, auto_answer=True)  # leaves the BYE to the server
    second = _pjsua(pjsua_phones, pbx, second_agent, 1500, auto_answer=True)
    outgoing = caller.call(f"sip:759@{pbx.seeded.domain}")
    caller.wait_state(outgoing, "CONFIRMED")  # we answer: music on hold
    offered = first.wait_incoming()
    first.wait_state(offered, "CONFIRMED")
    time.sleep(1)
    first.xfer(offered, f"sip:760@{pbx.seeded.domain}")
    assert first.wait_transfer(offered)["code"] == 200
    assert first.wait_ended(offered)["last_status"] == 200  # the server's BYE: the agent has left the call
    transferred = second.wait_incoming()
    second.wait_state(transferred, "CONFIRMED")
    time.sleep(3)  # audio both ways
    caller.hangup(outgoing)
    caller.wait_ended(outgoing)
    second.wait_ended(transferred)
    assert abs(dominant_frequency(second.recording(transferred)) - 440) < 20
    assert abs(dominant_frequency(caller.recording(outgoing), last=2.0) - 1500) < 20
    rows = queue_log(center, sales, {"TRANSFER": 1})
    (transfer,) = events(rows, "TRANSFER")
    assert transfer.agent_id == center["employees"][first_agent] and transfer.data["target"] == "760"
    assert transfer.data["talk"] >= 0.5, transfer.data
    assert events(rows, "COMPLETEAGENT") == events(rows, "COMPLETECALLER") == []
    rows = queue_log(center, support, {"COMPLETECALLER": 1})
    assert [r.event for r in rows if r.call_id == transfer.call_id] == ["ENTERQUEUE", "CONNECT", "COMPLETECALLER"]
    (enter,) = events(rows, "ENTERQUEUE")
    assert enter.data["number"] == TRANSFERRED
    assert events(rows, "CONNECT")[0].agent_id == center["employees"][second_agent]
