"""The conference mixer: whole 20 ms G.711 frames in, one mixed frame per party out (sans-I/O, numpy).

How it works
------------
Each party has a row in an ``N x 160`` float32 matrix of this tick's input (decoded G.711, silence for a
party whose frame is missing or late) and a FIFO of frames that arrived between ticks (a phone's packets
are not in phase with our clock; two may land in one tick and none in the next). :meth:`Mixer.mix` takes
one frame per party from its FIFO and computes every party's output at once:

* **uniform matrix** (no per-pair overrides — a plain conference, mutes, deaf parties): ``total = s @ X``
  is the sum of everyone heard (``s``: 1 for a party heard by the others, 0 muted), and party ``i`` gets
  ``l_i * (total - s_i * X_i)`` (``l``: 1 for a party that hears): the sum minus its own contribution, so
  nobody hears themselves. O(N) frames of work, whatever N is.
* **general matrix** (per-pair overrides: whisper, listen-only supervisors): ``out = M @ X`` with the
  ``N x N`` 0/1 matrix ``M[i, j]`` = "i hears j" (zero diagonal) — one BLAS call, O(N²) but only while an
  override exists.

The result is clipped to int16 and encoded with the G.711 tables (one fancy index per codec for all rows).
A party that hears nobody gets no frame (the engine sends nothing rather than silence, saving packets).

The FIFO is the party's jitter buffer, and its depth adapts (issue 9). Every frame taken out of turn is a
20 ms jump in that party's audio (a 620 Hz tone shows it as a phase jump), so the FIFO never drops a
frame because a burst arrived: a loaded event loop delivers the packets of a 40–80 ms stall all at once,
and they belong to the ticks the clock is catching up. A tick that finds the FIFO empty plays silence
(``missing``) and the late frame plays one tick later: the depth has grown by the frame the peer's jitter
needed. It shrinks again only when it is plainly more than needed — the FIFO held at least
``SPARE_FRAMES`` at every tick of the last ``TRIM_TICKS`` — by dropping one frame (``trimmed``). Latency
stays bounded: at most ``MAX_QUEUED_FRAMES`` frames (a longer burst drops its oldest), and a surplus
(a peer's faster clock, a past stall of the peer) is given back at one frame per ``TRIM_TICKS``.

The matrix: ``speaks`` (heard by the others; False = muted), ``listens`` (hears the others; False =
deaf, e.g. waiting for the moderator), and ``hears[(listener, speaker)]`` overrides that win over both:
listen is ``speaks=False``; whisper is that plus ``hears[(agent, supervisor)] = True``; barge is
``speaks=True``. DTMF (RFC 4733) never reaches the mixer: the engine feeds only audio payloads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .g711 import ALAW_DECODE, ALAW_ENCODE, FRAME_SAMPLES, ULAW_DECODE, ULAW_ENCODE, Codec

__all__ = ["MAX_QUEUED_FRAMES", "SPARE_FRAMES", "TRIM_TICKS", "Mixer", "Party"]

# Frames held per party: the burst of a stall the bridge clock still catches up (its MAX_LAG, 200 ms)
# plus the frames in hand; a longer burst drops its oldest frames (the clock gives up those ticks too).
MAX_QUEUED_FRAMES = 12
# Trim one frame when the FIFO held at least SPARE_FRAMES at every tick for TRIM_TICKS ticks (5 s): one
# frame fewer still leaves one in hand at the worst tick, so the trim itself causes no underflow.
SPARE_FRAMES = 2
TRIM_TICKS = 250

_DECODE = {Codec.PCMU: ULAW_DECODE, Codec.PCMA: ALAW_DECODE}
_ENCODE = {Codec.PCMU: ULAW_ENCODE, Codec.PCMA: ALAW_ENCODE}


@dataclass(eq=False, slots=True)
class Party:
    key: str
    codec: Codec
    speaks: bool = True
    listens: bool = True
    slot: int = 0
    frames: deque[npt.NDArray[np.int16]] = field(default_factory=lambda: deque(maxlen=MAX_QUEUED_FRAMES))
    partial: npt.NDArray[np.int16] | None = None  # samples of a payload that was not a whole frame
    missing: int = 0  # ticks this party had no frame for (late, lost, or silent by choice)
    trimmed: int = 0  # frames dropped to give back delay (a surplus, a burst past MAX_QUEUED_FRAMES)
    low: int = MAX_QUEUED_FRAMES  # the fewest frames queued at a tick since the last trim check


class Mixer:
    """The mix of one bridge. Keys are the caller's party handles (endpoint ids)."""

    def __init__(self, frame: int = FRAME_SAMPLES) -> None:
        self.frame = frame
        self._parties: dict[str, Party] = {}
        self._order: list[Party] = []
        self._hears: dict[tuple[str, str], bool] = {}
        self._inputs = np.zeros((0, frame), dtype=np.float32)
        self._speaks = np.zeros(0, dtype=np.float32)
        self._listens = np.zeros(0, dtype=np.float32)
        self._matrix: npt.NDArray[np.float32] | None = None  # only with overrides
        self._ticks = 0
        self._gone = (0, 0)  # (trimmed, missing) of the parties that left: the bridge's totals keep them

    # --- membership and matrix ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, key: str) -> bool:
        return key in self._parties

    def party(self, key: str) -> Party:
        return self._parties[key]

    def add(self, key: str, codec: Codec, *, speaks: bool = True, listens: bool = True) -> None:
        if key in self._parties:
            party = self._parties[key]
            party.codec, party.speaks, party.listens = codec, speaks, listens
        else:
            party = Party(key=key, codec=codec, speaks=speaks, listens=listens)
            self._parties[key] = party
            self._order.append(party)
        self._rebuild()

    def remove(self, key: str) -> None:
        party = self._parties.pop(key, None)
        if party is None:
            return
        self._order.remove(party)
        self._gone = (self._gone[0] + party.trimmed, self._gone[1] + party.missing)
        self._hears = {pair: v for pair, v in self._hears.items() if key not in pair}
        self._rebuild()

    def frame_counts(self) -> tuple[int, int]:
        """(frames trimmed, ticks a party had no frame) over every party this mix has had."""
        trimmed, missing = self._gone
        for party in self._order:
            trimmed += party.trimmed
            missing += party.missing
        return trimmed, missing

    def set_codec(self, key: str, codec: Codec) -> None:
        self._parties[key].codec = codec

    def set_matrix(self, key: str, *, speaks: bool | None = None, listens: bool | None = None,
                   hears: Mapping[str, bool | None] | None = None) -> None:
        """Change one party's row/column: ``hears`` maps other parties to an override (None removes it)."""
        party = self._parties[key]
        if speaks is not None:
            party.speaks = speaks
        if listens is not None:
            party.listens = listens
        for other, value in (hears or {}).items():
            if other not in self._parties or other == key:
                raise KeyError(f"{other!r} is not another party of this mix")
            if value is None:
                self._hears.pop((key, other), None)
            else:
                self._hears[(key, other)] = value
        self._rebuild()

    def hears(self, listener: str, speaker: str) -> bool:
        """Does ``listener`` hear ``speaker`` (the effective matrix cell)?"""
        if listener == speaker:
            return False
        override = self._hears.get((listener, speaker))
        if override is not None:
            return override
        return self._parties[listener].listens and self._parties[speaker].speaks

    def _rebuild(self) -> None:
        order = self._order
        for slot, party in enumerate(order):
            party.slot = slot
        n = len(order)
        self._inputs = np.zeros((n, self.frame), dtype=np.float32)
        self._speaks = np.array([p.speaks for p in order], dtype=np.float32)
        self._listens = np.array([p.listens for p in order], dtype=np.float32)
        if not self._hears:
            self._matrix = None
            return
        matrix = np.outer(self._listens, self._speaks).astype(np.float32)
        np.fill_diagonal(matrix, 0.0)
        for (listener, speaker), value in self._hears.items():
            matrix[self._parties[listener].slot, self._parties[speaker].slot] = 1.0 if value else 0.0
        self._matrix = matrix

    # --- audio -------------------------------------------------------------------------------------

    def feed(self, key: str, payload: bytes) -> None:
        """One G.711 payload received from the party (any length; 20 ms is the usual)."""
        party = self._parties.get(key)
        if party is None:
            return
        samples = _DECODE[party.codec][np.frombuffer(payload, dtype=np.uint8)]
        frame = self.frame
        if party.partial is None and samples.size == frame:
            self._queue(party, samples)
            return
        # another packet time (10 or 30 ms): cut into whole frames, keep the rest for the next payload
        if party.partial is not None:
            samples = np.concatenate((party.partial, samples))
        whole = samples.size - samples.size % frame
        for start in range(0, whole, frame):
            self._queue(party, samples[start:start + frame])
        party.partial = samples[whole:] if whole < samples.size else None

    @staticmethod
    def _queue(party: Party, frame: npt.NDArray[np.int16]) -> None:
        if len(party.frames) == MAX_QUEUED_FRAMES:
            party.trimmed += 1  # the deque drops its oldest: a burst past the bound
        party.frames.append(frame)

    def trim(self, keep: int) -> None:
        """The clock gave up ticks (a stall past its limit) and owes ``keep - 1``: keep each party's newest
        ``keep`` frames, dropping those of the ticks given up, so the burst that arrived for them does not
        become lasting delay."""
        for party in self._order:
            frames = party.frames
            while len(frames) > keep:
                frames.popleft()
                party.trimmed += 1

    def mix(self) -> dict[str, bytes]:
        """One tick: each hearing party's mixed frame, encoded in its codec."""
        order = self._order
        if not order:
            return {}
        inputs = self._inputs
        self._ticks += 1
        check = self._ticks % TRIM_TICKS == 0
        for party in order:
            frames = party.frames
            depth = len(frames)
            if depth < party.low:
                party.low = depth
            if check:
                if party.low >= SPARE_FRAMES:  # a frame to spare at the worst tick of the window
                    frames.popleft()
                    party.trimmed += 1
                    depth -= 1
                party.low = MAX_QUEUED_FRAMES
            if depth:
                inputs[party.slot] = frames.popleft()
            else:
                inputs[party.slot] = 0.0
                party.missing += 1
        if self._matrix is None:
            total = self._speaks @ inputs
            out = total[np.newaxis, :] - self._speaks[:, np.newaxis] * inputs
        else:
            out = self._matrix @ inputs
        pcm = np.clip(out, -32768.0, 32767.0).astype(np.int16).view(np.uint16)
        hearing = np.asarray(self._listens > 0 if self._matrix is None else self._matrix.any(axis=1))
        result: dict[str, bytes] = {}
        encoded: dict[Codec, npt.NDArray[np.uint8]] = {}
        for party in order:
            if not hearing[party.slot]:
                continue
            table = encoded.get(party.codec)
            if table is None:
                table = encoded[party.codec] = _ENCODE[party.codec][pcm]
            result[party.key] = table[party.slot].tobytes()
        return result
