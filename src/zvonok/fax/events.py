"""Events of fax calls and documents, on the one call-event stream (after the row is committed)."""

from __future__ import annotations

from dataclasses import dataclass

from zvonok.bus import register_event
from zvonok.telephony.events import CallEvent


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class FaxFinished(CallEvent):
    """A fax call reached its end: received into, or sent from, document ``fax_id`` of the tenant."""

    fax_id: int
    direction: str  # "in" | "out"
    ok: bool
    pages: int
    result: str  # T.30's completion text, or why the call never got that far
    remote_number: str = ""


@register_event
@dataclass(frozen=True, kw_only=True)
class FaxQueued:
    """A document to send was stored (POST .../faxes, or a retry): the engine's sender places the call."""

    tenant_id: int
    fax_id: int
    version: int = 1
