"""Ring groups through a running Zvonok, with SIPp phones as the members and the caller.

Hunt: the group's first member (a SIPp that rings and never answers) rings for the group's ring time, is
cancelled (it gets our CANCEL, answers 487, gets the ACK), and the second member (a SIPp that answers)
takes the call. Round robin: three calls to a group of two answering members go A, B, A — each call
starts after the member who answered the one before (the group's memory, which the API shows).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .test_calls_sipp import Pbx, assert_all_ok, finish_callee, harness, place_calls, start_callee

pytestmark = pytest.mark.integration

HUNT = ("6201", "6202", "6203")  # ringing-only member, answering member, caller
ROBIN = ("6204", "6205", "6206")  # two answering members, caller
NUMBERS = [*HUNT, *ROBIN]


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pbx]:
    if harness.shutil.which("sipp") is None:
        pytest.fail("SIPp (Debian sip-tester) is not installed: `make test` installs it")
    tmp = tmp_path_factory.mktemp("ring_groups_sipp")
    data_dir = tmp / "data"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(data_dir, domain=f"ring-groups-{secrets.token_hex(3)}.test", numbers=NUMBERS,
                          database_url=database_url)
    server = harness.ZvonokServer(data_dir=data_dir, database_url=database_url,
                                  env={"ZVONOK_CALL_NO_ANSWER_TIMEOUT": "30", "ZVONOK_INVITE_RATE_LIMIT": "1000"})
    server.start()
    try:
        yield Pbx(server=server, seeded=seeded, workdir=tmp / "sipp")
    finally:
        code = server.stop()
        assert code == 0, f"zvonok serve exited with {code} on SIGTERM:\n{server.log_tail()}"


def create_group(pbx: Pbx, body: dict[str, Any]) -> dict[str, Any]:
    url = f"{pbx.server.http_url}/api/v1/tenants/{pbx.seeded.tenant_id}/ring-groups"
    group: dict[str, Any] = harness.http_json(url, pbx.seeded.token, method="POST", body=body)
    return group


def test_hunt_reaches_the_second_member_when_the_first_does_not_answer(pbx: Pbx) -> None:
    ringing, answering, caller = HUNT
    create_group(pbx, {"number": "690", "name": "Support", "strategy": "hunt", "members": [ringing, answering],
                       "ring_seconds": 5})
    first = start_callee(pbx, ringing, "call_uas_ring.xml")
    second = start_callee(pbx, answering, "call_uas.xml")
    try:
        started = time.monotonic()
        result = place_calls(pbx, caller, "690", "call_uac.xml", 1, rate=1, timeout=40)
        elapsed = time.monotonic() - started
        first_result = finish_callee(first, 1)
        second_result = finish_callee(second, 1)
    finally:
        first.kill()
        second.kill()
    assert_all_ok(result, 1)  # the caller got the second member's answer
    assert_all_ok(first_result, 1)  # the first member rang, then got our CANCEL (487, ACK)
    assert_all_ok(second_result, 1)  # the second member answered and got the BYE
    assert elapsed >= 5, elapsed  # the first member rang its full ring time before the second was tried
    (cdr,) = pbx.cdrs(caller, 1)
    assert (cdr["callee_number"], cdr["ring_group"], cdr["disposition"]) == (answering, "690", "answered"), cdr
    assert cdr["dialed_number"] == "690"


def test_round_robin_starts_after_the_member_who_answered_last(pbx: Pbx) -> None:
    a, b, caller = ROBIN
    group = create_group(pbx, {"number": "691", "name": "Sales", "strategy": "round_robin", "members": [a, b],
                               "ring_seconds": 10})
    member_a = start_callee(pbx, a, "call_uas.xml", timeout=60)
    member_b = start_callee(pbx, b, "call_uas.xml", timeout=60)
    try:
        for _ in range(3):  # one call at a time: each sees the memory the one before left
            assert_all_ok(place_calls(pbx, caller, "691", "call_uac.xml", 1, rate=1, timeout=30, hold_ms=500), 1)
        result_a = finish_callee(member_a, 2)
        result_b = finish_callee(member_b, 1)
    finally:
        member_a.kill()
        member_b.kill()
    assert_all_ok(result_a, 2)
    assert_all_ok(result_b, 1)
    cdrs = pbx.cdrs(caller, 3)
    assert [c["callee_number"] for c in cdrs] == [a, b, a], cdrs
    assert all(c["ring_group"] == "691" for c in cdrs), cdrs
    url = f"{pbx.server.http_url}/api/v1/tenants/{pbx.seeded.tenant_id}/ring-groups/{group['id']}"
    assert harness.http_json(url, pbx.seeded.token)["last_answered"] == a
