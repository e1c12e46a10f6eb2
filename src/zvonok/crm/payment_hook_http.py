"""Routes of payments by webhook (:mod:`zvonok.crm.payment_hook`): the company admin's switch under
``/api/v1/tenants/{tenant_id}/crm/payment-hook``, and the URL the payment provider posts to,
``/api/v1/hooks/payments/{key}`` (no token: the signature is the credential)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import TenantAdmin
from zvonok.api.deps import get_session

from . import payment_hook

router = APIRouter()
public_router = APIRouter(prefix="/api/v1/hooks", tags=["crm"])
Session = Annotated[AsyncSession, Depends(get_session)]
UNAUTHORIZED = {"detail": "not a signed notification of this URL"}


class PaymentHookOut(BaseModel):
    enabled: bool
    path: str | None  # the URL's path on this server, e.g. /api/v1/hooks/payments/<key>


class PaymentHookCreated(PaymentHookOut):
    secret: str  # the HMAC key of the notifications: shown only here


class PaymentNotified(BaseModel):
    payment_id: int
    invoice_number: str
    duplicate: bool  # that invoice already had a payment with that reference: nothing recorded again


@router.get("/payment-hook", response_model=PaymentHookOut)
async def get_payment_hook(tenant_id: int, _: TenantAdmin, session: Session) -> object:
    """Whether payments may be notified by webhook, and the URL's path."""
    path = await payment_hook.path_of(session, tenant_id)
    return PaymentHookOut(enabled=path is not None, path=path)


@router.post("/payment-hook", response_model=PaymentHookCreated, status_code=201)
async def enable_payment_hook(tenant_id: int, _: TenantAdmin, session: Session) -> object:
    """A new URL and secret for payment notifications (the old ones stop working); the secret is shown once."""
    path, secret = await payment_hook.enable(session, tenant_id)
    await session.commit()
    return PaymentHookCreated(enabled=True, path=path, secret=secret)


@router.delete("/payment-hook", status_code=204)
async def disable_payment_hook(tenant_id: int, _: TenantAdmin, session: Session) -> Response:
    await payment_hook.disable(session, tenant_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@public_router.post("/payments/{key}", response_model=PaymentNotified, status_code=201,
                    responses={200: {"description": "A copy of a notification recorded before: nothing recorded"},
                               401: {"description": "Unknown URL, missing or wrong signature, stale timestamp"},
                               422: {"description": "Signed, but not a payment of an issued invoice: detail"}})
async def notify_payment(key: str, request: Request, session: Session) -> object:
    """A payment provider's notification that an invoice was paid (see :mod:`zvonok.crm.payment_hook`)."""
    body = await request.body()
    try:
        outcome = await payment_hook.receive(session, key, request.headers.get("X-Zvonok-Timestamp"),
                                             request.headers.get("X-Zvonok-Signature"), body)
    except payment_hook.Unauthorized:
        return JSONResponse(UNAUTHORIZED, status_code=401)
    except payment_hook.Refused as exc:
        await session.rollback()
        return JSONResponse({"detail": exc.message}, status_code=422)
    out = PaymentNotified(payment_id=outcome.payment_id, invoice_number=outcome.invoice_number,
                          duplicate=outcome.duplicate)
    return JSONResponse(out.model_dump(), status_code=200 if outcome.duplicate else 201)
