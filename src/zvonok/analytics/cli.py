"""``zvonok analytics export [--tenant DOMAIN]``: rebuild analytics files now, without the server.

Hooked into :func:`zvonok.cli.build_parser` with ``add_parser(sub)``. Without ``--tenant`` every company's
file is rebuilt, one after another (what the nightly job does); each line tells the file and its rows.
"""

from __future__ import annotations

import argparse
import json
import sys

from zvonok.config import Settings
from zvonok.storage.db import Database

from .export import ExportReport, export_tenant, file_of


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``analytics`` command (``export``) to the CLI's subcommands."""
    analytics = sub.add_parser("analytics", help="the analytics store (DuckDB files for BI tools)").add_subparsers(
        dest="analytics_cmd", metavar="ACTION", required=True)
    sp = analytics.add_parser(
        "export", help="rebuild companies' analytics files now",
        description="Rebuild <data dir>/analytics/t<tenant id>.duckdb from the company's calls, deals and "
        "payments (a star schema: docs/analytics.md). Every company's when --tenant is omitted.")
    sp.add_argument("--tenant", metavar="DOMAIN", help="the company's SIP domain (default: every company)")
    sp.add_argument("--full", action="store_true",
                    help="read every row again (default: only what changed since the last export)")
    sp.add_argument("--json", action="store_true", help="print the reports as JSON")
    sp.set_defaults(func=cmd_analytics_export)


def cmd_analytics_export(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from zvonok.cli import _tenant_id, with_db
    from zvonok.org.models import Tenant

    directory = settings.data_dir / "analytics"

    async def go(db: Database) -> list[ExportReport]:
        async with db.session() as session:
            if args.tenant:
                ids = [await _tenant_id(session, args.tenant)]
            else:
                ids = list((await session.execute(select(Tenant.id).order_by(Tenant.id))).scalars())
        return [await export_tenant(db, tenant_id, directory, target=settings.analytics_target, full=args.full)
                for tenant_id in ids]

    reports = with_db(settings, go)
    if args.json:
        sys.stdout.write(json.dumps([{"tenant_id": r.tenant_id, "file": str(file_of(directory, r.tenant_id)),
                                      "exported_at": r.exported_at.isoformat(), "seconds": r.seconds,
                                      "size": r.size, "rows": r.rows, "mode": r.mode, "written": r.written}
                                     for r in reports], indent=2) + "\n")
        return 0
    if not reports:
        sys.stdout.write("no tenants\n")
    for r in reports:
        rows = ", ".join(f"{table} {count}" for table, count in r.rows.items() if table.startswith("fact_"))
        written = sum(n for table, n in r.written.items() if table.startswith("fact_"))
        sys.stdout.write(f"tenant {r.tenant_id}: {file_of(directory, r.tenant_id)} ({rows}; {r.mode}, "
                         f"{written} fact rows written; {r.seconds:.1f} s)\n")
    return 0
