"""Events of the CDR domain (registered with the bus codec, so the websocket and webhooks carry them)."""

from __future__ import annotations

from dataclasses import dataclass

from zvonok.bus import register_event

MISSED_DISPOSITIONS = frozenset({"no_answer", "busy", "cancelled"})  # an inbound call that ended so was missed


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CdrWritten:
    """A call's CDR is committed (on disk) under ``cdr_id``; published only after the commit.

    ``employee_ids`` are the employees who were caller or callee, so per-employee consumers can filter
    without keeping call state; ``missed``: an inbound call nobody answered (``None``: not said — an older
    publisher; read the CDR), so a consumer of missed calls only reads the CDRs it needs.
    """

    tenant_id: int
    call_id: str
    cdr_id: int
    employee_ids: tuple[int, ...] = ()
    missed: bool | None = None
    version: int = 1
