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


class ReadyLoop:
    """Timers run by hand; ``call_soon`` queues behind what is ready, as asyncio and uvloop do."""

    def __init__(self) -> None:
        self.now = 0.0
        self.ready: list[tuple[Any, tuple[Any, ...]]] = []
        self.timers: list[tuple[float, Any]] = []

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Any, *args: Any) -> Any:
        self.ready.append((callback, args))
        return _Cancellable()

    def call_at(self, when: float, callback: Any, *args: Any) -> Any:
        handle = _Cancellable()
        self.timers.append((when, lambda: handle.cancelled or callback(*args)))
        return handle

    def run_ready(self) -> int:
        """One pass over what was ready when it started (callbacks queued meanwhile wait for the next)."""
        batch, self.ready = self.ready, []
        for callback, args in batch:
            callback(*args)
        return len(batch)

    def fire_timers(self, until: float) -> None:
        self.now = until
        due = [t for t in self.timers if t[0] <= until]
        self.timers = [t for t in self.timers if t[0] > until]
        for _, callback in sorted(due, key=lambda t: t[0]):
            callback()


class _Cancellable:
    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def test_a_large_group_is_sent_in_chunks_so_what_arrives_meanwhile_runs_between_them() -> None:
    loop = ReadyLoop()
    clock = _PlayClock(loop, PlaybackStats())  # type: ignore[arg-type]
    sent: list[tuple[int, float]] = []
    count = 3 * _PlayClock.CHUNK + 5
    players = [_Player(Leg(loop, sent, n), Source(), None, n, clock) for n in range(count)]  # type: ignore[arg-type]
    loop.run_ready()  # each sends its first frame at once and joins the clock: all in one phase group
    assert len(sent) == count and clock.count == count
    sent.clear()
    ticks = 0
    while not sent:  # the tick of that group, 20 ms later
        ticks += 1
        loop.fire_timers(ticks * PLAY_TICK)
    assert len(sent) == _PlayClock.CHUNK  # the timer's own callback: one chunk
    order: list[str] = []
    loop.call_soon(order.append, "sip")  # queued after the tick, as a SIP message's step would be
    players[-1].cancel()  # stopped while its chunk waits: nothing for it
    passes = []
    while loop.ready:
        before = len(sent)
        loop.run_ready()
        passes.append(len(sent) - before)
    assert passes == [_PlayClock.CHUNK, _PlayClock.CHUNK, 4]
    assert order == ["sip"]  # it ran in the first pass, before the last two chunks
    assert sorted(n for n, _ in sent) == list(range(count - 1))  # every other player its frame, once
    assert clock.stats.late == 0 and clock.count == count - 1
