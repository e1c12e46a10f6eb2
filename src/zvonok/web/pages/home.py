"""The home page: who you are, your company at a glance."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.org.models import Employee, Extension
from zvonok.org.scope import count_in_tenant
from zvonok.web.auth import CurrentUser
from zvonok.web.i18n import N_
from zvonok.web.render import render
from zvonok.web.routing import OPERATOR, TENANT, NavItem, page_router

router = page_router()
NAV = [NavItem("/", N_("Home"), TENANT | OPERATOR, order=0)]


@router.get("/")
async def home(request: Request, user: CurrentUser, session: Annotated[AsyncSession, Depends(get_session)]) -> Response:
    stats = None
    if user.tenant_id is not None and user.is_tenant_admin:
        tenant = user.tenant
        online = {b.extension_id for b in request.app.state.location.tenant_bindings(tenant, time.time())}
        stats = {
            "extensions": await count_in_tenant(session, Extension, tenant),
            "employees": await count_in_tenant(session, Employee, tenant),
            "online": len(online),
        }
    return render(request, "home.html", {"stats": stats})
