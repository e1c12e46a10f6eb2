"""Migrations produce exactly ``Base.metadata`` on both backends; SQLite gets its pragmas."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from zvonok.storage.db import Database
from zvonok.storage.models import include_name, metadata


def _diff(connection: Connection) -> list[Any]:
    ctx = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": include_name})
    return list(compare_metadata(ctx, metadata))


async def test_upgrade_matches_metadata(fresh_db: Any) -> None:
    db = Database(fresh_db.url)
    try:
        await db.upgrade()
        await db.upgrade()  # idempotent
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
        assert version.isdigit()
    finally:
        await db.dispose()


async def test_sqlite_pragmas_and_parent_dirs(tmp_path: Any) -> None:
    path = tmp_path / "a" / "b" / "z.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
        assert path.parent.is_dir()
    finally:
        await db.dispose()


async def test_events_delivered_only_after_commit(db: Database) -> None:
    from zvonok.org import schemas, service
    from zvonok.org.events import TenantCreated

    seen: list[object] = []
    db.add_listener(seen.append)
    async with db.session() as session:
        await service.platform_create_tenant(session, schemas.TenantCreate(name="A", sip_domain="a.example"))
        await session.rollback()
    assert seen == []
    async with db.session() as session:
        await service.platform_create_tenant(session, schemas.TenantCreate(name="A", sip_domain="a.example"))
        assert seen == []
        await session.commit()
    assert [type(e) for e in seen] == [TenantCreated]
