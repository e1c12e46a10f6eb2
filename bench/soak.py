"""Soak: calls with media, registrations and API reads at once for minutes; does anything grow?

Issue 8's targets, after warm-up: RSS grows by less than 1 MB per 10,000 calls, open files and asyncio
tasks stay flat, the database grows only by its CDRs, and at most 0.1% of the calls fail.

What runs, against one ``zvonok serve`` on free loopback ports (SQLite in a temporary directory, or
``--database-url``), all at once for ``--minutes``:

* **calls with media**: a SIPp caller places ``--rate`` calls/s (``call_uac.xml``: digest, g711a.pcap
  played once — PCMA, 30 ms packets, 7 s — the call held ``--call-seconds``, then BYE) through the B2BUA
  to one registered SIPp callee echoing RTP (``call_uas.xml -rtp_echo``), as ``bench/calls.py`` does.
  The defaults, 25 calls/s × 8 s, keep ≈ 200 calls up: half of the 400 concurrent calls with RTP
  measured on the reference machine (docs/benchmarks.md, "Concurrent calls with media");
* **registrations**: a SIPp REGISTER client (digest, ``register.xml``) at ``--register-rate`` over a
  pool of ``--register-pool`` extensions, each re-registering in turn;
* **API reads**: a thread reading the registrations, the newest CDRs and the employees of the tenant
  at ``--api-rate`` requests/s with the seeded token.

Every ``--sample-seconds`` it records: calls ended / failed (SIPp's statistics), calls up, CDR rows (the
API's total), the server's RSS (``VmRSS`` of ``/proc/<pid>/status``), its open descriptors
(``/proc/<pid>/fd``), its asyncio tasks (the ``zvonok_asyncio_tasks`` gauge of ``/metrics``) and the
database's size (SQLite file + WAL, or ``pg_database_size`` through ``psql``). After the load it waits
for the last CDRs and ``--drain-seconds`` (the SIP transactions' 32 s timers) for an idle sample.

The verdict, over the samples under load after the warm-up (``--warmup-seconds``, 330 s: tables bounded
by time, the largest the digest nonce table of 300 s, fill first; at most 60% and at least 20% of the run):

* RSS growth per 10,000 calls: the slope of a least-squares line of RSS against calls ended; < 1 MB;
* open files and tasks flat: the median of the last third of those samples minus that of the first
  third within ``max(--flat-abs or --tasks-abs, --flat-rel × median)`` (both vary with the number of calls up, so a
  single sample's max − min, also printed, says little);
* database bytes per CDR: the slope of database size against CDR rows; ≤ ``--max-bytes-per-cdr``
  (a CDR row with its indexes is a few hundred bytes; more means something else grows);
* failed calls ≤ 0.1% of the calls placed, and failed registrations and API reads ≤ 0.1% each.

It prints a table of the samples, then the verdict; the exit code is 0 when every target is met, else 1.
``--json PATH`` also writes the whole result as JSON ('-': standard output).

Example::

    .venv/bin/python bench/soak.py --minutes 10
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _calls as c  # noqa: E402 - the sibling modules, importable once the path is set
import _common as h  # noqa: E402
import calls  # noqa: E402

DOMAIN = calls.DOMAIN
CALLEE = calls.MEDIA_CALLEE
REGISTER_BASE = 20000  # the pool of re-registering extensions: 20000, 20001, ...
EMPLOYEES = 5
FAILURE_BUDGET = 0.001
WARMUP_FRACTION = 0.2
# Tables bounded by time fill during the first minutes and then stay level; the largest is the digest
# nonce-count table (one entry per nonce for nonce_lifetime, 300 s: ≈ 250 bytes × the authenticated
# requests of 5 minutes). Growth measured before it is full is not a leak: the warm-up covers it when the
# run is long enough (10 minutes: the warm-up takes at most 60% of the run).
WARMUP_SECONDS = 330.0
RSS_TARGET_MB = 1.0  # per 10,000 calls


# --- the pure part: samples and verdict -----------------------------------------------------------
@dataclass
class Sample:
    elapsed: float  # seconds since the load started
    calls_ended: int  # SIPp caller: successful + failed so far
    calls_failed: int
    calls_up: int  # SIPp caller: calls in progress
    cdrs: int
    rss_kb: int
    fds: int
    tasks: int | None  # None when /metrics could not be read
    db_bytes: int
    registrations: int = 0
    registrations_failed: int = 0
    api_reads: int = 0
    api_failed: int = 0
    phase: str = "load"  # "idle" (before the load), "load", "drained" (after it)


@dataclass
class Check:
    name: str
    value: str
    target: str
    ok: bool


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope and intercept of ``ys`` against ``xs`` (slope 0 when ``xs`` do not vary)."""
    n = len(xs)
    if n != len(ys) or n == 0:
        raise ValueError("linear_fit needs as many ys as xs, at least one")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, my
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return slope, my - slope * mx


