"""Presence with a real softphone: baresip's ``presence`` module subscribes (digest-authenticated, through
its outbound proxy) to a contact marked ``;presence=p2p`` and shows what our PIDF NOTIFYs say. The
watched extension is offline (``closed``), registers (``open``: baresip says Online), is in an answered
call (the RPID ``on-the-phone`` activity: Busy), and hangs up (Online again).
"""

from __future__ import annotations

import re
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .baresip import Baresip

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]  # loaded by conftest.py (bench/_common.py)

WATCHER, B, C = "6501", "6502", "6503"


class Softphone(Baresip):
    """baresip that reads the ``contacts`` listing (the presence it shows for each contact)."""

    def contacts(self) -> str:
        self.responses = [r for r in self.responses if r.get("token") != "contacts"]
        self.command("contacts")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for r in self.responses:
                if r.get("token") == "contacts":
                    return str(r.get("data", ""))
            try:
                self.wait_event({"__none__"}, timeout=0.2)
            except TimeoutError:
                pass
        raise TimeoutError(f"no contacts listing\n{self.log()}")

    def wait_presence(self, number: str, status: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        listing = ""
        while time.monotonic() < deadline:
            listing = re.sub(r"\x1b\[[0-9;]*m", "", self.contacts())  # its colours
            line = next((ln for ln in listing.splitlines() if f"sip:{number}@" in ln), "")
            if re.search(rf"\b{status}\b", line):
                return line
            time.sleep(0.3)
        raise AssertionError(f"{number} never showed {status}: {listing!r}\n{self.log()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    tmp = tmp_path_factory.mktemp("blf_baresip")
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(
        tmp / "data",
        domain=f"presence-{secrets.token_hex(3)}.test",
        numbers=[WATCHER, B, C],
        database_url=database_url,
    )
    srv = harness.ZvonokServer(data_dir=tmp / "data", database_url=database_url)
    srv.start()
    try:
        yield srv, seeded
    finally:
        assert srv.stop() == 0, srv.log_tail()


def softphone(
    started: list[Baresip],
    tmp: Path,
    server: tuple[Any, Any],
    number: str,
    *,
    watch: str | None = None,
    auto_answer: bool = False,
) -> Softphone:
    srv, seeded = server
    account = (
        f"<sip:{number}@{seeded.domain}>;auth_pass={harness.password_for(number)};"
        f'outbound="sip:127.0.0.1:{srv.sip_port}";regint=600' + (";answermode=auto" if auto_answer else "")
    )
    config = []
    if watch is not None:
        (tmp / f"phone{number}").mkdir(parents=True, exist_ok=True)
        (tmp / f"phone{number}" / "contacts").write_text(f'"B" <sip:{watch}@{seeded.domain}>;presence=p2p\n')
        config = ["module_app contact.so", "module_app presence.so"]
    p = Softphone(tmp / f"phone{number}", account, config=config)
    started.append(p)
    p.start()
    p.wait_event({"REGISTER_OK"})
    return p


def test_baresip_sees_offline_online_busy(
    phones: list[Baresip], tmp_path: Path, server: tuple[Any, Any]
) -> None:
    watcher = softphone(phones, tmp_path, server, WATCHER, watch=B)
    watcher.wait_presence(B, "Offline")  # subscribed: B has no registered device (basic closed)
    b = softphone(phones, tmp_path, server, B)
    watcher.wait_presence(B, "Online")  # B registered: open
    c = softphone(phones, tmp_path, server, C, auto_answer=True)
    b.command("dial", C)
    c.wait_event({"CALL_ESTABLISHED"})
    watcher.wait_presence(B, "Busy")  # on-the-phone
    b.command("hangup")
    c.wait_event({"CALL_CLOSED"})
    watcher.wait_presence(B, "Online")
