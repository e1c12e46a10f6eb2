"""Authenticated registrations per second: SIPp against a fresh ``zvonok serve`` on loopback.

What it does: seeds ``--users`` extensions into a temporary data directory (or ``--database-url``),
starts the server on free ports, then for each rate in ``--rates`` runs SIPp registering the users
with digest authentication (REGISTER -> 401 -> REGISTER with credentials -> 200, i.e. two
transactions per registration) and measures

* the achieved successful registrations per second (SIPp's own traffic time),
* the failure ratio,
* the server's CPU seconds over the step (``/proc/<pid>/stat`` utime + stime, all threads), giving
  CPU per registration and registrations per CPU-core-second,
* SIPp's own CPU (``wait4`` rusage).

Two regimes, because the server caches credentials for 30 s: **cold** (the cache is emptied before
the step by an org change through the REST API, so every authenticated REGISTER reads the database —
the steady state of phones that re-register every few minutes or more) and **warm** (the same users
registered at a moderate rate just before the measured step). A regime stops escalating at the first
saturated step (> 1% failures or under 80% of the offered rate achieved).

Optionally it measures SIPp against a SIPp stand-in registrar (the harness ceiling) and profiles the
server with py-spy at one rate. Traffic goes to 127.0.0.1 only; every SIPp run is bounded by ``-m``
and ``-timeout``; the server is stopped with SIGTERM at the end.

Example::

    .venv/bin/python bench/register.py --users 10000 --rates 500,1000,2000,3000,4000,5000
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as h  # noqa: E402 - the sibling module, importable once the path is set

DOMAIN = "bench.test"
FAILURE_BUDGET = 0.001  # "works at this rate" means at most 0.1% failed registrations
# Bigger socket buffers and more messages per SIPp loop: without them SIPp itself drops
# datagrams in bursts well below its ceiling.
WARMUP_RATE = 400  # below the cold-cache capacity, so warm-up passes themselves never overload
SIPP_TUNING = ["-buff_size", "4194304", "-max_recv_loops", "5000", "-max_sched_loops", "5000"]


@dataclass
class Step:
    rate: int
    calls: int
    ok: int
    failed: int
    seconds: float
    retrans: int
    server_cpu: float
    sipp_cpu: float
    rc: int
    cache: str = ""

    @property
    def achieved(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def failure_ratio(self) -> float:
        return (self.calls - self.ok) / self.calls if self.calls else 0.0

    @property
    def cpu_us_per_reg(self) -> float:
        return self.server_cpu / self.ok * 1e6 if self.ok else float("inf")

    @property
    def regs_per_core_second(self) -> float:
        return self.ok / self.server_cpu if self.server_cpu > 0 else 0.0

    @property
    def server_core_share(self) -> float:
        return self.server_cpu / self.seconds if self.seconds > 0 else 0.0


def _rows(users: list[str]) -> list[list[str]]:
    return [h.sipp_row(n, h.password_for(n), DOMAIN) for n in users]


def run_step(server: h.ZvonokServer, users: list[str], rate: int, calls: int, transport: str,
             workdir: Path, settle: float) -> Step:
    rows = _rows(users)
    if calls > len(rows):  # SEQUENTIAL wraps around: the same users register again
        rows = (rows * (calls // len(rows) + 1))[:calls]
    timeout = calls / rate * 3 + 20
    cpu0 = server.cpu_seconds()
    result = h.run_sipp("register.xml", f"127.0.0.1:{server.sip_port}", workdir=workdir, rows=rows[:calls],
                        calls=calls, rate=rate, transport=transport, timeout=timeout,
                        auth_uri=f"sip:{DOMAIN}", limit=max(rate, 200), name=f"step_{rate}",
                        extra=SIPP_TUNING)
    time.sleep(settle)  # let the write-behind flush of this step's bindings land in this step's CPU
    cpu1 = server.cpu_seconds()
    return Step(rate=rate, calls=calls, ok=result.successful, failed=calls - result.successful,
                seconds=result.traffic_seconds, retrans=result.retransmissions, server_cpu=cpu1 - cpu0,
                sipp_cpu=result.cpu, rc=result.returncode)


def sipp_ceiling(users: list[str], rates: list[int], workdir: Path, seconds: float) -> list[Step]:
    """SIPp's register.xml against SIPp's uas_register.xml: the most this harness can drive."""
    steps = []
    for rate in rates:
        port = h.free_sip_port()
        uas_log = open(workdir / f"uas_{rate}.out", "wb")  # noqa: SIM115 - closed below
        uas = subprocess.Popen(
            [h.SIPP, "-sf", str(h.SCENARIOS / "uas_register.xml"), "-i", h.LOOPBACK, "-p", str(port),
             "-nostdin", *SIPP_TUNING],
            cwd=workdir, stdout=uas_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            calls = int(rate * seconds)
            rows = _rows(users)
            rows = (rows * (calls // len(rows) + 1))[:calls]
            result = h.run_sipp("register.xml", f"127.0.0.1:{port}", workdir=workdir, rows=rows, calls=calls,
                                rate=rate, timeout=calls / rate * 3 + 20, auth_uri=f"sip:{DOMAIN}",
                                limit=max(rate, 200), name=f"ceiling_{rate}",
                                extra=SIPP_TUNING)
        finally:
            uas.send_signal(signal.SIGTERM)
            try:
                _, _, usage = os.wait4(uas.pid, 0)
                uas_cpu = usage.ru_utime + usage.ru_stime
            except ChildProcessError:
                uas_cpu = 0.0
            uas.returncode = 0
            uas_log.close()
        steps.append(Step(rate=rate, calls=calls, ok=result.successful, failed=calls - result.successful,
                          seconds=result.traffic_seconds, retrans=result.retransmissions, server_cpu=uas_cpu,
                          sipp_cpu=result.cpu, rc=result.returncode))
    return steps


def profile(server: h.ZvonokServer, users: list[str], rate: int, transport: str, workdir: Path,
            top: int) -> str:
    """Run one step with py-spy attached to the server; returns the hottest functions as text."""
    py_spy = shutil.which("py-spy") or str(h.VENV_BIN / "py-spy")
    if not Path(py_spy).exists():
        return "py-spy not installed (pip install py-spy into the venv)"
    out = workdir / "profile.txt"
    seconds = max(3, len(users) // rate + 2)
    spy = subprocess.Popen([py_spy, "record", "--pid", str(server.pid), "--rate", "250", "--duration",
                            str(seconds), "--format", "raw", "--output", str(out), "--nonblocking"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    time.sleep(1.0)
    run_step(server, users, rate, len(users), transport, workdir, settle=0.5)
    spy_out, _ = spy.communicate(timeout=seconds + 30)
    if not out.exists():
        return f"py-spy produced no profile:\n{spy_out.decode(errors='replace')[-2000:]}"
    return h.pyspy_summary(out, f"py-spy at {rate}/s", top)


def machine() -> str:
    return f"{os.cpu_count()} CPUs, {h.cpu_model()}, Python {platform.python_version()}, {platform.platform()}"


def table(steps: list[Step], server_label: str) -> str:
    head = (f"| cache | offered/s | registrations | achieved/s | failed | retrans | {server_label} CPU s | "
            f"{server_label} CPU share | µs CPU/reg | regs per core·s | SIPp CPU s |")
    sep = "|" + "---|" * 11
    rows = [head, sep]
    for s in steps:
        rows.append(f"| {s.cache or '-'} | {s.rate} | {s.calls} | {s.achieved:,.0f} | {s.failure_ratio:.2%} | {s.retrans} | "
                    f"{s.server_cpu:.2f} | {s.server_core_share:.0%} | {s.cpu_us_per_reg:,.0f} | "
                    f"{s.regs_per_core_second:,.0f} | {s.sipp_cpu:.2f} |")
    return "\n".join(rows)


def invalidate_credentials(server: h.ZvonokServer, tenant_id: int, token: str, n: int) -> None:
    """Make the server drop its cached credentials of the tenant (any org change does, via its event)."""
    h.http_json(f"{server.http_url}/api/v1/tenants/{tenant_id}", token, method="PATCH",
                body={"name": f"Bench {n}"})


def run_regime(server: h.ZvonokServer, seeded: h.Seeded, users: list[str], rates: list[int], cache: str,
               args: argparse.Namespace, transport: str, work: Path) -> list[Step]:
    """One series of rate steps with the credential cache cold (every REGISTER looks the user up in the
    database) or warm (the same users registered just before, within the cache's 30 s lifetime)."""
    steps = []
    for n, rate in enumerate(rates):
        calls = len(users) if not args.duration else min(len(users), int(rate * args.duration))
        step_users = users[:calls]
        invalidate_credentials(server, seeded.tenant_id, seeded.token, n)
        if cache == "warm":
            run_step(server, step_users, WARMUP_RATE, calls, transport, work, settle=0.5)
        step = run_step(server, step_users, rate, calls, transport, work, settle=1.0)
        step.cache = cache
        steps.append(step)
        print(f"  {cache:4} r={rate:>6}/s  ok={step.ok}/{step.calls}  achieved={step.achieved:,.0f}/s  "
              f"retrans={step.retrans}  server CPU={step.server_cpu:.2f}s ({step.cpu_us_per_reg:,.0f} µs/reg)  "
              f"sipp rc={step.rc}", flush=True)
        if step.failure_ratio > 0.01 or step.achieved < 0.8 * rate:
            print(f"  {cache:4} saturated at {rate}/s: higher rates skipped", flush=True)
            break
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10000, help="distinct extensions (default 10000)")
    parser.add_argument("--rates", default="500,1000,2000,3000,4000,5000",
                        help="comma-separated SIPp -r steps, registrations offered per second")
    parser.add_argument("--rate", type=int, action="append", default=[],
                        help="a single rate step (repeatable; replaces --rates)")
    parser.add_argument("--duration", type=float, default=2.0,
                        help="seconds of offered load per step: a step registers min(users, rate x duration) "
                             "distinct users (0: all users in every step)")
    parser.add_argument("--cache", default="cold,warm",
                        help="credential-cache regimes to measure: cold, warm or both (default cold,warm)")
    parser.add_argument("--database-url", default=None, help="server database (default SQLite in the temp dir)")
    parser.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    parser.add_argument("--ceiling", default="10000,20000,25000",
                        help="rates for SIPp against a SIPp registrar stub ('' to skip)")
    parser.add_argument("--profile-rate", type=int, default=0,
                        help="also profile the server with py-spy: a warm step at this rate and a cold one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--log-level", default=None, help="server log level (default: the server's default)")
    args = parser.parse_args(argv)

    rates = args.rate or [int(r) for r in args.rates.split(",") if r.strip()]
    regimes = [c.strip() for c in args.cache.split(",") if c.strip()]
    if not set(regimes) <= {"cold", "warm"}:
        parser.error("--cache takes cold, warm or cold,warm")
    transport = {"udp": "u1", "tcp": "t1"}[args.transport]
    users = [str(10000 + i) for i in range(args.users)]
    tmp = Path(tempfile.mkdtemp(prefix="zvonok-bench-"))
    work = tmp / "sipp"
    work.mkdir()
    started = time.monotonic()
    print(f"# machine: {machine()}", flush=True)
    print(f"# seeding {args.users} extensions into {tmp} ...", flush=True)
    t0 = time.monotonic()
    seeded = h.seed(tmp / "data", domain=DOMAIN, numbers=users, database_url=args.database_url)
    print(f"# seeded in {time.monotonic() - t0:.1f} s", flush=True)

    env = {"ZVONOK_AUTH_FAIL_LIMIT": "1000000"}
    if args.log_level:
        env["ZVONOK_LOG_LEVEL"] = args.log_level
    server = h.ZvonokServer(data_dir=tmp / "data", database_url=args.database_url, env=env)
    server.start()
    print(f"# server pid {server.pid}, SIP {args.transport} 127.0.0.1:{server.sip_port}", flush=True)
    results: dict[str, list[Step]] = {}
    profiles: list[str] = []
    try:
        for cache in regimes:
            results[cache] = run_regime(server, seeded, users, rates, cache, args, transport, work)
        if args.profile_rate:
            calls = min(len(users), max(2000, args.profile_rate * 3))
            invalidate_credentials(server, seeded.tenant_id, seeded.token, 999)
            run_step(server, users[:calls], WARMUP_RATE, calls, transport, work, settle=0.5)
            profiles.append("warm " + profile(server, users[:calls], args.profile_rate, transport, work, 15))
            invalidate_credentials(server, seeded.tenant_id, seeded.token, 1000)
            cold_rate = min(args.profile_rate, WARMUP_RATE)
            profiles.append("cold " + profile(server, users[:2000], cold_rate, transport, work, 15))
    finally:
        code = server.stop()
        print(f"# server stopped, exit code {code}", flush=True)

    ceiling: list[Step] = []
    ceiling_rates = [int(r) for r in args.ceiling.split(",") if r.strip()]
    if ceiling_rates:
        ceiling = sipp_ceiling(users, ceiling_rates, work, seconds=2.0)

    db = "SQLite" if not args.database_url else args.database_url.split("://")[0]
    for cache, steps in results.items():
        print()
        print(f"## zvonok registrar, credential cache {cache}, {args.transport.upper()}, {db}, "
              f"{args.users} users")
        print(table(steps, "server"))
        good = [s for s in steps if s.failure_ratio <= FAILURE_BUDGET and s.achieved >= 0.95 * s.rate]
        if good:
            best = max(good, key=lambda s: s.achieved)
            print(f"\nhighest rate with <= {FAILURE_BUDGET:.1%} failures and the offered rate achieved: "
                  f"{best.rate}/s ({best.cpu_us_per_reg:,.0f} µs server CPU per registration)")
        else:
            print(f"\nno step stayed within {FAILURE_BUDGET:.1%} failures at the offered rate")
        loaded = [s for s in steps if s.ok]
        if loaded:
            cpu = sum(s.server_cpu for s in loaded) / sum(s.ok for s in loaded) * 1e6
            print(f"server CPU over these steps: {cpu:,.0f} µs per registration, {1e6 / cpu:,.0f} registrations "
                  f"per core-second (Kamailio reference ≈ 65 µs, ≈ 13,000/s: {cpu / 65:.1f}x the CPU)")
    if ceiling:
        print("\n## SIPp against a SIPp registrar stub (harness ceiling; 'stub' = the SIPp UAS)")
        print(table(ceiling, "stub"))
    for text in profiles:
        print("\n## profile, " + text)
    print(f"\n# total {time.monotonic() - started:.0f} s")
    if args.keep:
        print(f"# kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
