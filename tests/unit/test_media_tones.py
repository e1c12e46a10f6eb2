"""Tone generators (phase continuity, cadences) and analysis (FFT peak, Goertzel)."""

from __future__ import annotations

import numpy as np
import pytest

from zvonok.media.tones import ToneGenerator, busy_ru, dominant_frequency, goertzel_power, ringback_ru, sine


def _frames(generator: ToneGenerator, count: int) -> np.ndarray:
    frames = [generator.read_frame() for _ in range(count)]
    assert all(f.shape == (160,) and f.dtype == np.int16 for f in frames)
    return np.concatenate(frames)


def test_ringback_is_425_hz_one_second_on_four_off() -> None:
    audio = _frames(ringback_ru(), 250 * 2)  # two 5 s cycles
    assert abs(dominant_frequency(audio[:8000]) - 425.0) < 5.0
    assert np.abs(audio[:8000]).max() > 5000
    assert not audio[8000:40000].any()  # 4 s of silence
    assert audio[40000:48000].any() and not audio[48000:80000].any()


def test_busy_is_425_hz_350_ms_cadence() -> None:
    audio = _frames(busy_ru(), 100)
    assert abs(dominant_frequency(audio[:2800]) - 425.0) < 5.0
    on = np.abs(audio.reshape(-1, 40)).max(axis=1) > 0  # 5 ms blocks
    assert on[:70].all() and not on[70:140].any() and on[140:210].all()


def test_frames_join_with_phase_continuity() -> None:
    n = np.arange(160 * 50)
    expected = np.round(np.sin(2 * np.pi * 1000.0 * n / 8000) * 0.25 * 32767).astype(np.int16)
    assert np.array_equal(_frames(sine(1000.0), 50), expected)
    # a frequency that is no divisor of the rate: no jump at frame boundaries
    audio = _frames(sine(433.3), 50).astype(np.float64)
    assert np.abs(np.diff(audio)).max() <= 2 * np.pi * 433.3 / 8000 * 0.25 * 32767 + 2


@pytest.mark.parametrize("frequency", [300.0, 425.0, 1000.0, 2000.0, 3400.0])
def test_dominant_frequency(frequency: float) -> None:
    assert abs(dominant_frequency(_frames(sine(frequency), 10)) - frequency) < 5.0


def test_dominant_frequency_of_a_dual_tone_is_the_stronger_one() -> None:
    generator = ToneGenerator((697.0, 1209.0))
    audio = _frames(generator, 10).astype(np.float64) + 0.3 * _frames(sine(1209.0), 10)
    assert abs(dominant_frequency(audio) - 1209.0) < 5.0
    with pytest.raises(ValueError):
        dominant_frequency(np.zeros(2))


def test_goertzel_power() -> None:
    audio = _frames(sine(1000.0, amplitude=0.5), 5)  # amplitude ≈ 16383
    power = goertzel_power(audio, 1000.0)
    assert power == pytest.approx(16383.5**2 / 2, rel=0.02)
    assert goertzel_power(audio, 1400.0) < power / 1000
    assert goertzel_power(np.zeros(0), 1000.0) == 0.0
