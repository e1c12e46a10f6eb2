"""Logins (accounts) and API tokens.

Account emails are global (they are the login name); employee emails are unique per tenant only, so
giving an employee a login can conflict with another tenant's account (409, naming the email).

Access ends with its reason, at once: a password change invalidates the account's login tokens (they
carry ``token_version``, which is bumped); a demotion, a deactivation (of the account or of its
employee) or a deletion also revokes the API tokens the account created, so none outlives the rights
it was made with. Each emits :class:`~zvonok.org.events.AccessRevoked` (open websockets re-check).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.logs import get_logger
from zvonok.org import events
from zvonok.org.credentials import hash_password, hashes_equal, new_api_token, token_hash, verify_password
from zvonok.org.errors import Conflict, NotFound, ValidationError
from zvonok.org.models import Account, ApiToken, Employee, Role
from zvonok.storage.base import utcnow
from zvonok.storage.db import emit

from . import quotas

log = get_logger(__name__)
_LAST_USED_RESOLUTION = timedelta(minutes=1)  # don't write on every request
_RANK = {Role.EMPLOYEE: 0, Role.SUPERVISOR: 1, Role.TENANT_ADMIN: 2, Role.PLATFORM_ADMIN: 3}


# --- accounts --------------------------------------------------------------------------------------
async def _check_email_free(session: AsyncSession, email: str, *, except_id: int | None = None) -> None:
    stmt = select(Account.id).where(Account.email == email)
    existing = (await session.execute(stmt)).scalar_one_or_none()
    if existing is not None and existing != except_id:
        raise Conflict(f"an account with email {email} already exists", field="email")


async def platform_create_account(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    role: Role,
    tenant_id: int | None = None,
    employee_id: int | None = None,
) -> Account:
    """Create a login; ``platform_admin`` must have no tenant, the other roles must have one."""
    email = email.strip().lower()
    if (role is Role.PLATFORM_ADMIN) != (tenant_id is None):
        raise ValidationError("role: platform_admin accounts have no tenant; other roles need one", field="role")
    if len(password) < 8:
        raise ValidationError("password: at least 8 characters", field="password")
    await _check_email_free(session, email)
    account = Account(
        email=email,
        password_hash=await hash_password(password),
        role=role.value,
        tenant_id=tenant_id,
        employee_id=employee_id,
    )
    session.add(account)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"an account with email {email} already exists", field="email") from None
    return account


async def account_for_employee(session: AsyncSession, tenant_id: int, employee_id: int) -> Account | None:
    stmt = select(Account).where(Account.tenant_id == tenant_id, Account.employee_id == employee_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def set_employee_login(
    session: AsyncSession, tenant_id: int, employee: Employee, password: str, role: str
) -> Account:
    """Give an employee a login named by their email."""
    if not employee.email:
        raise ValidationError("web_password: the employee needs an email to log in", field="web_password")
    return await platform_create_account(
        session, email=employee.email, password=password, role=Role(role), tenant_id=tenant_id,
        employee_id=employee.id,
    )


async def update_employee_login(
    session: AsyncSession, tenant_id: int, employee: Employee, password: str | None, role: str | None
) -> None:
    """Keep the employee's login in step: new password/role, or its email after the employee's changed."""
    account = await account_for_employee(session, tenant_id, employee.id)
    if account is None:
        if password is not None:
            await set_employee_login(session, tenant_id, employee, password, role or Role.EMPLOYEE.value)
        elif role is not None:
            raise ValidationError("role: the employee has no login; give a web_password too", field="role")
        return
    if employee.email is None:
        raise ValidationError("email: the employee has a login, the email cannot be removed", field="email")
    if employee.email != account.email:
        await _check_email_free(session, employee.email, except_id=account.id)
        account.email = employee.email
    demoted = role is not None and _RANK[Role(role)] < _RANK[Role(account.role)]
    if password is not None:
        account.password_hash = await hash_password(password)
    if role is not None:
        account.role = Role(role).value
    await session.flush()
    if demoted:
        await revoke_account_access(session, account, api_tokens=True)
    elif password is not None:
        await revoke_account_access(session, account, api_tokens=False)


async def revoke_account_access(session: AsyncSession, account: Account, *, api_tokens: bool) -> None:
    """End the account's login tokens (all of them, now); with ``api_tokens``, also revoke the API
    tokens it created (demotion, deactivation, deletion: what they were made with is gone)."""
    account.token_version += 1
    revoked: tuple[int, ...] = ()
    if api_tokens:
        stmt = select(ApiToken).where(ApiToken.account_id == account.id, ApiToken.revoked_at.is_(None))
        tokens = (await session.execute(stmt)).scalars().all()
        now = utcnow()
        for token in tokens:
            token.revoked_at = now
        revoked = tuple(t.id for t in tokens)
    await session.flush()
    if account.tenant_id is not None:
        emit(session, events.AccessRevoked(tenant_id=account.tenant_id, account_id=account.id, token_ids=revoked))


async def revoke_employee_access(session: AsyncSession, tenant_id: int, employee_id: int) -> None:
    """The employee was deactivated or is being deleted: their login and its API tokens end."""
    account = await account_for_employee(session, tenant_id, employee_id)
    if account is not None:
        await revoke_account_access(session, account, api_tokens=True)


async def change_password(session: AsyncSession, account_id: int, current: str, new: str) -> Account | None:
    """An account's own password change: None when ``current`` is wrong. Every login token and web
    session of the account ends (``token_version``); the caller re-issues its own session."""
    account = await session.get(Account, account_id)
    if account is None or not await verify_password(current, account.password_hash):
        return None
    if len(new) < 8:
        raise ValidationError("password: at least 8 characters", field="password")
    account.password_hash = await hash_password(new)
    await revoke_account_access(session, account, api_tokens=False)
    return account


async def platform_get_account(session: AsyncSession, account_id: int) -> Account | None:
    return await session.get(Account, account_id)


def _with_employee_active(where: Any) -> Any:
    # One query on every path (known or unknown email, login or token check): the same work each time.
    return select(Account, Employee.active).outerjoin(Employee, Employee.id == Account.employee_id).where(where)


async def live_account(session: AsyncSession, account_id: int, token_version: int) -> Account | None:
    """The account a login token names, if that token is still good: the account active, its employee
    (if any) active, and no password change, demotion or deactivation since it was issued."""
    row = (await session.execute(_with_employee_active(Account.id == account_id))).one_or_none()
    if row is None:
        return None
    account, employee_active = row
    if not account.active or employee_active is False or account.token_version != token_version:
        return None
    return account  # type: ignore[no-any-return]


async def authenticate(session: AsyncSession, email: str, password: str) -> Account | None:
    """The account if the password matches. Unknown emails cost the same argon2 time as wrong passwords;
    a deactivated account or employee is refused like a wrong password."""
    row = (await session.execute(_with_employee_active(Account.email == email.strip().lower()))).one_or_none()
    account: Account | None = row[0] if row is not None else None
    usable = row is not None and row[0].active and row[1] is not False
    ok = await verify_password(password, account.password_hash if account is not None else None)
    if not (ok and usable):
        return None
    assert account is not None
    account.last_login_at = utcnow()
    return account


# --- API tokens ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreatedToken:
    token: ApiToken
    secret: str  # shown once


async def _create_token(
    session: AsyncSession, tenant_id: int | None, name: str, role: Role, account_id: int | None
) -> CreatedToken:
    new = new_api_token()
    token = ApiToken(
        tenant_id=tenant_id, name=name, prefix=new.prefix, secret_hash=new.secret_hash, role=role.value,
        account_id=account_id,
    )
    session.add(token)
    await session.flush()
    return CreatedToken(token=token, secret=new.secret)


async def create_api_token(
    session: AsyncSession, tenant_id: int, name: str, role: Role, *, account_id: int | None = None
) -> CreatedToken:
    if role is Role.PLATFORM_ADMIN:
        raise ValidationError("role: a tenant token cannot be platform_admin", field="role")
    await quotas.check(session, tenant_id, "api_tokens", ApiToken, ApiToken.revoked_at.is_(None))
    return await _create_token(session, tenant_id, name, role, account_id)


async def platform_create_api_token(
    session: AsyncSession, name: str, *, account_id: int | None = None
) -> CreatedToken:
    return await _create_token(session, None, name, Role.PLATFORM_ADMIN, account_id)


async def list_api_tokens(
    session: AsyncSession, tenant_id: int, *, include_revoked: bool = True, limit: int = 100, offset: int = 0
) -> tuple[list[ApiToken], int]:
    stmt = select(ApiToken).where(ApiToken.tenant_id == tenant_id)
    if not include_revoked:
        stmt = stmt.where(ApiToken.revoked_at.is_(None))
    total = int((await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one())
    rows = (await session.execute(stmt.order_by(ApiToken.id).limit(limit).offset(offset))).scalars().all()
    return list(rows), total


async def revoke_api_token(session: AsyncSession, tenant_id: int, token_id: int) -> ApiToken:
    stmt = select(ApiToken).where(ApiToken.tenant_id == tenant_id, ApiToken.id == token_id)
    token = (await session.execute(stmt)).scalar_one_or_none()
    if token is None:
        raise NotFound(f"token {token_id} not found")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        await session.flush()
        emit(session, events.AccessRevoked(tenant_id=tenant_id, token_ids=(token.id,)))
    return token


async def resolve_api_token(session: AsyncSession, secret: str) -> ApiToken | None:
    """The live token for a bearer secret. Looked up by SHA-256 (an index hit reveals nothing of the
    secret through timing), then compared in constant time anyway."""
    digest = token_hash(secret)
    token = (await session.execute(select(ApiToken).where(ApiToken.secret_hash == digest))).scalar_one_or_none()
    if token is None or token.revoked_at is not None or not hashes_equal(token.secret_hash, digest):
        return None
    return token


async def note_api_token_use(session: AsyncSession, token: ApiToken) -> None:
    """Record when ``token`` was last used (at most once a minute), committed at once and best effort:
    when the database is busy with writes (SQLite allows one writer; under load the lock wait times
    out), the request goes on and the stamp waits for a later one. Never a reason for an error."""
    now = utcnow()
    if token.last_used_at is not None and now - token.last_used_at <= _LAST_USED_RESOLUTION:
        return
    token_id = token.id
    try:
        await session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))
        await session.commit()
    except OperationalError as exc:
        await session.rollback()
        log.info("api_token_use_not_recorded", token_id=token_id, reason=str(exc.orig))
