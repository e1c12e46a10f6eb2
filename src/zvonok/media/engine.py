"""The in-process media engine: RTP sockets on the event loop (asyncio or uvloop), relay, play, record.

How it works. Each endpoint (:class:`_Leg`) is the datagram protocol of its RTP socket; RTCP (port + 1)
is only counted. A packet is unpacked once (:data:`~zvonok.media.rtp.RTP_HEADER`), checked against the
latching rule, counted, and — when the leg is bridged — handed to the other leg, which ``sendto``\\ s it
from its own socket to its peer. Same codec and an unchanged source: the datagram goes out as received.
Otherwise the header is rewritten (payload type mapped, SSRC/seq/ts kept continuous by the outgoing leg's
:class:`~zvonok.media.rtp.SsrcRewriter`) and a PCMU↔PCMA payload goes through a 256-byte ``translate``.

Latching (symmetric RTP, RFC 4961, for peers behind NAT) and RTP-bleed protection:

* Until a source is latched, we send to the SDP address and accept packets from anywhere. A source
  (address, SSRC) is latched after ``LATCH_PROBATION`` packets with consecutive sequence numbers; from
  then on we send to it.
* Once latched, a packet from another address is dropped unless
  - it carries the latched SSRC with a sequence number continuing the stream (at most ``MAX_CONTINUE``
    ahead): the same stream moved (NAT rebinding) — re-latch at once; or
  - the latched source has been silent for ``RELATCH_GAP`` seconds and the new source passes the
    probation again (a new SSRC after a re-INVITE or a transfer upstream).
  A blind attacker knows neither the SSRC nor the sequence, so it cannot steal a live stream.
* ``set_remote`` with a different address starts over (unlatched).

Sockets: an endpoint's RTP/RTCP pair comes from :mod:`.socket_pool` when one released by an earlier call
has been quiet long enough, else it is bound fresh in the port range (round robin); release parks it there
(or closes it: pool full or disabled).

SRTP (:mod:`.srtp`) wraps a leg's socket transport and protocol when ``set_remote`` gives it keys; the
code above never sees it, and plain legs pay nothing for it.

In-call feature codes (``gate_dtmf``, :mod:`.dtmf_gate`): a gated leg does not relay the telephone-event
packets of keys that may begin a code; the keys its gate releases (no code followed) a :class:`_KeySender`
sends to the peer as events of our own, in the peer's ``player`` place meanwhile (as a prompt, it stops the
relay towards that peer). A packet withheld is skipped in the peer's rewriter: its stream shows no loss.

Pacing (play) uses absolute deadlines with ``loop.call_at``; callbacks to the call engine are scheduled
with ``loop.call_soon``, so a failing callback can never break the socket's protocol.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import math
import os
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .bridge import MixBridge, MixStats
from .deadlines import Deadlines
from .dtmf import DtmfReceiver, event_payloads, parse_event
from .dtmf_gate import DtmfGate, Verdict
from .dtmf_inband import InbandDtmfDetector
from .errors import MediaUsageError, PacketError, PortsExhausted
from .events import DtmfReceived, MediaTimeout, PlaybackFinished
from .g711 import CLOCK_RATE, Codec, decode, encode, transcode_table
from .interface import (
    Address,
    DtmfCallback,
    Endpoint,
    InactivityCallback,
    PlaybackCallback,
    PlaySource,
    Prompt,
    Recording,
    RecordingInfo,
    SilenceCallback,
    Tone,
)
from .recording import ArrivalTap, FrameWriter, SlotRecorder
from .rtp import RTP_HEADER, SsrcRewriter, parse_rtcp, rtp_payload_bounds, seq_delta
from .silence import SilenceDetector
from .socket_pool import SocketPair, SocketPool, open_pair
from .srtp import SrtcpReceiver, SrtcpSender, SrtpKeys, SrtpReceiver, SrtpSender, rx_session, tx_session
from .stats import MediaStats, StreamStats
from .tones import FrameSource, ToneGenerator
from .wav import WavSource, WavWriter

log = logging.getLogger(__name__)

LATCH_PROBATION = 2
MAX_CONTINUE = 100
RELATCH_GAP = 1.0
INBAND_MS = 40  # the duration reported for a key heard in band (the detector reports the press, not its length)
RECORD_FLUSH_INTERVAL = 0.5
# an audio tap (fax) hands frames on every 20 ms, 60 ms behind arrival: T.30 answers within seconds, but
# its modems' timing is counted in samples, so the tap's stream must be continuous, not bursty
TAP_FLUSH_INTERVAL = 0.020
PLAY_TICK = 0.005  # the players' clock (see _PlayClock)
PLAY_EARLY = PLAY_TICK / 2  # a frame goes at the tick nearest its deadline: at most half a tick early or late
_SLACK = 1e-6  # rounding: a deadline exactly half a tick away is the same tick in _PlayClock.add and due
MAX_PLAY_LAG = 0.1  # when the loop stalled longer than this, playback skips ahead instead of bursting
RELEASED_KEY_MS = 100  # a key a DTMF gate withheld and then released is sent this long (a press's usual length)
RELEASED_KEY_PAUSE = 3  # and followed by this many 20 ms packet times without packets

_unpack = RTP_HEADER.unpack_from
_pack_into = RTP_HEADER.pack_into


class _RtcpProtocol(asyncio.DatagramProtocol):
    def __init__(self, stats: StreamStats) -> None:
        self.stats = stats

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            self.stats.rtcp_reports += len(parse_rtcp(data))
        except PacketError:
            pass

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable from an earlier send: the peer is gone, the RTP timeout will tell



@dataclass(slots=True)
class PlaybackStats:
    """Frames sent by every player of an engine, and how many of them left more than one frame (20 ms)
    after their deadline: the IVR and music-on-hold benchmark's "no late frames" (``bench/ivr.py``)."""

    frames: int = 0
    late: int = 0


