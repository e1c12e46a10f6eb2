"""WAV writing (incremental, durable) and reading; prompts as 20 ms frames."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest

from zvonok.media.g711 import Codec, encode
from zvonok.media.wav import WavSource, WavWriter, read_wav


def test_mono_round_trip_across_batches(tmp_path: Path) -> None:
    path = tmp_path / "mono.wav"
    writer = WavWriter(path)
    chunks = [np.full(160, i, dtype=np.int16) for i in range(120)]  # 2.4 s: several internal batches
    for chunk in chunks:
        writer.write(chunk)
    assert writer.seconds == pytest.approx(2.4)
    writer.close()
    writer.close()  # idempotent
    samples, rate = read_wav(path)
    assert rate == 8000 and samples.dtype == np.int16
    assert np.array_equal(samples, np.concatenate(chunks))
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getnframes()) == (1, 2, 120 * 160)


def test_stereo_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    writer = WavWriter(path, channels=2)
    left = np.arange(-1000, 1000, dtype=np.int16)
    right = -left
    writer.write(np.column_stack([left, right]))
    with pytest.raises(ValueError):
        writer.write(left)
    writer.close()
    samples, rate = read_wav(path)
    assert samples.shape == (2000, 2)
    assert np.array_equal(samples[:, 0], left) and np.array_equal(samples[:, 1], right)


def test_source_frames_padded_and_looped(tmp_path: Path) -> None:
    path = tmp_path / "prompt.wav"
    writer = WavWriter(path)
    writer.write(np.arange(1, 401, dtype=np.int16))  # 2.5 frames
    writer.close()
    source = WavSource(path)
    frames = [source.read_frame() for _ in range(4)]
    assert [f is None for f in frames] == [False, False, False, True]
    assert frames[2] is not None and frames[2][79] == 400 and not frames[2][80:].any()
    looping = WavSource(path, loop=True)
    assert [int(looping.read_frame()[0]) for _ in range(4)] == [1, 161, 321, 1]  # type: ignore[index]


def test_sources_of_one_file_share_it_and_its_payloads_until_it_changes(tmp_path: Path) -> None:
    """Every waiting caller plays the same music from its own position: one copy of the file, encoded once
    per codec; a file replaced (a new upload) is read again."""
    path = tmp_path / "music.wav"
    writer = WavWriter(path)
    writer.write((np.sin(np.arange(8000) / 7) * 8000).astype(np.int16))
    writer.close()
    first, second = WavSource(path, loop=True), WavSource(path, loop=True)
    assert first._samples is second._samples and not first._samples.flags.writeable
    opening = first.read_frame()
    again = second.read_frame()  # positions are each source's own: the second starts at the beginning too
    assert opening is not None and again is not None and np.array_equal(opening, again)
    for codec in (Codec.PCMU, Codec.PCMA):
        for _ in range(60):  # past the end: the loop goes on in payloads as in frames
            frame = second.read_frame()
            payload = first.read_payload(codec)
            assert frame is not None and payload == encode(codec, frame)
    assert first._track.payload(Codec.PCMU) is second._track.payload(Codec.PCMU)
    writer = WavWriter(path)
    writer.write(np.full(320, 1000, dtype=np.int16))
    writer.close()
    os.utime(path, ns=(1, 1))  # another modification time, whatever the clock's resolution
    fresh = WavSource(path)
    assert fresh._samples is not first._samples and fresh._samples.size == 320
    assert [fresh.read_payload(Codec.PCMU) for _ in range(3)][1:] == [encode(Codec.PCMU, np.full(160, 1000, np.int16)),
                                                                      None]


def test_source_rejects_other_rates_and_downmixes_stereo(tmp_path: Path) -> None:
    wrong = tmp_path / "16k.wav"
    writer = WavWriter(wrong, rate=16000)
    writer.write(np.zeros(160, dtype=np.int16))
    writer.close()
    with pytest.raises(ValueError):
        WavSource(wrong)
    stereo = tmp_path / "stereo.wav"
    writer = WavWriter(stereo, channels=2)
    writer.write(np.column_stack([np.full(160, 100, np.int16), np.full(160, 300, np.int16)]))
    writer.close()
    frame = WavSource(stereo).read_frame()
    assert frame is not None and set(frame.tolist()) == {200}
