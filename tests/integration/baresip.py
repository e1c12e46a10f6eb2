"""Drive a headless baresip (Debian's package) through its ctrl_tcp module: netstring-framed JSON.

Audio comes from the ``ausine`` module and goes to ALSA's null device, so no sound card is needed.
Later tests (calls) use the same driver.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._harness import harness

MODULE_PATH = "/usr/lib/baresip/modules"


free_port = harness.free_port  # below the ephemeral and RTP ranges: see bench/_common.py


@dataclass
class Baresip:
    """One baresip process with one account; ``events`` collects what ctrl_tcp reported."""

    workdir: Path
    account: str  # a line of baresip's accounts file
    frequency: int = 440  # the sine the phone sends into calls
    record: bool = False  # dump decoded call audio to WAV files in workdir/snd (the sndfile module)
    trace: bool = False  # log every SIP message (baresip -s) into the log file
    sip_port: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    ctrl_port: int = field(default_factory=free_port)
    config: list[str] = field(default_factory=list)  # more lines of its config (modules, TLS CA file …)
    address: str = "127.0.0.1"  # the loopback address it binds (a carrier on its own address: 127.0.0.2 …)
    events: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)  # answers to commands (their "data")
    proc: subprocess.Popen[bytes] | None = None
    _sock: socket.socket | None = None
    _buf: bytes = b""

    def start(self, timeout: float = 20.0) -> None:
        """Start baresip; a port another process took between our pick and baresip's bind (the suites
        share the machine) is picked again, up to three times."""
        for attempt in range(3):
            try:
                self._start_once(timeout)
                return
            except RuntimeError as exc:
                if "Address already in use" not in str(exc) or attempt == 2:
                    raise
                self.sip_port, self.ctrl_port = free_port(socket.SOCK_DGRAM), free_port()

    def _start_once(self, timeout: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "snd").mkdir(exist_ok=True)
        rtp = free_port(socket.SOCK_DGRAM)
        (self.workdir / "config").write_text("\n".join([
            "poll_method poll",
            f"sip_listen {self.address}:{self.sip_port}",
            f"net_interface {self.address}",
            f"rtp_ports {rtp}-{rtp + 20}",
            "audio_player alsa,null",
            f"audio_source ausine,{self.frequency}",
            # ausine makes 48 kHz stereo only; baresip resamples to the codec's 8 kHz mono
            "ausrc_srate 48000", "ausrc_channels 2", "auplay_srate 48000",
            "audio_alert alsa,null",
            f"module_path {MODULE_PATH}",
            "module g711.so", "module ausine.so", "module alsa.so",
            *(["module sndfile.so", f"snd_path {self.workdir / 'snd'}"] if self.record else []),
            "module_app account.so", "module_app menu.so",
            "module ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
            *self.config,
            "",
        ]))
        # the account is added over the control socket once it is connected, so that no event is lost
        (self.workdir / "accounts").write_text("")
        log = open(self.workdir / "baresip.log", "wb")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(["baresip", "-f", str(self.workdir), *(["-s"] if self.trace else [])], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"baresip did not start:\n{self.log()}") from None
                time.sleep(0.1)
        self.command("uanew", self.account)

    def received_audio(self) -> list[Path]:
        """The WAV files of what the phone received (decoded) in its calls, oldest first."""
        return sorted((self.workdir / "snd").glob("*-dec.wav"))

    def log(self, chars: int = 4000) -> str:
        path = self.workdir / "baresip.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def command(self, command: str, params: str = "") -> None:
        assert self._sock is not None
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self._sock.sendall(str(len(body)).encode() + b":" + body + b",")

    def wait_event(self, kinds: set[str], timeout: float = 20.0) -> dict[str, Any]:
        """The next event of one of ``kinds`` (earlier ones of other kinds are kept in ``events``)."""
        assert self._sock is not None
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("type") in kinds:
                    return self.events.pop(i)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kinds} event from baresip; got {self.events}\n{self.log()}")
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise RuntimeError(f"baresip closed its control socket\n{self.log()}")
            self._buf += chunk
            self._drain()

    def _drain(self) -> None:
        while b":" in self._buf:
            length, _, rest = self._buf.partition(b":")
            size = int(length)
            if len(rest) < size + 1:
                return
            msg = json.loads(rest[:size])
            self._buf = rest[size + 1 :]
            (self.events if msg.get("event") else self.responses).append(msg)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.command("quit")
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
