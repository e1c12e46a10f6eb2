"""The pure parts of bench/cluster.py: the rate list, the process tree, a clean step and the 2/1 ratio."""

from __future__ import annotations

from typing import Any

import pytest
from bench_script import load

cluster: Any = load("cluster")


def step(rate: int, ok: int, *, calls: int | None = None, retrans: int = 0, seconds: float = 5.0,
         nodes: int = 1) -> Any:
    return cluster.Step(kind="reg", nodes=nodes, rate=rate, calls=calls if calls is not None else ok, ok=ok,
                        seconds=seconds, retrans=retrans, node_cpu=[1.0] * nodes, edge_cpu=0.5, sipp_cpu=0.1,
                        rc=0)


def test_rates_are_parsed_and_must_increase() -> None:
    assert cluster.parse_rates(" 50, 100,150 ,") == [50, 100, 150]
    for bad in ("100,50", "50,50", "0,10", "-5"):
        with pytest.raises(ValueError):
            cluster.parse_rates(bad)


def test_descendants_walk_the_whole_tree_and_nothing_else() -> None:
    parents = {10: 1, 11: 10, 12: 10, 13: 11, 20: 1, 21: 20}
    assert cluster.descendants(10, parents) == {10, 11, 12, 13}
    assert cluster.descendants(13, parents) == {13}


def test_a_step_is_clean_without_failures_or_retransmissions_at_the_offered_rate() -> None:
    assert step(100, 500).clean
    assert not step(100, 499, calls=500).clean  # 0.2% failed
    assert step(100, 1000, calls=1001).clean  # 0.1% failed is within the budget
    assert step(100, 500, retrans=2).clean  # 0.4% of the calls retransmitted
    assert not step(100, 500, retrans=3).clean
    assert not step(100, 500, seconds=7.0).clean  # 71/s achieved of 100/s offered


def test_best_and_ratio_take_the_highest_clean_step() -> None:
    one = [step(100, 500), step(200, 1000), step(300, 1500, retrans=100)]
    two = [step(200, 1000, nodes=2), step(300, 1500, nodes=2), step(400, 1000, calls=2000, nodes=2)]
    assert cluster.best(one).rate == 200
    assert cluster.best(two).rate == 300
    assert cluster.ratio(cluster.best(two), cluster.best(one)) == pytest.approx(1.5)
    assert cluster.best([step(100, 1, calls=500)]) is None
    assert cluster.ratio(None, cluster.best(one)) is None


def test_cpu_sets_are_parsed_and_checked_against_the_machine() -> None:
    assert cluster.parse_cpu_sets("2;3", {0, 1, 2, 3}) == [{2}, {3}]
    assert cluster.parse_cpu_sets(" 0-1 ; 2,3", {0, 1, 2, 3}) == [{0, 1}, {2, 3}]
    for bad in ("4", "1-0", "0;;1", "x", ""):
        with pytest.raises(ValueError):
            cluster.parse_cpu_sets(bad, {0, 1, 2, 3})
