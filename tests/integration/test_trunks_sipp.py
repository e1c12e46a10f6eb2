"""The outside world through SIPp carriers: outbound calls with digest and caller ID, failover, permissions,
inbound calls on a number (DID), refusals of unknown addresses and numbers, registration to a carrier.

Every SIPp carrier runs on its own loopback address (127.0.0.2 ...), because a trunk is recognised by the
address its calls come from; the phones (SIPp extensions) stay on 127.0.0.1. The tenant's offices, tariff,
trunks, routes, numbers and policies are written to the database before the server starts
(``harness.seed_pstn``), as an admin would through the API.
"""

from __future__ import annotations

import secrets
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from .dtmf_pcap import write_dtmf_pcap
from .test_calls_sipp import Pbx, assert_all_ok, calls, place_calls, start_callee

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]

ANNA, BORIS, DESK, CLARA = "7201", "7202", "7203", "7204"  # Anna: local calls only; Boris: long distance;
# the desk takes DIDs; Clara: long distance with a 2.00 monthly limit
DID = "+74957654321"
ACCESS = "+74957654399"  # the access number: PIN + destination, then out as the PIN's owner
BORIS_PIN = "4826"
BORIS_MOBILE = "+79160000042"  # registered to Boris: the access number lets it skip the PIN
SUSPENDED_DID = "+74957650000"  # a number of a suspended company
CARRIER_USER, CARRIER_PASSWORD = "zvonok-acme", "carrier-secret"


@dataclass
class Carriers:
    main: int  # 127.0.0.2: challenges (407), takes 7495; also delivers our inbound calls
    broken: int  # 127.0.0.3: answers 503 (first for 7812)
    backup: int  # 127.0.0.4: answers (second for 7812)
    registrar: int  # 127.0.0.5: we register to it
    tiny: int  # 127.0.0.9: one call at a time (max_calls 1), the only route to 7473


