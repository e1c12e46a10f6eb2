"""The fax terminal's audio tap (media/recording.py ArrivalTap): every frame in arrival order, however late."""

from __future__ import annotations

import numpy as np

from zvonok.media.recording import ArrivalTap, SlotRecorder


class Sink:
    def __init__(self) -> None:
        self.out: list[np.ndarray] = []
        self.channels = 1

    def write(self, samples: np.ndarray) -> None:
        self.out.append(samples.copy())

    def samples(self) -> np.ndarray:
        return np.concatenate(self.out) if self.out else np.zeros(0, dtype=np.int16)


def frames(n: int) -> list[np.ndarray]:
    return [np.full(160, i + 1, dtype=np.int16) for i in range(n)]


def test_a_stall_loses_nothing_and_inserts_no_silence() -> None:
    """Ten frames, the sender stalled 300 ms after the fifth: a modem must get all ten back to back."""
    sink = Sink()
    tap = ArrivalTap(sink, start=0.0)
    sent = frames(10)
    now = 0.0
    for i, frame in enumerate(sent):
        now += 0.02 + (0.3 if i == 5 else 0.0)
        tap.flush(now - 0.01)  # the engine's flush timer runs between packets
        tap.feed(0, frame, now)
    assert np.array_equal(sink.samples(), np.concatenate(sent))


def test_the_wall_clock_recorder_would_have_broken_that_stream() -> None:
    """Why the tap is not a SlotRecorder: the same stall puts silence into a recording's timeline."""
    sink = Sink()
    recorder = SlotRecorder(sink, 1, stereo=False, start=0.0, delay=0.06)
    now = 0.0
    for i, frame in enumerate(frames(10)):
        now += 0.02 + (0.3 if i == 5 else 0.0)
        recorder.flush(now - 0.01)
        recorder.feed(0, frame, now)
    recorder.finish()
    assert (sink.samples() == 0).any()


def test_silence_only_once_the_far_end_is_quiet_for_a_while() -> None:
    sink = Sink()
    tap = ArrivalTap(sink, start=0.0, quiet=0.5)
    tap.feed(0, frames(1)[0], 0.02)
    tap.flush(0.4)
    assert sink.samples().size == 160  # a pause shorter than ``quiet``: nothing added
    tap.flush(1.02)
    silence = sink.samples()[160:]
    assert silence.size == 8000 and not silence.any()  # one second of silence since the last frame