def warmup_seconds(duration: float, fraction: float = WARMUP_FRACTION, seconds: float = WARMUP_SECONDS) -> float:
    """The warm-up: ``fraction`` of the run, or ``seconds`` if longer but then at most 60% of the run."""
    return max(fraction * duration, min(seconds, 0.6 * duration))


def after_warmup(samples: Sequence[Sample], duration: float, fraction: float = WARMUP_FRACTION,
                 seconds: float = 0.0) -> list[Sample]:
    """The samples under load taken after the warm-up (:func:`warmup_seconds`)."""
    start = warmup_seconds(duration, fraction, seconds)
    return [s for s in samples if s.phase == "load" and s.elapsed >= start]


def drift(values: Sequence[float]) -> float:
    """Median of the last third minus median of the first third: growth that noise does not fake."""
    third = max(1, len(values) // 3)
    return statistics.median(values[-third:]) - statistics.median(values[:third])


def flat_check(name: str, values: Sequence[float], abs_tol: float, rel_tol: float) -> Check:
    if len(values) < 3:
        return Check(name, f"{len(values)} samples", "≥ 3 samples after warm-up", False)
    d = drift(values)
    tol = max(abs_tol, rel_tol * statistics.median(values))
    return Check(name, f"drift {d:+.0f} (range {min(values):.0f}–{max(values):.0f})", f"drift within ±{tol:.0f}",
                 abs(d) <= tol)


def ratio_check(name: str, failed: int, total: int, budget: float = FAILURE_BUDGET) -> Check:
    ratio = failed / total if total else 1.0
    return Check(name, f"{failed} of {total} ({ratio:.3%})", f"≤ {budget:.1%}", total > 0 and ratio <= budget)


def verdict(samples: Sequence[Sample], duration: float, *, calls_placed: int, calls_failed: int,
            rss_target_mb: float = RSS_TARGET_MB, max_bytes_per_cdr: float = 2048, flat_abs: float = 16,
            tasks_abs: float = 5, flat_rel: float = 0.05, warmup: float = WARMUP_FRACTION,
            warmup_at_least: float = 0.0) -> list[Check]:
    """The checks of the issue over ``samples`` (``duration``: the load's length in seconds)."""
    steady = after_warmup(samples, duration, warmup, warmup_at_least)
    checks: list[Check] = []
    if len(steady) >= 3 and steady[-1].calls_ended > steady[0].calls_ended:
        slope, _ = linear_fit([s.calls_ended for s in steady], [s.rss_kb for s in steady])
        growth = slope * 10_000 / 1024
        checks.append(Check("RSS growth per 10,000 calls", f"{growth:+.2f} MB", f"< {rss_target_mb:g} MB",
                            growth < rss_target_mb))
    else:
        checks.append(Check("RSS growth per 10,000 calls", f"{len(steady)} samples with calls",
                            "≥ 3 samples after warm-up", False))
    checks.append(flat_check("open files", [s.fds for s in steady], flat_abs, flat_rel))
    tasks = [s.tasks for s in steady]
    if any(t is None for t in tasks):
        checks.append(Check("asyncio tasks", "not read from /metrics", "flat", False))
    else:
        checks.append(flat_check("asyncio tasks", [float(t) for t in tasks if t is not None], tasks_abs, flat_rel))
    if len(steady) >= 3 and steady[-1].cdrs > steady[0].cdrs:
        slope, _ = linear_fit([s.cdrs for s in steady], [s.db_bytes for s in steady])
        checks.append(Check("database bytes per CDR", f"{slope:,.0f}", f"≤ {max_bytes_per_cdr:,.0f}",
                            slope <= max_bytes_per_cdr))
    else:
        checks.append(Check("database bytes per CDR", "no CDRs written after warm-up", "CDRs written", False))
    checks.append(ratio_check("failed calls", calls_failed, calls_placed))
    last = samples[-1] if samples else None
    if last is not None and last.registrations:
        checks.append(ratio_check("failed registrations", last.registrations_failed, last.registrations))
    if last is not None and last.api_reads:
        checks.append(ratio_check("failed API reads", last.api_failed, last.api_reads))
    return checks


def sample_table(samples: Sequence[Sample]) -> str:
    rows = ["| phase | s | calls ended | failed | up | CDRs | RSS MB | fds | tasks | DB KB | REGISTERs (failed) | "
            "API reads (failed) |", "|" + "---|" * 12]
    for s in samples:
        rows.append(f"| {s.phase} | {s.elapsed:.0f} | {s.calls_ended:,} | {s.calls_failed} | {s.calls_up} | "
                    f"{s.cdrs:,} | {s.rss_kb / 1024:.1f} | {s.fds} | {'?' if s.tasks is None else s.tasks} | "
                    f"{s.db_bytes / 1024:,.0f} | {s.registrations:,} ({s.registrations_failed}) | "
                    f"{s.api_reads:,} ({s.api_failed}) |")
    return "\n".join(rows)


def checks_table(checks: Sequence[Check]) -> str:
    rows = ["| check | measured | target | met |", "|---|---|---|---|"]
    rows += [f"| {k.name} | {k.value} | {k.target} | {'yes' if k.ok else '**no**'} |" for k in checks]
    return "\n".join(rows)


# --- probes of the running server -----------------------------------------------------------------
def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def asyncio_tasks(server: h.ZvonokServer) -> int | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=10) as resp:  # noqa: S310 - loopback
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    for line in text.splitlines():
        if line.startswith("zvonok_asyncio_tasks "):
            return int(float(line.split()[1]))
    return None


