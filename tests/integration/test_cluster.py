"""Two ``zvonok serve`` nodes behind the Kamailio edge, sharing one PostgreSQL database (issue 14).

Kamailio (deploy/kamailio/render.py) listens on 127.0.0.2 and dispatches to two nodes on 127.0.0.1; the
REGISTERs of an AoR go to one node (hash of the To URI), a phone's new calls to the same node (hash of the
From URI). Both nodes use a
fresh database of their own test run and the same secret key (a nonce one node issued is good at the
other: the INVITE answered 407 and its authenticated retry may reach different nodes). Phones are SIPp
processes behind NAT (a private Contact; reachable only along the Path the edge recorded). The phones
are registered until one landed on each node; then each calls the other: every call starts on the
caller's node (counted in its metrics) and is for a phone registered through the other node, and the RTP
the caller plays must reach the callee's media socket through the node that bridged it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conftest import FreshDatabase
from zvonok.callcenter.models import QueueCallbackRow
from zvonok.pstn.holds import NODE
from zvonok.pstn.models import CallHold
from zvonok.storage.db import Database

from .dtmf_pcap import write_dtmf_pcap
from .test_trunks_sipp import ACCESS_CALL, WAIT_FOR_OUR_BYE

# the nodes share a PostgreSQL database of the module's own, on either run of the suite
pytestmark = [pytest.mark.integration, pytest.mark.fixed_backend]

harness: Any = sys.modules["zvonok_bench_common"]  # loaded by conftest.py (bench/_common.py)
ROOT = Path(__file__).resolve().parents[2]
EDGE_HOST = "127.0.0.2"
PRIVATE_HOST = "192.168.77.1"  # what every phone behind NAT believes its address is
NUMBERS = [str(n) for n in range(7301, 7309)]
NATS_URL = os.environ.get("ZVONOK_TEST_NATS_URL", "nats://127.0.0.1:4222")
CARRIER_HOST = "127.0.0.9"  # a SIPp carrier taking one call at a time (the trunk's max_calls 1), route 7473


def _load(name: str, path: Path) -> Any:
    import importlib.util

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
edge_test: Any = _load("zvonok_test_edge_kamailio", ROOT / "tests" / "integration" / "test_edge_kamailio.py")


@dataclass
class Phone:
    number: str
    port: int  # the SIP port it registered from (the Path's `received` names it)

    @property
    def contact_host(self) -> str:
        return f"{PRIVATE_HOST}:{5000 + int(self.number) % 1000}"


@dataclass
class Cluster:
    nodes: list[Any]  # harness.ZvonokServer, two
    seeded: Any
    kamailio: Any
    port: int
    workdir: Path
    carrier_port: int  # the one-call trunk's carrier, on CARRIER_HOST

    @property
    def target(self) -> str:
        return f"{EDGE_HOST}:{self.port}"

    @property
    def domain(self) -> str:
        return str(self.seeded.domain)

    def registrations(self, node: int) -> dict[str, dict[str, Any]]:
        rows = self.nodes[node].registrations(self.seeded.tenant_id, self.seeded.token)
        return {row["aor"].split("@")[0]: row for row in rows}

    def logs(self) -> str:
        return "\n".join([self.kamailio.log_tail(3000), *(n.log_tail(3000) for n in self.nodes)])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if shutil.which("kamailio") is None and not Path("/usr/sbin/kamailio").exists():
        pytest.fail("Kamailio (Debian kamailio) is not installed: `make test` installs it")
    if shutil.which("sipp") is None:
        pytest.fail("SIPp (Debian sip-tester) is not installed: `make test` installs it")
    tmp = tmp_path_factory.mktemp("cluster")
    database = FreshDatabase("postgres", tmp)
    bus_prefix = f"zvonok-test.{database.name}"  # this run's own subjects and stream on the shared NATS
    asyncio.run(database.create())
    nodes: list[Any] = []
    kamailio = None
    try:
        seeded = harness.seed(
            tmp / "node1",
            domain=f"cluster-{secrets.token_hex(3)}.test",
            numbers=NUMBERS,
            database_url=database.url,
        )
        carrier_port = harness.free_sip_port(CARRIER_HOST)
        harness.seed_pstn(tmp / "node1", seeded.tenant_id, {
            "trunks": [{"name": "Tiny", "host": CARRIER_HOST, "port": carrier_port, "max_calls": 1}],
            "routes": [{"prefix": "7473", "trunk": "Tiny"}],
            "policies": [{"level": "tenant", "service_class": "long_distance"}],
        }, database_url=database.url)
        env = {
            "ZVONOK_TRUSTED_EDGES": f'["{EDGE_HOST}"]',
            "ZVONOK_SECRET_KEY": secrets.token_hex(24),
            "ZVONOK_BUS_URL": NATS_URL,
            "ZVONOK_BUS_PREFIX": bus_prefix,
        }
        for name in ("node1", "node2"):
            node = harness.ZvonokServer(data_dir=tmp / name, database_url=database.url, env=env)
            node.start(timeout=300)  # a loaded shared machine has taken over 120 s
            nodes.append(node)
        port = edge_test._free_port(EDGE_HOST)
        config = render.EdgeConfig(
            listen=render.HostPort(EDGE_HOST, port),
            transports=("udp",),
            nodes=tuple(render.HostPort(harness.LOOPBACK, int(n.sip_port)) for n in nodes),
            children=2,
            ping_interval=1,
            log_level=2,
            log_stderr=True,
        )
        cfg = render.write(config, tmp / "kamailio")
        kamailio = edge_test.Kamailio(cfg, tmp / "kamailio")
        kamailio.start()
        assert harness.options_answered(EDGE_HOST, port, timeout=30), kamailio.log_tail()
        yield Cluster(nodes=nodes, seeded=seeded, kamailio=kamailio, port=port, workdir=tmp / "sipp",
                      carrier_port=carrier_port)
    finally:
        if kamailio is not None:
            kamailio.stop()
        codes = [node.stop() if node.proc is None or node.proc.returncode is None else 0 for node in nodes]
        asyncio.run(database.drop())
        asyncio.run(_drop_stream(bus_prefix.replace(".", "_").replace("-", "_").upper()))
    assert codes == [0, 0], f"a node exited with {codes} on SIGTERM"


async def _drop_stream(name: str) -> None:
    import nats
    import nats.js.errors

    nc = await nats.connect(NATS_URL)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


class EventWatcher:
    """A websocket on a node's event stream, read in a thread: the events it got."""

    def __init__(self, node: Any, seeded: Any) -> None:
        self._url = f"ws://{harness.LOOPBACK}:{node.http_port}/api/v1/tenants/{seeded.tenant_id}/events"
        self._token = seeded.token
        self.events: list[dict[str, Any]] = []
        self.error = ""
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._ready.wait(15), self.error

    def _read(self) -> None:
        from websockets.sync.client import connect

        try:
            with connect(self._url, additional_headers={"Authorization": f"Bearer {self._token}"}) as ws:
                self._ready.set()
                while not self._stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        self.events.append(json.loads(ws.recv(timeout=0.2)))
        except Exception as exc:  # noqa: BLE001 - kept for the report
            self.error = repr(exc)
            self._ready.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _register(cluster: Cluster, phone: Phone) -> None:
    rows = [
        [
            *harness.sipp_row(phone.number, harness.password_for(phone.number), cluster.domain),
            phone.contact_host,
        ]
    ]
    reg = harness.run_sipp(
        "edge_register.xml",
        cluster.target,
        workdir=cluster.workdir,
        rows=rows,
        rate=10,
        timeout=15,
        auth_uri=f"sip:{cluster.domain}",
        local_port=phone.port,
        name=f"register_{phone.number}",
    )
    assert (reg.returncode, reg.successful, reg.failed) == (0, 1, 0), reg.describe() + cluster.logs()


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return bool(predicate())