class _PlayClock:
    """One timer for every player of an engine, every :data:`PLAY_TICK` (absolute deadlines). A timer of its
    own per player was a timer-heap push and pop per packet, and with hundreds of callers waiting to music
    that overhead was a large share of the loop. The tick is a quarter of a frame and the players are in
    four groups by the phase of their deadlines: each tick sends one group its due frames (a player started
    at any moment joins the group whose ticks fall nearest its deadlines), so a SIP message that arrives
    meanwhile waits for a quarter of the work, not all of it, and a frame leaves within 2.5 ms of its
    deadline. A group is sent in chunks of :attr:`CHUNK` players, one loop callback each: what arrives
    meanwhile (a SIP message, the callback an offer queued) runs between two chunks instead of after the
    whole group, so with hundreds of players each step of a call's set-up waits for a chunk (≈ 0.3 ms), not
    a quarter of every player (≈ 2 ms at 800 players; docs/benchmarks.md has the measurement)."""

    PHASES = 4  # PLAY_TICK * PHASES is one 20 ms frame
    CHUNK = 32  # players sent to in one callback (16 cost ≈ 20% more CPU at 800 players for no gain at p99)

    def __init__(self, loop: asyncio.AbstractEventLoop, stats: PlaybackStats) -> None:
        self.loop = loop
        self.stats = stats
        self.groups: list[dict[_Player, None]] = [{} for _ in range(self.PHASES)]  # insertion-ordered sets
        self.count = 0
        self.tick = 0  # the number of the next tick
        self.deadline = 0.0  # when the next tick is due
        self.handle: asyncio.TimerHandle | None = None

    def __contains__(self, player: _Player) -> bool:
        return player in self.groups[player.phase]

    def add(self, player: _Player) -> None:
        if self.handle is None:
            self.deadline = self.loop.time() + PLAY_TICK
            self.handle = self.loop.call_at(self.deadline, self._tick)
        # the first tick at or after (deadline - PLAY_EARLY), as due() decides it (the same margin)
        ahead = max(0, math.ceil((player.deadline - PLAY_EARLY - _SLACK - self.deadline) / PLAY_TICK))
        player.phase = (self.tick + ahead) % self.PHASES
        self.groups[player.phase][player] = None
        self.count += 1

    def remove(self, player: _Player) -> None:
        if self.groups[player.phase].pop(player, 0) is None:
            self.count -= 1
            if not self.count and self.handle is not None:
                self.handle.cancel()
                self.handle = None

    def _tick(self) -> None:
        now = self.loop.time()
        at = max(now, self.deadline)  # a timer may fire a little early (uvloop counts milliseconds)
        group = self.groups[self.tick % self.PHASES]
        self.tick += 1
        if len(group) <= self.CHUNK:
            for player in list(group):
                player.due(now, at)
        else:
            self._send(list(group), 0, at)
        if not self.count:
            self.handle = None
            return
        self.deadline += PLAY_TICK
        if self.deadline < now - MAX_PLAY_LAG:
            self.deadline = now
        self.handle = self.loop.call_at(self.deadline, self._tick)

    def _send(self, players: list[_Player], start: int, at: float) -> None:
        """One chunk of a tick's group; the rest in a callback of its own (queued behind what is ready)."""
        now = self.loop.time()
        end = start + self.CHUNK
        for player in players[start:end]:
            player.due(now, at)  # a player stopped meanwhile is no longer in the clock: due() sends nothing
        if end < len(players):
            self.loop.call_soon(self._send, players, end, at)


class _Player:
    """Sends one source's frames to a leg's peer, each at its deadline (20 ms apart, absolute): the first at
    once, the rest from the engine's :class:`_PlayClock`."""

    def __init__(self, leg: _Leg, source: FrameSource, on_finished: PlaybackCallback | None, ssrc: int,
                 clock: _PlayClock) -> None:
        self.stats = clock.stats
        self.clock = clock
        self.leg = leg
        self.source = source
        self.on_finished = on_finished
        self.ssrc = ssrc
        self.seq = secrets.randbits(16)
        self.ts = secrets.randbits(32)
        self.first = True
        self.loop = leg.loop
        self.deadline = self.loop.time()
        self.phase = 0  # the clock's group (_PlayClock.add)
        self.handle: asyncio.Handle | None = self.loop.call_soon(self._start)

    def _start(self) -> None:
        self.handle = None
        if self._send(self.loop.time()):
            self.clock.add(self)

    def due(self, now: float, at: float) -> None:
        """The clock's tick for ``at`` (``now`` or a moment later): the frames whose deadline has come (one,
        unless the loop was held up)."""
        if self.deadline < now - MAX_PLAY_LAG:
            self.deadline = now  # a long stall: skip ahead rather than burst
        while self.deadline <= at + PLAY_EARLY + _SLACK and self in self.clock:
            if not self._send(now):
                return

    def _send(self, now: float) -> bool:
        """Send the next frame; False when the source ended (the leg's playback is over)."""
        leg = self.leg
        codec = leg.codec
        source = self.source
        payload: bytes | None
        if codec is not None and isinstance(source, WavSource):  # a file: its payloads are encoded once, shared
            payload = source.read_payload(codec)
            if payload is None:
                leg.end_play(stopped=False)
                return False
            samples = len(payload)  # G.711: one octet a sample
        else:
            frame = source.read_frame()
            if frame is None:
                leg.end_play(stopped=False)
                return False
            samples = frame.size
            payload = encode(codec, frame) if codec is not None and leg.audio_pt is not None else None
        if payload is not None and leg.audio_pt is not None:
            leg.send_own(payload, leg.audio_pt, self.first, self.ssrc, self.seq, self.ts)
            self.first = False
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + samples) & 0xFFFFFFFF
        length = samples / CLOCK_RATE
        self.stats.frames += 1
        if now - self.deadline > length:
            self.stats.late += 1
        self.deadline += length
        return True

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.clock.remove(self)


