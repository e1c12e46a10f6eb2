"""G.711 tables against ITU-T G.711 reference values, round trips, SNR, and PCMU↔PCMA transcoding."""

from __future__ import annotations

import numpy as np
import pytest

from zvonok.media import g711
from zvonok.media.g711 import Codec


def _snr_db(reference: np.ndarray, decoded: np.ndarray) -> float:
    x = reference.astype(np.float64)
    noise = x - decoded.astype(np.float64)
    return float(10 * np.log10(np.sum(x * x) / np.sum(noise * noise)))


def test_ulaw_reference_values() -> None:
    table = g711.ULAW_DECODE
    assert table[0xFF] == 0 and table[0x7F] == 0  # the two zeros
    assert table[0x00] == -32124 and table[0x80] == 32124  # full scale
    assert table[0xFE] == 8 and table[0x7E] == -8  # the finest step
    assert table[0xEF] == 132 and table[0xDF] == 396  # segment boundaries (G.711 Table 2a, ×4 scale)
    assert g711.ULAW_ENCODE[0] == 0xFF
    assert g711.encode(Codec.PCMU, np.array([0, -32124, 32767, -32768, 8, -8], dtype=np.int16)) == bytes(
        [0xFF, 0x00, 0x80, 0x00, 0xFE, 0x7E])


def test_alaw_reference_values() -> None:
    table = g711.ALAW_DECODE
    assert table[0xD5] == 8 and table[0x55] == -8  # the smallest levels (even bits inverted)
    assert table[0xAA] == 32256 and table[0x2A] == -32256  # full scale
    assert g711.encode(Codec.PCMA, np.array([0, -1, 8, -8, 32767, -32768], dtype=np.int16)) == bytes(
        [0xD5, 0x55, 0xD5, 0x55, 0xAA, 0x2A])


@pytest.mark.parametrize("codec", list(Codec))
def test_every_code_round_trips(codec: Codec) -> None:
    codes = np.arange(256, dtype=np.uint8).tobytes()
    again = g711.encode(codec, g711.decode(codec, codes))
    differing = {i for i in range(256) if again[i] != codes[i]}
    # µ-law has a negative zero (0x7F) which encodes back as the positive one (0xFF)
    assert differing == ({0x7F} if codec is Codec.PCMU else set())


@pytest.mark.parametrize("codec", list(Codec))
def test_decode_is_monotonic_and_encode_picks_a_neighbouring_level(codec: Codec) -> None:
    levels = np.sort(g711.decode(codec, np.arange(256, dtype=np.uint8).tobytes()).astype(np.int64))
    assert np.all(np.diff(levels) >= 0)
    pcm = np.arange(-32768, 32768, dtype=np.int64)
    decoded = g711.decode(codec, g711.encode(codec, pcm.astype(np.int16))).astype(np.int64)
    assert np.all(np.diff(decoded) >= 0)  # the quantiser never inverts order
    step = np.diff(np.unique(levels)).max()
    assert np.abs(decoded - pcm).max() <= step


@pytest.mark.parametrize("codec", list(Codec))
@pytest.mark.parametrize("amplitude", [500, 4000, 16000, 30000])
def test_round_trip_snr(codec: Codec, amplitude: int) -> None:
    n = np.arange(8000)
    x = np.round(amplitude * np.sin(2 * np.pi * 1013.0 * n / 8000)).astype(np.int16)
    assert _snr_db(x, g711.decode(codec, g711.encode(codec, x))) > 33.0  # G.711 gives ≈ 35–39 dB


def test_transcoding_tables() -> None:
    assert len(g711.ULAW_TO_ALAW) == len(g711.ALAW_TO_ULAW) == 256
    assert g711.transcode_table(Codec.PCMU, Codec.PCMU) is None
    assert g711.transcode_table(Codec.PCMU, Codec.PCMA) is g711.ULAW_TO_ALAW
    assert g711.silence(Codec.PCMU).translate(g711.ULAW_TO_ALAW) == g711.silence(Codec.PCMA)
    # A-law → µ-law → A-law lands on the same or a neighbouring A-law level (tandem coding loss only)
    codes = bytes(range(256))
    again = codes.translate(g711.ALAW_TO_ULAW).translate(g711.ULAW_TO_ALAW)
    levels = np.sort(g711.ALAW_DECODE.astype(np.int64))
    rank = {int(v): i for i, v in enumerate(levels)}
    assert sum(a != b for a, b in zip(codes, again, strict=True)) <= 16
    assert all(abs(rank[int(g711.ALAW_DECODE[a])] - rank[int(g711.ALAW_DECODE[b])]) <= 1
               for a, b in zip(codes, again, strict=True))
    # transcoding a payload equals decoding and encoding it
    n = np.arange(160)
    x = np.round(9000 * np.sin(2 * np.pi * 2000.0 * n / 8000 + 0.3)).astype(np.int16)
    pcmu = g711.encode(Codec.PCMU, x)
    assert pcmu.translate(g711.ULAW_TO_ALAW) == g711.encode(Codec.PCMA, g711.decode(Codec.PCMU, pcmu))


def test_codec_payload_types() -> None:
    assert Codec.PCMU.static_payload_type == 0 and Codec.PCMA.static_payload_type == 8
    assert Codec("PCMA") is Codec.PCMA
