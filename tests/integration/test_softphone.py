"""A real softphone (baresip) registers to a running ``zvonok serve``; the REST API shows it."""

from __future__ import annotations

import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .baresip import Baresip

harness: Any = sys.modules["zvonok_bench_common"]  # loaded by conftest.py (bench/_common.py)

NUMBERS = ["601", "602", "603", "604"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    if shutil.which("baresip") is None:
        pytest.fail("baresip is not installed: `make test` installs it (apt-get install baresip)")
    data_dir = tmp_path_factory.mktemp("softphone") / "data"
    domain = f"soft-{secrets.token_hex(3)}.test"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(data_dir, domain=domain, numbers=NUMBERS, database_url=database_url)
    srv = harness.ZvonokServer(data_dir=data_dir, database_url=database_url,
                               env={"ZVONOK_SIP_DEFAULT_DOMAIN": domain})
    srv.start()
    try:
        yield srv, seeded
    finally:
        assert srv.stop() == 0, srv.log_tail()


def registered(srv: Any, seeded: Any, number: str) -> list[dict[str, Any]]:
    return [r for r in srv.registrations(seeded.tenant_id, seeded.token)
            if r["aor"].split("@")[0].removeprefix("sip:") == number]


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[list[Baresip]]:
    started: list[Baresip] = []
    yield started
    for phone in started:
        phone.stop()


def start_phone(phones: list[Baresip], tmp_path: Path, account: str) -> Baresip:
    phone = Baresip(tmp_path / f"phone{len(phones)}", account)
    phones.append(phone)
    phone.start()
    return phone


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_baresip_registers_and_unregisters(server: tuple[Any, Any], phones: list[Baresip], tmp_path: Path,
                                           transport: str) -> None:
    srv, seeded = server
    number = "601" if transport == "udp" else "602"
    account = (f"<sip:{number}@{seeded.domain};transport={transport}>;auth_pass={harness.password_for(number)};"
               f'outbound="sip:127.0.0.1:{srv.sip_port};transport={transport}";regint=600')
    phone = start_phone(phones, tmp_path, account)
    phone.wait_event({"REGISTER_OK"})
    (binding,) = registered(srv, seeded, number)
    assert binding["user_agent"].startswith("baresip")
    assert binding["source"].startswith(f"{transport}:127.0.0.1:")
    assert binding["contact"].startswith(f"sip:{number}")
    assert 590 <= binding["expires_in"] <= 600
    phone.stop()  # baresip unregisters (Expires: 0) when it quits
    assert registered(srv, seeded, number) == []


def test_baresip_with_wrong_password_is_refused(server: tuple[Any, Any], phones: list[Baresip],
                                                tmp_path: Path) -> None:
    srv, seeded = server
    account = (f"<sip:603@{seeded.domain}>;auth_pass=wrong-password;"
               f'outbound="sip:127.0.0.1:{srv.sip_port}";regint=600')
    phone = start_phone(phones, tmp_path, account)
    event = phone.wait_event({"REGISTER_FAIL", "REGISTER_OK"})
    assert event["type"] == "REGISTER_FAIL"
    assert "403" in event.get("param", ""), event
    assert registered(srv, seeded, "603") == []


def test_baresip_given_only_the_server_address(server: tuple[Any, Any], phones: list[Baresip],
                                               tmp_path: Path) -> None:
    """A phone set up with the server's IP as its domain lands in the default tenant."""
    srv, seeded = server
    account = f"<sip:604@127.0.0.1:{srv.sip_port}>;auth_pass={harness.password_for('604')};regint=600"
    phone = start_phone(phones, tmp_path, account)
    phone.wait_event({"REGISTER_OK"})
    (binding,) = registered(srv, seeded, "604")
    assert binding["aor"] == f"604@{seeded.domain}"
