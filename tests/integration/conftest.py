"""Fixtures for integration tests: a real ``zvonok serve`` on free loopback ports, SIPp, a raw SIP client.

The server runs as a subprocess (started with the CLI, stopped with SIGTERM, which must exit 0). The
harness itself lives in ``bench/_common.py`` and is shared with the benchmarks. With
``ZVONOK_TEST_DATABASE_URL`` set (CI's PostgreSQL run) each test module gets a database of its own on that
server (created next to it, dropped after the module): numbers and carrier addresses are platform-wide,
so two modules seeding the same DID or trusting the same loopback address would otherwise collide. Every
server also gets its own random SIP domain.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ._harness import harness
from .baresip import Baresip

SippResult = harness.SippResult
ZvonokServer = harness.ZvonokServer
password_for = harness.password_for

# Extension ranges: each test uses its own numbers so the shared server's registrations never mix.
UDP_USERS = [str(n) for n in range(1000, 1200)]
TCP_USERS = [str(n) for n in range(2000, 2005)]
UNREGISTER_USERS = [str(n) for n in range(3000, 3010)]
RESTART_USERS = [str(n) for n in range(4000, 4005)]
RAW_USERS = [str(n) for n in range(5000, 5005)]
CLI_USER = ("101", "Alice", "secret101")  # added through `zvonok extension add`


def _require_tools() -> None:
    if shutil.which("sipp") is None:
        pytest.fail("SIPp (Debian sip-tester) is not installed: `make test` installs it")
    if not Path(harness.ZVONOK).exists() and shutil.which("zvonok") is None:
        pytest.fail("the zvonok command is not installed in the venv: run `make test`")


@dataclass
class Pbx:
    """A running server and what the tests need to talk to it."""

    server: Any  # harness.ZvonokServer
    tenant_id: int
    domain: str
    token: str
    extensions: dict[str, str]  # number -> SIP password
    workdir: Path
    _runs: int = field(default=0, repr=False)

    @property
    def sip_port(self) -> int:
        return int(self.server.sip_port)

    @property
    def http_url(self) -> str:
        return str(self.server.http_url)

    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def registrations(self) -> list[dict[str, Any]]:
        return list(self.server.registrations(self.tenant_id, self.token))

    def registrations_of(self, numbers: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Live bindings of the given extensions, keyed by number (from the AOR)."""
        wanted = set(numbers)
        found: dict[str, list[dict[str, Any]]] = {}
        for item in self.registrations():
            user = item["aor"].removeprefix("sip:").split("@", 1)[0]
            if user in wanted:
                found.setdefault(user, []).append(item)
        return found

    def rows(self, numbers: Sequence[str], *, password: str | None = None, domain: str | None = None
             ) -> list[list[str]]:
        """SIPp injection rows (see ``sipp_row``): user, password, domain, ``[authentication ...]``."""
        return [harness.sipp_row(n, password if password is not None else self.extensions.get(n, password_for(n)),
                                 domain or self.domain) for n in numbers]

    def sipp(self, scenario: str, rows: Sequence[Sequence[str]], *, transport: str = "u1", rate: float = 200,
             timeout: float = 20, local_port: int | None = None, extra: Sequence[str] = ()) -> Any:
        """Run SIPp against this server with ``-auth_uri sip:<domain>``; returns a ``SippResult``."""
        self._runs += 1
        return harness.run_sipp(
            scenario, self.target, workdir=self.workdir, rows=rows, rate=rate, transport=transport,
            timeout=timeout, auth_uri=f"sip:{self.domain}", local_port=local_port, extra=extra,
            name=f"run{self._runs}_{Path(scenario).stem}",
        )

    def restart(self) -> int:
        """SIGTERM the server, start it again on the same data and ports; returns the stop's exit code."""
        code = int(self.server.stop())
        self.server.start()
        return code


