"""sippy's B2BUA (the PyPI package ``sippy``, its ``b2bua_simple`` program) as a comparison target.

``b2bua_simple`` answers every INVITE as a B2BUA (two user agents per call, like ours) and sends the
outgoing leg to one fixed next hop (``-n host:port``): here a SIPp callee. It authenticates nobody and
relays no media (SDP passes through untouched), so it does strictly less per call than zvonok, which
challenges every INVITE with digest, opens two RTP endpoints and writes a CDR.

It lives in its own virtual environment (created on first use with the ordinary ``venv`` and ``pip``),
so the project never depends on it. sippy logs every SIP message it sends or receives to stderr by
default (``SIPLOG_BEND``); :class:`SippyB2bua` runs it with ``SIPLOG_BEND=none`` unless told otherwise,
which is sippy's cheapest setting: the ratio printed against it is the conservative one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

try:  # run from bench/ as a script
    import _common as common
except ImportError:  # pragma: no cover - imported through tests/integration's alias
    import zvonok_bench_common as common  # type: ignore[import-not-found,no-redef]

DEFAULT_VENV = Path(os.environ.get("ZVONOK_BENCH_SIPPY_VENV", "/tmp/zvonok-bench-sippy-venv"))
SIPPY_REQUIREMENT = "sippy"


def ensure_sippy(venv: Path = DEFAULT_VENV) -> Path:
    """The ``b2bua_simple`` program, installing ``sippy`` into ``venv`` first if it is not there."""
    program = venv / "bin" / "b2bua_simple"
    if program.exists():
        return program
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", SIPPY_REQUIREMENT], check=True)
    if not program.exists():
        raise RuntimeError(f"pip installed sippy but {program} is missing")
    return program


def sippy_version(venv: Path = DEFAULT_VENV) -> str:
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import importlib.metadata as m; print(m.version('sippy'))"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


@dataclass
class SippyB2bua:
    """One ``b2bua_simple`` in the foreground on loopback, sending every call to ``next_hop``."""

    program: Path
    next_hop: tuple[str, int]
    log_path: Path
    log_backend: str = "none"  # SIPLOG_BEND: none, stderr (its default: every message), syslog
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def target(self) -> str:
        return f"{common.LOOPBACK}:{self.port}"

    def start(self, timeout: float = 20.0) -> SippyB2bua:
        self.port = self.port or common.free_sip_port()
        env = {**os.environ, "SIPLOG_BEND": self.log_backend}
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [str(self.program), "-f", "-l", common.LOOPBACK, "-p", str(self.port),
                 "-n", f"{self.next_hop[0]}:{self.next_hop[1]}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"b2bua_simple exited with {self.proc.returncode}:\n"
                                   f"{self.log_path.read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"b2bua_simple not answering on {self.target} after {timeout} s")
        return self

    def _answers(self) -> bool:
        """True once it answers an OPTIONS (with 501: b2bua_simple implements INVITE and REGISTER only)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((common.LOOPBACK, 0))
            s.settimeout(0.5)
            port = s.getsockname()[1]
            msg = (f"OPTIONS sip:ping@{self.target} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP {common.LOOPBACK}:{port};branch=z9hG4bK-bench-{time.monotonic_ns()}\r\n"
                   f"Max-Forwards: 70\r\nFrom: <sip:bench@{common.LOOPBACK}>;tag=b1\r\n"
                   f"To: <sip:ping@{common.LOOPBACK}>\r\nCall-ID: bench-{time.monotonic_ns()}\r\n"
                   f"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()
            try:
                s.sendto(msg, (common.LOOPBACK, self.port))
                return s.recv(4096).startswith(b"SIP/2.0 ")
            except OSError:
                return False

    def cpu_seconds(self) -> float:
        return common.proc_cpu_seconds(self.pid)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)