@dataclass
class World:
    pbx: Pbx
    carriers: Carriers
    ids: dict[str, dict[str, int]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if harness.shutil.which("sipp") is None:
        pytest.fail("SIPp (Debian sip-tester) is not installed: `make test` installs it")
    tmp = tmp_path_factory.mktemp("trunks")
    data_dir = tmp / "data"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(data_dir, domain=f"trunks-{secrets.token_hex(3)}.test", numbers=[ANNA, BORIS, DESK, CLARA],
                          database_url=database_url)
    carriers = Carriers(*(harness.free_sip_port() for _ in range(5)))
    spec = {
        "offices": [{"name": "Moscow", "area_code": "495", "timezone": "Europe/Moscow"}],
        "employees": [{"name": "Anna", "office": "Moscow", "extension": ANNA},
                      {"name": "Boris", "office": "Moscow", "extension": BORIS, "phone": BORIS_MOBILE},
                      {"name": "Clara", "office": "Moscow", "extension": CLARA}],
        "tariffs": [{"name": "Retail", "plan": True, "rates": [
            {"prefix": "7495", "destination": "Moscow", "price": "1.00", "increment": "60/60"},
            {"prefix": "7812", "destination": "St Petersburg", "price": "2.50", "increment": "60/60"},
            {"prefix": "7843", "destination": "Kazan (dear)", "price": "60.00", "increment": "1/1"},
            {"prefix": "7", "destination": "Russia", "price": "3.00", "increment": "60/60"}]}],
        "trunks": [
            {"name": "Main", "host": "127.0.0.2", "port": carriers.main, "username": CARRIER_USER,
             "password": CARRIER_PASSWORD},
            {"name": "Broken", "host": "127.0.0.3", "port": carriers.broken},
            {"name": "Backup", "host": "127.0.0.4", "port": carriers.backup},
            {"name": "OfficePBX", "kind": "pbx", "host": "127.0.0.7", "port": 5060, "office": "Moscow"},
            # the operator's carrier, shared by every company: it delivers the suspended company's number
            {"name": "Operator", "host": "127.0.0.8", "port": 5060, "platform": True},
            {"name": "Tiny", "host": "127.0.0.9", "port": carriers.tiny, "max_calls": 1},
            {"name": "Registrar", "host": "127.0.0.5", "port": carriers.registrar, "register": True,
             "register_expires": 60, "username": CARRIER_USER, "password": CARRIER_PASSWORD},
        ],
        "routes": [{"prefix": "7495", "trunk": "Main"},
                   {"prefix": "7812", "trunk": "Broken", "priority": 10},
                   {"prefix": "7812", "trunk": "Backup", "priority": 20},
                   {"prefix": "7843", "trunk": "Backup"},
                   {"prefix": "7473", "trunk": "Tiny"}],
        "numbers": [{"number": DID, "office": "Moscow", "kind": "extension", "destination": {"number": DESK}},
                    {"number": ACCESS, "office": "Moscow", "kind": "access",
                     "destination": {"skip_pin_for_known_callers": True}}],
        "pins": [{"employee": "Boris", "pin": BORIS_PIN, "skip": True}],
        "policies": [{"level": "tenant", "caller_id": DID},
                     {"level": "office", "ref": "Moscow", "service_class": "local"},
                     {"level": "employee", "ref": "Boris", "service_class": "long_distance"},
                     {"level": "employee", "ref": "Clara", "service_class": "long_distance", "monthly_limit": "2.00"}],
    }
    ids = harness.seed_pstn(data_dir, seeded.tenant_id, spec, database_url=database_url)
    # a second company, suspended (unpaid), with a number of its own
    other = harness.seed(data_dir, domain=f"suspended-{secrets.token_hex(3)}.test", numbers=["7301"],
                         database_url=database_url, with_token=False)
    harness.seed_pstn(data_dir, other.tenant_id, {"suspended": True, "numbers": [
        {"number": SUSPENDED_DID, "kind": "extension", "destination": {"number": "7301"}}]},
        database_url=database_url)
    # a third company whose office PBX trusts 127.0.0.1, where our phones are (a NAT address shared with
    # them, set by the operator): it must take none of their calls (test_a_neighbours_pbx_...)
    neighbour = harness.seed(data_dir, domain=f"neighbour-{secrets.token_hex(3)}.test", numbers=["7401"],
                             database_url=database_url, with_token=False)
    harness.seed_pstn(data_dir, neighbour.tenant_id, {"trunks": [
        {"name": "NeighbourPBX", "kind": "pbx", "host": "127.0.0.1", "port": 5060, "inbound_addresses": ["127.0.0.1"]}]},
        database_url=database_url)
    server = harness.ZvonokServer(data_dir=data_dir, database_url=database_url,
                                  env={"ZVONOK_CALL_NO_ANSWER_TIMEOUT": "20"})
    world = World(Pbx(server=server, seeded=seeded, workdir=tmp / "sipp"), carriers, ids)
    # the carrier we register to listens before we start: our first REGISTER goes out at start-up
    registrar = carrier(world, "carrier_register.xml", "127.0.0.5", carriers.registrar, "carrier_registrar",
                        rows=[[CARRIER_USER, CARRIER_PASSWORD, "60"]], timeout=600)
    server.start()
    try:
        yield world
    finally:
        code = server.stop()
        registrar.kill()
        assert code == 0, f"zvonok serve exited with {code} on SIGTERM:\n{server.log_tail()}"


def carrier(world: World, scenario: str, address: str, port: int, name: str, *,
            rows: list[list[str]] | None = None, timeout: float = 60) -> Any:
    """A SIPp carrier in server mode on ``address``:``port``."""
    return calls.SippProcess(scenario, None, workdir=world.pbx.workdir, name=name, local_port=port, rows=rows,
                             timeout=timeout, keys={"codec": "8", "codec_name": "PCMA"},
                             extra=["-i", address, "-trace_logs", "-log_file", str(world.pbx.workdir / f"{name}.log")]
                             ).start()


def carrier_log(world: World, name: str) -> str:
    path = world.pbx.workdir / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def count_cdrs(world: World, caller: str) -> int:
    return len(world.pbx.cdrs(caller, 0, timeout=0))


def last_cdr(world: World, caller: str, before: int) -> dict[str, Any]:
    """The CDR of ``caller``'s newest call, once there are more than ``before`` (they are written async)."""
    cdrs = world.pbx.cdrs(caller, before + 1)
    assert len(cdrs) > before, f"no new CDR of {caller}"
    return cdrs[-1]


def test_local_call_goes_out_with_digest_and_the_company_number(world: World) -> None:
    """Anna dials a 7-digit Moscow number: +7495… through the main carrier, which challenges us (407) and
    checks our digest; the caller ID is the company's number; the CDR is rated 1.00 (one minute, 60/60)."""
    before = count_cdrs(world, ANNA)
    main = carrier(world, "carrier_auth_answer.xml", "127.0.0.2", world.carriers.main, "carrier_main",
                   rows=[[CARRIER_USER, CARRIER_PASSWORD]])
    try:
        result = place_calls(world.pbx, ANNA, "765-43-00", "call_uac.xml", 1, rate=1, hold_ms=1500)
        assert main.wait_for("SuccessfulCall(C)", 1, timeout=15), main.stats()
        main_result = main.stop()
    finally:
        main.kill()
    assert_all_ok(result, 1)
    assert_all_ok(main_result, 1)
    assert "CALLED +74957654300 FROM +74957654321" in carrier_log(world, "carrier_main")
    cdr = last_cdr(world, ANNA, before)
    assert (cdr["direction"], cdr["disposition"], cdr["internal"]) == ("outbound", "answered", False)
    detail = harness.http_json(f"{world.pbx.server.http_url}/api/v1/tenants/{world.pbx.seeded.tenant_id}"
                               f"/cdrs/{cdr['id']}", world.pbx.seeded.token)
    assert detail["callee_number"] == "+74957654300", detail
    assert Decimal(str(detail["cost"])) == Decimal("1.00"), detail


def test_failover_to_the_next_carrier_on_503(world: World) -> None:
    """Boris (long distance allowed) dials 8 812 …: the first carrier answers 503, the second takes the call."""
    before = count_cdrs(world, BORIS)
    broken = carrier(world, "carrier_503.xml", "127.0.0.3", world.carriers.broken, "carrier_broken")
    backup = carrier(world, "carrier_answer.xml", "127.0.0.4", world.carriers.backup, "carrier_backup")
    try:
        result = place_calls(world.pbx, BORIS, "88121234567", "call_uac.xml", 1, rate=1, hold_ms=1000)
        assert broken.wait_for("SuccessfulCall(C)", 1, timeout=15), broken.stats()
        assert backup.wait_for("SuccessfulCall(C)", 1, timeout=15), backup.stats()
        broken_result, backup_result = broken.stop(), backup.stop()
    finally:
        broken.kill()
        backup.kill()
    assert_all_ok(result, 1)
    assert_all_ok(broken_result, 1)  # it got our INVITE and our ACK of its 503
    assert_all_ok(backup_result, 1)
    assert "CALLED +78121234567 FROM +74957654321" in carrier_log(world, "carrier_backup")
    cdr = last_cdr(world, BORIS, before)
    detail = harness.http_json(f"{world.pbx.server.http_url}/api/v1/tenants/{world.pbx.seeded.tenant_id}"
                               f"/cdrs/{cdr['id']}", world.pbx.seeded.token)
    assert detail["disposition"] == "answered"
    assert Decimal(str(detail["cost"])) == Decimal("2.50"), detail


def test_long_distance_is_refused_to_a_local_only_employee(world: World) -> None:
    before = count_cdrs(world, ANNA)
    result = place_calls(world.pbx, ANNA, "88121234567", "call_uac_refused.xml", 1, rate=1)
    assert_all_ok(result, 1)
    cdr = last_cdr(world, ANNA, before)
    assert (cdr["disposition"], cdr["sip_status"], cdr["cause"]) == ("failed", 403, "not_allowed")


def call_the_desk_in(world: World, scenario: str, desk_scenario: str, name: str, *, hold_ms: int = 500) -> None:
    """The main carrier (127.0.0.2) calls the DID; the desk's SIPp answers with ``desk_scenario``: both
    sides must complete their scenario."""
    desk = start_callee(world.pbx, DESK, desk_scenario, codec="PCMA")
    try:
        result = harness.run_sipp(scenario, world.pbx.target, workdir=world.pbx.workdir,
                                  rows=[["74957654321", "79161234567"]], rate=1, timeout=30,
                                  extra=["-i", "127.0.0.2", "-mi", "127.0.0.2", "-d", str(hold_ms)], name=name)
        assert desk.wait_for("SuccessfulCall(C)", 1, timeout=15), desk.stats()
        desk_result = desk.stop()
    finally:
        desk.kill()
    assert_all_ok(result, 1)
    assert_all_ok(desk_result, 1)


def test_inbound_call_on_a_number_rings_its_extension(world: World) -> None:
    call_the_desk_in(world, "carrier_call_in.xml", "call_uas.xml", "carrier_in", hold_ms=1000)
    url = f"{world.pbx.server.http_url}/api/v1/tenants/{world.pbx.seeded.tenant_id}/cdrs?limit=100"
    deadline = time.monotonic() + 15
    inbound: list[dict[str, Any]] = []
    while not inbound and time.monotonic() < deadline:
        inbound = [c for c in harness.http_json(url, world.pbx.seeded.token)["items"] if c["direction"] == "inbound"]
        time.sleep(0.2)
    assert inbound, "no CDR for the inbound call"
    cdr = inbound[-1]
    assert (cdr["caller_number"], cdr["callee_number"], cdr["disposition"]) == ("+79161234567", DESK, "answered"), cdr


def test_a_hostile_from_reaches_the_extension_escaped(world: World) -> None:
    """A display name ending in a backslash and a user part with %3E%3B: passed on to the phone as they
    came (the quoted-string and the URI stay closed), not unescaped into a broken From that hangs the call."""
    call_the_desk_in(world, "carrier_call_in_hostile_from.xml", "call_uas_check_from.xml", "carrier_hostile_from")


@pytest.mark.parametrize(("source", "number", "scenario"), [
    ("127.0.0.6", "74957654321", "carrier_call_in_403.xml"),  # not a trunk's address: never trusted
    ("127.0.0.2", "74959999999", "carrier_call_in_404.xml"),  # a trunk, but not our number
    ("127.0.0.8", "74957650000", "carrier_call_in_announced_403.xml"),  # suspended company: 183 + prompt, 403
], ids=["unknown-address", "unknown-number", "suspended-company"])
def test_inbound_refusals(world: World, source: str, number: str, scenario: str) -> None:
    result = harness.run_sipp(scenario, world.pbx.target, workdir=world.pbx.workdir,
                              rows=[[number, "79161234567"]], rate=1, timeout=20,
                              extra=["-i", source, "-mi", source], name=f"refused_{source}")
    assert_all_ok(result, 1)


def test_registration_to_a_carrier(world: World) -> None:
    """The Registrar trunk registered to its carrier at start-up (401 challenge, digest checked by SIPp);
    its status in the REST API says so."""
    trunk_id = world.ids["trunks"]["Registrar"]
    url = f"{world.pbx.server.http_url}/api/v1/tenants/{world.pbx.seeded.tenant_id}/trunks/{trunk_id}/status"
    deadline = time.monotonic() + 30
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = harness.http_json(url, world.pbx.seeded.token)
        if (status.get("registration") or {}).get("state") == "registered":
            break
        time.sleep(0.5)
    assert (status.get("registration") or {}).get("state") == "registered", status
    assert status["active_calls"] == 0
    # the carrier granted 60 s: the registration runs to about then (refreshed at half of it)
    until = status["registration"]["registered_until"]
    assert until is not None and 0 < until - time.time() <= 61, status


def test_a_neighbours_pbx_trusting_the_phones_address_takes_none_of_their_calls(world: World) -> None:
    """Another company's PBX trunk trusts 127.0.0.1, the phones' address: Anna's call to the desk (to our
    domain, then with our digest credentials) is still hers, not the neighbour's PBX calling out (503)."""
    before = count_cdrs(world, ANNA)
    desk = start_callee(world.pbx, DESK, "call_uas_answer.xml")
    try:
        result = place_calls(world.pbx, ANNA, DESK, "call_uac.xml", 1, rate=1, hold_ms=300)
        assert desk.wait_for("SuccessfulCall(C)", 1, timeout=10), desk.stats()
        assert_all_ok(desk.stop(), 1)
    finally:
        desk.kill()
    assert_all_ok(result, 1)
    cdr = last_cdr(world, ANNA, before)
    assert (cdr["callee_number"], cdr["disposition"], cdr["internal"]) == (DESK, "answered", True), cdr


def test_internal_calls_stay_free(world: World) -> None:
    """Internal calls stay free: the desk's calls to Anna cost nothing even with a tariff in force."""
    before = count_cdrs(world, DESK)
    anna = start_callee(world.pbx, ANNA, "call_uas_answer.xml")
    try:
        result = place_calls(world.pbx, DESK, ANNA, "call_uac.xml", 1, rate=1, hold_ms=500)
        assert anna.wait_for("SuccessfulCall(C)", 1, timeout=10), anna.stats()
        assert_all_ok(anna.stop(), 1)
    finally:
        anna.kill()
    assert_all_ok(result, 1)
    cdr = last_cdr(world, DESK, before)
    assert cdr["internal"] is True and Decimal(str(cdr["cost"])) == 0


ACCESS_CALL = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- Generated by test_trunks_sipp.py: a carrier delivers a call to the access number; the caller keys
     {keys} (RFC 4733, {pcap}) and then {then}. -->
<scenario name="access number caller">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[field0]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: "Outside Caller" <sip:[field1]@[local_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[field1]@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=carrier 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=sendrecv

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: "Outside Caller" <sip:[field1]@[local_ip]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Content-Length: 0

    ]]>
  </send>
  <nop>
    <action>
      <exec play_pcap_audio="{pcap}"/>
    </action>
  </nop>
{ending}
</scenario>
"""

HANG_UP_AFTER = """  <pause milliseconds="{ms}"/>
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: "Outside Caller" <sip:[field1]@[local_ip]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
"""

WAIT_FOR_OUR_BYE = """  <recv request="BYE" timeout="40000"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"""


def access_scenario(world: World, name: str, keys: str, ending: str, then: str) -> Path:
    pcap = write_dtmf_pcap(world.pbx.workdir / f"{name}.pcap", keys)
    path = world.pbx.workdir / f"{name}.xml"
    path.write_text(ACCESS_CALL.format(keys=keys, pcap=pcap, then=then, ending=ending))
    return path


def inbound_cdrs(world: World, count: int) -> list[dict[str, Any]]:
    url = f"{world.pbx.server.http_url}/api/v1/tenants/{world.pbx.seeded.tenant_id}/cdrs?limit=100"
    deadline = time.monotonic() + 15
    while True:
        items = [c for c in harness.http_json(url, world.pbx.seeded.token)["items"] if c["dialed_number"] == ACCESS]
        if len(items) >= count or time.monotonic() > deadline:
            return sorted(items, key=lambda c: c["started_at"])
        time.sleep(0.2)


def test_access_number_pin_then_a_long_distance_call(world: World) -> None:
    """An ordinary phone calls the access number through the carrier, keys Boris's extension + PIN and #,
    then a Moscow number and #: the call goes out through the carrier under Boris, with the company's
    caller ID, and its cost lands on Boris."""
    main = carrier(world, "carrier_answer.xml", "127.0.0.2", world.carriers.main, "carrier_main_access")
    scenario = access_scenario(world, "access_ok", f"{BORIS}{BORIS_PIN}#84951112233#",
                               HANG_UP_AFTER.format(ms=12000), "hangs up 12 s later")
    before = len(inbound_cdrs(world, 0))
    try:
        result = harness.run_sipp(scenario, world.pbx.target, workdir=world.pbx.workdir,
                                  rows=[["74957654399", "79161234567"]], rate=1, timeout=40,
                                  extra=["-i", "127.0.0.2", "-mi", "127.0.0.2"], name="access_ok")
        assert main.wait_for("SuccessfulCall(C)", 1, timeout=15), main.stats()
        main_result = main.stop()
    finally:
        main.kill()
    assert_all_ok(result, 1)
    assert_all_ok(main_result, 1)
    assert "CALLED +74951112233 FROM +74957654321" in carrier_log(world, "carrier_main_access")
    cdr = inbound_cdrs(world, before + 1)[-1]
    detail = harness.http_json(f"{world.pbx.server.http_url}/api/v1/tenants/{world.pbx.seeded.tenant_id}"
                               f"/cdrs/{cdr['id']}", world.pbx.seeded.token)
    assert detail["caller_employee_id"] == world.ids["employees"]["Boris"], detail
    assert Decimal(str(detail["cost"])) == Decimal("1.00"), detail


def test_access_number_wrong_pins_lock_the_caller_out(world: World) -> None:
    """Three wrong PINs end the call; with the next call's failures the caller ID is blocked (the call ends),
    and a third call is refused (403) without being answered."""
    before = len(inbound_cdrs(world, 0))
    wrong = f"{BORIS}1357#" * 3
    for n in (1, 2):
        scenario = access_scenario(world, f"access_wrong{n}", wrong, WAIT_FOR_OUR_BYE, "waits for our BYE")
        result = harness.run_sipp(scenario, world.pbx.target, workdir=world.pbx.workdir,
                                  rows=[["74957654399", "79165550000"]], rate=1, timeout=60,
                                  extra=["-i", "127.0.0.2", "-mi", "127.0.0.2"], name=f"access_wrong{n}")
        assert_all_ok(result, 1)
    result = harness.run_sipp("carrier_call_in_403.xml", world.pbx.target, workdir=world.pbx.workdir,
                              rows=[["74957654399", "79165550000"]], rate=1, timeout=60,
                              extra=["-i", "127.0.0.2", "-mi", "127.0.0.2"], name="access_blocked")
    assert_all_ok(result, 1)
    records = inbound_cdrs(world, before + 3)
    causes = [c["cause"] for c in records if c["caller_number"] == "+79165550000"]
    assert causes[-3:] == ["access_too_many_attempts", "access_blocked", "access_blocked"], causes
    dispositions = [c["disposition"] for c in records if c["caller_number"] == "+79165550000"]
    assert dispositions[-3:] == ["answered", "answered", "failed"], dispositions
    assert "caller blocked after wrong PINs" in world.pbx.server.log_tail(200_000)


def test_office_pbx_reaches_extensions_and_calls_out_as_the_office(world: World) -> None:
    """An office PBX joined as a trunk (127.0.0.7): its user calls extension 7203, then a local number
    that goes out through our carrier with the company's caller ID."""
    desk = start_callee(world.pbx, DESK, "call_uas.xml", codec="PCMA")
    try:
        result = harness.run_sipp("carrier_call_in.xml", world.pbx.target, workdir=world.pbx.workdir,
                                  rows=[[DESK, "201"]], rate=1, timeout=30,
                                  extra=["-i", "127.0.0.7", "-mi", "127.0.0.7", "-d", "500"], name="pbx_in")
        assert desk.wait_for("SuccessfulCall(C)", 1, timeout=15), desk.stats()
        assert_all_ok(desk.stop(), 1)
    finally:
        desk.kill()
    assert_all_ok(result, 1)
    main = carrier(world, "carrier_auth_answer.xml", "127.0.0.2", world.carriers.main, "carrier_main_pbx",
                   rows=[[CARRIER_USER, CARRIER_PASSWORD]])
    try:
        result = harness.run_sipp("carrier_call_in.xml", world.pbx.target, workdir=world.pbx.workdir,
                                  rows=[["7654301", "202"]], rate=1, timeout=30,
                                  extra=["-i", "127.0.0.7", "-mi", "127.0.0.7", "-d", "500"], name="pbx_out")
        assert main.wait_for("SuccessfulCall(C)", 1, timeout=15), main.stats()
        assert_all_ok(main.stop(), 1)
    finally:
        main.kill()
    assert_all_ok(result, 1)
    assert "CALLED +74957654301 FROM +74957654321" in carrier_log(world, "carrier_main_pbx")
    cdrs = [c for c in world.pbx.cdrs("202", 1) if c["caller_number"] == "202"]
    assert cdrs and cdrs[-1]["direction"] == "outbound", cdrs
    assert cdrs[-1]["caller_office_id"] == world.ids["offices"]["Moscow"], cdrs[-1]


