"""The players' clock (zvonok.media.engine._PlayClock): one timer for every player, a quarter of the players
each 5 ms tick, every frame sent within half a tick of its deadline, 50 frames a second each."""

from __future__ import annotations

from typing import Any

import numpy as np
from test_media_mix_stalls import SimLoop

from zvonok.media.engine import PLAY_TICK, PlaybackStats, _PlayClock, _Player
from zvonok.media.g711 import Codec


class Loop(SimLoop):
    def call_soon(self, callback: Any, *args: Any) -> Any:
        return self.call_at(self.now, callback, *args)


class Source:
    def read_frame(self) -> np.ndarray:
        return np.zeros(160, dtype=np.int16)


class Leg:
    """What a player needs of a leg: its loop, codec and payload type, and where the packets go."""

    def __init__(self, loop: Loop, sent: list[tuple[int, float]], n: int) -> None:
        self.loop, self.codec, self.audio_pt, self.player = loop, Codec.PCMU, 0, None
        self.sent, self.n = sent, n

    def send_own(self, payload: bytes, pt: int, marker: bool, ssrc: int, seq: int, ts: int) -> None:
        self.sent.append((self.n, self.loop.now))

    def end_play(self, *, stopped: bool) -> None:
        pass


def test_every_player_gets_its_frames_on_time_from_one_clock_a_quarter_at_a_tick() -> None:
    loop = Loop(timers_first=True)
    clock = _PlayClock(loop, PlaybackStats())  # type: ignore[arg-type]
    sent: list[tuple[int, float]] = []
    players = []
    per_tick: list[int] = []
    tick = clock._tick

    def counted() -> None:  # how many players a tick sends to
        before = len(sent)
        tick()
        per_tick.append(len(sent) - before)
    clock._tick = counted  # type: ignore[method-assign]
    for n in range(40):  # started 1.3 ms apart: all phases of the 20 ms frame
        loop.run(n * 0.0013)
        players.append(_Player(Leg(loop, sent, n), Source(), None, n, clock))  # type: ignore[arg-type]
        loop.run(loop.now + 1e-6)  # its first frame at once
    loop.run(2.0)
    for n in range(len(players)):
        times = [at for who, at in sent if who == n]
        start = times[0]
        assert abs(start - n * 0.0013) < 1e-5
        assert 95 <= len(times) <= 101, (n, len(times))  # 50 a second from its start
        gaps = np.diff(times)
        assert gaps.min() > 0.020 - PLAY_TICK - 1e-9 and gaps.max() < 0.020 + PLAY_TICK + 1e-9, (n, gaps)
        assert np.abs(gaps[1:] - 0.020).max() < 1e-6, (n, gaps)  # after the first: exactly a frame apart
        # each frame within half a tick of its deadline (the first at once)
        lateness = [at - (start + i * 0.020) for i, at in enumerate(times)]
        assert max(map(abs, lateness)) <= PLAY_TICK / 2 + 2e-6, (n, min(lateness), max(lateness))
    assert clock.stats.late == 0 and clock.count == 40
    steady = per_tick[10:]
    assert max(steady) <= 40 // _PlayClock.PHASES + 2  # a quarter of them a tick, not all at once
    for player in players:
        player.cancel()
    assert clock.count == 0 and clock.handle is None
