"""A cluster node while NATS or PostgreSQL goes away (issue 14).

One ``zvonok serve`` node in cluster mode (``ZVONOK_BUS_URL`` set, PostgreSQL): its NATS is a private
nats-server of this test (the machine's binary, a free port, JetStream in a temporary directory) that
the test stops and starts again; its PostgreSQL is reached through a TCP proxy of this test that is cut
(every connection closed, new ones refused) and restored. SIPp phones call each other through the node.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from conftest import FreshDatabase

from .test_calls_sipp import Pbx, assert_all_ok, calls, finish_callee, place_calls, start_callee

# the node runs on a PostgreSQL database of the module's own, on either run of the suite
pytestmark = [pytest.mark.integration, pytest.mark.fixed_backend]

harness: Any = sys.modules["zvonok_bench_common"]
ALICE, BOB, CAROL = "7501", "7502", "7503"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return bool(predicate())


class NatsServer:
    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(exe).exists():
            pytest.fail("nats-server (Debian nats-server) is not installed: `make test` installs it")
        self.exe, self.workdir, self.port = exe, workdir, _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        with (self.workdir / "nats.log").open("ab") as log:
            self.proc = subprocess.Popen([self.exe, "-a", "127.0.0.1", "-p", str(self.port), "-js",
                                          "-sd", str(self.workdir / "js")], stdout=log, stderr=log)

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        assert _wait_for(up, 30), (self.workdir / "nats.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.proc = None


class TcpProxy:
    """127.0.0.1:<port> → ``upstream``; :meth:`cut` closes every connection and refuses new ones until
    :meth:`restore` (what a database restart or a network blip looks like to the node)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = _free_port()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listening.set()
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while self._listening.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                try:
                    server = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    client.close()
                    continue
                client.settimeout(None)
                server.settimeout(None)
                with self._lock:
                    self._sockets += [client, server]
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self._listening.clear()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self.start()