def _start_again(cluster: Cluster, index: int) -> None:
    """Start a killed node again and wait until the edge probes it again (OPTIONS every second): from then on
    the edge sends it calls again."""
    node = cluster.nodes[index]
    node.start(timeout=300)
    probes = _options(node)
    assert _wait_for(lambda: _options(node) >= probes + 3, 30), cluster.logs()


@pytest.fixture(autouse=True)
def _both_nodes_up(request: pytest.FixtureRequest) -> None:
    """A test that kills a node starts it again at its end; one that failed before that left it dead. Start it
    here, so that the tests after a failed one still run on two nodes (else they fail for its sake)."""
    if "cluster" not in request.fixturenames:
        return
    cluster: Cluster = request.getfixturevalue("cluster")
    for index, node in enumerate(cluster.nodes):
        if node.proc is None or node.proc.poll() is not None:
            _start_again(cluster, index)


@pytest.fixture(scope="module")
def phones(cluster: Cluster) -> tuple[Phone, Phone]:
    """Phone A registered through node 1 and phone B through node 2."""
    on: dict[int, Phone] = {}
    for number in NUMBERS:
        phone = Phone(number, harness.free_sip_port())
        _register(cluster, phone)
        # the node that took it lists it as its own; the other learns it from the change feed
        assert _wait_for(lambda n=number: all(n in cluster.registrations(i) for i in (0, 1)), 15), (
            cluster.logs()
        )
        views = [cluster.registrations(i)[number] for i in (0, 1)]
        assert sorted(v["remote"] for v in views) == [False, True], views
        node = 0 if not views[0]["remote"] else 1
        on.setdefault(node, phone)
        if len(on) == 2:
            return on[0], on[1]
    pytest.fail(f"all {len(NUMBERS)} registrations went to one node: the edge does not spread them")


