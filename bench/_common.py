"""Shared harness for the SIPp integration tests and the benchmarks.

* :func:`seed` fills a data directory (or a database) with one tenant, an API token and many extensions
  in one transaction through :mod:`zvonok.org.service` — the CLI, one process per extension, is far
  too slow for 10,000. It runs in a child process (``python bench/_common.py seed ...``) so the
  caller never imports the server, its event loop or its database drivers.
* :class:`ZvonokServer` runs ``zvonok serve`` as a subprocess on free loopback ports, waits for
  ``/healthz``, reads its CPU time from ``/proc`` and stops it with SIGTERM.
* :func:`run_sipp` runs one bounded SIPp client with an injection CSV and returns its exit code,
  its final statistics and its own CPU time.

Only the standard library is used here, so the bench runs with any Python that can start the venv's
``zvonok``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import csv
import json
import os
import random
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "integration" / "scenarios"
VENV_BIN = ROOT / ".venv" / "bin"
ZVONOK = str(VENV_BIN / "zvonok") if (VENV_BIN / "zvonok").exists() else (shutil.which("zvonok") or "zvonok")
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def password_for(number: str) -> str:
    """The SIP password the seeder gives an extension (the schema wants at least 8 characters)."""
    return f"secret{number}"


# --- ports -----------------------------------------------------------------------------------------
# Test ports come from below the kernel's ephemeral range and below Zvonok's default RTP range
# (20000-29999): a test often names a port (a trunk's carrier, a phone) long
# before anything binds it, and a port the kernel hands to any unbound socket meanwhile — a DNS
# lookup, a client connection — or that a server under test takes for RTP made SIPp fail with
# "Address already in use". SIPp's control socket is not named (no -cp): a port picked here was free when
# picked but could be named by another test meanwhile (a phone's, unbound between its REGISTER and its calls),
# and SIPp then stopped; unnamed, SIPp binds the first free one from 8888 itself, and only warns without one.
_PORT_LOW, _PORT_HIGH = 10000, 20000
_RNG = random.SystemRandom()  # not the global one: a seeded test must not make workers pick alike


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _free_low_port(kinds: tuple[int, ...], host: str) -> int:
    high = min(_PORT_HIGH, max(_ephemeral_range()[0], _PORT_LOW + 1))
    for _ in range(500):
        port = _RNG.randrange(_PORT_LOW, high)
        try:
            for kind in kinds:
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no free port in {_PORT_LOW}-{high}")


def free_port(kind: int = socket.SOCK_STREAM, host: str = LOOPBACK) -> int:
    """A port free for ``kind`` on ``host``, outside the ranges the kernel and the server hand out."""
    return _free_low_port((kind,), host)


def free_sip_port(host: str = LOOPBACK) -> int:
    """A port free for both UDP and TCP on ``host`` (SIP listens on both with one number)."""
    return _free_low_port((socket.SOCK_DGRAM, socket.SOCK_STREAM), host)


# --- HTTP ------------------------------------------------------------------------------------------
def http_json(url: str, token: str | None = None, timeout: float = 10.0, *, method: str = "GET",
              body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback URL we built
        return json.loads(resp.read())


# --- a migrated database to start from (tests only) ------------------------------------------------
# The integration and browser tests migrate one SQLite file per test session (per xdist worker) and set
# this to its path: a new data directory then starts from a copy of it instead of running every Alembic
# migration again (seconds of CPU for each of the many servers a suite starts). The schema is the same,
# and the server's own upgrade at start still runs (a no-op on the copy). None, as in the benchmarks: each
# data directory migrates itself.
sqlite_template: Path | None = None


def _start_from_template(data_dir: Path, database_url: str | None) -> None:
    """Copy :data:`sqlite_template` in as the data directory's SQLite database if it has none yet."""
    if sqlite_template is None or database_url:
        return
    target = data_dir / "zvonok.db"
    if target.exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sqlite_template, target)
    target.chmod(0o600)  # what the server makes of a new SQLite file (it holds HA1s and token hashes)


# --- seeding ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Seeded:
    tenant_id: int
    domain: str
    token: str
    numbers: list[str]