@dataclass
class Node:
    pbx: Pbx
    nats: NatsServer
    proxy: TcpProxy

    def metric(self, name: str) -> float:
        url = f"{self.pbx.server.http_url}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
            text = resp.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))

    def alive(self) -> bool:
        proc = self.pbx.server.proc
        return proc is not None and proc.poll() is None


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    if shutil.which("sipp") is None:
        pytest.fail("SIPp (Debian sip-tester) is not installed: `make test` installs it")
    tmp = tmp_path_factory.mktemp("outages")
    database = FreshDatabase("postgres", tmp)
    asyncio.run(database.create())
    nats = NatsServer(tmp)
    nats.start()
    url = make_url(database.url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    server = None
    try:
        data_dir = tmp / "node"
        seeded = harness.seed(data_dir, domain=f"outage-{secrets.token_hex(3)}.test", numbers=[ALICE, BOB, CAROL],
                              database_url=database.url)
        through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
        server = harness.ZvonokServer(data_dir=data_dir, database_url=through_proxy, env={
            "ZVONOK_BUS_URL": nats.url, "ZVONOK_BUS_PREFIX": f"zvonok-outage.{database.name}",
            "ZVONOK_SECRET_KEY": secrets.token_hex(24), "ZVONOK_CALL_NO_ANSWER_TIMEOUT": "20"})
        server.start(timeout=300)
        yield Node(Pbx(server=server, seeded=seeded, workdir=tmp / "sipp"), nats, proxy)
    finally:
        code = server.stop() if server is not None and server.proc is not None and server.proc.poll() is None else 0
        proxy.cut()
        nats.stop()
        asyncio.run(database.drop())
    assert code == 0, f"zvonok serve exited with {code} on SIGTERM"


def _one_call(node: Node, caller: str, callee: str) -> None:
    answering = start_callee(node.pbx, callee, "call_uas.xml")
    try:
        result = place_calls(node.pbx, caller, callee, "call_uac.xml", 1, rate=1, timeout=60)
        assert_all_ok(result, 1)
        assert_all_ok(finish_callee(answering, 1), 1)
    finally:
        answering.kill()


def test_calls_go_on_while_nats_is_away_and_the_node_reconnects(node: Node) -> None:
    _one_call(node, ALICE, BOB)
    assert node.metric("zvonok_bus_connected") == 1
    node.nats.stop()
    assert _wait_for(lambda: node.metric("zvonok_bus_connected") == 0, 60), node.pbx.server.log_tail()
    before = len(node.pbx.cdrs(ALICE, 0, timeout=0))
    _one_call(node, ALICE, BOB)  # no NATS: the call, and its CDR (written by this node), are as always
    assert len(node.pbx.cdrs(ALICE, before + 1, timeout=60)) == before + 1
    node.nats.start()  # same port and JetStream directory: the node reconnects by itself
    assert _wait_for(lambda: node.metric("zvonok_bus_connected") == 1, 60), node.pbx.server.log_tail()
    log = node.pbx.server.log_tail(20000)
    assert "NATS connection lost" in log and "NATS connection back" in log, log
    _one_call(node, BOB, ALICE)
    assert node.alive()


def test_a_postgresql_blip_neither_cuts_a_call_in_progress_nor_crashes_the_node(node: Node) -> None:
    answering = start_callee(node.pbx, CAROL, "call_uas.xml", timeout=90)
    before = len(node.pbx.cdrs(ALICE, 0, timeout=0))
    caller = calls.SippProcess(
        "call_uac.xml", node.pbx.target, workdir=node.pbx.workdir, name="caller_blip",
        rows=[calls.caller_row(ALICE, harness.password_for(ALICE), node.pbx.domain, CAROL)], calls=1, rate=1,
        timeout=90, auth_uri=f"sip:{CAROL}@{node.pbx.domain}", extra=["-d", "15000"]).start()
    try:
        assert caller.wait_for("TotalCallCreated", 1, timeout=30)
        time.sleep(4)  # answered and talking (SIPp holds it 15 s)
        node.proxy.cut()  # every database connection closed, new ones refused
        time.sleep(6)
        assert node.alive(), node.pbx.server.log_tail()
        node.proxy.restore()
        result = caller.wait(timeout=90)
    finally:
        caller.kill()
        answering.kill()
    # the call went on through the blip and ended normally
    assert (result.successful, result.failed) == (1, 0), result.describe() + node.pbx.server.log_tail()
    assert node.alive()
    # its CDR is written once the database is back (the writer retries; the journal keeps it meanwhile)
    assert len(node.pbx.cdrs(ALICE, before + 1, timeout=90)) == before + 1, node.pbx.server.log_tail()

    # new calls work again (the first attempt may meet a connection the blip broke: it fails cleanly)
    def a_call_works() -> bool:
        answering = start_callee(node.pbx, BOB, "call_uas.xml")
        try:
            result = place_calls(node.pbx, ALICE, BOB, "call_uac.xml", 1, rate=1, timeout=60)
            ok = (result.successful, result.failed) == (1, 0)
            if ok:
                finish_callee(answering, 1)
            return ok
        finally:
            answering.kill()

    assert any(a_call_works() for _ in range(3)), node.pbx.server.log_tail()
    assert node.alive()


def _health(server: Any) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=10) as resp:  # noqa: S310 - loopback
        assert resp.status == 200
        return dict(json.loads(resp.read()))


async def _stream_events(url: str, stream: str, subject: str) -> list[tuple[str, str]]:
    """(type, call id) of every event the JetStream stream holds, oldest first."""
    import nats

    nc = await nats.connect(url)
    try:
        sub = await nc.jetstream().pull_subscribe(subject, stream=stream)  # ephemeral: from the start
        got: list[tuple[str, str]] = []
        while True:
            try:
                messages = await sub.fetch(100, timeout=2.0)
            except TimeoutError:  # nats' own, or asyncio's when the wait ran out between its two requests
                return got
            for msg in messages:
                event = json.loads(msg.data)
                got.append((event["type"], event.get("call_id", "")))
                await msg.ack()
    finally:
        await nc.close()


