"""IVR greetings as files: uploads converted to 8 kHz on upload, text spoken by espeak-ng and cached.

Layout under ``<data dir>/ivr/``: ``tenant-<t>/menu-<id>.wav`` (an uploaded greeting, converted with the
music-on-hold decoder, :func:`zvonok.media.hold_music.convert`: WAV, MP3, FLAC, Ogg; a file that does not
decode is a :class:`PromptError`, the API's 422) and ``tts/<hash>.wav`` (text spoken once, at
configuration time, and kept per (text, voice): two menus with the same words share the file, and a
call never waits for a speech synthesizer). espeak-ng is a Debian package installed by ``make peers``;
its output (22 kHz) goes through the same converter. Blocking work: call from a thread.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from zvonok.media.hold_music import HoldMusicError, convert, write_wav

__all__ = ["MAX_GREETING_SECONDS", "VOICES", "IvrPrompts", "PromptError"]

VOICES = {"ru": "ru", "en": "en-us"}  # our voice name -> espeak-ng's
MAX_GREETING_SECONDS = 120.0
MAX_TEXT = 1000
ESPEAK_TIMEOUT = 30.0


class PromptError(ValueError):
    """A greeting that cannot be used (not audio, silent, too long; espeak-ng missing or failing)."""


class IvrPrompts:
    def __init__(self, directory: Path, *, espeak: str = "espeak-ng") -> None:
        self.directory = directory
        self.espeak = espeak

    def upload_path(self, tenant_id: int, menu_id: int) -> Path:
        return self.directory / f"tenant-{tenant_id}" / f"menu-{menu_id}.wav"

    def speech_path(self, text: str, voice: str) -> Path:
        digest = hashlib.sha256(f"{voice}\0{text}".encode()).hexdigest()[:32]
        return self.directory / "tts" / f"{digest}.wav"

    def store_upload(self, tenant_id: int, menu_id: int, data: bytes) -> float:
        """Convert and keep an uploaded greeting; its length in seconds."""
        try:
            samples = convert(data)
        except HoldMusicError as exc:
            raise PromptError(str(exc)) from None
        if samples.size > MAX_GREETING_SECONDS * 8000:
            raise PromptError(f"a greeting is at most {MAX_GREETING_SECONDS:.0f} seconds")
        write_wav(self.upload_path(tenant_id, menu_id), samples)
        return samples.size / 8000

    def remove_upload(self, tenant_id: int, menu_id: int) -> None:
        self.upload_path(tenant_id, menu_id).unlink(missing_ok=True)

    def speak(self, text: str, voice: str) -> Path:
        """The greeting ``text`` spoken in ``voice`` (from the cache, or synthesized now)."""
        text = text.strip()
        if not text or len(text) > MAX_TEXT:
            raise PromptError(f"the greeting text is 1 to {MAX_TEXT} characters")
        if voice not in VOICES:
            raise PromptError(f"voice: one of {', '.join(sorted(VOICES))}")
        path = self.speech_path(text, voice)
        if path.exists():
            return path
        program = shutil.which(self.espeak)
        if program is None:
            raise PromptError("espeak-ng is not installed on the server (make peers)")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "speech.wav"
            try:
                # the text on stdin (-b 1: UTF-8), never on the command line: it cannot become an option
                subprocess.run([program, "-v", VOICES[voice], "-b", "1", "-w", str(out)], input=text.encode(),
                               check=True, capture_output=True, timeout=ESPEAK_TIMEOUT)
                samples = convert(out.read_bytes())
            except (subprocess.SubprocessError, OSError, HoldMusicError) as exc:
                raise PromptError(f"espeak-ng could not speak the text: {exc}") from None
        write_wav(path, samples)
        return path

    def greeting(self, tenant_id: int, menu_id: int, text: str | None, voice: str, has_upload: bool) -> Path | None:
        """What a caller of the menu hears: the upload, else the spoken text (if cached), else nothing."""
        if has_upload:
            path = self.upload_path(tenant_id, menu_id)
            if path.exists():
                return path
        if text:
            path = self.speech_path(text.strip(), voice)
            if path.exists():
                return path
        return None
