"""The second target: the star of a tenant's DuckDB file published as the PostgreSQL schema
``analytics_t<tenant id>`` of the PBX's own database (``analytics_target = "postgres"``), for BI tools
that speak PostgreSQL only.

How it works: the DuckDB file is built as always (:mod:`zvonok.analytics.export`), then its tables are
copied with ``COPY`` (asyncpg's ``copy_records_to_table``) into a fresh schema ``analytics_t<id>_new``,
and in the same transaction the old schema is dropped and the new one renamed: a BI query sees the whole
last export or the whole new one. The schema's name comes from the tenant's id alone. Who may read it:
the members of the role ``analytics_t<id>_reader`` when the operator has made it (``CREATE ROLE
analytics_t1_reader; GRANT analytics_t1_reader TO bi_acme``): each export grants it USAGE on the new
schema and SELECT on its tables, in the same transaction (a schema made anew has no grants of its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from zvonok.storage.db import Database

from . import star

BATCH = 10_000


def schema_of(tenant_id: int) -> str:
    return f"analytics_t{int(tenant_id)}"


def _pg_schema(schema: str) -> list[str]:
    """The star's DDL in PostgreSQL's words (DOUBLE is DOUBLE PRECISION there), tables in ``schema``."""
    out = []
    for statement in star.SCHEMA.split(";"):
        statement = statement.strip()
        if statement:
            statement = statement.replace(" DOUBLE", " DOUBLE PRECISION").replace("CREATE TABLE ", f"CREATE TABLE {schema}.")
            out.append(statement)
    return out


async def publish(db: Database, tenant_id: int, path: Path) -> None:
    """Copy the tables of the tenant's DuckDB file at ``path`` into its schema, replacing it whole."""
    if db.engine.dialect.name != "postgresql":
        raise RuntimeError("analytics_target postgres needs the PBX's database to be PostgreSQL")
    final = schema_of(tenant_id)
    fresh = f"{final}_new"
    tables: Sequence[str] = (*star.TABLES, "export_info", "export_tables", "export_watermarks")
    source = await asyncio.to_thread(duckdb.connect, str(path), read_only=True)
    try:
        await _copy(db, source, tables, fresh, final)
    finally:
        source.close()


async def _copy(db: Database, source: duckdb.DuckDBPyConnection, tables: Sequence[str], fresh: str,
                final: str) -> None:
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pg: Any = raw.driver_connection  # asyncpg's connection, for COPY
        async with pg.transaction():
            await pg.execute(f"DROP SCHEMA IF EXISTS {fresh} CASCADE")
            await pg.execute(f"CREATE SCHEMA {fresh}")
            for statement in _pg_schema(fresh):
                await pg.execute(statement)
            for table in tables:  # in batches: a company's CDRs need not fit in memory
                cursor = await asyncio.to_thread(source.execute, f"SELECT * FROM {table}")
                while rows := await asyncio.to_thread(cursor.fetchmany, BATCH):
                    await pg.copy_records_to_table(table, records=rows, schema_name=fresh)
            reader = f"{final}_reader"
            if await pg.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", reader):
                await pg.execute(f"GRANT USAGE ON SCHEMA {fresh} TO {reader}")
                await pg.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {fresh} TO {reader}")
            await pg.execute(f"DROP SCHEMA IF EXISTS {final} CASCADE")
            await pg.execute(f"ALTER SCHEMA {fresh} RENAME TO {final}")