async def _live_events(url: str, subject: str, until: Any, timeout: float) -> list[tuple[str, str]]:
    """(type, call id) of the events published on ``subject`` while ``until()`` (run in a thread) runs,
    as a websocket on another node receives them."""
    import nats

    got: list[tuple[str, str]] = []

    async def on_message(msg: Any) -> None:
        event = json.loads(msg.data)
        got.append((event["type"], event.get("call_id", "")))

    nc = await nats.connect(url)
    try:
        await nc.subscribe(subject, cb=on_message)
        await nc.flush()
        await asyncio.wait_for(asyncio.to_thread(until), timeout)
        for _ in range(100):  # the last events of the call are on their way
            if any(kind == "CallEnded" for kind, _ in got):
                break
            await asyncio.sleep(0.1)
        return got
    finally:
        await nc.close()


def test_a_node_starts_while_nats_is_down_and_connects_when_it_appears(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """NATS not yet started when the node starts (issue 14): the node starts anyway, says so (/healthz,
    zvonok_bus_connected), takes calls and writes their CDRs; NATS started: the node connects by itself,
    the call events held meanwhile reach the stream (durable consumers), new ones reach the other nodes."""
    tmp = tmp_path_factory.mktemp("late-nats")
    database = FreshDatabase("postgres", tmp)
    asyncio.run(database.create())
    nats_server = NatsServer(tmp)  # its port is chosen, nothing listens there yet
    prefix = f"zvonok-late.{database.name}"
    stream = prefix.replace(".", "_").replace("-", "_").upper()
    server = None
    try:
        data_dir = tmp / "node"
        seeded = harness.seed(data_dir, domain=f"late-{secrets.token_hex(3)}.test", numbers=[ALICE, BOB],
                              database_url=database.url)
        server = harness.ZvonokServer(data_dir=data_dir, database_url=database.url, env={
            "ZVONOK_BUS_URL": nats_server.url, "ZVONOK_BUS_PREFIX": prefix,
            "ZVONOK_SECRET_KEY": secrets.token_hex(24), "ZVONOK_CALL_NO_ANSWER_TIMEOUT": "20"})
        server.start(timeout=300)  # healthy (200) without NATS
        node = Node(Pbx(server=server, seeded=seeded, workdir=tmp / "sipp"), nats_server, TcpProxy(("127.0.0.1", 1)))
        assert _health(server) == {"status": "degraded", "bus": "down"}
        assert node.metric("zvonok_bus_connected") == 0
        _one_call(node, ALICE, BOB)
        away = node.pbx.cdrs(ALICE, 1, timeout=60)
        assert len(away) == 1, server.log_tail()  # the call and its CDR, as always
        log = server.log_tail(20000)
        assert "NATS not reachable" in log, log

        nats_server.start()
        assert _wait_for(lambda: node.metric("zvonok_bus_connected") == 1, 90), server.log_tail()
        assert _health(server) == {"status": "ok", "bus": "up"}
        # the call made while NATS was away: its events were held and went into the stream once connected
        stored = asyncio.run(_stream_events(nats_server.url, stream, f"{prefix}.>"))
        assert ("CallStarted", away[0]["call_id"]) in stored and ("CallEnded", away[0]["call_id"]) in stored, stored
        # a new call's events reach a subscriber of the other nodes' side, live
        live = asyncio.run(_live_events(nats_server.url, f"{prefix}.>", lambda: _one_call(node, BOB, ALICE), 120))
        after = node.pbx.cdrs(BOB, 1, timeout=60)
        assert len(after) == 1
        assert ("CallStarted", after[0]["call_id"]) in live and ("CallEnded", after[0]["call_id"]) in live, live
        assert node.alive()
    finally:
        code = server.stop() if server is not None and server.proc is not None and server.proc.poll() is None else 0
        nats_server.stop()
        asyncio.run(database.drop())
    assert code == 0, f"zvonok serve exited with {code} on SIGTERM"
