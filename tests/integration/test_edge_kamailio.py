"""Zvonok behind the SIP edge it ships (issue 14): Debian's Kamailio, configured by
deploy/kamailio/render.py, in front of one ``zvonok serve`` node, all on loopback.

The edge listens on 127.0.0.2, the node and the phones (SIPp) on 127.0.0.1, so an address tells who
sent what. The callee plays a phone behind NAT: its Contact names a private address nobody can reach
(192.168.77.1:5999), so its call can only arrive along the Path the edge put in its REGISTER (the
phone's real address as ``received``), and the rest of the dialog only through the edge's
Record-Route and nathelper alias. The node names the edge in ZVONOK_TRUSTED_EDGES.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]  # loaded by conftest.py (bench/_common.py)
ROOT = Path(__file__).resolve().parents[2]
EDGE_HOST = "127.0.0.2"
PRIVATE_CONTACT = "192.168.77.1:5999"  # what the phone behind NAT believes its address is
CALLEE, CALLER = "7001", "7002"


def _load(name: str, path: Path) -> Any:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


calls: Any = _load("zvonok_bench_calls", ROOT / "bench" / "_calls.py")
render: Any = _load("zvonok_kamailio_render", ROOT / "deploy" / "kamailio" / "render.py")


def _free_port(host: str) -> int:
    """A port free for UDP and TCP on ``host``."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = int(u.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on {host}")


