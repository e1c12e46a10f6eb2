"""Queue strategies, skills, wrap-up and overflow with real calls, measured in the queue log and the KPIs.

Each strategy gets its own five SIPp agents (registered phones that answer and hang up after a talk time of
their own) and twenty SIPp callers; the agents are fresh for each strategy, so fewest-calls and
least-talk-time start from zero. Callers come one at a time (SIPp ``-l 1``: the next call starts when the
one before has ended) where the strategy's choice is exact, and all at once where it is not:

- ring-all: every agent's phone rings for each caller (each SIPp agent sees twenty INVITEs: one answered,
  the others cancelled); the agent who answers fastest takes all twenty;
- longest idle: the five in turn, in the order they became available (login order first), four each;
- round robin: by agent id, four each, and the rotation goes on across two runs of callers (7 then 13);
- fewest calls: four each, every call to an agent with the fewest calls so far (replayed from the log);
- least talk time: every call to the agent with the least talk so far (replayed from the log's own talk
  figures), so the agent who talks 0.2 s a call takes the most and the one who talks 3.2 s the fewest;
- random: twenty callers at once: every agent gets some, and no agent is offered a call while on one;
- skills: two callers at a time: the most proficient agent whenever she is free, the second otherwise, the
  three others never.

Then: a queue asking "english" >= 5, relaxed to >= 3 after 3 s (agents at 8, 4 and 2); wrap-up of 3 s
(a SIPp agent and a baresip agent; AHT includes the wrap-up); overflow on max wait to another queue, to an
extension and to a mailbox, with an abandon beside them, the KPIs of the queues counted exactly.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import or_, select

from zvonok.callcenter.models import QueueLogRow
from zvonok.storage.db import Database

from .baresip import Baresip
from .test_calls_sipp import Pbx, assert_all_ok, calls, harness
from .test_calls_softphone import phone

pytestmark = pytest.mark.integration

COUNT = 20  # callers per strategy
# five agents per strategy (810x: ring-all, 811x: longest idle ...), each strategy's own
STRATEGY_AGENTS = {
    "ring_all": ("8101", "8102", "8103", "8104", "8105"),
    "longest_idle": ("8111", "8112", "8113", "8114", "8115"),
    "round_robin": ("8121", "8122", "8123", "8124", "8125"),
    "fewest_calls": ("8131", "8132", "8133", "8134", "8135"),
    "least_talk_time": ("8141", "8142", "8143", "8144", "8145"),
    "random": ("8151", "8152", "8153", "8154", "8155"),
    "skills": ("8161", "8162", "8163", "8164", "8165"),
}
SKILLED = ("8171", "8172", "8173")  # english 8, 4, 2
WRAPPING = ("8181", "8182")  # a SIPp agent, a baresip agent
FIRST_LINE, SECOND_LINE = "8191", "8192"  # the agents of the queue that overflows and of its overflow queue
OVERFLOW_EXT = "8193"  # an extension (no agent) that takes the other queue's overflow
MAILBOX = "8194"  # an extension whose mailbox takes a third queue's overflow
CALLER = "8201"  # SIPp callers (many calls each)
AGENTS = (*(n for group in STRATEGY_AGENTS.values() for n in group), *SKILLED, *WRAPPING, FIRST_LINE, SECOND_LINE)
NUMBERS = [*AGENTS, OVERFLOW_EXT, MAILBOX, CALLER]

# ring-all: an agent's phone rings, answers after ``delay`` ms unless the call is cancelled first (200 to the
# CANCEL, 487 to the INVITE), talks ``talk`` ms and hangs up
RING_ALL_AGENT = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="ring-all agent">
  <recv request="INVITE" crlf="true" rrs="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="remote"/>
      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="local"/>
      <ereg regexp=".*" search_in="hdr" header="CSeq:" check_it="true" assign_to="cseq"/>
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <recv request="CANCEL" timeout="{delay}" ontimeout="answer"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send>
    <![CDATA[

      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$cseq]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" next="done"/>
  <label id="answer"/>
  <send retrans="500">
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=callee 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
      a=sendrecv

    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <pause milliseconds="{talk}"/>
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: [$local];tag=[pid]SIPpTag01[call_number]
      To: [$remote]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
  <label id="done"/>
</scenario>
"""


