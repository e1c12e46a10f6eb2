"""In-band DTMF: key presses heard in the audio itself (trunks that send neither RFC 4733 nor SIP INFO).

How it works: the 8 kHz signal is cut into blocks of :data:`BLOCK` samples (13.3 ms: about 1.9 blocks
per 20 ms frame, bins 75 Hz wide — narrow enough to part the DTMF rows 70 Hz apart at the DFT's sidelobes,
short enough for a 40 ms tone, ITU-T Q.24's shortest, to fill two blocks). The Goertzel filter gives each
block's power at the 8 DTMF frequencies (ITU-T Q.23) in one numpy matrix product; a block is a digit
when, as Q.24 asks of a receiver:

* the strongest row and the strongest column tones are each well above the others of their group
  (:data:`GROUP_RATIO`) — speech and music spread their energy, a key press does not;
* the two tones together carry most of the block's energy (:data:`TONE_SHARE`) — noise and chords don't;
* the twist (row/column level ratio) is within +4/-8 dB;
* the block is not quiet (:data:`MIN_POWER`).

A digit is reported once, after :data:`HITS` consecutive blocks agree (a 40 ms press at the boundary
still gives two), and again only after :data:`GAPS` blocks that are not that digit (the gap between two
presses of the same key). Pure numpy per block, no per-sample Python loop.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BLOCK", "InbandDtmfDetector"]

RATE = 8000
BLOCK = 106
ROWS = (697.0, 770.0, 852.0, 941.0)
COLS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = ("123A", "456B", "789C", "*0#D")
HITS = 2
GAPS = 2
GROUP_RATIO = 4.0  # the strongest tone of a group against the next one (power, about 6 dB)
TONE_SHARE = 0.8  # the two tones' share of the block's energy (a key press at 12 dB SNR has 0.94)
TWIST_MAX = 10 ** (4 / 10)  # column over row (normal twist +4 dB)
TWIST_MIN = 10 ** (-8 / 10)  # reverse twist -8 dB
MIN_POWER = 1e5  # per block (|X|^2 units), about -45 dBm0: quieter is line noise

_t = np.arange(BLOCK)
_FREQS = np.array(ROWS + COLS)
# the DFT at exactly each frequency (not the nearest bin): one complex exponential per tone
_BASIS = np.exp(-2j * np.pi * np.outer(_FREQS, _t) / RATE)


class InbandDtmfDetector:
    """Feed 16-bit samples (any length) with :meth:`feed`; it returns the digits completed by them."""

    def __init__(self) -> None:
        self._pending = np.zeros(0, dtype=np.float64)
        self._candidate: str | None = None
        self._hits = 0
        self._reported: str | None = None
        self._gaps = GAPS

    def feed(self, samples: np.ndarray) -> list[str]:
        data = np.concatenate((self._pending, samples.astype(np.float64)))
        blocks = len(data) // BLOCK
        self._pending = data[blocks * BLOCK:]
        if not blocks:
            return []
        matrix = data[: blocks * BLOCK].reshape(blocks, BLOCK)
        power = np.abs(matrix @ _BASIS.T) ** 2  # (blocks, 8)
        energy = np.sum(matrix * matrix, axis=1) * BLOCK / 2  # Parseval, on the |X|^2 scale of a sine
        out: list[str] = []
        for i in range(blocks):
            digit = _classify(power[i], float(energy[i]))
            found = self._block(digit)
            if found is not None:
                out.append(found)
        return out

    def _block(self, digit: str | None) -> str | None:
        if digit is not None and digit == self._candidate:
            self._hits += 1
        else:
            self._candidate, self._hits = digit, 1 if digit is not None else 0
        if digit != self._reported:
            self._gaps += 1
            if self._gaps >= GAPS:
                self._reported = None
        else:
            self._gaps = 0
        if digit is not None and self._hits >= HITS and self._reported is None:
            self._reported = digit
            self._gaps = 0
            return digit
        return None


def _classify(power: np.ndarray, energy: float) -> str | None:
    rows, cols = power[:4], power[4:]
    r = int(np.argmax(rows))
    c = int(np.argmax(cols))
    row, col = float(rows[r]), float(cols[c])
    if row < MIN_POWER or col < MIN_POWER:
        return None
    if row < GROUP_RATIO * float(np.partition(rows, -2)[-2]) or col < GROUP_RATIO * float(np.partition(cols, -2)[-2]):
        return None
    if not TWIST_MIN <= col / row <= TWIST_MAX:
        return None
    if row + col < TONE_SHARE * energy:
        return None
    return KEYPAD[r][c]
