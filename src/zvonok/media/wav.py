"""WAV files: 16-bit PCM, written incrementally (recordings) and read whole (prompts, tests).

The writer batches samples and hands the stdlib :mod:`wave` about a second at a time (each ``writeframes``
patches the RIFF header, i.e. seeks: doing it per 20 ms frame would mean 50 syscalls a second per
recording). :meth:`WavWriter.close` writes the rest, fixes the header and fsyncs: after it returns the file
is complete on disk, directory entry included (the durability rule: a recording is on disk before it is announced).
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .g711 import CLOCK_RATE, FRAME_SAMPLES, Samples

_BATCH_SECONDS = 1.0


class WavWriter:
    """Mono or stereo 16-bit little-endian PCM; :meth:`write` takes ``(n,)`` (mono) or ``(n, 2)`` arrays."""

    def __init__(self, path: str | os.PathLike[str], *, channels: int = 1, rate: int = CLOCK_RATE) -> None:
        if channels not in (1, 2):
            raise ValueError("mono or stereo only")
        self.path = Path(path)
        self.channels = channels
        self.rate = rate
        self.frames_written = 0
        self._pending: list[bytes] = []
        self._pending_frames = 0
        self._file = open(self.path, "wb")  # closed in close(): wave does not own it
        self._wave = wave.open(self._file, "wb")
        self._wave.setnchannels(channels)
        self._wave.setsampwidth(2)
        self._wave.setframerate(rate)
        self._closed = False

    def write(self, samples: npt.NDArray[np.int16]) -> None:
        data = np.asarray(samples, dtype="<i2")
        frames = data.shape[0]
        if (self.channels == 1 and data.ndim != 1) or (self.channels == 2 and data.shape[1:] != (2,)):
            raise ValueError(f"expected {self.channels}-channel samples, got shape {data.shape}")
        self._pending.append(data.tobytes())
        self._pending_frames += frames
        if self._pending_frames >= self.rate * _BATCH_SECONDS:
            self._drain()

    def _drain(self) -> None:
        if self._pending:
            self._wave.writeframes(b"".join(self._pending))
            self.frames_written += self._pending_frames
            self._pending.clear()
            self._pending_frames = 0

    @property
    def seconds(self) -> float:
        return (self.frames_written + self._pending_frames) / self.rate

    def close(self) -> None:
        """Write everything, fix the header, fsync, close. Blocking: the engine runs it in a thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._drain()
            self._wave.close()  # patches the RIFF/data sizes; does not close a file object it did not open
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
        _fsync_directory(self.path.parent)  # a new file's directory entry must be durable too


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms without directory handles (Windows): nothing more can be done
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_wav(path: str | os.PathLike[str]) -> tuple[npt.NDArray[np.int16], int]:
    """``(samples, rate)``: int16 of shape ``(n,)`` for mono, ``(n, channels)`` otherwise. 16-bit PCM only."""
    with wave.open(str(path), "rb") as reader:
        if reader.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        channels = reader.getnchannels()
        rate = reader.getframerate()
        data = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2").astype(np.int16)
    return (data if channels == 1 else data.reshape(-1, channels)), rate


class WavSource:
    """A WAV prompt as 20 ms frames for playback: 8 kHz 16-bit, stereo is down-mixed; the last frame is
    padded with silence; :meth:`read_frame` returns None at the end (or loops when ``loop`` is set)."""

    def __init__(self, path: str | os.PathLike[str], *, loop: bool = False, frame: int = FRAME_SAMPLES) -> None:
        samples, rate = read_wav(path)
        if rate != CLOCK_RATE:
            raise ValueError(f"{path}: {rate} Hz, prompts must be {CLOCK_RATE} Hz (convert them at upload)")
        if samples.ndim == 2:
            samples = samples.astype(np.int32).mean(axis=1).astype(np.int16)
        padded = -(-samples.size // frame) * frame
        self._samples: Samples = np.zeros(padded, dtype=np.int16)
        self._samples[: samples.size] = samples
        self.frame = frame
        self.loop = loop
        self._position = 0

    def read_frame(self) -> Samples | None:
        if self._position >= self._samples.size:
            if not self.loop or self._samples.size == 0:
                return None
            self._position = 0
        frame = self._samples[self._position : self._position + self.frame]
        self._position += self.frame
        return frame