@pytest.fixture(scope="module")
def center(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if harness.shutil.which("sipp") is None or harness.shutil.which("baresip") is None:
        pytest.fail("SIPp and baresip are needed: `make test` installs them")
    tmp = tmp_path_factory.mktemp("queue_strategies")
    data_dir = tmp / "data"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(
        data_dir, domain=f"strategies-{secrets.token_hex(3)}.test", numbers=NUMBERS, database_url=database_url
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
        env={"ZVONOK_INVITE_RATE_LIMIT": "1000", "ZVONOK_CALL_NO_ANSWER_TIMEOUT": "30"},
    )
    server.start()
    try:
        pbx = Pbx(server=server, seeded=seeded, workdir=tmp / "sipp")
        pbx.workdir.mkdir(parents=True, exist_ok=True)
        yield {
            "pbx": pbx,
            "employees": {n: ids["employees"][f"Agent {n}"] for n in AGENTS},
            "database_url": harness.database_url_for(data_dir, database_url),
        }
    finally:
        code = server.stop()
        assert code == 0, f"zvonok serve exited with {code} on SIGTERM:\n{server.log_tail()}"


def api(c: dict[str, Any], path: str, body: Any = None, method: str | None = None, *, base: str = "/callcenter") -> Any:
    pbx: Pbx = c["pbx"]
    url = f"{pbx.server.http_url}/api/v1/tenants/{pbx.seeded.tenant_id}{base}{path}"
    return harness.http_json(
        url, pbx.seeded.token, method=method or ("POST" if body is not None else "GET"), body=body
    )


def make_queue(c: dict[str, Any], number: str, agents: tuple[str, ...], **settings: Any) -> int:
    """A queue with ``agents`` as members, logged in in that order (the longest idle first)."""
    queue = api(c, "/queues", {"name": f"Queue {number}", "number": number, **settings})
    employees = [c["employees"][n] for n in agents]
    if employees:
        api(c, f"/queues/{queue['id']}/members", {"employee_ids": employees}, method="PUT")
    for employee in employees:
        assert api(c, f"/agents/{employee}/login", {"queue_ids": [queue["id"]]})["status"] == "available"
    return int(queue["id"])


def queue_log(
    c: dict[str, Any], queue_id: int, until: Callable[[list[Any]], bool], *, agents: tuple[str, ...] = (),
    timeout: float = 30.0,
) -> list[Any]:
    """The queue's log rows and the agents' own (AGENTSTATUS), oldest first, once ``until`` holds."""
    agent_ids = [c["employees"][n] for n in agents]

    async def rows() -> list[Any]:
        db = Database(c["database_url"])
        try:
            async with db.session() as session:
                query = select(QueueLogRow).where(
                    or_(QueueLogRow.queue_id == queue_id, QueueLogRow.agent_id.in_(agent_ids))
                )
                return list((await session.execute(query.order_by(QueueLogRow.id))).scalars())
        finally:
            await db.dispose()

    deadline = time.monotonic() + timeout
    while True:
        found = asyncio.run(rows())
        if until(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def show(rows: list[Any]) -> list[tuple[Any, ...]]:
    """Rows as the assertion messages show them."""
    return [(r.event, r.call_id and r.call_id[:6], r.agent_id, round(r.at, 2), r.data) for r in rows]


def callers_rows(rows: list[Any]) -> list[Any]:
    """The rows about callers (not the agents' logins and states)."""
    return [r for r in rows if r.call_id is not None]


def counted(**events: int) -> Callable[[list[Any]], bool]:
    return lambda rows: all(sum(1 for r in rows if r.event == e) >= n for e, n in events.items())


def events(rows: list[Any], *names: str, queue_id: int | None = None) -> list[Any]:
    return [r for r in rows if r.event in names and (queue_id is None or r.queue_id == queue_id)]


def report(c: dict[str, Any], queue_id: int) -> dict[str, Any]:
    now = time.time()
    (row,) = api(
        c, f"/reports/queues?from={int(now - 3600)}&to={int(now + 3600)}&group=day&queue_id={queue_id}"
    )
    return dict(row)


def agent_phone(pbx: Pbx, number: str, *, talk_ms: int, ring_all_delay_ms: int | None = None,
                scenario: str | None = None, timeout: float = 120) -> Any:
    """A registered SIPp agent that answers (after ``ring_all_delay_ms``, unless cancelled first), talks
    ``talk_ms`` and hangs up (``scenario``: another callee scenario); it takes as many calls as it is offered."""
    if scenario is not None:
        text = (harness.SCENARIOS / scenario).read_text()
    elif ring_all_delay_ms is None:
        text = (harness.SCENARIOS / "call_uas_bye.xml").read_text()
        text = text.replace('<pause milliseconds="1000"/>', f'<pause milliseconds="{talk_ms}"/>')
    else:
        text = RING_ALL_AGENT.format(delay=ring_all_delay_ms, talk=talk_ms)
    path = pbx.workdir / f"agent_{number}.xml"
    path.write_text(text)
    port = harness.free_sip_port()
    reg = calls.register_port(
        pbx.target, workdir=pbx.workdir, number=number, domain=pbx.domain, port=port, name=f"register_{number}"
    )
    assert (reg.returncode, reg.successful, reg.failed) == (0, 1, 0), reg.describe()
    return calls.SippProcess(
        path, None, workdir=pbx.workdir, name=f"agent_{number}", local_port=port, timeout=timeout,
        rtp_echo=True, keys={"codec": calls.CODECS["PCMA"], "codec_name": "PCMA"}, extra=["-s", number],
    ).start()


def callers(pbx: Pbx, queue: str, count: int, *, at_once: int = 1, rate: float = 10, timeout: float = 120,
            name: str = "callers", hang_up_ms: int | None = None) -> Any:
    """``count`` SIPp callers to ``queue``, at most ``at_once`` at a time, each waiting for the agent's BYE
    (``hang_up_ms``: hanging up that long after we answered instead). ``name`` is the run's files: each run
    at the same time needs its own."""
    rows = [calls.caller_row(CALLER, harness.password_for(CALLER), pbx.domain, queue)] * count
    extra = ["-mi", harness.LOOPBACK, "-mp", str(calls.free_media_port())]
    if hang_up_ms is not None:
        extra += ["-d", str(hang_up_ms)]
    return harness.run_sipp(
        "call_uac_callee_bye.xml" if hang_up_ms is None else "call_uac.xml", pbx.target, workdir=pbx.workdir, rows=rows, rate=rate, timeout=timeout,
        auth_uri=f"sip:{queue}@{pbx.domain}", extra=extra, limit=at_once, name=name,
    )


def finish(phones: dict[str, Any], expected: dict[str, int]) -> dict[str, Any]:
    """Each agent phone's result once it has seen its ``expected`` calls end."""
    results = {}
    for n, p in phones.items():
        p.wait_for("SuccessfulCall(C)", expected[n], timeout=15)
        results[n] = p.stop()
    return results


def connects_by_agent(c: dict[str, Any], rows: list[Any], agents: tuple[str, ...]) -> list[str]:
    """The agents (extension numbers) of the CONNECT rows, in order."""
    by_id = {c["employees"][n]: n for n in agents}
    return [by_id[r.agent_id] for r in events(rows, "CONNECT")]


# per strategy: (at_once, talk ms per agent); ring-all agents answer after 600 ms (the first) or 4 s. The
# agents are rung one after another (each offer awaits its lookups and media ports): a loaded machine has
# taken 100 ms from the first INVITE to the fifth, and an agent not rung yet when the first answers is not rung.
PLANS: dict[str, tuple[int, tuple[int, ...]]] = {
    "ring_all": (1, (200,) * 5),
    "longest_idle": (1, (200,) * 5),
    "round_robin": (1, (200,) * 5),
    "fewest_calls": (1, (200,) * 5),
    "least_talk_time": (1, (200, 400, 800, 1600, 3200)),
    "random": (COUNT, (1000,) * 5),
    "skills": (2, (300,) * 5),
}


@pytest.mark.parametrize("strategy", list(PLANS))
def test_twenty_callers_five_agents(center: dict[str, Any], strategy: str) -> None:
    pbx: Pbx = center["pbx"]
    agents = STRATEGY_AGENTS[strategy]
    at_once, talks = PLANS[strategy]
    number = f"81{list(PLANS).index(strategy)}"
    settings: dict[str, Any] = {"strategy": strategy, "wrap_up": 0, "ring_timeout": 10}
    if strategy == "skills":
        settings["requirements"] = [{"skill": "english", "min_level": 1}]
        for n, level in zip(agents, (3, 9, 1, 7, 5), strict=True):  # 8162 and 8164 are the two best
            api(center, f"/agents/{center['employees'][n]}/skills", {"skills": {"english": level}}, method="PUT")
    queue_id = make_queue(center, number, agents, **settings)
    phones = {
        n: agent_phone(
            pbx, n, talk_ms=talk, ring_all_delay_ms=(600 if i == 0 else 4000) if strategy == "ring_all" else None
        )
        for i, (n, talk) in enumerate(zip(agents, talks, strict=True))
    }
    try:
        if strategy == "round_robin":  # two runs: the rotation goes on where the first stopped
            results = [callers(pbx, number, 7, name="rr1"), callers(pbx, number, COUNT - 7, name="rr2")]
        else:
            results = [callers(pbx, number, COUNT, at_once=at_once, rate=10 if at_once > 1 else 20)]
        rows = queue_log(center, queue_id, counted(CONNECT=COUNT, COMPLETEAGENT=COUNT), agents=agents)
        order = connects_by_agent(center, rows, agents)
        per_agent = {n: order.count(n) for n in agents}
        rung = {n: COUNT for n in agents} if strategy == "ring_all" else per_agent
        agent_results = finish(phones, rung)
    finally:
        for p in phones.values():
            p.kill()
    for result in results:
        assert result.failed == 0 and result.returncode == 0, result.describe()
    assert sum(r.successful for r in results) == COUNT
    for n, agent_result in agent_results.items():
        assert_all_ok(agent_result, rung[n])
    assert len(events(rows, "ENTERQUEUE")) == COUNT and len(events(rows, "COMPLETEAGENT")) == COUNT
    assert events(rows, "ABANDON", "RINGNOANSWER") == [], rows
    _no_offer_while_busy(center, rows, agents)
    check = {
        "ring_all": _ring_all, "longest_idle": _rotation, "round_robin": _rotation, "fewest_calls": _fewest_calls,
        "least_talk_time": _least_talk, "random": _random, "skills": _skills,
    }[strategy]
    check(center, rows, agents, order)
    kpis = report(center, queue_id)
    assert (kpis["offered"], kpis["answered"], kpis["abandoned"], kpis["overflowed"]) == (COUNT, COUNT, 0, 0), kpis


def _no_offer_while_busy(c: dict[str, Any], rows: list[Any], agents: tuple[str, ...]) -> None:
    """Every agent's phone rang only while available, and its calls did not overlap."""
    for n in agents:
        agent_id = c["employees"][n]
        mine = [r for r in rows if r.agent_id == agent_id]
        rang = [r.data["from"] for r in mine if r.event == "AGENTSTATUS" and r.data["to"] == "ringing"]
        assert set(rang) <= {"available"}, (n, rang)
        talking = False
        for r in mine:
            if r.event == "CONNECT":
                assert not talking, f"{n} connected to a second caller during a call"
                talking = True
            elif r.event in ("COMPLETEAGENT", "COMPLETECALLER"):
                talking = False


def _ring_all(c: dict[str, Any], rows: list[Any], agents: tuple[str, ...], order: list[str]) -> None:
    # every phone rang for every caller (the agents' SIPp counted twenty INVITEs each); the fastest answers
    assert order == [agents[0]] * COUNT, order
    for n in agents:
        rang = [r for r in rows if r.agent_id == c["employees"][n] and r.event == "AGENTSTATUS"
                and r.data["to"] == "ringing"]
        assert len(rang) == COUNT, (n, len(rang))


def _rotation(c: dict[str, Any], rows: list[Any], agents: tuple[str, ...], order: list[str]) -> None:
    # longest idle: login order, then each goes to the back when it hangs up; round robin: by id, the
    # rotation going on across the two runs of callers. Either way each agent four times, in turn
    by_id = sorted(agents, key=lambda n: c["employees"][n])
    assert by_id == list(agents)  # (so logged in by id too: the two strategies agree here)
    assert order == by_id * (COUNT // len(agents)), order


def _fewest_calls(c: dict[str, Any], rows: list[Any], agents: tuple[str, ...], order: list[str]) -> None:
    handled = dict.fromkeys(agents, 0)
    for n in order:  # callers one at a time: every agent was free, the one with the fewest calls took it
        assert handled[n] == min(handled.values()), (n, handled)
        handled[n] += 1
    assert handled == dict.fromkeys(agents, COUNT // len(agents)), handled


def _least_talk(c: dict[str, Any], rows: list[Any], agents: tuple[str, ...], order: list[str]) -> None:
    by_id = {c["employees"][n]: n for n in agents}
    talk = dict.fromkeys(agents, 0.0)
    for r in rows:  # replayed with the center's own talk figures
        if r.event == "CONNECT":
            n = by_id[r.agent_id]
            assert talk[n] == min(talk.values()), (n, talk)
        elif r.event == "COMPLETEAGENT":
            talk[by_id[r.agent_id]] += float(r.data["talk"])
    counts = [order.count(n) for n in agents]  # agents listed from the shortest talker to the longest
    assert counts[0] > counts[-1] >= 1 and counts[0] + counts[1] > counts[-2] + counts[-1], counts


def _random(c: dict[str, Any], rows: list[Any], agents: tuple[str, ...], order: list[str]) -> None:
    assert all(order.count(n) >= 1 for n in agents), order  # the first five callers found all five free


def _skills(c: dict[str, Any], rows: list[Any], agents: tuple[str, ...], order: list[str]) -> None:
    # two callers at a time: the best (9) takes every call she is free for, the second (7) the others
    best, second = c["employees"][agents[1]], c["employees"][agents[3]]
    assert set(order) <= {agents[1], agents[3]} and order[0] == agents[1], order
    best_busy = False
    for r in rows:
        if r.event == "CONNECT" and r.agent_id == second:
            assert best_busy, "the second best was offered a caller while the best was free"
        elif r.agent_id == best and r.event in ("CONNECT", "COMPLETEAGENT"):
            best_busy = r.event == "CONNECT"


def test_skills_and_relaxation_pick_the_right_agents(center: dict[str, Any]) -> None:
    pbx: Pbx = center["pbx"]
    high, mid, low = SKILLED
    for n, level in zip(SKILLED, (8, 4, 2), strict=True):
        api(center, f"/agents/{center['employees'][n]}/skills", {"skills": {"english": level}}, method="PUT")
    # logged in low first: longest idle would pick low, then mid, if they qualified
    queue_id = make_queue(
        center, "817", (low, mid, high), strategy="longest_idle", wrap_up=0, ring_timeout=10,
        requirements=[{"skill": "english", "min_level": 5}], relaxations=[{"after": 3, "min_level": 3}],
    )
    phones = {high: agent_phone(pbx, high, talk_ms=6500), mid: agent_phone(pbx, mid, talk_ms=500),
              low: agent_phone(pbx, low, talk_ms=500)}
    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(callers(pbx, "817", 1, name="skilled1")))
    try:
        first.start()
        rows = queue_log(center, queue_id, counted(CONNECT=1))  # high took the first caller
        results.append(callers(pbx, "817", 1, name="skilled2"))  # waits, then mid after the relaxation
        first.join(timeout=60)
        rows = queue_log(center, queue_id, counted(COMPLETEAGENT=2), agents=SKILLED)
        agent_results = finish(phones, {high: 1, mid: 1, low: 0})
    finally:
        for p in phones.values():
            p.kill()
    for result in results:
        assert_all_ok(result, 1)
    for n, agent_result in agent_results.items():
        assert agent_result.failed == 0 and agent_result.successful == (0 if n == low else 1), agent_result.describe()
    first_connect, second_connect = events(rows, "CONNECT")
    assert first_connect.agent_id == center["employees"][high], rows
    assert second_connect.agent_id == center["employees"][mid], rows
    assert second_connect.data["hold"] >= 3.0, second_connect.data  # offered once the relaxation applied
    low_rang = [r for r in rows if r.agent_id == center["employees"][low] and r.event == "AGENTSTATUS"
                and r.data["to"] == "ringing"]
    assert low_rang == [] and events(rows, "RINGNOANSWER") == [], rows  # never offered, not even rung


def _hang_up_after(agent: Baresip, seconds: float, stop: threading.Event, answered: list[int]) -> None:
    """The baresip agent (answering automatically) hangs up each call ``seconds`` after it is established."""
    while not stop.is_set():
        try:
            agent.wait_event({"CALL_ESTABLISHED"}, timeout=0.5)
        except TimeoutError:
            continue
        time.sleep(seconds)
        agent.command("hangup")
        agent.wait_event({"CALL_CLOSED"}, timeout=15)
        answered.append(1)


def test_wrap_up_keeps_an_agent_from_the_next_caller(
    center: dict[str, Any], phones: list[Baresip], tmp_path: Path
) -> None:
    pbx: Pbx = center["pbx"]
    wrap = 3
    sipp_agent, soft_agent = WRAPPING
    queue_id = make_queue(center, "818", WRAPPING, strategy="longest_idle", wrap_up=wrap, ring_timeout=10)
    sipp_phone = agent_phone(pbx, sipp_agent, talk_ms=1000)
    soft = phone(phones, tmp_path, (pbx.server, pbx.seeded), soft_agent, auto_answer=True)
    stop = threading.Event()
    soft_calls: list[int] = []
    hanging_up = threading.Thread(target=_hang_up_after, args=(soft, 1.0, stop, soft_calls))
    hanging_up.start()
    count = 4
    try:
        # callers one at a time, each talking until the agent hangs up a second later: the first to the SIPp
        # agent (the longest idle), the second to baresip (the SIPp agent is wrapping up), the third waits for
        # the first wrap-up to end
        result = callers(pbx, "818", count, name="wrap_callers")
        rows = queue_log(
            center, queue_id,
            lambda found: sum(1 for r in found if r.event == "AGENTSTATUS" and r.data["from"] == "wrap_up") >= count,
            agents=WRAPPING,
        )
        ids = {center["employees"][n]: n for n in WRAPPING}
        sipp_calls = sum(1 for r in events(rows, "CONNECT") if ids[r.agent_id] == sipp_agent)
        sipp_result = finish({sipp_agent: sipp_phone}, {sipp_agent: sipp_calls})[sipp_agent]
    finally:
        stop.set()
        hanging_up.join(timeout=20)
        sipp_phone.kill()
        soft.stop()
    assert_all_ok(result, count)
    assert_all_ok(sipp_result, sipp_calls)
    connects = events(rows, "CONNECT")
    completes = events(rows, "COMPLETEAGENT")
    assert len(connects) == len(completes) == count and len(soft_calls) == count - sipp_calls, show(rows)
    assert [ids[r.agent_id] for r in connects[:3]] == [sipp_agent, soft_agent, sipp_agent], show(rows)
    for agent_id in ids:
        mine = [r for r in rows if r.agent_id == agent_id and r.event != "ADDMEMBER"]
        calls_of = [r for r in mine if r.event in ("CONNECT", "COMPLETEAGENT")]
        for ended, following in zip(calls_of[1::2], calls_of[2::2], strict=False):
            assert following.event == "CONNECT", show(mine)
            assert following.at - ended.at >= wrap, show(mine)  # not offered while wrapping up
            between = [(r.data["from"], r.data["to"]) for r in mine
                       if r.event == "AGENTSTATUS" and ended.id < r.id < following.id]
            assert between[:2] == [("on_call", "wrap_up"), ("wrap_up", "available")], show(mine)
    wraps = [r for r in rows if r.event == "AGENTSTATUS" and r.data["from"] == "wrap_up"]
    assert len(wraps) == count and all(r.data["seconds"] >= wrap for r in wraps), show(wraps)
    assert all(r.queue_id == queue_id for r in wraps), show(wraps)
    talk = sum(float(r.data["talk"]) for r in completes)
    wrap_time = sum(float(r.data["seconds"]) for r in wraps)
    kpis = report(center, queue_id)
    assert (kpis["offered"], kpis["answered"]) == (count, count), kpis
    assert kpis["wrap_up_time"] == pytest.approx(wrap_time, abs=1e-3), kpis
    assert kpis["aht"] == pytest.approx((talk + wrap_time) / count, abs=1e-3), kpis
    assert kpis["aht"] >= talk / count + wrap, kpis


def test_max_wait_overflows_to_a_queue_an_extension_and_a_mailbox(center: dict[str, Any]) -> None:
    """Queue 8195 (one agent; max wait 10 s; service level 5 s) overflows to queue 8196; queue 8197 (nobody
    logged in; max wait 10 s) to an extension. Callers: A answered at once in 8195, its agent asking meanwhile
    to pause once the call is over (so nobody else is offered to her); B waits in 8195, leaves at 10 s for
    8196, where its agent answers; C hangs up in 8195 after 3 s (an abandon); D waits in 8197 and goes to the extension, which answers; E waits in 8198 (nobody logged in) and
    goes to a mailbox, which records what it says after the greeting."""
    pbx: Pbx = center["pbx"]
    to_queue = make_queue(center, "8196", (SECOND_LINE,), wrap_up=0)
    first = make_queue(center, "8195", (FIRST_LINE,), wrap_up=0, max_wait=10, service_level=5,
                       overflow={"kind": "queue", "number": "8196"})
    to_extension = make_queue(center, "8197", (), max_wait=10, overflow={"kind": "extension", "number": OVERFLOW_EXT})
    to_mailbox = make_queue(center, "8198", (), max_wait=10, overflow={"kind": "voicemail", "number": MAILBOX})
    (box,) = [e for e in api(center, f"/extensions?q={MAILBOX}", base="")["items"] if e["number"] == MAILBOX]
    api(center, f"/extensions/{box['id']}/voicemail", {"pin": "4711", "silence_seconds": 0}, method="PUT", base="")
    api(center, "/reasons", {"name": "Lunch"})
    phones = {FIRST_LINE: agent_phone(pbx, FIRST_LINE, talk_ms=2000),
              SECOND_LINE: agent_phone(pbx, SECOND_LINE, talk_ms=1000),
              OVERFLOW_EXT: agent_phone(pbx, OVERFLOW_EXT, talk_ms=1000)}
    results: dict[str, Any] = {}

    def run(name: str, fn: Callable[[], Any]) -> threading.Thread:
        thread = threading.Thread(target=lambda: results.update({name: fn()}))
        thread.start()
        return thread

    try:
        threads = [run("A", lambda: callers(pbx, "8195", 1, name="ovf_a"))]
        queue_log(center, first, counted(CONNECT=1))  # A talks to the first line's agent
        first_agent = f"/agents/{center['employees'][FIRST_LINE]}"
        assert api(center, f"{first_agent}/pause", {"reason": "Lunch"})["status"] == "on_call"  # after this call
        threads += [
            run("B", lambda: callers(pbx, "8195", 1, name="ovf_b")),
            run("C", lambda: callers(pbx, "8195", 1, name="ovf_c", hang_up_ms=3000)),
            run("D", lambda: callers(pbx, "8197", 1, name="ovf_d")),
            # 10 s in line, the greeting, then a few seconds of message before hanging up
            run("E", lambda: callers(pbx, "8198", 1, name="ovf_e", hang_up_ms=18_000)),
        ]
        for thread in threads:
            thread.join(timeout=90)
        agent_results = finish(phones, dict.fromkeys(phones, 1))
    finally:
        for p in phones.values():
            p.kill()
    for name in "ABCDE":
        assert_all_ok(results[name], 1)  # B and D: answered by the overflow destination, which hung up
    for agent_result in agent_results.values():
        assert_all_ok(agent_result, 1)
    rows = callers_rows(queue_log(center, first, counted(EXITWITHTIMEOUT=1, ABANDON=1, COMPLETEAGENT=1)))
    assert sorted(r.event for r in rows) == sorted(["ENTERQUEUE", "CONNECT", "COMPLETEAGENT", "ENTERQUEUE",
                                                    "ABANDON", "ENTERQUEUE", "EXITWITHTIMEOUT"]), show(rows)
    assert [r.event for r in rows][:2] == ["ENTERQUEUE", "CONNECT"] and rows[-1].event == "EXITWITHTIMEOUT", show(rows)
    assert api(center, first_agent)["status"] == "not_ready"  # paused after A's call: B was never offered
    (exit_row,) = events(rows, "EXITWITHTIMEOUT")
    assert exit_row.data["wait"] >= 10, exit_row.data
    second = callers_rows(queue_log(center, to_queue, counted(COMPLETEAGENT=1)))
    assert [r.event for r in second] == ["ENTERQUEUE", "CONNECT", "COMPLETEAGENT"], show(second)
    assert second[0].call_id == exit_row.call_id and second[1].agent_id == center["employees"][SECOND_LINE]
    third = callers_rows(queue_log(center, to_extension, counted(EXITWITHTIMEOUT=1)))
    assert [r.event for r in third] == ["ENTERQUEUE", "EXITWITHTIMEOUT"], show(third)
    fourth = callers_rows(queue_log(center, to_mailbox, counted(EXITWITHTIMEOUT=1)))
    assert [r.event for r in fourth] == ["ENTERQUEUE", "EXITWITHTIMEOUT"], show(fourth)
    deadline = time.monotonic() + 15
    while not (left := api(center, f"/voicemail/messages?extension_id={box['id']}", base="")["items"]):
        assert time.monotonic() < deadline, "no message in the mailbox the queue overflowed to"
        time.sleep(0.3)
    (message,) = left
    assert (message["number"], message["caller_number"], message["folder"]) == (MAILBOX, CALLER, "inbox"), message
    assert message["duration"] >= 1, message
    kpis = report(center, to_mailbox)
    assert (kpis["offered"], kpis["answered"], kpis["overflowed"], kpis["service_level"]) == (1, 0, 1, 0.0), kpis
    kpis = report(center, first)
    assert (kpis["offered"], kpis["answered"], kpis["abandoned"], kpis["overflowed"]) == (3, 1, 1, 1), kpis
    assert (kpis["answered_in_time"], kpis["service_level"]) == (1, pytest.approx(1 / 3)), kpis
    assert kpis["abandon_rate"] == pytest.approx(1 / 3), kpis
    kpis = report(center, to_queue)
    assert (kpis["offered"], kpis["answered"], kpis["overflowed"], kpis["service_level"]) == (1, 1, 0, 1.0), kpis
    kpis = report(center, to_extension)
    assert (kpis["offered"], kpis["answered"], kpis["overflowed"], kpis["service_level"]) == (1, 0, 1, 0.0), kpis
