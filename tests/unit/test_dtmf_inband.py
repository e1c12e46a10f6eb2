"""In-band DTMF (Goertzel): generated key presses are heard, music and speech-like sound are not."""

from __future__ import annotations

import numpy as np
import pytest

from zvonok.media.dtmf_inband import COLS, KEYPAD, ROWS, InbandDtmfDetector
from zvonok.media.hold_music import default_track

RATE = 8000
ALL = "123A456B789C*0#D"


def tone(digit: str, seconds: float, *, level: float = 6000.0, twist_db: float = 0.0) -> np.ndarray:
    r = next(i for i, row in enumerate(KEYPAD) if digit in row)
    c = KEYPAD[r].index(digit)
    t = np.arange(int(seconds * RATE)) / RATE
    return level * (np.sin(2 * np.pi * ROWS[r] * t) + 10 ** (twist_db / 20) * np.sin(2 * np.pi * COLS[c] * t))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE))


def detect(signal: np.ndarray, chunk: int = 160) -> list[str]:
    det = InbandDtmfDetector()
    out: list[str] = []
    pcm = np.clip(signal, -32768, 32767).astype(np.int16)
    for i in range(0, len(pcm), chunk):  # 20 ms frames, as the media engine has them
        out += det.feed(pcm[i:i + chunk])
    return out


def test_all_sixteen_digits() -> None:
    signal = np.concatenate([np.concatenate((tone(d, 0.08), silence(0.06))) for d in ALL])
    assert "".join(detect(signal)) == ALL


@pytest.mark.parametrize("snr_db", [20, 12])
def test_digits_in_noise(snr_db: int) -> None:
    rng = np.random.default_rng(4733)
    signal = np.concatenate([np.concatenate((tone(d, 0.06, level=3000.0), silence(0.05))) for d in ALL])
    power = np.mean(tone("5", 1.0, level=3000.0) ** 2)
    noise = rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), len(signal))
    assert "".join(detect(signal + noise, chunk=173)) == ALL


def test_held_key_is_one_press_and_repeats_need_a_gap() -> None:
    assert detect(tone("7", 1.0)) == ["7"]
    assert detect(np.concatenate((tone("7", 0.1), silence(0.05), tone("7", 0.1)))) == ["7", "7"]


def test_twist_limits() -> None:
    assert detect(tone("1", 0.1, twist_db=3.0)) == ["1"]
    assert detect(tone("1", 0.1, twist_db=-6.0)) == ["1"]
    assert detect(tone("1", 0.1, twist_db=12.0)) == []


def test_too_short_or_quiet_is_nothing() -> None:
    assert detect(tone("1", 0.015)) == []
    assert detect(tone("1", 0.1, level=2.0)) == []


def test_no_digit_in_music_on_hold() -> None:
    track = default_track().astype(np.float64)
    assert detect(np.tile(track, 2)) == []


def test_no_digit_in_speech_like_sound() -> None:
    """Voiced sound: a glottal-pulse-like harmonic series on a gliding pitch (90-250 Hz) with formant
    peaks that wander across the DTMF band, and noise bursts (fricatives)."""
    rng = np.random.default_rng(11)
    out = []
    for _ in range(120):  # 120 syllables of 100 ms
        f0 = rng.uniform(90, 250)
        formants = rng.uniform([300, 800, 1800], [900, 1700, 2800])
        t = np.arange(800) / RATE
        pitch = f0 * (1 + 0.1 * t)
        phase = 2 * np.pi * np.cumsum(pitch) / RATE
        syl = np.zeros_like(t)
        for k in range(1, int(3800 / f0)):
            f = k * f0
            gain = sum(1 / (1 + ((f - fm) / 120) ** 2) for fm in formants) / k ** 0.5
            syl += gain * np.sin(k * phase)
        syl *= 8000 / np.max(np.abs(syl))
        out.append(syl if rng.random() > 0.2 else rng.normal(0, 2000, 800))
    assert detect(np.concatenate(out)) == []
