"""Shared fixtures: a real database per test (SQLite file and PostgreSQL), the API with a platform token.

PostgreSQL must be reachable at ``ZVONOK_TEST_PG_URL`` (CI and dev machines run it): if it is not,
the postgres-parametrized tests fail loudly rather than skip, so a broken setup is never mistaken
for a green run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from zvonok.config import Settings
from zvonok.org import credentials
from zvonok.storage.db import Database

# The cheapest argon2id for every slow hash of this test process (production cost: ~0.1 s of CPU each,
# minutes over the suite); test_pins checks that a fresh process still hashes at the production cost.
credentials.use_cheap_hashes_in_tests()

# Every test builds its own app, and FastAPI (0.16x) resolves an included router's routes lazily, per app, on
# the first request that walks past them: half of an API test's time went to resolving the same few hundred
# routes again. An included router's resolved routes depend on the router and on what the app's own router
# adds (its dependencies and prefix: the same for every app create_app builds), so in tests each router is
# resolved once per process and the same resolved branch goes into every app (the server builds one app, so
# it has nothing to share). If FastAPI's internals change, this falls back to the plain include_router.
_include_router = FastAPI.include_router
_INCLUDED: dict[int, tuple[weakref.ref[APIRouter], tuple[Any, ...], Any]] = {}  # id(router): routers are unhashable


def _include_router_once(self: FastAPI, router: APIRouter, **options: Any) -> None:
    parent = self.router
    key = (tuple(d.dependency for d in parent.dependencies), parent.prefix)
    cached = _INCLUDED.get(id(router))
    if not options and cached is not None and cached[0]() is router and cached[1] == key \
            and not router.on_startup and not router.on_shutdown and hasattr(parent, "_mark_routes_changed"):
        parent.routes.append(cached[2])
        parent._mark_routes_changed()
        return
    _include_router(self, router, **options)
    branch = parent.routes[-1] if parent.routes else None
    if not options and type(branch).__name__ == "_IncludedRouter" and getattr(branch, "original_router", None) is router:
        _INCLUDED[id(router)] = (weakref.ref(router), key, branch)


FastAPI.include_router = _include_router_once  # type: ignore[method-assign]

PG_URL = os.environ.get("ZVONOK_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")


def make_settings(tmp_path: Path, database_url: str | None = None) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", database_url=database_url, secret_key="test-secret-key-0123456789abcdef0123"
    )


class FreshDatabase:
    """Create a uniquely named database and drop it afterwards (SQLite: a temp file); empty, or a copy
    of ``template`` (a migrated database of the same backend). ``drop`` drops it at once, ``drop_soon``
    with a batch of other tests' databases (the ``fresh_db`` fixture's)."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.name = f"zvonok_t_{uuid.uuid4().hex[:12]}"
        if kind == "sqlite":
            self.path = tmp_path / (self.name + ".db")
            self.url = f"sqlite+aiosqlite:///{self.path}"
        else:
            self.url = make_url(PG_URL).set(database=self.name).render_as_string(hide_password=False)

    async def create(self, template: FreshDatabase | None = None) -> None:
        if self.kind == "postgres":
            clause = f' TEMPLATE "{template.name}"' if template is not None else ""
            # A throwaway database need not wait for the WAL flush at each commit (most of a test's
            # time on a busy disk); a crash of PostgreSQL itself could lose the last commits, nothing else.
            await self._admin(f'CREATE DATABASE "{self.name}"{clause}',
                              f'ALTER DATABASE "{self.name}" SET synchronous_commit = off')
        elif template is not None:
            shutil.copyfile(template.path, self.path)

    async def drop(self) -> None:
        if self.kind == "postgres":
            await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    async def drop_soon(self) -> None:
        """Drop it with the next few (see :func:`drop_databases_soon`); a test's own database only."""
        if self.kind == "postgres":
            await drop_databases_soon([self.name])

    async def _admin(self, *statements: str) -> None:
        engine = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                for sql in statements:
                    await conn.execute(text(sql))
        finally:
            await engine.dispose()


# PostgreSQL 15 makes every DROP DATABASE wait for a forced checkpoint of the whole server: one at a time,
# that wait was most of a postgres test's time in the unit suite (a quarter of the suite's, counting the
# sqlite ones). Checkpoints requested together are shared, so the tests' databases are dropped in batches,
# each batch in parallel; the last ones when the session (an xdist worker's) finishes. At most
# DROP_BATCH databases per worker wait for their drop, unused (nothing connects to them again).
DROP_BATCH = 8
_awaiting_drop: list[str] = []


async def drop_databases_soon(names: list[str]) -> None:
    """Queue ``names`` for dropping; once DROP_BATCH are queued, drop them all at once."""
    _awaiting_drop.extend(names)
    if len(_awaiting_drop) >= DROP_BATCH:
        await drop_queued_databases()


async def drop_queued_databases() -> None:
    """Drop the queued databases, each on a connection of its own at the same time (one checkpoint)."""
    names = list(_awaiting_drop)
    _awaiting_drop.clear()
    if not names:
        return
    engine = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT", pool_size=len(names), max_overflow=0)

    async def drop(name: str) -> None:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    try:
        await asyncio.gather(*(drop(name) for name in names))
    finally:
        await engine.dispose()


def pytest_sessionfinish(session: pytest.Session) -> None:
    asyncio.run(drop_queued_databases())


