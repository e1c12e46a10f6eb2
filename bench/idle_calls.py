"""Memory per established idle call: the server's RSS with N calls up and no media, against none up.

What it does: seeds extensions into a temporary data directory, starts ``zvonok serve`` on free loopback
ports (media timeout lifted, so silent calls stay up), registers a SIPp callee that answers at once
(``call_uas_answer.xml``, no RTP), and for each N in ``--calls`` places N digest-authenticated calls
(``call_uac_short.xml`` with a pause longer than the whole ramp) at ``--ramp-rate``. Once the server
reports all N in progress (``zvonok_calls_active`` on ``/metrics``) and ``--idle`` seconds have passed (40 s
by default: past the 32 s for which the set-up's SIP transactions linger, RFC 3261 Timer H and RFC 6026
Timer L, so what is measured is an established call at rest), it reads the server's RSS (``VmRSS``), then
lets the calls end (SIPp sends the BYEs) and reads it again.
Per step: (RSS with N up − RSS before) / N, i.e. what one established call costs in the server's memory:
the call and its two legs, their dialogs, the media endpoints' Python state and the SIP transactions
still held — socket buffers are kernel memory and not in RSS. The first step also warms caches up (its
figure reads high); the steps after it are the ones to read, and the slope between steps.

``--traced`` measures Python's share instead of the RSS: the server traces its allocations
(``ZVONOK_TRACEMALLOC=1``, tracing from a memory report written before the first call, zvonok.memdebug)
and writes a report before each step and one with the calls up; (traced bytes with N up − traced bytes
before) / N is the Python memory one idle call holds, and the report's table of object counts (divided
by N) says which objects. Tracing slows the server down and inflates its RSS: read the RSS figures of a
run without it. A socket pair the pool kept from an earlier step and reused is not in a later step's
figure (allocated before its first report): read the first step after a small warm-up one
(``--calls 10,1000``).

Example::

    .venv/bin/python bench/idle_calls.py --calls 250,500,1000
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _calls as c  # noqa: E402 - the sibling modules, importable once the path is set
import _common as h  # noqa: E402

DOMAIN = "idle-bench.test"
CALLEE = "7000"
CALLERS = [str(n) for n in range(7100, 7150)]
SIPP_TUNING = ["-buff_size", "4194304", "-max_recv_loops", "5000", "-max_sched_loops", "5000"]


@dataclass
class Step:
    calls: int
    up: int
    rss_before_kb: int
    rss_up_kb: int
    rss_after_kb: int
    ok: int
    traced_before: int = 0  # bytes tracemalloc held (--traced)
    traced_up: int = 0
    objects: list[tuple[int, str]] = field(default_factory=list)  # gc-tracked objects added, by type

    @property
    def traced_per_call(self) -> float:
        return (self.traced_up - self.traced_before) / self.up if self.up else float("nan")

    @property
    def kb_per_call(self) -> float:
        return (self.rss_up_kb - self.rss_before_kb) / self.up if self.up else float("nan")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def calls_active(server: h.ZvonokServer) -> int:
    """Calls in progress as the server counts them (-1 while it does not answer: a memory report)."""
    try:
        with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=60) as resp:  # noqa: S310 - loopback
            text = resp.read().decode()
    except (OSError, TimeoutError):
        return -1
    match = re.search(r"^zvonok_calls_active(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
    return int(float(match.group(1))) if match else -1


def memdump(server: h.ZvonokServer, settle: float) -> Path:
    """A memory report (zvonok.memdebug) in the data directory, written before the RSS reading."""
    before = set(server.data_dir.glob("memdump-*.txt"))
    os.kill(server.pid, signal.SIGUSR2)
    c.wait_until(lambda: bool(set(server.data_dir.glob("memdump-*.txt")) - before), timeout=120)
    time.sleep(settle)
    (path,) = set(server.data_dir.glob("memdump-*.txt")) - before
    return path


def traced_bytes(report: Path) -> int:
    """What tracemalloc held when ``report`` was written (tracing starts with the first report)."""
    match = re.search(r"^## tracemalloc: .*; (\d+) bytes held outside linecache$", report.read_text(), re.M)
    return int(match.group(1)) if match else 0


def object_growth(report: Path) -> list[tuple[int, str]]:
    """The report's per-type growth of the objects the collector tracks, largest first."""
    text = report.read_text().split("change | count | type\n", 1)[1].split("\n\n", 1)[0]
    rows = [line.split(" | ") for line in text.splitlines()]
    return [(int(r[0].replace(",", "")), r[2]) for r in rows if len(r) == 3]


