"""Call-center dispatch on one core: the time from an agent becoming available to the offer of the next
waiting call, with 1,000 callers waiting and 200 agents (the issue's target: p99 < 20 ms, measured here
for the sans-I/O core alone — :class:`zvonok.callcenter.center.ContactCenter`, no SIP, no sockets; the
INVITE to the agent's phone adds the call engine's own set-up time).

The line: ``--callers`` callers in ``--queues`` queues that need one of ``--skills`` skills at a minimum
level (relaxed after 30 s), with every ``--vip``-th caller a VIP; agents have random skills. Agents are
all on calls; the script then ends their calls one by one (wrap-up 0) and times each ``call_ended``,
which finds and offers the next call; the answered offer takes that caller out of the line and a new
caller joins, so the line stays at its size. Also timed: a caller joining while every agent is busy.

Run: ``PYTHONPATH=src python bench/callcenter.py [--callers 1000 --agents 200]``.

**With real INVITEs** (``--sip``): the same question asked of the running server. It seeds ``--agents``
employees with extensions (8000...) and a pool of caller extensions (9000...) into a temporary data
directory, starts ``zvonok serve`` on free loopback ports, registers every agent's extension with one
SIPp in server mode as its Contact (``queue_agent.xml``: 180, answer after 300 ms, talk ``--talk-ms``,
then the agent hangs up with BYE), makes a longest-idle queue (wrap-up 0) with all of them logged in,
and has a SIPp caller place ``--callers`` calls (``call_uac_callee_bye.xml``, digest-authenticated, at
``--rate`` calls/s, all allowed at once) to it. Callers beyond the agents wait with music on hold.

Measured from the agents' SIPp message trace (``-trace_msg``, one clock for both ends of the interval):
for each agent, the time from the BYE it sent (its call ends: it is available again, with callers
waiting) to the next INVITE it received — the server's BYE handling, the center's dispatch and the new
leg's set-up together (p50 / p99 / max); the queue's throughput (INVITEs to agents per second between
the first and the last); the server's CPU (``/proc/<pid>/stat``) over the callers' run, per call and as a
share of one core; the load average before and after (the machine is shared: say so with the figures).
With ``--ws-clients N`` (default 1) that many admin websockets (``/api/v1/tenants/{id}/events``, as a
supervisor's wallboard opens) are open through the run: the events each received per second (call,
leg, CDR, agent and queue state events by type) and any ``EventsDropped`` the server reported to them.

Run: ``PATH=.venv/bin:$PATH PYTHONPATH=src python bench/callcenter.py --sip --callers 200 --agents 50``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from zvonok.callcenter.center import ContactCenter, Offer
from zvonok.callcenter.queues import QueueConfig, Relaxation, SkillRequirement, Strategy


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--skills", type=int, default=5)
    parser.add_argument("--vip", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--sip", action="store_true", help="drive a running server with SIPp instead")
    parser.add_argument("--rate", type=float, default=50, help="--sip: calls/s the callers place")
    parser.add_argument("--talk-ms", type=int, default=8000,
                        help="--sip: each agent's talk time (longer than the callers take to arrive: every BYE "
                             "then finds callers waiting)")
    parser.add_argument("--talk-spread-ms", type=int, default=0,
                        help="--sip: each call's talk time drawn uniformly from talk ± this (hang-ups not in step, "
                             "as in a real call center); 0: every call talks exactly --talk-ms")
    parser.add_argument("--ws-clients", type=int, default=1,
                        help="--sip: admin websockets open on the tenant's events through the run (0: none)")
    args = parser.parse_args()
    if args.sip:
        sip_bench(args)
        return
    rng = random.Random(1)
    cc = ContactCenter(rng=random.Random(2))
    skills = [f"s{n}" for n in range(args.skills)]
    for q in range(args.queues):
        cc.set_queue(QueueConfig(id=q, tenant_id=1, strategy=Strategy.SKILLS if q % 2 else Strategy.LONGEST_IDLE,
                                 requirements=(SkillRequirement(skills[q % args.skills], 5),),
                                 relaxations=(Relaxation(after=30, min_level=2),), wrap_up=0, ring_timeout=1e9), 0.0)
    now = 1.0
    serial = 0

    def join() -> None:
        nonlocal serial
        serial += 1
        cc.join(f"c{serial}", rng.randrange(args.queues), now, number=f"+7495{serial:07d}",
                priority=5 if serial % args.vip == 0 else 0)

    # agents log in to a few queues each, with random skills, and take the first calls
    for agent in range(args.agents):
        cc.login(agent, rng.sample(range(args.queues), 3), now,
                 skills={s: rng.randint(1, 10) for s in rng.sample(skills, 3)})
    calls: dict[int, str] = {}

    def settle() -> None:
        for action in cc.take_actions():
            if isinstance(action, Offer) and cc.offer_answered(action.call_id, action.agent_id, now):
                calls[action.agent_id] = action.call_id
        cc.take_log()

    for _ in range(args.agents * 5):  # fill the agents' phones (some skill sets fit few queues)
        if len(calls) == args.agents:
            break
        join()
        settle()
    for _ in range(args.callers):
        join()
    settle()
    waiting = len(cc.waiting)
    freed: list[float] = []
    joined: list[float] = []
    served = 0
    for _ in range(args.rounds):
        now += 0.01
        agent = rng.choice(list(calls))
        call = calls.pop(agent)
        start = time.perf_counter()
        cc.call_ended(call, now, by_agent=True)
        offered = [a for a in cc.take_actions() if isinstance(a, Offer)]
        freed.append(time.perf_counter() - start)
        cc.take_log()
        for offer in offered:
            if cc.offer_answered(offer.call_id, offer.agent_id, now):
                calls[offer.agent_id] = offer.call_id
                served += 1
        start = time.perf_counter()
        join()
        joined.append(time.perf_counter() - start)
        settle()
    ms = 1000
    print(f"line: {waiting} callers waiting, {args.agents} agents, {args.queues} queues, {args.skills} skills")
    print(f"agent available -> next offer: p50 {percentile(freed, 50) * ms:.3f} ms, "
          f"p99 {percentile(freed, 99) * ms:.3f} ms, max {max(freed) * ms:.3f} ms "
          f"({served} of {args.rounds} freed agents were offered a call at once)")
    print(f"caller joins (every agent busy): p50 {percentile(joined, 50) * ms:.3f} ms, "
          f"p99 {percentile(joined, 99) * ms:.3f} ms, mean {statistics.mean(joined) * ms:.3f} ms")


# -- with real INVITEs -----------------------------------------------------------------------------------
DOMAIN = "cc-bench.test"
QUEUE_NUMBER = "600"
PCMA = {"codec": "8", "codec_name": "PCMA"}
_STAMP = re.compile(rb"^-{10,} (\d{4}-\d\d-\d\d)\s+(\d\d:\d\d:\d\d\.\d+)", re.M)
_CALL_ID = re.compile(rb"^(?:Call-ID|i)\s*:\s*(\S+)", re.M | re.I)
_INVITE_USER = re.compile(rb"^INVITE sip:([^@;>\s]+)@")


def trace_events(path: Path) -> list[tuple[float, str, str, bytes]]:
    """(time, "in" | "out", method or status, Call-ID) of each message in a SIPp ``-trace_msg`` file."""
    data = path.read_bytes()
    marks = list(_STAMP.finditer(data))
    out = []
    for i, mark in enumerate(marks):
        body = data[mark.end(): marks[i + 1].start() if i + 1 < len(marks) else len(data)]
        when = datetime.strptime(f"{mark.group(1).decode()} {mark.group(2).decode()}", "%Y-%m-%d %H:%M:%S.%f")
        head, _, message = body.partition(b"\n\n")
        direction = "in" if b"received" in head else "out"
        first = message.lstrip().split(b"\r\n", 1)[0].split(b"\n", 1)[0]
        call_id = _CALL_ID.search(message)
        found = _INVITE_USER.match(first)
        kind = first.split(b" ", 1)[0].decode(errors="replace") if not first.startswith(b"SIP/2.0") else first[8:11].decode()
        out.append((when.timestamp(), direction, kind + (":" + found.group(1).decode() if found else ""),
                    call_id.group(1) if call_id else b""))
    return out


def availability_latencies(events: list[tuple[float, str, str, bytes]]) -> tuple[list[float], int, float]:
    """Per agent: BYE sent -> the next new INVITE received (seconds); the offers; their span in seconds."""
    agent_of: dict[bytes, str] = {}
    timeline: dict[str, list[tuple[float, str]]] = {}
    for at, direction, kind, call_id in sorted(events):
        if direction == "in" and kind.startswith("INVITE:") and call_id not in agent_of:  # not a retransmission
            agent = kind.split(":", 1)[1]
            agent_of[call_id] = agent
            timeline.setdefault(agent, []).append((at, "invite"))
        elif direction == "out" and kind == "BYE" and call_id in agent_of:
            timeline.setdefault(agent_of[call_id], []).append((at, "bye"))
    latencies = []
    for items in timeline.values():
        bye_at = None
        for at, what in items:
            if what == "bye":
                bye_at = at if bye_at is None else bye_at  # a retransmitted BYE: the first one counts
            elif bye_at is not None:
                latencies.append(at - bye_at)
                bye_at = None
    invites = sorted(at for items in timeline.values() for at, what in items if what == "invite")
    return latencies, len(invites), (invites[-1] - invites[0]) if len(invites) > 1 else 0.0


def agent_scenario(tmp: Path, talk_ms: int, spread_ms: int) -> str:
    """``queue_agent.xml``, or a copy whose talk pause is uniform in talk ± spread (SIPp's pause distribution)."""
    if spread_ms <= 0:
        return "queue_agent.xml"
    if spread_ms >= talk_ms:
        raise SystemExit("--talk-spread-ms must be below --talk-ms")
    import _common as h

    text = (h.SCENARIOS / "queue_agent.xml").read_text()
    if text.count("<pause/>") != 1:
        raise RuntimeError("queue_agent.xml: expected one <pause/> (the talk time)")
    path = tmp / "queue_agent_spread.xml"
    path.write_text(text.replace("<pause/>", f'<pause distribution="uniform" min="{talk_ms - spread_ms}" '
                                             f'max="{talk_ms + spread_ms}"/>'))
    return str(path)


class EventWatcher:
    """``clients`` websockets on a tenant's events, each counting the frames it receives (in threads)."""

    def __init__(self, ws_url: str, token: str, clients: int) -> None:
        self.url, self.token = ws_url, token
        self.counts: list[Counter[str]] = [Counter() for _ in range(clients)]
        self.dropped = [0] * clients
        self._stop = threading.Event()
        self._connected = threading.Barrier(clients + 1) if clients else None
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)]
        self.started = self.stopped = 0.0

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        if self._connected is not None:
            self._connected.wait(timeout=30)
        self.started = time.monotonic()

    def stop(self) -> None:
        self.stopped = time.monotonic()
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _run(self, n: int) -> None:
        from websockets.sync.client import connect

        with connect(self.url, additional_headers={"Authorization": f"Bearer {self.token}"},
                     max_size=2**20) as ws:
            assert self._connected is not None
            self._connected.wait(timeout=30)
            while not self._stop.is_set():
                try:
                    frame = ws.recv(timeout=0.2)
                except TimeoutError:
                    continue
                event = json.loads(frame)
                if event.get("type") == "EventsDropped":
                    self.dropped[n] = int(event["dropped"])
                elif not self._stop.is_set():
                    self.counts[n][str(event.get("type"))] += 1

    def report(self) -> str:
        if not self.counts:
            return "websocket: no client"
        span = max(1e-9, self.stopped - self.started)
        totals = [sum(c.values()) for c in self.counts]
        kinds = sum(self.counts, Counter()).most_common(6)
        return (f"websocket: {len(self.counts)} admin client(s), each received {min(totals):,}–{max(totals):,} events "
                f"in {span:.1f} s = {statistics.mean(totals) / span:,.0f} events/s each, "
                f"{sum(totals) / span:,.0f} events/s sent in all; dropped: {sum(self.dropped)}; most frequent: "
                + ", ".join(f"{kind} {count // len(self.counts):,}" for kind, count in kinds))


