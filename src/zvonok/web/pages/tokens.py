"""API tokens of the company (tenant admins): the list, a new token (its secret shown once), revoking.

Tokens are :mod:`zvonok.org.accounts`' (only the secret's SHA-256 is stored); a token made here belongs
to the admin's account, as one made through ``POST /api/v1/tenants/{id}/tokens`` does, so it ends
when the account loses its rights.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.org import accounts, schemas
from zvonok.org.models import Role
from zvonok.web.auth import TenantAdminUser
from zvonok.web.forms import schema_errors
from zvonok.web.i18n import N_
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import ADMIN, NavItem, page_router

router = page_router()
NAV = [NavItem("/tokens", N_("API tokens"), ADMIN, order=61)]
Session = Annotated[AsyncSession, Depends(get_session)]
LIMIT = 500


async def _page(request: Request, session: AsyncSession, tenant_id: int, *, form: dict[str, str] | None = None,
                errors: dict[str, str] | None = None, created: Any = None, status_code: int = 200) -> Response:
    rows, total = await accounts.list_api_tokens(session, tenant_id, limit=LIMIT)
    rows.sort(key=lambda t: (t.revoked_at is not None, -t.id))  # live ones first, newest first
    return render(request, "tokens/index.html", {
        "rows": rows, "total": total, "form": form or {"role": "tenant_admin"}, "errors": errors or {},
        "created": created,
    }, status_code=status_code, headers={"Cache-Control": "no-store"} if created else None)


@router.get("/tokens")
async def tokens(request: Request, user: TenantAdminUser, session: Session) -> Response:
    return await _page(request, session, user.tenant)


@router.post("/tokens")
async def create_token(request: Request, user: TenantAdminUser, session: Session,
                       name: Annotated[str, Form(max_length=300)] = "",
                       role: Annotated[str, Form(max_length=20)] = "tenant_admin") -> Response:
    _ = gettext_for(request)
    form = {"name": name, "role": role}
    try:
        data = schemas.TokenCreate(name=name, role=role)  # type: ignore[arg-type]
    except PydanticValidationError as exc:
        errors = schema_errors(exc, {"name": _("Required: up to 200 characters, without line breaks."),
                                     "role": _("Choose a role from the list.")}, _("Invalid value."))
        return await _page(request, session, user.tenant, form=form, errors=errors, status_code=422)
    created = await accounts.create_api_token(session, user.tenant, data.name, Role(data.role),
                                              account_id=user.account_id)
    await session.commit()
    shown = {"id": created.token.id, "name": created.token.name, "secret": created.secret}
    return await _page(request, session, user.tenant, created=shown)


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: int, user: TenantAdminUser, session: Session) -> Response:
    await accounts.revoke_api_token(session, user.tenant, token_id)  # another tenant's: 404 page
    await session.commit()
    return RedirectResponse(f"/tokens#token-{token_id}", status_code=303)
