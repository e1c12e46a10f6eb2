"""Who is logged in to the web console, as FastAPI dependencies.

A page declares what it needs in its signature and gets a :class:`WebUser`:

* :data:`CurrentUser` — any logged-in account (else a redirect to ``/login``);
* :data:`TenantUser` — an account of a tenant (employee or tenant admin); ``user.tenant`` is its id;
* :data:`TenantAdminUser` — a tenant admin (else 403);
* :data:`PlatformAdminUser` — the operator's platform admin (else 403).

Tenant scoping: tenant pages have no tenant id in their URLs. They pass ``user.tenant`` to the org
services, which are tenant-scoped themselves (another tenant's object is NotFound -> 404 page), so a
page cannot show another company's data even by a guessed id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session, get_settings
from zvonok.callcenter.models import QueueMember
from zvonok.config import Settings
from zvonok.org import accounts
from zvonok.org.models import Role, Tenant
from zvonok.web.session import SESSION_COOKIE, decode_session


class LoginRequired(Exception):
    """No valid session: the app answers with a redirect to the login page."""


@dataclass(frozen=True)
class WebUser:
    account_id: int
    email: str
    role: Role
    token_version: int
    employee_id: int | None
    tenant_id: int | None
    tenant_name: str | None = None
    tenant_timezone: str | None = None
    tenant_currency: str | None = None
    tenant_locale: str | None = None
    is_agent: bool = False  # the employee is a member of a call-center queue (the menu's agent panel)

    @property
    def is_tenant_admin(self) -> bool:
        return self.role is Role.TENANT_ADMIN

    @property
    def is_supervisor(self) -> bool:
        """The call center's supervisor powers (the wallboard, agents' statuses, listen / whisper / barge):
        a supervisor or a tenant admin."""
        return self.role in (Role.TENANT_ADMIN, Role.SUPERVISOR)

    @property
    def tenant(self) -> int:
        """The tenant every query of a tenant page is scoped to (only on :data:`TenantUser` pages)."""
        if self.tenant_id is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this page belongs to a company account")
        return self.tenant_id


async def _is_agent(session: AsyncSession, tenant_id: int | None, employee_id: int | None) -> bool:
    if tenant_id is None or employee_id is None:
        return False
    found = await session.execute(select(QueueMember.id).where(
        QueueMember.tenant_id == tenant_id, QueueMember.employee_id == employee_id).limit(1))
    return found.first() is not None


async def optional_user(
    request: Request,
    session: Annotated[AsyncSession, Depends(get_session)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> WebUser | None:
    """The logged-in account, or None. Cached on the request (the layout shows it too)."""
    if hasattr(request.state, "user"):
        cached: WebUser | None = request.state.user
        return cached
    user = None
    web = decode_session(settings, request.cookies.get(SESSION_COOKIE))
    if web is not None:
        account = await accounts.live_account(session, web.account_id, web.token_version)
        if account is not None:
            tenant = await session.get(Tenant, account.tenant_id) if account.tenant_id is not None else None
            user = WebUser(
                account_id=account.id, email=account.email, role=Role(account.role),
                token_version=account.token_version, employee_id=account.employee_id, tenant_id=account.tenant_id,
                tenant_name=tenant.name if tenant else None, tenant_timezone=tenant.timezone if tenant else None,
                tenant_currency=tenant.currency if tenant else None, tenant_locale=tenant.locale if tenant else None,
                is_agent=await _is_agent(session, account.tenant_id, account.employee_id),
            )
    request.state.user = user
    return user


async def current_user(user: Annotated[WebUser | None, Depends(optional_user)]) -> WebUser:
    if user is None:
        raise LoginRequired
    return user


async def tenant_user(user: Annotated[WebUser, Depends(current_user)]) -> WebUser:
    user.tenant  # noqa: B018 - raises 403 for an account without a tenant (the platform admin)
    return user


async def tenant_admin_user(user: Annotated[WebUser, Depends(tenant_user)]) -> WebUser:
    if not user.is_tenant_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "tenant admin role required")
    return user


async def supervisor_user(user: Annotated[WebUser, Depends(tenant_user)]) -> WebUser:
    if not user.is_supervisor:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "supervisor role required")
    return user


async def platform_admin_user(user: Annotated[WebUser, Depends(current_user)]) -> WebUser:
    if user.role is not Role.PLATFORM_ADMIN:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "platform admin role required")
    return user


MaybeUser = Annotated[WebUser | None, Depends(optional_user)]
CurrentUser = Annotated[WebUser, Depends(current_user)]
TenantUser = Annotated[WebUser, Depends(tenant_user)]
TenantAdminUser = Annotated[WebUser, Depends(tenant_admin_user)]
SupervisorUser = Annotated[WebUser, Depends(supervisor_user)]
PlatformAdminUser = Annotated[WebUser, Depends(platform_admin_user)]
