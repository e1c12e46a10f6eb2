"""Keys by the other two paths into the media engine's ``on_dtmf``: tones in the audio (in-band detection,
switched on per endpoint) and keys injected from signalling (SIP INFO)."""

from __future__ import annotations

import asyncio

import numpy as np
from test_media_engine import HOST, FakePeer, make_engine, wait_until

from zvonok.media import g711
from zvonok.media.dtmf_inband import COLS, KEYPAD, ROWS
from zvonok.media.events import DtmfReceived
from zvonok.media.g711 import Codec
from zvonok.media.rtp import build_rtp


def key_frames(digits: str) -> list[bytes]:
    """PCMA 20 ms payloads: each digit 100 ms of its two tones, then 100 ms of silence."""
    out: list[np.ndarray] = []
    t = np.arange(800) / 8000
    for digit in digits:
        r = next(i for i, row in enumerate(KEYPAD) if digit in row)
        c = KEYPAD[r].index(digit)
        out.append(6000 * (np.sin(2 * np.pi * ROWS[r] * t) + np.sin(2 * np.pi * COLS[c] * t)))
        out.append(np.zeros(800))
    samples = np.concatenate(out).astype(np.int16)
    return [g711.encode(Codec.PCMA, samples[i:i + 160]) for i in range(0, len(samples), 160)]


async def test_inband_keys_reach_on_dtmf_only_while_switched_on() -> None:
    engine = make_engine()
    endpoint = await engine.create_endpoint(3, "call-inband", [Codec.PCMA])
    peer = await FakePeer.open()
    got: list[DtmfReceived] = []
    try:
        await engine.set_remote(endpoint, HOST, peer.port, payload_type=8, codec=Codec.PCMA)
        await engine.on_dtmf(endpoint, got.append)
        seq = 100

        async def send(digits: str) -> None:
            nonlocal seq
            for payload in key_frames(digits):
                peer.send(build_rtp(payload_type=8, sequence=seq, timestamp=seq * 160, ssrc=0xAB, payload=payload),
                          endpoint)
                seq += 1
                await asyncio.sleep(0.002)

        await send("12")  # not switched on: tones are just audio
        await asyncio.sleep(0.2)
        assert got == []
        await engine.detect_inband(endpoint, True)
        await send("5#9")
        await wait_until(lambda: len(got) == 3)
        assert [e.digit for e in got] == ["5", "#", "9"] and got[0].call_id == "call-inband"
        await engine.detect_inband(endpoint, False)
        await send("7")
        await asyncio.sleep(0.2)
        assert len(got) == 3
        # a key from signalling (SIP INFO) arrives the same way
        await engine.inject_dtmf(endpoint, "*", 160)
        await wait_until(lambda: len(got) == 4)
        assert (got[3].digit, got[3].duration_ms, got[3].tenant_id) == ("*", 160, 3)
    finally:
        peer.close()
        await engine.close()
