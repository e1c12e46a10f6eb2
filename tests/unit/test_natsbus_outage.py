"""NATS going away under a node (issue 14), on a private nats-server of the test's own (the machine's
binary, a free port, JetStream in a temporary directory) that the test stops and starts again: the
node's own subscribers miss nothing, what fits the client's reconnect buffer reaches the stream when NATS
is back, what does not is dropped and counted, and the bus reconnects by itself."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bench_script import load

from zvonok import metrics, natsbus
from zvonok.natsbus import NatsBus
from zvonok.telephony.events import CallEnded, CallEvent, Disposition, HangupSide


def _free_port() -> int:
    """Below the kernel's ephemeral range (bench/_common.py): a port picked here and left unbound while a test
    waits is not handed to some client socket meanwhile."""
    return int(load("_common").free_port())


class NatsServer:
    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(exe).exists():
            pytest.fail("nats-server (Debian nats-server) is not installed: `make test` installs it")
        self.exe = exe
        self.port = _free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        with (self.workdir / "nats.log").open("ab") as log:  # the server keeps its own descriptor
            self.proc = subprocess.Popen([self.exe, "-a", "127.0.0.1", "-p", str(self.port), "-js",
                                          "-sd", str(self.workdir / "js")], stdout=log, stderr=log)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
                continue
            time.sleep(0.1)
            if self.proc.poll() is None:  # ours answers (not another process that took the port meanwhile)
                return
            break
        pytest.fail("nats-server did not start:\n" + (self.workdir / "nats.log").read_text(errors="replace"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.proc = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    srv = NatsServer(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _ended(call_id: str) -> CallEnded:
    return CallEnded(tenant_id=1, call_id=call_id, at=1.0, disposition=Disposition.ANSWERED,
                     hangup_side=HangupSide.CALLER, cause="normal")


async def _until(predicate: Callable[[], bool], timeout: float = 30.0, *, state: Callable[[], object] = str) -> None:
    """Until ``predicate`` holds; after ``timeout`` an AssertionError saying ``state()``."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s; {state()}") from None


async def test_nats_away_events_are_buffered_then_dropped_and_counted_and_the_bus_reconnects(
        server: NatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(natsbus, "PENDING_BYTES", 3000)  # a few events' worth of reconnect buffer
    bus = await NatsBus.connect(server.url, shared=(CallEvent,), prefix="zvonok-outage", stream="ZVONOK_OUTAGE")
    own: list[str] = []

    async def on_own(event: object) -> None:
        assert isinstance(event, CallEnded)
        own.append(event.call_id)

    bus.subscribe(on_own, event_types=[CallEnded])  # this node's CDR writer, say
    dropped_before = metrics.BUS_DROPPED._value.get()
    try:
        bus.publish(_ended("before"))
        await bus._outbox.join()
        await bus._nc.flush()
        server.stop()
        await _until(lambda: not bus._nc.is_connected)
        assert metrics.BUS_CONNECTED._value.get() == 0
        away = [f"away-{i}" for i in range(40)]
        for call_id in away:
            bus.publish(_ended(call_id))
        await bus._outbox.join()
        await _until(lambda: len(own) == 41)
        assert own == ["before", *away]  # the node's own subscribers missed nothing
        assert 0 < bus.dropped < 40, bus.dropped  # some fit the buffer, the rest were dropped
        assert metrics.BUS_DROPPED._value.get() - dropped_before == bus.dropped
        kept = 40 - bus.dropped

        server.start()  # same port, same JetStream directory: the stream is still there
        await _until(lambda: bus._nc.is_connected)
        await _until(lambda: metrics.BUS_CONNECTED._value.get() == 1)
        bus.publish(_ended("after"))
        await bus._outbox.join()

        durable: list[str] = []

        async def on_durable(event: object) -> None:
            assert isinstance(event, CallEnded)
            durable.append(event.call_id)

        bus.durable_subscribe("cdr-stats", on_durable, event_types=[CallEnded])
        await _until(lambda: "after" in durable)
        # the buffered events went out in order when NATS was back; the dropped ones are the last
        assert durable == ["before", *away[:kept], "after"], (durable, bus.dropped)
        assert bus._dropping == 0  # counted afresh for the next outage
    finally:
        await bus.close()


async def test_a_node_starts_without_nats_and_connects_when_it_appears(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(natsbus, "FIRST_RETRY", 0.1)
    monkeypatch.setattr(natsbus, "MAX_RETRY", 0.5)
    monkeypatch.setattr(natsbus, "PENDING_BYTES", 3000)  # a few events' worth, as while reconnecting
    server = NatsServer(tmp_path)  # not started: nothing listens on its port yet
    bus = NatsBus.start(server.url, shared=(CallEvent,), prefix="zvonok-late", stream="ZVONOK_LATE")
    other: NatsBus | None = None
    own: list[str] = []

    async def on_own(event: object) -> None:
        assert isinstance(event, CallEnded)
        own.append(event.call_id)

    bus.subscribe(on_own, event_types=[CallEnded])
    durable: list[str] = []

    async def on_durable(event: object) -> None:
        assert isinstance(event, CallEnded)
        durable.append(event.call_id)

    bus.durable_subscribe("cdr-stats", on_durable, event_types=[CallEnded])  # waits for the bus
    dropped_before = metrics.BUS_DROPPED._value.get()
    try:
        away = [f"away-{i}" for i in range(40)]
        for call_id in away:
            bus.publish(_ended(call_id))
        await bus._outbox.join()
        await _until(lambda: len(own) == 40)
        assert own == away  # the node works: its own subscribers miss nothing
        await _until(lambda: bus.attempts >= 2)  # it keeps trying
        assert not bus.connected
        assert metrics.BUS_CONNECTED._value.get() == 0
        assert 0 < bus.dropped < 40, bus.dropped  # held within the reconnect buffer's budget, the rest dropped
        assert metrics.BUS_DROPPED._value.get() - dropped_before == bus.dropped
        kept = 40 - bus.dropped

        server.start()
        await _until(lambda: bus.connected)
        assert metrics.BUS_CONNECTED._value.get() == 1
        other = await NatsBus.connect(server.url, shared=(CallEvent,), prefix="zvonok-late", stream="ZVONOK_LATE")
        seen: list[str] = []

        async def on_cluster(event: object) -> None:
            assert isinstance(event, CallEnded)
            seen.append(event.call_id)

        other.subscribe(on_cluster, event_types=[CallEnded], cluster=True)  # a websocket on another node
        bus.publish(_ended("after"))
        await _until(lambda: seen == ["after"], state=lambda: (  # events reach the other node
            seen, bus.connected, other.connected, bus.published, bus.dropped, other.received, server.proc))
        # what was held while NATS was away went into the stream first, in order; the durable consumer got it
        await _until(lambda: "after" in durable)
        assert durable == [*away[:kept], "after"], (durable, bus.dropped)
        assert bus._dropping == 0
    finally:
        if other is not None:
            await other.close()
        await bus.close()
        server.stop()


async def test_the_probe_takes_any_server_of_the_list_and_says_why_none_answers() -> None:
    listening = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    dead = _free_port()
    try:
        await natsbus._probe(f"nats://127.0.0.1:{dead}, nats://127.0.0.1:{port}", timeout=5)
        await natsbus._probe(f"127.0.0.1:{port}", timeout=5)  # no scheme: as nats-py reads it
        with pytest.raises(OSError, match=str(dead)):
            await natsbus._probe(f"nats://127.0.0.1:{dead}", timeout=5)
    finally:
        listening.close()
        await listening.wait_closed()
