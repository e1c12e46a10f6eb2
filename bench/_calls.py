"""Call helpers on top of ``_common``: SIPp in the background, a registered SIPp callee, RTP counters.

* :class:`SippProcess` runs one bounded SIPp (caller or callee) in the background. Unlike
  :func:`_common.run_sipp` it can be asked for its screens mid-run (SIGUSR2: SIPp's only RTP counters,
  "Total echo RTP pckts" of ``-rtp_echo``, are in such a dump and not in the one it writes on exit)
  and told to finish (SIGUSR1, SIPp's graceful quit); ``wait()`` returns the same
  :class:`_common.SippResult`, whose ``stdout`` holds the screen file.
* :func:`register_port` registers an extension from the port a SIPp callee will listen on: the server
  sends its INVITEs to the address a REGISTER came from, so the callee runs on that port afterwards.
* :class:`LoopbackRtpCounter` counts UDP datagrams to chosen ports on ``lo`` with an ``AF_PACKET``
  socket (root or CAP_NET_RAW only), the one way to see RTP arrive at a SIPp caller, which counts
  nothing it receives.

Only the standard library is used, as in ``_common``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

try:  # loaded by tests/integration (conftest registers _common under this name) ...
    import zvonok_bench_common as common  # type: ignore[import-not-found]
except ImportError:  # ... or run from bench/ as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as common  # type: ignore[no-redef]

PCAP_DIR = Path("/usr/share/sip-tester")
G711A_PCAP = PCAP_DIR / "g711a.pcap"
CODECS = {"PCMA": "8", "PCMU": "0"}


def caller_row(caller: str, password: str, domain: str, callee: str) -> list[str]:
    """An injection row of the call_uac*.xml scenarios: ``sipp_row`` plus the dialed number (field4)."""
    return [*common.sipp_row(caller, password, domain), callee]


def pcap_packets(path: Path = G711A_PCAP) -> int:
    """How many packets a (classic libpcap) file holds: what one ``play_pcap_audio`` sends."""
    data = path.read_bytes()
    magic = data[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    offset, count = 24, 0
    while offset + 16 <= len(data):
        incl = struct.unpack_from(order + "I", data, offset + 8)[0]
        offset += 16 + incl
        count += 1
    return count


_ECHO_RE = re.compile(r"(\d+) Total echo RTP pckts 1st stream")
_SENT_RE = re.compile(r"(\d+) Total RTP pckts sent")


def echoed_packets(screen: str) -> int | None:
    """The highest "Total echo RTP pckts 1st stream" in SIPp screen dumps (``-rtp_echo``), if any."""
    found = _ECHO_RE.findall(screen)
    return max(int(n) for n in found) if found else None


def played_packets(screen: str) -> int | None:
    """The highest "Total RTP pckts sent" (``play_pcap_audio``) in SIPp screen dumps, if any."""
    found = _SENT_RE.findall(screen)
    return max(int(n) for n in found) if found else None


class SippProcess:
    """One SIPp in the background (``target`` None: a server-mode callee), bounded like ``run_sipp``."""

    def __init__(self, scenario: str | Path, target: str | None, *, workdir: Path, name: str,
                 local_port: int | None = None, rows: Sequence[Sequence[str]] | None = None,
                 calls: int | None = None, rate: float | None = None, limit: int | None = None,
                 timeout: float = 30, auth_uri: str | None = None, media_port: int | None = None,
                 rtp_echo: bool = False, keys: dict[str, str] | None = None, extra: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.name = name
        self.timeout = timeout
        self.local_port = local_port or common.free_sip_port()
        self.media_port = media_port or free_media_port(avoid=self.local_port)
        self._picked = (local_port is None, media_port is None)  # ports of ours to pick again (see start)
        self.stat_file = workdir / f"{name}_stat.csv"
        self.err_file = workdir / f"{name}_errors.log"
        self.screen_file = workdir / f"{name}_screen.log"
        self.out_file = workdir / f"{name}_stdout.log"
        workdir.mkdir(parents=True, exist_ok=True)
        for p in (self.stat_file, self.err_file, self.screen_file, self.out_file):
            p.unlink(missing_ok=True)
        scenario_path = Path(scenario) if Path(scenario).is_absolute() else common.SCENARIOS / scenario
        cmd = [common.SIPP]
        if target is not None:
            cmd.append(target)
        cmd += ["-sf", str(scenario_path), "-i", common.LOOPBACK, "-p", str(self.local_port),
                "-mi", common.LOOPBACK, "-mp", str(self.media_port), "-t", "u1",
                "-timeout", f"{int(timeout)}s", "-timeout_error",
                "-trace_stat", "-stf", str(self.stat_file), "-fd", "1",
                "-trace_err", "-error_file", str(self.err_file),
                "-trace_screen", "-screen_file", str(self.screen_file), "-nostdin"]
        if rate is not None:
            cmd += ["-r", str(rate)]
        if rows is not None:
            csv_path = common.write_users_csv(workdir / f"{name}_users.csv", rows)
            cmd += ["-inf", str(csv_path)]
            calls = calls if calls is not None else len(rows)
        if calls is not None:
            cmd += ["-m", str(calls)]
        if limit is not None:
            cmd += ["-l", str(limit)]
        if auth_uri is not None:
            cmd += ["-auth_uri", auth_uri.removeprefix("sip:")]  # SIPp adds "sip:" itself
        if rtp_echo:
            cmd.append("-rtp_echo")
        for key, value in (keys or {}).items():
            cmd += ["-key", key, value]
        cmd += list(extra)
        self.cmd = cmd
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self._result: common.SippResult | None = None

    def start(self) -> SippProcess:
        """Start SIPp. A port picked free here can be taken by another process before SIPp binds it: when
        SIPp exits at once for a port in use, the ports this object picked itself are picked again (up to
        three tries; ports the caller named, e.g. a registered phone's SIP port, are kept)."""
        for attempt in range(3):
            self._out = open(self.out_file, "wb")  # noqa: SIM115 - closed in wait()
            self.started = time.monotonic()
            self.proc = subprocess.Popen(self.cmd, cwd=self.workdir, stdout=self._out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
            time.sleep(0.3)  # let it bind its ports before anyone sends to them
            if self.proc.poll() is None:
                return self
            self._out.close()
            out = self.out_file.read_text(errors="replace")
            if attempt < 2 and "Address already in use" in out and any(self._picked):
                self._pick_ports_again()
                continue
            raise RuntimeError(f"sipp {self.name} exited at once:\n{out[-3000:]}")
        raise AssertionError("unreachable")

    def _pick_ports_again(self) -> None:
        own_sip, own_media = self._picked
        if own_sip:
            self.local_port = common.free_sip_port()
            self.cmd[self.cmd.index("-p") + 1] = str(self.local_port)
        if own_media:
            self.media_port = free_media_port(avoid=self.local_port)
            self.cmd[self.cmd.index("-mp") + 1] = str(self.media_port)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self) -> dict[str, str]:
        """The last statistics row written so far (``-fd 1``: at most a second old)."""
        return common.parse_stat_csv(self.stat_file)

    def counter(self, key: str) -> int:
        try:
            return int(self.stats().get(key, "0") or 0)
        except ValueError:
            return 0

    def dump_screens(self, settle: float = 0.5) -> None:
        """Ask a running SIPp for its screens (SIGUSR2). SIPp buffers the screen file: the dump is in
        ``wait().stdout`` once it has exited; the RTP lines are only in such a mid-run dump."""
        if self.running():
            os.kill(self.pid, signal.SIGUSR2)
            time.sleep(settle)

    def wait_for(self, key: str, value: int, timeout: float) -> bool:
        """Poll the statistics file until counter ``key`` reaches ``value`` (or SIPp exits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.counter(key) >= value:
                return True
            if not self.running():
                return self.counter(key) >= value
            time.sleep(0.2)
        return False

    def quit(self) -> None:
        """SIPp's graceful stop (as the 'q' key): no new calls, exit when the running ones end."""
        if self.running():
            os.kill(self.pid, signal.SIGUSR1)

    def wait(self, timeout: float | None = None) -> common.SippResult:
        """Wait for the exit, killing it ``timeout`` seconds from now (default: its ``-timeout`` plus 30 s
        from its start). From now, not from the start: a SIPp started long before (a callee waiting for a
        take-over) is given the whole ``timeout`` to end the call it has just set up."""
        if self._result is not None:
            return self._result
        assert self.proc is not None
        limit = time.monotonic() + timeout if timeout is not None else self.started + self.timeout + 30
        rusage = None
        status: int | None = 0
        while True:
            try:
                pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
            except ChildProcessError:  # already reaped by running() (Popen.poll): its returncode is set
                status = None
                break
            if pid:
                break
            if time.monotonic() > limit:
                # os.kill, not Popen.kill: that polls first, and a poll that reaps the child (just killed by
                # kill() below) leaves wait4 nothing to wait for (ChildProcessError). Not reaped yet (wait4 said
                # so above), the pid is still ours.
                os.kill(self.proc.pid, signal.SIGKILL)
                try:
                    _, status, rusage = os.wait4(self.proc.pid, 0)
                except ChildProcessError:  # reaped meanwhile by a poll of another thread: its returncode is set
                    status = None
                break
            time.sleep(0.05)
        if status is not None:
            self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._out.close()
        stats = common.parse_stat_csv(self.stat_file)

        def num(key: str) -> int:
            try:
                return int(stats.get(key, "0") or 0)
            except ValueError:
                return 0

        errors = self.err_file.read_text(errors="replace") if self.err_file.exists() else ""
        screen = self.screen_file.read_text(errors="replace") if self.screen_file.exists() else ""
        if not screen and self.out_file.exists():
            screen = self.out_file.read_text(errors="replace")[-20000:]
        self._result = common.SippResult(
            returncode=self.proc.returncode, successful=num("SuccessfulCall(C)"), failed=num("FailedCall(C)"),
            created=num("TotalCallCreated"), elapsed=time.monotonic() - self.started,
            cpu=(rusage.ru_utime + rusage.ru_stime) if rusage else 0.0, stats=stats, errors=errors,
            stdout=screen)
        return self._result

    def stop(self) -> common.SippResult:
        """Quit gracefully, then kill after 10 s."""
        self.quit()
        return self.wait(timeout=10)

    def kill(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.kill()
        if self.proc is not None:
            self.wait(timeout=0)


def free_media_port(avoid: int | None = None) -> int:
    """An even UDP port with the next three free too (SIPp echoes on -mp and -mp + 2), none of them ``avoid``
    (the same SIPp's SIP port, picked free but not bound yet: a CI run once got both the same)."""
    for _ in range(100):
        port = common.free_port(socket.SOCK_DGRAM)
        if port % 2 or port > 65000 or (avoid is not None and port <= avoid <= port + 3):
            continue
        ok = True
        for p in (port + 1, port + 2, port + 3):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind((common.LOOPBACK, p))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no free media port pair")


def register_port(target: str, *, workdir: Path, number: str, domain: str, port: int,
                  password: str | None = None, name: str = "register") -> common.SippResult:
    """Register ``number`` from 127.0.0.1:``port`` with the harness's register.xml (digest, Expires 3600)."""
    rows = [common.sipp_row(number, password or common.password_for(number), domain)]
    return common.run_sipp("register.xml", target, workdir=workdir, rows=rows, rate=10, timeout=15,
                           auth_uri=f"sip:{domain}", local_port=port, name=name)


class LoopbackRtpCounter:
    """Counts UDP datagrams delivered on ``lo`` to the given ports, per (source port, destination port).

    Each datagram on loopback shows up twice on an ``AF_PACKET`` socket (outgoing and incoming); only
    the incoming copy is counted. ``available()`` is False without root / CAP_NET_RAW.
    """

    ETH_P_ALL = 0x0003
    PACKET_OUTGOING = 4

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = set(ports)
        self.counts: Counter[tuple[int, int]] = Counter()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def available(cls) -> bool:
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(cls.ETH_P_ALL))
        except (PermissionError, OSError, AttributeError):
            return False
        s.close()
        return True

    def __enter__(self) -> LoopbackRtpCounter:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(self.ETH_P_ALL))
        sock.bind(("lo", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="rtp-counter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def _run(self) -> None:
        assert self._sock is not None
        ports = self.ports
        while not self._stop.is_set():
            try:
                frame, addr = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == self.PACKET_OUTGOING or len(frame) < 42:
                continue
            # loopback frames carry an all-zero Ethernet header: 14 bytes, then IPv4
            if frame[12:14] != b"\x08\x00" or frame[23] != 17:
                continue
            ihl = (frame[14] & 0x0F) * 4
            sport, dport = struct.unpack_from("!HH", frame, 14 + ihl)
            if dport in ports:
                self.counts[(sport, dport)] += 1

    def to_port(self, port: int, *, exclude_sources: Sequence[int] = ()) -> int:
        """Datagrams delivered to ``port`` from any source port but ``exclude_sources``."""
        return sum(n for (s, d), n in self.counts.items() if d == port and s not in exclude_sources)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
