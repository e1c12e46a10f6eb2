"""A queue callback with real peers: the customer keeps its place in line without a call, and is called back.

A carrier (SIPp on 127.0.0.2) delivers the customer's call to a number whose destination is the queue; the
customer presses the queue's callback key (RFC 4733, from a pcap), hears "we will call you back" and gets
our BYE. A second customer joins the queue after that and waits on the line. Then the agent logs in — a
registered SIPp phone that answers, echoes the RTP it gets (``-rtp_echo``) and hangs up 5 s later:

- the callback is served first although the live caller has waited on the line: the agent's phone rings
  before anyone calls the customer, and once it answers the customer's number goes out through the
  carrier trunk — here baresip on 127.0.0.2, answering automatically, sending a 1 kHz sine and recording
  what it hears. It hears its own 1 kHz back: its audio went through our bridge to the agent and the
  agent's echo came back through it, so RTP flowed both ways;
- the queue log: ``CALLBACK`` for the request, ``CONNECT`` (``callback``: true) when the customer answered,
  ``COMPLETEAGENT``, then the live caller's ``CONNECT``; no ``ABANDON``; the queue's KPIs count two offered
  and answered, one callback, and the service level and ASA of those two holds;
- the callback's CDR: the agent's extension calling the customer's number through the trunk, answered,
  with the queue's number in ``queue``.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from zvonok.callcenter.models import QueueLogRow
from zvonok.storage.db import Database

from .baresip import Baresip
from .dtmf_pcap import write_dtmf_pcap
from .test_calls_sipp import Pbx, assert_all_ok, calls
from .test_calls_softphone import dominant_frequency
from .test_trunks_sipp import ACCESS_CALL, WAIT_FOR_OUR_BYE

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]

AGENT = "7661"
QUEUE = "766"
DID = "+74957654660"
CUSTOMER = "+74957654661"  # asks to be called back (unique among the integration modules)
LIVE = "+74957654662"  # joins after the request and waits on the line
CARRIER = "127.0.0.2"
TALK_MS = 5000


@dataclass
class World:
    pbx: Pbx
    carrier: Baresip
    agent_id: int
    database_url: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if harness.shutil.which("sipp") is None or harness.shutil.which("baresip") is None:
        pytest.fail("SIPp and baresip are needed: `make test` installs them")
    tmp = tmp_path_factory.mktemp("queue_callback")
    carrier = Baresip(
        tmp / "carrier",
        f"<sip:{CUSTOMER}@{CARRIER}>;regint=0;answermode=auto",
        address=CARRIER,
        frequency=1000,
        record=True,
    )
    carrier.start()
    try:
        yield from _served(tmp, carrier)
    finally:
        carrier.stop()


def _served(tmp: Path, carrier: Baresip) -> Iterator[World]:
    data_dir = tmp / "data"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(
        data_dir, domain=f"callback-{secrets.token_hex(3)}.test", numbers=[AGENT], database_url=database_url
    )
    ids = harness.seed_pstn(
        data_dir,
        seeded.tenant_id,
        {
            "offices": [{"name": "Moscow", "area_code": "495", "timezone": "Europe/Moscow"}],
            "employees": [{"name": "Agent", "office": "Moscow", "extension": AGENT}],
            "trunks": [{"name": "Carrier", "host": CARRIER, "port": carrier.sip_port, "transport": "udp"}],
            "routes": [{"prefix": "7495", "trunk": "Carrier"}],
            "policies": [{"level": "tenant", "service_class": "long_distance"}],
            # a callback is rated like any outside call of the company (1.00 a started minute to Moscow)
            "tariffs": [{"name": "Retail", "plan": True, "rates": [
                {"prefix": "7495", "destination": "Moscow", "price": "1.00", "increment": "60/60"}]}],
            "numbers": [
                {"number": DID, "office": "Moscow", "kind": "extension", "destination": {"number": AGENT}}
            ],
        },
        database_url=database_url,
    )
    server = harness.ZvonokServer(
        data_dir=data_dir, database_url=database_url, env={"ZVONOK_CALL_NO_ANSWER_TIMEOUT": "30"}
    )
    server.start()
    try:
        pbx = Pbx(server=server, seeded=seeded, workdir=tmp / "sipp")
        pbx.workdir.mkdir(parents=True, exist_ok=True)
        yield World(pbx, carrier, ids["employees"]["Agent"], harness.database_url_for(data_dir, database_url))
    finally:
        assert server.stop() == 0, server.log_tail()


def api(pbx: Pbx, path: str, body: Any = None, method: str | None = None) -> Any:
    url = f"{pbx.server.http_url}/api/v1/tenants/{pbx.seeded.tenant_id}{path}"
    return harness.http_json(
        url, pbx.seeded.token, method=method or ("POST" if body is not None else "GET"), body=body
    )


def snapshot_loads(pbx: Pbx) -> float:
    with urllib.request.urlopen(f"{pbx.server.http_url}/metrics", timeout=10) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith("zvonok_routing_snapshot_loads_total "):
            return float(line.split()[1])
    return 0.0


def route_to_queue(pbx: Pbx) -> None:
    loads = snapshot_loads(pbx)
    number_id = next(n["id"] for n in api(pbx, "/numbers?limit=100")["items"] if n["number"] == DID)
    api(
        pbx,
        f"/numbers/{number_id}",
        {"destination_kind": "queue", "destination": {"number": QUEUE}},
        method="PATCH",
    )
    deadline = time.monotonic() + 30
    while snapshot_loads(pbx) <= loads:
        assert time.monotonic() < deadline, "the routing snapshot was not reloaded"
        time.sleep(0.05)


def queue_log(world: World, queue_id: int, until: dict[str, int], timeout: float = 30.0) -> list[Any]:
    async def rows() -> list[Any]:
        db = Database(world.database_url)
        try:
            async with db.session() as session:
                found = await session.execute(
                    select(QueueLogRow).where(QueueLogRow.queue_id == queue_id).order_by(QueueLogRow.id)
                )
                return list(found.scalars())
        finally:
            await db.dispose()

    deadline = time.monotonic() + timeout
    while True:
        found = asyncio.run(rows())
        if (
            all(sum(1 for r in found if r.event == e) >= n for e, n in until.items())
            or time.monotonic() > deadline
        ):
            return found
        time.sleep(0.3)


def customer_scenario(pbx: Pbx, name: str, keys: str) -> Path:
    """A carrier's caller (SIPp) who presses ``keys`` and then waits for our BYE."""
    pcap = write_dtmf_pcap(pbx.workdir / f"{name}.pcap", keys, start=1.5)
    path = pbx.workdir / f"{name}.xml"
    path.write_text(
        ACCESS_CALL.format(
            keys=keys or "nothing", pcap=pcap, then="waits for our BYE", ending=WAIT_FOR_OUR_BYE
        )
    )
    return path