class _KeySender:
    """Sends the keys a leg's DTMF gate released to that leg's peer as RFC 4733 events of our own.

    One packet every 20 ms on absolute deadlines (as :class:`_Player`): each key is one event of
    ``RELEASED_KEY_MS`` with its own timestamp (§2.5.1.2: that of its first packet, which has the marker),
    its end packet sent three times (§2.5.1.4), then a pause. While it runs it is the peer leg's ``player``,
    so nothing is relayed to that peer meanwhile (audio and events from two sources interleaved would
    break the one stream's sequence and the events' timestamps); the relay resumes when the gate has
    nothing more to send. Stopped by a playback (``end_play``): what was released is then dropped.
    """

    on_finished: PlaybackCallback | None = None  # a leg's player: ``end_play`` reports nothing for this one

    def __init__(self, leg: _Leg, gate: DtmfGate, ssrc: int) -> None:
        self.leg = leg  # where the keys go (the gated leg's peer)
        self.gate = gate
        self.ssrc = ssrc
        self.seq = secrets.randbits(16)
        self.ts = secrets.randbits(32)
        self.event_ts = self.ts
        self.packets: list[tuple[bool, bytes]] = []
        self.pause = 0
        self.loop = leg.loop
        self.deadline = self.loop.time()
        self.handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Send the first packet now: from here on the gate knows that its keys are being sent."""
        self._tick()

    def _tick(self) -> None:
        leg = self.leg
        if self.pause:
            self.pause -= 1
        elif not self.packets:
            event = self.gate.next_event()
            if event is None:  # all sent: relaying resumes
                leg.player = None
                return
            self.packets = event_payloads(event, duration_ms=RELEASED_KEY_MS)
            self.packets.reverse()
            self.event_ts = self.ts
        if self.packets:
            marker, payload = self.packets.pop()
            if leg.event_pt is not None:
                leg.send_own(payload, leg.event_pt, marker, self.ssrc, self.seq, self.event_ts)
            self.seq = (self.seq + 1) & 0xFFFF
            if not self.packets:
                self.pause = RELEASED_KEY_PAUSE
        self.ts = (self.ts + 160) & 0xFFFFFFFF
        now = self.loop.time()
        self.deadline += 0.020
        if self.deadline < now - MAX_PLAY_LAG:
            self.deadline = now
        self.handle = self.loop.call_at(self.deadline, self._tick)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.gate.abandon()


class _Leg(asyncio.DatagramProtocol):
    """One endpoint: its RTP socket's protocol and all per-leg media state."""

    __slots__ = (
        "audio_pt", "candidate", "closed", "codec", "dtmf", "endpoint", "event_pt", "gate", "gate_timer",
        "inactivity", "inband",
        "inactivity_deadline", "inactivity_reported", "inactivity_since", "deadlines", "loop", "mix", "on_dtmf", "peer", "player",
        "r_audio_pt", "r_event_pt", "r_table", "recorders", "rewriter", "rtcp", "rtcp_transport", "sdp_addr",
        "send_addr", "src_addr", "srtp", "stats", "transport", "udptl", "udptl_sink",
    )

    def __init__(self, endpoint: Endpoint, loop: asyncio.AbstractEventLoop, deadlines: Deadlines) -> None:
        self.endpoint = endpoint
        self.loop = loop
        self.deadlines = deadlines  # the engine's one timer for every leg's inactivity check
        self.transport: Any = None  # uvloop's UDPTransport is no asyncio.DatagramTransport subclass
        self.rtcp_transport: Any = None
        self.rtcp: _RtcpProtocol | None = None
        self.srtp: tuple[SrtpKeys, Any, Any] | None = None  # the keys and the plain RTP and RTCP transports
        self.sdp_addr: tuple[str, int] | None = None
        self.send_addr: tuple[Any, ...] | None = None  # where our packets go: SDP address, then latched
        self.src_addr: tuple[Any, ...] | None = None  # the latched source (None: not latched)
        self.candidate: tuple[tuple[Any, ...], int, int, int] | None = None  # addr, ssrc, seq, count
        self.codec: Codec | None = None
        self.audio_pt: int | None = None
        self.event_pt: int | None = None
        self.stats = StreamStats()
        self.dtmf = DtmfReceiver()
        self.on_dtmf: DtmfCallback | None = None
        self.inband: InbandDtmfDetector | None = None  # keys heard in the audio (a trunk sending no events)
        self.peer: _Leg | None = None
        self.mix: MixBridge | None = None  # the mixing bridge this leg is in (then ``peer`` is None)
        # the route of packets *received here* towards ``peer``: its PTs and the payload table
        self.r_audio_pt: int | None = None
        self.r_event_pt: int | None = None
        self.r_table: bytes | None = None
        self.rewriter = SsrcRewriter()  # the stream we send to our peer
        self.player: _Player | _KeySender | None = None  # what we send to our peer instead of the relay
        self.gate: DtmfGate | None = None  # withholds received keys that may begin a feature code
        self.gate_timer: tuple[float, asyncio.TimerHandle] | None = None  # the gate's deadline, armed
        self.recorders: list[tuple[SlotRecorder | ArrivalTap, int]] = []
        self.inactivity: tuple[float, InactivityCallback] | None = None
        self.inactivity_deadline: float | None = None  # when the check is due (its entry in ``deadlines``)
        self.inactivity_since = 0.0
        self.inactivity_reported: float | None = None
        # T.38: the socket carries UDPTL datagrams instead of RTP (set_udptl); to a terminal's sink, or
        # relayed as they are to the bridged peer when that is in UDPTL mode too
        self.udptl = False
        self.udptl_sink: Callable[[bytes], None] | None = None

    # --- socket callbacks ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable for an earlier sendto: the peer is not there (yet); keep going

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.udptl:
            self._udptl_received(data, addr)
            return
        if len(data) < 12:
            return
        b0, b1, seq, ts, ssrc = _unpack(data)
        if b0 & 0xC0 != 0x80:
            return
        now = self.loop.time()
        if addr != self.src_addr and not self._accept_source(addr, ssrc, seq, now):
            return
        pt = b1 & 0x7F
        if pt == self.audio_pt:
            self.stats.received(ssrc, seq, ts, len(data), now)
            if self.recorders:
                self._record(data, now)
            if self.inband is not None:
                self._inband(data)
            peer = self.peer
            if peer is not None and peer.player is None:
                peer.relay(data, b0, b1, seq, ts, ssrc, now, self.r_audio_pt, self.r_table)
            elif self.mix is not None:
                self.mix.feed(self, data)
        elif pt == self.event_pt:
            self.stats.received(ssrc, seq, ts, len(data), now, False)
            self._dtmf(data, ts)
            peer = self.peer
            if peer is not None and peer.player is None and self.r_event_pt is not None:
                gate = self.gate
                if gate is None or self._gated(gate, data, ts, now):
                    peer.relay(data, b0, b1, seq, ts, ssrc, now, self.r_event_pt, None)
                else:
                    peer.rewriter.skip(ssrc, seq)
            elif self.gate is not None:
                self._gated(self.gate, data, ts, now)
        else:  # comfort noise (RFC 3389), unnegotiated codecs: not relayed, but the peer is alive
            self.stats.last_received_at = now

    def _udptl_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        # latched to the first source (symmetric UDP, as for RTP); others are dropped: no SSRC to go by here
        if addr != self.src_addr:
            if self.src_addr is not None:
                return
            self._latch(addr)
        self.stats.last_received_at = self.loop.time()
        self.stats.bytes_received += len(data)
        sink = self.udptl_sink
        if sink is not None:
            sink(data)
            return
        peer = self.peer
        if peer is not None and peer.udptl and peer.send_addr is not None:
            peer.transport.sendto(data, peer.send_addr)
            peer.stats.sent(len(data))

    def send_datagram(self, data: bytes) -> None:
        if self.udptl and self.send_addr is not None:
            self.transport.sendto(data, self.send_addr)
            self.stats.sent(len(data))

    # --- latching (see the module doc) ---------------------------------------------------------------

    def _accept_source(self, addr: tuple[Any, ...], ssrc: int, seq: int, now: float) -> bool:
        stats = self.stats
        if self.src_addr is not None:
            if ssrc == stats.ssrc and 0 < seq_delta(seq, stats.max_seq) <= MAX_CONTINUE:
                self._latch(addr)  # the same stream from a new address: NAT rebinding
                return True
            last = stats.last_received_at
            if last is not None and now - last < RELATCH_GAP:
                return False
        candidate = self.candidate
        count = 1
        if candidate is not None and candidate[0] == addr and candidate[1] == ssrc \
                and seq == (candidate[2] + 1) & 0xFFFF:
            count = candidate[3] + 1
        if count >= LATCH_PROBATION:
            self._latch(addr)
            return True
        self.candidate = (addr, ssrc, seq, count)
        return self.src_addr is None  # unlatched: accept from anywhere; latched: wait for the probation

    def _latch(self, addr: tuple[Any, ...]) -> None:
        self.src_addr = addr
        self.send_addr = addr
        self.candidate = None

    # --- sending ---------------------------------------------------------------------------------------

    def relay(self, data: bytes, b0: int, b1: int, seq: int, ts: int, ssrc: int, now: float,
              out_pt: int | None, table: bytes | None) -> None:
        """Send a packet received on the bridged leg to our peer (called by that leg)."""
        dest = self.send_addr
        if dest is None or out_pt is None or self.udptl:
            return
        rewriter = self.rewriter
        if table is None and rewriter.identity and ssrc == rewriter.in_ssrc and out_pt == b1 & 0x7F:
            # the one source passing through (the common case, every packet of a plain call): forwarded as is,
            # SsrcRewriter.rewrite inlined (offsets are zero: out = in) and so is the stats' count: the Python
            # part of a relayed packet 0.90 -> 0.75 µs (the whole packet, the sockets' share included, ≈ 9 µs)
            if (seq - rewriter.last_seq + 0x8000) & 0xFFFF > 0x8000:  # newer (seq_delta > 0): not a late one
                rewriter.last_seq = seq
                rewriter.last_ts = ts
                rewriter.last_time = now
            self.transport.sendto(data, dest)
            stats = self.stats
            stats.packets_sent += 1
            stats.bytes_sent += len(data)
            return
        out_seq, out_ts = rewriter.rewrite(ssrc, seq, ts, now)
        if table is None and rewriter.identity and out_pt == b1 & 0x7F:
            self.transport.sendto(data, dest)
            self.stats.sent(len(data))
            return
        if table is None and not b0 & 0x20:
            packet = bytearray(data)
        else:
            try:
                start, end = rtp_payload_bounds(data)
            except PacketError:
                return
            b0 &= ~0x20  # padding is not carried over
            payload = data[start:end]
            packet = bytearray(data[:start])
            packet += payload.translate(table) if table is not None else payload
        _pack_into(packet, 0, b0, (b1 & 0x80) | out_pt, out_seq, out_ts, rewriter.out_ssrc)
        self.transport.sendto(packet, dest)
        self.stats.sent(len(packet))

    def send_own(self, payload: bytes, pt: int, marker: bool, ssrc: int, seq: int, ts: int) -> None:
        """Send a packet we generated (playback) to our peer, through the same continuity rewriter."""
        dest = self.send_addr
        if dest is None:
            return
        out_seq, out_ts = self.rewriter.rewrite(ssrc, seq, ts, self.loop.time())
        packet = bytearray(12 + len(payload))
        _pack_into(packet, 0, 0x80, pt | (0x80 if marker else 0), out_seq, out_ts, self.rewriter.out_ssrc)
        packet[12:] = payload
        self.transport.sendto(packet, dest)
        self.stats.sent(len(packet))

    def end_play(self, *, stopped: bool) -> None:
        player = self.player
        if player is None:
            return
        player.cancel()
        self.player = None
        if player.on_finished is not None:
            endpoint = self.endpoint
            self.loop.call_soon(player.on_finished, PlaybackFinished(
                tenant_id=endpoint.tenant_id, call_id=endpoint.call_id, endpoint_id=endpoint.id, stopped=stopped))

    # --- DTMF, recording, inactivity ------------------------------------------------------------------

    def _dtmf(self, data: bytes, ts: int) -> None:
        try:
            start, end = rtp_payload_bounds(data)
            events = self.dtmf.receive(ts, data[start:end])
        except PacketError:
            return
        callback = self.on_dtmf
        if callback is None:
            return
        endpoint = self.endpoint
        for event in events:
            self.loop.call_soon(callback, DtmfReceived(
                tenant_id=endpoint.tenant_id, call_id=endpoint.call_id, endpoint_id=endpoint.id,
                digit=event.digit, duration_ms=event.duration_ms))

    def _gated(self, gate: DtmfGate, data: bytes, ts: int, now: float) -> bool:
        """Ask the gate about a telephone-event packet: True when it is relayed as usual."""
        try:
            start, end = rtp_payload_bounds(data)
            event = parse_event(data[start:end])
        except PacketError:
            return False
        verdict = gate.feed(event.event, ts, now)
        self.gate_changed()
        return verdict is Verdict.RELAY

    def gate_changed(self) -> None:
        """After the gate was fed or its time came: re-arm its timer, start sending what it released."""
        gate = self.gate
        deadline = gate.next_deadline() if gate is not None else None
        armed = self.gate_timer
        if armed is not None and armed[0] != deadline:
            armed[1].cancel()
            self.gate_timer = armed = None
        if deadline is not None and armed is None:
            self.gate_timer = (deadline, self.loop.call_at(deadline, self._gate_due, deadline))
        if gate is None or not gate.pending:
            return
        peer = self.peer
        if peer is None or self.r_event_pt is None or peer.player is not None or peer.udptl:
            gate.abandon()  # nobody to send them to, or keys would not be relayed now anyway
            return
        peer.player = sender = _KeySender(peer, gate, secrets.randbits(32))
        sender.start()

    def _gate_due(self, when: float) -> None:
        self.gate_timer = None
        if self.gate is not None:
            self.gate.handle_timer(max(self.loop.time(), when))  # a loop timer may run a little early
        self.gate_changed()

    def _inband(self, data: bytes) -> None:
        detector, callback, codec = self.inband, self.on_dtmf, self.codec
        if detector is None or callback is None or codec is None:
            return
        try:
            start, end = rtp_payload_bounds(data)
        except PacketError:
            return
        endpoint = self.endpoint
        for digit in detector.feed(decode(codec, data[start:end])):
            self.loop.call_soon(callback, DtmfReceived(tenant_id=endpoint.tenant_id, call_id=endpoint.call_id,
                                                       endpoint_id=endpoint.id, digit=digit, duration_ms=INBAND_MS))

    def _record(self, data: bytes, now: float) -> None:
        if self.codec is None:
            return
        try:
            start, end = rtp_payload_bounds(data)
        except PacketError:
            return
        samples = decode(self.codec, data[start:end])
        for recorder, index in self.recorders:
            recorder.feed(index, samples, now)

    def arm_inactivity(self) -> None:
        self.inactivity_deadline = None  # an entry already in ``deadlines`` is stale from now on
        if self.inactivity is not None:
            self.inactivity_since = self.loop.time()
            self.inactivity_reported = None
            self._check_at(self.inactivity_since + self.inactivity[0])

    def _check_at(self, when: float) -> None:
        self.inactivity_deadline = when
        self.deadlines.at(self.loop, when, self.endpoint.id)

    def check_inactivity(self, when: float) -> None:
        """The engine's deadline ``when`` for this leg came: report a silence, schedule the next check."""
        if self.inactivity is None or when != self.inactivity_deadline:
            return  # disarmed or re-armed since that entry was pushed
        timeout, callback = self.inactivity
        now = self.loop.time()
        last = max(self.stats.last_received_at or 0.0, self.inactivity_since)
        if now - last >= timeout - 1e-3:
            if self.inactivity_reported != last:  # once per silence
                self.inactivity_reported = last
                endpoint = self.endpoint
                self.loop.call_soon(callback, MediaTimeout(
                    tenant_id=endpoint.tenant_id, call_id=endpoint.call_id, endpoint_id=endpoint.id,
                    silent_for=now - last))
            deadline = now + timeout
        else:
            deadline = last + timeout
        self._check_at(deadline)

    def update_route(self) -> None:
        """Recompute how packets received here are sent on to ``peer`` (after bridge or set_remote)."""
        peer = self.peer
        self.r_audio_pt = self.r_event_pt = self.r_table = None
        if peer is None or self.codec is None or peer.codec is None:
            return
        self.r_audio_pt = peer.audio_pt
        self.r_event_pt = peer.event_pt if self.event_pt is not None else None
        self.r_table = transcode_table(self.codec, peer.codec)

    def set_srtp(self, keys: SrtpKeys | None) -> None:
        """Protect/unprotect with ``keys`` from now on (None: plain RTP again)."""
        current = self.srtp
        if (current[0] if current is not None else None) == keys:
            return
        raw, raw_rtcp = (current[1], current[2]) if current is not None else (self.transport, self.rtcp_transport)
        if keys is None:
            self.srtp = None
            self.transport, self.rtcp_transport = raw, raw_rtcp
            raw.set_protocol(self)
            raw_rtcp.set_protocol(self.rtcp)
            return
        self.srtp = (keys, raw, raw_rtcp)
        tx, rx = tx_session(keys.local), rx_session(keys.remote)  # one session each way: SRTP and SRTCP (§3.4)
        self.transport = SrtpSender(raw, tx)
        raw.set_protocol(SrtpReceiver(self, rx))
        self.rtcp_transport = SrtcpSender(raw_rtcp, tx)  # never plain RTCP on an SRTP leg
        raw_rtcp.set_protocol(SrtcpReceiver(self.rtcp, rx))

    def remote(self) -> tuple[str, int] | None:
        return (str(self.send_addr[0]), int(self.send_addr[1])) if self.send_addr else None


