from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class FaxOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    tenant_id: int
    direction: str  # "in" | "out"
    status: str  # receiving, received | queued, sending, sent | failed
    remote_number: str
    local_number: str
    remote_ident: str
    pages: int
    result: str
    call_id: str | None
    attempts: int
    transport: str  # "audio" (G.711 pass-through) | "t38"
    created_at: datetime
    finished_at: datetime | None
    has_pdf: bool
