"""G.711 µ-law (PCMU) and A-law (PCMA) by table look-up (ITU-T G.711, RFC 3551 §4.5.14).

How it works: decoding is a 256-entry int16 table indexed by the code octets; encoding is a 65536-entry
uint8 table indexed by the int16 sample reinterpreted as uint16 — both applied to a whole frame at once
with numpy fancy indexing. PCMU↔PCMA transcoding needs no linear step at all: a 256-byte table for
:meth:`bytes.translate`, the cheapest per-packet path Python has. The tables are built once, at import,
from the segment/quantisation rules of G.711 (the classic Sun reference implementation's arithmetic,
vectorised); the stdlib ``audioop`` is not used (deprecated, gone in 3.13).
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]


class Codec(StrEnum):
    """The codecs the media layer carries (names as in SDP ``a=rtpmap``), 8 kHz, mono."""

    PCMU = "PCMU"
    PCMA = "PCMA"

    @property
    def static_payload_type(self) -> int:
        return 0 if self is Codec.PCMU else 8


CLOCK_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _ulaw_decode_table() -> Samples:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = (((u & 0x0F) << 3) + 0x84) << exponent
    magnitude -= 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> Samples:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = (a & 0x0F) << 4
    magnitude = np.where(exponent == 0, mantissa + 8, (mantissa + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


def _segment(values: npt.NDArray[np.int32], ends: tuple[int, ...]) -> npt.NDArray[np.int32]:
    """Index of the first segment whose end is >= value (len(ends) when above all of them)."""
    return np.searchsorted(np.asarray(ends, dtype=np.int32), values, side="left").astype(np.int32)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), 32635) + 0x84  # clip, then add the bias
    seg = _segment(magnitude, (0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF))
    code = (seg << 4) | ((magnitude >> (seg + 3)) & 0x0F)
    return (code ^ mask).astype(np.uint8)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = _segment(magnitude, (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF))
    shift = np.where(seg < 2, 1, seg)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((magnitude >> shift) & 0x0F))
    return (code ^ mask).astype(np.uint8)


ULAW_DECODE: Samples = _ulaw_decode_table()
ALAW_DECODE: Samples = _alaw_decode_table()
ULAW_ENCODE: npt.NDArray[np.uint8] = _ulaw_encode_table()  # indexed by sample & 0xFFFF
ALAW_ENCODE: npt.NDArray[np.uint8] = _alaw_encode_table()

#: ``pcmu_payload.translate(ULAW_TO_ALAW)`` is the PCMA payload (and vice versa)
ULAW_TO_ALAW: bytes = ALAW_ENCODE[ULAW_DECODE.view(np.uint16)].tobytes()
ALAW_TO_ULAW: bytes = ULAW_ENCODE[ALAW_DECODE.view(np.uint16)].tobytes()

_DECODE = {Codec.PCMU: ULAW_DECODE, Codec.PCMA: ALAW_DECODE}
_ENCODE = {Codec.PCMU: ULAW_ENCODE, Codec.PCMA: ALAW_ENCODE}


def decode(codec: Codec, payload: bytes) -> Samples:
    """A G.711 payload (one octet per sample) as int16 linear samples."""
    return _DECODE[codec][np.frombuffer(payload, dtype=np.uint8)]


def encode(codec: Codec, samples: npt.NDArray[np.int16]) -> bytes:
    """int16 linear samples (any length) as a G.711 payload."""
    return _ENCODE[codec][np.asarray(samples, dtype=np.int16).view(np.uint16)].tobytes()


def transcode_table(source: Codec, target: Codec) -> bytes | None:
    """The :meth:`bytes.translate` table from ``source`` to ``target`` payloads; None when they are equal."""
    if source is target:
        return None
    return ULAW_TO_ALAW if source is Codec.PCMU else ALAW_TO_ULAW


def silence(codec: Codec, samples: int = FRAME_SAMPLES) -> bytes:
    return bytes((ULAW_SILENCE if codec is Codec.PCMU else ALAW_SILENCE,)) * samples