def database_bytes(data_dir: Path, database_url: str | None) -> int:
    """SQLite: the database file and its WAL; PostgreSQL: ``pg_database_size`` (through ``psql``)."""
    if database_url and database_url.startswith("postgresql"):
        url = "postgresql://" + database_url.split("://", 1)[1]
        out = subprocess.run(["psql", url, "-Atc", "select pg_database_size(current_database())"],
                             capture_output=True, text=True, timeout=30, check=True)
        return int(out.stdout.strip())
    db = Path(h.database_url_for(data_dir, database_url).split("///", 1)[1])
    return sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())


@dataclass
class ApiReader:
    """Reads a few tenant routes at a steady rate in a thread; counts the reads and the failures."""

    server: h.ZvonokServer
    tenant_id: int
    token: str
    rate: float
    reads: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def routes(self) -> list[str]:
        base = f"{self.server.http_url}/api/v1/tenants/{self.tenant_id}"
        return [f"{base}/registrations", f"{base}/cdrs?limit=50", f"{base}/employees?limit=50"]

    def start(self) -> ApiReader:
        if self.rate > 0:
            self._thread = threading.Thread(target=self._run, name="api-reader", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        for n, url in enumerate(itertools.cycle(self.routes())):
            due = started + n / self.rate
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            try:
                h.http_json(url, self.token)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                self.failed += 1
                if len(self.errors) < 5:
                    self.errors.append(f"{url}: {exc}")
            self.reads += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)


def cdr_total(server: h.ZvonokServer, tenant_id: int, token: str) -> int:
    return int(h.http_json(f"{server.http_url}/api/v1/tenants/{tenant_id}/cdrs?limit=1", token)["total"])


def take_sample(server: h.ZvonokServer, seeded: h.Seeded, database_url: str | None, elapsed: float,
                caller: c.SippProcess | None, registrar: c.SippProcess | None, reader: ApiReader,
                phase: str) -> Sample:
    ok = caller.counter("SuccessfulCall(C)") if caller else 0
    failed = caller.counter("FailedCall(C)") if caller else 0
    return Sample(
        elapsed=elapsed, calls_ended=ok + failed, calls_failed=failed,
        calls_up=caller.counter("CurrentCall") if caller and caller.running() else 0,
        cdrs=cdr_total(server, seeded.tenant_id, seeded.token), rss_kb=rss_kb(server.pid),
        fds=open_fds(server.pid), tasks=asyncio_tasks(server), db_bytes=database_bytes(server.data_dir, database_url),
        registrations=(registrar.counter("SuccessfulCall(C)") + registrar.counter("FailedCall(C)")) if registrar else 0,
        registrations_failed=registrar.counter("FailedCall(C)") if registrar else 0,
        api_reads=reader.reads, api_failed=reader.failed, phase=phase)


