"""Migrations produce exactly ``Base.metadata`` on both backends; SQLite gets its pragmas."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
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


async def test_supervisor_role_migration_both_ways(fresh_db: Any) -> None:
    """0029 widens the role CHECK of accounts and API tokens (a table copy on SQLite); its downgrade makes
    supervisors employees and narrows it again; nothing else about the tables changes."""
    from sqlalchemy.exc import IntegrityError

    from zvonok.storage.db import run_migrations

    db = Database(fresh_db.url)
    insert = text("INSERT INTO accounts (email, password_hash, role, tenant_id, active, token_version, created_at,"
                  " updated_at) VALUES (:email, 'x', :role, 1, true, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)")
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(run_migrations, "0022")
            await conn.execute(text("INSERT INTO tenants (name, sip_domain, timezone, currency, locale, suspended,"
                                    " created_at, updated_at) VALUES ('T', 't.example', 'UTC', 'RUB', 'ru', false,"
                                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
            await conn.execute(insert, {"email": "e@t.example", "role": "employee"})
            await conn.execute(text("INSERT INTO api_tokens (tenant_id, name, prefix, secret_hash, role, account_id,"
                                    " created_at) SELECT 1, 'script', 'zv_1', 'h', 'employee', id, CURRENT_TIMESTAMP"
                                    " FROM accounts"))
        owner = text("SELECT a.email FROM api_tokens t JOIN accounts a ON a.id = t.account_id")
        async with db.engine.begin() as conn:
            await conn.run_sync(run_migrations, "head")
            await conn.execute(insert, {"email": "s@t.example", "role": "supervisor"})
            rows = (await conn.execute(text("SELECT email, role FROM accounts ORDER BY email"))).all()
            assert [tuple(r) for r in rows] == [("e@t.example", "employee"), ("s@t.example", "supervisor")]
            assert await conn.run_sync(_diff) == []
            assert (await conn.execute(owner)).scalar_one() == "e@t.example"  # the table copy kept the link
        for bad in ("boss", "supervisor "):
            try:
                async with db.engine.begin() as conn:
                    await conn.execute(insert, {"email": "b@t.example", "role": bad})
            except IntegrityError:
                pass
            else:
                raise AssertionError(f"role {bad!r} was accepted")

        def down(connection: Connection) -> None:
            from alembic import command
            from alembic.config import Config

            from zvonok.storage.db import MIGRATIONS_DIR

            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, "0022")

        async with db.engine.begin() as conn:
            await conn.run_sync(down)
            rows = (await conn.execute(text("SELECT role FROM accounts ORDER BY email"))).all()
            assert [r[0] for r in rows] == ["employee", "employee"]
            assert (await conn.execute(owner)).scalar_one() == "e@t.example"
        try:
            async with db.engine.begin() as conn:
                await conn.execute(insert, {"email": "s2@t.example", "role": "supervisor"})
        except IntegrityError:
            pass
        else:
            raise AssertionError("the downgraded CHECK accepted a supervisor")
    finally:
        await db.dispose()


async def test_queue_vip_numbers_migration_both_ways(fresh_db: Any) -> None:
    """0050 gives every existing queue an empty VIP list, 0051 the music on hold; their downgrade drops the columns
    and keeps the queue."""
    from zvonok.storage.db import run_migrations

    db = Database(fresh_db.url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(run_migrations, "0049")
            await conn.execute(text("INSERT INTO tenants (name, sip_domain, timezone, currency, locale, suspended,"
                                    " created_at, updated_at) VALUES ('T', 't.example', 'UTC', 'RUB', 'ru', false,"
                                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
            await conn.execute(text(
                "INSERT INTO queues (tenant_id, name, number, strategy, requirements, relaxations, ring_timeout,"
                " retry, wrap_up, join_empty, leave_empty, service_level, announce_every, max_no_answer, weight,"
                " created_at, updated_at) SELECT id, 'Sales', '500', 'longest_idle', '[]', '[]', 15, 5, 10, true,"
                " false, 20, 0, 3, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM tenants"))
        async with db.engine.begin() as conn:
            await conn.run_sync(run_migrations, "head")
            assert await conn.run_sync(_diff) == []
        from zvonok.callcenter import service

        async with db.session() as session:
            (config,) = await service.platform_all_queues(session)
        assert config.vip == () and config.number == "500" and config.hold_sound == "music"

        def down(connection: Connection) -> None:
            from alembic import command
            from alembic.config import Config

            from zvonok.storage.db import MIGRATIONS_DIR

            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, "0049")

        async with db.engine.begin() as conn:
            await conn.run_sync(down)
            assert (await conn.execute(text("SELECT number FROM queues"))).scalar_one() == "500"
            columns = await conn.run_sync(lambda c: [col["name"] for col in inspect(c).get_columns("queues")])
            assert "vip_numbers" not in columns and "hold_sound" not in columns
    finally:
        await db.dispose()


async def test_reason_code_migration_both_ways(fresh_db: Any) -> None:
    """0052 gives every existing not-ready reason no code (NULL) and makes a code unique in its company (many
    reasons without one, the same code in two companies); its downgrade drops the code and keeps the reasons."""
    from sqlalchemy.exc import IntegrityError

    from zvonok.storage.db import run_migrations

    db = Database(fresh_db.url)
    tenant = text("INSERT INTO tenants (name, sip_domain, timezone, currency, locale, suspended, created_at,"
                  " updated_at) VALUES (:name, :domain, 'UTC', 'RUB', 'ru', false, CURRENT_TIMESTAMP,"
                  " CURRENT_TIMESTAMP)")
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(run_migrations, "0051")
            for name in ("A", "B"):
                await conn.execute(tenant, {"name": name, "domain": f"{name.lower()}.example"})
            await conn.execute(text("INSERT INTO not_ready_reasons (tenant_id, name) SELECT id, 'Lunch' FROM tenants"))
            await conn.execute(text("INSERT INTO not_ready_reasons (tenant_id, name) SELECT id, 'Training' FROM"
                                    " tenants WHERE name = 'A'"))
        async with db.engine.begin() as conn:
            await conn.run_sync(run_migrations, "head")
            assert await conn.run_sync(_diff) == []
            rows = (await conn.execute(text("SELECT name, code FROM not_ready_reasons ORDER BY tenant_id, name"))).all()
            assert [tuple(r) for r in rows] == [("Lunch", None), ("Training", None), ("Lunch", None)]
            await conn.execute(text("UPDATE not_ready_reasons SET code = '1' WHERE name = 'Lunch'"))  # both companies
        try:
            async with db.engine.begin() as conn:
                await conn.execute(text("UPDATE not_ready_reasons SET code = '1' WHERE name = 'Training'"))
        except IntegrityError:
            pass
        else:
            raise AssertionError("two reasons of one company got the same code")

        def down(connection: Connection) -> None:
            from alembic import command
            from alembic.config import Config

            from zvonok.storage.db import MIGRATIONS_DIR

            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, "0051")

        async with db.engine.begin() as conn:
            await conn.run_sync(down)
            rows = (await conn.execute(text("SELECT name FROM not_ready_reasons ORDER BY tenant_id, name"))).all()
            assert [r[0] for r in rows] == ["Lunch", "Training", "Lunch"]
            columns = await conn.run_sync(lambda c: [col["name"] for col in inspect(c).get_columns("not_ready_reasons")])
            assert "code" not in columns
            uniques = await conn.run_sync(lambda c: [u["name"] for u in inspect(c).get_unique_constraints(
                "not_ready_reasons")])
            assert uniques == ["uq_not_ready_reasons_tenant_id_name"]
    finally:
        await db.dispose()
