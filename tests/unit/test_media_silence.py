"""Silence detection (voicemail's silence limit): the sans-I/O detector, and a one-leg recording that
reports the caller's silence through the in-process engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from test_media_engine import HOST, FakePeer, Talker, make_engine, wait_until  # the same fake phone

from zvonok.media.events import MediaTimeout
from zvonok.media.g711 import Codec
from zvonok.media.silence import SilenceDetector
from zvonok.media.tones import dominant_frequency
from zvonok.media.wav import read_wav


class Quiet:
    def read_frame(self) -> np.ndarray:
        return np.zeros(160, dtype=np.int16)


def tone(seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * 8000)) / 8000
    return (level * 32767 * np.sin(2 * np.pi * 800 * t)).astype(np.int16)


def hiss(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.normal(0, 30, int(seconds * 8000)).astype(np.int16)  # about -61 dBFS: line noise


def test_fires_once_when_the_silence_reaches_the_limit() -> None:
    d = SilenceDetector(2.0)
    assert not d.feed(tone(1.0))
    assert not d.feed(hiss(1.9))
    assert d.silent == int(1.9 * 8000) // 160 * 160
    assert d.feed(hiss(0.2))  # 2.1 s of silence in a row
    assert not d.feed(hiss(3.0))  # once per silence
    assert not d.feed(tone(0.1))  # sound: counting starts again
    assert not d.feed(hiss(1.5))
    assert d.feed(hiss(0.6))


def test_odd_chunk_sizes_and_limits() -> None:
    d = SilenceDetector(0.5)
    fired = [d.feed(chunk) for chunk in np.array_split(hiss(1.0), 37)]
    assert fired.count(True) == 1
    with pytest.raises(ValueError):
        SilenceDetector(0)


async def test_one_leg_recording_reports_silence(tmp_path: Path) -> None:
    engine = make_engine()
    a = await engine.create_endpoint(1, "call-vm", [Codec.PCMU])
    peer = await FakePeer.open()
    try:
        await engine.set_remote(a, HOST, peer.port, payload_type=0, codec=Codec.PCMU, telephone_event_pt=101)
        silences: list[MediaTimeout] = []
        recording = await engine.record([a], tmp_path / "vm.wav", stereo=False, on_silence=silences.append,
                                        silence_seconds=0.6)
        talker = Talker(peer, a, Codec.PCMU, 0, 1000.0, ssrc=0x1234)
        for _ in range(40):  # 0.8 s of tone
            talker.send_frame()
            await asyncio.sleep(0.02)
        assert not silences
        talker.tone = Quiet()  # type: ignore[assignment]
        for _ in range(60):  # then 1.2 s of digital silence
            talker.send_frame()
            await asyncio.sleep(0.02)
        await wait_until(lambda: bool(silences))
        assert silences[0].endpoint_id == a.id and silences[0].silent_for >= 0.6
        info = await engine.stop_record(recording)
        samples, rate = read_wav(info.path)
        assert rate == 8000 and samples.ndim == 1 and info.channels == 1
        loud = np.flatnonzero(np.abs(samples) > 1000)
        assert abs(dominant_frequency(samples[loud[0]:loud[-1]]) - 1000.0) < 10.0
    finally:
        peer.close()
        await engine.close()
