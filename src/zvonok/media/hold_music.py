"""Music on hold: the built-in track, companies' own tracks, and which one a held party hears.

The built-in track is synthesized (no recorded or copyrighted audio): a slow bell-like melody on the
notes of :data:`DEFAULT_NOTES`, written once as an 8 kHz WAV into the data directory when the server
first needs it. A company may upload its own track (WAV, MP3, FLAC or Ogg Vorbis, any rate and channel
count): it is decoded and converted to 8 kHz mono 16-bit on upload (``miniaudio``), so playing it is a
plain :class:`~zvonok.media.wav.WavSource` in a loop. A file that does not decode is refused with a
:class:`HoldMusicError` (the API's 422).

Tracks live in ``<data dir>/moh/``: ``default.wav`` and ``tenant-<id>.wav``.
"""

from __future__ import annotations

import os
import tempfile
import wave
from pathlib import Path

import numpy as np

from zvonok.media.interface import Prompt

RATE = 8000
# C5 D5 E5 G5 (a pentatonic set without A4 = 440 Hz, a common test tone): the melody's fundamentals
DEFAULT_NOTES = (523.25, 587.33, 659.25, 783.99)
_MELODY = (0, 2, 3, 2, 1, 0, 1, 2, 3, 3, 2, 0, 1, 2, 1, 0)  # indexes into DEFAULT_NOTES, one per beat
_BEAT = 0.75  # seconds
MAX_SECONDS = 600.0  # an uploaded track longer than 10 minutes is cut
MAX_UPLOAD = 32 * 1024 * 1024


class HoldMusicError(ValueError):
    """An uploaded track that cannot be used (not audio, empty)."""


def default_track() -> np.ndarray:
    """The built-in melody, 12 s, as 8 kHz 16-bit samples: each note a fundamental with two softer
    harmonics under an exponential decay (a bell or a music box), at about a quarter of full scale."""
    beat = int(_BEAT * RATE)
    t = np.arange(beat) / RATE
    envelope = np.exp(-t * 3.0) * np.minimum(1.0, t / 0.01)  # 10 ms attack: no click
    out = np.zeros(beat * len(_MELODY))
    for i, index in enumerate(_MELODY):
        f = DEFAULT_NOTES[index]
        note = np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t) + 0.1 * np.sin(6 * np.pi * f * t)
        out[i * beat:(i + 1) * beat] += note * envelope
    out *= 0.25 * 32767 / np.max(np.abs(out))
    return out.astype(np.int16)


def convert(data: bytes) -> np.ndarray:
    """An uploaded audio file as 8 kHz mono 16-bit samples (at most :data:`MAX_SECONDS`)."""
    import miniaudio  # type: ignore[import-untyped]

    if not data:
        raise HoldMusicError("the file is empty")
    limit = int(MAX_SECONDS * RATE)
    chunks: list[np.ndarray] = []
    got = 0
    try:
        # streamed, and no further than the limit: a small file of very low bitrate could decode to hours
        # of audio (gigabytes) if decoded whole
        for chunk in miniaudio.stream_memory(data, output_format=miniaudio.SampleFormat.SIGNED16, nchannels=1,
                                             sample_rate=RATE, frames_to_read=RATE):
            chunks.append(np.frombuffer(chunk, dtype=np.int16).copy())
            got += len(chunk)
            if got >= limit:
                break
    except miniaudio.DecodeError:
        raise HoldMusicError("not an audio file this server can read (WAV, MP3, FLAC or Ogg Vorbis)") from None
    samples = np.concatenate(chunks)[:limit] if chunks else np.zeros(0, dtype=np.int16)
    if samples.size < RATE // 2:
        raise HoldMusicError("the track is shorter than half a second")
    if not np.any(samples):
        raise HoldMusicError("the track is silent")
    return samples


def write_wav(path: Path, samples: np.ndarray) -> None:
    """8 kHz mono 16-bit ``samples`` to ``path``, replaced at once (a reader sees the old file or the new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    os.close(fd)
    try:
        with wave.open(tmp, "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(RATE)
            writer.writeframes(samples.astype("<i2").tobytes())
        os.replace(tmp, path)  # a call starting to play meanwhile reads the old file or the new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class HoldMusic:
    """The tracks in one directory (``<data dir>/moh``). Blocking file work: call from a thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def default_path(self) -> Path:
        return self.directory / "default.wav"

    def tenant_path(self, tenant_id: int) -> Path:
        return self.directory / f"tenant-{int(tenant_id)}.wav"

    def prepare(self) -> None:
        """Write the built-in track if it is not there yet."""
        if not self.default_path.exists():
            write_wav(self.default_path, default_track())

    def source_for(self, tenant_id: int) -> Prompt:
        """What a held party of this company hears: its own track, else the built-in one (looped)."""
        own = self.tenant_path(tenant_id)
        if own.exists():
            return Prompt(path=own, loop=True)
        self.prepare()
        return Prompt(path=self.default_path, loop=True)

    def store(self, tenant_id: int, data: bytes) -> float:
        """Convert and keep a company's track; its length in seconds. :class:`HoldMusicError` if unusable."""
        if len(data) > MAX_UPLOAD:
            raise HoldMusicError(f"the file is larger than {MAX_UPLOAD // (1024 * 1024)} MiB")
        samples = convert(data)
        write_wav(self.tenant_path(tenant_id), samples)
        return samples.size / RATE

    def remove(self, tenant_id: int) -> bool:
        """Back to the built-in track; False if the company had none of its own."""
        try:
            self.tenant_path(tenant_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def seconds(self, tenant_id: int) -> float | None:
        """The length of the company's own track, None without one."""
        path = self.tenant_path(tenant_id)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        return max(0, size - 44) / (2 * RATE)  # a PCM WAV we wrote: 44-byte header, 16-bit mono
