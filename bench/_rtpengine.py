"""rtpengine (Debian ``rtpengine-daemon``, userspace relay) as a comparison target for relayed calls.

SIPp caller -> :class:`SdpRelay` -> SIPp callee, the media through rtpengine: the relay is a small
stateless SIP proxy in this process (one UDP socket, one thread). It forwards requests to the callee
under its own Via and responses back along the remaining Vias; on the way it hands every SDP to
rtpengine over its ng protocol (``offer`` for an INVITE's, ``answer`` for a 2xx's) and puts rtpengine's
rewritten SDP in its place, so both SIPp ends send their RTP to rtpengine, which relays it (no kernel
forwarding: ``--table=-1``). Requests inside the dialog (ACK for the 2xx, BYE) go from end to end (no
Record-Route): they carry no SDP. rtpengine forgets the calls by its own timeout.

The relay's own CPU is not counted: the figure compared is rtpengine's process CPU, as zvonok's is the
server's.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

try:  # run from bench/ as a script
    import _common as common
except ImportError:  # pragma: no cover - imported through tests/integration's alias
    import zvonok_bench_common as common  # type: ignore[import-not-found,no-redef]

RTPENGINE = shutil.which("rtpengine") or "/usr/bin/rtpengine"


# --- bencode (the ng protocol's encoding) ----------------------------------------------------------
def bencode(value: object) -> bytes:
    if isinstance(value, bytes):
        return str(len(value)).encode() + b":" + value
    if isinstance(value, str):
        return bencode(value.encode())
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in sorted(value.items())) + b"e"
    raise TypeError(type(value))


def bdecode(data: bytes, at: int = 0) -> tuple[object, int]:
    kind = data[at:at + 1]
    if kind == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1:end]), end + 1
    if kind in (b"l", b"d"):
        at += 1
        items: list[object] = []
        while data[at:at + 1] != b"e":
            item, at = bdecode(data, at)
            items.append(item)
        if kind == b"l":
            return items, at + 1
        return {items[i]: items[i + 1] for i in range(0, len(items), 2)}, at + 1  # type: ignore[misc]
    colon = data.index(b":", at)
    length = int(data[at:colon])
    return data[colon + 1:colon + 1 + length], colon + 1 + length


class NgClient:
    """Blocking ng requests over UDP (``<cookie> <bencoded dict>``), one at a time."""

    def __init__(self, port: int) -> None:
        self.addr = (common.LOOPBACK, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((common.LOOPBACK, 0))
        self.sock.settimeout(2.0)
        self.count = 0
        self.prefix = os.urandom(4).hex()  # rtpengine caches replies by cookie: never reuse one

    def request(self, command: dict[str, object]) -> dict[bytes, object]:
        self.count += 1
        cookie = f"{self.prefix}_{self.count}".encode()
        for _ in range(3):
            self.sock.sendto(cookie + b" " + bencode(command), self.addr)
            try:
                while True:
                    data = self.sock.recv(65535)
                    got, _, body = data.partition(b" ")
                    if got == cookie:
                        reply, _ = bdecode(body)
                        assert isinstance(reply, dict)
                        return reply
            except TimeoutError:
                continue
        raise RuntimeError(f"rtpengine did not answer {command.get('command')}")

    def close(self) -> None:
        self.sock.close()


@dataclass
class Rtpengine:
    """``rtpengine`` in the foreground on loopback (userspace forwarding)."""

    log_path: Path
    ng_port: int = 0
    port_min: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 15.0) -> Rtpengine:
        self.ng_port = self.ng_port or common.free_port(socket.SOCK_DGRAM)
        self.port_min = self.port_min or 42000
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [RTPENGINE, "--foreground", "--log-stderr", "--log-level=5", "--table=-1", "--no-fallback",
                 f"--interface={common.LOOPBACK}", f"--listen-ng={common.LOOPBACK}:{self.ng_port}",
                 f"--port-min={self.port_min}", f"--port-max={self.port_min + 3999}", "--timeout=60",
                 "--delete-delay=0"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        ng = NgClient(self.ng_port)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"rtpengine exited with {self.proc.returncode}:\n"
                                       f"{self.log_path.read_text(errors='replace')[-3000:]}")
                try:
                    if ng.request({"command": "ping"}).get(b"result") == b"pong":
                        return self
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
        finally:
            ng.close()

    def cpu_seconds(self) -> float:
        return common.proc_cpu_seconds(self.pid)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


# --- the stateless SIP relay ------------------------------------------------------------------------
_HEADER_END = b"\r\n\r\n"
_VIA = re.compile(rb"^(?:Via|v):\s*SIP/2\.0/UDP\s+([^;\s]+)(.*)$", re.IGNORECASE | re.MULTILINE)
_VIA_NAME = re.compile(rb"^(?:Via|v)\s*:", re.IGNORECASE)
_VIA_SPLIT = re.compile(rb",\s*(?=SIP/2\.0/)")
_BRANCH = re.compile(rb";branch=([^;\s]+)", re.IGNORECASE)


def _header(head: bytes, name: bytes) -> bytes | None:
    m = re.search(rb"^" + name + rb":\s*(.*?)\s*$", head, re.IGNORECASE | re.MULTILINE)
    return m.group(1) if m else None


def _tag(value: bytes | None) -> bytes:
    m = re.search(rb";tag=([^;>\s]+)", value or b"")
    return m.group(1) if m else b""


@dataclass
class SdpRelay:
    """The stateless proxy between a SIPp caller and a SIPp callee (see the module's docstring)."""

    callee: tuple[str, int]
    ng_port: int
    port: int = 0
    errors: list[str] = field(default_factory=list)
    offers: int = 0
    answers: int = 0
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def target(self) -> str:
        return f"{common.LOOPBACK}:{self.port}"

    def start(self) -> SdpRelay:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((common.LOOPBACK, self.port))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="sdp-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def _run(self) -> None:
        assert self._sock is not None
        ng = NgClient(self.ng_port)
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self._sock], [], [], 0.2)
                if not ready:
                    continue
                data, _addr = self._sock.recvfrom(65535)
                try:
                    out = self._relay(data, ng)
                except (RuntimeError, ValueError, IndexError) as exc:
                    if len(self.errors) < 20:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                if out is not None:
                    self._sock.sendto(*out)
        finally:
            ng.close()

    def _relay(self, data: bytes, ng: NgClient) -> tuple[bytes, tuple[str, int]] | None:
        head, sep, body = data.partition(_HEADER_END)
        if not sep:
            return None
        first = head.split(b"\r\n", 1)[0]
        is_response = first.startswith(b"SIP/2.0 ")
        if is_response:
            # all Via values in order (SIPp's [last_Via:] folds them into one comma-separated line): ours goes,
            # the rest stay in one line where the first was, and the next one says where to send
            lines = head.split(b"\r\n")
            at = [i for i, line in enumerate(lines) if _VIA_NAME.match(line)]
            if not at:
                return None
            values = [v.strip() for i in at for v in _VIA_SPLIT.split(lines[i].split(b":", 1)[1])]
            if len(values) < 2:
                return None
            lines[at[0]] = b"Via: " + b", ".join(values[1:])
            head = b"\r\n".join(line for i, line in enumerate(lines) if i not in at[1:])
            sent_by = values[1].split(None, 1)[1].split(b";", 1)[0]
            host, _, port = sent_by.partition(b":")
            rport = re.search(rb";rport=(\d+)", values[1])
            dest = (host.decode(), int(rport.group(1) if rport else (port or b"5060")))
            if body and b" 200 " in first + b" " and b"INVITE" in (_header(head, b"CSeq") or b""):
                body = self._sdp(ng, "answer", head, body)
                self.answers += 1
        else:
            branch = _BRANCH.search(_VIA.search(head).group(2))  # type: ignore[union-attr]
            ours_branch = b"z9hG4bK" + hashlib.md5(branch.group(1) if branch else first).hexdigest()[:16].encode()  # noqa: S324
            line_end = head.index(b"\r\n")
            head = (head[:line_end + 2] + f"Via: SIP/2.0/UDP {common.LOOPBACK}:{self.port};branch=".encode()
                    + ours_branch + b"\r\n" + head[line_end + 2:])
            dest = self.callee
            if body and first.startswith(b"INVITE "):
                body = self._sdp(ng, "offer", head, body)
                self.offers += 1
        head = re.sub(rb"(?im)^(Content-Length|l):\s*\d+", b"Content-Length: %d" % len(body), head)
        return head + _HEADER_END + body, dest

    @staticmethod
    def _sdp(ng: NgClient, command: str, head: bytes, body: bytes) -> bytes:
        request: dict[str, object] = {
            "command": command, "call-id": _header(head, b"Call-ID") or b"", "sdp": body,
            "from-tag": _tag(_header(head, b"From")), "replace": ["origin", "session-connection"]}
        if command == "answer":
            request["to-tag"] = _tag(_header(head, b"To"))
        reply = ng.request(request)
        if reply.get(b"result") != b"ok":
            raise RuntimeError(f"rtpengine {command}: {reply!r}")
        sdp = reply[b"sdp"]
        assert isinstance(sdp, bytes)
        return sdp
