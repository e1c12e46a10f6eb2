"""The default log line: time, level, event and the bound call/tenant as key=value, quoted when needed."""

from __future__ import annotations

import structlog

from zvonok.logs import LineRenderer


def test_a_line_keeps_the_bound_call_and_tenant_and_quotes_what_needs_it() -> None:
    render = LineRenderer(clock=lambda: 1796327293.0987)
    line = render(None, "info", {"event": "call ended", "level": "info", "call": "c1", "tenant": 7,
                                 "cause": "no answer", "said": 'a "b"', "empty": "", "ok": True})
    assert line == ('2026-12-03T19:48:13.098Z info    call ended call=c1 tenant=7 cause="no answer" '
                    'said="a \\"b\\"" empty="" ok=True')


def test_an_exception_follows_on_its_own_lines_through_the_configured_chain() -> None:
    render = LineRenderer(clock=lambda: 0.5)
    chain = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
             structlog.processors.format_exc_info, render]
    structlog.contextvars.bind_contextvars(call="c9", tenant=3)
    try:
        try:
            raise ValueError("boom")
        except ValueError as exc:
            event: object = {"event": "task failed", "exc_info": exc}
            for processor in chain:
                event = processor(None, "error", event)  # type: ignore[arg-type, operator]
    finally:
        structlog.contextvars.clear_contextvars()
    assert isinstance(event, str)
    first, *rest = event.splitlines()
    # the bound keys come in the order their context variables were first made in this process
    # (another test may have made "tenant" first), so their order is not asserted
    assert first.startswith("1970-01-01T00:00:00.500Z error   task failed ")
    assert sorted(first.split()[-2:]) == ["call=c9", "tenant=3"]
    assert rest[0].startswith("Traceback") and rest[-1] == "ValueError: boom"