class Kamailio:
    """Kamailio in the foreground (-DD), logging to a file, stopped with SIGTERM."""

    def __init__(self, cfg: Path, workdir: Path) -> None:
        self.cfg = cfg
        self.workdir = workdir
        self.log_path = workdir / "kamailio.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        run = self.workdir / "run"
        run.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [binary, "-DD", "-E", "-f", str(self.cfg), "-Y", str(run), "-P", str(run / "kamailio.pid"),
             "-m", "64", "-M", "8", "-w", str(self.workdir)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@dataclass
class Edge:
    server: Any  # harness.ZvonokServer
    seeded: Any  # harness.Seeded
    kamailio: Kamailio
    port: int
    workdir: Path

    @property
    def target(self) -> str:
        return f"{EDGE_HOST}:{self.port}"

    @property
    def domain(self) -> str:
        return str(self.seeded.domain)

    def registrations(self) -> list[dict[str, Any]]:
        url = f"{self.server.http_url}/api/v1/tenants/{self.seeded.tenant_id}/registrations"
        return list(harness.http_json(url, self.seeded.token)["items"])


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    if shutil.which("kamailio") is None and not Path("/usr/sbin/kamailio").exists():
        pytest.fail("Kamailio (Debian kamailio) is not installed: `make test` installs it")
    if shutil.which("sipp") is None:
        pytest.fail("SIPp (Debian sip-tester) is not installed: `make test` installs it")
    tmp = tmp_path_factory.mktemp("edge")
    data_dir = tmp / "data"
    database_url = os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(data_dir, domain=f"edge-{secrets.token_hex(3)}.test", numbers=[CALLEE, CALLER],
                          database_url=database_url)
    server = harness.ZvonokServer(data_dir=data_dir, database_url=database_url,
                                  # a low flood limit: test_the_flood_limit_... exceeds it from one phone
                                  env={"ZVONOK_TRUSTED_EDGES": f'["{EDGE_HOST}"]', "ZVONOK_INVITE_RATE_LIMIT": "3"})
    server.start()
    port = _free_port(EDGE_HOST)
    # a second node that is down (nothing listens there): the dispatcher must probe it out and fail
    # requests over from it, or some of what the phones send would time out on it
    dead = render.HostPort(harness.LOOPBACK, _free_port(harness.LOOPBACK))
    config = render.EdgeConfig(listen=render.HostPort(EDGE_HOST, port), transports=("udp",),
                               nodes=(dead, render.HostPort(harness.LOOPBACK, int(server.sip_port))),
                               children=2, ping_interval=1, log_level=2, log_stderr=True)
    cfg = render.write(config, tmp / "kamailio")
    checked = render.check(cfg)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    kamailio = Kamailio(cfg, tmp / "kamailio")
    kamailio.start()
    try:
        assert harness.options_answered(EDGE_HOST, port, timeout=30), kamailio.log_tail()
        yield Edge(server=server, seeded=seeded, kamailio=kamailio, port=port, workdir=tmp / "sipp")
    finally:
        kamailio.stop()
        code = server.stop()
        assert code == 0, f"zvonok serve exited with {code} on SIGTERM:\n{server.log_tail()}"


def test_a_phone_behind_nat_registered_through_the_edge_is_called_along_its_path(edge: Edge) -> None:
    phone_port = harness.free_sip_port()
    rows = [[*harness.sipp_row(CALLEE, harness.password_for(CALLEE), edge.domain), PRIVATE_CONTACT]]
    reg = harness.run_sipp("edge_register.xml", edge.target, workdir=edge.workdir, rows=rows, rate=10,
                           timeout=15, auth_uri=f"sip:{edge.domain}", local_port=phone_port, name="register")
    assert (reg.returncode, reg.successful, reg.failed) == (0, 1, 0), reg.describe() + edge.kamailio.log_tail()

    (binding,) = [b for b in edge.registrations() if b["aor"].startswith(f"{CALLEE}@")]
    assert binding["contact"] == f"sip:{CALLEE}@{PRIVATE_CONTACT}"
    assert binding["source"].startswith(f"udp:{EDGE_HOST}:")  # the REGISTER came from the edge ...
    assert binding["client"] == harness.LOOPBACK  # ... which the node trusts to say where the phone is
    (path,) = binding["path"]
    assert path.startswith(f"<sip:{EDGE_HOST}:{edge.port};lr") and "received=" in path, path

    messages = edge.workdir / "callee_messages.log"
    callee = calls.SippProcess("edge_callee.xml", None, workdir=edge.workdir, name="callee", local_port=phone_port,
                               timeout=40, keys={"contact_host": PRIVATE_CONTACT},
                               extra=["-s", CALLEE, "-trace_msg", "-message_file", str(messages)]).start()
    try:
        caller_rows = [calls.caller_row(CALLER, harness.password_for(CALLER), edge.domain, CALLEE)]
        result = harness.run_sipp(
            "edge_caller.xml", edge.target, workdir=edge.workdir, rows=caller_rows, rate=1, timeout=30,
            auth_uri=f"sip:{CALLEE}@{edge.domain}", name="caller",
            extra=["-mi", harness.LOOPBACK, "-mp", str(calls.free_media_port()), "-d", "1000"])
        callee.wait_for("SuccessfulCall(C)", 1, timeout=15)
        callee_result = callee.stop()
    finally:
        callee.kill()
    detail = f"{result.describe()}\n{edge.kamailio.log_tail()}\n{edge.server.log_tail()}"
    assert (result.returncode, result.successful, result.failed) == (0, 1, 0), detail
    assert (callee_result.successful, callee_result.failed) == (1, 0), callee_result.describe() + detail

    invite = _received(messages, "INVITE")
    # it arrived from the edge: the edge's Via on top (the last hop that sent it), the node's below
    vias = [line for line in invite if line.lower().startswith("via:")]
    assert vias[0].split(";")[0] == f"Via: SIP/2.0/UDP {EDGE_HOST}:{edge.port}", vias
    assert any(f"{harness.LOOPBACK}:{edge.server.sip_port}" in via for via in vias[1:]), vias
    # the Request-URI stayed the phone's Contact; the edge took its own Route (the Path) off
    assert invite[0] == f"INVITE sip:{CALLEE}@{PRIVATE_CONTACT} SIP/2.0", invite[0]
    assert not [line for line in invite if line.lower().startswith("route:")], invite
    assert _received(messages, "BYE"), "the caller's BYE reached the phone through the edge"


def _invite_through_edge(edge: Edge, phone: str, n: int) -> tuple[int, str]:
    """An INVITE from a phone at ``phone`` (its Via names a private address, as behind NAT) sent to the
    edge; the final status and the response, after the ACK of a non-2xx."""
    tag, call_id, branch = secrets.token_hex(4), f"flood-{n}-{secrets.token_hex(6)}", "z9hG4bK" + secrets.token_hex(8)
    head = [f"Via: SIP/2.0/UDP 192.168.1.50:5060;branch={branch};rport", "Max-Forwards: 70",
            f"From: <sip:{CALLER}@{edge.domain}>;tag={tag}"]
    invite = "\r\n".join([f"INVITE sip:{CALLEE}@{edge.domain} SIP/2.0", *head, f"To: <sip:{CALLEE}@{edge.domain}>",
                           f"Call-ID: {call_id}", "CSeq: 1 INVITE", f"Contact: <sip:{CALLER}@192.168.1.50:5060>",
                           "Content-Length: 0", "", ""])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((phone, 0))
        sock.settimeout(10)
        sock.sendto(invite.encode(), (EDGE_HOST, edge.port))
        while True:
            data = sock.recv(65535).decode()
            status = int(data.split(" ", 2)[1])
            if status >= 200:
                break
        to = next(line for line in data.split("\r\n") if line.lower().startswith(("to:", "t:")))
        ack = "\r\n".join([f"ACK sip:{CALLEE}@{edge.domain} SIP/2.0", *head, to, f"Call-ID: {call_id}",
                            "CSeq: 1 ACK", "Content-Length: 0", "", ""])
        sock.sendto(ack.encode(), (EDGE_HOST, edge.port))
    return status, data


def test_the_flood_limit_counts_each_phone_behind_the_edge(edge: Edge) -> None:
    """Every phone's INVITE comes from the edge's address; the node (ZVONOK_TRUSTED_EDGES) counts them by
    the address the edge recorded in each phone's Via (`received`: the Via names a private address)."""
    flooder, neighbour = "127.0.0.3", "127.0.0.4"
    answers = [_invite_through_edge(edge, flooder, n) for n in range(5)]
    statuses = [status for status, _ in answers]
    # over 3 new calls a second from one phone: the node's 503 with Retry-After (the first 3 are
    # challenged), which the edge passes on as 500 (RFC 3261 §16.7: a proxy does not forward a 503)
    assert statuses[:3] == [407, 407, 407] and statuses[3:] == [500, 500], statuses
    refused = answers[3][1]
    assert "retry-after: 30" in refused.lower(), refused
    # another phone behind the same edge is not caught by the first one's ban
    assert [_invite_through_edge(edge, neighbour, 10 + n)[0] for n in range(2)] == [407, 407]


def _received(log: Path, method: str) -> list[str]:
    """The lines of the first ``method`` request SIPp logged as received (-trace_msg)."""
    text = log.read_text(errors="replace")
    for block in text.split("----------------------------------------------- ")[1:]:
        head, _, message = block.partition("\n\n")
        if "message received" not in head:
            continue
        lines = [line.rstrip("\r") for line in message.strip("\n").split("\n")]
        if lines and lines[0].startswith(f"{method} "):
            return lines
    return []


def test_requests_are_answered_with_one_of_the_two_nodes_down(edge: Edge) -> None:
    """A live and a dead node: every request still gets the live node's answer (a request hashed to the
    dead one is failed over on its first timeout, and the node is kept out by OPTIONS probing)."""
    statuses = [_options_status(edge, n) for n in range(6)]
    assert statuses == [200] * 6, f"{statuses}\n{edge.kamailio.log_tail()}"


def _options_status(edge: Edge, n: int) -> int | None:
    """One OPTIONS through the edge, sent once (no retransmission: an answer must come from where the edge
    sent it first, or from its failover); its final status, None without one in 20 s."""
    branch = "z9hG4bK" + secrets.token_hex(6)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((harness.LOOPBACK, 0))
        sock.settimeout(20)
        local = sock.getsockname()[1]
        sock.sendto((f"OPTIONS sip:{EDGE_HOST}:{edge.port} SIP/2.0\r\n"
                     f"Via: SIP/2.0/UDP {harness.LOOPBACK}:{local};branch={branch};rport\r\n"
                     f"Max-Forwards: 70\r\nFrom: <sip:probe@edge.test>;tag=o{n}\r\nTo: <sip:probe@edge.test>\r\n"
                     f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(),
                    (EDGE_HOST, edge.port))
        try:
            while True:
                status = int(sock.recv(65535).split(b" ", 2)[1])
                if status >= 200:
                    return status
        except TimeoutError:
            return None


def test_the_rendered_configuration_for_three_nodes_loads_in_kamailio(tmp_path: Path) -> None:
    if shutil.which("kamailio") is None and not Path("/usr/sbin/kamailio").exists():
        pytest.fail("Kamailio (Debian kamailio) is not installed: `make test` installs it")
    out = tmp_path / "edge"
    code = render.main(["--listen", f"{EDGE_HOST}:{_free_port(EDGE_HOST)}", "--advertise", "198.51.100.1",
                        "--out", str(out), "--check", "10.0.0.11:5060", "10.0.0.12:5060", "10.0.0.13:5070"])
    assert code == 0  # `kamailio -c` parsed it and loaded every module it names
