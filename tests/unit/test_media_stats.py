"""Stream statistics: loss (RFC 3550 A.3) across wrap and source changes, jitter (A.8)."""

from __future__ import annotations

import pytest

from zvonok.media.stats import StreamStats


def _feed(stats: StreamStats, seqs: list[int], ssrc: int = 1, jitter_ms: float = 0.0) -> None:
    for i, seq in enumerate(seqs):
        arrival = i * 0.02 + (jitter_ms / 1000 if i % 2 else 0.0)
        stats.received(ssrc, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, 172, arrival)


def test_no_loss_and_no_jitter_for_a_regular_stream() -> None:
    stats = StreamStats()
    _feed(stats, list(range(65500, 65600)))  # wraps
    snapshot = stats.snapshot(("10.0.0.1", 4000))
    assert (snapshot.packets_received, snapshot.bytes_received, snapshot.packets_lost) == (100, 17200, 0)
    assert snapshot.jitter_ms == pytest.approx(0.0, abs=1e-6)
    assert snapshot.remote == ("10.0.0.1", 4000) and snapshot.last_received_at == pytest.approx(1.98)


def test_loss_counts_gaps_across_wrap_and_duplicates_reduce_it() -> None:
    stats = StreamStats()
    seqs = [s for s in range(65530, 65560) if s not in (65534, 65536, 65537)]
    _feed(stats, seqs)
    assert stats.packets_lost == 3
    stats.received(1, 65559 & 0xFFFF, 0, 172, 1.0)  # a duplicate
    assert stats.packets_lost == 2


def test_a_new_ssrc_starts_a_new_sequence_space_and_keeps_old_loss() -> None:
    stats = StreamStats()
    _feed(stats, [1, 2, 5])
    _feed(stats, [40000, 40001, 40003], ssrc=2)
    assert stats.packets_lost == 2 + 1


def test_a_big_jump_needs_confirmation() -> None:
    stats = StreamStats()
    _feed(stats, [10, 11, 12])
    stats.received(1, 30000, 0, 172, 1.0)  # a stray packet: not believed
    assert stats.packets_lost == 0
    stats.received(1, 20000, 0, 172, 1.0)
    stats.received(1, 20001, 0, 172, 1.02)  # the sender restarted: resync, earlier loss of 0 kept
    assert stats.packets_lost == 0 and stats.max_seq == 20001


def test_jitter_estimate() -> None:
    stats = StreamStats()
    _feed(stats, list(range(1000)), jitter_ms=4.0)
    # alternating ±4 ms transit changes: D is 4 ms every packet, the estimate converges to it
    assert stats.snapshot().jitter_ms == pytest.approx(4.0, rel=0.01)


def test_sent_counters_and_non_audio_packets_do_not_feed_jitter() -> None:
    stats = StreamStats()
    for i in range(10):
        stats.received(1, i, 5000, 16, i * 0.02, audio=False)  # telephone-events: one timestamp
        stats.sent(172)
    snapshot = stats.snapshot()
    assert snapshot.jitter_ms == 0.0 and snapshot.packets_sent == 10 and snapshot.bytes_sent == 1720