def step(server: h.ZvonokServer, target: str, workdir: Path, n: int, ramp_rate: float, settle: float,
         idle: float, dump: bool = False) -> Step:
    c.wait_until(lambda: calls_active(server) == 0, timeout=60)
    time.sleep(settle)
    first = memdump(server, settle) if dump else None
    before = rss_kb(server.pid)
    ramp = n / ramp_rate
    # every call still up when the last one is set up, has idled and a memory report (which stalls the
    # server) is written
    hold_ms = int((ramp + idle + settle + (90 if dump else 30)) * 1000)
    rows = [c.caller_row(x, h.password_for(x), DOMAIN, CALLEE) for x in CALLERS]
    caller = c.SippProcess("call_uac_short.xml", target, workdir=workdir, name=f"idle_{n}",
                           rows=(rows * (n // len(rows) + 1))[:n], calls=n, rate=ramp_rate, limit=n,
                           timeout=ramp + hold_ms / 1000 + 60, auth_uri=f"sip:{CALLEE}@{DOMAIN}",
                           extra=["-mi", h.LOOPBACK, "-mp", str(c.free_media_port()), "-d", str(hold_ms),
                                  *SIPP_TUNING]).start()
    try:
        c.wait_until(lambda: calls_active(server) >= n or not caller.running(), timeout=ramp + 60)
        time.sleep(max(idle, settle))
        second = memdump(server, settle) if dump else None
        up = calls_active(server)
        during = rss_kb(server.pid)
        result = caller.wait()
    finally:
        caller.kill()
    c.wait_until(lambda: calls_active(server) == 0, timeout=60)
    time.sleep(settle)
    s = Step(calls=n, up=up, rss_before_kb=before, rss_up_kb=during, rss_after_kb=rss_kb(server.pid),
             ok=result.successful)
    if first is not None and second is not None:
        s.traced_before, s.traced_up, s.objects = traced_bytes(first), traced_bytes(second), object_growth(second)
    return s


def table(steps: list[Step]) -> str:
    rows = ["| calls placed | up at once | RSS before, MB | RSS with them up, MB | KB per call | RSS after they "
            "ended, MB | ended ok |", "|---:|---:|---:|---:|---:|---:|---:|"]
    rows += [f"| {s.calls:,} | {s.up:,} | {s.rss_before_kb / 1024:.1f} | {s.rss_up_kb / 1024:.1f} | "
             f"{s.kb_per_call:.1f} | {s.rss_after_kb / 1024:.1f} | {s.ok:,} |" for s in steps]
    if len(steps) >= 2:
        a, b = steps[-2], steps[-1]
        if b.up != a.up:
            slope = (b.rss_up_kb - a.rss_up_kb - (b.rss_before_kb - a.rss_before_kb)) / (b.up - a.up)
            rows.append(f"\nSlope between the last two steps: {slope:.1f} KB per extra call up.")
    for s in steps:
        if s.traced_up and s.up:
            rows.append(f"\n{s.calls:,} calls ({s.up:,} up): Python memory (tracemalloc) "
                        f"{s.traced_per_call / 1024:.1f} KB per idle call; objects the collector tracks, per call:")
            rows += [f"  {count / s.up:+.2f} {kind}" for count, kind in s.objects[:25]]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", default="250,500,1000", help="calls up at once per step, comma-separated")
    parser.add_argument("--ramp-rate", type=float, default=100.0, help="calls/s while a step ramps up")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before each RSS reading")
    parser.add_argument("--idle", type=float, default=40.0,
                        help="seconds the calls stay up idle before the reading (past the set-up's 32 s transactions)")
    parser.add_argument("--traced", action="store_true",
                        help="Python memory per idle call by tracemalloc (ZVONOK_TRACEMALLOC=1, reports around every "
                             "step; the RSS figures then read high)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--memdump", action="store_true",
                        help="trace allocations (ZVONOK_TRACEMALLOC) and write memory reports before and during "
                             "the last step into the data directory (implies --keep; figures then read high)")
    args = parser.parse_args(argv)
    args.keep = args.keep or args.memdump
    tmp = Path(tempfile.mkdtemp(prefix="zvonok-bench-idle-"))
    workdir = tmp / "sipp"
    workdir.mkdir(parents=True)
    print(f"machine: {h.cpu_model()}\nworkdir: {tmp}", flush=True)
    h.seed(tmp / "data", domain=DOMAIN, numbers=[CALLEE, *CALLERS], with_token=False)
    server = h.ZvonokServer(data_dir=tmp / "data", env={
        "ZVONOK_AUTH_FAIL_LIMIT": "1000000", "ZVONOK_INVITE_RATE_LIMIT": "100000",
        "ZVONOK_MEDIA_TIMEOUT": "3600",  # no RTP on purpose: idle calls must not be ended for silence
        "ZVONOK_RECORD_CALLS": "false",
        **({"ZVONOK_TRACEMALLOC": "8"} if args.memdump else {"ZVONOK_TRACEMALLOC": "1"} if args.traced else {}),
    })
    server.start()
    if args.traced:
        memdump(server, args.settle)  # tracing starts here, before the first call
    target = f"{h.LOOPBACK}:{server.sip_port}"
    steps: list[Step] = []
    code = None
    callee = None
    try:
        port = h.free_sip_port()
        reg = c.register_port(target, workdir=workdir, number=CALLEE, domain=DOMAIN, port=port, name="register")
        if reg.successful != 1:
            raise RuntimeError(f"could not register {CALLEE}:\n{reg.describe()}")
        callee = c.SippProcess("call_uas_answer.xml", None, workdir=workdir, name="callee", local_port=port,
                               timeout=3600, keys={"codec": "8", "codec_name": "PCMA"},
                               extra=["-s", CALLEE, *SIPP_TUNING]).start()
        counts = [int(x) for x in args.calls.split(",") if x.strip()]
        for i, n in enumerate(counts):
            s = step(server, target, workdir, n, args.ramp_rate, args.settle, args.idle,
                     dump=args.traced or (args.memdump and i == len(counts) - 1))
            steps.append(s)
            print(f"  {n} calls: {s.up} up, {s.kb_per_call:.1f} KB per call "
                  f"(RSS {s.rss_before_kb / 1024:.1f} -> {s.rss_up_kb / 1024:.1f} -> {s.rss_after_kb / 1024:.1f} MB)"
                  + (f"; Python {s.traced_per_call / 1024:.1f} KB per call (tracemalloc)" if s.traced_up else ""),
                  flush=True)
    finally:
        if callee is not None:
            callee.kill()
        code = server.stop()
    print("\n" + table(steps))
    print(f"\nserver exit code on SIGTERM: {code}")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