async def _pg(base_url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(base_url.replace("+asyncpg", "", 1))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    from zvonok.storage.db import Database

    database = Database(url)
    try:
        await database.upgrade()
    finally:
        await database.dispose()  # PostgreSQL copies only an idle template; SQLite folds its WAL back in


@pytest.fixture(scope="session", autouse=True)
def _migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """Alembic once per session (per xdist worker), not once per server: on SQLite a migrated file that
    every new data directory starts as a copy of (``harness.sqlite_template``), on PostgreSQL a migrated
    database each module's database is created from (``CREATE DATABASE ... TEMPLATE``). The servers still
    run their upgrade at start, a no-op on the copy."""
    import asyncio

    base = os.environ.get("ZVONOK_TEST_DATABASE_URL")
    if not base or not base.startswith("postgresql"):
        path = tmp_path_factory.mktemp("template") / "zvonok.db"
        asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
        harness.sqlite_template = path
        try:
            yield None
        finally:
            harness.sqlite_template = None
        return
    name = f"zvonok_itt_{secrets.token_hex(5)}"
    asyncio.run(_pg(base, f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(_migrate(f"{base.rsplit('/', 1)[0]}/{name}"))
        yield name
    finally:
        asyncio.run(_pg(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module", autouse=True)
def _module_database(_migrated_template: str | None) -> Iterator[None]:
    """A PostgreSQL database per test module (see the module's docstring), a copy of the session's
    migrated template; nothing on SQLite."""
    import asyncio

    base = os.environ.get("ZVONOK_TEST_DATABASE_URL")
    if not base or not base.startswith("postgresql"):
        yield
        return
    name = f"zvonok_itm_{secrets.token_hex(5)}"
    asyncio.run(_pg(base, f'CREATE DATABASE "{name}" TEMPLATE "{_migrated_template}"'))
    asyncio.run(_pg(base, f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    os.environ["ZVONOK_TEST_DATABASE_URL"] = f"{base.rsplit('/', 1)[0]}/{name}"
    try:
        yield
    finally:
        os.environ["ZVONOK_TEST_DATABASE_URL"] = base
        asyncio.run(_pg(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _database_url() -> str | None:
    return os.environ.get("ZVONOK_TEST_DATABASE_URL") or None


def _unique_domain(stem: str) -> str:
    return f"{stem}-{secrets.token_hex(3)}.test"


def _start_pbx(tmp: Path, *, stem: str, numbers: Sequence[str], env: dict[str, str],
               use_cli: bool) -> Pbx:
    _require_tools()
    if os.environ.get("ZVONOK_TEST_LOG_LEVEL"):  # e.g. debug, to chase a failure in the server's log
        env = {**env, "ZVONOK_LOG_LEVEL": os.environ["ZVONOK_TEST_LOG_LEVEL"]}
    data_dir = tmp / "data"
    server = ZvonokServer(data_dir=data_dir, database_url=_database_url(), env=env)
    domain = _unique_domain(stem)
    extensions = {n: password_for(n) for n in numbers}
    if use_cli:
        # The documented admin path: company, one extension and an API token through the CLI ...
        import json

        tenant = json.loads(server.cli("tenant", "create", "--name", "Acme", "--domain", domain, "--json"))
        number, name, password = CLI_USER
        server.cli("extension", "add", "--tenant", domain, "--number", number, "--name", name,
                   "--password", password)
        extensions[number] = password
        token = server.cli("token", "create", "--name", "integration", "--tenant", domain).strip().split()[-1]
        assert token.startswith("zv_"), token
        # ... and the bulk of the extensions in one transaction (the CLI is one process per extension).
        seeded = harness.seed(data_dir, domain=domain, numbers=numbers, database_url=_database_url(),
                              with_token=False)
        assert seeded.tenant_id == tenant["id"]
        tenant_id = int(tenant["id"])
    else:
        seeded = harness.seed(data_dir, domain=domain, numbers=numbers, database_url=_database_url())
        tenant_id, token = seeded.tenant_id, seeded.token
    server.start()
    return Pbx(server=server, tenant_id=tenant_id, domain=domain, token=token, extensions=extensions,
               workdir=tmp / "sipp")


def _stop_pbx(pbx: Pbx) -> None:
    code = pbx.server.stop()
    assert code == 0, f"zvonok serve exited with {code} on SIGTERM:\n{pbx.server.log_tail()}"


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pbx]:
    """The shared server: one tenant, the CLI user 101 and the extensions of every test range."""
    numbers = UDP_USERS + TCP_USERS + UNREGISTER_USERS + RESTART_USERS + RAW_USERS
    # Several tests fail authentication on purpose; they must not get 127.0.0.1 banned here.
    env = {"ZVONOK_AUTH_FAIL_LIMIT": "1000"}
    instance = _start_pbx(tmp_path_factory.mktemp("pbx"), stem="acme", numbers=numbers, env=env, use_cli=True)
    try:
        yield instance
    finally:
        _stop_pbx(instance)


@pytest.fixture
def strict_pbx(tmp_path: Path) -> Iterator[Pbx]:
    """A server of its own with a low brute-force limit (a ban must not block the other tests)."""
    env = {"ZVONOK_AUTH_FAIL_LIMIT": "5", "ZVONOK_AUTH_FAIL_WINDOW": "60", "ZVONOK_AUTH_BAN_TIME": "600"}
    instance = _start_pbx(tmp_path, stem="strict", numbers=["201", "202"], env=env, use_cli=False)
    try:
        yield instance
    finally:
        _stop_pbx(instance)


# --- a minimal raw SIP client over UDP ---------------------------------------------------------------
@dataclass
class SipResponse:
    raw: bytes
    status: int
    reason: str
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def parse_response(data: bytes) -> SipResponse:
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    lines = head.split("\r\n")
    version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
    assert version == "SIP/2.0", lines[0]
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return SipResponse(data, int(status), reason, headers)


def _digest_params(value: str) -> dict[str, str]:
    scheme, _, rest = value.partition(" ")
    assert scheme.lower() == "digest", value
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        while i < len(rest) and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.index('"', i + 1)
            params[key] = rest[i + 1:end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
    return params


class RawSipClient:
    """Sends hand-built requests from one UDP socket and waits for one answer (no retransmissions)."""

    def __init__(self, server_port: int) -> None:
        self.server = ("127.0.0.1", server_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.call_id = ""
        self.from_tag = ""
        self.branch = ""

    def close(self) -> None:
        self.sock.close()

    def exchange(self, data: bytes, timeout: float = 5.0) -> SipResponse | None:
        """Send ``data``; the first final response (provisional ones are skipped), or None on timeout."""
        self.sock.sendto(data, self.server)
        self.sock.settimeout(timeout)
        while True:
            try:
                reply, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                return None
            response = parse_response(reply)
            if response.status >= 200:
                return response

    def request(self, method: str, ruri: str, user: str, domain: str, *, cseq: int = 1,
                headers: Sequence[tuple[str, str]] = (), new_call: bool = True) -> bytes:
        if new_call or not self.call_id:
            self.call_id = secrets.token_hex(8) + "@raw.test"
            self.from_tag = secrets.token_hex(4)
        self.branch = "z9hG4bK" + secrets.token_hex(8)
        lines = [
            f"{method} {ruri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={self.branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{domain}>;tag={self.from_tag}",
            f"To: <sip:{user}@{domain}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            *(f"{k}: {v}" for k, v in headers),
            "User-Agent: raw-test",
            "Content-Length: 0",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def register(self, user: str, domain: str, password: str, *, expires: int = 3600,
                 auth_user: str | None = None, timeout: float = 5.0
                 ) -> tuple[SipResponse | None, SipResponse | None]:
        """REGISTER, answer the MD5 challenge; returns (challenge response, final response)."""
        ruri = f"sip:{domain}"
        contact = ("Contact", f"<sip:{user}@127.0.0.1:{self.port}>")
        first = self.exchange(self.request("REGISTER", ruri, user, domain, cseq=1,
                                           headers=[contact, ("Expires", str(expires))]), timeout)
        if first is None or first.status != 401:
            return first, None
        challenge = next(_digest_params(v) for v in first.get_all("WWW-Authenticate")
                         if _digest_params(v).get("algorithm", "MD5").upper() == "MD5")
        auth = digest_authorization(challenge, auth_user or user, password, "REGISTER", ruri)
        second = self.exchange(self.request("REGISTER", ruri, user, domain, cseq=2, new_call=False,
                                            headers=[contact, ("Expires", str(expires)),
                                                     ("Authorization", auth)]), timeout)
        return first, second


def digest_authorization(challenge: dict[str, str], user: str, password: str, method: str, uri: str) -> str:
    """An RFC 2617 MD5 ``Authorization`` value (qop=auth when offered)."""
    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    realm, nonce = challenge["realm"], challenge["nonce"]
    ha1 = md5(f"{user}:{realm}:{password}")
    ha2 = md5(f"{method}:{uri}")
    parts = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"', "algorithm=MD5"]
    if "auth" in [q.strip() for q in challenge.get("qop", "").split(",")]:
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        parts += [f'cnonce="{cnonce}"', f"nc={nc}", "qop=auth"]
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
    parts.append(f'response="{response}"')
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(parts)


@pytest.fixture
def raw_client(pbx: Pbx) -> Iterator[RawSipClient]:
    client = RawSipClient(pbx.sip_port)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def phones() -> Iterator[list[Baresip]]:
    """baresip phones a test starts (``test_calls_softphone.phone``), stopped at its end."""
    started: list[Baresip] = []
    yield started
    for phone in started:
        phone.stop()