async def _seed_async(database_url: str, domain: str, name: str, numbers: Sequence[str],
                      with_token: bool) -> dict[str, Any]:
    from zvonok.org import accounts, schemas, service
    from zvonok.org.models import Role
    from zvonok.storage.db import Database

    db = Database(database_url)
    try:
        await db.upgrade()
        async with db.session() as session:
            existing = await service.tenant_by_domain(session, domain)
            if existing is None:
                tenant = await service.platform_create_tenant(
                    session, schemas.TenantCreate(name=name, sip_domain=domain))
                tenant_id = tenant.id
            else:
                tenant_id = existing.id
            for number in numbers:
                await service.create_extension(session, tenant_id, schemas.ExtensionCreate(
                    number=number, display_name=f"User {number}", sip_password=password_for(number)))
            token = ""
            if with_token:
                created = await accounts.create_api_token(session, tenant_id, "bench", Role.TENANT_ADMIN)
                token = created.secret
            await session.commit()
        return {"tenant_id": tenant_id, "domain": domain, "token": token, "numbers": list(numbers)}
    finally:
        await db.dispose()


async def _seed_pstn_async(database_url: str, tenant_id: int, spec: dict[str, Any]) -> dict[str, Any]:
    """The outside world of a test or benchmark tenant, straight into the tables (see :func:`seed_pstn`)."""
    from decimal import Decimal

    from sqlalchemy import select

    from zvonok.org.models import Department, Employee, Extension, Office
    from zvonok.pstn import models as m
    from zvonok.storage.db import Database

    db = Database(database_url)
    ids: dict[str, dict[str, int]] = {"offices": {}, "departments": {}, "employees": {}, "trunks": {},
                                      "tariffs": {}}
    try:
        await db.upgrade()
        async with db.session() as session:
            if spec.get("suspended"):
                from zvonok.org.models import Tenant

                tenant = await session.get(Tenant, tenant_id)
                assert tenant is not None
                tenant.suspended = True
            for o in spec.get("offices", []):
                office = Office(tenant_id=tenant_id, name=o["name"], area_code=o.get("area_code"),
                                timezone=o.get("timezone"))
                session.add(office)
                await session.flush()
                ids["offices"][o["name"]] = office.id
            for d in spec.get("departments", []):
                dep = Department(tenant_id=tenant_id, name=d["name"], office_id=ids["offices"].get(d.get("office", "")))
                session.add(dep)
                await session.flush()
                ids["departments"][d["name"]] = dep.id
            for e in spec.get("employees", []):
                emp = Employee(tenant_id=tenant_id, full_name=e["name"], office_id=ids["offices"].get(e.get("office", "")),
                               department_id=ids["departments"].get(e.get("department", "")), phone=e.get("phone"))
                session.add(emp)
                await session.flush()
                ids["employees"][e["name"]] = emp.id
                if e.get("extension"):
                    ext = (await session.execute(select(Extension).where(
                        Extension.tenant_id == tenant_id, Extension.number == e["extension"]))).scalar_one()
                    ext.employee_id = emp.id
                    ext.office_id = emp.office_id
            for t in spec.get("tariffs", []):
                tariff = m.Tariff(tenant_id=None, name=t["name"], currency=t.get("currency", "RUB"),
                                  time_zone=t.get("time_zone", "Europe/Moscow"), periods=t.get("periods", []))
                session.add(tariff)
                await session.flush()
                ids["tariffs"][t["name"]] = tariff.id
                for r in t.get("rates", []):
                    session.add(m.TariffRate(tariff_id=tariff.id, prefix=r["prefix"], destination=r.get("destination", ""),
                                             price=Decimal(r["price"]), connection_fee=Decimal(r.get("connection_fee", "0")),
                                             increment=r.get("increment", "60/60"), minimum=r.get("minimum", 0),
                                             period_prices=r.get("period_prices", {})))
                if t.get("plan"):
                    session.add(m.BillingAccount(tenant_id=tenant_id, tariff_id=tariff.id))
            for t in spec.get("trunks", []):
                trunk = m.Trunk(tenant_id=None if t.get("platform") else tenant_id, name=t["name"],
                                kind=t.get("kind", "carrier"), host=t["host"], port=t["port"],
                                transport=t.get("transport", "udp"), username=t.get("username"),
                                password=t.get("password"), register=t.get("register", False),
                                register_expires=t.get("register_expires", 3600),
                                inbound_addresses=t.get("inbound_addresses", []), max_calls=t.get("max_calls"),
                                number_format=t.get("number_format", "e164"),
                                buy_tariff_id=ids["tariffs"].get(t.get("buy_tariff", "")),
                                office_id=ids["offices"].get(t.get("office", "")), from_domain=t.get("from_domain"),
                                srtp=t.get("srtp"), t38=t.get("t38", "accept"))
                session.add(trunk)
                await session.flush()
                ids["trunks"][t["name"]] = trunk.id
            for r in spec.get("routes", []):
                session.add(m.OutboundRoute(tenant_id=None if r.get("platform") else tenant_id,
                                            prefix=r.get("prefix", ""), trunk_id=ids["trunks"][r["trunk"]],
                                            priority=r.get("priority", 100)))
            for n in spec.get("numbers", []):
                session.add(m.PhoneNumber(tenant_id=tenant_id, number=n["number"],
                                          office_id=ids["offices"].get(n.get("office", "")),
                                          destination_kind=n.get("kind", "extension"),
                                          destination=n.get("destination", {})))
            for pin in spec.get("pins", []):
                from zvonok.org.pins import hash_pin

                session.add(m.EmployeePin(tenant_id=tenant_id, employee_id=ids["employees"][pin["employee"]],
                                          pin_hash=hash_pin(pin["pin"]), skip_for_caller_id=pin.get("skip", False)))
            for p in spec.get("policies", []):
                level = p["level"]
                ref = None if level == "tenant" else ids[level + "s"][p["ref"]]
                session.add(m.OutboundPolicy(tenant_id=tenant_id, level=level, ref_id=ref,
                                             service_class=p.get("service_class"), deny_prefixes=p.get("deny", []),
                                             allow_prefixes=p.get("allow", []), caller_id=p.get("caller_id"),
                                             monthly_limit=Decimal(p["monthly_limit"]) if p.get("monthly_limit") else None,
                                             warn_percent=p.get("warn_percent", 80)))
            await session.commit()
        return ids
    finally:
        await db.dispose()


