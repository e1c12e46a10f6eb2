"""Conference mixing on one core: CPU per participant, and the largest room (or the most rooms of 5)
mixed every 20 ms with no late frames. In-process, on :class:`zvonok.media.mixer.Mixer` (no SIP, no
sockets): each tick feeds every party one 20 ms G.711 payload (pre-encoded speech-like noise, so the
feeding is what a received packet costs: payload decode into the party's FIFO) and mixes.

1. **CPU per tick**: ``time.process_time`` over many ticks for rooms of N; per participant it is the
   tick's cost / N, and "% of a core" is the tick's cost / 20 ms.
2. **Real time** (uvloop, as the server runs): rooms ticked by ``loop.call_at`` on absolute deadlines (``next += 0.020``) for
   ``--seconds``; a tick that starts more than one frame (20 ms) after its deadline, or whose work ends
   after the next deadline, is late. The largest room (and the most rooms of 5) with no late tick is
   found by stepping up until one is late.

Run: ``PYTHONPATH=src python bench/mixing.py [--seconds 5]``. Prints figures; docs/benchmarks.md has them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

import numpy as np
import uvloop

from zvonok.media.g711 import Codec, encode
from zvonok.media.mixer import Mixer

log = logging.getLogger("bench.mixing")
FRAME = 0.020


def payloads(count: int, seed: int = 1) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [encode(Codec.PCMU, (rng.standard_normal(160) * 3000).astype(np.int16)) for _ in range(count)]


def make_room(size: int, prefix: str = "p") -> Mixer:
    mixer = Mixer()
    for i in range(size):
        mixer.add(f"{prefix}{i}", Codec.PCMA if i % 4 == 3 else Codec.PCMU)  # a few PCMA legs, as in life
    return mixer


def tick(mixer: Mixer, keys: list[str], frames: list[bytes]) -> int:
    for key, payload in zip(keys, frames, strict=False):
        mixer.feed(key, payload)
    return len(mixer.mix())


def cpu_per_tick(size: int, ticks: int) -> float:
    mixer = make_room(size)
    keys = [f"p{i}" for i in range(size)]
    frames = payloads(size)
    for _ in range(20):
        tick(mixer, keys, frames)
    start = time.process_time()
    for _ in range(ticks):
        tick(mixer, keys, frames)
    return (time.process_time() - start) / ticks


async def realtime(rooms: int, size: int, seconds: float) -> tuple[int, int, int, float]:
    """``rooms`` rooms of ``size`` ticked for ``seconds``: (ticks, late ticks, overruns, CPU share of a core).

    Late: the tick started more than a frame after its deadline, or its work ended after the next one.
    Overrun: the tick's own work took longer than a frame (the mixer could not keep up even with the core
    to itself); a late tick that is no overrun means the process was not scheduled in time (a busy machine).
    """
    loop = asyncio.get_running_loop()
    mixers = [make_room(size, prefix=f"r{r}p") for r in range(rooms)]
    keys = [[f"r{r}p{i}" for i in range(size)] for r in range(rooms)]
    frames = payloads(size)
    done = loop.create_future()
    ticks = late = overruns = 0
    end = loop.time() + seconds
    deadline = loop.time() + FRAME

    def run() -> None:
        nonlocal ticks, late, overruns, deadline
        now = loop.time()
        started_late = now - deadline > FRAME
        work = time.perf_counter()
        for mixer, names in zip(mixers, keys, strict=True):
            tick(mixer, names, frames)
        if time.perf_counter() - work > FRAME:
            overruns += 1
        ticks += 1
        deadline += FRAME
        if started_late or loop.time() > deadline:
            late += 1
        if deadline >= end:
            done.set_result(None)
            return
        loop.call_at(deadline, run)

    cpu = time.process_time()
    wall = time.perf_counter()
    loop.call_at(deadline, run)
    await done
    share = (time.process_time() - cpu) / (time.perf_counter() - wall)
    return ticks, late, overruns, share


async def largest(step_sizes: list[int], rooms_of: int | None, seconds: float) -> tuple[int, int, list[str]]:
    """The largest value of ``step_sizes`` (room size, or number of rooms of ``rooms_of``) with no late
    tick, and the largest with no overrun (stepping on until one overruns)."""
    best = best_work = 0
    clean = True  # no late tick at this size nor any smaller one
    lines: list[str] = []
    for value in step_sizes:
        rooms, size = (value, rooms_of) if rooms_of else (1, value)
        ticks, late, overruns, share = await realtime(rooms, size, seconds)
        lines.append(f"  {rooms:4d} room(s) of {size:4d}: {ticks} ticks, {late} late, {overruns} overruns, "
                     f"CPU {share:6.1%} of a core")
        if overruns:
            break
        best_work = value
        clean = clean and not late
        if clean:
            best = value
    return best, best_work, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="real-time run per step")
    parser.add_argument("--ticks", type=int, default=500, help="ticks per CPU measurement")
    args = parser.parse_args()
    out: list[str] = ["CPU per 20 ms tick (feed + mix + encode), process time:"]
    costs: dict[int, float] = {}
    for size in (3, 5, 10, 30, 100, 200, 400):
        per_tick = costs[size] = cpu_per_tick(size, args.ticks)
        out.append(f"  room of {size:4d}: {per_tick * 1e3:7.3f} ms/tick = {per_tick / FRAME:6.2%} of a core; "
                   f"per participant {per_tick / size * 1e6:6.1f} us/tick = {per_tick / size / FRAME:.3%} of a core")
    out.append(f"by CPU alone one core mixes a room of ~{int(400 * FRAME / costs[400])} "
               f"or ~{int(FRAME / costs[5])} rooms of 5 per 20 ms")
    out.append(f"Real time ({args.seconds:g} s per step, absolute deadlines, late = > 20 ms behind):")
    size, size_work, lines = uvloop.run(largest([50, 100, 200, 300, 400, 600, 800, 1200, 1600], None,
                                                args.seconds))
    out += lines
    out.append(f"largest room with no late tick: {size}; with no overrun (work within 20 ms): {size_work}")
    rooms, rooms_work, lines = uvloop.run(largest([10, 30, 60, 100, 150, 200, 300, 400], 5, args.seconds))
    out += lines
    out.append(f"most rooms of 5 with no late tick: {rooms}; with no overrun: {rooms_work}")
    print("\n".join(out))  # noqa: T201 - a benchmark's report is its output


if __name__ == "__main__":
    main()
