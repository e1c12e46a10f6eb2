"""Call pickup and call park with real softphones (pjsua2) through a running Zvonok, audio checked by FFT.

A (631) sends 440 Hz, B (632) 1000 Hz, C (633) 1500 Hz; B and C share the pickup group "ops".
Pickup: A calls B, B's phone rings, C dials *8: B's phone stops ringing (CANCEL "Call completed
elsewhere"), A and C hear each other. Park: A calls B, B transfers A to 700 (REFER): A waits in slot 701
(the REST list shows it), C dials 701 and A and C hear each other. Left parked, A's call rings B back
after the park timeout and B hears A again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from . import pjsua_fixtures
from .pjsua_fixtures import PhoneFactory
from .pjsua_phone import PjsuaPhone
from .test_calls_softphone import calls_server, cdrs, dominant_frequency, harness

pytestmark = pytest.mark.integration

pjsua_phones = pjsua_fixtures.pjsua_phones

A, B, C = "631", "632", "633"  # not 701-720: those are the park slots
TONES = {A: 440, B: 1000, C: 1500}
PARK_TIMEOUT = 8  # seconds: short, so that the ring-back test does not wait two minutes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    with calls_server(tmp_path_factory, "pickpark", [A, B, C], {"ZVONOK_CALL_NO_ANSWER_TIMEOUT": "30",
                                                                    "ZVONOK_PARK_TIMEOUT": str(PARK_TIMEOUT)}) as running:
        srv, seeded = running
        base = f"{srv.http_url}/api/v1/tenants/{seeded.tenant_id}/extensions"
        for ext in harness.http_json(base, seeded.token)["items"]:
            if ext["number"] in (B, C):
                changed = harness.http_json(f"{base}/{ext['id']}", seeded.token, method="PATCH",
                                            body={"pickup_group": "ops"})
                assert changed["pickup_group"] == "ops"
        yield running


def registered(phones: PhoneFactory, server: tuple[Any, Any], number: str, **options: Any) -> PjsuaPhone:
    srv, seeded = server
    phone = phones(number, tone=TONES[number])
    phone.register(number, harness.password_for(number), seeded.domain, f"127.0.0.1:{srv.sip_port}", **options)
    return phone


def parked_calls(server: tuple[Any, Any]) -> list[dict[str, Any]]:
    srv, seeded = server
    result: list[dict[str, Any]] = harness.http_json(
        f"{srv.http_url}/api/v1/tenants/{seeded.tenant_id}/parked-calls", seeded.token)
    return result


def test_group_pickup(server: tuple[Any, Any], pjsua_phones: PhoneFactory) -> None:
    srv, seeded = server
    a = registered(pjsua_phones, server, A)
    b = registered(pjsua_phones, server, B)  # rings, never answers
    c = registered(pjsua_phones, server, C)
    ab = a.call(f"sip:{B}@{seeded.domain}")
    ba = b.wait_incoming()
    b.wait_state(ba, "INCOMING")
    ca = c.call(f"sip:*8@{seeded.domain}")
    c.wait_state(ca, "CONFIRMED")
    a.wait_state(ab, "CONFIRMED")
    b.wait_ended(ba)  # our CANCEL
    cancel = next(m for m in b.sip_messages() if m.direction == "RX" and m.method == "CANCEL")
    assert "Call completed elsewhere" in (cancel.header("Reason") or ""), cancel.text
    time.sleep(3)
    a.hangup(ab)
    a.wait_ended(ab)
    c.wait_ended(ca)  # our BYE
    assert abs(dominant_frequency(a.recording(ab), last=2.0) - TONES[C]) < 20
    assert abs(dominant_frequency(c.recording(ca), last=2.0) - TONES[A]) < 20
    cdr = cdrs(server, A, 1)[-1]
    assert (cdr["callee_number"], cdr["disposition"]) == (C, "answered")  # the picker answered


def test_park_and_retrieve(server: tuple[Any, Any], pjsua_phones: PhoneFactory) -> None:
    srv, seeded = server
    a = registered(pjsua_phones, server, A)
    b = registered(pjsua_phones, server, B, auto_answer=True)
    c = registered(pjsua_phones, server, C)
    ab = a.call(f"sip:{B}@{seeded.domain}")
    a.wait_state(ab, "CONFIRMED")
    ba = b.wait_incoming()
    b.wait_state(ba, "CONFIRMED")
    b.xfer(ba, f"sip:700@{seeded.domain}")
    assert b.wait_transfer(ba)["code"] == 200
    b.wait_ended(ba)  # the server's BYE: B is out of the call
    deadline = time.monotonic() + 10
    while not (parked := parked_calls(server)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [(p["slot"], p["number"], p["parked_by"]) for p in parked] == [(701, A, B)]
    time.sleep(1.0)  # A hears the music on hold meanwhile
    ca = c.call(f"sip:701@{seeded.domain}")
    c.wait_state(ca, "CONFIRMED")
    assert parked_calls(server) == []
    time.sleep(3)
    a.hangup(ab)
    a.wait_ended(ab)
    c.wait_ended(ca)
    assert abs(dominant_frequency(a.recording(ab), last=2.0) - TONES[C]) < 20
    assert abs(dominant_frequency(c.recording(ca), last=2.0) - TONES[A]) < 20


def test_a_parked_call_rings_back_the_parker(server: tuple[Any, Any], pjsua_phones: PhoneFactory) -> None:
    srv, seeded = server
    a = registered(pjsua_phones, server, A)
    b = registered(pjsua_phones, server, B, auto_answer=True)
    ab = a.call(f"sip:{B}@{seeded.domain}")
    a.wait_state(ab, "CONFIRMED")
    ba = b.wait_incoming()
    b.wait_state(ba, "CONFIRMED")
    b.xfer(ba, f"sip:700@{seeded.domain}")
    assert b.wait_transfer(ba)["code"] == 200
    b.wait_ended(ba)
    back = b.wait_incoming(timeout=PARK_TIMEOUT + 10)  # nobody took it: B's phone rings again
    b.wait_state(back, "CONFIRMED")
    assert parked_calls(server) == []
    incoming = next(e for e in b.history if e.get("event") == "incoming_call" and e.get("call") == back)
    assert f"sip:{A}@" in incoming["remote_uri"]  # the parked party calls
    time.sleep(3)
    b.hangup(back)
    b.wait_ended(back)
    a.wait_ended(ab)
    assert abs(dominant_frequency(a.recording(ab), last=2.0) - TONES[B]) < 20
    assert abs(dominant_frequency(b.recording(back), last=2.0) - TONES[A]) < 20