class _SilenceTap:
    """Passes a mono recording's frames to its file and reports the caller's silence (voicemail)."""

    __slots__ = ("callback", "detector", "endpoint", "loop", "writer")

    def __init__(self, writer: WavWriter, detector: SilenceDetector, callback: SilenceCallback,
                 loop: asyncio.AbstractEventLoop, endpoint: Endpoint) -> None:
        self.writer = writer
        self.detector = detector
        self.callback = callback
        self.loop = loop
        self.endpoint = endpoint

    def write(self, samples: npt.NDArray[np.int16]) -> None:
        self.writer.write(samples)
        if self.detector.feed(samples):
            endpoint = self.endpoint
            self.loop.call_soon(self.callback, MediaTimeout(
                tenant_id=endpoint.tenant_id, call_id=endpoint.call_id, endpoint_id=endpoint.id,
                silent_for=self.detector.silent / CLOCK_RATE))


class _TapWriter:
    """An audio tap's sink in the place of a recording's WAV writer (nothing to close)."""

    channels = 1

    def __init__(self, sink: FrameWriter) -> None:
        self.sink = sink
        self.samples = 0

    def write(self, samples: npt.NDArray[np.int16]) -> None:
        self.samples += len(samples)
        self.sink.write(samples)

    @property
    def seconds(self) -> float:
        return self.samples / CLOCK_RATE

    def close(self) -> None:
        pass


