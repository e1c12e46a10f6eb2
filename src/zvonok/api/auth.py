"""Authentication and authorization for the HTTP API.

``Authorization: Bearer <token>`` carries either an API token (``zv_...``, looked up by its SHA-256)
or a login token from ``POST /api/v1/auth/login`` (a JWT signed with the settings' secret key, HS256,
naming the account and its ``token_version``; role and tenant are re-read from the database on every
request, and a token issued before a password change, demotion or deactivation no longer matches the
account's version, so it stops working at once).

Tenant isolation: :func:`tenant_access` answers 404 for another tenant's URLs, exactly as for a
tenant that does not exist, so ids of other companies cannot be probed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

import jwt
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import MAX_ID, get_session, get_settings
from zvonok.api.login_guard import LoginGuard
from zvonok.config import Settings
from zvonok.netaddr import address_key
from zvonok.org import accounts
from zvonok.org.credentials import TOKEN_PREFIX
from zvonok.org.models import Role, Tenant
from zvonok.org.schemas import LoginIn, LoginOut, MeOut
from zvonok.storage.base import utcnow

_JWT_ALG = "HS256"
_bearer = HTTPBearer(auto_error=False, description="API token (zv_...) or login token")


@dataclass(frozen=True)
class Principal:
    """Who is calling. Exactly one of ``account_id`` / ``token_id`` is set. ``owner_id`` is the account
    whose rights this access rests on (the account itself, or the one that created the API token):
    tokens minted with it belong to that account too, so revoking the account's access reaches them."""

    role: Role
    tenant_id: int | None
    employee_id: int | None = None
    account_id: int | None = None
    token_id: int | None = None
    owner_id: int | None = None

    @property
    def is_platform_admin(self) -> bool:
        return self.role is Role.PLATFORM_ADMIN

    @property
    def is_admin(self) -> bool:
        """A tenant or platform admin: sees every call, client and deal of the tenant. A supervisor is not
        one: outside the call center they have an employee's view (their own calls, clients, deals)."""
        return self.role in (Role.PLATFORM_ADMIN, Role.TENANT_ADMIN)

    def may_administer(self, tenant_id: int) -> bool:
        return self.is_platform_admin or (self.role is Role.TENANT_ADMIN and self.tenant_id == tenant_id)

    def may_supervise(self, tenant_id: int) -> bool:
        """The call center's supervisor powers on ``tenant_id``: the wallboard, live queues and agents,
        reports, agents' statuses, listen / whisper / barge. Its admins have them too."""
        return self.may_administer(tenant_id) or (self.role is Role.SUPERVISOR and self.tenant_id == tenant_id)


def _unauthorized(detail: str = "invalid or missing credentials") -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def issue_login_token(settings: Settings, account_id: int, token_version: int, *, ttl: int | None = None) -> str:
    """A login token; ``ttl`` shortens it (the web console's websocket tokens) below the settings' lifetime."""
    now = utcnow()
    lifetime = settings.login_token_ttl if ttl is None else min(ttl, settings.login_token_ttl)
    claims = {
        "sub": str(account_id), "typ": "login", "ver": token_version, "iat": now,
        "exp": now + timedelta(seconds=lifetime),
    }
    return jwt.encode(claims, settings.resolved_secret_key(), algorithm=_JWT_ALG)


