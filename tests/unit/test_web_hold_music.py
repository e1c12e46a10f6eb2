"""Music on hold on /settings: upload through the page, the preview, refused files, isolation.

Fixtures come from test_web.py (a company per test with an admin and an employee login).
"""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from test_web import Company, Web, a, admin_a, b, csrf_of, login, web  # noqa: F401 - fixtures

from zvonok.media.hold_music import HoldMusic


def tone_wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A 440 Hz tone as a 16 kHz stereo WAV (converted to 8 kHz mono on upload)."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(np.repeat(samples, 2).tobytes())
    return out.getvalue()


@pytest.fixture
async def admin_b(web: Web, b: Company) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with web.client() as client:
        assert (await login(client, b.admin)).status_code == 303
        yield client


async def _upload(client: httpx.AsyncClient, data: bytes, name: str = "track.wav") -> httpx.Response:
    page = await client.get("/settings")
    return await client.post("/settings/music", data={"csrf_token": csrf_of(page.text)},
                             files={"track": (name, data, "audio/wav")})


async def test_admin_uploads_previews_and_removes_a_track(web: Web, a: Company, b: Company,  # noqa: F811
                                                          admin_a: httpx.AsyncClient,  # noqa: F811
                                                          admin_b: httpx.AsyncClient) -> None:
    page = await admin_a.get("/settings")
    assert page.status_code == 200 and 'id="hold-music"' in page.text
    assert "built-in music (12.0 s)" in page.text and 'id="hold-music-remove"' not in page.text
    builtin = await admin_a.get("/settings/music/audio")
    assert builtin.status_code == 200 and builtin.headers["content-type"] == "audio/wav"
    assert builtin.content[:4] == b"RIFF"

    r = await _upload(admin_a, tone_wav(2.0))
    assert r.status_code == 303, r.text
    page = await admin_a.get(r.headers["location"])
    assert "your own track (2.0 s)" in page.text and 'id="hold-music-done"' in page.text
    assert 'id="hold-music-remove"' in page.text
    own = await admin_a.get("/settings/music/audio")
    assert own.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(own.content)) as reader:  # converted: 8 kHz mono, 2 s
        assert (reader.getframerate(), reader.getnchannels(), reader.getnframes()) == (8000, 1, 16000)
    assert HoldMusic(web.settings.data_dir / "moh").seconds(a.id) == 2.0

    # the other company's admin hears (and previews) their own, built-in music, not A's track
    other = await admin_b.get("/settings/music/audio")
    assert other.status_code == 200 and other.content == builtin.content and other.content != own.content
    assert 'id="hold-music-remove"' not in (await admin_b.get("/settings")).text  # B has no track of its own

    page = await admin_a.get("/settings")
    r = await admin_a.post("/settings/music/remove", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 303
    assert HoldMusic(web.settings.data_dir / "moh").seconds(a.id) is None
    assert (await admin_a.get("/settings/music/audio")).content == builtin.content


@pytest.mark.parametrize(("data", "name", "message"), [
    (b"this is not audio at all, just some text" * 10, "notes.txt", "Not an audio file"),
    (b"", "empty.wav", "The file is empty."),
    (tone_wav(0.1), "blip.wav", "shorter than half a second"),
])
async def test_a_bad_file_is_refused_on_the_form(web: Web, a: Company, admin_a: httpx.AsyncClient,  # noqa: F811
                                                 data: bytes, name: str, message: str) -> None:
    r = await _upload(admin_a, data, name)
    assert r.status_code == 422
    assert 'id="hold-music-error"' in r.text and message in r.text
    assert HoldMusic(web.settings.data_dir / "moh").seconds(a.id) is None


async def test_music_is_for_admins_and_needs_csrf(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:  # noqa: F811
    async with web.client() as employee:
        assert (await login(employee, a.employee)).status_code == 303
        assert (await employee.get("/settings/music/audio")).status_code == 403
        page = await employee.get("/me")
        r = await employee.post("/settings/music", data={"csrf_token": csrf_of(page.text)},
                                files={"track": ("t.wav", tone_wav(), "audio/wav")})
        assert r.status_code == 403
    r = await admin_a.post("/settings/music", files={"track": ("t.wav", tone_wav(), "audio/wav")})
    assert r.status_code == 403  # no CSRF token
    assert HoldMusic(web.settings.data_dir / "moh").seconds(a.id) is None


async def test_an_upload_larger_than_a_form_body_is_allowed(web: Web, a: Company,  # noqa: F811
                                                           admin_a: httpx.AsyncClient) -> None:  # noqa: F811
    big = tone_wav(seconds=max(2.0, web.settings.http_max_body / 64000 + 1))
    assert len(big) > web.settings.http_max_body
    r = await _upload(admin_a, big)
    assert r.status_code == 303, r.text[:300]
