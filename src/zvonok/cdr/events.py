"""Events of the CDR domain (registered with the bus codec, so the websocket and webhooks carry them)."""

from __future__ import annotations

from dataclasses import dataclass

from zvonok.bus import register_event


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CdrWritten:
    """A call's CDR is committed (on disk) under ``cdr_id``; published only after the commit.

    ``employee_ids`` are the employees who were caller or callee, so per-employee consumers can filter
    without keeping call state.
    """

    tenant_id: int
    call_id: str
    cdr_id: int
    employee_ids: tuple[int, ...] = ()
    version: int = 1