def seed_pstn(data_dir: Path, tenant_id: int, spec: dict[str, Any], *, database_url: str | None = None,
              timeout: float = 120) -> dict[str, dict[str, int]]:
    """Offices, departments, employees (linked to extensions), tariffs, trunks, routes, numbers and policies
    of ``spec`` (see :func:`_seed_pstn_async` for the keys) for ``tenant_id``: the ids created, by name."""
    _start_from_template(data_dir, database_url)
    spec_file = data_dir / f"seed-pstn-{time.monotonic_ns()}.json"
    spec_file.write_text(json.dumps(spec))
    cmd = [PYTHON, str(Path(__file__).resolve()), "seed-pstn", "--database-url",
           database_url_for(data_dir, database_url), "--tenant-id", str(tenant_id), "--spec", str(spec_file)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"seeding the outside world failed ({out.returncode}):\n{out.stderr[-4000:]}")
    result: dict[str, dict[str, int]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def database_url_for(data_dir: Path, database_url: str | None) -> str:
    return database_url or f"sqlite+aiosqlite:///{(data_dir / 'zvonok.db').resolve()}"


def seed(data_dir: Path, *, domain: str, numbers: Sequence[str], name: str = "Acme",
         database_url: str | None = None, with_token: bool = True, timeout: float = 600) -> Seeded:
    """Create (or reuse) the tenant of ``domain`` and add ``numbers`` with :func:`password_for` passwords."""
    data_dir.mkdir(parents=True, exist_ok=True)
    _start_from_template(data_dir, database_url)
    numbers_file = data_dir / "seed-numbers.txt"
    numbers_file.write_text("\n".join(numbers))
    cmd = [PYTHON, str(Path(__file__).resolve()), "seed", "--database-url",
           database_url_for(data_dir, database_url), "--domain", domain, "--name", name,
           "--numbers-file", str(numbers_file)]
    if not with_token:
        cmd.append("--no-token")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"seeding failed ({out.returncode}):\n{out.stderr[-4000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return Seeded(tenant_id=data["tenant_id"], domain=data["domain"], token=data["token"], numbers=data["numbers"])


# --- the server ------------------------------------------------------------------------------------
def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads), from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


