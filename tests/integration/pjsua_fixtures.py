"""pytest fixtures for pjsua2 phones: a factory that starts them and reaps every process at teardown.

Use it from a test module with ``pjsua_phones = pjsua_fixtures.pjsua_phones`` (a fixture must be visible
in the module that uses it; conftest.py is shared and not ours to grow). Each phone gets its own
directory under the test's ``tmp_path`` with its PJSIP log, the agent's stderr and its recordings.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from .pjsua_phone import PjsuaPhone

RATE = 8000  # the phones' conference bridge runs at 8 kHz (G.711 only): tones need no resampling


def write_tone(path: Path, frequency: float, *, seconds: float = 60.0, level: float = 0.3) -> Path:
    """A 16-bit mono sine WAV of a whole number of cycles. A minute, not a second: pjmedia's looping player
    sends one 20 ms frame of silence each time it rewinds (seen on the wire: one silent frame in every 51
    of a one-second file), and the tone goes on a frame late — once a second a phase jump in everything
    the phone's tone reaches, which looked like a server bug (issue 9)."""
    t = np.arange(int(RATE * seconds)) / RATE
    samples = (np.sin(2 * np.pi * frequency * t) * level * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return path


class PhoneFactory:
    """Starts named phones (``factory("a", tone=440)``); :meth:`close` stops them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.phones: list[PjsuaPhone] = []

    def __call__(self, name: str, *, tone: float | None = None, record: bool = True) -> PjsuaPhone:
        workdir = self.root / f"pjsua-{name}"
        workdir.mkdir(parents=True, exist_ok=True)
        play = write_tone(workdir / f"tone{int(tone)}.wav", tone) if tone else None
        phone = PjsuaPhone(workdir, name=name, play=play, record=record)
        self.phones.append(phone)  # before start(): a phone that fails to start is still reaped
        phone.start()
        return phone

    def close(self) -> list[str]:
        """Stop every phone; what went wrong inside them (a non-zero exit, a callback that raised)."""
        bad = []
        for phone in self.phones:
            code = phone.stop()
            if code not in (0, None):
                bad.append(f"{phone.name} exited with {code}:\n{phone.diagnostics()}")
            # the agent turns exceptions in pjsua2 callbacks into events instead of dying: surface them
            bad += [f"{phone.name}: {e}" for e in phone.history if e.get("event") in ("error", "fatal")]
        return bad


@pytest.fixture
def pjsua_phones(tmp_path: Path) -> Iterator[PhoneFactory]:
    factory = PhoneFactory(tmp_path)
    try:
        yield factory
    finally:
        problems = factory.close()
    assert not problems, "\n".join(problems)  # a crash in libDestroy is a driver bug worth seeing


# --- what a phone heard: its recording (pjsua2 writes WAV at 8 kHz) ------------------------------------
def power(samples: np.ndarray, frequency: float, rate: int = 8000, block: int = 800) -> float:
    """The power of ``frequency`` in ``samples``: the mean over 100 ms blocks of each block's DFT bin (a tone of
    amplitude A gives A²/2). Per block, not over the whole window: a tone that lost a frame or two to a
    loaded machine's jitter buffer or mixer is still the same tone, but its phase jumps there, and one DFT
    over seconds would add the pieces out of phase (7% of frames skipped took a whole-window power 17 times
    down: CI once read a heard party as unheard that way)."""
    blocks = max(1, samples.size // block)
    n = np.arange(min(block, samples.size))
    basis = np.exp(-2j * np.pi * frequency * n / rate)
    parts = [samples[i * n.size:(i + 1) * n.size] for i in range(blocks)]
    return float(np.mean([2 * abs(np.dot(part, basis)) ** 2 / n.size**2 for part in parts]))


def window(path: Path, start_before_end: float, end_before_end: float) -> np.ndarray:
    """Samples from ``start_before_end`` to ``end_before_end`` seconds before the recording's sound ends."""
    with wave.open(str(path)) as w:
        assert w.getframerate() == 8000
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)[:: w.getnchannels()].astype(np.float64)
    sound = np.flatnonzero(np.abs(data) > 1)  # the recorder may outlive the call by digital silence
    data = data[: sound[-1] + 1] if sound.size else data
    start, end = len(data) - int(start_before_end * 8000), len(data) - int(end_before_end * 8000)
    assert start >= 0 and end - start >= 8000, (path, len(data), start, end)
    return data[start:end]
