"""A scripted softphone for integration tests: one PJSIP (pjsua2) endpoint in a child process.

pjsua2 runs its own C threads and SWIG objects that crash when collected after ``libDestroy``, so it
never enters pytest's process: :class:`PjsuaPhone` starts ``pjsua_agent.py`` with the venv's Python and
talks to it in JSON lines over the child's stdin/stdout (the protocol is described in that module).

How it works: a reader thread files each line from the child either as the reply to a request (by
``id``) or as an event; :meth:`PjsuaPhone.request` blocks until its reply, :meth:`PjsuaPhone.wait_event`
until a matching event (taking it out of :attr:`PjsuaPhone.events`, the ones seen but not yet waited
for). :attr:`PjsuaPhone.history` keeps every event. If pytest dies, the child sees EOF on stdin and
shuts down by itself; :meth:`PjsuaPhone.stop` asks politely, then kills.

The phone speaks PCMU/PCMA only, binds 127.0.0.1 (SIP on a kernel-chosen UDP port, RTP from a free
port), uses the null sound device, and writes PJSIP's log (level 5 has every SIP message) to
``<workdir>/pjsua.log``.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AGENT = Path(__file__).with_name("pjsua_agent.py")
PYTHON = sys.executable  # pytest runs in the venv that has pjsua2-python


# pjsua_core.c logs "....TX 822 bytes Request msg REFER/cseq=3 (tdta..) to UDP 127.0.0.1:5060:\n<message>--end msg--"
_LOGGED_MESSAGE = re.compile(r"[ .](?P<dir>TX|RX) \d+ bytes [^\n]*:\n(?P<msg>.*?)--end msg--", re.DOTALL)


@dataclass(frozen=True)
class SipLogEntry:
    """One SIP message from the phone's log: ``TX`` (sent) or ``RX`` (received), text with LF line ends."""

    direction: str
    text: str

    @property
    def start_line(self) -> str:
        return self.text.split("\n", 1)[0]

    @property
    def method(self) -> str:
        """The request's method, or "" for a response."""
        first = self.start_line
        return "" if first.startswith("SIP/2.0") else first.split(" ", 1)[0]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive; no compact forms: PJSIP sends long ones)."""
        head = self.text.split("\n\n", 1)[0]
        for line in head.split("\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


class PjsuaError(RuntimeError):
    """The agent refused a request, died, or did not report what we waited for in time."""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PjsuaPhone:
    """One pjsua2 endpoint with (at most) one account, in its own process."""

    workdir: Path
    name: str = "phone"
    play: Path | None = None  # a WAV (16-bit mono) looped into every call
    record: bool = False  # record what each call receives to workdir/call<handle>.wav
    log_level: int = 5
    tls_ca: Path | None = None  # SIP over TLS as well, verifying the server against this CA file
    sip_port: int = 0  # known after start()
    proc: subprocess.Popen[str] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    _replies: dict[int, dict[str, Any]] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _next_id: int = 1
    _closed: bool = False
    _reader: threading.Thread | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "pjsua.log"

    # -- process ------------------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {"log": str(self.log_path), "log_level": self.log_level, "bind": "127.0.0.1",
                  "rtp_port": free_udp_port(), "play": str(self.play) if self.play else None,
                  "record_dir": str(self.workdir) if self.record else None,
                  "tls_ca": str(self.tls_ca) if self.tls_ca else None}
        with open(self.workdir / "agent.err", "wb") as err:
            self.proc = subprocess.Popen([PYTHON, str(AGENT), json.dumps(config)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, name=f"pjsua-{self.name}", daemon=True)
        self._reader.start()
        ready = self.wait_event("ready", timeout=timeout)
        self.sip_port = int(ready["sip_port"])

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                message = {"event": "garbage", "line": line}
            with self._cond:
                if "id" in message and "event" not in message:
                    self._replies[int(message["id"])] = message
                else:
                    self.events.append(message)
                    self.history.append(message)
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _wait(self, ready: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = ready()
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    why = "the agent exited" if self._closed else f"nothing after {timeout} s"
                    raise PjsuaError(f"{self.name}: waiting for {what}: {why}\n"
                                     f"pending events: {self.events}\n{self.diagnostics()}")
                self._cond.wait(remaining)

    def request(self, cmd: str, timeout: float = 10.0, **args: Any) -> Any:
        """Send one command; its ``result``, or :class:`PjsuaError` with the agent's message."""
        if self.proc is None or self.proc.stdin is None:
            raise PjsuaError(f"{self.name} is not running")
        with self._cond:
            rid, self._next_id = self._next_id, self._next_id + 1
        try:
            self.proc.stdin.write(json.dumps({"id": rid, "cmd": cmd, **args}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise PjsuaError(f"{self.name}: the agent is gone ({exc})\n{self.diagnostics()}") from None
        reply = self._wait(lambda: self._replies.pop(rid, None), timeout, f"the reply to {cmd}")
        if not reply["ok"]:
            raise PjsuaError(f"{self.name}: {cmd} failed: {reply['error']}")
        return reply["result"]

    def wait_event(self, kind: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        """Take the first event of ``kind`` whose fields equal ``match`` (earlier others stay queued)."""
        def find() -> dict[str, Any] | None:
            for i, event in enumerate(self.events):
                if event.get("event") == kind and all(event.get(k) == v for k, v in match.items()):
                    return self.events.pop(i)
            return None
        return dict(self._wait(find, timeout, f"{kind} {match}"))

    def stop(self, timeout: float = 10.0) -> int | None:
        """Quit (calls are hung up, recordings closed, libDestroy); killed if it takes too long."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"id": 0, "cmd": "quit"}) + "\n")
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)  # it reads to EOF; closing stdout under it would raise in that thread
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except (BrokenPipeError, OSError):
                    pass
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def diagnostics(self) -> str:
        err = self.workdir / "agent.err"
        stderr = err.read_text(errors="replace")[-2000:] if err.exists() else ""
        return f"--- agent stderr ---\n{stderr}\n--- pjsua log tail ---\n{self.log(3000)}"

    def sip_messages(self) -> list[SipLogEntry]:
        """Every SIP message PJSIP logged (level 5), sent (``TX``) and received (``RX``), in order."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return [SipLogEntry(direction=m["dir"], text=m["msg"].replace("\r\n", "\n").strip())
                for m in _LOGGED_MESSAGE.finditer(text)]

    def sent(self, method: str) -> list[SipLogEntry]:
        """The requests of ``method`` this phone sent (retransmissions included)."""
        return [m for m in self.sip_messages() if m.direction == "TX" and m.method == method]

    # -- account and calls --------------------------------------------------------------------------
    def register(self, user: str, password: str | None, domain: str, proxy: str | None = None, *,
                 auto_answer: bool = False, hangup_on_transfer: bool = False, mwi: bool = False, sips: bool = False,
                 timeout: float = 15.0) -> dict[str, Any]:
        """Create the account (AOR ``sip:user@domain``, requests routed via ``proxy`` host:port) and wait
        for the registration's final answer, which must be 200.

        ``hangup_on_transfer``: BYE a call as soon as its transfer is reported successful (final NOTIFY
        2xx), as deployed phones do; off, the phone leaves that to the other side. ``mwi``: subscribe to
        the account's message-summary (RFC 3842); each NOTIFY's body arrives as an ``mwi`` event.
        """
        self.request("account", user=user, password=password, domain=domain, proxy=proxy,
                     auto_answer=auto_answer, hangup_on_transfer=hangup_on_transfer, mwi=mwi, sips=sips)
        state = self.wait_event("reg_state", timeout=timeout)
        if state["code"] != 200:
            raise PjsuaError(f"{self.name}: registration failed: {state}\n{self.diagnostics()}")
        return state

    def local_account(self, user: str, *, auto_answer: bool = False, hangup_on_transfer: bool = False) -> str:
        """An account that does not register: peers dial ``sip:<user>@127.0.0.1:<sip_port>`` directly."""
        self.request("account", user=user, domain=f"127.0.0.1:{self.sip_port}", register=False,
                     auto_answer=auto_answer, hangup_on_transfer=hangup_on_transfer)
        return f"sip:{user}@127.0.0.1:{self.sip_port}"

    def set_auto_answer(self, on: bool) -> None:
        self.request("set", auto_answer=on)

    def call(self, uri: str) -> int:
        """Place a call; its handle (the progress arrives as ``call_state`` events)."""
        return int(self.request("call", uri=uri)["call"])

    def answer(self, call: int, code: int = 200) -> None:
        self.request("answer", call=call, code=code)

    def hangup(self, call: int | None = None, code: int = 0) -> None:
        """BYE/CANCEL/reject one call (``code`` for an incoming one), or all of them."""
        self.request("hangup", call=call, code=code)

    def hold(self, call: int) -> None:
        self.request("hold", call=call)

    def unhold(self, call: int) -> None:
        self.request("unhold", call=call)

    def xfer(self, call: int, dest: str) -> None:
        """Blind transfer: REFER on ``call`` with ``Refer-To: dest``."""
        self.request("xfer", call=call, dest=dest)

    def xfer_replaces(self, call: int, dest_call: int) -> None:
        """Attended transfer: REFER on ``call`` whose Refer-To names ``dest_call``'s dialog (Replaces)."""
        self.request("xfer_replaces", call=call, dest_call=dest_call)

    def dtmf(self, call: int, digits: str) -> None:
        self.request("dtmf", call=call, digits=digits)

    def play_into(self, call: int, wav: Path) -> None:
        self.request("play", call=call, path=str(wav))

    def record_call(self, call: int, wav: Path) -> None:
        self.request("record", call=call, path=str(wav))

    def calls(self) -> list[dict[str, Any]]:
        """Every call this phone has had: handle, state, last_status, remote_uri, sip_call_id, media."""
        return list(self.request("calls"))

    # -- waiting helpers ----------------------------------------------------------------------------
    def wait_incoming(self, timeout: float = 15.0) -> int:
        return int(self.wait_event("incoming_call", timeout=timeout)["call"])

    def wait_state(self, call: int, state: str, timeout: float = 15.0) -> dict[str, Any]:
        """Wait for ``call`` to reach ``state`` (e.g. CONFIRMED); fails early if it ends instead."""
        def find() -> dict[str, Any] | None:
            for i, event in enumerate(self.events):
                if event.get("event") == "call_state" and event.get("call") == call:
                    if event["state"] == state:
                        return self.events.pop(i)
                    if event["state"] == "DISCONNECTED":
                        raise PjsuaError(f"{self.name}: call {call} ended ({event['last_status']} "
                                         f"{event['last_reason']}) while waiting for {state}")
            return None
        return dict(self._wait(find, timeout, f"call {call} {state}"))

    def wait_ended(self, call: int, timeout: float = 15.0) -> dict[str, Any]:
        """Wait until ``call`` is over and released (its recording, if any, is then a complete WAV)."""
        return self.wait_event("call_ended", timeout=timeout, call=call)

    def wait_transfer(self, call: int, timeout: float = 15.0) -> dict[str, Any]:
        """The final transfer NOTIFY on ``call`` (``code`` is the sipfrag's status)."""
        return self.wait_event("transfer_status", timeout=timeout, call=call, final=True)

    def recording(self, call: int) -> Path:
        return self.workdir / f"call{call}.wav"
