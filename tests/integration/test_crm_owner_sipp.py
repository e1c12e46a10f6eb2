"""Routing by owner through a running Zvonok: a carrier (SIPp at 127.0.0.2) calls the company's number
(DID → the desk's extension) from a known client's mobile; the client's owner rings first.

The owner answers: the call is theirs (CDR callee: the owner's extension), the desk never rings. The owner
does not answer in the tenant's ring time (3 s): their phone gets our CANCEL (487, ACK) and the desk takes
the call. A caller that is no client goes straight to the desk.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .test_calls_sipp import Pbx, assert_all_ok, finish_callee, start_callee

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]

OWNER, DESK = "7601", "7602"
DID = "+74957656001"
CLIENT = "+79165550101"
STRANGER = "+79165550199"
RING_SECONDS = 3


@dataclass
class World:
    pbx: Pbx
    base: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if harness.shutil.which("sipp") is None:
        pytest.fail("SIPp (Debian sip-tester) is not installed: `make test` installs it")
    tmp = tmp_path_factory.mktemp("crm_owner")
    data_dir = tmp / "data"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(
        data_dir,
        domain=f"crm-owner-{secrets.token_hex(3)}.test",
        numbers=[OWNER, DESK],
        database_url=database_url,
    )
    ids = harness.seed_pstn(
        data_dir,
        seeded.tenant_id,
        {
            "offices": [{"name": "Moscow", "area_code": "495", "timezone": "Europe/Moscow"}],
            "employees": [
                {"name": "Olga Owner", "office": "Moscow", "extension": OWNER},
                {"name": "Desk", "office": "Moscow", "extension": DESK},
            ],
            "trunks": [{"name": "Main", "host": "127.0.0.2", "port": harness.free_sip_port()}],
            "numbers": [
                {"number": DID, "office": "Moscow", "kind": "extension", "destination": {"number": DESK}}
            ],
        },
        database_url=database_url,
    )
    server = harness.ZvonokServer(
        data_dir=data_dir, database_url=database_url, env={"ZVONOK_CALL_NO_ANSWER_TIMEOUT": "20"}
    )
    server.start()
    world = World(
        Pbx(server=server, seeded=seeded, workdir=tmp / "sipp"),
        f"{server.http_url}/api/v1/tenants/{seeded.tenant_id}",
    )
    try:
        token = seeded.token
        harness.http_json(
            f"{world.base}/crm/clients",
            token,
            method="POST",
            body={
                "name": "Client of Olga",
                "owner_id": ids["employees"]["Olga Owner"],
                "phones": [{"number": CLIENT}],
            },
        )
        out = harness.http_json(
            f"{world.base}/crm/settings",
            token,
            method="PUT",
            body={"callback_minutes": 60, "escalate_hours": 24, "owner_ring_seconds": RING_SECONDS},
        )
        assert out["owner_ring_seconds"] == RING_SECONDS, out
        yield world
    finally:
        code = server.stop()
        assert code == 0, f"zvonok serve exited with {code} on SIGTERM:\n{server.log_tail()}"


def call_in(world: World, caller: str, name: str) -> Any:
    return harness.run_sipp(
        "carrier_call_in.xml",
        world.pbx.target,
        workdir=world.pbx.workdir,
        rows=[[DID.lstrip("+"), caller.lstrip("+")]],
        rate=1,
        timeout=40,
        extra=["-i", "127.0.0.2", "-mi", "127.0.0.2", "-d", "500"],
        name=name,
    )


def cdrs_of(world: World, caller: str) -> list[dict[str, Any]]:
    """The caller's CDRs, newest first."""
    items = harness.http_json(f"{world.base}/cdrs?limit=100", world.pbx.seeded.token)["items"]
    return [c for c in items if c["caller_number"] == caller]


def inbound_cdr(world: World, caller: str, *, before: int = 0) -> dict[str, Any]:
    """The caller's newest CDR once it has more than ``before`` (its count before the call): the writer commits
    a CDR a moment after the call ends, so an earlier test's CDR of the same caller may still be the newest."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = cdrs_of(world, caller)
        if len(found) > before:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no new CDR of {caller}")


def test_the_owner_answers_a_clients_call(world: World) -> None:
    owner = start_callee(world.pbx, OWNER, "call_uas.xml")
    earlier = len(cdrs_of(world, CLIENT))
    try:
        result = call_in(world, CLIENT, "owner_answers")
        owner_result = finish_callee(owner, 1)
    finally:
        owner.kill()
    assert_all_ok(result, 1)
    assert_all_ok(owner_result, 1)
    cdr = inbound_cdr(world, CLIENT, before=earlier)
    assert (cdr["callee_number"], cdr["disposition"]) == (OWNER, "answered"), cdr


def test_the_desk_takes_it_when_the_owner_does_not_answer(world: World) -> None:
    owner = start_callee(world.pbx, OWNER, "call_uas_ring.xml")
    desk = start_callee(world.pbx, DESK, "call_uas.xml")
    earlier = len(cdrs_of(world, CLIENT))
    try:
        started = time.monotonic()
        result = call_in(world, CLIENT, "owner_rings")
        elapsed = time.monotonic() - started
        owner_result = finish_callee(owner, 1)
        desk_result = finish_callee(desk, 1)
    finally:
        owner.kill()
        desk.kill()
    assert_all_ok(result, 1)
    assert_all_ok(owner_result, 1)  # rang, then got our CANCEL (487, ACK)
    assert_all_ok(desk_result, 1)  # then the number's own destination answered
    assert elapsed >= RING_SECONDS, elapsed
    cdr = inbound_cdr(world, CLIENT, before=earlier)
    assert (cdr["callee_number"], cdr["disposition"]) == (DESK, "answered"), cdr


def test_a_stranger_goes_straight_to_the_desk(world: World) -> None:
    desk = start_callee(world.pbx, DESK, "call_uas.xml")
    try:
        result = call_in(world, STRANGER, "stranger")
        desk_result = finish_callee(desk, 1)
    finally:
        desk.kill()
    assert_all_ok(result, 1)
    assert_all_ok(desk_result, 1)
    cdr = inbound_cdr(world, STRANGER)
    assert (cdr["callee_number"], cdr["disposition"]) == (DESK, "answered"), cdr
