"""A mixing bridge on a loaded event loop (issue 9): a member's steady 620 Hz tone must come out of the mix
continuous — no 20 ms frame dropped, repeated or replaced by silence — when the loop stalls for 40–80 ms
about once a second, as a busy uvloop process does.

The bridge runs on a simulated loop (no sockets, no real time) that orders work the way each real loop does
after a stall, which decides whether the late ticks or the burst of packets come first:

* libuv (uvloop): due timers run first in an iteration, and a timer re-armed in the past runs in the same
  pass; the sockets are read after. So when an I/O callback stalls the loop, the bridge's overdue ticks run
  before the packets that arrived meanwhile are read (measured: two ticks, then four datagrams).
* asyncio's selector loop: the sockets are polled first, then the due timers run.

The phone sends frame n at ``n * 20 ms + phase + jitter`` (jitter up to 3 ms). The 620 Hz frames repeat
every five frames (62 whole cycles per 100 ms), so each frame the listener gets maps back to its source
frame modulo 5: the sequence must step by exactly one every tick. (1000 Hz would hide a lost frame: 20
whole cycles per frame.)
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from zvonok.media.bridge import MixBridge
from zvonok.media.g711 import Codec, encode
from zvonok.media.rtp import build_rtp
from zvonok.media.tones import sine

FRAME = 0.020
SILENCE = encode(Codec.PCMU, np.zeros(160, dtype=np.int16))


class SimLoop:
    """``time()`` and ``call_at()`` over a simulated clock; :meth:`run` interleaves timers and datagrams in the
    order the chosen loop does (see the module doc)."""

    def __init__(self, *, timers_first: bool) -> None:
        self.timers_first = timers_first
        self.now = 0.0
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._count = 0
        self._io: list[tuple[float, int, Callable[[], None]]] = []  # datagram arrivals and stalls

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> _Handle:
        self._count += 1
        handle = _Handle()
        heapq.heappush(self._timers, (when, self._count, lambda: handle.cancelled or callback(*args)))
        return handle

    def io_at(self, when: float, callback: Callable[[], None]) -> None:
        self._count += 1
        heapq.heappush(self._io, (when, self._count, callback))

    def stall_at(self, when: float, seconds: float) -> None:
        """An I/O callback (SIP, HTTP, the database) that keeps the loop busy for ``seconds``."""
        def busy() -> None:
            self.now += seconds
        self.io_at(when, busy)

    def _run_timers(self, due: float) -> None:
        while self._timers and self._timers[0][0] <= due:  # re-armed in the past: runs in this pass
            heapq.heappop(self._timers)[2]()

    def _poll(self) -> None:
        polled = self.now  # what is readable when the poll starts; arrivals during a stall wait a round
        while self._io and self._io[0][0] <= polled:
            heapq.heappop(self._io)[2]()

    def run(self, until: float) -> None:
        while self.now < until:
            started = self.now  # which timers are due is decided on the clock as the iteration starts
            if self.timers_first:
                self._run_timers(started)
                self._poll()
            else:
                self._poll()
                self._run_timers(started)
            nexts = [q[0][0] for q in (self._timers, self._io) if q]
            if nexts and min(nexts) > self.now:
                self.now = min(min(nexts), until)


@dataclass
class _Handle:
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Endpoint:
    id: str


@dataclass
class FakeLeg:
    """What the bridge uses of an engine leg: its id, codec and ``send_own``."""

    key: str
    codec: Codec = Codec.PCMU
    audio_pt: int | None = 0
    player: object = None
    mix: object = None
    sent: list[bytes] = field(default_factory=list)
    stamps: list[tuple[int, int]] = field(default_factory=list)  # (seq, ts) of each packet sent

    @property
    def endpoint(self) -> _Endpoint:
        return _Endpoint(self.key)

    def send_own(self, payload: bytes, pt: int, marker: bool, ssrc: int, seq: int, ts: int) -> None:
        self.sent.append(payload)
        self.stamps.append((seq, ts))


def phone(loop: SimLoop, bridge: MixBridge, leg: FakeLeg, frames: list[bytes], *, phase: float,
          rng: random.Random) -> None:
    """Schedule the phone's packets: frame n leaves at n * 20 ms + phase and arrives up to 3 ms later."""
    for n, payload in enumerate(frames):
        packet = build_rtp(payload_type=0, sequence=n, timestamp=160 * n, ssrc=0x620, payload=payload)
        loop.io_at(n * FRAME + phase + rng.uniform(0.0, 0.003), lambda p=packet: bridge.feed(leg, p))  # type: ignore[misc]


