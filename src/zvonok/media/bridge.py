"""A mixing bridge on the event loop: three or more endpoints mixed every 20 ms (the asyncio side of
:mod:`zvonok.media.mixer`).

How it works: a member leg's received audio payloads go to :meth:`MixBridge.feed` instead of a relay peer
(the engine's ``datagram_received`` checks its relay peer first, so the two-party fast path pays nothing
for this). One timer per bridge, paced by absolute deadlines (``deadline += 0.020; loop.call_at``), runs
the mixer and sends each member its frame as a stream of our own (one SSRC per member, continuous
sequence and timestamps, through the leg's rewriter like playback). While a prompt or tone plays to a
member, the prompt replaces the mix towards it (as for a relay), and the member is still heard by the
others. A tick that starts more than one frame late counts as late (``late_ticks``): the benchmark's
"no late frames"; after a stall longer than ``MAX_LAG`` the clock skips ahead rather than bursting.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import PacketError
from .g711 import CLOCK_RATE, FRAME_SAMPLES, Codec
from .mixer import Mixer
from .rtp import rtp_payload_bounds

if TYPE_CHECKING:
    from .engine import _Leg

FRAME_SECONDS = FRAME_SAMPLES / CLOCK_RATE
MAX_LAG = 0.1


@dataclass(slots=True)
class _Stream:
    """What we send to one member: our own RTP stream."""

    ssrc: int
    seq: int = field(default_factory=lambda: secrets.randbits(16))
    ts: int = field(default_factory=lambda: secrets.randbits(32))
    first: bool = True


class MixBridge:
    def __init__(self, bridge_id: str, loop: asyncio.AbstractEventLoop,
                 ssrc_factory: Callable[[], int] = lambda: secrets.randbits(32)) -> None:
        self.id = bridge_id
        self.loop = loop
        self.mixer = Mixer()
        self.members: dict[str, _Leg] = {}
        self._streams: dict[str, _Stream] = {}
        self._ssrc = ssrc_factory
        self._handle: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self.ticks = 0
        self.late_ticks = 0

    def add(self, leg: _Leg, *, speaks: bool, listens: bool) -> None:
        key = leg.endpoint.id
        self.mixer.add(key, leg.codec or Codec.PCMU, speaks=speaks, listens=listens)
        self.members[key] = leg
        self._streams.setdefault(key, _Stream(ssrc=self._ssrc()))
        leg.mix = self
        if self._handle is None:
            self._deadline = self.loop.time() + FRAME_SECONDS
            self._handle = self.loop.call_at(self._deadline, self._tick)

    def remove(self, leg: _Leg) -> None:
        key = leg.endpoint.id
        if self.members.pop(key, None) is not None:
            self.mixer.remove(key)
            self._streams.pop(key, None)
        if leg.mix is self:
            leg.mix = None
        if not self.members:
            self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for leg in self.members.values():
            leg.mix = None
        self.members.clear()

    def set_matrix(self, leg: _Leg, *, speaks: bool | None, listens: bool | None,
                   hears: Mapping[str, bool | None] | None) -> None:
        self.mixer.set_matrix(leg.endpoint.id, speaks=speaks, listens=listens, hears=hears)

    def codec_changed(self, leg: _Leg) -> None:
        if leg.codec is not None:
            self.mixer.set_codec(leg.endpoint.id, leg.codec)

    def feed(self, leg: _Leg, data: bytes) -> None:
        """An audio packet received on a member leg (DTMF never comes here)."""
        try:
            start, end = rtp_payload_bounds(data)
        except PacketError:
            return
        self.mixer.feed(leg.endpoint.id, data[start:end])

    def _tick(self) -> None:
        now = self.loop.time()
        self.ticks += 1
        if now - self._deadline > FRAME_SECONDS:
            self.late_ticks += 1
        members = self.members
        streams = self._streams
        for key, payload in self.mixer.mix().items():
            leg = members[key]
            stream = streams[key]
            if leg.player is None and leg.audio_pt is not None:
                leg.send_own(payload, leg.audio_pt, stream.first, stream.ssrc, stream.seq, stream.ts)
                stream.first = False
            stream.seq = (stream.seq + 1) & 0xFFFF
            stream.ts = (stream.ts + FRAME_SAMPLES) & 0xFFFFFFFF
        self._deadline += FRAME_SECONDS
        if self._deadline < now - MAX_LAG:
            self._deadline = now
        self._handle = self.loop.call_at(self._deadline, self._tick)
