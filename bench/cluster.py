"""Scale-out through the Kamailio edge: one node, then two, in the same run (issue 14).

What it does: creates a fresh PostgreSQL database (dropped at the end) and seeds one tenant into it,
starts ``zvonok serve`` node 1 on loopback (PostgreSQL for the store, NATS for the bus, the same secret
key on every node) and Kamailio in front of it on 127.0.0.2 (``deploy/kamailio/render.py``, UDP, pike
lifted: every SIPp call comes from one address), then

1. **one node behind the edge**: registration steps, then call set-up steps;
2. node 2 starts, the edge is restarted with both nodes in its dispatcher set; the same steps again.

* **Registrations**: SIPp's ``register.xml`` (REGISTER -> 401 -> REGISTER with digest -> 200) through the
  edge, ``rate × --reg-seconds`` REGISTERs per step over ``--users`` extensions (the edge picks a node by
  a hash of the To URI, so the users spread over the nodes).
* **Call set-up**: short calls as ``bench/calls.py`` places them (``call_uac_short.xml``: INVITE -> 407 ->
  ACK -> INVITE with credentials -> 100/180/200 -> ACK -> ``--hold-ms`` -> BYE), ``rate × --call-seconds``
  per step, from ``--callers`` extensions (the edge picks a node by a hash of the From URI) to one SIPp
  callee registered through the edge (``call_uas_answer.xml``): the node sends that INVITE back through
  the edge along the callee's Path, so the edge carries both legs of every call.

Each kind steps its offered rate up (``--reg-rates``, ``--call-rates``) and stops after the first step
with failures or retransmissions (more than 0.1% failed, or retransmissions over 0.5% of the calls, or
under 80% of the offered rate achieved). Per step: achieved rate, failed, SIPp's retransmissions, each
node's CPU seconds and the edge's (``/proc/<pid>/stat`` of the process and all its descendants: Kamailio
forks its workers), hence CPU per registration / per call. The summary gives the best clean step of each
kind with one node and with two, and their ratio. All processes share the machine's cores (SIPp,
Kamailio, PostgreSQL, NATS and the nodes): on a 2-core machine the 2-node figure is bounded by the cores,
not by the nodes.

Traffic goes to 127.0.0.1/127.0.0.2 only; every SIPp run is bounded by ``-m`` and ``-timeout``; the
nodes are stopped with SIGTERM (their exit codes printed), Kamailio too; the database and the run's NATS
stream are dropped.

Example::

    .venv/bin/python bench/cluster.py --reg-rates 200,300,400,500,600,800 --call-rates 50,100,150,200,250

On a machine with cores to spare, ``--node-cpus '2;3' --other-cpus 0-1`` gives each node a core of its own
and keeps SIPp and Kamailio off them: that measures what the second node adds, which 2 cores cannot show.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _calls as c  # noqa: E402 - the sibling modules, importable once the path is set
import _common as h  # noqa: E402

DOMAIN = "cluster-bench.test"
EDGE_HOST = "127.0.0.2"  # the edge's own address: the nodes trust it (ZVONOK_TRUSTED_EDGES)
CALLEE = "7000"
FAILURE_BUDGET = 0.001  # a clean step: at most 0.1% failed ...
RETRANS_BUDGET = 0.005  # ... retransmissions on at most 0.5% of the calls ...
ACHIEVED_SHARE = 0.8  # ... and at least 80% of the offered rate achieved
SIPP_TUNING = ["-buff_size", "4194304", "-max_recv_loops", "5000", "-max_sched_loops", "5000"]
KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"


# --- pure helpers (tests/unit/test_bench_cluster.py) -----------------------------------------------
def parse_rates(text: str) -> list[int]:
    """``"100, 200,300"`` -> ``[100, 200, 300]``; a rate must be positive and the list increasing."""
    rates = [int(r) for r in text.split(",") if r.strip()]
    if any(r <= 0 for r in rates) or rates != sorted(set(rates)):
        raise ValueError(f"rates must be positive and increasing: {text!r}")
    return rates


def parse_cpu_sets(text: str, available: set[int]) -> list[set[int]]:
    """``"2;3"`` -> ``[{2}, {3}]``, ``"0-1;2,3"`` -> ``[{0, 1}, {2, 3}]``: CPU sets separated by ``;``, each a
    comma list of CPUs or ranges; every CPU must be one this process may run on."""
    sets: list[set[int]] = []
    for part in text.split(";"):
        cpus: set[int] = set()
        for item in part.split(","):
            item = item.strip()
            if not item:
                continue
            low, _, high = item.partition("-")
            first, last = int(low), int(high or low)
            if first > last:
                raise ValueError(f"bad CPU range {item!r}")
            cpus.update(range(first, last + 1))
        if not cpus:
            raise ValueError(f"an empty CPU set in {text!r}")
        if not cpus <= available:
            raise ValueError(f"CPU(s) {sorted(cpus - available)} not available (this machine: {sorted(available)})")
        sets.append(cpus)
    return sets


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of process ``pid`` onto ``cpus`` (threads it starts later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cpus)


def descendants(pid: int, parents: Mapping[int, int]) -> set[int]:
    """``pid`` and every process below it, from a child -> parent map."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@dataclass
