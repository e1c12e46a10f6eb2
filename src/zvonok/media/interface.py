"""The narrow interface through which the call engine uses media: :class:`MediaEngine`.

Everything crossing it is a small frozen value (handles, addresses, tone/prompt descriptions, events), so
an out-of-process implementation (media worker processes, rtpengine over its ng protocol) can implement
the same Protocol: the in-process :class:`~zvonok.media.engine.InProcessMediaEngine` is one of them.
Every method is a coroutine for the same reason (a remote implementation has to ask someone).

Life of an endpoint: ``create_endpoint`` (local RTP/RTCP ports, put in our SDP) → ``set_remote`` (from the
peer's SDP; again on re-INVITE) → ``bridge`` (two parties relay) or ``mix_bridge`` (three or more mixed,
with ``set_matrix``) / ``play`` / ``record`` / callbacks → ``release``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .events import DtmfReceived, MediaTimeout, PlaybackFinished
from .g711 import Codec
from .srtp import SrtpKeys
from .stats import MediaStats

__all__ = [
    "BUSY_RU", "RINGBACK_RU", "Address", "Codec", "DtmfCallback", "DtmfReceived", "Endpoint", "InactivityCallback",
    "MediaEngine", "MediaStats", "MediaTimeout", "PlaySource", "PlaybackCallback", "PlaybackFinished", "Prompt",
    "Recording", "RecordingInfo", "SilenceCallback", "SrtpKeys", "Tone",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    host: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """A handle on one leg's media: what goes into our SDP is ``local_address`` (RTCP is port + 1)."""

    id: str
    tenant_id: int
    call_id: str
    local_address: Address
    codecs: tuple[Codec, ...]  # what we may offer/accept on it, in preference order


@dataclass(frozen=True, slots=True, kw_only=True)
class Tone:
    """A generated tone: the sum of ``frequencies``, on/off ``cadence`` in seconds (empty: continuous)."""

    frequencies: tuple[float, ...]
    cadence: tuple[float, ...] = ()
    amplitude: float = 0.25  # of full scale


@dataclass(frozen=True, slots=True, kw_only=True)
class Prompt:
    """A WAV file (8 kHz, 16-bit) played once, or in a loop (music on hold)."""

    path: Path
    loop: bool = False


PlaySource = Tone | Prompt

RINGBACK_RU = Tone(frequencies=(425.0,), cadence=(1.0, 4.0))
BUSY_RU = Tone(frequencies=(425.0,), cadence=(0.35, 0.35))


@dataclass(frozen=True, slots=True, kw_only=True)
class Recording:
    id: str
    path: Path
    endpoint_ids: tuple[str, ...]
    stereo: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingInfo:
    """A finished recording, complete on disk."""

    path: Path
    seconds: float
    channels: int


DtmfCallback = Callable[[DtmfReceived], None]
InactivityCallback = Callable[[MediaTimeout], None]
PlaybackCallback = Callable[[PlaybackFinished], None]
SilenceCallback = Callable[[MediaTimeout], None]  # a recording's caller went quiet (silent_for seconds)


