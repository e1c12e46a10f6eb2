"""MP3 encoding of recorded speech (voicemail e-mails), with LAME through ``lameenc``.

An 8 kHz mono recording is encoded at 8 kHz (MPEG-2.5 layer III) and 24 kbit/s: about a tenth of the
WAV's 128 kbit/s, and more than a telephone channel carries. CPU work: call it in a thread.
"""

from __future__ import annotations

import wave
from pathlib import Path

import lameenc  # type: ignore[import-not-found]  # a C extension without stubs

BIT_RATE = 24  # kbit/s


class Mp3Error(ValueError):
    """The file is not a 16-bit PCM WAV this encoder takes."""


def wav_to_mp3(path: Path, bit_rate: int = BIT_RATE) -> bytes:
    try:
        with wave.open(str(path), "rb") as reader:
            if reader.getsampwidth() != 2 or reader.getnchannels() not in (1, 2):
                raise Mp3Error(f"{path.name}: 16-bit mono or stereo PCM expected")
            rate, channels = reader.getframerate(), reader.getnchannels()
            pcm = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError) as exc:
        raise Mp3Error(f"{path.name}: {exc}") from None
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(bit_rate)
    encoder.set_in_sample_rate(rate)
    encoder.set_channels(channels)
    encoder.set_quality(2)  # 2: high quality, slower; speech of a few minutes at most
    return bytes(encoder.encode(pcm)) + bytes(encoder.flush())
