# ruff: noqa: F811 - the logins fixture is imported from the crawl test
"""The mailbox settings page in Chromium against a real server.

An employee opens their mailbox from /me, switches voicemail e-mails to MP3, uploads a greeting (an MP3
made here; a text file is refused with a message first), hears it in the page's player, and changes the
mailbox PIN; the API then shows the mailbox as the page left it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zvonok.media.hold_music import write_wav
from zvonok.media.mp3 import wav_to_mp3

from .conftest import Console
from .test_web_crawl import Users, _json_request, _log_in, logins  # noqa: F401 - the employee's login

pytestmark = pytest.mark.integration


def test_employee_switches_to_mp3_uploads_a_greeting_and_changes_the_pin(
    page: Any, console: Console, logins: Users, tmp_path: Path, artifacts: Path
) -> None:  # noqa: F811
    base = f"{console.url}/api/v1/tenants/{console.tenant_id}"
    ext = _json_request(f"{base}/extensions?q=101", token=logins.api_token)["items"][0]
    mailbox_api = f"{base}/extensions/{ext['id']}/voicemail"
    _json_request(mailbox_api, "PUT", logins.api_token, {"pin": "4711"})  # the admin set it up
    wav = tmp_path / "greeting.wav"
    t = np.arange(int(2.5 * 8000)) / 8000
    write_wav(wav, (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16))
    greeting = tmp_path / "greeting.mp3"
    greeting.write_bytes(wav_to_mp3(wav))
    not_audio = tmp_path / "notes.mp3"
    not_audio.write_text("not a greeting, only words\n" * 30)

    _log_in(page, console, *logins["employee"])
    page.goto(console.url + "/me")
    page.click("button[name=lang][value=en]")  # the demo company speaks Russian
    page.wait_for_selector("html[lang=en]")
    page.click(f"#mailbox-settings-{ext['id']}")
    page.wait_for_selector("#mailbox-form")
    assert "Voicemail of extension 101" in page.locator("h1").inner_text()
    assert page.locator("#mb-email").input_value() == logins["employee"][0]  # their e-mail offered
    page.screenshot(path=str(artifacts / "mailbox-page.png"), full_page=True)

    page.check("#mb-email_on")
    page.check("#mb-mp3")
    page.click("#mailbox-form button[type=submit]")
    page.wait_for_selector("#mailbox-done")
    assert "saved" in page.locator("#mailbox-done").inner_text()
    assert page.locator("#mb-mp3").is_checked()

    # a file that is no sound: refused next to its form, nothing kept
    page.set_input_files("#greeting-busy-form input[type=file]", str(not_audio))
    page.click("#greeting-busy-form button[type=submit]")
    page.wait_for_selector("#greeting-busy-error")
    assert "Not an audio file" in page.locator("#greeting-busy-error").inner_text()
    page.locator("#greeting-busy").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "mailbox-greeting-refused.png"), full_page=True)

    page.set_input_files("#greeting-busy-form input[type=file]", str(greeting))
    page.click("#greeting-busy-form button[type=submit]")
    page.wait_for_selector("#mailbox-done")
    assert "uploaded" in page.locator("#mailbox-done").inner_text()
    player = "#greeting-busy audio"
    page.eval_on_selector(player, "a => { a.preload = 'auto'; a.load(); }")  # the page loads none by itself
    page.wait_for_function(f"document.querySelector('{player}').readyState >= 1")
    duration = page.evaluate(f"document.querySelector('{player}').duration")
    assert abs(duration - 2.5) < 0.2, duration  # the MP3, converted to the WAV the caller hears
    assert page.locator("#greeting-unavailable audio").count() == 0

    page.fill("#mb-pin", "2580")
    page.fill("#mb-pin-confirm", "2580")
    page.click("#mailbox-pin-form button[type=submit]")
    page.wait_for_selector("#mailbox-done")
    assert "PIN is changed" in page.locator("#mailbox-done").inner_text()
    assert "2580" not in page.content()
    page.screenshot(path=str(artifacts / "mailbox-saved.png"), full_page=True)

    box = _json_request(mailbox_api, token=logins.api_token)
    assert (
        box["attach_format"],
        box["email"],
        box["greeting_busy"],
        box["greeting_unavailable"],
        box["has_pin"],
    ) == ("mp3", logins["employee"][0], True, False, True)

    # back to the standard greeting: the player goes
    page.click("#greeting-busy button.secondary")
    page.wait_for_selector("#mailbox-done")
    assert "removed" in page.locator("#mailbox-done").inner_text()
    assert page.locator("#greeting-busy audio").count() == 0
    assert _json_request(mailbox_api, token=logins.api_token)["greeting_busy"] is False
