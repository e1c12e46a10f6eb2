"""In-band call progress tones (``ZVONOK_RINGBACK=inband``), heard by a real softphone (baresip).

With in-band ringback the caller gets a 183 with our SDP and the Russian ringback (425 Hz, 1 s on, 4 s
off) from our media engine while the callee rings; when the callee answers, the tone stops and the
callee's audio flows. A callee that refuses with 486 gives the caller the busy tone (425 Hz, 0.35 s on /
0.35 s off) before the 486. The caller's recording of what it received is analysed by FFT and by its
on/off envelope.
"""

from __future__ import annotations

import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .baresip import Baresip
from .test_calls_softphone import calls_server, cdrs, phone

NUMBERS = ["711", "712", "713", "714"]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    with calls_server(tmp_path_factory, "tones", NUMBERS,
                      {"ZVONOK_RINGBACK": "inband", "ZVONOK_BUSY_TONE_SECONDS": "3"}) as running:
        yield running


def samples_of(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)[:: w.getnchannels()]
    return data.astype(np.float64), rate


def dominant(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def on_off_switches(samples: np.ndarray, rate: int) -> int:
    """How often the signal switches between tone and silence (50 ms frames, half the peak level)."""
    frame = rate // 20
    levels = np.array([np.sqrt(np.mean(samples[i:i + frame] ** 2)) for i in range(0, len(samples) - frame, frame)])
    on = levels > levels.max() / 2
    return int(np.count_nonzero(on[1:] != on[:-1]))


def test_ringback_in_band_then_the_callee(tone_server: tuple[Any, Any], phones: list[Baresip],
                                          tmp_path: Path) -> None:
    srv, seeded = tone_server
    a = phone(phones, tmp_path, tone_server, "711", frequency=440, record=True)
    b = phone(phones, tmp_path, tone_server, "712", frequency=1000)  # answered by hand below
    a.command("dial", f"sip:712@{seeded.domain}")
    b.wait_event({"CALL_INCOMING"})
    time.sleep(3)  # A hears our ringback meanwhile
    b.command("accept")
    b.wait_event({"CALL_ESTABLISHED"})
    a.wait_event({"CALL_ESTABLISHED"})
    time.sleep(3)
    a.command("hangup")
    b.wait_event({"CALL_CLOSED"})
    a.stop()
    heard = a.received_audio()
    assert heard, "the caller recorded nothing"
    samples, rate = samples_of(heard[0])
    assert len(samples) >= 4 * rate, len(samples)
    # the first second is the ringback's first burst: 425 Hz
    assert abs(dominant(samples[: rate], rate) - 425) < 15
    # then the callee's 1000 Hz alone: the tone stopped when it answered (no 425 Hz under the callee)
    tail = samples[-2 * rate:]
    assert abs(dominant(tail, rate) - 1000) < 20
    spectrum = np.abs(np.fft.rfft(tail * np.hanning(len(tail))))
    freqs = np.fft.rfftfreq(len(tail), 1 / rate)
    at = lambda f: spectrum[np.abs(freqs - f) < 10].max()  # noqa: E731
    assert at(425) < at(1000) / 100, (at(425), at(1000))
    # and it rang with the Russian cadence: on for about a second, then off
    assert on_off_switches(samples[: 3 * rate], rate) >= 1
    (cdr,) = cdrs(tone_server, "711", 1)
    assert cdr["disposition"] == "answered"


def test_busy_tone_before_486(tone_server: tuple[Any, Any], phones: list[Baresip], tmp_path: Path) -> None:
    srv, seeded = tone_server
    a = phone(phones, tmp_path, tone_server, "713", frequency=440, record=True)
    b = phone(phones, tmp_path, tone_server, "714", frequency=1000)
    a.command("dial", f"sip:714@{seeded.domain}")
    b.wait_event({"CALL_INCOMING"})
    time.sleep(1.5)  # inside the ringback's first burst and silence
    b.command("hangup")  # 486 Busy Here from the callee's phone
    started = time.monotonic()
    closed = a.wait_event({"CALL_CLOSED"}, timeout=20)
    assert "486" in closed.get("param", ""), closed
    assert time.monotonic() - started >= 2  # the busy tone played first (3 s configured)
    a.stop()
    heard = a.received_audio()
    assert heard, "the caller recorded nothing"
    samples, rate = samples_of(heard[0])
    tail = samples[-int(2.5 * rate):]
    assert abs(dominant(tail, rate) - 425) < 15
    # the busy cadence switches on/off every 0.35 s: several switches in 2.5 s (ringback would have <= 1)
    assert on_off_switches(tail, rate) >= 4
    records = cdrs(tone_server, "713", 1)
    assert (records[-1]["disposition"], records[-1]["sip_status"]) == ("busy", 486)
