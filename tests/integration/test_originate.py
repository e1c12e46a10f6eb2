"""Originated calls (REST ``POST /api/v1/calls/originate``, CRM click-to-call) between real softphones.

baresip phones register as extensions and answer automatically; the employee's phone sends a 440 Hz sine,
the target a 1000 Hz one (or the carrier, baresip on its own loopback address behind a trunk, 1000 Hz), and
each records what it hears: the FFT of each recording shows the other side's tone, so the audio went both
ways through our bridge. The CDR shows the employee as the caller and the target as the callee; a phone
that does not answer fails the originate with ``employee_no_answer``.
"""

from __future__ import annotations

import secrets
import sys
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .baresip import Baresip
from .test_calls_softphone import dominant_frequency

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]

EMPLOYEE = "8601"
TARGET = "8602"
LAZY = "8603"
SALES = "8604"
CLIENT = "+74957654611"  # unique among the integration modules: on PostgreSQL they share one database
ANSWER_TIMEOUT = 4


@dataclass
class World:
    server: Any
    seeded: Any
    carrier: Baresip
    tmp: Path
    sales_token: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("originate")
    carrier = Baresip(tmp / "carrier", f"<sip:{CLIENT}@127.0.0.2>;regint=0;answermode=auto", address="127.0.0.2",
                      frequency=1000, record=True)
    carrier.start()
    try:
        yield from _served(tmp, carrier)
    finally:
        carrier.stop()


def _served(tmp: Path, carrier: Baresip) -> Iterator[World]:
    data_dir = tmp / "data"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(data_dir, domain=f"originate-{secrets.token_hex(3)}.test",
                          numbers=[EMPLOYEE, TARGET, LAZY, SALES], database_url=database_url)
    ids = harness.seed_pstn(data_dir, seeded.tenant_id, {
        "offices": [{"name": "Moscow", "area_code": "495", "timezone": "Europe/Moscow"}],
        "employees": [{"name": "Sales", "office": "Moscow", "extension": SALES}],
        "trunks": [{"name": "Carrier", "host": "127.0.0.2", "port": carrier.sip_port, "transport": "udp"}],
        "routes": [{"prefix": "7495", "trunk": "Carrier"}],
        "policies": [{"level": "tenant", "service_class": "long_distance"}],
    }, database_url=database_url)
    server = harness.ZvonokServer(data_dir=data_dir, database_url=database_url, env={
        "ZVONOK_CALL_NO_ANSWER_TIMEOUT": "30", "ZVONOK_ORIGINATE_ANSWER_TIMEOUT": str(ANSWER_TIMEOUT)})
    server.start()
    try:
        # the salesman's web login (an employee account linked to extension SALES)
        base = f"{server.http_url}/api/v1/tenants/{seeded.tenant_id}"
        email = f"sales-{secrets.token_hex(3)}@originate.test"
        harness.http_json(f"{base}/employees/{ids['employees']['Sales']}", seeded.token, method="PATCH",
                          body={"email": email, "web_password": "sales-password-1", "role": "employee"})
        login = harness.http_json(f"{server.http_url}/api/v1/auth/login", method="POST",
                                  body={"email": email, "password": "sales-password-1"})
        yield World(server, seeded, carrier, tmp, login["access_token"])
    finally:
        assert server.stop() == 0, server.log_tail()


def phone(world: World, phones: list[Baresip], number: str, *, frequency: int, auto_answer: bool = True) -> Baresip:
    account = (f"<sip:{number}@{world.seeded.domain}>;auth_pass={harness.password_for(number)};"
               f'outbound="sip:127.0.0.1:{world.server.sip_port}";regint=600'
               + (";answermode=auto" if auto_answer else ""))
    p = Baresip(world.tmp / f"phone{number}", account, frequency=frequency, record=True)
    phones.append(p)
    p.start()
    p.wait_event({"REGISTER_OK"})
    return p


def post(world: World, path: str, body: dict[str, Any], token: str | None = None) -> tuple[int, Any]:
    try:
        return 202, harness.http_json(f"{world.server.http_url}{path}", token or world.seeded.token,
                                      method="POST", body=body)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def status(world: World, call_id: str, until: set[str], timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, Any] = harness.http_json(f"{world.server.http_url}/api/v1/calls/originate/{call_id}",
                                                  world.seeded.token)
        if found["phase"] in until or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def cdr_of(world: World, call_id: str, timeout: float = 20.0) -> dict[str, Any]:
    url = f"{world.server.http_url}/api/v1/tenants/{world.seeded.tenant_id}/cdrs?limit=100"
    deadline = time.monotonic() + timeout
    while True:
        items = [c for c in harness.http_json(url, world.seeded.token)["items"] if c["call_id"] == call_id]
        if items or time.monotonic() > deadline:
            assert items, f"no CDR for {call_id}"
            return items[0]  # type: ignore[no-any-return]
        time.sleep(0.2)


def test_originate_rings_the_employee_then_the_extension_and_they_hear_each_other(
        world: World, phones: list[Baresip]) -> None:
    employee = phone(world, phones, EMPLOYEE, frequency=440)
    target = phone(world, phones, TARGET, frequency=1000)
    code, body = post(world, "/api/v1/calls/originate", {"extension": EMPLOYEE, "to": TARGET})
    assert code == 202, body
    employee.wait_event({"CALL_ESTABLISHED"})
    target.wait_event({"CALL_ESTABLISHED"})
    assert status(world, body["call_id"], {"connected"})["phase"] == "connected"
    time.sleep(3)  # a few seconds of audio both ways
    target.command("hangup")
    target.wait_event({"CALL_CLOSED"})
    employee.wait_event({"CALL_CLOSED"})  # our BYE reached the employee's phone
    employee.stop()
    target.stop()  # the WAV files are complete once baresip has quit
    (heard_by_employee,) = employee.received_audio()
    (heard_by_target,) = target.received_audio()
    assert abs(dominant_frequency(heard_by_employee, last=2.0) - 1000) < 20
    assert abs(dominant_frequency(heard_by_target) - 440) < 20
    cdr = cdr_of(world, body["call_id"])
    assert (cdr["caller_number"], cdr["callee_number"], cdr["disposition"]) == (EMPLOYEE, TARGET, "answered")
    assert cdr["hangup_side"] == "callee" and cdr["billsec"] >= 2
    assert status(world, body["call_id"], {"ended"})["phase"] == "ended"


