"""The command line, run in-process through ``zvonok.cli.main``."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from zvonok.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def dd(tmp_path: Path) -> list[str]:
    return ["--data-dir", str(tmp_path / "data"), "--log-level", "warning"]


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for cmd in ("serve", "demo", "db", "tenant", "extension", "token", "admin"):
        assert cmd in out
    code, out, _ = run(capsys, "extension", "add", "--help")
    assert code == 0 and "--tenant DOMAIN" in out and "generated" in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys)[0] == 2
    code, _, err = run(capsys, "tenant", "create", "--name", "X")
    assert code == 2 and "--domain" in err


def test_tenant_and_extension_flow(capsys: pytest.CaptureFixture[str], dd: list[str]) -> None:
    code, out, _ = run(capsys, *dd, "db", "upgrade")
    assert code == 0 and "up to date" in out
    code, out, err = run(capsys, *dd, "tenant", "create", "--name", "Acme", "--domain", "Acme.Example",
                         "--timezone", "Europe/Moscow", "--currency", "rub", "--locale", "ru-RU")
    assert code == 0, err
    assert "acme.example" in out
    code, out, _ = run(capsys, *dd, "tenant", "list", "--json")
    [tenant] = json.loads(out)
    assert (tenant["sip_domain"], tenant["currency"], tenant["timezone"]) == ("acme.example", "RUB", "Europe/Moscow")

    code, out, err = run(capsys, *dd, "tenant", "create", "--name", "Again", "--domain", "acme.example")
    assert (code, out) == (1, "")
    assert err == "zvonok: error: sip_domain acme.example is already in use\n"
    code, _, err = run(capsys, *dd, "tenant", "create", "--name", "Bad", "--domain", "b.example", "--timezone", "Nowhere/X")
    assert code == 1 and err.startswith("zvonok: error: timezone:") and "Traceback" not in err

    code, out, _ = run(capsys, *dd, "extension", "add", "--tenant", "acme.example", "--number", "101", "--name", "Ivan")
    assert code == 0 and "SIP password:" in out
    code, out, _ = run(capsys, *dd, "extension", "add", "--tenant", "acme.example", "--number", "102", "--name", "Desk",
                       "--password", "pw-123456", "--json")
    added = json.loads(out)
    assert added["number"] == "102" and added["sip_password"] is None
    code, _, err = run(capsys, *dd, "extension", "add", "--tenant", "acme.example", "--number", "101", "--name", "Dup")
    assert code == 1 and err == "zvonok: error: extension number 101 already exists\n"
    code, _, err = run(capsys, *dd, "extension", "add", "--tenant", "nope.example", "--number", "101", "--name", "X")
    assert code == 1 and "no tenant with domain nope.example" in err
    code, out, _ = run(capsys, *dd, "extension", "list", "--tenant", "acme.example", "--json")
    assert [e["number"] for e in json.loads(out)] == ["101", "102"]
    code, out, _ = run(capsys, *dd, "extension", "list", "--tenant", "acme.example")
    assert "Ivan" in out and "Desk" in out


def test_tokens_and_admins(capsys: pytest.CaptureFixture[str], dd: list[str]) -> None:
    run(capsys, *dd, "tenant", "create", "--name", "Acme", "--domain", "acme.example")
    code, out, _ = run(capsys, *dd, "token", "create", "--name", "ops")
    assert code == 0 and out.strip().startswith("zv_")
    code, out, _ = run(capsys, *dd, "token", "create", "--name", "crm", "--tenant", "acme.example", "--role", "employee")
    assert code == 0 and out.strip().startswith("zv_")
    code, _, err = run(capsys, *dd, "token", "create", "--name", "bad", "--role", "employee")
    assert code == 1 and "need" in err
    code, out, _ = run(capsys, *dd, "admin", "create", "--email", "Root@Example.com", "--password", "root-password")
    assert code == 0 and "root@example.com" in out
    code, _, _ = run(capsys, *dd, "admin", "create", "--email", "boss@acme.example", "--tenant", "acme.example",
                     "--password", "boss-password")
    assert code == 0
    code, _, err = run(capsys, *dd, "admin", "create", "--email", "root@example.com", "--password", "root-password")
    assert code == 1 and "already exists" in err
    code, _, err = run(capsys, *dd, "admin", "create", "--email", "x@example.com", "--password", "short")
    assert code == 1 and "password" in err


def test_demo_json_is_idempotent(capsys: pytest.CaptureFixture[str], dd: list[str]) -> None:
    code, out, err = run(capsys, *dd, "demo", "--no-serve", "--json")
    assert code == 0, err
    first = json.loads(out)
    code, out, _ = run(capsys, *dd, "demo", "--no-serve", "--json")
    assert json.loads(out) == first
    assert first["domain"] == "demo.zvonok.local"
    assert [e["number"] for e in first["extensions"]] == ["101", "102", "103", "104"]
    assert first["admin_login"] == "admin@demo.zvonok.local" and first["api_token"].startswith("zv_")
    code, out, _ = run(capsys, *dd, "demo", "--no-serve", "--sip-port", "5080")
    assert "127.0.0.1:5080" in out and first["extensions"][0]["password"] in out and "/docs" in out
    # TLS with a self-signed pair made once into the data directory (kept on the next run)
    cert = Path(dd[1]) / "tls" / "cert.pem"
    assert "127.0.0.1:5061" in out and "transport=tls" in out and str(cert) in out
    pem = cert.read_text()
    assert "BEGIN CERTIFICATE" in pem and (cert.parent / "key.pem").stat().st_mode & 0o077 == 0
    run(capsys, *dd, "demo", "--no-serve")
    assert cert.read_text() == pem
    code, out, _ = run(capsys, *dd, "demo", "--no-serve", "--sip-host", "::1", "--sip-port", "5080")
    assert code == 0 and 'outbound="sip:[::1]:5080"' in out and "sip:[::1]:5061;transport=tls" in out, out
    code, out, _ = run(capsys, *dd, "extension", "list", "--tenant", "demo.zvonok.local", "--json")
    assert len(json.loads(out)) == 4


@pytest.mark.postgres
def test_cli_on_postgres(capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_database_url: str) -> None:
    """The same commands against PostgreSQL (``--database-url``)."""
    base = ["--data-dir", str(tmp_path / "data"), "--database-url", pg_database_url]
    code, _, err = run(capsys, *base, "tenant", "create", "--name", "Acme", "--domain", "acme.example")
    assert code == 0, err
    code, out, _ = run(capsys, *base, "extension", "add", "--tenant", "acme.example", "--number", "101", "--name", "I",
                       "--password", "pw-123456", "--json")
    assert code == 0
    code, out, _ = run(capsys, *base, "demo", "--no-serve", "--json")
    assert code == 0 and json.loads(out)["domain"] == "demo.zvonok.local"

    async def ha1() -> str | None:
        from zvonok.org.service import sip_credentials
        from zvonok.storage.db import Database

        db = Database(pg_database_url)
        try:
            async with db.session() as session:
                creds = await sip_credentials(session, "acme.example", "101")
                return creds.ha1_md5 if creds else None
        finally:
            await db.dispose()

    assert asyncio.run(ha1()) == hashlib.md5(b"101:acme.example:pw-123456").hexdigest()


def test_serve_calls_server_run(capsys: pytest.CaptureFixture[str], dd: list[str], monkeypatch: Any) -> None:
    """``serve`` hands the merged settings to ``zvonok.server.run`` (imported lazily)."""
    import sys
    import types

    seen: list[Any] = []
    fake = types.ModuleType("zvonok.server")
    fake.run = seen.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zvonok.server", fake)
    code, _, _ = run(capsys, *dd, "serve", "--sip-port", "0", "--http-port", "0", "--sip-host", "127.0.0.2")
    assert code == 0
    [settings] = seen
    assert (settings.sip_port, settings.http_port, settings.sip_host) == (0, 0, "127.0.0.2")


def test_extension_passwd_changes_the_password_and_announces_it(capsys: pytest.CaptureFixture[str],
                                                                 dd: list[str]) -> None:
    """``extension passwd``: the new HA1 is stored, and the change is in change_log for the running server."""
    run(capsys, *dd, "tenant", "create", "--name", "Acme", "--domain", "acme.example")
    run(capsys, *dd, "extension", "add", "--tenant", "acme.example", "--number", "101", "--name", "I",
        "--password", "pw-123456")
    code, out, err = run(capsys, *dd, "extension", "passwd", "--tenant", "acme.example", "--number", "101",
                         "--password", "pw-654321")
    assert code == 0, err
    assert out == "password of extension 101 in acme.example changed\n"
    code, out, _ = run(capsys, *dd, "extension", "passwd", "--tenant", "acme.example", "--number", "101")
    assert code == 0 and "SIP password:" in out
    generated = out.split("SIP password: ")[1].split()[0]
    code, _, err = run(capsys, *dd, "extension", "passwd", "--tenant", "acme.example", "--number", "109")
    assert code == 1 and "109" in err

    async def stored() -> tuple[str | None, list[dict[str, Any]]]:
        from sqlalchemy import select

        from zvonok.org.service import sip_credentials
        from zvonok.storage.changes import ChangeLog
        from zvonok.storage.db import Database

        db = Database(f"sqlite+aiosqlite:///{Path(dd[1]) / 'zvonok.db'}")
        try:
            async with db.session() as session:
                creds = await sip_credentials(session, "acme.example", "101")
                payloads = (await session.execute(select(ChangeLog.payload).order_by(ChangeLog.id))).scalars().all()
                return (creds.ha1_md5 if creds else None), list(payloads)
        finally:
            await db.dispose()

    ha1, payloads = asyncio.run(stored())
    assert ha1 == hashlib.md5(f"101:acme.example:{generated}".encode()).hexdigest()
    changed = [p for p in payloads if p["type"] == "ExtensionChanged"]
    assert len(changed) == 2 and all(p["credentials_changed"] and p["number"] == "101" for p in changed)