def test_spending_limit_cuts_the_call_then_refuses_the_next(world: World) -> None:
    """Clara's monthly limit is 2.00 and Kazan costs 60.00 a minute billed per second: her call is cut
    after 2 s (cause limit_reached, cost 2.00); her next paid call is refused (403)."""
    before = count_cdrs(world, CLARA)
    backup = carrier(world, "carrier_answer.xml", "127.0.0.4", world.carriers.backup, "carrier_backup_limit")
    try:
        result = place_calls(world.pbx, CLARA, "88431234567", "call_uac_callee_bye.xml", 1, rate=1, timeout=30)
        assert backup.wait_for("SuccessfulCall(C)", 1, timeout=15), backup.stats()
        assert_all_ok(backup.stop(), 1)
    finally:
        backup.kill()
    assert_all_ok(result, 1)  # our BYE reached the caller
    cdr = last_cdr(world, CLARA, before)
    assert (cdr["disposition"], cdr["cause"]) == ("answered", "limit_reached"), cdr
    assert Decimal(str(cdr["cost"])) == Decimal("2.00"), cdr
    result = place_calls(world.pbx, CLARA, "88431234567", "call_uac_refused.xml", 1, rate=1)
    assert_all_ok(result, 1)
    cdr = last_cdr(world, CLARA, before + 1)
    assert (cdr["sip_status"], cdr["cause"]) == (403, "limit_reached"), cdr
    # the first call took Clara across her warning threshold (80%) and her limit: one event each
    log = world.pbx.server.log_tail(400_000)
    crossed = [line for line in log.splitlines() if "spending threshold crossed" in line]
    assert any("threshold=warning" in line for line in crossed) and any("threshold=limit" in line for line in crossed), crossed


