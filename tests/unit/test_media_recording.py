"""Recording alignment by arrival time in 20 ms slots (fake clock, in-memory writer)."""

from __future__ import annotations

import numpy as np
import pytest

from zvonok.media.recording import SlotRecorder


class MemoryWriter:
    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []

    def write(self, samples: np.ndarray) -> None:
        self.chunks.append(np.array(samples))

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks)


def _frame(value: int) -> np.ndarray:
    return np.full(160, value, dtype=np.int16)


def test_stereo_alignment_with_gaps_and_jitter() -> None:
    writer = MemoryWriter()
    recorder = SlotRecorder(writer, 2, stereo=True, start=100.0)
    for i in range(50):  # leg 0: every 20 ms, a few ms of jitter
        recorder.feed(0, _frame(1000 + i), 100.0 + 0.02 * i + (0.004 if i % 3 else 0.0))
        if i < 10 or i >= 30:  # leg 1: silent from 200 ms to 600 ms
            recorder.feed(1, _frame(-(1000 + i)), 100.0 + 0.02 * i + 0.001)
        if i % 10 == 0:
            recorder.flush(100.0 + 0.02 * i)
    recorder.finish()
    audio = writer.audio
    assert audio.shape == (50 * 160, 2)
    left, right = audio[:, 0].reshape(-1, 160), audio[:, 1].reshape(-1, 160)
    assert [int(f[0]) for f in left] == [1000 + i for i in range(50)]
    assert [int(f[0]) for f in right] == [-(1000 + i) if i < 10 or i >= 30 else 0 for i in range(50)]


def test_mono_mix_clips() -> None:
    writer = MemoryWriter()
    recorder = SlotRecorder(writer, 3, stereo=False, start=0.0)
    for leg, value in enumerate((30000, 30000, -100)):
        recorder.feed(leg, _frame(value), 0.0)
    recorder.feed(2, _frame(7), 0.02)
    recorder.finish()
    assert writer.audio.shape == (320,)
    assert set(writer.audio[:160].tolist()) == {32767} and set(writer.audio[160:].tolist()) == {7}


def test_burst_after_a_stall_is_dropped_beyond_max_ahead() -> None:
    writer = MemoryWriter()
    recorder = SlotRecorder(writer, 1, stereo=False, start=0.0)
    for i in range(30):  # 30 frames (600 ms) arrive at once at t = 1 s
        recorder.feed(0, _frame(i + 1), 1.0)
    assert recorder.dropped == 30 - 11  # 1 at the slot + 10 (200 ms) ahead
    recorder.flush(1.5)
    recorder.finish()
    frames = writer.audio.reshape(-1, 160)
    assert not frames[:50].any() and [int(f[0]) for f in frames[50:]] == list(range(1, 12))


def test_partial_flush_keeps_the_rest() -> None:
    writer = MemoryWriter()
    recorder = SlotRecorder(writer, 1, stereo=False, start=0.0, delay=0.0)
    recorder.feed(0, np.arange(240, dtype=np.int16), 0.0)  # a 30 ms packet
    recorder.flush(0.02)  # one slot
    recorder.finish()
    assert np.array_equal(writer.audio, np.arange(240))
    assert [c.size for c in writer.chunks] == [160, 80]


def test_invalid_shapes() -> None:
    with pytest.raises(ValueError):
        SlotRecorder(MemoryWriter(), 3, stereo=True, start=0.0)
    with pytest.raises(ValueError):
        SlotRecorder(MemoryWriter(), 0, stereo=False, start=0.0)
