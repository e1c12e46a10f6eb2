"""Silence detection on recorded audio: how a voicemail recording ends when the caller stops talking.

How it works: the samples written to a recording are cut into 20 ms frames; a frame whose RMS level is
below ``threshold_dbfs`` is silent. :meth:`SilenceDetector.feed` counts silent frames in a row (a loud
frame starts the count again) and returns True once, the first time the run reaches ``seconds``; after
sound it may fire again. -45 dBFS lies between a quiet voice on G.711 (about -30 dBFS and louder) and the
line noise of a handset held to nobody (below -55 dBFS). Sans-I/O: fed numpy arrays, no clock.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .g711 import CLOCK_RATE, FRAME_SAMPLES

DEFAULT_THRESHOLD_DBFS = -45.0


class SilenceDetector:
    def __init__(self, seconds: float, *, threshold_dbfs: float = DEFAULT_THRESHOLD_DBFS,
                 rate: int = CLOCK_RATE, frame: int = FRAME_SAMPLES) -> None:
        if seconds <= 0:
            raise ValueError("a silence limit is positive")
        self.frame = frame
        self.limit = int(seconds * rate)  # samples of silence in a row
        # mean square of full scale (32768) at the threshold: compared with each frame's mean square
        self._threshold = (32768.0 * 10 ** (threshold_dbfs / 20)) ** 2
        self.silent = 0  # samples of silence in a row so far
        self._fired = False
        self._rest = np.zeros(0, dtype=np.int16)

    def feed(self, samples: npt.NDArray[np.int16]) -> bool:
        """True the first time the silence reaches the limit (again after sound in between)."""
        data = np.concatenate((self._rest, np.asarray(samples, dtype=np.int16).reshape(-1)))
        whole = data.size // self.frame * self.frame
        self._rest = data[whole:]
        if not whole:
            return False
        frames = data[:whole].astype(np.float64).reshape(-1, self.frame)
        quiet = np.mean(frames * frames, axis=1) < self._threshold
        fired = False
        loud = np.flatnonzero(~quiet)
        if loud.size:
            self._fired = False
            self.silent = int(quiet.size - 1 - loud[-1]) * self.frame
        else:
            self.silent += whole
        if self.silent >= self.limit and not self._fired:
            self._fired = fired = True
        return fired
