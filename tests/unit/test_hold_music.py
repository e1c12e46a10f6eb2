"""Music on hold: the built-in track, uploads (decoded and converted), the API, and the call engine
playing it to the held party (the audio by FFT: tests/integration/test_calls_pjsua.py)."""

from __future__ import annotations

import io
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from callengine_harness import Harness

from zvonok.media.hold_music import DEFAULT_NOTES, RATE, HoldMusic, HoldMusicError, convert, default_track
from zvonok.media.interface import Prompt
from zvonok.media.wav import read_wav
from zvonok.sip.sdp import Direction

Api = Any


def _wav(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def _sine(frequency: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * 32767 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def _dominant(samples: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


def test_the_built_in_track_is_a_melody_of_its_notes() -> None:
    track = default_track()
    assert track.dtype == np.int16 and track.size == 12 * RATE
    assert 0.2 * 32767 < np.max(np.abs(track)) < 0.3 * 32767  # audible, far from clipping
    beats = track.reshape(16, -1)  # one note per 0.75 s beat
    heard = {min(DEFAULT_NOTES, key=lambda n: abs(n - _dominant(b))) for b in beats}
    assert all(min(abs(_dominant(b) - n) for n in DEFAULT_NOTES) < 5 for b in beats)
    assert heard == set(DEFAULT_NOTES)  # every note of the melody is played


def test_uploads_are_converted_to_8khz_mono() -> None:
    stereo = np.repeat(_sine(700, 2.0, 44100), 2)  # interleaved L R
    samples = convert(_wav(stereo, 44100, channels=2))
    assert samples.dtype == np.int16 and abs(samples.size - 2 * RATE) <= 2
    assert abs(_dominant(samples) - 700) < 5
    assert abs(_dominant(convert(_wav(_sine(300, 1.0, 16000), 16000))) - 300) < 5


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"), (b"<html>not audio</html>" * 50, "not an audio file"),
    (_wav(np.zeros(RATE, dtype=np.int16), RATE), "silent"), (_wav(_sine(500, 0.1, RATE), RATE), "shorter"),
])
def test_unusable_uploads_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(HoldMusicError, match=message):
        convert(data)


def test_a_company_track_replaces_the_built_in_one_for_that_company_only(tmp_path: Path) -> None:
    music = HoldMusic(tmp_path / "moh")
    assert music.source_for(1) == Prompt(path=tmp_path / "moh" / "default.wav", loop=True)
    samples, rate = read_wav(music.default_path)
    assert rate == RATE and np.array_equal(samples, default_track())
    assert music.store(1, _wav(_sine(700, 3.0, 22050), 22050)) == pytest.approx(3.0, abs=0.01)
    assert music.source_for(1) == Prompt(path=music.tenant_path(1), loop=True)
    assert music.source_for(2).path == music.default_path
    assert music.seconds(1) == pytest.approx(3.0, abs=0.01) and music.seconds(2) is None
    assert music.remove(1) and not music.remove(1)
    assert music.source_for(1).path == music.default_path


def test_a_held_party_hears_music_until_the_call_is_resumed(tmp_path: Path) -> None:
    with Harness() as h:
        h.engine.hold_music = HoldMusic(tmp_path)
        alice, bob = h.extension("101"), h.extension("102")
        call = h.call(alice, "102")
        fork = h.invites_to(bob)[0]
        ok = h.reply(fork, 200)
        call.ack()
        assert call.engine_call is not None and call.engine_call.caller is not None
        caller_endpoint = call.engine_call.caller.endpoint
        assert caller_endpoint is not None
        h.request_from(fork, ok, "INVITE", body=h.offer(bob[0], Direction.SENDONLY))  # bob holds
        assert h.media.playing[caller_endpoint.id] == Prompt(path=tmp_path / "default.wav", loop=True)
        (ours,) = [t for t in h.sent_requests("INVITE", to=alice) if t.request.to.tag]
        assert b"a=sendonly" in ours.request.body  # alice's phone also shows the call as held
        h.reply(ours, 200)
        h.request_from(fork, ok, "INVITE", body=h.offer(bob[0], Direction.SENDRECV))  # bob resumes
        assert caller_endpoint.id not in h.media.playing
        bob_endpoint = call.engine_call.callee.endpoint  # type: ignore[union-attr]
        assert bob_endpoint is not None and bob_endpoint.id not in h.media.playing  # the holder hears nothing


def test_without_music_the_hold_is_only_passed_on(tmp_path: Path) -> None:
    with Harness() as h:  # hold_music None: ZVONOK_MUSIC_ON_HOLD=false
        alice, bob = h.extension("101"), h.extension("102")
        call = h.call(alice, "102")
        fork = h.invites_to(bob)[0]
        ok = h.reply(fork, 200)
        call.ack()
        h.request_from(fork, ok, "INVITE", body=h.offer(bob[0], Direction.SENDONLY))
        assert h.media.playing == {}
        assert [t for t in h.sent_requests("INVITE", to=alice) if t.request.to.tag]


async def test_the_api_uploads_serves_and_removes_a_company_track(api: Api, make_tenant: Any) -> None:
    a, b = await make_tenant("moh-a.example"), await make_tenant("moh-b.example")
    base = f"/api/v1/tenants/{a.id}/music-on-hold"
    assert (await api.client.get(base, headers=a.headers)).json() == {"custom": False, "seconds": None}
    r = await api.client.put(base, headers=a.headers, content=_wav(_sine(700, 2.0, 44100), 44100))
    assert r.status_code == 200 and r.json() == {"custom": True, "seconds": 2.0}
    audio = await api.client.get(f"{base}/audio", headers=a.headers)
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(audio.content)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (RATE, 1, 2 * RATE)
    r = await api.client.put(base, headers=a.headers, content=b"GIF89a" + bytes(5000))
    assert r.status_code == 422 and "not an audio file" in r.json()["detail"]
    assert (await api.client.get(base, headers=a.headers)).json()["custom"]  # the bad upload lost nothing
    # company B neither sees nor changes A's track; its own is still the built-in one
    assert (await api.client.get(base, headers=b.headers)).status_code in (403, 404)
    assert (await api.client.delete(base, headers=b.headers)).status_code in (403, 404)
    assert (await api.client.get(f"/api/v1/tenants/{b.id}/music-on-hold", headers=b.headers)).json()["custom"] is False
    assert (await api.client.delete(base, headers=a.headers)).status_code == 204
    assert (await api.client.get(base, headers=a.headers)).json() == {"custom": False, "seconds": None}


def test_a_long_track_is_decoded_only_up_to_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from zvonok.media import hold_music

    monkeypatch.setattr(hold_music, "MAX_SECONDS", 1.0)  # streamed: hours in a small file never get decoded
    assert convert(_wav(_sine(700, 3.0, 16000), 16000)).size == RATE