@dataclass
class ZvonokServer:
    """One ``zvonok serve`` subprocess on loopback. ``start`` / ``stop`` may be called again (restart)."""

    data_dir: Path
    database_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    sip_port: int = 0
    http_port: int = 0
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = None

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def base_cmd(self) -> list[str]:
        cmd = [ZVONOK, "--data-dir", str(self.data_dir)]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        return cmd

    def cli(self, *args: str, timeout: float = 60) -> str:
        """Run a ``zvonok`` admin command on this server's data; returns its stdout."""
        _start_from_template(self.data_dir, self.database_url)
        out = subprocess.run([*self.base_cmd(), *args], capture_output=True, text=True, timeout=timeout,
                             env=self._env(), check=False)
        if out.returncode != 0:
            raise RuntimeError(f"zvonok {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-4000:]}")
        return out.stdout

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZVONOK_")}
        env.update(self.env)
        return env

    def start(self, timeout: float = 120.0) -> None:
        # generous: on a shared 2-core machine under other suites the start-up has taken 45 s (issue 9's bench)
        if not self.sip_port:
            self.sip_port = free_sip_port()
        if not self.http_port:
            self.http_port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _start_from_template(self.data_dir, self.database_url)
        self.log_path = self.log_path or self.data_dir / "server.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        cmd = [*self.base_cmd(), "serve", "--sip-host", LOOPBACK, "--sip-port", str(self.sip_port),
               "--http-host", LOOPBACK, "--http-port", str(self.http_port)]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self._env(),
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._close_log()
                raise RuntimeError(f"zvonok serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"zvonok serve not healthy after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code (the server must exit 0). Kills it on timeout."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close_log()
                return -9
        self._close_log()
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def registrations(self, tenant_id: int, token: str) -> list[dict[str, Any]]:
        data = http_json(f"{self.http_url}/api/v1/tenants/{tenant_id}/registrations", token)
        assert data["total"] == len(data["items"]), data
        return list(data["items"])


# --- SIPp ------------------------------------------------------------------------------------------
def sipp_row(user: str, password: str, domain: str) -> list[str]:
    """One injection row: user, password, domain and the ready ``[authentication ...]`` keyword.

    SIPp 3.6 does not expand ``[field0]`` inside ``[authentication username=[field0] ...]`` in a
    scenario (it sends the keyword half-substituted), but it does expand a whole keyword read from
    the CSV, so the scenarios put ``[field3]`` where the credentials go.
    """
    return [user, password, domain, f"[authentication username={user} password={password}]"]


def write_users_csv(path: Path, rows: Iterable[Sequence[str]]) -> Path:
    """A SIPp injection file: ``SEQUENTIAL`` then ``field0;field1;...`` per call."""
    with path.open("w", newline="") as f:
        f.write("SEQUENTIAL\n")
        for row in rows:
            f.write(";".join(row) + ";\n")
    return path


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    created: int
    elapsed: float  # wall-clock seconds of the whole SIPp run
    cpu: float  # SIPp's own user + system CPU seconds
    stats: dict[str, str]
    errors: str  # the unexpected-message trace, possibly empty
    stdout: str

    @property
    def retransmissions(self) -> int:
        try:
            return int(self.stats.get("Retransmissions(C)", "0") or 0)
        except ValueError:
            return 0

    @property
    def traffic_seconds(self) -> float:
        """SIPp's own StartTime..CurrentTime of the last statistics dump (excludes process start-up)."""
        try:
            start = float(self.stats["StartTime"].split()[-1])
            end = float(self.stats["CurrentTime"].split()[-1])
        except (KeyError, ValueError, IndexError):
            return self.elapsed
        return end - start if end > start else self.elapsed

    def describe(self) -> str:
        return (f"sipp rc={self.returncode} ok={self.successful} failed={self.failed} "
                f"created={self.created}\n--- errors ---\n{self.errors[-3000:]}\n--- stdout ---\n"
                f"{self.stdout[-2000:]}")


def parse_stat_csv(path: Path) -> dict[str, str]:
    """The last row of SIPp's ``-trace_stat`` file, keyed by column name."""
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return dict(zip(header, last, strict=False))


def run_sipp(scenario: str | Path, target: str, *, workdir: Path, rows: Sequence[Sequence[str]] | None = None,
             calls: int | None = None, rate: float = 100, transport: str = "u1", timeout: float = 30,
             auth_uri: str | None = None, extra: Sequence[str] = (), local_port: int | None = None,
             limit: int | None = None, name: str = "sipp") -> SippResult:
    """Run one bounded SIPp client and collect its results.

    ``rows`` become the ``-inf`` CSV (``SEQUENTIAL``; one row per call); ``calls`` defaults to their
    number. The run is bounded by ``-m`` and by ``-timeout``/``-timeout_error``, and killed if it
    outlives ``timeout`` by far. A port picked free can be taken by another process (a softphone's RTP,
    another worker's test) before SIPp binds it: a run that failed to bind before any call started is
    run again on newly picked ports (the caller's own ``local_port`` is kept).
    """
    for _ in range(3):
        result = _run_sipp_once(scenario, target, workdir=workdir, rows=rows, calls=calls, rate=rate,
                                transport=transport, timeout=timeout, auth_uri=auth_uri, extra=extra,
                                local_port=local_port, limit=limit, name=name)
        if not (result.returncode != 0 and result.created == 0 and "Address already in use" in result.errors):
            break
    return result


def _run_sipp_once(scenario: str | Path, target: str, *, workdir: Path, rows: Sequence[Sequence[str]] | None,
                   calls: int | None, rate: float, transport: str, timeout: float, auth_uri: str | None,
                   extra: Sequence[str], local_port: int | None, limit: int | None, name: str) -> SippResult:
    workdir.mkdir(parents=True, exist_ok=True)
    scenario_path = Path(scenario) if Path(scenario).is_absolute() else SCENARIOS / scenario
    stat_file = workdir / f"{name}_stat.csv"
    err_file = workdir / f"{name}_errors.log"
    screen_file = workdir / f"{name}_screen.log"
    for p in (stat_file, err_file, screen_file):
        p.unlink(missing_ok=True)
    cmd = [SIPP, target, "-sf", str(scenario_path), "-i", LOOPBACK,
           "-p", str(local_port or free_sip_port()),
           "-t", transport, "-r", str(rate), "-timeout", f"{int(timeout)}s", "-timeout_error",
           "-trace_stat", "-stf", str(stat_file), "-fd", "1",
           "-trace_err", "-error_file", str(err_file),
           "-trace_screen", "-screen_file", str(screen_file), "-nostdin"]
    if rows is not None:
        csv_path = write_users_csv(workdir / f"{name}_users.csv", rows)
        cmd += ["-inf", str(csv_path)]
        calls = calls if calls is not None else len(rows)
    if calls is not None:
        cmd += ["-m", str(calls)]
    if limit is not None:
        cmd += ["-l", str(limit)]
    if auth_uri is not None:
        # SIPp 3.6 prefixes "sip:" itself (-auth_uri sip:x gives uri="sip:sip:x"): pass the bare part
        cmd += ["-auth_uri", auth_uri.removeprefix("sip:")]
    cmd += list(extra)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    # SIPp redraws its screen to stdout; keep only the tail, reading so it never blocks on a full pipe.
    tail = bytearray()
    os.set_blocking(proc.stdout.fileno(), False)
    deadline = start + timeout + 30
    rusage: resource.struct_rusage | None = None
    status = 0
    while True:
        with contextlib.suppress(BlockingIOError, TypeError):
            chunk = proc.stdout.read(65536)
            if chunk:
                tail += chunk
                del tail[:-20000]
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            _, status, rusage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.02)
    with contextlib.suppress(BlockingIOError, TypeError, ValueError):
        rest = proc.stdout.read()
        if rest:
            tail += rest
    proc.stdout.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - start
    stats = parse_stat_csv(stat_file)

    def num(key: str) -> int:
        try:
            return int(stats.get(key, "0") or 0)
        except ValueError:
            return 0

    errors = err_file.read_text(errors="replace") if err_file.exists() else ""
    screen = screen_file.read_text(errors="replace") if screen_file.exists() else ""
    return SippResult(
        returncode=proc.returncode, successful=num("SuccessfulCall(C)"), failed=num("FailedCall(C)"),
        created=num("TotalCallCreated"), elapsed=elapsed,
        cpu=(rusage.ru_utime + rusage.ru_stime) if rusage else 0.0, stats=stats, errors=errors,
        stdout=screen or tail.decode(errors="replace"),
    )


