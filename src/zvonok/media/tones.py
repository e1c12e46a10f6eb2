"""Call-progress tones (8 kHz int16, 20 ms frames) and tone analysis (FFT peak, Goertzel power).

How it works: a :class:`ToneGenerator` keeps an absolute sample counter; each frame is computed from it
with numpy (phase = 2π·f·n/rate, reduced modulo the period so the float stays exact over hours), so
frames join without phase jumps and the cadence (on/off pattern) is evaluated per sample, not per frame.
Cadences follow the Russian national plan (GOST / ITU-T E.180 Supplement 2): ringback 425 Hz 1 s on,
4 s off; busy 425 Hz 0.35 s on, 0.35 s off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from .g711 import CLOCK_RATE, FRAME_SAMPLES, Samples

DEFAULT_AMPLITUDE = 0.25  # of full scale: about -15 dBm0, a usual call-progress level


class FrameSource(Protocol):
    """Audio for playback: the next int16 frame (20 ms at 8 kHz), or None when it has ended."""

    def read_frame(self) -> Samples | None: ...


class ToneGenerator:
    """An endless tone with an optional cadence; :meth:`read_frame` returns the next 20 ms frame."""

    def __init__(
        self,
        frequencies: Sequence[float],
        *,
        cadence: Sequence[float] = (),
        amplitude: float = DEFAULT_AMPLITUDE,
        rate: int = CLOCK_RATE,
        frame: int = FRAME_SAMPLES,
    ) -> None:
        """``cadence`` alternates on/off durations in seconds (empty: continuous)."""
        self.frequencies = tuple(frequencies)
        self.rate = rate
        self.frame = frame
        self._scale = amplitude * 32767 / max(len(self.frequencies), 1)
        self._position = 0
        bounds = np.cumsum([round(seconds * rate) for seconds in cadence]) if cadence else np.zeros(0)
        self._cycle = int(bounds[-1]) if len(bounds) else 0
        self._bounds = bounds

    def read_frame(self) -> Samples:
        n = np.arange(self._position, self._position + self.frame, dtype=np.int64)
        self._position += self.frame
        signal = np.zeros(self.frame, dtype=np.float64)
        for frequency in self.frequencies:
            # period in samples as a fraction rate/gcd: n modulo it keeps the phase exact forever
            period = self.rate // math.gcd(self.rate, int(frequency)) if frequency == int(frequency) else 0
            k = n % period if period else n
            signal += np.sin(2 * np.pi * frequency * k / self.rate)
        if self._cycle:
            phase = n % self._cycle
            on = (np.searchsorted(self._bounds, phase, side="right") % 2) == 0
            signal *= on
        return np.round(signal * self._scale).astype(np.int16)


def sine(frequency: float, *, amplitude: float = DEFAULT_AMPLITUDE) -> ToneGenerator:
    return ToneGenerator((frequency,), amplitude=amplitude)


def ringback_ru() -> ToneGenerator:
    """Russian ringback (КПВ): 425 Hz, 1 s on, 4 s off."""
    return ToneGenerator((425.0,), cadence=(1.0, 4.0))


def busy_ru() -> ToneGenerator:
    """Russian busy (занято): 425 Hz, 0.35 s on, 0.35 s off."""
    return ToneGenerator((425.0,), cadence=(0.35, 0.35))


def dominant_frequency(samples: npt.NDArray[np.integer] | npt.NDArray[np.floating], rate: int = CLOCK_RATE) -> float:
    """The strongest frequency in ``samples`` (Hann window, FFT, parabolic interpolation between bins)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 4:
        raise ValueError("need at least 4 samples")
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    spectrum[0] = 0.0
    peak = int(np.argmax(spectrum))
    offset = 0.0
    if 0 < peak < spectrum.size - 1:
        left, centre, right = np.log(spectrum[peak - 1 : peak + 2] + 1e-12)
        denominator = left - 2 * centre + right
        if denominator != 0:
            offset = 0.5 * (left - right) / denominator
    return float((peak + offset) * rate / x.size)


def goertzel_power(
    samples: npt.NDArray[np.integer] | npt.NDArray[np.floating], frequency: float, rate: int = CLOCK_RATE
) -> float:
    """Power of ``samples`` at ``frequency``: what the Goertzel recurrence computes, as one numpy dot
    product (no per-sample Python loop). Normalised so a sine of amplitude A at ``frequency`` gives ≈ A²/2
    (its mean power) whatever the block length.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return 0.0
    n = np.arange(x.size)
    component = np.dot(x, np.exp(-2j * np.pi * frequency * n / rate))
    return float(2 * abs(component) ** 2 / x.size**2)