def test_office_pbx_dials_through_the_access_number_in_one_string(world: World) -> None:
    """The documented dialed form <access number>*<extension+PIN>*<destination>: no prompts to wait for;
    the call goes out as Boris (his caller ID, his cost)."""
    main = carrier(world, "carrier_answer.xml", "127.0.0.2", world.carriers.main, "carrier_main_dialed")
    try:
        result = harness.run_sipp("carrier_call_in.xml", world.pbx.target, workdir=world.pbx.workdir,
                                  rows=[[f"74957654399*{BORIS}{BORIS_PIN}*84951112244", "203"]], rate=1, timeout=30,
                                  extra=["-i", "127.0.0.7", "-mi", "127.0.0.7", "-d", "3000"], name="pbx_dialed")
        assert main.wait_for("SuccessfulCall(C)", 1, timeout=20), main.stats()
        assert_all_ok(main.stop(), 1)
    finally:
        main.kill()
    assert_all_ok(result, 1)
    assert "CALLED +74951112244 FROM +74957654321" in carrier_log(world, "carrier_main_dialed")
    assert_billed_to_boris(world, "203", "+74951112244")


def snapshot_loads(world: World) -> float:
    """How many routing snapshots the server has loaded (its Prometheus counter)."""
    with urllib.request.urlopen(f"{world.pbx.server.http_url}/metrics", timeout=10) as resp:  # noqa: S310
        for line in resp.read().decode().splitlines():
            if line.startswith("zvonok_routing_snapshot_loads_total "):
                return float(line.split()[1])
    return 0.0