# --- machine and profiles (shared by the benchmarks) ----------------------------------------------
def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo ("unknown" elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _short_path(path: str) -> str:
    parts = Path(path).parts
    if "zvonok" in parts:
        return "/".join(parts[parts.index("zvonok"):])
    return "/".join(parts[-2:])


def _where(frame: str) -> str:
    """``func (path/to/zvonok/x.py:12)`` -> ``func (zvonok/x.py:12)``."""
    name, _, where = frame.partition(" (")
    path, _, line = where.rstrip(")").rpartition(":")
    return f"{name} ({_short_path(path)}:{line})"


def _function(frame: str) -> str:
    name, _, where = frame.partition(" (")
    return f"{name} ({_short_path(where.rstrip(')').rpartition(':')[0])})"


def pyspy_summary(path: Path, title: str, top: int) -> str:
    """A py-spy ``--format raw`` profile as text: self time by line and inclusive time by function."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        total += count
        if frames:
            own[_where(frames[-1])] += count
        for frame in {_function(f) for f in frames}:
            inclusive[frame] += count
    if not total:
        return f"{title}: no samples ({path})"
    lines = [f"{title}: {total} samples ({path})", "", "self time by line:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive time by function:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top * 2)]
    return "\n".join(lines)


# --- child-process entry point ---------------------------------------------------------------------
def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("seed", help="create a tenant, a token and extensions in one transaction")
    p.add_argument("--database-url", required=True)
    p.add_argument("--domain", required=True)
    p.add_argument("--name", default="Acme")
    p.add_argument("--numbers-file", type=Path, required=True, help="one extension number per line")
    p.add_argument("--no-token", action="store_true")
    p = sub.add_parser("seed-pstn", help="trunks, numbers, routes, tariffs, policies of a tenant")
    p.add_argument("--database-url", required=True)
    p.add_argument("--tenant-id", type=int, required=True)
    p.add_argument("--spec", type=Path, required=True, help="a JSON file (see seed_pstn)")
    args = parser.parse_args(argv)
    if args.command == "seed-pstn":
        ids = asyncio.run(_seed_pstn_async(args.database_url, args.tenant_id, json.loads(args.spec.read_text())))
        print(json.dumps(ids))  # noqa: T201 - the parent reads this line
        return
    numbers = [n for n in args.numbers_file.read_text().split() if n]
    result = asyncio.run(_seed_async(args.database_url, args.domain, args.name, numbers, not args.no_token))
    print(json.dumps(result))  # noqa: T201 - the parent reads this line


if __name__ == "__main__":
    _main()


def options_answered(host: str, port: int, timeout: float) -> bool:
    """Does an OPTIONS sent to ``host:port`` (a SIP edge) come back 200 (answered by a node behind it)?"""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(0.5)
        local = sock.getsockname()[1]
        while time.monotonic() < deadline:
            branch = "z9hG4bK" + secrets.token_hex(6)
            sock.sendto((f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
                         f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch={branch};rport\r\n"
                         "Max-Forwards: 70\r\nFrom: <sip:probe@probe.test>;tag=p\r\nTo: <sip:probe@probe.test>\r\n"
                         f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(), (host, port))
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                continue
            if data.startswith(b"SIP/2.0 200"):
                return True
            time.sleep(0.5)
    return False
