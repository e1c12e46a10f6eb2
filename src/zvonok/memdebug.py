"""Memory reports of a running server, for finding what grows (issue 8, the soak).

``kill -USR2 <pid>`` makes ``zvonok serve`` write ``<data_dir>/memdump-<n>.txt``:

* the process's RSS, the collector's counters and the objects the collector tracks, counted by type,
  with the change since the previous report (a type whose count rises from report to report under a
  steady load is what leaks);
* with ``ZVONOK_TRACEMALLOC=<frames>`` set at start-up, tracing starts at the first report (the baseline:
  a loaded server traced from its start falls behind) and each later report lists the allocations made
  since then and still held, by line and by traceback (``tracemalloc`` costs CPU and memory: debugging only);
* then what a full collection and ``malloc_trim`` give back: RSS that falls after ``gc.collect()`` was
  garbage waiting for a rare full collection (``server._tune_gc``); RSS that falls only after
  ``malloc_trim`` was free memory the C allocator kept (fragmentation), not a leak.

Reports block the event loop for a moment (tens of ms per 100,000 objects; seconds with a large trace):
a debugging aid, never a monitoring probe. None is written at shutdown (with a large trace it outlasted
the harness's patience for SIGTERM): ask for the last one before stopping.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import linecache
import os
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TOP = 40


def rss_kb() -> int:
    """Resident set size of this process (Linux ``/proc``; 0 elsewhere)."""
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)``: hand the allocator's free pages back to the system."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: int(trim(0))


_M_ARENA_MAX = -8  # glibc <malloc.h>


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas, as ``MALLOC_ARENA_MAX`` does; call it before threads start (an arena is
    made when a thread first allocates). Each thread that allocates may get an arena of its own (up to 8 per
    core) whose freed space only that arena reuses: the database and DNS worker threads come and go, and
    in the soak RSS grew about twice as fast with glibc's default as with 2 arenas (docs/benchmarks.md).
    The price, lock contention between threads in malloc, is small here: one thread does almost all the work.
    False when this is not glibc (or ``arenas`` is 0: keep the default)."""
    name = ctypes.util.find_library("c")
    if arenas <= 0 or name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))


def sqlite_memory() -> tuple[int, int] | None:
    """Bytes SQLite's allocator holds now and at most since start (its page caches, statements): C memory
    that tracemalloc does not see. None when the library cannot be reached."""
    import sqlite3  # noqa: F401 - loads the libsqlite3 that the process uses

    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        used, highwater = lib.sqlite3_memory_used, lib.sqlite3_memory_highwater
    except (OSError, AttributeError):
        return None
    used.restype = highwater.restype = ctypes.c_int64
    highwater.argtypes = [ctypes.c_int]
    return int(used()), int(highwater(0))


def type_counts() -> Counter[str]:
    """Objects the collector tracks (containers, instances), by qualified type name."""
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        counts[f"{kind.__module__}.{kind.__qualname__}"] += 1
    return counts


@dataclass
class MemoryReporter:
    """Writes numbered reports into ``directory``, each compared with the one before."""

    directory: Path
    frames: int = 0  # tracemalloc frames; 0: tracemalloc off
    n: int = 0
    _counts: Counter[str] = field(default_factory=Counter)
    _snapshot: tracemalloc.Snapshot | None = None
    _started: float = field(default_factory=time.monotonic)

    def start(self) -> None:
        if self.frames > 0 and not tracemalloc.is_tracing():
            tracemalloc.start(self.frames)

    def report(self, *, collect: bool = True) -> Path:
        self.n += 1
        if self.n == 1:
            self.start()
        lines = [f"memory report {self.n} at {time.monotonic() - self._started:.0f} s, pid {os.getpid()}",
                 f"RSS {rss_kb() / 1024:.1f} MB; gc counts {gc.get_count()}, frozen {gc.get_freeze_count()}, "
                 f"collections {[s['collections'] for s in gc.get_stats()]}"]
        sqlite = sqlite_memory()
        if sqlite is not None:
            lines.append(f"SQLite memory {sqlite[0] / 2**20:.1f} MB (highest {sqlite[1] / 2**20:.1f} MB)")
        counts = type_counts()
        lines.append(f"\n## objects tracked by gc: {sum(counts.values()):,} "
                     f"({sum(counts.values()) - sum(self._counts.values()):+,} since the last report)")
        lines.append("change | count | type")
        growth = sorted(counts, key=lambda k: counts[k] - self._counts.get(k, 0), reverse=True)
        lines += [f"{counts[k] - self._counts.get(k, 0):+,} | {counts[k]:,} | {k}" for k in growth[:TOP]]
        lines.append("\nlargest counts:")
        lines += [f"{v:,} | {k}" for k, v in counts.most_common(15)]
        self._counts = counts
        if tracemalloc.is_tracing():
            lines += self._traced()
        if collect:
            lines.append("")
            before = rss_kb()
            # generation by generation: garbage found only by the older ones waited for collections
            # that server._tune_gc makes rare
            found = [gc.collect(generation) for generation in (0, 1, 2)]
            lines.append(f"gc.collect(0, 1, 2): {found[0]:,} / {found[1]:,} / {found[2]:,} unreachable objects; "
                         f"RSS {before / 1024:.1f} -> {rss_kb() / 1024:.1f} MB")
            trim = _malloc_trim()
            if trim is not None:
                before = rss_kb()
                released = trim()
                lines.append(f"malloc_trim(0) -> {released}; RSS {before / 1024:.1f} -> {rss_kb() / 1024:.1f} MB")
        path = self.directory / f"memdump-{self.n}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def _traced(self) -> list[str]:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")])
        current, peak = tracemalloc.get_traced_memory()
        # the source lines that formatting these reports (and logged tracebacks) read into linecache are the
        # reports' cost, not the server's: the figure a benchmark divides by calls leaves them out
        held = sum(stat.size for stat in snapshot.filter_traces(
            [tracemalloc.Filter(False, linecache.__file__)]).statistics("filename"))
        lines = [f"\n## tracemalloc: {current / 2**20:.1f} MB traced (peak {peak / 2**20:.1f} MB); {held} bytes "
                 "held outside linecache"]
        if self._snapshot is not None:
            for key in ("lineno", "traceback"):
                lines.append(f"\n### growth since the last report by {key}")
                for stat in snapshot.compare_to(self._snapshot, key)[:TOP if key == "lineno" else 15]:
                    lines.append(f"{stat.size_diff / 1024:+,.1f} KiB {stat.count_diff:+,} blocks "
                                 f"(now {stat.size / 1024:,.1f} KiB)")
                    frames = stat.traceback.format(limit=self.frames if key == "traceback" else 1, most_recent_first=True)
                    lines += [f"    {f.strip()}" for f in frames if f.strip()]
        lines.append("\n### largest by line")
        for top in snapshot.statistics("lineno")[:20]:
            lines.append(f"{top.size / 1024:,.1f} KiB {top.count:,} blocks  {top.traceback.format(limit=1)[0].strip()}")
        self._snapshot = snapshot
        return lines
