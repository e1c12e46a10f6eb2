"""Call recording: align several legs' audio by arrival time and write mixed mono or stereo WAV.

How it works: the recording's timeline is the engine clock from ``start`` in samples, cut into 20 ms slots.
Each leg keeps a *cursor* (the sample where its next packet's audio goes). A packet arriving at ``now``
belongs to slot ``floor((now - start) / 20 ms)``:

* if the cursor is more than ``SLACK`` behind that slot, the leg was silent (lost packets, VAD, hold):
  the cursor jumps to the slot and the gap stays silence;
* if the cursor is more than ``MAX_AHEAD`` ahead, the packet is dropped (a burst after a network stall —
  what a jitter buffer would discard too), so two legs never drift apart by more than that;
* otherwise the samples are appended at the cursor (packet jitter does not tear the audio apart).

:meth:`SlotRecorder.flush` writes everything older than ``delay`` (later than any accepted packet can
land), filling silence where a leg had nothing; stereo puts leg 0 left and leg 1 right, mono sums the
legs (clipped). Sans-I/O: ``now`` is passed in; the writer is anything with ``write(ndarray)``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from .g711 import CLOCK_RATE, FRAME_SAMPLES, Samples

SLACK = 0.060
MAX_AHEAD = 0.200
DELAY = 0.300


class FrameWriter(Protocol):
    def write(self, samples: npt.NDArray[np.int16]) -> None: ...


class _Leg:
    __slots__ = ("chunks", "cursor")

    def __init__(self) -> None:
        self.cursor = 0
        self.chunks: list[tuple[int, Samples]] = []


class SlotRecorder:
    def __init__(self, writer: FrameWriter, legs: int, *, stereo: bool, start: float,
                 rate: int = CLOCK_RATE, frame: int = FRAME_SAMPLES, delay: float = DELAY) -> None:
        if stereo and legs != 2:
            raise ValueError("a stereo recording has exactly two legs")
        if legs < 1:
            raise ValueError("nothing to record")
        self.writer = writer
        self.stereo = stereo
        self.start = start
        self.rate = rate
        self.frame = frame
        self.delay = delay
        self.written = 0  # samples written per channel
        self.dropped = 0
        self._legs = [_Leg() for _ in range(legs)]
        self._slack = int(SLACK * rate)
        self._ahead = int(MAX_AHEAD * rate)

    def feed(self, leg: int, samples: Samples, now: float) -> None:
        state = self._legs[leg]
        slot = int((now - self.start) * self.rate) // self.frame * self.frame
        cursor = max(state.cursor, self.written)
        if cursor < slot - self._slack:
            cursor = slot
        elif cursor > slot + self._ahead:
            self.dropped += 1
            return
        state.chunks.append((cursor, samples))
        state.cursor = cursor + samples.size

    def flush(self, now: float) -> None:
        """Write the timeline up to ``now - delay`` (whole slots)."""
        due = int((now - self.start - self.delay) * self.rate) // self.frame * self.frame
        self._write_until(due)

    def finish(self) -> None:
        """Write everything received so far (call before closing the writer)."""
        self._write_until(max(leg.cursor for leg in self._legs))

    def _write_until(self, due: int) -> None:
        count = due - self.written
        if count <= 0:
            return
        channels = []
        for state in self._legs:
            out = np.zeros(count, dtype=np.int16)
            keep: list[tuple[int, Samples]] = []
            for at, samples in state.chunks:
                lo = at - self.written
                hi = lo + samples.size
                if lo < count:
                    out[max(lo, 0) : min(hi, count)] = samples[max(-lo, 0) : min(samples.size, count - lo)]
                if hi > count:
                    keep.append((due, samples[samples.size - (hi - count) :]) if lo < count else (at, samples))
            state.chunks = keep
            channels.append(out)
        if self.stereo:
            self.writer.write(np.column_stack(channels))
        else:
            mixed = np.sum(np.asarray(channels, dtype=np.int32), axis=0) if len(channels) > 1 else channels[0]
            self.writer.write(np.clip(mixed, -32768, 32767).astype(np.int16))
        self.written = due


class ArrivalTap:
    """Received audio handed on in the order it arrives, for a consumer that needs every sample in sequence
    (the fax terminal's modems). :class:`SlotRecorder` places audio on a wall-clock timeline, which is right
    for a recording but not for a modem: wherever the event loop or the sender stalled longer than its delay,
    it writes silence and then drops or shifts the late frames, and a V.17 page breaks. Here a frame is
    written when it arrives; silence only after ``quiet`` seconds with nothing at all (the far end went
    away), so that the consumer's own timers (T.30's, counted in samples) still run on."""

    def __init__(self, writer: FrameWriter, *, start: float, rate: int = CLOCK_RATE,
                 frame: int = FRAME_SAMPLES, quiet: float = 0.5) -> None:
        self.writer = writer
        self.rate = rate
        self.frame = frame
        self.quiet = quiet
        self.last = start  # when audio last arrived, or silence was last written
        self.dropped = 0

    def feed(self, leg: int, samples: Samples, now: float) -> None:
        self.writer.write(samples)
        self.last = now

    def flush(self, now: float) -> None:
        gap = int((now - self.last) * self.rate) // self.frame * self.frame
        if now - self.last > self.quiet and gap > 0:
            self.writer.write(np.zeros(gap, dtype=np.int16))
            self.last += gap / self.rate

    def finish(self) -> None:
        pass
