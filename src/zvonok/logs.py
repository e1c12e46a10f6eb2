"""Structured logging (structlog): one plain line per event by default, JSON lines with ``--log-json``.

The default renderer is :class:`LineRenderer` (``2026-12-03T19:58:13.098Z info  call started call=… tenant=7``):
structlog's ``ConsoleRenderer`` (padding, sorted keys, an ISO ``TimeStamper``) cost ≈ 35 µs a line, three
lines per call, which showed in the call set-up profile (issue 9); this one costs a few µs. The console
renderer is kept for an interactive terminal, where a person reads it.

Call ids and tenants are bound with ``log.bind(call_id=…, tenant=…)`` where a request is handled; secrets
(passwords, HA1, tokens, Authorization headers) are never passed to a logger.
"""

from __future__ import annotations

import json as _json
import logging
import sys
import time
from typing import Any

import structlog


def _value(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    if not text or any(c in text for c in ' ="\n'):
        return _json.dumps(text, ensure_ascii=False)
    return text


class LineRenderer:
    """``time level event key=value …`` (values quoted when they hold spaces, ``=`` or quotes); the UTC time
    to the millisecond, its second part formatted once per second; a traceback follows on its own lines."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: Any, name: str, event_dict: structlog.typing.EventDict) -> str:
        now = self._clock()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event = event_dict.pop("event", "")
        level = event_dict.pop("level", name)
        exception = event_dict.pop("exception", None)
        line = f"{self._prefix}.{int((now - second) * 1000):03d}Z {level:<7} {event}"
        if event_dict:
            line += " " + " ".join(f"{key}={_value(value)}" for key, value in event_dict.items())
        return f"{line}\n{exception}" if exception else line


def configure(level: str = "info", json: bool = False) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    if json:
        processors.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
        renderer: structlog.typing.Processor = structlog.processors.JSONRenderer()
    elif sys.stderr.isatty():
        processors.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        processors.append(structlog.processors.format_exc_info)
        renderer = LineRenderer()
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("uvicorn.access", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
