"""Media layer: sans-I/O RTP/RTCP, G.711, RFC 4733 events, tones, WAV, jitter buffer, stream statistics,
and the in-process asyncio media engine behind the narrow :class:`~zvonok.media.interface.MediaEngine`.

The call engine imports :mod:`zvonok.media.interface` (and the value types it re-exports) only.
"""