@dataclass(slots=True)
class _RecordingState:
    recording: Recording
    recorder: SlotRecorder | ArrivalTap
    writer: WavWriter | _TapWriter
    legs: list[_Leg]
    handle: asyncio.TimerHandle | None = None
    deadline: float = 0.0
    interval: float = RECORD_FLUSH_INTERVAL


class InProcessMediaEngine:
    """:class:`~zvonok.media.interface.MediaEngine` on this process's event loop."""

    def __init__(self, *, host: str = "127.0.0.1", port_min: int = 20000, port_max: int = 29999,
                 advertised_host: str | None = None,
                 ssrc_factory: Callable[[], int] = lambda: secrets.randbits(32),
                 socket_pool: int = 0, socket_quarantine: float = 1.0) -> None:
        if port_min % 2:
            port_min += 1
        if port_max - port_min < 1:
            raise ValueError("the RTP port range needs at least one even/odd pair")
        self.host = host
        self.advertised_host = advertised_host or host
        self.port_min = port_min
        self.port_max = port_max
        self._ssrc = ssrc_factory
        self._next_port = port_min
        self._legs: dict[str, _Leg] = {}
        self._ports: set[int] = set()
        self._recordings: dict[str, _RecordingState] = {}
        self._mixes: dict[str, MixBridge] = {}
        self._mixes_done = MixStats()  # the counters of bridges closed since start
        self._ids = itertools.count(1)
        self._pairs: dict[str, SocketPair] = {}  # endpoint id -> its sockets
        self._pool = SocketPool(max_idle=socket_pool, quarantine=socket_quarantine)
        self._deadlines = Deadlines(self._inactivity_due)
        self.playback = PlaybackStats()
        self._play_clock: _PlayClock | None = None  # one timer for every player (made on the first play)

    # --- endpoints ---------------------------------------------------------------------------------

    @property
    def endpoint_count(self) -> int:
        """Endpoints created and not yet released."""
        return len(self._legs)

    async def create_endpoint(self, tenant_id: int, call_id: str, codecs: Sequence[Codec]) -> Endpoint:
        loop = asyncio.get_running_loop()
        # a parked pair past its quarantine, else a fresh port, else any parked pair (the range is full)
        pair = self._pooled(loop.time()) or await self._fresh_pair(loop) or self._pooled(loop.time(), force=True)
        if pair is None:
            raise PortsExhausted(f"no free RTP port pair in {self.port_min}-{self.port_max}")
        endpoint = Endpoint(id=f"m{next(self._ids)}", tenant_id=tenant_id, call_id=call_id,
                            local_address=Address(host=self.advertised_host, port=pair.port), codecs=tuple(codecs))
        leg = _Leg(endpoint, loop, self._deadlines)
        leg.rtcp = _RtcpProtocol(leg.stats)
        leg.transport, leg.rtcp_transport = pair.rtp, pair.rtcp
        pair.rtp.set_protocol(leg)
        pair.rtcp.set_protocol(leg.rtcp)
        self._legs[endpoint.id] = leg
        self._pairs[endpoint.id] = pair
        return endpoint

    def _pooled(self, now: float, *, force: bool = False) -> SocketPair | None:
        pair, dead = self._pool.take(now, force=force)
        for gone in dead:  # an error closed a parked socket: its port is free again once both are closed
            gone.rtp.close()
            gone.rtcp.close()
            self._ports.discard(gone.port)
        return pair

    async def _fresh_pair(self, loop: asyncio.AbstractEventLoop) -> SocketPair | None:
        pairs = (self.port_max - self.port_min + 1) // 2
        for _ in range(pairs):
            port = self._next_port
            self._next_port = port + 2 if port + 3 <= self.port_max else self.port_min
            if port in self._ports:
                continue
            socks = self._bind_pair(port)
            if socks is None:
                continue
            try:
                pair = await open_pair(loop, port, *socks)
            except OSError:
                for sock in socks:
                    sock.close()
                raise
            self._ports.add(port)
            return pair
        return None

    def _bind_pair(self, port: int) -> tuple[socket.socket, socket.socket] | None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        bound: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                bound.append(sock)
                sock.bind((self.host, p))
                sock.setblocking(False)
        except OSError as exc:
            for sock in bound:
                sock.close()
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                # not this port's fault: trying the other pairs would fail the same way, and "no free port"
                # would send the operator to the wrong limit (the connection caps keep RTP's share: issue 8)
                raise PortsExhausted("out of file descriptors for RTP sockets (open-file limit)") from exc
            return None
        return bound[0], bound[1]

    def _leg(self, endpoint: Endpoint) -> _Leg:
        leg = self._legs.get(endpoint.id)
        if leg is None:
            raise MediaUsageError(f"unknown or released media endpoint {endpoint.id}")
        return leg

    async def set_remote(self, endpoint: Endpoint, host: str, port: int, *, payload_type: int, codec: Codec,
                         telephone_event_pt: int | None = None, srtp: SrtpKeys | None = None) -> None:
        leg = self._leg(endpoint)
        leg.set_srtp(srtp)
        if codec not in endpoint.codecs:
            raise MediaUsageError(f"{codec} was not offered on endpoint {endpoint.id}")
        if (host, port) != leg.sdp_addr:
            leg.sdp_addr = (host, port)
            leg.send_addr = (host, port)
            leg.src_addr = None
            leg.candidate = None
        leg.codec = codec
        leg.audio_pt = payload_type
        leg.event_pt = telephone_event_pt
        leg.update_route()
        if leg.peer is not None:
            leg.peer.update_route()
        if leg.mix is not None:
            leg.mix.codec_changed(leg)
        leg.arm_inactivity()

    async def set_udptl(self, endpoint: Endpoint, host: str, port: int,
                        sink: Callable[[bytes], None] | None = None) -> None:
        """Switch an endpoint's socket to T.38 (UDPTL datagrams, not RTP) towards ``host``/``port``: what
        arrives goes to ``sink`` (our fax terminal) or, without one, as it is to the bridged endpoint when
        that is in UDPTL mode too (a relayed fax). Playback stops; SRTP does not apply to UDPTL."""
        leg = self._leg(endpoint)
        leg.end_play(stopped=True)
        leg.set_srtp(None)
        leg.udptl = True
        leg.udptl_sink = sink
        leg.sdp_addr = (host, port)
        leg.send_addr = (host, port)
        leg.src_addr = None
        leg.candidate = None
        leg.arm_inactivity()

    def send_datagram(self, endpoint: Endpoint, data: bytes) -> None:
        """Send one UDPTL datagram from an endpoint in UDPTL mode (dropped otherwise)."""
        leg = self._legs.get(endpoint.id)
        if leg is not None:
            leg.send_datagram(data)

    async def bridge(self, a: Endpoint, b: Endpoint) -> None:
        leg_a, leg_b = self._leg(a), self._leg(b)
        if leg_a is leg_b:
            raise MediaUsageError("cannot bridge an endpoint with itself")
        for leg in (leg_a, leg_b):
            self._unbridge(leg)
            self._leave_mix(leg)
        leg_a.peer, leg_b.peer = leg_b, leg_a
        leg_a.update_route()
        leg_b.update_route()

    async def unbridge(self, endpoint: Endpoint) -> None:
        self._unbridge(self._leg(endpoint))

    @staticmethod
    def _unbridge(leg: _Leg) -> None:
        peer = leg.peer
        if peer is not None:
            peer.peer = None
            peer.update_route()
        leg.peer = None
        leg.update_route()

    # --- mixing bridges (media/bridge.py) -----------------------------------------------------------

    async def mix_bridge(self, bridge_id: str, endpoint: Endpoint, *, speaks: bool = True,
                         listens: bool = True) -> None:
        leg = self._leg(endpoint)
        self._unbridge(leg)
        if leg.mix is not None and leg.mix.id != bridge_id:
            self._leave_mix(leg)
        mix = self._mixes.get(bridge_id)
        if mix is None:
            mix = self._mixes[bridge_id] = MixBridge(bridge_id, leg.loop, self._ssrc)
        mix.add(leg, speaks=speaks, listens=listens)

    async def set_matrix(self, bridge_id: str, endpoint: Endpoint, *, speaks: bool | None = None,
                         listens: bool | None = None, hears: Mapping[str, bool | None] | None = None) -> None:
        leg = self._leg(endpoint)
        mix = self._mixes.get(bridge_id)
        if mix is None or leg.mix is not mix:
            raise MediaUsageError(f"endpoint {endpoint.id} is not in mixing bridge {bridge_id}")
        try:
            mix.set_matrix(leg, speaks=speaks, listens=listens, hears=hears)
        except KeyError as exc:
            raise MediaUsageError(str(exc)) from None

    async def leave_bridge(self, endpoint: Endpoint) -> None:
        self._leave_mix(self._leg(endpoint))

    def mix_stats(self, bridge_id: str) -> MixStats | None:
        """The counters of a mixing bridge, None when there is none by that id."""
        mix = self._mixes.get(bridge_id)
        return None if mix is None else mix.stats()

    def mix_totals(self) -> MixStats:
        """The counters summed over every mixing bridge since start (``members``: those in a bridge now)."""
        total = self._mixes_done
        for mix in self._mixes.values():
            total = total.plus(mix.stats())
        return total

    def _leave_mix(self, leg: _Leg) -> None:
        mix = leg.mix
        if mix is None:
            return
        mix.remove(leg)
        if not mix.members:
            self._mixes.pop(mix.id, None)
            self._mixes_done = self._mixes_done.plus(mix.stats())

    # --- play --------------------------------------------------------------------------------------

    async def play(self, endpoint: Endpoint, source: PlaySource | FrameSource, *,
                   on_finished: PlaybackCallback | None = None) -> None:
        """Besides a :data:`PlaySource`, any in-process :class:`FrameSource` plays (tests, generated audio)."""
        leg = self._leg(endpoint)
        frames: FrameSource
        if isinstance(source, Tone):
            frames = ToneGenerator(source.frequencies, cadence=source.cadence, amplitude=source.amplitude)
        elif isinstance(source, Prompt):
            frames = await asyncio.to_thread(WavSource, source.path, loop=source.loop)
        else:
            frames = source
        leg.end_play(stopped=True)
        clock = self._play_clock
        if clock is None or clock.loop is not leg.loop:
            clock = self._play_clock = _PlayClock(leg.loop, self.playback)
        leg.player = _Player(leg, frames, on_finished, self._ssrc(), clock)

    async def stop_play(self, endpoint: Endpoint) -> None:
        self._leg(endpoint).end_play(stopped=True)

    # --- record ------------------------------------------------------------------------------------

    async def record(self, endpoints: Sequence[Endpoint], path: str | os.PathLike[str], *,
                     stereo: bool, on_silence: SilenceCallback | None = None,
                     silence_seconds: float = 0.0) -> Recording:
        legs = [self._leg(endpoint) for endpoint in endpoints]
        if stereo and len(legs) != 2:
            raise MediaUsageError("a stereo recording takes exactly two endpoints")
        if not legs:
            raise MediaUsageError("nothing to record")
        writer = await asyncio.to_thread(WavWriter, path, channels=2 if stereo else 1)
        loop = asyncio.get_running_loop()
        start = loop.time()
        recording = Recording(id=f"r{next(self._ids)}", path=Path(path),
                              endpoint_ids=tuple(e.id for e in endpoints), stereo=stereo)
        frames: FrameWriter = writer
        if on_silence is not None and silence_seconds > 0 and not stereo:
            frames = _SilenceTap(writer, SilenceDetector(silence_seconds), on_silence, loop, endpoints[0])
        state = _RecordingState(recording, SlotRecorder(frames, len(legs), stereo=stereo, start=start), writer,
                                legs, deadline=start)
        for index, leg in enumerate(legs):
            leg.recorders.append((state.recorder, index))
        self._recordings[recording.id] = state
        self._flush_recording(state)
        return recording

    async def tap(self, endpoint: Endpoint, sink: FrameWriter) -> Recording:
        """Hand what the endpoint receives to ``sink`` as it arrives, in order (:class:`ArrivalTap`: silence
        only when nothing arrives for a while); :meth:`stop_record` ends it. In-process only: the fax terminal
        (:mod:`zvonok.telephony.fax_app`) listens this way."""
        leg = self._leg(endpoint)
        loop = asyncio.get_running_loop()
        start = loop.time()
        recording = Recording(id=f"r{next(self._ids)}", path=Path(os.devnull), endpoint_ids=(endpoint.id,),
                              stereo=False)
        writer = _TapWriter(sink)
        state = _RecordingState(recording, ArrivalTap(writer, start=start), writer, [leg], deadline=start,
                                interval=TAP_FLUSH_INTERVAL)
        leg.recorders.append((state.recorder, 0))
        self._recordings[recording.id] = state
        self._flush_recording(state)
        return recording

    def _flush_recording(self, state: _RecordingState) -> None:
        loop = asyncio.get_running_loop()
        state.recorder.flush(loop.time())
        state.deadline += state.interval
        state.handle = loop.call_at(state.deadline, self._flush_recording, state)

    async def stop_record(self, recording: Recording) -> RecordingInfo:
        state = self._recordings.pop(recording.id, None)
        if state is None:
            raise MediaUsageError(f"unknown or stopped recording {recording.id}")
        if state.handle is not None:
            state.handle.cancel()
        for leg in state.legs:
            leg.recorders = [r for r in leg.recorders if r[0] is not state.recorder]
        state.recorder.finish()
        await asyncio.to_thread(state.writer.close)
        return RecordingInfo(path=recording.path, seconds=state.writer.seconds, channels=state.writer.channels)

    # --- callbacks, stats, release -----------------------------------------------------------------

    async def on_dtmf(self, endpoint: Endpoint, callback: DtmfCallback | None) -> None:
        self._leg(endpoint).on_dtmf = callback

    async def gate_dtmf(self, endpoint: Endpoint, codes: Sequence[str], timeout: float) -> None:
        leg = self._leg(endpoint)
        leg.gate = DtmfGate(codes, timeout) if codes else None
        leg.gate_changed()

    async def detect_inband(self, endpoint: Endpoint, on: bool) -> None:
        leg = self._legs.get(endpoint.id)
        if leg is not None:
            leg.inband = InbandDtmfDetector() if on else None

    async def inject_dtmf(self, endpoint: Endpoint, digit: str, duration_ms: int) -> None:
        leg = self._legs.get(endpoint.id)
        if leg is None or leg.on_dtmf is None:
            return  # released meanwhile, or nobody listens for keys on it
        leg.loop.call_soon(leg.on_dtmf, DtmfReceived(tenant_id=endpoint.tenant_id, call_id=endpoint.call_id,
                                                     endpoint_id=endpoint.id, digit=digit, duration_ms=duration_ms))

    async def on_inactivity(self, endpoint: Endpoint, timeout: float, callback: InactivityCallback | None) -> None:
        leg = self._leg(endpoint)
        leg.inactivity = (timeout, callback) if callback is not None else None
        leg.arm_inactivity()

    def _inactivity_due(self, endpoint_id: str, when: float) -> None:
        leg = self._legs.get(endpoint_id)
        if leg is not None:  # else released since: a stale entry
            leg.check_inactivity(when)

    async def stats(self, endpoint: Endpoint) -> MediaStats:
        leg = self._leg(endpoint)
        return leg.stats.snapshot(leg.remote())

    async def release(self, endpoint: Endpoint) -> None:
        leg = self._legs.pop(endpoint.id, None)
        if leg is None:
            return
        self._unbridge(leg)
        self._leave_mix(leg)
        leg.end_play(stopped=True)
        leg.gate = None
        leg.gate_changed()
        leg.inactivity = None
        leg.arm_inactivity()
        leg.recorders = []  # a recording that includes this leg goes on with silence for it
        pending = leg.dtmf.flush()
        if pending is not None and leg.on_dtmf is not None:
            leg.loop.call_soon(leg.on_dtmf, DtmfReceived(
                tenant_id=endpoint.tenant_id, call_id=endpoint.call_id, endpoint_id=endpoint.id,
                digit=pending.digit, duration_ms=pending.duration_ms))
        leg.on_dtmf = None  # the call engine's callback holds its call: not kept while the sockets close
        pair = self._pairs.pop(endpoint.id, None)
        if pair is not None:  # parked for the next call (SRTP's wrappers go with the leg), or closed
            await self._close_pair(self._pool.put(pair, leg.loop.time()))

    async def _close_pair(self, pair: SocketPair | None) -> None:
        if pair is not None:
            await pair.close()
            self._ports.discard(pair.port)

    async def close(self) -> None:
        """Stop all recordings (files completed) and release every endpoint (server shutdown)."""
        for state in list(self._recordings.values()):
            await self.stop_record(state.recording)
        for leg in list(self._legs.values()):
            await self.release(leg.endpoint)
        for pair in self._pool.drain():
            await self._close_pair(pair)
        self._deadlines.clear()
