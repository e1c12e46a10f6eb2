"""The memory report behind ``kill -USR2`` (zvonok.memdebug): what it says must point at what grew."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from zvonok.memdebug import type_counts


class Hoarded:
    """A type only this test creates, so its count in the report is ours alone."""


def test_type_counts_see_new_instances() -> None:
    kept = [Hoarded() for _ in range(250)]
    assert type_counts()[f"{__name__}.Hoarded"] == len(kept)


# The reports walk every object of the process (gc, tracemalloc): in a fresh interpreter, not in a test worker
# that holds what thousands of tests before it left (that took minutes).
GROWING = """
import sys, tracemalloc
from pathlib import Path
from zvonok.memdebug import MemoryReporter

class Hoarded:
    pass

reporter = MemoryReporter(Path(sys.argv[1]), frames=2)
first = reporter.report(collect=False)
kept = [Hoarded() for _ in range(3000)]
blob = [bytes(1000) for _ in range(2000)]  # about 2 MB: the top of the tracemalloc growth
second = reporter.report()
print(first.name, second.name)
"""
UNTRACED = """
import sys, tracemalloc
from pathlib import Path
from zvonok.memdebug import MemoryReporter

assert not tracemalloc.is_tracing()
print(MemoryReporter(Path(sys.argv[1])).report().name)
"""


def _run(code: str, tmp_path: Path) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True,
                         timeout=120)
    return out.stdout.split()


def test_second_report_names_the_growing_type_and_line(tmp_path: Path) -> None:
    assert _run(GROWING, tmp_path) == ["memdump-1.txt", "memdump-2.txt"]
    text = (tmp_path / "memdump-2.txt").read_text()
    assert "+3,000 | 3,000 | __main__.Hoarded" in text
    growth = text.split("### growth since the last report by lineno", 1)[1]
    assert "<string>" in growth.splitlines()[2]  # the first entry's location line: the script's list of bytes
    assert "gc.collect(0, 1, 2)" in text


def test_report_without_tracemalloc(tmp_path: Path) -> None:
    (name,) = _run(UNTRACED, tmp_path)
    text = (tmp_path / name).read_text()
    assert "objects tracked by gc" in text and "tracemalloc" not in text


def test_malloc_arenas_are_limited_before_threads_start() -> None:
    from zvonok.memdebug import limit_malloc_arenas

    assert limit_malloc_arenas(0) is False  # 0: glibc's default stays
    code = "from zvonok.memdebug import limit_malloc_arenas; print(limit_malloc_arenas(2))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "True"  # glibc accepted M_ARENA_MAX
