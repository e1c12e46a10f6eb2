"""The memory report behind ``kill -USR2`` (zvonok.memdebug): what it says must point at what grew."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from zvonok.memdebug import MemoryReporter, type_counts


class Hoarded:
    """A type only this test creates, so its count in the report is ours alone."""


@pytest.fixture
def no_tracing() -> Iterator[None]:
    was = tracemalloc.is_tracing()
    yield
    if not was:
        tracemalloc.stop()


def test_type_counts_see_new_instances() -> None:
    kept = [Hoarded() for _ in range(250)]
    assert type_counts()[f"{__name__}.Hoarded"] == len(kept)


def test_second_report_names_the_growing_type_and_line(tmp_path: Path, no_tracing: None) -> None:
    reporter = MemoryReporter(tmp_path, frames=2)
    first = reporter.report(collect=False)
    kept = [Hoarded() for _ in range(3000)]
    blob = [bytes(1000) for _ in range(2000)]  # ≈ 2 MB: the top of the tracemalloc growth
    second = reporter.report()
    assert first.name == "memdump-1.txt" and second.name == "memdump-2.txt"
    text = second.read_text()
    assert f"+3,000 | 3,000 | {__name__}.Hoarded" in text
    growth = text.split("### growth since the last report by lineno", 1)[1]
    assert "test_memdebug.py" in growth.splitlines()[2]  # the first entry's location line
    assert "gc.collect(0, 1, 2)" in text
    assert len(kept) + len(blob) == 5000


def test_report_without_tracemalloc(tmp_path: Path, no_tracing: None) -> None:
    if tracemalloc.is_tracing():
        tracemalloc.stop()
    text = MemoryReporter(tmp_path).report().read_text()
    assert "objects tracked by gc" in text and "tracemalloc" not in text


def test_malloc_arenas_are_limited_before_threads_start() -> None:
    import subprocess
    import sys

    from zvonok.memdebug import limit_malloc_arenas

    assert limit_malloc_arenas(0) is False  # 0: glibc's default stays
    code = "from zvonok.memdebug import limit_malloc_arenas; print(limit_malloc_arenas(2))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "True"  # glibc accepted M_ARENA_MAX
