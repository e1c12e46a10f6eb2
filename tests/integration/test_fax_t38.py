"""Fax over T.38, end to end: both ends are our fax application, switching from G.711 by re-INVITE.

A PDF posted to the API goes out through the company's loopback trunk (pointing at the server itself,
as in ``test_fax``), whose ``t38`` mode is ``offer``: once the far end answers, the sending side
re-INVITEs it with ``m=image udptl t38``; the receiving side (the same server's fax DID, the call coming
in from that trunk, which accepts T.38) answers with its own image stream, both terminals switch to
spandsp's T.38 one and the pages travel as UDPTL datagrams on the sockets the audio used. The document
must arrive readable (the G.711 test's page comparison) and both fax records say ``transport: t38``.

Through the B2BUA: the same, sent to a DID that forwards (``external``) to another fax DID through the
same trunk. The middle call is an ordinary bridged call: the re-INVITE to T.38 on its first leg is
offered on to its second, and once both agree its two sockets relay the UDPTL datagrams unchanged.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .test_fax import DATA, _assert_same_pages

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]

SENDER_DID = "+74957660001"
LOOP_DID = "+74957660002"  # kind fax: what the server sends through its loopback trunk arrives here
FORWARD_DID = "+74957660003"  # kind external: forwarded out again through the trunk, to FINAL_DID
FINAL_DID = "+74957660004"  # kind fax


@dataclass
class World:
    server: Any
    seeded: Any


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("fax_t38")
    data_dir = tmp / "data"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(data_dir, domain=f"t38-{secrets.token_hex(3)}.test", numbers=["7601"],
                          database_url=database_url)
    sip_port = harness.free_sip_port()
    spec = {
        "offices": [{"name": "Moscow", "area_code": "495", "timezone": "Europe/Moscow"}],
        "trunks": [{"name": "Loop", "host": harness.LOOPBACK, "port": sip_port, "t38": "offer"}],
        "routes": [{"prefix": "7495766", "trunk": "Loop"}],
        "numbers": [
            {"number": SENDER_DID, "office": "Moscow", "kind": "fax", "destination": {}},
            {"number": LOOP_DID, "office": "Moscow", "kind": "fax", "destination": {}},
            {"number": FORWARD_DID, "office": "Moscow", "kind": "external", "destination": {"number": FINAL_DID}},
            {"number": FINAL_DID, "office": "Moscow", "kind": "fax", "destination": {}},
        ],
        "policies": [{"level": "tenant", "caller_id": SENDER_DID, "service_class": "long_distance"}],
    }
    harness.seed_pstn(data_dir, seeded.tenant_id, spec, database_url=database_url)
    server = harness.ZvonokServer(data_dir=data_dir, database_url=database_url, sip_port=sip_port)
    server.start()
    try:
        yield World(server=server, seeded=seeded)
    finally:
        code = server.stop()
        assert code == 0, f"zvonok serve exited with {code} on SIGTERM:\n{server.log_tail()}"


def _api(world: World, path: str) -> Any:
    return harness.http_json(f"{world.server.http_url}/api/v1/tenants/{world.seeded.tenant_id}{path}",
                             world.seeded.token)


def _wait(world: World, path: str, done: tuple[str, ...], timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    fax: dict[str, Any] = {}
    while time.monotonic() < deadline:
        fax = _api(world, path)
        if fax["status"] in done:
            return fax
        time.sleep(0.5)
    raise AssertionError(f"{path} still {fax.get('status')}:\n{world.server.log_tail()}")


def _cdr(world: World, call_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for cdr in _api(world, "/cdrs?limit=100")["items"]:
            if cdr["call_id"] == call_id:
                return dict(cdr)
        time.sleep(0.3)
    raise AssertionError(f"no CDR for call {call_id}:\n{world.server.log_tail()}")


def test_a_fax_switches_to_t38_by_reinvite_and_arrives(world: World) -> None:
    from .test_fax import _download, _fax_cdr, _post_fax

    original = (DATA / "two_pages.pdf").read_bytes()
    started = time.monotonic()
    queued = _post_fax(world, original, LOOP_DID)  # type: ignore[arg-type]
    sent = _wait(world, f"/faxes/{queued['id']}", ("sent", "failed"))
    elapsed = time.monotonic() - started
    assert (sent["status"], sent["pages"], sent["transport"]) == ("sent", 2, "t38"), (sent, world.server.log_tail())
    assert sent["remote_ident"] == LOOP_DID, sent

    received = [f for f in _api(world, "/faxes?direction=in")["items"] if f["local_number"] == LOOP_DID]
    assert len(received) == 1, received
    got = _wait(world, f"/faxes/{received[0]['id']}", ("received", "failed"), timeout=30)
    assert (got["status"], got["pages"], got["transport"], got["remote_number"]) == (
        "received", 2, "t38", SENDER_DID), got
    _assert_same_pages(original, _download(world, f"/faxes/{got['id']}.pdf"))  # type: ignore[arg-type]
    assert _fax_cdr(world, sent["call_id"]) == (2, sent["result"])  # type: ignore[arg-type]
    for call_id in (sent["call_id"], got["call_id"]):  # the sending call's CDR and the receiving one's
        cdr = _cdr(world, call_id)
        assert (cdr["fax_pages"], cdr["fax_transport"]) == (2, "t38"), cdr
    log = world.server.log_tail(10_000_000)
    assert log.count("fax: switched to T.38") == 2, log[-4000:]  # the sending leg and the receiving one
    assert elapsed < 240


def test_a_t38_reinvite_passes_through_a_bridged_call_and_udptl_is_relayed(world: World) -> None:
    from .test_fax import _download, _post_fax

    original = (DATA / "two_pages.pdf").read_bytes()
    queued = _post_fax(world, original, FORWARD_DID)  # type: ignore[arg-type]
    sent = _wait(world, f"/faxes/{queued['id']}", ("sent", "failed"))
    assert (sent["status"], sent["pages"], sent["transport"]) == ("sent", 2, "t38"), (sent, world.server.log_tail())
    assert sent["remote_ident"] == FINAL_DID, sent  # the far end is the final DID's terminal, not the middle

    received = [f for f in _api(world, "/faxes?direction=in")["items"] if f["local_number"] == FINAL_DID]
    assert len(received) == 1, received
    got = _wait(world, f"/faxes/{received[0]['id']}", ("received", "failed"), timeout=30)
    assert (got["status"], got["pages"], got["transport"]) == ("received", 2, "t38"), got
    _assert_same_pages(original, _download(world, f"/faxes/{got['id']}.pdf"))  # type: ignore[arg-type]
    log = world.server.log_tail(10_000_000)
    assert log.count("t38: relaying UDPTL") == 1, log[-4000:]  # the middle call carried it