def test_a_registration_through_one_node_is_visible_on_the_other(
    cluster: Cluster, phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    for phone, home in ((a, 0), (b, 1)):
        own, other = cluster.registrations(home)[phone.number], cluster.registrations(1 - home)[phone.number]
        assert (own["remote"], other["remote"]) == (False, True)
        # the other node keeps what routes a call to the phone: the edge's Path with the phone's address
        assert other["path"] == own["path"] and other["path"], other
        assert f"received=sip:{harness.LOOPBACK}:{phone.port}" in other["path"][0], other["path"]
        assert other["contact"] == own["contact"] == f"sip:{phone.number}@{phone.contact_host}"
        assert abs(other["expires_in"] - own["expires_in"]) <= 2


def _invites(node: Any) -> float:
    """INVITE requests a node has received (its Prometheus counter)."""
    with urllib.request.urlopen(f"{node.http_url}/metrics", timeout=10) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("zvonok_sip_messages_in_total{")
        and 'method="INVITE"' in line
        and 'kind="request"' in line
    )


def _options(node: Any) -> float:
    """OPTIONS requests a node has received (the edge's probes)."""
    with urllib.request.urlopen(f"{node.http_url}/metrics", timeout=10) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("zvonok_sip_messages_in_total{") and 'method="OPTIONS"' in line
               and 'kind="request"' in line)


# g711a.pcap has 30 ms packets: the 3 s a call holds are ≈ 100 of them, less what the set-up's last steps and a
# loaded machine take from the start (99 arrived once at load average 4): half of them is "the media flows"
MEDIA_SEEN = 50


def _call(cluster: Cluster, caller: Phone, callee: Phone, dialed: str | None = None, hold_ms: int = 3000) -> int:
    """``caller`` calls ``callee`` (or ``dialed``, which rings ``callee``'s phone) through the edge and plays
    audio for ``hold_ms``; the RTP packets that reach the callee's media socket."""
    dialed = dialed or callee.number
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media:
        media.bind((harness.LOOPBACK, 0))
        media.settimeout(0.2)
        rtp_port = media.getsockname()[1]
        tag = f"{caller.number}_{callee.number}"
        answering = calls.SippProcess(
            "cluster_callee.xml",
            None,
            workdir=cluster.workdir,
            name=f"callee_{tag}",
            local_port=callee.port,
            timeout=60,
            keys={
                "contact_host": callee.contact_host,
                "rtp_host": harness.LOOPBACK,
                "rtp_port": str(rtp_port),
            },
            extra=["-s", callee.number],
        ).start()
        received = 0
        try:
            caller_sipp = calls.SippProcess(
                "cluster_caller.xml",
                cluster.target,
                workdir=cluster.workdir,
                name=f"caller_{tag}",
                rows=[
                    calls.caller_row(
                        caller.number, harness.password_for(caller.number), cluster.domain, dialed
                    )
                ],
                rate=1,
                timeout=40,
                auth_uri=f"sip:{dialed}@{cluster.domain}",
                extra=["-d", str(hold_ms)],
            ).start()
            deadline = time.monotonic() + 40
            while (
                caller_sipp.proc is not None
                and caller_sipp.proc.poll() is None
                and time.monotonic() < deadline
            ):
                try:
                    data = media.recv(2048)
                except TimeoutError:
                    continue
                if len(data) >= 12 and data[0] >> 6 == 2:  # RTP version 2
                    received += 1
            result = caller_sipp.stop()
            answering.wait_for("SuccessfulCall(C)", 1, timeout=15)
            callee_result = answering.stop()
        finally:
            answering.kill()
        detail = f"{result.describe()}\n{cluster.logs()}"
        assert (result.successful, result.failed) == (1, 0), detail
        assert (callee_result.successful, callee_result.failed) == (1, 0), callee_result.describe() + detail
        return received