# --- the run --------------------------------------------------------------------------------------
def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    duration = args.minutes * 60
    workdir = tmp / "sipp"
    pool = [str(REGISTER_BASE + i) for i in range(args.register_pool)]
    seeded = h.seed(tmp / "data", domain=DOMAIN, numbers=[CALLEE, *calls.CALLERS, *pool],
                    database_url=args.database_url)
    h.seed_pstn(tmp / "data", seeded.tenant_id, {"employees": [
        {"name": f"Employee {i}", "extension": calls.CALLERS[i]} for i in range(EMPLOYEES)]},
        database_url=args.database_url)
    # all SIPp traffic comes from one address: lift the per-address limits a real deployment keeps
    env = {"ZVONOK_AUTH_FAIL_LIMIT": "1000000", "ZVONOK_INVITE_RATE_LIMIT": "100000"}
    env.update(dict(kv.split("=", 1) for kv in args.server_env))
    server = h.ZvonokServer(data_dir=tmp / "data", database_url=args.database_url, env=env)
    server.start(timeout=120)  # a shared machine under load can take a while to migrate and bind
    target = f"{h.LOOPBACK}:{server.sip_port}"
    print(f"server pid {server.pid}, SIP udp {target}, HTTP {server.http_url}", flush=True)
    samples: list[Sample] = []
    reader = ApiReader(server, seeded.tenant_id, seeded.token, args.api_rate)
    total_calls = max(1, int(args.rate * duration))
    up = args.rate * args.call_seconds
    caller: c.SippProcess | None = None
    registrar: c.SippProcess | None = None
    callee: c.SippProcess | None = None
    code = None
    result: h.SippResult | None = None
    try:
        callee = calls.start_callee(target, workdir, CALLEE, "call_uas.xml", "soak_callee", rtp_echo=True,
                                    timeout=duration + args.call_seconds + args.drain_seconds + 120)
        samples.append(take_sample(server, seeded, args.database_url, 0.0, None, None, reader, "idle"))
        print(sample_table(samples[-1:]), flush=True)
        started = time.monotonic()
        caller = c.SippProcess(
            "call_uac.xml", target, workdir=workdir, name="soak_caller",
            rows=calls.rows_for(CALLEE, len(calls.CALLERS)), calls=total_calls, rate=args.rate,
            limit=int(2 * up) + 50, timeout=duration + args.call_seconds + 60, auth_uri=f"sip:{CALLEE}@{DOMAIN}",
            extra=["-d", str(int(args.call_seconds * 1000)), *calls.SIPP_TUNING]).start()
        if args.register_rate > 0:
            registrar = c.SippProcess(
                "register.xml", target, workdir=workdir, name="soak_register",
                rows=[h.sipp_row(n, h.password_for(n), DOMAIN) for n in pool],
                calls=max(1, int(args.register_rate * duration)), rate=args.register_rate,
                limit=max(50, int(args.register_rate)), timeout=duration + 60, auth_uri=f"sip:{DOMAIN}",
                extra=calls.SIPP_TUNING).start()
        reader.start()
        dumps = sorted(args.memdump_at)
        n = 1
        while caller.running():
            due = started + n * args.sample_seconds
            time.sleep(max(0.0, due - time.monotonic()))
            n += 1
            elapsed = time.monotonic() - started
            if not caller.running():
                break
            try:
                samples.append(take_sample(server, seeded, args.database_url, elapsed, caller, registrar, reader,
                                           "load" if elapsed <= duration else "tail"))
            except (urllib.error.URLError, OSError) as exc:  # a memory report (tracemalloc) can stall the server
                print(f"sample at {elapsed:.0f} s skipped: {exc}", flush=True)
                continue
            print(sample_table(samples[-1:]).splitlines()[-1], flush=True)
            while dumps and elapsed >= dumps[0]:
                dumps.pop(0)
                os.kill(server.pid, signal.SIGUSR2)  # zvonok.memdebug: <data dir>/memdump-<n>.txt
                print(f"memory report asked at {elapsed:.0f} s (data dir {server.data_dir})", flush=True)
        result = caller.wait()
        reader.stop()
        if registrar is not None:
            registrar.stop()
        # the last CDRs (written behind), then the SIP transactions' timers (32 s): an idle server
        c.wait_until(lambda: cdr_total(server, seeded.tenant_id, seeded.token) >= result.successful, timeout=60,
                     interval=1.0)
        time.sleep(args.drain_seconds)
        drained = take_sample(server, seeded, args.database_url, time.monotonic() - started, caller, registrar,
                              reader, "drained")
        drained.calls_ended, drained.calls_failed = result.successful + result.failed, result.failed
        samples.append(drained)
    finally:
        for proc in (caller, registrar, callee):
            if proc is not None:
                proc.kill()
        reader.stop()
        code = server.stop()
    assert result is not None
    callee_result = callee.wait() if callee is not None else None
    checks = verdict(samples, duration, calls_placed=max(result.created, total_calls),
                     calls_failed=max(result.created, total_calls) - result.successful,
                     max_bytes_per_cdr=args.max_bytes_per_cdr, flat_abs=args.flat_abs,
                     tasks_abs=args.tasks_abs, flat_rel=args.flat_rel, warmup_at_least=args.warmup_seconds)
    checks.append(Check("server exit code on SIGTERM", str(code), "0", code == 0))
    return {
        "machine": calls.machine(),
        "params": {k: v for k, v in vars(args).items() if k != "json"},
        "concurrent_calls_planned": up,
        "calls": {"placed": result.created, "planned": total_calls, "successful": result.successful,
                  "failed": result.failed, "retransmissions": result.retransmissions,
                  "callee_failed": callee_result.failed if callee_result else None},
        "api_errors": reader.errors,
        "samples": [asdict(s) for s in samples],
        "checks": [asdict(k) for k in checks],
        "ok": all(k.ok for k in checks),
        "server_exit_code": code,
    }


