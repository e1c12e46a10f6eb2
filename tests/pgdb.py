"""Create or drop a PostgreSQL database for a test run: ``python tests/pgdb.py create|drop ADMIN_URL NAME``."""

from __future__ import annotations

import asyncio
import re
import sys

import asyncpg


async def main(action: str, admin_url: str, name: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise SystemExit(f"bad database name {name!r}")
    conn = await asyncpg.connect(admin_url)
    try:
        if action == "create":
            await conn.execute(f'CREATE DATABASE "{name}"')
            # a throwaway database: commits need not wait for the WAL flush (see tests/conftest.py)
            await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        else:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
