#!/usr/bin/env python3
"""Regenerate the built-in voice prompts with espeak-ng and SoX (both from Debian: ``apt-get install
espeak-ng sox``).

How it works
------------
For every prompt of :data:`zvonok.media.prompts.PROMPTS` and every language of ``LANGUAGES``, espeak-ng
speaks the text of :data:`TEXTS` into a temporary WAV (22.05 kHz); SoX then makes the product file
``src/zvonok/media/prompts/<lang>/<name>.wav``:

* 6 dB of headroom, then a 120 Hz high-pass (espeak's voicing has energy below the telephone band that
  only wastes headroom);
* leading and trailing silence trimmed (the ``silence … reverse silence … reverse`` idiom), so that a
  prompt starts speaking the moment it is played and the next one follows without a gap;
* resampled to 8 kHz mono with SoX's very-high-quality resampler (it low-passes below 4 kHz itself);
* peak-normalized to -3 dBFS: loud enough on a handset, with headroom for the G.711 companding;
* 10 ms fade-in and 20 ms fade-out, so the cut made by the trim does not click;
* written as 16-bit PCM without dither (``-D``), so reruns with the same espeak-ng give identical files.

16-bit PCM rather than µ-law WAV because it is what :mod:`zvonok.media.wav` reads; the whole set is a few
hundred kilobytes.  Run from the repository root: ``python tools/make_prompts.py [--lang ru] [--only NAME]``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from zvonok.media.prompts import LANGUAGES, PROMPTS, PROMPTS_DIR  # noqa: E402  (needs the path above)

log = logging.getLogger("make_prompts")

# Lower-case "pin": upper-case PIN is spelled out letter by letter by both voices.
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "enter_pin": "Enter your pin code, followed by the hash key.",
        "enter_number": "Enter the number you are calling, followed by the hash key.",
        "wrong_pin": "Wrong pin code.",
        "blocked": "Too many attempts. Goodbye.",
        "not_allowed": "This call is not allowed.",
        "limit_reached": "Your spending limit has been reached.",
        "number_unavailable": "The number you are calling is not available.",
        "goodbye": "Goodbye.",
        "service_suspended": "This number is temporarily not in service.",
        "connecting": "Connecting.",
        "vm_unavailable": "The person you are calling is not available. Please leave a message after the tone.",
        "vm_busy": "The person you are calling is busy. Please leave a message after the tone.",
        "vm_enter_mailbox": "Enter the mailbox number, followed by the hash key.",
        "vm_no_messages": "You have no messages.",
        "vm_message": "Message.",
        "vm_menu": "5 repeat, 6 next, 7 delete, 9 save.",
        "vm_deleted": "Message deleted.",
        "vm_saved": "Message saved.",
        "vm_no_more": "No more messages.",
        "vm_greeting_menu": "1: unavailable greeting. 2: busy greeting.",
        "vm_record_greeting": "Speak after the tone, then press hash.",
        "queue_position_1": "You are first in the queue.",
        "queue_position_2": "You are second in the queue.",
        "queue_position_3": "You are third in the queue.",
        "queue_position_4": "You are fourth in the queue.",
        "queue_position_5": "You are fifth in the queue.",
        "queue_position_6": "You are sixth in the queue.",
        "queue_position_7": "You are seventh in the queue.",
        "queue_position_8": "You are eighth in the queue.",
        "queue_position_9": "You are ninth in the queue.",
        "queue_position_many": "More than nine callers are ahead of you. Please stay on the line.",
        "queue_wait_1": "Your estimated wait is about one minute.",
        "queue_wait_2": "Your estimated wait is about two minutes.",
        "queue_wait_3": "Your estimated wait is about three minutes.",
        "queue_wait_5": "Your estimated wait is about five minutes.",
        "queue_wait_10": "Your estimated wait is about ten minutes.",
        "queue_wait_more": "Your estimated wait is more than ten minutes.",
        "queue_callback": "Thank you, we will call you back. Goodbye.",
    },
    "ru": {
        "enter_pin": "Введите пин-код и нажмите решётку.",
        "enter_number": "Введите номер абонента и нажмите решётку.",
        "wrong_pin": "Неверный пин-код.",
        "blocked": "Слишком много попыток. До свидания.",
        "not_allowed": "Этот звонок запрещён.",
        "limit_reached": "Ваш лимит расходов исчерпан.",
        "number_unavailable": "Набранный номер недоступен.",
        "goodbye": "До свидания.",
        "service_suspended": "Этот номер временно не обслуживается.",
        "connecting": "Соединяю.",
        "vm_unavailable": "Абонент сейчас недоступен. Оставьте сообщение после сигнала.",
        "vm_busy": "Абонент сейчас занят. Оставьте сообщение после сигнала.",
        "vm_enter_mailbox": "Введите номер голосового ящика и нажмите решётку.",
        "vm_no_messages": "У вас нет сообщений.",
        "vm_message": "Сообщение.",
        "vm_menu": "Семь: удалить. Девять: сохранить. Шесть: дальше. Пять: повтор.",
        "vm_deleted": "Сообщение удалено.",
        "vm_saved": "Сообщение сохранено.",
        "vm_no_more": "Больше сообщений нет.",
        "vm_greeting_menu": "Один: приветствие недоступен. Два: приветствие занят.",
        "vm_record_greeting": "Говорите после сигнала, затем нажмите решётку.",
        "queue_position_1": "Вы первый в очереди.",
        "queue_position_2": "Вы второй в очереди.",
        "queue_position_3": "Вы третий в очереди.",
        "queue_position_4": "Вы четвёртый в очереди.",
        "queue_position_5": "Вы пятый в очереди.",
        "queue_position_6": "Вы шестой в очереди.",
        "queue_position_7": "Вы седьмой в очереди.",
        "queue_position_8": "Вы восьмой в очереди.",
        "queue_position_9": "Вы девятый в очереди.",
        "queue_position_many": "Перед вами больше девяти звонков. Пожалуйста, оставайтесь на линии.",
        "queue_wait_1": "Примерное время ожидания: одна минута.",
        "queue_wait_2": "Примерное время ожидания: две минуты.",
        "queue_wait_3": "Примерное время ожидания: три минуты.",
        "queue_wait_5": "Примерное время ожидания: пять минут.",
        "queue_wait_10": "Примерное время ожидания: десять минут.",
        "queue_wait_more": "Примерное время ожидания: больше десяти минут.",
        "queue_callback": "Спасибо, мы вам перезвоним. До свидания.",
    },
}

VOICES = {"en": "en-us", "ru": "ru"}
WORDS_PER_MINUTE = 150  # a little slower than espeak's 175: G.711 over a mobile leg blurs fast speech
RATE = 8000

# SoX effects after the input file; see the module docstring for why each is there.
SOX_EFFECTS = [
    "gain", "-6",  # headroom first: espeak-ng speaks near full scale and the filters overshoot it
    "highpass", "120",
    # Trim the start, reverse, trim (the end), fade in (the end: a fade-out), reverse back, fade in.  The
    # fade-out is done reversed because espeak-ng's WAV header leaves the length unknown to SoX's ``fade``.
    "silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "fade", "t", "0.02", "reverse",
    "fade", "t", "0.01",
    "rate", "-v", str(RATE),
    "norm", "-3",
]


def check_texts() -> None:
    for lang in LANGUAGES:
        names = set(TEXTS.get(lang, {}))
        if names != set(PROMPTS):
            raise SystemExit(f"TEXTS[{lang!r}] does not match PROMPTS: missing {sorted(set(PROMPTS) - names)}, "
                             f"extra {sorted(names - set(PROMPTS))}")


def make_prompt(espeak: str, sox: str, lang: str, name: str, out_dir: Path, work: Path) -> Path:
    raw = work / f"{lang}-{name}.wav"
    subprocess.run(
        [espeak, "-v", VOICES[lang], "-s", str(WORDS_PER_MINUTE), "-w", str(raw), TEXTS[lang][name]],
        check=True,
    )
    target = out_dir / lang / f"{name}.wav"
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sox, "-D", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(target),
         *SOX_EFFECTS],
        check=True,
    )
    with wave.open(str(target), "rb") as reader:  # fail here, not in a call, if SoX did something else
        if (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) != (RATE, 1, 2):
            raise SystemExit(f"{target}: not 8 kHz mono 16-bit")
        log.info("%s/%s.wav  %.2f s", lang, name, reader.getnframes() / RATE)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lang", action="append", choices=LANGUAGES, help="only this language (repeatable)")
    parser.add_argument("--only", action="append", choices=PROMPTS, metavar="NAME", help="only this prompt")
    parser.add_argument("--out", type=Path, default=PROMPTS_DIR, help="output directory (default: the package)")
    parser.add_argument("--espeak", default="espeak-ng")
    parser.add_argument("--sox", default="sox")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    check_texts()
    espeak, sox = shutil.which(args.espeak), shutil.which(args.sox)
    if espeak is None or sox is None:
        raise SystemExit("espeak-ng and sox are needed: apt-get install espeak-ng sox")

    total = 0
    with tempfile.TemporaryDirectory(prefix="zvonok-prompts-") as tmp:
        for lang in args.lang or LANGUAGES:
            for name in args.only or PROMPTS:
                total += make_prompt(espeak, sox, lang, name, args.out, Path(tmp)).stat().st_size
    log.info("%d bytes written under %s", total, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
