"""Pydantic response schemas of the CDR API. The recording's file path is never exposed, only whether
there is one (fetch it from ``.../cdrs/{id}/recording``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class CdrLegOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    leg_id: str
    role: str
    number: str
    display_name: str
    contact: str
    user_agent: str
    created_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    cause: str | None


class CdrOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    tenant_id: int
    call_id: str
    direction: str
    internal: bool
    dialed_number: str
    caller_number: str
    caller_name: str
    caller_extension_id: int | None
    caller_employee_id: int | None
    caller_office_id: int | None
    caller_department_id: int | None
    callee_number: str
    callee_name: str
    callee_extension_id: int | None
    callee_employee_id: int | None
    callee_office_id: int | None
    callee_department_id: int | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    duration: int = Field(description="Seconds from start to end")
    billsec: int = Field(description="Seconds from answer to end; 0 if unanswered")
    disposition: str
    hangup_side: str
    cause: str
    sip_status: int | None
    forwarded_from: str | None = Field(default=None, description="The extension whose call forwarding sent "
                                       "the call on (CFU, CFB, CFNA, unavailable)")
    ring_group: str | None = Field(default=None, description="The number of the ring group the call reached")
    queue: str | None = Field(default=None, description="The queue whose callback this call carried out")
    fax_pages: int | None = Field(default=None, description="A fax call (received or sent): the pages transferred")
    fax_result: str | None = Field(default=None, description="A fax call: T.30's result (OK, or why it failed)")
    fax_transport: str | None = Field(default=None, description="A fax call: audio (G.711 pass-through) or t38")
    end_estimated: bool = Field(default=False, description="The call was cut by a server crash: ended_at is "
                                "its last sign of life (heartbeat), not a hang-up")
    cost: Decimal
    currency: str
    has_recording: Annotated[bool, BeforeValidator(lambda path: path is not None)] = Field(
        default=False, validation_alias="recording_path"
    )


class CdrDetail(CdrOut):
    legs: list[CdrLegOut]


class CdrPage(BaseModel):
    items: list[CdrOut]
    total: int
    limit: int
    offset: int


CSV_COLUMNS: tuple[str, ...] = (
    "id", "call_id", "started_at", "answered_at", "ended_at", "duration", "billsec", "direction",
    "disposition", "hangup_side", "cause", "sip_status", "caller_number", "caller_name",
    "caller_extension_id", "caller_employee_id", "dialed_number", "callee_number", "callee_name",
    "callee_extension_id", "callee_employee_id", "cost", "currency", "fax_pages", "fax_result",
)
