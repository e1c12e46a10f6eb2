"""REST of the PBX features phones reach by number: the feature codes, and the calls parked now.

``GET /api/v1/tenants/{t}/feature-codes`` lists every code (forwarding, DND, pickup, park);
``GET /api/v1/tenants/{t}/parked-calls`` the company's parked calls by slot, from the running call
engine's :class:`~zvonok.telephony.park.Parking` (``app.state.parking``; an API-only process answers 503).
Both are for anyone of the company: the slots are what a colleague dials to take a call.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from zvonok.api.auth import TenantReader

from .feature_codes import feature_codes
from .park import Parking

router = APIRouter(prefix="/api/v1/tenants/{tenant_id}", tags=["features"])


class FeatureCodeOut(BaseModel):
    code: str
    feature: str
    how: str
    description: str


class ParkedCallOut(BaseModel):
    slot: int
    call_id: str
    number: str  # the parked party
    display_name: str
    parked_by: str  # the extension that parked it (rung back on timeout)
    parked_at: datetime
    timeout_at: datetime


def _parking(request: Request) -> Parking | None:
    parking: Parking | None = getattr(request.app.state, "parking", None)
    return parking


@router.get("/feature-codes", response_model=list[FeatureCodeOut])
async def list_feature_codes(tenant_id: int, _: TenantReader, request: Request) -> object:
    """Every feature code a phone dials (or transfers to), with what it does."""
    parking = _parking(request)
    return [FeatureCodeOut(code=c.code, feature=c.feature, how=c.how, description=c.description)
            for c in feature_codes(parking.lot if parking is not None else None)]  # type: ignore[arg-type]


@router.get("/parked-calls", response_model=list[ParkedCallOut])
async def list_parked_calls(tenant_id: int, _: TenantReader, request: Request) -> object:
    """The company's parked calls by slot: dial the slot to take one."""
    parking = _parking(request)
    if parking is None:
        raise HTTPException(503, "parked calls unavailable: no call engine runs in this process")
    out = []
    for parked in parking.parked(tenant_id):
        item = parked.item
        party = item.leg.party
        out.append(ParkedCallOut(
            slot=parked.slot, call_id=item.call.id, number=party.number, display_name=party.display_name,
            parked_by=item.parked_by.number, parked_at=datetime.fromtimestamp(item.parked_at, UTC),
            timeout_at=datetime.fromtimestamp(item.parked_at + parked.deadline - parked.parked_at, UTC)))
    return out