def source_steps(heard: list[bytes], frames: list[bytes]) -> list[int]:
    """For each frame heard after the tone started: how far (mod 5) its source frame is from the previous
    one's — 1 when continuous, anything else a dropped, repeated or silent frame."""
    index = {frames[i]: i for i in range(5)}
    assert len(index) == 5
    start = next(i for i, payload in enumerate(heard) if payload in index)
    positions = [index.get(payload, -1) for payload in heard[start:]]
    return [(b - a) % 5 if a >= 0 and b >= 0 else -1 for a, b in zip(positions, positions[1:], strict=False)]


@pytest.mark.parametrize("timers_first", [True, False], ids=["uvloop", "asyncio"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_steady_tone_stays_continuous_through_loop_stalls(timers_first: bool, seed: int) -> None:
    rng = random.Random(seed)
    loop = SimLoop(timers_first=timers_first)
    bridge = MixBridge("room", loop)  # type: ignore[arg-type]
    a, b, c = FakeLeg("a"), FakeLeg("b"), FakeLeg("c")  # a and b are quiet: a hears exactly c's frames
    for leg in (a, b, c):
        bridge.add(leg, speaks=True, listens=True)  # type: ignore[arg-type]
    seconds = 12.0
    tone = sine(620.0)
    frames = [encode(Codec.PCMU, tone.read_frame()) for _ in range(int(seconds / FRAME))]
    phone(loop, bridge, c, frames, phase=rng.uniform(0.0, FRAME), rng=rng)
    for quiet in (a, b):
        phone(loop, bridge, quiet, [SILENCE] * len(frames), phase=rng.uniform(0.0, FRAME), rng=rng)
    at = 1.0
    while at < seconds - 1.0:  # about once a second, 40-80 ms
        loop.stall_at(at, rng.uniform(0.040, 0.080))
        at += rng.uniform(0.8, 1.2)
    loop.run(seconds - 0.5)
    steps = source_steps(a.sent, frames)
    broken = [i for i, step in enumerate(steps) if step != 1]
    assert len(steps) > 500
    assert broken == [], (len(broken), [(i, steps[i]) for i in broken[:12]])
    # and the delay did not grow with the stalls: one frame in hand, at most one more in flight
    assert len(bridge.mixer.party("c").frames) <= 2
    assert bridge.skipped_ticks == 0 and bridge.late_ticks > 0


@pytest.mark.parametrize("timers_first", [True, False], ids=["uvloop", "asyncio"])
def test_a_stall_past_the_limit_gives_up_ticks_and_keeps_the_delay(timers_first: bool) -> None:
    rng = random.Random(7)
    loop = SimLoop(timers_first=timers_first)
    bridge = MixBridge("room", loop)  # type: ignore[arg-type]
    a, c = FakeLeg("a"), FakeLeg("c")
    for leg in (a, c):
        bridge.add(leg, speaks=True, listens=True)  # type: ignore[arg-type]
    tone = sine(620.0)
    frames = [encode(Codec.PCMU, tone.read_frame()) for _ in range(200)]
    phone(loop, bridge, c, frames, phase=0.007, rng=rng)
    phone(loop, bridge, a, [SILENCE] * len(frames), phase=0.013, rng=rng)
    loop.run(1.0)
    before = len(bridge.mixer.party("c").frames)
    loop.stall_at(1.0, 0.5)  # half a second: 25 ticks owed, 10 caught up
    loop.run(3.5)
    assert bridge.skipped_ticks in (14, 15, 16)
    # the packets we sent show the ticks given up as lost packets (a gap in seq and ts), nothing else
    gaps = [(s2 - s1) & 0xFFFF for (s1, _), (s2, _) in zip(a.stamps, a.stamps[1:], strict=False)]
    assert sorted(set(gaps)) == [1, 1 + bridge.skipped_ticks]
    assert all((t2 - t1) & 0xFFFFFFFF == 160 * ((s2 - s1) & 0xFFFF)
               for (s1, t1), (s2, t2) in zip(a.stamps, a.stamps[1:], strict=False))
    assert len(bridge.mixer.party("c").frames) <= before + 1
    stats = bridge.stats()  # what /metrics adds up: the ticks given up and the frames that were theirs
    assert stats.members == 2 and stats.skipped_ticks == bridge.skipped_ticks and stats.trimmed_frames >= 14
    bridge.remove(c)  # type: ignore[arg-type]
    assert bridge.stats().trimmed_frames == stats.trimmed_frames  # a member who left still counts
    steps = source_steps(a.sent, frames)
    assert -1 not in steps  # never a silent frame: the owed ticks were caught up from the burst
    assert len([step for step in steps if step != 1]) <= 1  # one jump where ticks were given up, if any