def agent_phone(pbx: Pbx) -> Any:
    """The agent's phone: registered, answers, echoes RTP, hangs up after TALK_MS (two calls)."""
    scenario = pbx.workdir / "callback_agent.xml"
    scenario.write_text(
        (harness.SCENARIOS / "call_uas_bye.xml")
        .read_text()
        .replace('<pause milliseconds="1000"/>', f'<pause milliseconds="{TALK_MS}"/>')
    )
    port = harness.free_sip_port()
    reg = calls.register_port(
        pbx.target, workdir=pbx.workdir, number=AGENT, domain=pbx.domain, port=port, name=f"register_{AGENT}"
    )
    assert (reg.returncode, reg.successful, reg.failed) == (0, 1, 0), reg.describe()
    phone = calls.SippProcess(
        scenario,
        None,
        workdir=pbx.workdir,
        name=f"agent_{AGENT}",
        local_port=port,
        timeout=120,
        rtp_echo=True,
        keys={"codec": calls.CODECS["PCMA"], "codec_name": "PCMA"},
        extra=["-s", AGENT],
    )
    return phone.start()


def cdr_for(pbx: Pbx, callee: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        items = [c for c in api(pbx, "/cdrs?limit=100")["items"] if c["callee_number"] == callee]
        if items or time.monotonic() > deadline:
            assert items, f"no CDR of a call to {callee}"
            return items[0]  # type: ignore[no-any-return]
        time.sleep(0.2)


def test_a_callback_keeps_its_place_rings_the_agent_then_calls_the_customer(world: World) -> None:
    pbx = world.pbx
    queue = api(
        pbx,
        "/callcenter/queues",
        {
            "name": "Callbacks",
            "number": QUEUE,
            "callback_key": "1",
            "wrap_up": 0,
            "ring_timeout": 20,
            "callback_retry": 30,
        },
    )
    assert (queue["callback_key"], queue["callback_attempts"], queue["callback_retry"]) == ("1", 3, 30)
    api(pbx, f"/callcenter/queues/{queue['id']}/members", {"employee_ids": [world.agent_id]}, method="PUT")
    route_to_queue(pbx)
    sipp_extra = ["-i", CARRIER, "-mi", CARRIER]
    # the customer presses 1, hears the prompt and gets our BYE: its call is over, its place is kept
    first = harness.run_sipp(
        customer_scenario(pbx, "callback_request", "1"),
        pbx.target,
        workdir=pbx.workdir,
        rows=[[DID.lstrip("+"), CUSTOMER.lstrip("+")]],
        rate=1,
        timeout=40,
        extra=sipp_extra,
        name="callback_request",
    )
    assert_all_ok(first, 1)
    rows = queue_log(world, queue["id"], {"CALLBACK": 1})
    assert [r.event for r in rows] == ["ENTERQUEUE", "CALLBACK"]
    request = rows[0].call_id
    (live,) = [q for q in api(pbx, "/callcenter/live")["queues"] if q["queue_id"] == queue["id"]]
    assert (live["waiting"], live["callbacks"]) == (0, 1)
    # a second customer joins after the request and stays on the line
    results: list[Any] = []
    waiting = threading.Thread(
        target=lambda: results.append(
            harness.run_sipp(
                customer_scenario(pbx, "callback_live", ""),
                pbx.target,
                workdir=pbx.workdir,
                rows=[[DID.lstrip("+"), LIVE.lstrip("+")]],
                rate=1,
                timeout=90,
                extra=sipp_extra,
                name="callback_live",
            )
        )
    )
    waiting.start()
    agent = None
    try:
        queue_log(world, queue["id"], {"ENTERQUEUE": 2})
        agent = agent_phone(pbx)
        login = api(pbx, f"/callcenter/agents/{world.agent_id}/login", {"queue_ids": [queue["id"]]})
        assert login["status"] == "ringing"  # offered at once: the callback, its place kept
        world.carrier.wait_event({"CALL_ESTABLISHED"}, timeout=30)  # the customer is called back first
        world.carrier.wait_event({"CALL_CLOSED"}, timeout=30)  # the agent hung up: our BYE to the carrier
        waiting.join(timeout=90)
        assert agent.wait_for("SuccessfulCall(C)", 2, timeout=30), agent.stats()
        agent_result = agent.stop()
    finally:
        if agent is not None:
            agent.kill()
        waiting.join(timeout=5)
    assert results, "the live caller's SIPp did not finish"
    assert_all_ok(results[0], 1)  # connected to the agent after the callback, then our BYE
    assert_all_ok(agent_result, 2)
    rows = queue_log(world, queue["id"], {"CONNECT": 2, "COMPLETEAGENT": 2})
    connects = [r for r in rows if r.event == "CONNECT"]
    assert connects[0].call_id == request and connects[0].data["callback"] is True, [r.data for r in connects]
    assert connects[0].agent_id == world.agent_id and connects[0].data["attempt"] == 1
    assert connects[1].call_id != request and not connects[1].data.get("callback")
    events = [r.event for r in rows if r.call_id == request]
    assert events == ["ENTERQUEUE", "CALLBACK", "CONNECT", "COMPLETEAGENT"], events
    assert not [r for r in rows if r.event in ("ABANDON", "CALLBACKFAILED")]
    # the KPIs: two offered and answered, one of them a callback; in time: the holds within the 20 s default
    now = time.time()
    (kpis,) = api(pbx, f"/callcenter/reports/queues?from={int(now - 3600)}&to={int(now + 3600)}&group=day"
                       f"&queue_id={queue['id']}")
    counts = ("offered", "answered", "abandoned", "overflowed", "callbacks")
    assert tuple(kpis[k] for k in counts) == (2, 2, 0, 0, 1), kpis
    in_time = sum(1 for r in connects if r.data["hold"] <= queue["service_level"])
    assert (kpis["answered_in_time"], kpis["service_level"]) == (in_time, pytest.approx(in_time / 2)), kpis
    assert kpis["asa"] == pytest.approx(sum(r.data["hold"] for r in connects) / 2, abs=1e-3), kpis
    # both ways through the bridge: the carrier hears its own 1 kHz, echoed by the agent's phone
    heard = world.carrier.received_audio()[-1]
    assert abs(dominant_frequency(heard) - 1000) < 20
    cdr = cdr_for(pbx, CUSTOMER)
    assert (cdr["caller_number"], cdr["disposition"], cdr["queue"]) == (AGENT, "answered", QUEUE), cdr
    assert (
        cdr["direction"] == "outbound" and cdr["caller_employee_id"] == world.agent_id and cdr["billsec"] >= 2
    ), cdr
    assert Decimal(str(cdr["cost"])) == Decimal("1.00") * math.ceil(cdr["billsec"] / 60), cdr