def wait_for_reload(world: World, before: float, timeout: float = 30.0) -> None:
    """Poll until the server has loaded a routing snapshot newer than the one counted in ``before``."""
    deadline = time.monotonic() + timeout
    while snapshot_loads(world) <= before:
        assert time.monotonic() < deadline, "the routing snapshot was not reloaded"
        time.sleep(0.05)


def test_a_route_added_through_the_api_takes_effect_at_once(world: World) -> None:
    """No route for +7999…: 503. The admin adds one through the REST API; the next call goes out on it
    (the server reloads its routing snapshot on the change event, no restart)."""
    before = count_cdrs(world, BORIS)
    result = place_calls(world.pbx, BORIS, "89991234567", "call_uac_unavailable.xml", 1, rate=1)
    assert_all_ok(result, 1)
    cdr = last_cdr(world, BORIS, before)
    assert (cdr["sip_status"], cdr["cause"]) == (503, "no_trunk"), cdr
    base = f"{world.pbx.server.http_url}/api/v1/tenants/{world.pbx.seeded.tenant_id}"
    loads = snapshot_loads(world)
    route = harness.http_json(f"{base}/routes", world.pbx.seeded.token, method="POST",
                              body={"prefix": "7999", "trunk_id": world.ids["trunks"]["Backup"]})
    assert route["prefix"] == "7999"
    wait_for_reload(world, loads)
    backup = carrier(world, "carrier_answer.xml", "127.0.0.4", world.carriers.backup, "carrier_backup_new_route")
    try:
        result = place_calls(world.pbx, BORIS, "89991234567", "call_uac.xml", 1, rate=1, hold_ms=500)
        assert backup.wait_for("SuccessfulCall(C)", 1, timeout=15), backup.stats()
        assert_all_ok(backup.stop(), 1)
    finally:
        backup.kill()
    assert_all_ok(result, 1)
    assert "CALLED +79991234567 FROM +74957654321" in carrier_log(world, "carrier_backup_new_route")


