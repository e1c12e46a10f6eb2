"""Forwarding/DND on /me and music on hold on /settings in Chromium against a real server.

An employee forwards all their calls to 102 and turns DND on, and sees it saved on /me; the company's
admin uploads a track of their own on /settings and the page's <audio> preview loads it.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import Console
from .test_web_crawl import Users, _json_request, _log_in, logins  # noqa: F401 - the fixture that gives the employee a login

pytestmark = pytest.mark.integration


def _english(page: Any) -> None:
    page.click("button[name=lang][value=en]")  # the demo company speaks Russian
    page.wait_for_selector("html[lang=en]")


def test_employee_forwards_all_calls_and_turns_dnd_on(
        page: Any, console: Console, logins: Users, artifacts: Path) -> None:  # noqa: F811
    _log_in(page, console, *logins["employee"])
    page.goto(console.url + "/me")
    _english(page)
    card = page.locator("#phone-101")
    box = card.locator("details.forwarding")
    assert "No forwarding" in box.locator("summary").inner_text()
    box.locator("summary").click()
    box.locator("input[name=unconditional]").fill("102")
    box.locator("input[name=dnd]").check()
    page.screenshot(path=str(artifacts / "forwarding-me-form.png"), full_page=True)
    box.locator("button[type=submit]").click()
    page.wait_for_selector("[id^=forwarding-saved-]")
    summary = page.locator("#phone-101 details.forwarding summary").inner_text()
    assert "DND on" in summary and "All calls → 102" in summary
    assert page.locator("#phone-101 input[name=unconditional]").input_value() == "102"
    assert page.locator("#phone-101 input[name=dnd]").is_checked()
    page.screenshot(path=str(artifacts / "forwarding-me-saved.png"), full_page=True)

    # changed elsewhere (the API here; a feature code on the phone alike): the state follows live
    page.wait_for_selector("#live[data-live-state=open]")
    base = f"{console.url}/api/v1/tenants/{console.tenant_id}"
    ext = _json_request(f"{base}/extensions?q=101", token=logins.api_token)["items"][0]
    _json_request(f"{base}/extensions/{ext['id']}/forwarding", "PUT", logins.api_token,
                  {"dnd": False, "unconditional": "102"})
    page.wait_for_function(
        "!document.querySelector('#phone-101 details.forwarding summary').textContent.includes('DND on')")
    assert "All calls → 102" in page.locator("#phone-101 details.forwarding summary").inner_text()

    # a target that is no number: marked next to the field, nothing saved
    box = page.locator("#phone-101 details.forwarding")
    box.locator("input[name=busy]").fill("nobody")
    box.locator("button[type=submit]").click()
    page.wait_for_selector("#fwd-busy-error")
    page.screenshot(path=str(artifacts / "forwarding-error.png"), full_page=True)
    page.goto(console.url + "/me")
    assert "Busy →" not in page.locator("#phone-101 details.forwarding summary").inner_text()


def test_admin_uploads_music_on_hold_and_previews_it(
        page: Any, console: Console, tmp_path: Path, artifacts: Path) -> None:
    track = tmp_path / "jingle.wav"
    t = np.arange(3 * 22050) / 22050
    with wave.open(str(track), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(22050)
        writer.writeframes((np.sin(2 * np.pi * 330 * t) * 6000).astype("<i2").tobytes())
    not_audio = tmp_path / "notes.mp3"
    not_audio.write_text("meeting notes, not music\n" * 20)

    _log_in(page, console, console.admin_login, console.admin_password)
    page.goto(console.url + "/settings")
    _english(page)
    section = page.locator("#hold-music")
    assert "built-in" in section.locator("#hold-music-state").inner_text()
    page.set_input_files("#hold-music-file", str(not_audio))
    page.click("#hold-music-form button[type=submit]")
    page.wait_for_selector("#hold-music-error")
    assert "Not an audio file" in page.locator("#hold-music-error").inner_text()

    page.set_input_files("#hold-music-file", str(track))
    page.click("#hold-music-form button[type=submit]")
    page.wait_for_selector("#hold-music-done")
    assert "own track (3.0 s)" in page.locator("#hold-music-state").inner_text()
    page.wait_for_function("document.querySelector('#hold-music-preview').readyState >= 1")
    duration = page.evaluate("document.querySelector('#hold-music-preview').duration")
    assert abs(duration - 3.0) < 0.1
    page.locator("#hold-music").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "settings-hold-music.png"), full_page=True)

    page.click("#hold-music-remove button")
    page.wait_for_selector("#hold-music-done")
    assert "built-in" in page.locator("#hold-music-state").inner_text()
