"""Nothing lost on a crash: each test kills ``zvonok serve`` with SIGKILL (no clean stop) at the worst
moment, starts it again on the same data, and looks for what it had promised."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from zvonok.cdr.models import OpenCall
from zvonok.storage.db import Database

from .conftest import Pbx, RawSipClient, _database_url, _start_pbx, _stop_pbx, harness
from .test_calls_sipp import calls, start_callee

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
    env = {"ZVONOK_CDR_HEARTBEAT_INTERVAL": "1"}
    instance = _start_pbx(tmp_path, stem="crash", numbers=["301", "302"], env=env, use_cli=False)
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


def _open_calls(pbx: Pbx) -> list[tuple[datetime, dict[str, Any]]]:
    """The server's ``calls_open`` rows (updated_at, snapshot), read from its database."""
    async def read() -> list[tuple[datetime, dict[str, Any]]]:
        db = Database(_database_url() or f"sqlite+aiosqlite:///{(pbx.data_dir / 'zvonok.db').resolve()}")
        try:
            async with db.session() as session:
                rows = (await session.execute(select(OpenCall))).scalars().all()
                return [(row.updated_at, row.state) for row in rows if row.tenant_id == pbx.tenant_id]
        finally:
            await db.dispose()
    return asyncio.run(read())


def test_a_call_cut_by_kill_9_ends_at_its_last_heartbeat(crash_pbx: Pbx) -> None:
    callee = start_callee(crash_pbx, "302", "call_uas.xml", timeout=60)
    caller = calls.SippProcess(
        "call_uac.xml", crash_pbx.target, workdir=crash_pbx.workdir, name="caller_301", timeout=60,
        rows=[calls.caller_row("301", crash_pbx.extensions["301"], crash_pbx.domain, "302")],
        auth_uri=f"sip:302@{crash_pbx.domain}", extra=["-d", "60000"],  # talks for a minute
    ).start()
    try:
        # answered, and a heartbeat after the answer (ZVONOK_CDR_HEARTBEAT_INTERVAL=1)
        def beating() -> bool:
            rows = _open_calls(crash_pbx)
            return bool(rows) and rows[0][1].get("answered_at") is not None \
                and rows[0][0].timestamp() > rows[0][1]["answered_at"] + 0.5
        assert _wait_for(beating), crash_pbx.server.log_tail()
        (beat, _), = _open_calls(crash_pbx)
        crash_pbx.server.kill()
        killed_at = time.time()
        crash_pbx.server.start()
    finally:
        caller.kill()
        callee.kill()
    url = f"{crash_pbx.http_url}/api/v1/tenants/{crash_pbx.tenant_id}/cdrs?extension=301"
    (cdr,) = harness.http_json(url, crash_pbx.token)["items"]
    assert (cdr["disposition"], cdr["end_estimated"]) == ("interrupted", True), cdr
    ended = datetime.fromisoformat(cdr["ended_at"])
    # the end is the last heartbeat before the kill, not the restart (which came after killed_at)
    assert beat <= ended and ended.timestamp() <= killed_at, (beat, cdr["ended_at"], killed_at)


@contextmanager
def _cdrs_locked(pbx: Pbx) -> Iterator[None]:
    """Another client holds a lock that keeps the server from writing CDRs (without stopping the shared
    PostgreSQL server): SQLite's write lock (readers go on, WAL), or PostgreSQL's table lock on cdrs."""
    url = _database_url()
    if url is None:
        blocker = sqlite3.connect(pbx.data_dir / "zvonok.db", isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        return
    import asyncpg

    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://")))
    try:
        loop.run_until_complete(conn.execute("BEGIN; LOCK TABLE cdrs IN ACCESS EXCLUSIVE MODE"))
        yield
    finally:
        loop.run_until_complete(conn.close())  # ends the transaction: the lock goes with it
        loop.close()


def test_a_cdr_journaled_while_the_database_is_locked_survives_kill_9(crash_pbx: Pbx) -> None:
    """The database refuses the CDR writer (another client holds a lock: the server cannot commit),
    the call ends, the server dies before it could write the CDR: the journal brings it back at start."""
    journal = crash_pbx.data_dir / "cdr-journal.jsonl"
    callee = start_callee(crash_pbx, "302", "call_uas.xml", timeout=30)
    with _cdrs_locked(crash_pbx):
        caller = calls.SippProcess(
            "call_uac.xml", crash_pbx.target, workdir=crash_pbx.workdir, name="caller_301", timeout=30,
            rows=[calls.caller_row("301", crash_pbx.extensions["301"], crash_pbx.domain, "302")],
            auth_uri=f"sip:302@{crash_pbx.domain}", extra=["-d", "1000"],
        ).start()
        try:
            def journaled() -> bool:
                lines = journal.read_text().splitlines() if journal.exists() else []
                return any(json.loads(line)["kind"] == "write" for line in lines if line.endswith("}"))
            assert _wait_for(journaled, timeout=30), crash_pbx.server.log_tail()
            crash_pbx.server.kill()
        finally:
            caller.kill()
            callee.kill()
    crash_pbx.server.start()
    url = f"{crash_pbx.http_url}/api/v1/tenants/{crash_pbx.tenant_id}/cdrs?extension=301"
    (cdr,) = harness.http_json(url, crash_pbx.token)["items"]
    assert (cdr["disposition"], cdr["callee_number"], cdr["end_estimated"]) == ("answered", "302", False), cdr
    assert journal.read_bytes() == b""
