"""The pure parts of bench/soak.py (the fit and the verdict on synthetic samples) and the tasks gauge it reads."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from bench_script import load
from prometheus_client import REGISTRY

import zvonok.metrics  # noqa: F401 - registers zvonok_asyncio_tasks

soak: Any = load("soak")

DURATION = 100.0  # seconds of load: samples before 20 s are the warm-up


def samples(*, rss_kb_per_call: float = 0.0, fds_leak_per_sample: float = 0.0, tasks: int | None = 20,
            tasks_leak_per_sample: int = 0,
            db_bytes_per_cdr: float = 500.0, warmup_rss_jump_kb: int = 50_000, n: int = 21) -> list[Any]:
    """A steady run: 100 calls ended every 5 s, fds noisy around 400 as calls come and go."""
    out = [soak.Sample(elapsed=0, calls_ended=0, calls_failed=0, calls_up=0, cdrs=0, rss_kb=100_000, fds=20,
                       tasks=12, db_bytes=500_000, phase="idle")]
    for i in range(1, n):
        calls = 100 * i
        warm = i * 5 < 0.2 * DURATION
        out.append(soak.Sample(
            elapsed=5.0 * i, calls_ended=calls, calls_failed=0, calls_up=80, cdrs=calls,
            # the warm-up's growth (caches, pools, lazy imports) must not count
            rss_kb=int(100_000 + (warmup_rss_jump_kb * i // 4 if warm else warmup_rss_jump_kb)
                       + rss_kb_per_call * calls),
            fds=int(400 + (7 if i % 2 else -7) + fds_leak_per_sample * i),
            tasks=None if tasks is None else tasks + (1 if i % 3 else -1) + tasks_leak_per_sample * i,
            db_bytes=int(1_000_000 + db_bytes_per_cdr * calls), registrations=10 * i, api_reads=5 * i))
    return out


def by_name(checks: list[Any]) -> dict[str, Any]:
    return {c.name: c for c in checks}


def test_linear_fit_recovers_a_line_and_is_flat_without_spread() -> None:
    slope, intercept = soak.linear_fit([1, 2, 3, 4], [5, 7, 9, 11])
    assert slope == pytest.approx(2.0)
    assert intercept == pytest.approx(3.0)
    assert soak.linear_fit([3, 3, 3], [1, 2, 6]) == (0.0, 3.0)
    with pytest.raises(ValueError):
        soak.linear_fit([1, 2], [1])


def test_a_steady_run_meets_every_target() -> None:
    checks = soak.verdict(samples(rss_kb_per_call=0.05), DURATION, calls_placed=2000, calls_failed=0)
    assert all(c.ok for c in checks), soak.checks_table(checks)
    rss = by_name(checks)["RSS growth per 10,000 calls"]
    assert rss.value == f"{0.05 * 10_000 / 1024:+.2f} MB"  # the warm-up's 50 MB jump is not in the fit


def test_the_warm_up_covers_tables_that_fill_for_minutes_but_not_most_of_the_run() -> None:
    assert soak.warmup_seconds(600) == soak.WARMUP_SECONDS  # 10 min: the nonce table's 300 s are covered
    assert soak.warmup_seconds(240) == pytest.approx(144)  # 4 min: 60% of it
    assert soak.warmup_seconds(600, seconds=0) == 120  # without it: 20%
    # growth that stops at 50 s (a table filling) passes only when the warm-up covers it
    run = samples()
    for s in run[1:]:
        s.rss_kb = 100_000 + int(60 * min(s.elapsed, 50.0)) * 100
    filling = by_name(soak.verdict(run, DURATION, calls_placed=2000, calls_failed=0))
    covered = by_name(soak.verdict(run, DURATION, calls_placed=2000, calls_failed=0, warmup_at_least=50))
    assert not filling["RSS growth per 10,000 calls"].ok
    assert covered["RSS growth per 10,000 calls"].ok


def test_rss_growing_past_one_megabyte_per_10000_calls_fails() -> None:
    checks = by_name(soak.verdict(samples(rss_kb_per_call=0.2), DURATION, calls_placed=2000, calls_failed=0))
    assert not checks["RSS growth per 10,000 calls"].ok
    assert checks["RSS growth per 10,000 calls"].value == f"{0.2 * 10_000 / 1024:+.2f} MB"
    assert checks["open files"].ok


def test_a_descriptor_leak_fails_but_noise_does_not() -> None:
    leaky = by_name(soak.verdict(samples(fds_leak_per_sample=3), DURATION, calls_placed=2000, calls_failed=0))
    assert not leaky["open files"].ok
    noisy = by_name(soak.verdict(samples(), DURATION, calls_placed=2000, calls_failed=0))
    assert noisy["open files"].ok
    assert "range 393–407" in noisy["open files"].value


def test_tasks_not_read_or_growing_fail() -> None:
    checks = by_name(soak.verdict(samples(tasks=None), DURATION, calls_placed=2000, calls_failed=0))
    assert not checks["asyncio tasks"].ok
    checks = by_name(soak.verdict(samples(tasks_leak_per_sample=1), DURATION, calls_placed=2000, calls_failed=0))
    assert not checks["asyncio tasks"].ok


def test_database_growing_beyond_its_cdrs_fails() -> None:
    checks = by_name(soak.verdict(samples(db_bytes_per_cdr=5000), DURATION, calls_placed=2000, calls_failed=0))
    assert not checks["database bytes per CDR"].ok
    assert checks["database bytes per CDR"].value == "5,000"


def test_failed_calls_budget_is_a_tenth_of_a_percent() -> None:
    assert by_name(soak.verdict(samples(), DURATION, calls_placed=2000, calls_failed=2))["failed calls"].ok
    assert not by_name(soak.verdict(samples(), DURATION, calls_placed=2000, calls_failed=3))["failed calls"].ok
    assert not by_name(soak.verdict(samples(), DURATION, calls_placed=0, calls_failed=0))["failed calls"].ok


def test_a_run_too_short_to_judge_fails() -> None:
    checks = soak.verdict(samples(n=3), DURATION, calls_placed=200, calls_failed=0)
    assert not by_name(checks)["RSS growth per 10,000 calls"].ok
    assert not by_name(checks)["open files"].ok


def test_the_tasks_gauge_counts_the_event_loops_tasks_at_scrape_time() -> None:
    async def scrape_with(extra: int) -> float | None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(stop.wait()) for _ in range(extra)]
        await asyncio.sleep(0)
        value = REGISTRY.get_sample_value("zvonok_asyncio_tasks")
        stop.set()
        await asyncio.gather(*tasks)
        return value

    assert asyncio.run(scrape_with(0)) == 1  # the coroutine's own task
    assert asyncio.run(scrape_with(5)) == 6
    value = REGISTRY.get_sample_value("zvonok_asyncio_tasks")  # no loop in this thread
    assert value is not None and math.isnan(value)
