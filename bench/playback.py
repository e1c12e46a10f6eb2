"""Players on the media engine's clock: what N callers hearing music cost, and how long a SIP message that
arrives meanwhile waits for the event loop. In-process, on :class:`zvonok.media.engine.InProcessMediaEngine`
with real UDP sockets on loopback and uvloop (as the server runs), no SIP.

N endpoints each play a looped WAV (a 440 Hz tone, PCMA) to one sink socket. Over ``--seconds``:

- **CPU per frame** (``time.process_time``, this process) and frames sent per second (50 × N expected),
  and the engine's late-frame counter (a frame leaving more than 20 ms after its deadline);
- **a datagram's wait**: a child process sends a datagram every 2–8 ms (random, like SIP messages arriving
  at any moment) stamped with the monotonic clock; our protocol takes it and goes three loop callbacks
  further (``call_soon`` ×3: the hops of a SIP request's handling, e.g. a BYE, the center's action, the
  new leg's step) and records the time from the stamp. p50/p90/p99/max.

``--chunk`` overrides ``_PlayClock.CHUNK`` (players sent to in one loop callback) for comparison: a large
value (e.g. 1000000) is the clock sending a whole quarter of the players in one callback.

Run: ``PYTHONPATH=src python bench/playback.py [--players 200,800] [--seconds 10] [--chunk N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import uvloop

from zvonok.media import engine as media_engine
from zvonok.media.g711 import Codec
from zvonok.media.wav import WavSource

SENDER = """
import random, socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
port = int(sys.argv[1])
while True:
    time.sleep(random.uniform(0.002, 0.008))
    s.sendto(struct.pack('d', time.perf_counter()), ('127.0.0.1', port))
"""


def tone_file(directory: Path) -> Path:
    path = directory / "tone.wav"
    t = np.arange(8000 * 5) / 8000
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).tobytes())
    return path


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")


class Stamped(asyncio.DatagramProtocol):
    """A datagram's wait: from the sender's stamp to the third loop callback after we got it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waits: list[float] = []

    def datagram_received(self, data: bytes, addr: object) -> None:
        sent = struct.unpack("d", data)[0]
        soon = self.loop.call_soon
        soon(lambda: soon(lambda: soon(lambda: self.waits.append(time.perf_counter() - sent))))


async def run(players: int, seconds: float, path: Path) -> str:
    loop = asyncio.get_running_loop()
    sink, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    sink_port = sink.get_extra_info("sockname")[1]
    engine = media_engine.InProcessMediaEngine(port_min=30000, port_max=39999)
    for n in range(players):
        endpoint = await engine.create_endpoint(1, f"c{n}", [Codec.PCMA])
        await engine.set_remote(endpoint, "127.0.0.1", sink_port, payload_type=8, codec=Codec.PCMA)
        await engine.play(endpoint, WavSource(path, loop=True))
    probe = Stamped(loop)
    transport, _ = await loop.create_datagram_endpoint(lambda: probe, local_addr=("127.0.0.1", 0))
    sender = subprocess.Popen([sys.executable, "-c", SENDER, str(transport.get_extra_info("sockname")[1])])
    try:
        await asyncio.sleep(2)  # every player started, the sender going
        probe.waits.clear()
        frames0, late0 = engine.playback.frames, engine.playback.late
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        frames, late = engine.playback.frames - frames0, engine.playback.late - late0
    finally:
        sender.kill()
        sender.wait()
        transport.close()
        sink.close()
        await engine.close()
    waits = [w * 1000 for w in probe.waits]
    return (f"| {players} | {media_engine._PlayClock.CHUNK} | {frames / wall:,.0f} ({50 * players:,}) | {late} | "
            f"{cpu / wall * 100:.0f}% | {cpu / max(1, frames) * 1e6:.1f} | {quantile(waits, 0.5):.2f} | "
            f"{quantile(waits, 0.9):.2f} | {quantile(waits, 0.99):.2f} | {max(waits, default=float('nan')):.2f} | "
            f"{len(waits)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", default="200,800", help="players, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--chunk", type=int, default=0, help="override _PlayClock.CHUNK (0: the engine's)")
    args = parser.parse_args()
    if args.chunk:
        media_engine._PlayClock.CHUNK = args.chunk
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.python_version()}, {os.cpu_count()} cores, "
          f"load average {load[0]:.2f}")
    print("| players | chunk | frames/s (expected) | late | CPU, % of a core | µs CPU per frame "
          "| datagram + 3 hops p50, ms | p90 | p99 | max | datagrams |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="zvonok-bench-playback-") as tmp:
        path = tone_file(Path(tmp))
        for players in (int(p) for p in args.players.split(",")):
            print(uvloop.run(run(players, args.seconds, path)), flush=True)


if __name__ == "__main__":
    main()
