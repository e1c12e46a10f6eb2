"""The CPU cost of SRTP per relayed packet and per call, through the media engine's own code path.

What it does: opens two endpoints in the in-process media engine, bridges them as the call engine does,
and drives the datagram handler of one leg with ``--packets`` 20 ms PCMU packets (172 bytes, 160 of
audio), the packets going out through the other leg. The sockets' ``sendto`` is swapped for a counter,
so what is measured is the engine's Python and libsrtp work per packet, without the system calls that
every relayed packet pays anyway (plain or not). Four directions:

* plain → plain: the relay fast path (latched source, same codec: the datagram goes out as received);
* SRTP → plain: libsrtp unprotect (AES-CM + HMAC-SHA1-80 check) on the way in, then the same relay;
* plain → SRTP: the relay, then libsrtp protect on the way out;
* SRTP → SRTP: both.

The packets into an SRTP leg are protected beforehand (outside the timing) with the peer's key, as a
phone would send them. Per call: a call sends 50 packets/s each way, so its CPU per second of talk is
50 × (cost one way + cost the other way); the table gives that for a plain call, a call with one SRTP
leg (a TLS phone calling a UDP phone) and a call with two. Timings are process CPU time (best of
``--repeat`` runs).

Example::

    .venv/bin/python bench/srtp.py --packets 50000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from zvonok.media.engine import InProcessMediaEngine
from zvonok.media.g711 import Codec
from zvonok.media.interface import Endpoint, SrtpKeys
from zvonok.media.rtp import build_rtp
from zvonok.media.srtp import tx_session

PEER = ("127.0.0.1", 40000)
PPS = 50  # 20 ms packets


class CountingSocket:
    """Stands in for a leg's UDP transport: counts what would be sent (the rest goes to the real one)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent = 0
        self.bytes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent += 1
        self.bytes += len(data)


def packets(count: int, key: bytes | None) -> list[bytes]:
    """``count`` consecutive RTP packets from one source; SRTP-protected with ``key`` if given."""
    plain = [build_rtp(payload_type=0, sequence=seq & 0xFFFF, timestamp=seq * 160, ssrc=0x1234,
                       payload=bytes((seq + i) & 0xFF for i in range(160))) for seq in range(count)]
    if key is None:
        return plain
    protect = tx_session(key).protect
    return [protect(p) for p in plain]


async def one_direction(srtp_in: bool, srtp_out: bool, count: int) -> tuple[float, int, int]:
    """CPU seconds to relay ``count`` packets from leg A (SRTP if ``srtp_in``) to leg B; sent, bytes."""
    engine = InProcessMediaEngine(host="127.0.0.1", port_min=42000, port_max=42999)
    a = await engine.create_endpoint(1, "bench", [Codec.PCMU])
    b = await engine.create_endpoint(1, "bench", [Codec.PCMU])
    phone_a_key, ours_a, phone_b_key, ours_b = (os.urandom(30) for _ in range(4))
    try:
        await engine.set_remote(a, *PEER, payload_type=0, codec=Codec.PCMU,
                                srtp=SrtpKeys(local=ours_a, remote=phone_a_key) if srtp_in else None)
        await engine.set_remote(b, PEER[0], PEER[1] + 2, payload_type=0, codec=Codec.PCMU,
                                srtp=SrtpKeys(local=ours_b, remote=phone_b_key) if srtp_out else None)
        await engine.bridge(a, b)
        leg_b = engine._leg(b)  # noqa: SLF001 - the bench drives the handler itself
        if srtp_out:
            counter = leg_b.transport.inner = CountingSocket(leg_b.transport.inner)  # protect, then "send"
        else:
            counter = leg_b.transport = CountingSocket(leg_b.transport)
        receive = _receiver(engine, a).datagram_received  # SRTP: unprotect first, as the socket would
        data = packets(count, phone_a_key if srtp_in else None)
        start = time.process_time()
        for datagram in data:
            receive(datagram, PEER)
        elapsed = time.process_time() - start
        return elapsed, counter.sent, counter.bytes
    finally:
        await engine.close()


def _receiver(engine: InProcessMediaEngine, endpoint: Endpoint) -> Any:
    leg = engine._leg(endpoint)  # noqa: SLF001
    raw = leg.srtp[1] if leg.srtp is not None else leg.transport
    return raw.get_protocol()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=50_000, help="packets per direction and run (< 65536)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per direction; the best is kept")
    args = parser.parse_args()
    cases = {"plain -> plain": (False, False), "SRTP -> plain": (True, False),
             "plain -> SRTP": (False, True), "SRTP -> SRTP": (True, True)}
    per_packet: dict[str, float] = {}
    print(f"{'direction':<16}{'µs/packet':>11}{'sent':>9}{'bytes out':>11}")
    for name, (srtp_in, srtp_out) in cases.items():
        best = None
        for _ in range(args.repeat):
            elapsed, sent, size = await one_direction(srtp_in, srtp_out, args.packets)
            assert sent == args.packets, f"{name}: {sent} of {args.packets} relayed"
            best = elapsed if best is None else min(best, elapsed)
        assert best is not None
        per_packet[name] = best / args.packets * 1e6
        print(f"{name:<16}{per_packet[name]:>11.2f}{sent:>9}{size // sent:>11}")
    calls = {"plain call": ("plain -> plain", "plain -> plain"),
             "one SRTP leg": ("SRTP -> plain", "plain -> SRTP"),
             "two SRTP legs": ("SRTP -> SRTP", "SRTP -> SRTP")}
    plain_call = PPS * (per_packet["plain -> plain"] * 2)
    print(f"\n{'call (50 pps each way)':<24}{'CPU µs per second of talk':>27}{'extra vs plain':>16}")
    for name, (there, back) in calls.items():
        cost = PPS * (per_packet[there] + per_packet[back])
        print(f"{name:<24}{cost:>27.0f}{cost - plain_call:>16.0f}")


if __name__ == "__main__":
    asyncio.run(main())
