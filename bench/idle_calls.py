"""Memory per established idle call: the server's RSS with N calls up and no media, against none up.

What it does: seeds extensions into a temporary data directory, starts ``zvonok serve`` on free loopback
ports (media timeout lifted, so silent calls stay up), registers a SIPp callee that answers at once
(``call_uas_answer.xml``, no RTP), and for each N in ``--calls`` places N digest-authenticated calls
(``call_uac_short.xml`` with a pause longer than the whole ramp) at ``--ramp-rate``. Once the server
reports all N in progress (``zvonok_calls_active`` on ``/metrics``) and ``--settle`` seconds have passed,
it reads the server's RSS (``VmRSS``), then lets the calls end (SIPp sends the BYEs) and reads it again.
Per step: (RSS with N up − RSS before) / N, i.e. what one established call costs in the server's memory:
the call and its two legs, their dialogs, the media endpoints' Python state and the SIP transactions
still held — socket buffers are kernel memory and not in RSS. The first step also warms caches up (its
figure reads high); the steps after it are the ones to read, and the slope between steps.

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
from dataclasses import dataclass
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


def memdump(server: h.ZvonokServer, settle: float) -> None:
    """A memory report (zvonok.memdebug) in the data directory, written before the RSS reading."""
    os.kill(server.pid, signal.SIGUSR2)
    time.sleep(settle)


def step(server: h.ZvonokServer, target: str, workdir: Path, n: int, ramp_rate: float, settle: float,
         dump: bool = False) -> Step:
    c.wait_until(lambda: calls_active(server) == 0, timeout=60)
    time.sleep(settle)
    if dump:
        memdump(server, settle)
    before = rss_kb(server.pid)
    ramp = n / ramp_rate
    # every call still up when the last one is set up (and a memory report, which stalls the server, is written)
    hold_ms = int((ramp + settle + (90 if dump else 30)) * 1000)
    rows = [c.caller_row(x, h.password_for(x), DOMAIN, CALLEE) for x in CALLERS]
    caller = c.SippProcess("call_uac_short.xml", target, workdir=workdir, name=f"idle_{n}",
                           rows=(rows * (n // len(rows) + 1))[:n], calls=n, rate=ramp_rate, limit=n,
                           timeout=ramp + hold_ms / 1000 + 60, auth_uri=f"sip:{CALLEE}@{DOMAIN}",
                           extra=["-mi", h.LOOPBACK, "-mp", str(c.free_media_port()), "-d", str(hold_ms),
                                  *SIPP_TUNING]).start()
    try:
        c.wait_until(lambda: calls_active(server) >= n or not caller.running(), timeout=ramp + 60)
        time.sleep(settle)
        if dump:
            memdump(server, settle)
        up = calls_active(server)
        during = rss_kb(server.pid)
        result = caller.wait()
    finally:
        caller.kill()
    c.wait_until(lambda: calls_active(server) == 0, timeout=60)
    time.sleep(settle)
    return Step(calls=n, up=up, rss_before_kb=before, rss_up_kb=during, rss_after_kb=rss_kb(server.pid),
                ok=result.successful)


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
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", default="250,500,1000", help="calls up at once per step, comma-separated")
    parser.add_argument("--ramp-rate", type=float, default=100.0, help="calls/s while a step ramps up")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before each RSS reading")
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
        "ZVONOK_RECORD_CALLS": "false", **({"ZVONOK_TRACEMALLOC": "8"} if args.memdump else {}),
    })
    server.start()
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
            s = step(server, target, workdir, n, args.ramp_rate, args.settle, dump=args.memdump and i == len(counts) - 1)
            steps.append(s)
            print(f"  {n} calls: {s.up} up, {s.kb_per_call:.1f} KB per call "
                  f"(RSS {s.rss_before_kb / 1024:.1f} -> {s.rss_up_kb / 1024:.1f} -> {s.rss_after_kb / 1024:.1f} MB)",
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