class Step:
    kind: str  # "reg" or "call"
    nodes: int
    rate: int
    calls: int
    ok: int
    seconds: float  # SIPp's traffic time
    retrans: int
    node_cpu: list[float]
    edge_cpu: float
    sipp_cpu: float
    rc: int
    hold: float = 0.0  # a call's hold time: not part of the set-up rate
    pg_cpu: float = 0.0  # the whole PostgreSQL server's (its other users' too: the machine's other jobs)
    nats_cpu: float = 0.0
    machine_busy: float = 0.0  # cores busy on average over the step, everybody's work (of os.cpu_count())

    @property
    def failed(self) -> int:
        return self.calls - self.ok

    @property
    def achieved(self) -> float:
        return self.ok / max(self.seconds - self.hold, 1e-3)

    @property
    def failure_ratio(self) -> float:
        return self.failed / self.calls if self.calls else 0.0

    @property
    def clean(self) -> bool:
        """No failures or retransmissions worth the name, and the offered rate (nearly) achieved."""
        return (self.failure_ratio <= FAILURE_BUDGET and self.retrans <= RETRANS_BUDGET * self.calls
                and self.achieved >= ACHIEVED_SHARE * self.rate)

    def per_op_us(self, cpu: float) -> float:
        return cpu / self.ok * 1e6 if self.ok else float("nan")


def best(steps: Iterable[Step]) -> Step | None:
    """The clean step with the highest achieved rate."""
    good = [s for s in steps if s.clean]
    return max(good, key=lambda s: s.achieved) if good else None


def ratio(two: Step | None, one: Step | None) -> float | None:
    return two.achieved / one.achieved if two is not None and one is not None and one.achieved else None