RETAIL_DECK = ("prefix;destination;rate;increment\n7495;Moscow;{moscow};60/60\n7812;St Petersburg;2.50;60/60\n"
               "7843;Kazan (dear);60.00;1/1\n7;Russia;3.00;60/60\n")


def import_retail_rates(world: World, moscow: str) -> None:
    """``zvonok rates import`` of the Retail deck (Moscow at ``moscow``): another process than the server."""
    deck = world.pbx.workdir / f"retail-{moscow}.csv"
    deck.write_text(RETAIL_DECK.format(moscow=moscow))
    out = world.pbx.server.cli("rates", "import", "--tariff", str(world.ids["tariffs"]["Retail"]), str(deck))
    assert "4 rates imported" in out, out


def test_rates_imported_by_the_cli_price_the_next_call(world: World) -> None:
    """issue 8: the CLI is another process. Its new price for Moscow reaches the running server (the change
    feed makes it reload its routing snapshot) and Anna's next call is rated at it."""
    loads = snapshot_loads(world)
    import_retail_rates(world, "4.00")
    try:
        wait_for_reload(world, loads)
        before = count_cdrs(world, ANNA)
        main = carrier(world, "carrier_auth_answer.xml", "127.0.0.2", world.carriers.main, "carrier_main_new_rate",
                       rows=[[CARRIER_USER, CARRIER_PASSWORD]])
        try:
            result = place_calls(world.pbx, ANNA, "765-43-01", "call_uac.xml", 1, rate=1, hold_ms=500)
            assert main.wait_for("SuccessfulCall(C)", 1, timeout=15), main.stats()
            assert_all_ok(main.stop(), 1)
        finally:
            main.kill()
        assert_all_ok(result, 1)
        cdr = last_cdr(world, ANNA, before)
        detail = harness.http_json(f"{world.pbx.server.http_url}/api/v1/tenants/{world.pbx.seeded.tenant_id}"
                                   f"/cdrs/{cdr['id']}", world.pbx.seeded.token)
        assert Decimal(str(detail["cost"])) == Decimal("4.00"), detail
    finally:  # the module's other tests price Moscow at 1.00
        loads = snapshot_loads(world)
        import_retail_rates(world, "1.00")
        wait_for_reload(world, loads)