def report(out: dict[str, Any]) -> str:
    samples = [Sample(**s) for s in out["samples"]]
    checks = [Check(**k) for k in out["checks"]]
    p = out["params"]
    db = "SQLite" if not p["database_url"] else p["database_url"].split("://")[0]
    lines = [
        f"machine: {out['machine']}",
        f"soak: {p['minutes']:g} min, {p['rate']:g} calls/s × {p['call_seconds']:g} s "
        f"(≈ {out['concurrent_calls_planned']:.0f} calls up, g711a.pcap PCMA echoed), "
        f"{p['register_rate']:g} REGISTERs/s over {p['register_pool']} extensions, {p['api_rate']:g} API reads/s, "
        f"{db}; warm-up: the first {warmup_seconds(p['minutes'] * 60, WARMUP_FRACTION, p.get('warmup_seconds', 0)):.0f} s",
        "",
        sample_table(samples),
        "",
        f"calls: {out['calls']}",
    ]
    if out["api_errors"]:
        lines.append(f"first API errors: {out['api_errors']}")
    lines += ["", checks_table(checks), "", f"verdict: {'all targets met' if out['ok'] else 'targets NOT met'}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load (default 10)")
    parser.add_argument("--rate", type=float, default=25.0,
                        help="calls/s with media (default 25: with --call-seconds 8, ≈ 200 calls up, half of "
                             "the 400 concurrent calls with RTP measured on the reference machine)")
    parser.add_argument("--call-seconds", type=float, default=8.0,
                        help="how long each call stays up (the pcap plays its first 7 s; default 8)")
    parser.add_argument("--register-rate", type=float, default=50.0, help="REGISTERs/s (0: none; default 50)")
    parser.add_argument("--register-pool", type=int, default=500, help="extensions re-registering in turn")
    parser.add_argument("--api-rate", type=float, default=5.0, help="API reads/s (0: none; default 5)")
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="sampling interval (default 10)")
    parser.add_argument("--drain-seconds", type=float, default=35.0,
                        help="wait after the load before the idle sample (SIP transaction timers: 32 s)")
    parser.add_argument("--database-url", default=None, help="server database (default SQLite in the temp dir)")
    parser.add_argument("--max-bytes-per-cdr", type=float, default=2048.0)
    parser.add_argument("--flat-abs", type=float, default=16.0, help="drift always allowed to open files")
    parser.add_argument("--tasks-abs", type=float, default=5.0, help="drift always allowed to asyncio tasks")
    parser.add_argument("--flat-rel", type=float, default=0.05, help="drift allowed as a share of the median")
    parser.add_argument("--warmup-seconds", type=float, default=WARMUP_SECONDS,
                        help="warm-up before the verdict's samples: at least this (default 330: the nonce table "
                        "fills for nonce_lifetime, 300 s), at most 60%% of the run, at least 20%% of it")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment of the server, e.g. ZVONOK_TRACEMALLOC=25 or MALLOC_ARENA_MAX=2")
    parser.add_argument("--memdump-at", action="append", type=float, default=[], metavar="SECONDS",
                        help="send the server SIGUSR2 (a memory report, zvonok.memdebug) at this time into the load; "
                        "use with --keep to read the reports")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the result as JSON ('-': stdout)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if any("=" not in kv for kv in args.server_env):
        parser.error("--server-env takes KEY=VALUE")
    if shutil.which(h.SIPP) is None and not Path(h.SIPP).exists():
        print("SIPp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="zvonok-bench-soak-"))
    print(f"machine: {calls.machine()}\nworkdir: {tmp}", flush=True)
    try:
        out = run(args, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(report(out))
    if args.json == "-":
        print(json.dumps(out, indent=2, ensure_ascii=False))
    elif args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
