"""Languages of the web console: one gettext catalogue, babel formats.

The catalogue is ``locale/<lang>/LC_MESSAGES/messages.po`` (committed; English is the source language,
so ``en`` needs none). It is compiled in memory the first time a language is used, so a plain clone
with ``pip install -e`` works without a build step; ``tools/web_i18n.sh`` extracts new strings and
updates the ``.po`` files.

The language of a request: the user's choice (the ``zv_lang`` cookie), else the tenant's locale, else
the browser's ``Accept-Language``, else English.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency
from babel.support import NullTranslations, Translations

LOCALES = ("en", "ru")
DEFAULT_LOCALE = "en"
LOCALE_DIR = Path(__file__).parent / "locale"
# Each language named in itself, for the switch (never translated).
LANGUAGE_NAMES = {"en": "English", "ru": "Русский"}


def N_(message: str) -> str:  # noqa: N802 - the gettext convention babel extracts
    """Mark a string for the catalogue where it is defined; it is translated where it is shown."""
    return message


@lru_cache(maxsize=len(LOCALES))
def translations(locale: str) -> NullTranslations:
    if locale == DEFAULT_LOCALE or locale not in LOCALES:
        return NullTranslations()
    with (LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f, locale=locale)
    buf = BytesIO()
    write_mo(buf, catalog)  # fuzzy entries are left out, as msgfmt does
    buf.seek(0)
    return Translations(buf)


def supported(tag: str | None) -> str | None:
    """``ru-RU``, ``ru_RU``, ``ru`` -> ``ru``; None for a language the console does not speak."""
    if not tag:
        return None
    try:
        language = Locale.parse(tag.strip().replace("-", "_")).language
    except (ValueError, UnknownLocaleError):
        return None
    return language if language in LOCALES else None


def from_accept_language(header: str | None) -> str | None:
    """The first supported language of an ``Accept-Language`` header, by q (ties: as listed)."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        language = supported(tag) if tag.strip() != "*" else None
        if language and q > 0:
            ranked.append((-q, index, language))
    return min(ranked)[2] if ranked else None


def choose_locale(chosen: str | None, tenant_locale: str | None, accept_language: str | None) -> str:
    return supported(chosen) or supported(tenant_locale) or from_accept_language(accept_language) or DEFAULT_LOCALE


def format_moment(value: datetime, locale: str, timezone: str | None) -> str:
    """A moment in the tenant's zone (naive values are UTC, as the database stores them)."""
    try:
        zone = ZoneInfo(timezone) if timezone else ZoneInfo("UTC")
    except (ValueError, KeyError):
        zone = ZoneInfo("UTC")
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo("UTC"))
    return format_datetime(value, "medium", tzinfo=zone, locale=locale)


def format_money(amount: Decimal | float | int, currency: str, locale: str) -> str:
    return format_currency(amount, currency, locale=locale)
