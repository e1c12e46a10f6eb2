"""The CRM at a million contacts: screen-pop lookup and search latency on SQLite (and PostgreSQL).

Issue 13's bench: 1,000,000 clients with 2 phones each; the screen-pop lookup's p99 (target < 5 ms on
SQLite) and the search p99 for a fragment of a name. What it does:

1. Creates a fresh database (a temporary SQLite file, or with ``--pg`` a new PostgreSQL database on
   ``--pg-url``'s server, dropped at the end) with the project's migrations and one tenant.
2. Bulk-loads ``--clients`` clients (people with Russian first names, patronymics and surnames, a company
   name among 5,000 in their text field, 2 mobile numbers each) through SQLAlchemy Core in batches, and
   their search rows through the same :class:`zvonok.crm.search.SearchIndex` term builder the service
   uses (SQLite: the stemmed FTS5 body; PostgreSQL: the tsvector); the load rate is printed (the
   CSV import's own rate is measured by the import's bench when it lands).
3. Times, in-process and through the service functions the server calls (one session each, as a
   request does), ``--lookups`` of each: :func:`zvonok.crm.service.card_for` for a known caller's number
   (the screen pop: client, company, owner and last calls), the same for an unknown number, and
   :func:`zvonok.crm.service.search_ids` for a surname fragment ("Петро", "Смирн") and a two-word query
   ("Иван Кузн"), and for a 4-digit part of a number (a substring scan: reported, no target).

Run: ``PYTHONPATH=src python bench/crm.py [--clients 1000000] [--pg]``. Prints figures;
docs/benchmarks.md has them.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, text

from zvonok.crm import service
from zvonok.crm.models import CrmClient, CrmPhone
from zvonok.crm.search import index_for
from zvonok.org import schemas as org_schemas
from zvonok.org import service as org_service
from zvonok.storage.db import Database

FIRST = ["Иван", "Пётр", "Сергей", "Андрей", "Алексей", "Дмитрий", "Михаил", "Николай", "Ольга", "Анна",
         "Елена", "Мария", "Татьяна", "Наталья", "Ирина", "Светлана", "John", "Maria", "Anna", "Victor"]
PATRONYMIC = ["Иванович", "Петрович", "Сергеевич", "Андреевич", "Алексеевич", "Дмитриевич", "Михайлович",
              "Николаевич", "Ивановна", "Петровна", "Сергеевна", "Андреевна"]
SURNAME = ["Петров", "Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Соколов", "Михайлов", "Новиков",
           "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров", "Павлов", "Козлов",
           "Степанов", "Николаев", "Орлов", "Андреев", "Макаров", "Никитин", "Захаров", "Зайцев", "Соловьёв",
           "Борисов", "Яковлев", "Григорьев", "Romanov", "Smith", "Johnson", "Brown", "Miller", "Davis"]
QUERIES = ["Петро", "Смирн", "Иван Кузн", "Ольга Волк", "Johns"]
BATCH = 20_000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def number(i: int, which: int) -> str:
    return f"+79{which}{i:08d}"


async def load(db: Database, tenant_id: int, count: int, rng: random.Random) -> float:
    companies = [f"ООО {rng.choice(SURNAME)} и партнёры {n}" for n in range(5000)]
    now = datetime.now(UTC)
    start = time.perf_counter()
    for first in range(0, count, BATCH):
        ids = range(first + 1, min(count, first + BATCH) + 1)
        clients, phones, search = [], [], []
        for i in ids:
            name = f"{rng.choice(SURNAME)} {rng.choice(FIRST)} {rng.choice(PATRONYMIC)}"
            if name.split()[1] in ("Ольга", "Анна", "Елена", "Мария", "Татьяна", "Наталья", "Ирина", "Светлана"):
                name = name.replace("ов ", "ова ", 1).replace("ев ", "ева ", 1).replace("ин ", "ина ", 1)
            company = companies[i % len(companies)]
            clients.append({"id": i, "tenant_id": tenant_id, "kind": "person", "name": name, "tags": [],
                            "fields": {"company": company}, "created_at": now, "updated_at": now})
            for which in (1, 2):
                phone = number(i, which)
                phones.append({"tenant_id": tenant_id, "client_id": i, "number": phone, "digits": phone[1:],
                               "label": "mobile"})
            search.append((i, f"{name}\n{company}"))
        async with db.session() as session:
            await session.execute(insert(CrmClient.__table__), clients)
            await session.execute(insert(CrmPhone.__table__), phones)
            await index_for(session).put_new(session, tenant_id, search)
            await session.commit()
        done = ids[-1]
        if done % 100_000 == 0 or done == count:
            print(f"  loaded {done:,} clients ({done / (time.perf_counter() - start):,.0f}/s)", flush=True)
    return count / (time.perf_counter() - start)


async def timed(db: Database, runs: int, call: Callable[[object], Awaitable[object]]) -> list[float]:
    out = []
    for _ in range(runs):
        async with db.session() as session:
            t0 = time.perf_counter()
            await call(session)
            out.append((time.perf_counter() - t0) * 1000)
    return out


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(7)
    tmp = Path(tempfile.mkdtemp(prefix="zvonok-bench-crm-"))
    admin_url = None
    if args.pg:
        name = f"zvonok_bench_crm_{secrets.token_hex(4)}"
        admin_url = args.pg_url
        admin = Database(admin_url)
        async with admin.engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(text(f'CREATE DATABASE "{name}"'))
        await admin.dispose()
        url = admin_url.rsplit("/", 1)[0] + "/" + name
    else:
        url = f"sqlite+aiosqlite:///{tmp / 'crm.db'}"
    db = Database(url)
    try:
        await db.upgrade()
        async with db.session() as session:
            tenant = await org_service.platform_create_tenant(session, org_schemas.TenantCreate(
                name="Bench", sip_domain="crm-bench.test"))
            tenant_id = tenant.id
            await session.commit()
        print(f"database: {'PostgreSQL' if args.pg else 'SQLite'}; loading {args.clients:,} clients", flush=True)
        rate = await load(db, tenant_id, args.clients, rng)
        if not args.pg:
            async with db.session() as session:
                await session.execute(text("ANALYZE"))
        else:
            async with db.session() as session:
                await session.execute(text("ANALYZE"))
                await session.commit()
        known = [number(rng.randint(1, args.clients), rng.choice((1, 2))) for _ in range(args.lookups)]
        it = iter(known)
        results: dict[str, list[float]] = {}
        results["screen pop, known caller"] = await timed(
            db, args.lookups, lambda s: service.card_for(s, tenant_id, next(it)))  # type: ignore[arg-type]
        card = None
        async with db.session() as session:
            card = await service.card_for(session, tenant_id, known[0])
        assert card.client_id is not None, "a known number found no client"
        results["screen pop, unknown number"] = await timed(
            db, args.lookups, lambda s: service.card_for(s, tenant_id, f"+7495{rng.randint(0, 9_999_999):07d}"))  # type: ignore[arg-type]
        found: dict[str, int] = {}
        for query in QUERIES:
            async with db.session() as session:
                found[query] = len(await service.search_ids(session, tenant_id, query))
            results[f"search “{query}”"] = await timed(
                db, max(20, args.lookups // 10), lambda s, q=query: service.search_ids(s, tenant_id, q))  # type: ignore[misc]
        results["search 4 digits of a number (substring scan)"] = await timed(
            db, 10, lambda s: service.search_ids(s, tenant_id, f"{rng.randint(1000, 9999)}"))  # type: ignore[arg-type]
        print(f"\nload rate: {rate:,.0f} clients/s (with 2 phones and the search row each)\n")
        print("| operation | runs | p50, ms | p99, ms | mean, ms | hits |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, values in results.items():
            hits = next((str(found[q]) for q in QUERIES if label == f"search “{q}”"), "")
            print(f"| {label} | {len(values)} | {percentile(values, 50):.2f} | {percentile(values, 99):.2f} | "
                  f"{statistics.fmean(values):.2f} | {hits} |")
    finally:
        await db.dispose()
        if admin_url is not None:
            admin = Database(admin_url)
            async with admin.engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                    text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}"'))
            await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--pg-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