def did_id(world: World, number: str) -> int:
    url = f"{world.pbx.server.http_url}/api/v1/tenants/{world.pbx.seeded.tenant_id}/numbers?limit=100"
    return next(n["id"] for n in harness.http_json(url, world.pbx.seeded.token)["items"] if n["number"] == number)


def route_did(world: World, number: str, kind: str, destination: dict[str, Any]) -> None:
    """Point a number somewhere else through the API, and wait until the server has reloaded it."""
    loads = snapshot_loads(world)
    url = f"{world.pbx.server.http_url}/api/v1/tenants/{world.pbx.seeded.tenant_id}/numbers/{did_id(world, number)}"
    out = harness.http_json(url, world.pbx.seeded.token, method="PATCH",
                            body={"destination_kind": kind, "destination": destination})
    assert out["destination_kind"] == kind, out
    wait_for_reload(world, loads)


def test_a_number_rings_several_extensions_at_once(world: World) -> None:
    """The DID rings the desk and Anna together: the desk answers, Anna's phone gets CANCEL."""
    route_did(world, DID, "ring", {"numbers": [DESK, ANNA]})
    try:
        desk = start_callee(world.pbx, DESK, "call_uas.xml", codec="PCMA")
        anna = start_callee(world.pbx, ANNA, "call_uas_ring.xml")
        try:
            result = harness.run_sipp("carrier_call_in.xml", world.pbx.target, workdir=world.pbx.workdir,
                                      rows=[["74957654321", "79161230001"]], rate=1, timeout=30,
                                      extra=["-i", "127.0.0.2", "-mi", "127.0.0.2", "-d", "500"], name="ring_group")
            assert desk.wait_for("SuccessfulCall(C)", 1, timeout=15), desk.stats()
            assert anna.wait_for("SuccessfulCall(C)", 1, timeout=15), anna.stats()  # INVITE, CANCEL, 487, ACK
        finally:
            desk.kill()
            anna.kill()
        assert_all_ok(result, 1)
    finally:
        route_did(world, DID, "extension", {"number": DESK})


