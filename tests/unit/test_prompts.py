"""The built-in voice prompts: every one present in every language, in the format the media engine plays."""

from __future__ import annotations

import importlib.util
import wave
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from zvonok.media.prompts import LANGUAGES, PROMPTS, PROMPTS_DIR, prompt_language, prompt_path
from zvonok.media.wav import WavSource

REPO = Path(__file__).resolve().parents[2]
MIN_RMS_DBFS = -35.0  # espeak speech normalized to -3 dBFS peak sits around -18 to -26 dBFS RMS
EDGE = 0.05  # s: speech must start (and end) this close to the file's edges once silence is trimmed

CASES = [(name, lang) for name in PROMPTS for lang in LANGUAGES]


def read(path: Path) -> tuple[np.ndarray, wave._wave_params]:
    with wave.open(str(path), "rb") as reader:
        params = reader.getparams()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    return samples, params


def dbfs(value: float) -> float:
    return float(20 * np.log10(max(value, 1e-9) / 32768.0))


def test_the_prompt_set() -> None:
    assert set(PROMPTS) >= {
        "enter_pin", "enter_number", "wrong_pin", "blocked", "not_allowed", "limit_reached",
        "number_unavailable", "goodbye", "service_suspended", "connecting",
    }
    assert LANGUAGES == ("en", "ru")


@pytest.mark.parametrize(("name", "lang"), CASES)
def test_prompt_is_8khz_mono_pcm16_of_sane_length(name: str, lang: str) -> None:
    path = prompt_path(name, lang)
    assert path == PROMPTS_DIR / lang / f"{name}.wav"
    samples, params = read(path)
    assert (params.framerate, params.nchannels, params.sampwidth, params.comptype) == (8000, 1, 2, "NONE")
    assert 0.3 <= params.nframes / 8000 <= 6.0


@pytest.mark.parametrize(("name", "lang"), CASES)
def test_prompt_is_speech_normalized_and_trimmed(name: str, lang: str) -> None:
    samples, _ = read(prompt_path(name, lang))
    x = samples.astype(np.float64)
    assert dbfs(float(np.sqrt(np.mean(x**2)))) > MIN_RMS_DBFS
    # Peak-normalized to -3 dBFS by make_prompts.py.
    assert -3.5 < dbfs(float(np.max(np.abs(x)))) < -2.5
    loud = np.flatnonzero(np.abs(x) > 0.01 * 32768)  # above -40 dBFS
    assert loud[0] / 8000 < EDGE
    assert (x.size - 1 - loud[-1]) / 8000 < EDGE


@pytest.mark.parametrize("name", PROMPTS)
def test_languages_are_different_recordings(name: str) -> None:
    assert prompt_path(name, "ru").read_bytes() != prompt_path(name, "en").read_bytes()


def test_media_engine_can_play_them() -> None:
    source = WavSource(prompt_path("enter_pin", "ru"))
    frame = source.read_frame()
    assert frame is not None and frame.shape == (160,)


def test_the_whole_set_stays_small() -> None:
    total = sum(p.stat().st_size for p in PROMPTS_DIR.glob("*/*.wav"))
    assert total < 2_600_000  # about 2.5 MB with the queue position and wait prompts (issue 12)
    assert len(list(PROMPTS_DIR.glob("*/*.wav"))) == len(PROMPTS) * len(LANGUAGES)  # no strays


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("ru", "ru"), ("ru-RU", "ru"), ("ru_RU.UTF-8", "ru"), ("RU", "ru"), ("en-US", "en"), ("en", "en"),
     ("de-DE", "en"), ("", "en"), (None, "en"), ("xx", "en")],
)
def test_prompt_language(locale: str | None, expected: str) -> None:
    assert prompt_language(locale) == expected


def test_unknown_language_falls_back_to_english() -> None:
    assert prompt_path("goodbye", "de") == PROMPTS_DIR / "en" / "goodbye.wav"
    assert prompt_path("goodbye", "ru-RU") == PROMPTS_DIR / "ru" / "goodbye.wav"


def test_unknown_prompt_is_an_error() -> None:
    with pytest.raises(KeyError):
        prompt_path("no_such_prompt", "en")


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_prompts", REPO / "tools" / "make_prompts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_has_a_text_for_every_prompt_and_language() -> None:
    tool = load_tool()
    for lang in LANGUAGES:
        assert set(tool.TEXTS[lang]) == set(PROMPTS)
        assert all(text.strip() for text in tool.TEXTS[lang].values())
    assert set(tool.VOICES) == set(LANGUAGES)
    tool.check_texts()  # raises SystemExit on a mismatch
