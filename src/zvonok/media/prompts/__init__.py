"""Built-in voice prompts: short 8 kHz mono 16-bit PCM WAV files, one directory per language.

The files are product assets kept in the tree; ``tools/make_prompts.py`` regenerates them offline with
espeak-ng (the texts live there).  The call engine asks for a prompt by name and the tenant's locale:
:func:`prompt_language` maps a locale such as ``ru-RU`` to a prompt language and :func:`prompt_path`
gives the file, falling back to English for a language we have no recordings in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "PROMPTS", "PROMPTS_DIR", "PromptName", "prompt_language", "prompt_path"]

PromptName = Literal[
    "enter_pin",
    "enter_number",
    "wrong_pin",
    "blocked",
    "not_allowed",
    "limit_reached",
    "number_unavailable",
    "goodbye",
    "service_suspended",
    "connecting",
    "vm_unavailable",
    "vm_busy",
    "vm_enter_mailbox",
    "vm_no_messages",
    "vm_message",
    "vm_menu",
    "vm_deleted",
    "vm_saved",
    "vm_no_more",
    "vm_greeting_menu",
    "vm_record_greeting",
    "queue_position_1",
    "queue_position_2",
    "queue_position_3",
    "queue_position_4",
    "queue_position_5",
    "queue_position_6",
    "queue_position_7",
    "queue_position_8",
    "queue_position_9",
    "queue_position_many",
    "queue_wait_1",
    "queue_wait_2",
    "queue_wait_3",
    "queue_wait_5",
    "queue_wait_10",
    "queue_wait_more",
    "queue_callback",
]
PROMPTS: tuple[PromptName, ...] = get_args(PromptName)
LANGUAGES: tuple[str, ...] = ("en", "ru")
DEFAULT_LANGUAGE = "en"
PROMPTS_DIR = Path(__file__).resolve().parent


def prompt_language(locale: str | None) -> str:
    """The prompt language for a locale: ``ru-RU``, ``ru_RU.UTF-8`` and ``RU`` give ``ru``; others ``en``."""
    if not locale:
        return DEFAULT_LANGUAGE
    lang = locale.replace("_", "-").split("-", 1)[0].split(".", 1)[0].lower()
    return lang if lang in LANGUAGES else DEFAULT_LANGUAGE


def prompt_path(name: str, lang: str) -> Path:
    """The WAV file of prompt ``name`` in ``lang`` (a language or a locale; unknown ones fall back to English).

    An unknown prompt name is a programming error: :class:`KeyError`, rather than a path that does not exist
    and would only fail later inside the media engine.
    """
    if name not in PROMPTS:
        raise KeyError(f"unknown prompt {name!r}")
    return PROMPTS_DIR / prompt_language(lang) / f"{name}.wav"