async def require_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session: Annotated[AsyncSession, Depends(get_session)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Principal:
    """The authenticated caller, or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized()
    secret = credentials.credentials
    if secret.startswith(TOKEN_PREFIX):
        token = await accounts.resolve_api_token(session, secret)
        if token is None:
            raise _unauthorized()
        principal = Principal(role=Role(token.role), tenant_id=token.tenant_id, token_id=token.id,
                              owner_id=token.account_id)
        await accounts.note_api_token_use(session, token)
        return principal
    try:
        claims = jwt.decode(
            secret, settings.resolved_secret_key(), algorithms=[_JWT_ALG], options={"require": ["exp", "sub", "ver"]}
        )
        account_id = int(claims["sub"])
        version = claims["ver"]
    except (jwt.PyJWTError, ValueError, KeyError):
        raise _unauthorized() from None
    if claims.get("typ") != "login" or type(version) is not int or not 0 < account_id <= MAX_ID:
        raise _unauthorized()
    account = await accounts.live_account(session, account_id, version)
    if account is None:
        raise _unauthorized()
    return Principal(
        role=Role(account.role), tenant_id=account.tenant_id, employee_id=account.employee_id, account_id=account.id,
        owner_id=account.id,
    )


CurrentPrincipal = Annotated[Principal, Depends(require_principal)]


def require_role(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """Dependency factory: the caller must have one of ``roles`` (else 403)."""

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "not allowed for role " + principal.role.value)
        return principal

    return dependency


async def tenant_access(
    tenant_id: int,
    principal: CurrentPrincipal,
    session: Annotated[AsyncSession, Depends(get_session)],
) -> Principal:
    """The caller, if it may see tenant ``tenant_id`` (its own, or any for a platform admin); else 404."""
    if principal.tenant_id != tenant_id and not principal.is_platform_admin:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"tenant {tenant_id} not found")
    if await session.get(Tenant, tenant_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"tenant {tenant_id} not found")
    return principal


async def tenant_admin(tenant_id: int, principal: Annotated[Principal, Depends(tenant_access)]) -> Principal:
    """:func:`tenant_access` plus write rights on that tenant (tenant admin or platform admin); else 403."""
    if not principal.may_administer(tenant_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "tenant admin role required")
    return principal


async def tenant_supervisor(tenant_id: int, principal: Annotated[Principal, Depends(tenant_access)]) -> Principal:
    """:func:`tenant_access` plus the call center's supervisor powers on that tenant; else 403."""
    if not principal.may_supervise(tenant_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "supervisor role required")
    return principal


TenantReader = Annotated[Principal, Depends(tenant_access)]
TenantSupervisor = Annotated[Principal, Depends(tenant_supervisor)]
TenantAdmin = Annotated[Principal, Depends(tenant_admin)]
PlatformAdmin = Annotated[Principal, Depends(require_role(Role.PLATFORM_ADMIN))]

router = APIRouter(prefix="/api/v1", tags=["auth"])


def _login_guard(request: Request) -> LoginGuard:
    guard: LoginGuard = request.app.state.login_guard
    return guard


@router.post("/auth/login", response_model=LoginOut, responses={429: {"description": "Too many failed logins"}})
async def login(
    body: LoginIn,
    request: Request,
    session: Annotated[AsyncSession, Depends(get_session)],
    settings: Annotated[Settings, Depends(get_settings)],
    guard: Annotated[LoginGuard, Depends(_login_guard)],
) -> LoginOut:
    """Exchange email and password for a login token. Every failure is the same 401; too many failures
    for the email or from the address get 429 with Retry-After (see :mod:`zvonok.api.login_guard`)."""
    name = body.email.strip().lower()
    address = address_key(request.client.host if request.client else "?")
    wait = guard.retry_after(name, address, time.monotonic())
    if wait is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, "too many failed logins; try again later",
            headers={"Retry-After": str(wait)},
        )
    account = await accounts.authenticate(session, body.email, body.password)
    if account is None:
        guard.failed(name, address, time.monotonic())
        raise _unauthorized("invalid email or password")
    guard.succeeded(name)
    await session.commit()
    return LoginOut(
        access_token=issue_login_token(settings, account.id, account.token_version), expires_in=settings.login_token_ttl
    )


@router.get("/me", response_model=MeOut)
async def me(principal: CurrentPrincipal, session: Annotated[AsyncSession, Depends(get_session)]) -> MeOut:
    if principal.account_id is not None:
        account = await accounts.platform_get_account(session, principal.account_id)
        return MeOut(
            kind="account", id=principal.account_id, role=principal.role.value, tenant_id=principal.tenant_id,
            employee_id=principal.employee_id, email=account.email if account else None,
        )
    assert principal.token_id is not None
    return MeOut(kind="api_token", id=principal.token_id, role=principal.role.value, tenant_id=principal.tenant_id, employee_id=None)