def test_an_employee_who_does_not_answer_fails_the_originate(world: World, phones: list[Baresip]) -> None:
    lazy = phone(world, phones, LAZY, frequency=440, auto_answer=False)
    target = phone(world, phones, TARGET, frequency=1000)
    code, body = post(world, "/api/v1/calls/originate", {"extension": LAZY, "to": TARGET})
    assert code == 202, body
    lazy.wait_event({"CALL_INCOMING"})
    lazy.wait_event({"CALL_CLOSED"}, timeout=ANSWER_TIMEOUT + 20)  # we gave up (CANCEL)
    found = status(world, body["call_id"], {"failed"})
    assert (found["phase"], found["reason"]) == ("failed", "employee_no_answer")
    assert not [e for e in target.events if e.get("type") == "CALL_INCOMING"]  # the target never rang
    cdr = cdr_of(world, body["call_id"])
    assert (cdr["caller_number"], cdr["disposition"]) == (LAZY, "no_answer")
    # an extension with no phone registered: refused at once
    code, text = post(world, "/api/v1/calls/originate", {"extension": EMPLOYEE, "to": TARGET})
    assert code == 409 and "not_registered" in text


def test_crm_click_to_call_reaches_the_client_through_the_carrier(world: World, phones: list[Baresip]) -> None:
    base = f"/api/v1/tenants/{world.seeded.tenant_id}/crm/clients"
    client = harness.http_json(f"{world.server.http_url}{base}", world.seeded.token, method="POST",
                               body={"name": "Roga i Kopyta", "phones": [{"number": CLIENT}]})
    sales = phone(world, phones, SALES, frequency=440)
    code, body = post(world, f"{base}/{client['id']}/call", {}, token=world.sales_token)
    assert code == 202, body
    assert (body["extension"], body["to"]) == (SALES, CLIENT)
    sales.wait_event({"CALL_ESTABLISHED"})
    world.carrier.wait_event({"CALL_ESTABLISHED"})
    time.sleep(3)
    sales.command("hangup")
    sales.wait_event({"CALL_CLOSED"})
    world.carrier.wait_event({"CALL_CLOSED"})
    sales.stop()
    heard_by_carrier = world.carrier.received_audio()[-1]
    (heard_by_sales,) = sales.received_audio()
    assert abs(dominant_frequency(heard_by_sales, last=2.0) - 1000) < 20
    assert abs(dominant_frequency(heard_by_carrier) - 440) < 20
    cdr = cdr_of(world, body["call_id"])
    assert (cdr["caller_number"], cdr["callee_number"], cdr["disposition"]) == (SALES, CLIENT, "answered")
    assert cdr["hangup_side"] == "caller"
    # the call is on the client's timeline (a query over the CDRs by the client's numbers)
    timeline = harness.http_json(f"{world.server.http_url}{base}/{client['id']}/calls", world.seeded.token)
    assert [c["call_id"] for c in timeline["items"]] == [body["call_id"]]


def test_an_originate_ringing_when_the_server_dies_is_failed_after_the_restart(
        phones: list[Baresip], tmp_path: Path) -> None:
    """SIGKILL while the employee's phone rings; the next start on the same database answers the status
    (nothing of it is in memory any more): failed, ``server_restarted``."""
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    data_dir = tmp_path / "data"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    number = "8605"
    seeded = harness.seed(data_dir, domain=f"restart-{secrets.token_hex(3)}.test", numbers=[number, "8606"],
                          database_url=database_url)
    server = harness.ZvonokServer(data_dir=data_dir, database_url=database_url,
                                  env={"ZVONOK_ORIGINATE_ANSWER_TIMEOUT": "60"})
    server.start()
    try:
        mine = World(server, seeded, None, tmp_path, "")  # type: ignore[arg-type] # (no carrier here)
        ringing = phone(mine, phones, number, frequency=440, auto_answer=False)
        code, body = post(mine, "/api/v1/calls/originate", {"extension": number, "to": "8606"})
        assert code == 202, body
        ringing.wait_event({"CALL_INCOMING"})
        url = database_url or f"sqlite+aiosqlite:///{(data_dir / 'zvonok.db').resolve()}"

        async def phase() -> str | None:
            engine = create_async_engine(url)
            try:
                async with engine.connect() as conn:
                    return (await conn.execute(text("SELECT phase FROM originate_requests WHERE call_id = :c"),
                                               {"c": body["call_id"]})).scalar_one_or_none()
            finally:
                await engine.dispose()

        deadline = time.monotonic() + 20
        while asyncio.run(phase()) != "ringing_employee" and time.monotonic() < deadline:
            time.sleep(0.1)  # the journal's job writes the row within moments of the 202
        assert asyncio.run(phase()) == "ringing_employee"
        server.kill()
        server.start()
        found = harness.http_json(f"{server.http_url}/api/v1/calls/originate/{body['call_id']}", seeded.token)
        assert (found["phase"], found["reason"], found["to"]) == ("failed", "server_restarted", "8606")
    finally:
        assert server.stop() == 0, server.log_tail()