class MigratedTemplates:
    """One migrated database per backend for the whole session (per xdist worker), made on first use;
    each test's ``db`` is a copy (CREATE DATABASE ... TEMPLATE, or a file copy), so Alembic runs once
    per backend instead of once per test.  The copy is exact: the migrations write no rows."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self._made: dict[str, FreshDatabase] = {}

    async def get(self, kind: str) -> FreshDatabase:
        if kind not in self._made:
            template = FreshDatabase(kind, self.tmp_path)
            await template.create()
            database = Database(template.url)
            try:
                await database.upgrade()
            finally:
                # no connection may stay open: PostgreSQL copies only an idle template, and SQLite
                # folds its WAL back into the file when the last connection closes
                await database.dispose()
            self._made[kind] = template
        return self._made[kind]

    def drop_all(self) -> None:
        for template in self._made.values():
            asyncio.run(template.drop())


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    templates = MigratedTemplates(tmp_path_factory.mktemp("templates"))
    try:
        yield templates
    finally:
        templates.drop_all()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def fresh_db(request: pytest.FixtureRequest, tmp_path: Path,
                   migrated_templates: MigratedTemplates) -> AsyncIterator[FreshDatabase]:
    """A database on each backend: empty (no schema), or already migrated when the test uses ``db``."""
    fresh = FreshDatabase(request.param, tmp_path)
    migrated = "db" in request.fixturenames
    await fresh.create(await migrated_templates.get(request.param) if migrated else None)
    try:
        yield fresh
    finally:
        await fresh.drop_soon()


@pytest.fixture
async def db(fresh_db: FreshDatabase) -> AsyncIterator[Database]:
    """A migrated database on each backend (a copy of the session's migrated template)."""
    database = Database(fresh_db.url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def settings(tmp_path: Path, fresh_db: FreshDatabase) -> Settings:
    return make_settings(tmp_path, fresh_db.url)


@pytest.fixture
def production_hash_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production argon2 cost for one test (one that compares the time of two hashed paths)."""
    from pwdlib import PasswordHash

    strong = PasswordHash.recommended()
    monkeypatch.setattr(credentials, "_password_hash", strong)
    monkeypatch.setattr(credentials, "_DUMMY_HASH", strong.hash("dummy-for-this-test"))


@dataclass
class Api:
    """An httpx client on the ASGI app plus a platform-admin bearer token."""

    client: httpx.AsyncClient
    db: Database
    settings: Settings
    admin_token: str

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


def _extra_routers() -> list[Any]:
    """The routers other layers mount in ``zvonok.server`` so API tests (tenant isolation!) cover them."""
    from zvonok.analytics import http as analytics_http
    from zvonok.callcenter import http as callcenter_http
    from zvonok.cdr import http as cdr_http
    from zvonok.crm import http as crm_http
    from zvonok.fax import http as fax_http
    from zvonok.ivr import http as ivr_http
    from zvonok.monitoring import http as monitoring_http
    from zvonok.pstn import http as pstn_http
    from zvonok.ringgroup import http as ring_group_http
    from zvonok.telephony import features_http, hold_music_http, originate_http
    from zvonok.telephony.http import registrations_router
    from zvonok.telephony.location import Location
    from zvonok.voicemail import http as voicemail_http
    from zvonok.webhooks import http as webhooks_http

    return [registrations_router(Location()), cdr_http.router, pstn_http.router, hold_music_http.router,
            features_http.router, crm_http.router, crm_http.hooks_router, voicemail_http.router,
            ivr_http.router, ring_group_http.router, callcenter_http.router, fax_http.router, monitoring_http.router,
            originate_http.router, webhooks_http.router, analytics_http.router]


@pytest.fixture
async def api(db: Database, settings: Settings) -> AsyncIterator[Api]:
    from zvonok.api.app import create_app
    from zvonok.org import accounts

    async with db.session() as session:
        created = await accounts.platform_create_api_token(session, "tests")
        await session.commit()
    app = create_app(settings, db, routers=_extra_routers())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://zvonok.test") as client:
        yield Api(client=client, db=db, settings=settings, admin_token=created.secret)


@dataclass
class TenantHandle:
    id: int
    domain: str
    headers: dict[str, str]  # a tenant-admin API token of this tenant


@pytest.fixture
def make_tenant(api: Api):  # type: ignore[no-untyped-def]
    """``await make_tenant("a.example")`` -> a tenant created through the API, with its admin token."""

    async def make(domain: str, name: str | None = None) -> TenantHandle:
        r = await api.client.post(
            "/api/v1/tenants", headers=api.admin, json={"name": name or domain, "sip_domain": domain}
        )
        assert r.status_code == 201, r.text
        tenant_id = r.json()["id"]
        r = await api.client.post(
            f"/api/v1/tenants/{tenant_id}/tokens", headers=api.admin, json={"name": "admin", "role": "tenant_admin"}
        )
        assert r.status_code == 201, r.text
        return TenantHandle(tenant_id, domain, {"Authorization": f"Bearer {r.json()['token']}"})

    return make


@pytest.fixture
def pg_database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh empty PostgreSQL database for sync tests (e.g. the CLI, which runs its own event loop)."""
    fresh = FreshDatabase("postgres", tmp_path)
    asyncio.run(fresh.create())
    try:
        yield fresh.url
    finally:
        asyncio.run(fresh.drop())