class MediaEngine(Protocol):
    async def create_endpoint(self, tenant_id: int, call_id: str, codecs: Sequence[Codec]) -> Endpoint:
        """Allocate an even RTP port (RTCP on the next odd one) from the engine's range.

        Raises :class:`~zvonok.media.errors.PortsExhausted` when the range is full.
        """
        ...

    async def set_remote(
        self, endpoint: Endpoint, host: str, port: int, *, payload_type: int, codec: Codec,
        telephone_event_pt: int | None = None, srtp: SrtpKeys | None = None,
    ) -> None:
        """The peer's SDP address and chosen codec (again on a re-INVITE; a new address resets latching).

        ``srtp``: the leg's SDES keys — what goes to the peer is protected, what comes from it unprotected
        (None: plain RTP). New keys start new SRTP sessions; the same keys keep the running ones.
        """
        ...

    async def bridge(self, a: Endpoint, b: Endpoint) -> None:
        """Relay RTP both ways (transcoding PCMU↔PCMA, mapping telephone-event PTs); ends older bridges."""
        ...

    async def unbridge(self, endpoint: Endpoint) -> None: ...

    async def mix_bridge(self, bridge_id: str, endpoint: Endpoint, *, speaks: bool = True,
                         listens: bool = True) -> None:
        """Put the endpoint into the mixing bridge ``bridge_id`` (made on first use; gone with its last
        member), leaving any relay bridge. Every member hears the sum of the others every 20 ms, never
        itself: ``speaks`` False = heard by nobody (muted), ``listens`` False = hears nobody."""
        ...

    async def set_matrix(self, bridge_id: str, endpoint: Endpoint, *, speaks: bool | None = None,
                         listens: bool | None = None, hears: Mapping[str, bool | None] | None = None) -> None:
        """Change a member's row of the hears/heard-by matrix: ``hears`` maps other members' endpoint ids
        to an override of "this endpoint hears that one" (None removes it) — listen, whisper and barge."""
        ...

    async def leave_bridge(self, endpoint: Endpoint) -> None:
        """Take the endpoint out of its mixing bridge (nothing when it is in none)."""
        ...

    async def play(self, endpoint: Endpoint, source: PlaySource, *,
                   on_finished: PlaybackCallback | None = None) -> None:
        """Send ``source`` to the endpoint's peer (replacing bridged audio towards it while it plays)."""
        ...

    async def stop_play(self, endpoint: Endpoint) -> None: ...

    async def record(self, endpoints: Sequence[Endpoint], path: str | os.PathLike[str], *,
                     stereo: bool, on_silence: SilenceCallback | None = None,
                     silence_seconds: float = 0.0) -> Recording:
        """Record what the endpoints receive from their peers: stereo (two endpoints: left = first) or mixed
        (one endpoint: that leg alone, as a voicemail message). ``on_silence``: called once per silence of
        ``silence_seconds`` in a mono recording (see :mod:`zvonok.media.silence`)."""
        ...

    async def stop_record(self, recording: Recording) -> RecordingInfo:
        """Finish the file: when this returns it is complete and fsynced."""
        ...

    async def on_dtmf(self, endpoint: Endpoint, callback: DtmfCallback | None) -> None: ...

    async def gate_dtmf(self, endpoint: Endpoint, codes: Sequence[str], timeout: float) -> None:
        """Keep the endpoint's keys (RFC 4733 events received) that may begin one of ``codes`` (in-call feature
        codes) from the bridged peer: a code's keys never reach it; withheld keys are sent on, as events of
        our own, once another key shows no code follows or after ``timeout`` seconds without one
        (:mod:`zvonok.media.dtmf_gate`). ``on_dtmf`` reports every key as before. Empty ``codes``: no gate."""
        ...

    async def detect_inband(self, endpoint: Endpoint, on: bool) -> None:
        """Listen for key tones in the audio received (Goertzel, :mod:`zvonok.media.dtmf_inband`) and report
        them to ``on_dtmf``: for peers that send neither RFC 4733 events nor SIP INFO. Costs CPU per packet."""
        ...

    async def inject_dtmf(self, endpoint: Endpoint, digit: str, duration_ms: int) -> None:
        """A key press that came by signalling (SIP INFO): reported to ``on_dtmf`` as RFC 4733 ones are."""
        ...

    async def on_inactivity(self, endpoint: Endpoint, timeout: float, callback: InactivityCallback | None) -> None:
        """Call ``callback`` once per silence of ``timeout`` seconds without RTP from the peer."""
        ...

    async def stats(self, endpoint: Endpoint) -> MediaStats: ...

    async def release(self, endpoint: Endpoint) -> None:
        """Stop everything on the endpoint and free its ports (they are free when this returns)."""
        ...
