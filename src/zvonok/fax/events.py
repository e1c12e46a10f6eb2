"""Events of fax calls and documents, on the one call-event stream (after the row is committed)."""

from __future__ import annotations

from dataclasses import dataclass

from zvonok.bus import register_event
from zvonok.telephony.events import FaxFinished


@register_event
@dataclass(frozen=True, kw_only=True)
class FaxQueued:
    """A document to send was stored (POST .../faxes, or a retry): the engine's sender places the call."""

    tenant_id: int
    fax_id: int
    version: int = 1


__all__ = ["FaxFinished", "FaxQueued"]