def sip_bench(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _calls as c
    import _common as h

    if args.agents > 1000:
        raise SystemExit("--sip: at most 1000 agents (extensions 8000-8999)")
    tmp = Path(tempfile.mkdtemp(prefix="zvonok-cc-bench-"))
    agents = [str(8000 + n) for n in range(args.agents)]
    callers = [str(9000 + n) for n in range(min(args.callers, 100))]  # a caller's number may have many calls
    load_before = os.getloadavg()
    print(f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {h.cpu_model()}, {os.cpu_count()} cores, "
          f"{platform.python_version()}; load average before {load_before[0]:.2f} {load_before[1]:.2f}")
    seeded = h.seed(tmp / "data", domain=DOMAIN, numbers=[*agents, *callers])
    employees = h.seed_pstn(tmp / "data", seeded.tenant_id,
                            {"employees": [{"name": f"Agent {n}", "extension": n} for n in agents]})["employees"]
    server = h.ZvonokServer(data_dir=tmp / "data", env={
        "ZVONOK_AUTH_FAIL_LIMIT": "1000000", "ZVONOK_INVITE_RATE_LIMIT": "100000",
        "ZVONOK_CALL_NO_ANSWER_TIMEOUT": "120"})
    server.start()
    agent_uas = None
    try:
        target = f"{h.LOOPBACK}:{server.sip_port}"
        port = h.free_sip_port()
        reg = h.run_sipp("register.xml", target, workdir=tmp, rate=100, timeout=120, auth_uri=f"sip:{DOMAIN}",
                         rows=[h.sipp_row(n, h.password_for(n), DOMAIN) for n in agents], local_port=port,
                         name="register_agents")
        if reg.successful != len(agents):
            raise RuntimeError(f"registered {reg.successful} of {len(agents)} agents:\n{reg.describe()}")

        def api(path: str, body: object = None, method: str | None = None) -> dict[str, object]:
            url = f"{server.http_url}/api/v1/tenants/{seeded.tenant_id}/callcenter{path}"
            result: dict[str, object] = h.http_json(url, seeded.token, method=method or ("POST" if body is not None else "GET"),
                                                    body=body)
            return result

        queue = api("/queues", {"name": "Bench", "number": QUEUE_NUMBER, "strategy": "longest_idle", "wrap_up": 0,
                                "ring_timeout": 60})
        ids = [employees[f"Agent {n}"] for n in agents]
        api(f"/queues/{queue['id']}/members", {"employee_ids": ids}, "PUT")
        for employee in ids:
            api(f"/agents/{employee}/login", {"queue_ids": [queue["id"]]})
        trace = tmp / "agents_messages.log"
        talk_rounds = -(-args.callers // args.agents)
        budget = 60 + talk_rounds * ((args.talk_ms + args.talk_spread_ms) / 1000 + 2) + args.callers / args.rate
        agent_uas = c.SippProcess(agent_scenario(tmp, args.talk_ms, args.talk_spread_ms), None, workdir=tmp,
                                  name="agents", local_port=port, timeout=budget, keys=PCMA,
                                  extra=["-d", str(args.talk_ms), "-trace_msg", "-message_file", str(trace),
                                         "-buff_size", "4194304"]).start()
        ws_url = server.http_url.replace("http://", "ws://", 1) + f"/api/v1/tenants/{seeded.tenant_id}/events"
        watcher = EventWatcher(ws_url, seeded.token, args.ws_clients)
        watcher.start()
        cpu0, wall0 = server.cpu_seconds(), time.monotonic()
        rows = [c.caller_row(callers[i % len(callers)], h.password_for(callers[i % len(callers)]), DOMAIN,
                             QUEUE_NUMBER) for i in range(args.callers)]
        caller_trace = tmp / "callers_messages.log"
        result = h.run_sipp("call_uac_callee_bye.xml", target, workdir=tmp, rows=rows, rate=args.rate,
                            timeout=budget, auth_uri=f"sip:{QUEUE_NUMBER}@{DOMAIN}", limit=args.callers,
                            name="callers", extra=["-mi", h.LOOPBACK, "-mp", str(c.free_media_port()),
                                                   "-buff_size", "4194304", "-trace_msg", "-message_file",
                                                   str(caller_trace)])
        cpu, wall = server.cpu_seconds() - cpu0, time.monotonic() - wall0
        watcher.stop()
        agent_uas.quit()
        agent_uas.wait(timeout=30)
        agent_events = trace_events(trace)
        latencies, offers, span = availability_latencies(agent_events)
        # every caller answered by us (it is in line from then on) before the first agent hung up?
        answered_at: dict[bytes, float] = {}
        for at, direction, kind, call_id in trace_events(caller_trace):
            if direction == "in" and kind == "200":
                answered_at.setdefault(call_id, at)  # the first 200 of a call (not a retransmission)
        answered = list(answered_at.values())
        first_bye = min((at for at, direction, kind, _ in agent_events if direction == "out" and kind == "BYE"),
                        default=0.0)
    finally:
        if agent_uas is not None:
            agent_uas.kill()
        code = server.stop()
    load_after = os.getloadavg()
    ms = 1000
    print(f"callers: {result.successful} of {args.callers} connected and hung up on ({result.failed} failed), "
          f"{args.agents} agents (answer 300 ms, talk {args.talk_ms} ± {args.talk_spread_ms} ms), "
          f"callers placed at {args.rate:g}/s")
    if latencies:
        print(f"agent available (its BYE) -> next INVITE to it: p50 {percentile(latencies, 50) * ms:.1f} ms, "
              f"p99 {percentile(latencies, 99) * ms:.1f} ms, max {max(latencies) * ms:.1f} ms "
              f"({len(latencies)} intervals)")
    if answered:
        last_in = max(answered)
        print(f"the callers were all in line {first_bye - last_in:+.1f} s before the first agent hung up"
              " (negative: some intervals include waiting for a caller)")
    ceiling = args.agents / (0.3 + args.talk_ms / 1000)
    print(f"queue throughput: {offers} offers in {span:.1f} s = {offers / span if span else 0:.1f} calls/s "
          f"(the agents' ceiling: {ceiling:.1f}/s)")
    print(f"server CPU: {cpu:.1f} s over {wall:.1f} s = {cpu / wall * 100:.0f}% of a core, "
          f"{cpu / max(1, result.successful) * ms:.1f} ms per call (music to the waiting included)")
    print(watcher.report())
    print(f"load average after {load_after[0]:.2f} {load_after[1]:.2f}; server exit code {code}; "
          f"SIPp traces and the server's data in {tmp} (delete when done)")


if __name__ == "__main__":
    main()
