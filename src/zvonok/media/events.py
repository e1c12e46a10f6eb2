"""Events the media layer reports to the call engine: frozen, keyword-only, carrying tenant and call."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfReceived:
    """One key press (RFC 4733 telephone-event), reported once per press."""

    tenant_id: int
    call_id: str
    endpoint_id: str
    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaTimeout:
    """No RTP arrived on the endpoint for ``silent_for`` seconds (the call engine's RTP timeout)."""

    tenant_id: int
    call_id: str
    endpoint_id: str
    silent_for: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackFinished:
    """A :meth:`MediaEngine.play` source ran out (``stopped`` is True when :meth:`stop_play` ended it)."""

    tenant_id: int
    call_id: str
    endpoint_id: str
    stopped: bool


MediaEvent = DtmfReceived | MediaTimeout | PlaybackFinished
