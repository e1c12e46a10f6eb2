"""Call forwarding and DND with real softphones (baresip) through a running Zvonok, audio checked by FFT.

A (721) sends 440 Hz, C (723) 1000 Hz. B (722) forwards unconditionally to C: A's call is answered by
C and each hears the other's tone. Then B forwards on busy: B rejects (486) and C answers. D (724) turns
DND on from its phone (*78) and A gets busy; *79 turns it off again.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .baresip import Baresip
from .test_calls_softphone import calls_server, cdrs, dominant_frequency, phone

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]  # loaded by conftest.py (bench/_common.py)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    with calls_server(tmp_path_factory, "fwd", ["721", "722", "723", "724"],
                      {"ZVONOK_CALL_NO_ANSWER_TIMEOUT": "30"}) as running:
        yield running


def _url(server: tuple[Any, Any], number: str) -> str:
    srv, seeded = server
    base = f"{srv.http_url}/api/v1/tenants/{seeded.tenant_id}"
    items = harness.http_json(f"{base}/extensions?q={number}", seeded.token)["items"]
    ext = next(e for e in items if e["number"] == number)
    return f"{base}/extensions/{ext['id']}/forwarding"


def set_forwarding(server: tuple[Any, Any], number: str, **settings: Any) -> dict[str, Any]:
    result: dict[str, Any] = harness.http_json(_url(server, number), server[1].token, method="PUT", body=settings)
    return result


def get_forwarding(server: tuple[Any, Any], number: str) -> dict[str, Any]:
    result: dict[str, Any] = harness.http_json(_url(server, number), server[1].token)
    return result


def test_unconditional_forward_connects_the_caller_with_the_target(
        server: tuple[Any, Any], phones: list[Baresip], tmp_path: Path) -> None:
    srv, seeded = server
    assert set_forwarding(server, "722", unconditional="723")["unconditional"] == "723"
    a = phone(phones, tmp_path, server, "721", frequency=440, record=True)
    b = phone(phones, tmp_path, server, "722", frequency=700)
    c = phone(phones, tmp_path, server, "723", frequency=1000, auto_answer=True, record=True)
    a.command("dial", f"sip:722@{seeded.domain}")
    a.wait_event({"CALL_ESTABLISHED"})
    c.wait_event({"CALL_ESTABLISHED"})
    time.sleep(3)
    a.command("hangup")
    a.wait_event({"CALL_CLOSED"})
    c.wait_event({"CALL_CLOSED"})
    with pytest.raises(TimeoutError):
        b.wait_event({"CALL_INCOMING"}, timeout=0.5)  # B's phone never rang
    a.stop()
    c.stop()
    (heard_by_a,) = a.received_audio()
    (heard_by_c,) = c.received_audio()
    assert abs(dominant_frequency(heard_by_a) - 1000) < 20
    assert abs(dominant_frequency(heard_by_c) - 440) < 20
    cdr = cdrs(server, "721", 1)[-1]
    assert (cdr["callee_number"], cdr["forwarded_from"], cdr["disposition"]) == ("723", "722", "answered")


def test_busy_forward_and_dnd(server: tuple[Any, Any], phones: list[Baresip], tmp_path: Path) -> None:
    srv, seeded = server
    set_forwarding(server, "722", busy="723")
    a = phone(phones, tmp_path, server, "721")
    b = phone(phones, tmp_path, server, "722")
    c = phone(phones, tmp_path, server, "723", auto_answer=True)
    d = phone(phones, tmp_path, server, "724")
    # B rejects (baresip answers 486 to a hangup while ringing): the call goes on to C
    a.command("dial", f"sip:722@{seeded.domain}")
    b.wait_event({"CALL_INCOMING"})
    b.command("hangup")
    c.wait_event({"CALL_ESTABLISHED"})
    a.wait_event({"CALL_ESTABLISHED"})
    a.command("hangup")
    c.wait_event({"CALL_CLOSED"})
    a.wait_event({"CALL_CLOSED"})
    # D dials *78: we answer, beep and hang up; D's extension is then in DND
    d.command("dial", f"sip:*78@{seeded.domain}")
    d.wait_event({"CALL_ESTABLISHED"})
    d.wait_event({"CALL_CLOSED"})
    assert get_forwarding(server, "724")["dnd"] is True
    a.command("dial", f"sip:724@{seeded.domain}")
    closed = a.wait_event({"CALL_CLOSED"})
    assert "486" in closed.get("param", ""), closed
    with pytest.raises(TimeoutError):
        d.wait_event({"CALL_INCOMING"}, timeout=0.5)
    # *79: DND off, D rings again
    d.command("dial", f"sip:*79@{seeded.domain}")
    d.wait_event({"CALL_ESTABLISHED"})
    d.wait_event({"CALL_CLOSED"})
    assert get_forwarding(server, "724")["dnd"] is False
    a.command("dial", f"sip:724@{seeded.domain}")
    d.wait_event({"CALL_INCOMING"})
    a.command("hangup")
    d.wait_event({"CALL_CLOSED"})
