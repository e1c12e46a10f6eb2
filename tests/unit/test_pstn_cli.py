"""``zvonok rates import|export`` (zvonok.pstn.cli) on a parser of its own, as zvonok.cli will mount it."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from zvonok.config import Settings
from zvonok.pstn import cli, schemas, service
from zvonok.storage.db import Database

DECK = "prefix;destination;rate\n7495;Moscow;1,50\n79;Mobile;3\n"


def _run(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="zvonok")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args, settings))


async def _tariff(settings: Settings) -> int:
    db = Database(settings.resolved_database_url())
    try:
        await db.upgrade()
        async with db.session() as session:
            tariff = await service.platform_create_tariff(session, schemas.TariffCreate(name="Retail"))
            await session.commit()
            return tariff.id
    finally:
        await db.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", secret_key="test-secret-key-0123456789abcdef0123")


def test_import_and_export(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tariff = asyncio.run(_tariff(settings))
    deck = tmp_path / "deck.csv"
    deck.write_bytes(DECK.encode("cp1251"))
    assert _run(settings, "rates", "import", "--tariff", str(tariff), str(deck)) == 0
    assert capsys.readouterr().out == f"2 rates imported into tariff {tariff}\n"
    assert _run(settings, "rates", "export", "--tariff", str(tariff)) == 0
    assert capsys.readouterr().out.splitlines() == [
        "prefix,destination,rate,connection_fee,increment,minimum", "7495,Moscow,1.5,0,60/60,0", "79,Mobile,3,0,60/60,0"]

    deck.write_text("prefix;destination;rate\n7495;;1\n7x;Bad;1\n")
    assert _run(settings, "rates", "import", "--tariff", str(tariff), str(deck)) == 1
    assert capsys.readouterr().err.splitlines() == [
        "zvonok: error: deck.csv line 2: destination is empty",
        "zvonok: error: deck.csv line 3: prefix '7x' is not 1 to 15 digits",
        "zvonok: error: 2 problem(s); nothing was imported",
    ]
    out = tmp_path / "out.csv"
    assert _run(settings, "rates", "export", "--tariff", str(tariff), str(out)) == 0
    assert out.read_text().count("\n") == 3  # the old deck is intact


def test_import_reports_progress_of_checking_then_writing(settings: Settings) -> None:
    """The progress the CLI's bar shows: every row checked, then every row written, in that order."""
    tariff = asyncio.run(_tariff(settings))
    deck = "prefix,destination,rate\n" + "".join(f"{7000000 + n},Dest {n},1.{n % 100:02d}\n" for n in range(12_000))
    seen: list[tuple[str, int, int]] = []

    async def go() -> bool:
        db = Database(settings.resolved_database_url())
        try:
            async with db.session() as session:
                result = await service.replace_rates(session, tariff, deck,
                                                     on_progress=lambda *args: seen.append(args))
                await session.commit()
                return result.ok
        finally:
            await db.dispose()

    assert asyncio.run(go())
    stages = [stage for stage, _, _ in seen]
    assert stages.index("writing") > max(i for i, s in enumerate(stages) if s == "checking")
    assert seen[-1] == ("writing", 12_000, 12_000)
    assert [d for s, d, _ in seen if s == "writing"] == [5000, 10_000, 12_000]
    assert max(d for s, d, _ in seen if s == "checking") == 12_000
