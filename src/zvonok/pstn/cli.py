"""``zvonok rates import|export``: a tariff's rate deck from and to CSV without the API.

Hooked into :func:`zvonok.cli.build_parser` with ``add_parser(sub)``; each command has the CLI's
signature ``(args, settings) -> exit code``. An import is all or nothing (one transaction, as
``PUT /api/v1/platform/tariffs/{id}/rates``): with any bad row every problem is printed with its line
number, nothing changes and the exit code is 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from zvonok.billing.rates_csv import RateImport
from zvonok.config import Settings
from zvonok.storage.db import Database

T = TypeVar("T")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``rates`` command (``import`` and ``export``) to the CLI's subcommands."""
    rates = sub.add_parser("rates", help="tariff rate decks (CSV)").add_subparsers(
        dest="rates_cmd", metavar="ACTION", required=True)
    sp = rates.add_parser(
        "import", help="replace a tariff's rates with a CSV deck (all or nothing)",
        description="Replace every rate of the tariff with the file's. Columns: prefix, destination, rate "
        "and optionally connection_fee, increment (60/60), minimum, rate_<period>; ';' or ',' separated, UTF-8 "
        "or Windows-1251. A file with any bad row changes nothing: every problem is listed with its line.")
    sp.add_argument("--tariff", type=int, required=True, metavar="ID", help="the tariff's id")
    sp.add_argument("file", help="the CSV file ('-' reads standard input)")
    sp.set_defaults(func=cmd_rates_import)
    sp = rates.add_parser("export", help="write a tariff's rates as CSV (importable as it is)")
    sp.add_argument("--tariff", type=int, required=True, metavar="ID", help="the tariff's id")
    sp.add_argument("file", nargs="?", default="-", help="where to write (default: standard output)")
    sp.set_defaults(func=cmd_rates_export)


def cmd_rates_import(args: argparse.Namespace, settings: Settings) -> int:
    from zvonok.cli import with_db
    from zvonok.pstn import service

    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()

    # a progress bar on a terminal (checking every row, then writing them); nothing when piped
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=not console.is_terminal, transient=True) as progress:
        tasks: dict[str, TaskID] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(f"{stage} rates", total=total)
            progress.update(tasks[stage], completed=done)

        async def go(db: Database) -> RateImport:
            async with db.session() as session:
                result = await service.replace_rates(session, args.tariff, data, on_progress=on_progress)
                if result.ok:
                    await session.commit()
                return result

        result = with_db(settings, go)
    if not result.ok:
        name = "stdin" if args.file == "-" else Path(args.file).name
        for error in result.errors:
            sys.stderr.write(f"zvonok: error: {name} line {error.line}: {error.message}\n")
        sys.stderr.write(f"zvonok: error: {len(result.errors)} problem(s); nothing was imported\n")
        return 1
    sys.stdout.write(f"{len(result.rates)} rates imported into tariff {args.tariff}\n")
    return 0


def cmd_rates_export(args: argparse.Namespace, settings: Settings) -> int:
    from zvonok.cli import with_db
    from zvonok.pstn import reports, service

    async def go(db: Database) -> str:
        async with db.session() as session:
            return reports.rates_csv(await service.all_rates(session, args.tariff))

    text = with_db(settings, go)
    if args.file == "-":
        sys.stdout.write(text)
    else:
        Path(args.file).write_text(text, encoding="utf-8")
    return 0
