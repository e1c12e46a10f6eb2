"""WAV files: 16-bit PCM, written incrementally (recordings) and read whole (prompts, music, tests).

A file played is read once and shared (:class:`_Track`, by path, size and modification time): every caller
waiting in a queue plays the same music, each from its own position, and a 10-minute track held once per
caller was 9.6 MB each. Its G.711 payloads are encoded once per codec too, so a player sends slices of them
instead of encoding each 20 ms frame (:meth:`WavSource.read_payload`).

The writer batches samples and hands the stdlib :mod:`wave` about a second at a time (each ``writeframes``
patches the RIFF header, i.e. seeks: doing it per 20 ms frame would mean 50 syscalls a second per
recording). :meth:`WavWriter.close` writes the rest, fixes the header and fsyncs: after it returns the file
is complete on disk, directory entry included (the durability rule: a recording is on disk before it is announced).
"""

from __future__ import annotations

import os
import threading
import wave
from collections import OrderedDict
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .g711 import CLOCK_RATE, FRAME_SAMPLES, Codec, Samples, encode

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


class _Track:
    """One file's samples (8 kHz mono, padded to whole frames) and, once asked for, its payload per codec."""

    __slots__ = ("samples", "_payloads")

    def __init__(self, samples: Samples) -> None:
        self.samples = samples
        self._payloads: dict[Codec, bytes] = {}

    def payload(self, codec: Codec) -> bytes:
        found = self._payloads.get(codec)
        if found is None:
            found = self._payloads[codec] = encode(codec, self.samples)
        return found


_TRACKS: OrderedDict[tuple[str, int, int, int], _Track] = OrderedDict()  # (path, size, mtime, frame) -> track
_TRACKS_LOCK = threading.Lock()  # sources are opened in worker threads
MAX_TRACKS = 64  # prompts and music files kept decoded (the least recently opened go first)


def _load(path: str | os.PathLike[str], frame: int) -> Samples:
    samples, rate = read_wav(path)
    if rate != CLOCK_RATE:
        raise ValueError(f"{path}: {rate} Hz, prompts must be {CLOCK_RATE} Hz (convert them at upload)")
    if samples.ndim == 2:
        samples = samples.astype(np.int32).mean(axis=1).astype(np.int16)
    padded: Samples = np.zeros(-(-samples.size // frame) * frame, dtype=np.int16)
    padded[: samples.size] = samples
    padded.flags.writeable = False  # shared by every source of the file
    return padded


def _track(path: str | os.PathLike[str], frame: int) -> _Track:
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, frame)
    with _TRACKS_LOCK:
        track = _TRACKS.get(key)
        if track is not None:
            _TRACKS.move_to_end(key)
            return track
    track = _Track(_load(path, frame))  # outside the lock: a long file must not hold up the others
    with _TRACKS_LOCK:
        track = _TRACKS.setdefault(key, track)
        _TRACKS.move_to_end(key)
        while len(_TRACKS) > MAX_TRACKS:
            _TRACKS.popitem(last=False)
    return track


class WavSource:
    """A WAV prompt as 20 ms frames for playback: 8 kHz 16-bit, stereo is down-mixed; the last frame is
    padded with silence; :meth:`read_frame` returns None at the end (or loops when ``loop`` is set).
    Sources of one file share its samples and encoded payloads (module doc); each has its own position."""

    def __init__(self, path: str | os.PathLike[str], *, loop: bool = False, frame: int = FRAME_SAMPLES) -> None:
        self._track = _track(path, frame)
        self._samples: Samples = self._track.samples
        self.frame = frame
        self.loop = loop
        self._position = 0

    def _next(self) -> int | None:
        """The position of the next frame, advanced past it; None at the end."""
        if self._position >= self._samples.size:
            if not self.loop or self._samples.size == 0:
                return None
            self._position = 0
        start = self._position
        self._position += self.frame
        return start

    def read_frame(self) -> Samples | None:
        start = self._next()
        return None if start is None else self._samples[start : start + self.frame]

    def read_payload(self, codec: Codec) -> bytes | None:
        """The next frame as a G.711 payload (the same bytes as encoding :meth:`read_frame`'s frame)."""
        start = self._next()
        return None if start is None else self._track.payload(codec)[start : start + self.frame]
