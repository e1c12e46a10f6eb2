"""A mixing bridge on the event loop: three or more endpoints mixed every 20 ms (the asyncio side of
:mod:`zvonok.media.mixer`).

How it works: a member leg's received audio payloads go to :meth:`MixBridge.feed` instead of a relay peer
(the engine's ``datagram_received`` checks its relay peer first, so the two-party fast path pays nothing
for this). One timer per bridge, paced by absolute deadlines (``deadline += 0.020; loop.call_at``), runs
the mixer and sends each member its frame as a stream of our own (one SSRC per member, continuous
sequence and timestamps, through the leg's rewriter like playback). While a prompt or tone plays to a
member, the prompt replaces the mix towards it (as for a relay), and the member is still heard by the
others. A tick that starts more than one frame late counts as late (``late_ticks``): the benchmark's
"no late frames".

After a stall (issue 9). When a callback holds the loop for 40–80 ms, the bridge owes several ticks and
each member's packets of that time sit unread in its socket. uvloop (libuv) runs due timers *before* it
polls the sockets, and a timer re-armed in the past runs in the same pass: the owed ticks would all mix
before the burst is read, find the members' FIFOs empty (silence), and then the burst would arrive for
ticks already played — a 20 ms jump in every member's audio at each stall. So a tick that fires more than
``READ_FIRST`` late does not mix yet: it re-arms ``READ_GAP`` later, which lets the loop poll the sockets
first, and then catches up every owed tick in order, from frames now in the FIFOs (the mixer keeps them:
see :mod:`zvonok.media.mixer`). The cost is one millisecond after a stall. A stall longer than ``MAX_LAG``
is not caught up: the clock gives up the oldest owed ticks (``skipped_ticks``), the mixer drops the
frames that were theirs, so the delay after it stays what it was, and the streams we send skip their
sequence numbers and timestamps (RFC 3550: the timestamp is the sampling instant), so a member's jitter
buffer sees lost packets and conceals them rather than taking the gap for delay.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from .errors import PacketError
from .g711 import CLOCK_RATE, FRAME_SAMPLES, Codec
from .mixer import Mixer
from .rtp import rtp_payload_bounds

if TYPE_CHECKING:
    from .engine import _Leg

FRAME_SECONDS = FRAME_SAMPLES / CLOCK_RATE
MAX_LAG = 0.2  # owed ticks caught up after a stall (a burst of 10 packets to each member at most)
READ_FIRST = 0.005  # a tick this late may have packets waiting in the sockets: poll them before mixing
READ_GAP = 0.001


class MixStats(NamedTuple):
    """Counters of a mixing bridge, or the sum over a media engine's bridges (``/metrics``)."""

    members: int = 0
    ticks: int = 0
    late_ticks: int = 0  # mixed more than one frame after their deadline
    skipped_ticks: int = 0  # given up after a stall longer than MAX_LAG
    trimmed_frames: int = 0  # received frames dropped to give back delay
    missing_frames: int = 0  # ticks a member had no frame for (late, lost, silence suppressed)

    def plus(self, other: MixStats) -> MixStats:
        return MixStats(*(a + b for a, b in zip(self, other, strict=True)))


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
        self._polled = False  # this late tick has already let the loop read the sockets
        self.ticks = 0
        self.late_ticks = 0
        self.skipped_ticks = 0

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

    def stats(self) -> MixStats:
        trimmed, missing = self.mixer.frame_counts()
        return MixStats(len(self.members), self.ticks, self.late_ticks, self.skipped_ticks, trimmed, missing)

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
        loop = self.loop
        now = loop.time()
        lag = now - self._deadline
        if lag > READ_FIRST and not self._polled:
            self._polled = True  # read what arrived during the stall, then catch up (module doc)
            self._handle = loop.call_at(now + READ_GAP, self._tick)
            return
        self._polled = False
        if lag > MAX_LAG:
            give_up = int((lag - MAX_LAG) / FRAME_SECONDS) + 1
            self.skipped_ticks += give_up
            self._deadline += give_up * FRAME_SECONDS
            for stream in self._streams.values():  # what we send shows the gap as loss, not as jitter
                stream.seq = (stream.seq + give_up) & 0xFFFF
                stream.ts = (stream.ts + give_up * FRAME_SAMPLES) & 0xFFFFFFFF
            self.mixer.trim(int((now - self._deadline) / FRAME_SECONDS) + 2)  # the ticks owed, one in hand
        while True:
            self._mix(now)
            self._deadline += FRAME_SECONDS
            if self._deadline > now:
                break
        self._handle = loop.call_at(self._deadline, self._tick)

    def _mix(self, now: float) -> None:
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
