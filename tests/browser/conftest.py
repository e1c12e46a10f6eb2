"""Fixtures for browser tests: a real ``zvonok serve`` with the demo company, and Debian's Chromium
driven by Playwright (never a downloaded browser: ``make peers`` installs the ``chromium`` package).

Screenshots go to ``$ZVONOK_TEST_ARTIFACTS`` (default ``tests/artifacts/``, not committed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("zvonok_bench_common", _ROOT / "bench" / "_common.py")
assert _spec is not None and _spec.loader is not None
harness = sys.modules.get(_spec.name) or importlib.util.module_from_spec(_spec)
if _spec.name not in sys.modules:
    sys.modules[_spec.name] = harness  # dataclasses resolve annotations through sys.modules
    _spec.loader.exec_module(harness)

CHROMIUM = "/usr/bin/chromium"
# Headless and quiet: no GPU, no sandbox (containers), no calls home (updates, sync, QUIC probes).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass
class Console:
    """The running server and the demo company's admin login."""

    server: Any  # harness.ZvonokServer
    url: str
    domain: str
    tenant_id: int
    admin_login: str
    admin_password: str
    workdir: Path

    def register(self, number: str, password: str, *, local_port: int, scenario: str = "register.xml") -> Any:
        """Register (or with ``unregister.xml`` unregister) SIPp as extension ``number``; the same
        ``local_port`` is the same Contact, so an unregister removes an earlier registration."""
        return harness.run_sipp(scenario, f"127.0.0.1:{self.server.sip_port}", workdir=self.workdir,
                                rows=[harness.sipp_row(number, password, self.domain)], rate=10,
                                local_port=local_port,
                                auth_uri=f"sip:{self.domain}", name=f"{Path(scenario).stem}_{number}")


def log_in(page: Any, console: Console, *, english: bool = True) -> None:
    """Log in to the console as the demo company's admin; ``english``: switch the page to English (the demo
    company speaks Russian)."""
    page.goto(console.url + "/login")
    page.fill("#email", console.admin_login)
    page.fill("#password", console.admin_password)
    page.click("main form button[type=submit]")
    page.wait_for_url(console.url + "/")
    if english and page.locator("html").get_attribute("lang") != "en":
        page.click("button[name=lang][value=en]")
        page.wait_for_selector("html[lang=en]")


@pytest.fixture(scope="session", autouse=True)
def _migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One migrated SQLite file per session that every server's new data directory starts as a copy of
    (``harness.sqlite_template``, as in the integration tests); the servers on PostgreSQL migrate their own."""
    import asyncio

    from zvonok.storage.db import Database

    async def migrate(url: str) -> None:
        database = Database(url)
        try:
            await database.upgrade()
        finally:
            await database.dispose()  # SQLite folds its WAL back into the file

    path = tmp_path_factory.mktemp("template") / "zvonok.db"
    asyncio.run(migrate(f"sqlite+aiosqlite:///{path}"))
    harness.sqlite_template = path
    try:
        yield
    finally:
        harness.sqlite_template = None


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = Path(os.environ.get("ZVONOK_TEST_ARTIFACTS") or _ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    if shutil.which("sipp") is None or not Path(CHROMIUM).exists():
        pytest.fail("SIPp and Debian's chromium are needed: `make peers` installs them")
    tmp = tmp_path_factory.mktemp("web")
    domain = f"web-{secrets.token_hex(3)}.test"
    server = harness.ZvonokServer(data_dir=tmp / "data", database_url=os.environ.get("ZVONOK_TEST_DATABASE_URL") or None,
                                  env={"ZVONOK_DEMO_DOMAIN": domain})
    demo = json.loads(server.cli("demo", "--no-serve", "--json"))
    server.start()
    try:
        yield Console(server=server, url=server.http_url, domain=domain, tenant_id=int(demo["tenant_id"]),
                      admin_login=demo["admin_login"], admin_password=demo["admin_password"], workdir=tmp / "sipp")
    finally:
        code = server.stop()
        assert code == 0, f"zvonok serve exited with {code}:\n{server.log_tail()}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser profile (no cookies) speaking English, on a laptop-sized screen."""
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 860})
    context.set_default_timeout(20_000)
    try:
        yield context.new_page()
    finally:
        context.close()