# --- processes -------------------------------------------------------------------------------------
def _parents() -> dict[int, int]:
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        out[int(entry.name)] = int(raw[raw.rindex(")") + 2:].split()[1])  # field 4 of stat(5): ppid
    return out


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants (Kamailio's workers are forked children)."""
    total = 0.0
    for p in descendants(pid, _parents()):
        try:
            total += h.proc_cpu_seconds(p)
        except (OSError, ValueError):
            pass  # gone meanwhile
    return total


def named_cpu_seconds(names: frozenset[str]) -> float:
    """utime + stime + cutime + cstime of every live process whose command is one of ``names``: the whole
    server's work, for everybody on it (ours included). PostgreSQL's backends come and go with connections;
    an ended one's CPU moves to the postmaster's cutime/cstime when it is reaped, so the sum only grows."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() not in names:
                continue
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        total += sum(int(f) for f in fields[11:15]) / h.CLK_TCK  # fields 14-17 of stat(5)
    return total


def machine_busy_seconds() -> tuple[float, float]:
    """CPU seconds busy and in all, summed over every core, from /proc/stat (everybody's work)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    total = sum(fields)  # user nice system idle iowait irq softirq steal
    return (total - fields[3] - fields[4]) / h.CLK_TCK, total / h.CLK_TCK


POSTGRES = frozenset({"postgres"})
NATS = frozenset({"nats-server"})


def _render() -> Any:
    name = "zvonok_kamailio_render"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, h.ROOT / "deploy" / "kamailio" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@dataclass
class Edge:
    """Kamailio in the foreground (-DD) on EDGE_HOST:port in front of ``nodes``, stopped with SIGTERM."""

    workdir: Path
    port: int
    nodes: Sequence[int]  # the nodes' SIP ports on 127.0.0.1
    children: int
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    @property
    def target(self) -> str:
        return f"{EDGE_HOST}:{self.port}"

    def start(self) -> None:
        render = _render()
        config = render.EdgeConfig(
            listen=render.HostPort(EDGE_HOST, self.port), transports=("udp",),
            nodes=tuple(render.HostPort(h.LOOPBACK, p) for p in self.nodes), children=self.children,
            ping_interval=1, pike_density=10_000_000, log_level=1, log_stderr=True)
        cfg = render.write(config, self.workdir)
        run = self.workdir / "run"
        run.mkdir(parents=True, exist_ok=True)
        self._log = open(self.workdir / "kamailio.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [KAMAILIO, "-DD", "-E", "-f", str(cfg), "-Y", str(run), "-P", str(run / "kamailio.pid"),
             "-m", "256", "-M", "16", "-w", str(self.workdir)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if not h.options_answered(EDGE_HOST, self.port, timeout=30):
            self.stop()
            raise RuntimeError(f"the edge does not answer OPTIONS:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return tree_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 4000) -> str:
        path = self.workdir / "kamailio.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


# --- PostgreSQL and NATS (through the venv's Python: asyncpg and nats-py are the server's dependencies) ---
_PG_ADMIN = """
import asyncio, sys
import asyncpg
async def main():
    conn = await asyncpg.connect(sys.argv[1])
    try:
        for sql in sys.argv[2:]:
            await conn.execute(sql)
    finally:
        await conn.close()
asyncio.run(main())
"""

_DROP_STREAM = """
import asyncio, contextlib, sys
import nats, nats.js.errors
async def main():
    nc = await nats.connect(sys.argv[1])
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(sys.argv[2])
    finally:
        await nc.close()
asyncio.run(main())
"""


def _child(code: str, *args: str) -> None:
    out = subprocess.run([h.PYTHON, "-c", code, *args], capture_output=True, text=True, timeout=120, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{args[1:]} failed:\n{out.stderr[-3000:]}")


# --- steps -----------------------------------------------------------------------------------------
@dataclass
class Run:
    nodes: list[h.ZvonokServer]
    edge: Edge
    workdir: Path
    # every registering SIPp runs on this one port: a step's REGISTERs refresh the bindings the warm-up made
    # (their Contact names the port), as phones do; a new port each step would add a contact per user per step
    reg_port: int = field(default_factory=h.free_sip_port)

    def cpu(self) -> tuple[list[float], float]:
        return [tree_cpu_seconds(n.pid) for n in self.nodes], self.edge.cpu_seconds()

    def shared_cpu(self) -> tuple[float, float]:
        return named_cpu_seconds(POSTGRES), named_cpu_seconds(NATS)


def _measure(run: Run, kind: str, rate: int, calls: int, go: Any, hold: float = 0.0) -> Step:
    nodes0, edge0 = run.cpu()
    pg0, nats0 = run.shared_cpu()
    busy0, all0 = machine_busy_seconds()
    result: h.SippResult = go()
    time.sleep(0.5)  # the last CDR writes, binding flushes and endpoint releases of this step
    nodes1, edge1 = run.cpu()
    pg1, nats1 = run.shared_cpu()
    busy1, all1 = machine_busy_seconds()
    return Step(kind=kind, nodes=len(run.nodes), rate=rate, calls=calls, ok=result.successful,
                seconds=result.traffic_seconds, retrans=result.retransmissions,
                node_cpu=[b - a for a, b in zip(nodes0, nodes1, strict=True)], edge_cpu=edge1 - edge0,
                sipp_cpu=result.cpu, rc=result.returncode, hold=hold, pg_cpu=pg1 - pg0, nats_cpu=nats1 - nats0,
                machine_busy=(busy1 - busy0) / max(all1 - all0, 1e-9) * (os.cpu_count() or 1))


def reg_step(run: Run, users: list[str], rate: int, seconds: float) -> Step:
    calls = max(1, int(rate * seconds))
    rows = [h.sipp_row(n, h.password_for(n), DOMAIN) for n in users]
    rows = (rows * (calls // len(rows) + 1))[:calls]  # SEQUENTIAL: the same users again past the end
    return _measure(run, "reg", rate, calls, lambda: h.run_sipp(
        "register.xml", run.edge.target, workdir=run.workdir, rows=rows, calls=calls, rate=rate,
        timeout=seconds * 3 + 20, auth_uri=f"sip:{DOMAIN}", limit=max(rate, 200), local_port=run.reg_port,
        name=f"reg_{len(run.nodes)}_{rate}", extra=SIPP_TUNING))


def routed_caller(workdir: Path) -> Path:
    """``call_uac_short.xml`` with its ACK and BYE sent along the route set: the edge record-routes, and a
    BYE without its Route is answered 404 there."""
    text = (h.SCENARIOS / "call_uac_short.xml").read_text()
    for method in ("ACK", "BYE"):
        line = f"      {method} [next_url] SIP/2.0\n"
        if text.count(line) != 1:
            raise RuntimeError(f"call_uac_short.xml changed: no single {method} to the Contact")
        text = text.replace(line, line + "      [routes]\n")
    path = workdir / "call_uac_short_routed.xml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def call_step(run: Run, callers: list[str], rate: int, seconds: float, hold_ms: int) -> Step:
    calls = max(1, int(rate * seconds))
    base = [c.caller_row(n, h.password_for(n), DOMAIN, CALLEE) for n in callers]
    rows = (base * (calls // len(base) + 1))[:calls]
    scenario = routed_caller(run.workdir)
    return _measure(run, "call", rate, calls, lambda: h.run_sipp(
        scenario, run.edge.target, workdir=run.workdir, rows=rows, calls=calls, rate=rate,
        timeout=seconds + hold_ms / 1000 + 20, auth_uri=f"sip:{CALLEE}@{DOMAIN}", limit=max(4 * rate, 200),
        name=f"call_{len(run.nodes)}_{rate}",
        extra=["-mi", h.LOOPBACK, "-mp", str(c.free_media_port()), "-d", str(hold_ms), *SIPP_TUNING]),
        hold=hold_ms / 1000)


def escalate(label: str, rates: list[int], step: Any) -> list[Step]:
    """Steps at increasing rates until the first one that is not clean."""
    steps: list[Step] = []
    for rate in rates:
        s: Step = step(rate)
        steps.append(s)
        print(f"  {label} {rate}/s: {s.ok}/{s.calls} ok, {s.achieved:,.0f}/s, retrans {s.retrans}, nodes CPU "
              f"{'+'.join(f'{x:.2f}' for x in s.node_cpu)} s, edge CPU {s.edge_cpu:.2f} s, PostgreSQL {s.pg_cpu:.2f} s, "
              f"cores busy {s.machine_busy:.2f}, sipp rc {s.rc}",
              flush=True)
        if not s.clean:
            print(f"  {label}: failures or retransmissions at {rate}/s, higher rates skipped", flush=True)
            break
        time.sleep(1.5)
    return steps


def idle_share(run: Run, seconds: float) -> tuple[list[float], float]:
    """Each node's and the edge's CPU share (of one core) with no traffic: what a step's CPU includes anyway
    (the change feed, probes, timers)."""
    nodes0, edge0 = run.cpu()
    time.sleep(seconds)
    nodes1, edge1 = run.cpu()
    return [(b - a) / seconds for a, b in zip(nodes0, nodes1, strict=True)], (edge1 - edge0) / seconds


def phase(run: Run, args: argparse.Namespace, users: list[str], callers: list[str]) -> list[Step]:
    n = len(run.nodes)
    # not measured: every user registers once (bindings in the table and in every node's location, code
    # paths warm), and a few calls
    warm = reg_step(run, users, args.warmup_rate, len(users) / args.warmup_rate)
    print(f"  {n} node(s) warm-up: {warm.ok}/{warm.calls} registrations at {args.warmup_rate}/s", flush=True)
    time.sleep(2)
    nodes_idle, edge_idle = idle_share(run, 5.0)
    print(f"  {n} node(s) idle: nodes {' + '.join(f'{x:.1%}' for x in nodes_idle)} of a core, edge "
          f"{edge_idle:.1%}", flush=True)
    steps = escalate(f"{n} node(s) REGISTER", parse_rates(args.reg_rates),
                     lambda r: reg_step(run, users, r, args.reg_seconds))
    port = h.free_sip_port()
    reg = c.register_port(run.edge.target, workdir=run.workdir, number=CALLEE, domain=DOMAIN, port=port,
                          name=f"register_callee_{n}")
    if reg.successful != 1:
        raise RuntimeError(f"could not register the callee through the edge:\n{reg.describe()}")
    callee = c.SippProcess("call_uas_answer.xml", None, workdir=run.workdir, name=f"callee_{n}", local_port=port,
                           timeout=3600, keys={"codec": "8", "codec_name": "PCMA"},
                           extra=["-s", CALLEE, *SIPP_TUNING]).start()
    try:
        time.sleep(1.0)  # the binding reaches every node's location (change feed)
        warm = call_step(run, callers, 20, 2.0, args.hold_ms)
        print(f"  {n} node(s) warm-up: {warm.ok}/{warm.calls} calls at 20/s", flush=True)
        time.sleep(2)
        steps += escalate(f"{n} node(s) calls", parse_rates(args.call_rates),
                          lambda r: call_step(run, callers, r, args.call_seconds, args.hold_ms))
    finally:
        callee.stop()
        callee.kill()
    return steps


# --- report ----------------------------------------------------------------------------------------
def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    sipp = subprocess.run([h.SIPP, "-v"], capture_output=True, text=True, check=False).stdout.strip().splitlines()
    kam = subprocess.run([KAMAILIO, "-v"], capture_output=True, text=True, check=False).stdout.strip().splitlines()
    return (f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; nproc {os.cpu_count()}; {h.cpu_model()}; "
            f"load average {load()}; Python {platform.python_version()}; "
            f"{sipp[0].strip() if sipp else 'SIPp ?'}; {kam[0].strip() if kam else 'Kamailio ?'}")


def table(steps: list[Step], unit: str) -> str:
    per = "µs" if unit == "reg" else "ms"
    scale = 1.0 if unit == "reg" else 1e-3
    rows = [f"| nodes | offered/s | {unit}s | achieved/s | failed | retrans | node CPU s (each) | "
            f"{per} node CPU/{unit} | edge CPU s | µs edge CPU/{unit} | PostgreSQL CPU s | NATS CPU s | "
            f"SIPp CPU s | cores busy | clean |",
            "|" + "---|" * 15]
    for s in steps:
        rows.append(f"| {s.nodes} | {s.rate} | {s.calls} | {s.achieved:,.0f} | {s.failed} | {s.retrans} | "
                    f"{' + '.join(f'{x:.2f}' for x in s.node_cpu)} | {s.per_op_us(sum(s.node_cpu)) * scale:,.2f} | "
                    f"{s.edge_cpu:.2f} | {s.per_op_us(s.edge_cpu):,.0f} | {s.pg_cpu:.2f} | {s.nats_cpu:.2f} | "
                    f"{s.sipp_cpu:.2f} | {s.machine_busy:.2f} | "
                    f"{'yes' if s.clean else 'no'} |")
    return "\n".join(rows)


def summary(steps: list[Step], kind: str, what: str) -> list[str]:
    one = best(s for s in steps if s.kind == kind and s.nodes == 1)
    two = best(s for s in steps if s.kind == kind and s.nodes == 2)
    lines = []
    for label, b in (("1 node ", one), ("2 nodes", two)):
        lines.append(f"  {label}: " + (f"{b.achieved:,.0f} {what}/s (offered {b.rate}/s), edge "
                                        f"{b.per_op_us(b.edge_cpu):,.0f} µs CPU per {kind}, nodes "
                                        f"{b.per_op_us(sum(b.node_cpu)):,.0f} µs" if b else "no clean step"))
    r = ratio(two, one)
    lines.append(f"  2 nodes / 1 node: {r:.2f}x" if r is not None else "  2 nodes / 1 node: n/a")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reg-rates", default="100,250,500,750,1000,1500,2000,2500,3000,4000,5000",
                        help="offered REGISTERs/s, comma-separated, increasing")
    parser.add_argument("--call-rates", default="50,75,100,125,150,175,200,250,300,350,400",
                        help="offered calls/s, comma-separated, increasing")
    parser.add_argument("--reg-seconds", type=float, default=5.0, help="length of a registration step")
    parser.add_argument("--call-seconds", type=float, default=6.0, help="length of a call set-up step")
    parser.add_argument("--hold-ms", type=int, default=1000, help="how long a short call stays up")
    parser.add_argument("--users", type=int, default=4000,
                        help="extensions that register (with the callers, within the default quota of 5,000)")
    parser.add_argument("--callers", type=int, default=200,
                        help="extensions that call (the edge hashes the caller's URI to pick a node)")
    parser.add_argument("--warmup-rate", type=int, default=500, help="REGISTERs/s of the unmeasured pass that "
                        "registers every user once at the start of each phase")
    parser.add_argument("--edge-children", type=int, default=4, help="Kamailio UDP worker processes")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server (an administrative connection: the run's database is created "
                             "and dropped there)")
    parser.add_argument("--synchronous-commit", choices=["on", "off"], default="on",
                        help="the run's database's synchronous_commit (default on, PostgreSQL's default)")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server (JetStream on)")
    parser.add_argument("--skip-one", action="store_true", help="only the 2-node phase")
    parser.add_argument("--node-cpus", default="",
                        help="give each node CPUs of its own, e.g. '2;3' (node 1 on CPU 2, node 2 on CPU 3) or "
                             "'2-3;4-5'; with --other-cpus this measures the scaling itself on a machine with "
                             "cores to spare (PostgreSQL and NATS are services of the machine: not pinned)")
    parser.add_argument("--other-cpus", default="",
                        help="CPUs for this script and what it starts besides the nodes (SIPp, Kamailio), "
                             "e.g. '0-1'")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (and print its path)")
    args = parser.parse_args(argv)
    try:
        parse_rates(args.reg_rates)
        parse_rates(args.call_rates)
        available = os.sched_getaffinity(0)
        node_cpus = parse_cpu_sets(args.node_cpus, available) if args.node_cpus else []
        other_cpus = parse_cpu_sets(args.other_cpus, available) if args.other_cpus else []
    except ValueError as exc:
        parser.error(str(exc))
    if node_cpus and len(node_cpus) != 2:
        parser.error("--node-cpus: one CPU set for each of the two nodes")
    if len(other_cpus) > 1:
        parser.error("--other-cpus: one CPU set")
    if other_cpus:
        os.sched_setaffinity(0, other_cpus[0])  # SIPp and Kamailio, started from here, inherit it
    for tool, package in ((h.SIPP, "sip-tester"), (KAMAILIO, "kamailio")):
        if shutil.which(tool) is None and not Path(tool).exists():
            print(f"{tool} is not installed (apt-get install {package}; see `make peers`)", file=sys.stderr)
            return 2

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="zvonok-bench-cluster-"))
    workdir = tmp / "sipp"
    print(f"machine: {machine()}\nworkdir: {tmp}", flush=True)
    db_name = f"zvonok_bench_{secrets.token_hex(6)}"
    server_part, _, _ = args.pg.partition("://")[2].rpartition("/")
    database_url = f"postgresql+asyncpg://{server_part}/{db_name}"
    bus_prefix = f"zvonok-bench.{db_name}"
    users = [str(20000 + i) for i in range(args.users)]
    callers = [str(7100 + i) for i in range(args.callers)]
    _child(_PG_ADMIN, args.pg, f'CREATE DATABASE "{db_name}"',
           f'ALTER DATABASE "{db_name}" SET synchronous_commit = {args.synchronous_commit}')
    nodes: list[h.ZvonokServer] = []
    edge: Edge | None = None
    steps: list[Step] = []
    codes: list[int] = []
    try:
        t0 = time.monotonic()
        h.seed(tmp / "node1", domain=DOMAIN, numbers=[CALLEE, *callers, *users], database_url=database_url,
               with_token=False)
        print(f"seeded {1 + len(callers) + len(users)} extensions into {db_name} in "
              f"{time.monotonic() - t0:.1f} s", flush=True)
        env = {"ZVONOK_TRUSTED_EDGES": f'["{EDGE_HOST}"]', "ZVONOK_SECRET_KEY": secrets.token_hex(24),
               "ZVONOK_BUS_URL": args.nats, "ZVONOK_BUS_PREFIX": bus_prefix,
               # all of SIPp's traffic comes from one address: lift the per-address limits
               "ZVONOK_AUTH_FAIL_LIMIT": "1000000", "ZVONOK_INVITE_RATE_LIMIT": "100000"}
        for count in ((1, 2) if not args.skip_one else (2,)):
            while len(nodes) < count:
                name = f"node{len(nodes) + 1}"
                node = h.ZvonokServer(data_dir=tmp / name, database_url=database_url,
                                      env={**env, "ZVONOK_NODE_NAME": name})
                node.start(timeout=300)
                nodes.append(node)
                where = ""
                if node_cpus:
                    pin(node.pid, node_cpus[len(nodes) - 1])
                    where = f", pinned to CPU(s) {sorted(node_cpus[len(nodes) - 1])}"
                print(f"{name}: pid {node.pid}, SIP 127.0.0.1:{node.sip_port}{where}", flush=True)
            edge = Edge(workdir=tmp / f"kamailio{count}", port=h.free_sip_port(EDGE_HOST),
                        nodes=[n.sip_port for n in nodes], children=args.edge_children)
            edge.start()
            assert edge.proc is not None
            print(f"edge: Kamailio pid {edge.proc.pid} on {edge.target} in front of {count} node(s); "
                  f"load average {load()}", flush=True)
            time.sleep(2)  # the dispatcher's first probes of every node
            try:
                steps += phase(Run(nodes=list(nodes), edge=edge, workdir=workdir), args, users, callers)
            finally:
                edge.stop()
            time.sleep(2)
    finally:
        if edge is not None:
            edge.stop()
        codes = [node.stop() for node in nodes]
        try:
            _child(_PG_ADMIN, args.pg, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            _child(_DROP_STREAM, args.nats, bus_prefix.replace(".", "_").replace("-", "_").upper())
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"clean-up: {exc}", file=sys.stderr)

    print()
    print(f"machine: {machine()}")
    print(f"registrations through the edge ({args.users} users, {args.reg_seconds:.0f} s steps, UDP, PostgreSQL "
          f"synchronous_commit {args.synchronous_commit}):")
    print(table([s for s in steps if s.kind == "reg"], "reg"))
    print(f"\ncall set-up through the edge (short calls, hold {args.hold_ms} ms, no media, {args.callers} callers, "
          f"{args.call_seconds:.0f} s steps; the edge relays both legs):")
    print(table([s for s in steps if s.kind == "call"], "call"))
    print("\nbest clean steps (<= 0.1% failed, retransmissions <= 0.5% of calls, >= 80% of the offered rate):")
    print("registrations:")
    print("\n".join(summary(steps, "reg", "registrations")))
    print("calls:")
    print("\n".join(summary(steps, "call", "calls")))
    print(f"\nnodes' exit codes on SIGTERM: {codes}; total {time.monotonic() - started:.0f} s")
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
