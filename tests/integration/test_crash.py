"""Nothing lost on a crash: each test kills ``zvonok serve`` with SIGKILL (no clean stop) at the worst
moment, starts it again on the same data, and looks for what it had promised."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import Pbx, RawSipClient, _start_pbx, _stop_pbx

pytestmark = pytest.mark.integration


def _wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def crash_pbx(tmp_path: Path) -> Iterator[Pbx]:
    """A server of its own: these tests kill it."""
    instance = _start_pbx(tmp_path, stem="crash", numbers=["301", "302"], env={}, use_cli=False)
    try:
        yield instance
    finally:
        _stop_pbx(instance)


def test_a_registration_answered_200_survives_kill_9(crash_pbx: Pbx) -> None:
    client = RawSipClient(crash_pbx.sip_port)
    try:
        _, final = client.register("301", crash_pbx.domain, crash_pbx.extensions["301"], expires=3600)
    finally:
        client.close()
    assert final is not None and final.status == 200
    crash_pbx.server.kill()  # at once: the 200 promised the binding is stored
    crash_pbx.server.start()
    bindings = crash_pbx.registrations_of(["301"]).get("301", [])
    assert [b["contact"] for b in bindings] == [f"sip:301@127.0.0.1:{client.port}"]