def test_a_holiday_forwards_the_number_outside(world: World) -> None:
    """A time schedule: on a holiday (today, in Moscow) the number forwards to an outside number through the
    carrier, presenting the original caller's number."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    today = datetime.now(ZoneInfo("Europe/Moscow")).date().isoformat()
    route_did(world, DID, "schedule", {
        "rules": [{"days": [0, 1, 2, 3, 4, 5, 6], "from": "00:00", "to": "00:00",
                   "destination": {"kind": "extension", "number": DESK}}],
        "holidays": [today], "holiday_destination": {"kind": "external", "number": "+74951112255"},
        "default": {"kind": "extension", "number": DESK}})
    main = carrier(world, "carrier_auth_answer.xml", "127.0.0.2", world.carriers.main, "carrier_main_forward",
                   rows=[[CARRIER_USER, CARRIER_PASSWORD]])
    try:
        result = harness.run_sipp("carrier_call_in.xml", world.pbx.target, workdir=world.pbx.workdir,
                                  rows=[["74957654321", "79161230002"]], rate=1, timeout=30,
                                  extra=["-i", "127.0.0.2", "-mi", "127.0.0.2", "-d", "500"], name="holiday")
        assert main.wait_for("SuccessfulCall(C)", 1, timeout=15), main.stats()
        assert_all_ok(main.stop(), 1)
    finally:
        main.kill()
        route_did(world, DID, "extension", {"number": DESK})
    assert_all_ok(result, 1)
    assert "CALLED +74951112255 FROM +79161230002" in carrier_log(world, "carrier_main_forward")


def test_a_known_mobile_skips_the_pin(world: World) -> None:
    """Boris's own mobile calls the access number: no PIN asked, he keys only the number."""
    main = carrier(world, "carrier_answer.xml", "127.0.0.2", world.carriers.main, "carrier_main_skip")
    scenario = access_scenario(world, "access_skip", "84951112266#", HANG_UP_AFTER.format(ms=8000), "hangs up 8 s later")
    try:
        result = harness.run_sipp(scenario, world.pbx.target, workdir=world.pbx.workdir,
                                  rows=[["74957654399", BORIS_MOBILE.lstrip("+")]], rate=1, timeout=40,
                                  extra=["-i", "127.0.0.2", "-mi", "127.0.0.2"], name="access_skip")
        assert main.wait_for("SuccessfulCall(C)", 1, timeout=15), main.stats()
        assert_all_ok(main.stop(), 1)
    finally:
        main.kill()
    assert_all_ok(result, 1)
    assert "CALLED +74951112266 FROM +74957654321" in carrier_log(world, "carrier_main_skip")
    assert_billed_to_boris(world, BORIS_MOBILE, "+74951112266")


def assert_billed_to_boris(world: World, caller: str, number: str) -> None:
    """The access-number call's CDR names Boris (the PIN's or the mobile's owner) and is rated 1.00."""
    mine: list[dict[str, Any]] = []
    deadline = time.monotonic() + 15
    while not mine and time.monotonic() < deadline:
        mine = [c for c in inbound_cdrs(world, 1) if c["caller_number"] == caller]
        time.sleep(0.2)
    assert mine, f"no access-number CDR from {caller}"
    detail = harness.http_json(f"{world.pbx.server.http_url}/api/v1/tenants/{world.pbx.seeded.tenant_id}"
                               f"/cdrs/{mine[-1]['id']}", world.pbx.seeded.token)
    assert detail["caller_employee_id"] == world.ids["employees"]["Boris"], detail
    assert Decimal(str(detail["cost"])) == Decimal("1.00"), detail
    assert any(leg["number"] == number for leg in detail["legs"]), detail


def test_a_trunk_takes_no_more_calls_than_its_limit(world: World) -> None:
    """Tiny takes one call at a time: while Boris's first call to Voronezh is up, the second finds no trunk
    with room (503); the first goes on."""
    tiny = carrier(world, "carrier_answer.xml", "127.0.0.9", world.carriers.tiny, "carrier_tiny")
    first = calls.SippProcess("call_uac.xml", world.pbx.target, workdir=world.pbx.workdir, name="tiny_first",
                              rows=[calls.caller_row(BORIS, harness.password_for(BORIS), world.pbx.domain, "84731234567")],
                              calls=1, rate=1, timeout=30, auth_uri=f"sip:84731234567@{world.pbx.domain}",
                              extra=["-d", "5000"]).start()
    try:
        assert calls.wait_until(lambda: "CALLED +74731234567" in carrier_log(world, "carrier_tiny"), timeout=10)
        second = place_calls(world.pbx, BORIS, "84731234568", "call_uac_unavailable.xml", 1, rate=1)
        assert_all_ok(second, 1)
        assert first.wait_for("SuccessfulCall(C)", 1, timeout=20), first.stats()
        assert_all_ok(first.stop(), 1)
        assert_all_ok(tiny.stop(), 1)
    finally:
        first.kill()
        tiny.kill()
    assert "CALLED +74731234568" not in carrier_log(world, "carrier_tiny")