def test_phones_registered_through_different_nodes_call_each_other_with_media_seen_on_both(
    cluster: Cluster, phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    for caller, callee, home in ((a, b, 0), (b, a, 1)):
        before = [_invites(node) for node in cluster.nodes]
        watcher = EventWatcher(cluster.nodes[1 - home], cluster.seeded)  # a console on the other node
        try:
            received = _call(cluster, caller, callee)
            assert _wait_for(lambda w=watcher: any(e["type"] == "CallEnded" for e in w.events), 10), (
                watcher.events,
                watcher.error,
                cluster.logs(),
            )
        finally:
            watcher.close()
        # the other node's websocket saw the call, from start to end, through NATS
        types = [e["type"] for e in watcher.events if e.get("call_id")]
        assert types[0] == "CallStarted" and types[-1] == "CallEnded", types
        after = [_invites(node) for node in cluster.nodes]
        # the call was taken by the caller's node: the callee's binding there is the one the other node
        # announced, and the INVITE to the phone went along its Path through the edge
        assert after[1 - home] == before[1 - home] and after[home] > before[home], (before, after)
        # the caller plays for 3 s before it hangs up (50 packets a second): the node relays them
        assert received >= MEDIA_SEEN, (caller.number, callee.number, received)


def _callcenter(cluster: Cluster, node: int, path: str, body: Any = None, method: str | None = None) -> Any:
    url = f"{cluster.nodes[node].http_url}/api/v1/tenants/{cluster.seeded.tenant_id}/callcenter{path}"
    return harness.http_json(url, cluster.seeded.token, method=method or ("POST" if body is not None else "GET"),
                             body=body)


@pytest.fixture(scope="module")
def agent_queue(cluster: Cluster, phones: tuple[Phone, Phone]) -> tuple[int, int]:
    """Phone A's employee, a member of queue 7550 (wrap-up 0): their ids."""
    a, _b = phones
    ids = harness.seed_pstn(cluster.workdir.parent / "node1", cluster.seeded.tenant_id,
                            {"employees": [{"name": f"Agent {a.number}", "extension": a.number}]},
                            database_url=cluster.nodes[0].database_url)
    agent = int(ids["employees"][f"Agent {a.number}"])
    queue = _callcenter(cluster, 0, "/queues", {"name": "Cluster queue", "number": "7550", "wrap_up": 0})
    _callcenter(cluster, 0, f"/queues/{queue['id']}/members", {"employee_ids": [agent]}, method="PUT")
    return agent, int(queue["id"])


def _agent_state(cluster: Cluster, node: int, agent: int) -> dict[str, Any]:
    try:
        return dict(_callcenter(cluster, node, f"/agents/{agent}"))
    except urllib.error.HTTPError:  # not known there yet
        return {}


def test_an_agent_made_available_through_node_1_is_offered_a_queue_call_arriving_on_node_2(
    cluster: Cluster, phones: tuple[Phone, Phone], agent_queue: tuple[int, int]
) -> None:
    """Phone A (registered through node 1) is an agent, logged in through node 1's API; phone B (its calls
    go to node 2) dials the queue: node 2 knows the agent (agent_presence, through the change feed), claims
    it and rings A along its Path; A answers and hears B."""
    a, b = phones
    agent, queue_id = agent_queue
    assert _callcenter(cluster, 0, f"/agents/{agent}/login", {"queue_ids": [queue_id]})["status"] == "available"

    def state(node: int) -> dict[str, Any]:
        return _agent_state(cluster, node, agent)

    assert _wait_for(lambda: state(1).get("status") == "available", 15), (state(1), cluster.logs())
    before = [_invites(node) for node in cluster.nodes]
    received = _call(cluster, b, a, dialed="7550")
    after = [_invites(node) for node in cluster.nodes]
    assert after[1] > before[1] and after[0] == before[0], (before, after)  # the queue call was node 2's
    assert received >= 50, received  # B's audio reached the agent's phone
    assert _wait_for(lambda: state(1).get("calls") == 1 and state(1).get("status") == "available", 15), state(1)
    # node 1 offered nothing (its INVITE counter, above), but counts the agent's call too: the strategies'
    # memory (fewest calls) is the cluster's
    assert _wait_for(lambda: state(0).get("calls") == 1, 15), state(0)
    # logged out through node 2: node 1 sees it too
    _callcenter(cluster, 1, f"/agents/{agent}/logout", {})
    assert _wait_for(lambda: state(0).get("status") == "offline", 15), (state(0), cluster.logs())


def test_an_agent_on_an_ordinary_call_through_node_1_is_busy_on_node_2(
    cluster: Cluster, phones: tuple[Phone, Phone], agent_queue: tuple[int, int]
) -> None:
    """Phone A's agent, logged in, calls phone B (an extension call, taken by node 1): node 2, which would
    offer A its queue calls, shows the agent busy on another call (node 1's ``call_holds`` row for the agent,
    read by node 2 every 5 s) while the call lasts, and available again after it. Logged in through node 2
    during such a call, the agent is busy on both nodes from then on (node 1 marks it when it hears of the
    login)."""
    a, b = phones
    agent, queue_id = agent_queue
    assert _callcenter(cluster, 0, f"/agents/{agent}/login", {"queue_ids": [queue_id]})["status"] == "available"
    assert _wait_for(lambda: _agent_state(cluster, 1, agent).get("status") == "available", 15), cluster.logs()
    assert _agent_state(cluster, 1, agent)["busy_elsewhere"] is False
    seen: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def place() -> None:
        try:
            _call(cluster, a, b, hold_ms=14_000)
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            errors.append(exc)

    caller = threading.Thread(target=place, daemon=True)
    caller.start()
    try:
        assert _wait_for(lambda: bool(seen.append(_agent_state(cluster, 1, agent)) or seen[-1].get("busy_elsewhere")),
                         13), (seen[-3:], cluster.logs())
        assert seen[-1]["status"] == "available"  # logged in and free of queue calls, but on a call
    finally:
        caller.join(60)
    assert not errors, errors
    assert _wait_for(lambda: _agent_state(cluster, 1, agent).get("busy_elsewhere") is False, 15), (
        _agent_state(cluster, 1, agent), cluster.logs())
    _callcenter(cluster, 0, f"/agents/{agent}/logout", {})

    # the same call with the agent logged out, logged in through node 2 once the call is answered
    watcher = EventWatcher(cluster.nodes[0], cluster.seeded)
    caller = threading.Thread(target=place, daemon=True)
    caller.start()
    try:
        assert _wait_for(lambda: any(e["type"] == "CallAnswered" for e in watcher.events), 13), (
            watcher.events, watcher.error, cluster.logs())
        assert _callcenter(cluster, 1, f"/agents/{agent}/login", {"queue_ids": [queue_id]})["status"] == "available"
        for node in (0, 1):
            assert _wait_for(lambda n=node: _agent_state(cluster, n, agent).get("busy_elsewhere") is True, 10), (
                node, _agent_state(cluster, node, agent), cluster.logs())
    finally:
        caller.join(60)
        watcher.close()
    assert not errors, errors
    for node in (0, 1):
        assert _wait_for(lambda n=node: _agent_state(cluster, n, agent).get("busy_elsewhere") is False, 15), (
            node, _agent_state(cluster, node, agent), cluster.logs())
    _callcenter(cluster, 1, f"/agents/{agent}/logout", {})
    # (the next test logs in through node 1: once node 1 has applied this logout)
    assert _wait_for(lambda: _agent_state(cluster, 0, agent).get("status") == "offline", 15), cluster.logs()


def test_the_wallboard_of_node_1_shows_a_caller_waiting_on_node_2(
    cluster: Cluster, phones: tuple[Phone, Phone], agent_queue: tuple[int, int]
) -> None:
    """The queue's only agent logged in and paused (through node 1): a caller placed through node 2 waits in
    the queue there; node 1's wallboard and live view count it (node 2's ``call_holds`` caller row, read
    every 5 s), and stop counting it when the caller has hung up."""
    agent, queue_id = agent_queue
    assert _callcenter(cluster, 0, f"/agents/{agent}/login", {"queue_ids": [queue_id]})["status"] == "available"
    if not any(r["name"] == "Lunch" for r in _callcenter(cluster, 0, "/reasons")):
        _callcenter(cluster, 0, "/reasons", {"name": "Lunch"})
    assert _callcenter(cluster, 0, f"/agents/{agent}/pause", {"reason": "Lunch"})["status"] == "not_ready"
    assert _wait_for(lambda: _agent_state(cluster, 1, agent).get("status") == "not_ready", 15), cluster.logs()

    def waiting(node: int, view: str) -> int:
        queues = _callcenter(cluster, node, f"/{view}")["queues"]
        return int(next(q for q in queues if q["queue_id"] == queue_id)["waiting"])

    caller = NUMBERS[-3]
    sipp = calls.SippProcess(
        "call_uac.xml", f"{harness.LOOPBACK}:{cluster.nodes[1].sip_port}", workdir=cluster.workdir,
        name="queue_waiting", rows=[calls.caller_row(caller, harness.password_for(caller), cluster.domain, "7550")],
        calls=1, rate=1, timeout=60, auth_uri=f"sip:7550@{cluster.domain}", extra=["-d", "14000"]).start()
    try:
        assert _wait_for(lambda: waiting(1, "live") == 1, 15), cluster.logs()  # in node 2's line
        assert _wait_for(lambda: waiting(0, "wallboard") == 1, 13), cluster.logs()
        assert waiting(0, "live") == 1
        result = sipp.wait(timeout=60)
    finally:
        sipp.kill()
    assert (result.successful, result.failed) == (1, 0), result.describe() + cluster.logs()
    assert _wait_for(lambda: waiting(0, "wallboard") == 0 and waiting(1, "live") == 0, 15), cluster.logs()
    _callcenter(cluster, 0, f"/agents/{agent}/logout", {})


def test_the_agent_goes_to_the_caller_who_waited_longest_on_either_node(
    cluster: Cluster, phones: tuple[Phone, Phone], agent_queue: tuple[int, int]
) -> None:
    """The queue's only agent (phone A) paused through node 1; a caller waits on node 2, then one on node 1.
    The agent made available through node 1: node 1 offers it its own caller first, finds node 2's ahead,
    lets the agent go; node 2 rings phone A for its caller, who waited longer."""
    a, _b = phones
    agent, queue_id = agent_queue
    assert _callcenter(cluster, 0, f"/agents/{agent}/login", {"queue_ids": [queue_id]})["status"] == "available"
    if not any(r["name"] == "Lunch" for r in _callcenter(cluster, 0, "/reasons")):
        _callcenter(cluster, 0, "/reasons", {"name": "Lunch"})
    assert _callcenter(cluster, 0, f"/agents/{agent}/pause", {"reason": "Lunch"})["status"] == "not_ready"
    assert _wait_for(lambda: _agent_state(cluster, 1, agent).get("status") == "not_ready", 15), cluster.logs()

    def waiting(node: int) -> int:
        queues = _callcenter(cluster, node, "/live")["queues"]
        return int(next(q for q in queues if q["queue_id"] == queue_id)["waiting"])

    def place(node: int, caller: str, name: str, hold_ms: int) -> Any:
        return calls.SippProcess(
            "call_uac.xml", f"{harness.LOOPBACK}:{cluster.nodes[node].sip_port}", workdir=cluster.workdir,
            name=name, rows=[calls.caller_row(caller, harness.password_for(caller), cluster.domain, "7550")],
            calls=1, rate=1, timeout=90, auth_uri=f"sip:7550@{cluster.domain}", extra=["-d", str(hold_ms)]).start()

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media:
        media.bind((harness.LOOPBACK, 0))
        answering = calls.SippProcess(
            "cluster_callee.xml", None, workdir=cluster.workdir, name="agent_longest", local_port=a.port,
            timeout=90, keys={"contact_host": a.contact_host, "rtp_host": harness.LOOPBACK,
                              "rtp_port": str(media.getsockname()[1])}, extra=["-s", a.number]).start()
        first = place(1, NUMBERS[-3], "longest_node2", 30_000)
        second = None
        try:
            assert _wait_for(lambda: waiting(1) == 1, 15), cluster.logs()
            second = place(0, NUMBERS[-4], "longest_node1", 14_000)
            # both nodes' lines are in the database: each node counts both callers
            assert _wait_for(lambda: waiting(0) == 2 and waiting(1) == 2, 15), cluster.logs()
            _callcenter(cluster, 0, f"/agents/{agent}/unpause", {})
            # node 2 has the agent (its caller joined first); node 1 shows it busy elsewhere
            assert _wait_for(lambda: _agent_state(cluster, 1, agent).get("status") == "on_call", 20), (
                _agent_state(cluster, 0, agent), _agent_state(cluster, 1, agent), cluster.logs())
            state = _agent_state(cluster, 0, agent)
            assert state["status"] == "available" and state["busy_elsewhere"] is True, state
            assert answering.wait_for("SuccessfulCall(C)", 1, timeout=40), answering.stats()
            results = [first.wait(timeout=60), second.wait(timeout=60)]
        finally:
            for sipp in (first, second, answering):
                if sipp is not None:
                    sipp.kill()
    for result in results:
        assert (result.successful, result.failed) == (1, 0), result.describe() + cluster.logs()
    _callcenter(cluster, 0, f"/agents/{agent}/logout", {})


def test_a_trunk_limit_counts_the_calls_of_both_nodes(cluster: Cluster) -> None:
    """The carrier's trunk takes one call at a time (max_calls 1): while a call placed through node 1 is up
    on it, a call placed through node 2 finds no trunk with room (503) though node 2 has no call of its
    own on it; once the first is over, node 2 places its call on the trunk (the hold was released)."""
    callers = NUMBERS[-2:]  # extensions calling out; they need no registration
    log = cluster.workdir / "carrier_tiny.log"
    cluster.workdir.mkdir(parents=True, exist_ok=True)
    tiny = calls.SippProcess("carrier_answer.xml", None, workdir=cluster.workdir, name="carrier_tiny",
                             local_port=cluster.carrier_port, timeout=90, keys={"codec": "8", "codec_name": "PCMA"},
                             extra=["-i", CARRIER_HOST, "-trace_logs", "-log_file", str(log)]).start()

    def carrier_log() -> str:
        return log.read_text(errors="replace") if log.exists() else ""

    def place(node: Any, caller: str, dialed: str, scenario: str, name: str, hold_ms: int) -> Any:
        return calls.SippProcess(
            scenario, f"{harness.LOOPBACK}:{node.sip_port}", workdir=cluster.workdir, name=name,
            rows=[calls.caller_row(caller, harness.password_for(caller), cluster.domain, dialed)],
            calls=1, rate=1, timeout=40, auth_uri=f"sip:{dialed}@{cluster.domain}",
            extra=["-d", str(hold_ms)]).start()

    def trunk_status(node: Any) -> dict[str, Any]:
        base = f"{node.http_url}/api/v1/tenants/{cluster.seeded.tenant_id}/trunks"
        trunk = next(t for t in harness.http_json(base, cluster.seeded.token)["items"] if t["name"] == "Tiny")
        return dict(harness.http_json(f"{base}/{trunk['id']}/status", cluster.seeded.token))

    try:
        first = place(cluster.nodes[0], callers[0], "84731234567", "call_uac.xml", "tiny_first", 8000)
        try:
            assert _wait_for(lambda: "CALLED +74731234567" in carrier_log(), 20), carrier_log() + cluster.logs()
            # node 2's REST trunk status counts node 1's call: the count the limit is checked against
            status = trunk_status(cluster.nodes[1])
            assert (status["active_calls"], status["active_calls_here"], status["max_calls"],
                    status["active_calls_scope"]) == (1, 0, 1, "cluster"), status
            assert list(status["active_calls_by_node"].values()) == [1], status
            second = place(cluster.nodes[1], callers[1], "84731234568", "call_uac_unavailable.xml", "tiny_second", 0)
            result = second.wait(timeout=60)  # one call (-m 1): SIPp exits after it
            assert (result.successful, result.failed) == (1, 0), result.describe() + cluster.logs()
            assert first.wait_for("SuccessfulCall(C)", 1, timeout=30), first.stats()
            first_result = first.wait(timeout=60)
        finally:
            first.kill()
        assert (first_result.successful, first_result.failed) == (1, 0), first_result.describe()
        assert "CALLED +74731234568" not in carrier_log()
        # node 1's call is over and its hold released: node 2's next call goes out on the trunk
        again = place(cluster.nodes[1], callers[1], "84731234569", "call_uac.xml", "tiny_again", 1000)
        try:
            assert _wait_for(lambda: "CALLED +74731234569" in carrier_log(), 20), carrier_log() + cluster.logs()
            again_result = again.wait(timeout=60)
        finally:
            again.kill()
        assert (again_result.successful, again_result.failed) == (1, 0), again_result.describe() + cluster.logs()
    finally:
        tiny.kill()


def _callback_rows(cluster: Cluster, queue_id: int) -> tuple[list[tuple[str, str | None]], list[str]]:
    """The queue's callback requests (state, owner) and the nodes alive (their ``call_holds`` rows)."""
    async def read() -> tuple[list[tuple[str, str | None]], list[str]]:
        db = Database(cluster.nodes[1].database_url)
        try:
            async with db.session() as session:
                rows = await session.execute(select(QueueCallbackRow.state, QueueCallbackRow.owner).where(
                    QueueCallbackRow.queue_id == queue_id))
                nodes = await session.execute(select(CallHold.key).where(CallHold.kind == NODE))
                return list(rows.tuples()), sorted(nodes.scalars())
        finally:
            await db.dispose()

    return asyncio.run(read())


def _snapshot_loads(node: Any) -> float:
    with urllib.request.urlopen(f"{node.http_url}/metrics", timeout=10) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    return sum(float(line.split()[1]) for line in text.splitlines()
               if line.startswith("zvonok_routing_snapshot_loads_total "))


def test_a_killed_nodes_callback_request_is_taken_over_and_called_back_by_the_other(
    cluster: Cluster, phones: tuple[Phone, Phone], agent_queue: tuple[int, int]
) -> None:
    """A customer calls the callback queue's number from the carrier's trunk through node 1, presses the key
    (RFC 4733) and is let go; node 1 keeps the request (its owner in ``queue_callbacks``) and is killed
    (SIGKILL). Once node 2's sweep has found node 1 dead, node 2 takes the request over: with the agent
    (phone A) logged in through node 2, node 2 rings A and, when A answers, calls the customer back through
    the carrier (the carrier's SIPp logs the number called); A hangs up after 3 s. The request is ``done``
    and node 2's. Node 1 is started again (it takes nothing back) for the tests after this one."""
    a, _b = phones
    agent, _ = agent_queue
    did, customer = "74731230551", "74731230552"
    queue = _callcenter(cluster, 0, "/queues", {"name": "Cluster callbacks", "number": "7551", "callback_key": "1",
                                                "wrap_up": 0, "ring_timeout": 20})
    _callcenter(cluster, 0, f"/queues/{queue['id']}/members", {"employee_ids": [agent]}, method="PUT")
    harness.seed_pstn(cluster.workdir.parent / "node1", cluster.seeded.tenant_id, {"numbers": [
        {"number": f"+{did}", "kind": "extension", "destination": {"number": a.number}}]},
        database_url=cluster.nodes[0].database_url)
    base = f"{cluster.nodes[0].http_url}/api/v1/tenants/{cluster.seeded.tenant_id}/numbers"
    number = next(n for n in harness.http_json(f"{base}?limit=100", cluster.seeded.token)["items"]
                  if n["number"] == f"+{did}")
    loads = _snapshot_loads(cluster.nodes[0])
    harness.http_json(f"{base}/{number['id']}", cluster.seeded.token, method="PATCH",
                      body={"destination_kind": "queue", "destination": {"number": "7551"}})
    assert _wait_for(lambda: _snapshot_loads(cluster.nodes[0]) > loads, 30), cluster.logs()

    cluster.workdir.mkdir(parents=True, exist_ok=True)
    pcap = write_dtmf_pcap(cluster.workdir / "takeover_key.pcap", "1", start=1.5)
    request_xml = cluster.workdir / "takeover_request.xml"
    request_xml.write_text(ACCESS_CALL.format(keys="1", pcap=pcap, then="waits for our BYE", ending=WAIT_FOR_OUR_BYE))
    request = harness.run_sipp(request_xml, f"{harness.LOOPBACK}:{cluster.nodes[0].sip_port}", workdir=cluster.workdir,
                               rows=[[did, customer]], rate=1, timeout=40, name="takeover_request",
                               extra=["-i", CARRIER_HOST, "-mi", CARRIER_HOST])
    assert (request.successful, request.failed) == (1, 0), request.describe() + cluster.logs()
    assert _wait_for(lambda: [s for s, _ in _callback_rows(cluster, queue["id"])[0]] == ["waiting"], 15), (
        cluster.logs())
    [(_, first_owner)], alive = _callback_rows(cluster, queue["id"])
    assert first_owner in alive and len(alive) == 2, (first_owner, alive)

    cluster.nodes[0].kill()
    # the agent's phone answers, then hangs up after 3 s (the BYE along the INVITE's Record-Route: the edge)
    callee = (harness.SCENARIOS / "cluster_callee.xml").read_text()
    agent_xml = cluster.workdir / "takeover_agent.xml"
    agent_xml.write_text(
        callee.replace('<recv request="INVITE" crlf="true">\n    <action>',
                       '<recv request="INVITE" crlf="true" rrs="true">\n    <action>\n'
                       '      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="remote"/>\n'
                       '      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="local"/>')
        .split('  <recv request="BYE"/>')[0]
        + """  <pause milliseconds="3000"/>
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      Max-Forwards: 70
      From: [$local];tag=[pid]SIPpTag01[call_number]
      To: [$remote]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
  <Reference variables="1"/>
</scenario>
""")
    carrier_log = cluster.workdir / "takeover_carrier.log"
    peers = []
    try:
        peers.append(calls.SippProcess(
            agent_xml, None, workdir=cluster.workdir, name="takeover_agent", local_port=a.port, timeout=150,
            keys={"contact_host": a.contact_host, "rtp_host": harness.LOOPBACK,
                  "rtp_port": str(calls.free_media_port())}, extra=["-s", a.number]).start())
        peers.append(calls.SippProcess(
            "carrier_answer.xml", None, workdir=cluster.workdir, name="takeover_carrier",
            local_port=cluster.carrier_port, timeout=150, keys={"codec": "8", "codec_name": "PCMA"},
            extra=["-i", CARRIER_HOST, "-trace_logs", "-log_file", str(carrier_log)]).start())
        assert _callcenter(cluster, 1, f"/agents/{agent}/login", {"queue_ids": [queue["id"]]})["status"] == "available"
        # node 1's row is swept 15 s after its last refresh by node 2's sweep (every 15 s): then the take-over
        assert peers[1].wait_for("SuccessfulCall(C)", 1, timeout=120), (
            peers[0].stats(), peers[1].stats(), _callback_rows(cluster, queue["id"]), cluster.logs())
        results = [peer.wait(timeout=30) for peer in peers]
    finally:
        for peer in peers:
            peer.kill()
    for result in results:
        assert (result.successful, result.failed) == (1, 0), result.describe() + cluster.logs()
    assert f"CALLED +{customer} " in carrier_log.read_text(errors="replace")  # the customer's number, called back
    assert _wait_for(lambda: [s for s, _ in _callback_rows(cluster, queue["id"])[0]] == ["done"], 15), (
        _callback_rows(cluster, queue["id"]), cluster.logs())
    [(_, owner)], alive = _callback_rows(cluster, queue["id"])
    assert owner != first_owner and alive == [owner], (first_owner, owner, alive)  # node 2's, the one alive
    _callcenter(cluster, 1, f"/agents/{agent}/logout", {})
    _start_again(cluster, 0)
    assert len(_callback_rows(cluster, queue["id"])[1]) == 2  # its row written before it is healthy
    assert _callback_rows(cluster, queue["id"])[0] == [("done", owner)]  # the restarted node took nothing back


def test_with_a_node_killed_calls_go_through_the_other_and_its_registrations_stay(
    cluster: Cluster, phones: tuple[Phone, Phone]
) -> None:
    """kill -9 of node 1 during a call: node 2 closes that call as interrupted (the node's heartbeat
    stopped); phone A's new calls (hashed to node 1) fail over to node 2, and A, registered through node 1,
    is still called through node 2 (its binding is in the database and node 2's cache)."""
    a, b = phones
    answering = calls.SippProcess(
        "cluster_callee.xml",
        None,
        workdir=cluster.workdir,
        name="callee_killed",
        local_port=b.port,
        timeout=60,
        keys={
            "contact_host": b.contact_host,
            "rtp_host": harness.LOOPBACK,
            "rtp_port": str(calls.free_media_port()),
        },
        extra=["-s", b.number],
    ).start()
    caller_sipp = calls.SippProcess(
        "cluster_caller.xml",
        cluster.target,
        workdir=cluster.workdir,
        name="caller_killed",
        rows=[calls.caller_row(a.number, harness.password_for(a.number), cluster.domain, b.number)],
        rate=1,
        timeout=60,
        auth_uri=f"sip:{b.number}@{cluster.domain}",
        extra=["-d", "60000"],
    ).start()
    try:
        time.sleep(4)  # answered and talking on node 1
        cluster.nodes[0].kill()
    finally:
        caller_sipp.kill()
        answering.kill()

    def interrupted() -> list[dict[str, Any]]:
        url = f"{cluster.nodes[1].http_url}/api/v1/tenants/{cluster.seeded.tenant_id}/cdrs?limit=50"
        rows = harness.http_json(url, cluster.seeded.token)["items"]
        return [r for r in rows if r["disposition"] == "interrupted" and r["caller_number"] == a.number]

    # closed by node 2 once node 1's heartbeat is older than 15 s (its sweep runs every 15 s)
    assert _wait_for(lambda: len(interrupted()) == 1, 60), cluster.logs()
    for caller, callee in ((a, b), (b, a)):
        before = _invites(cluster.nodes[1])
        received = _call(cluster, caller, callee)
        assert _invites(cluster.nodes[1]) > before
        assert received >= MEDIA_SEEN, (caller.number, callee.number, received)

