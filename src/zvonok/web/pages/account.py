"""Logging in and out, the password, the language, and the websocket token of live pages.

Login failures all look alike (never "no such user"), and are throttled by the API's
:class:`~zvonok.api.login_guard.LoginGuard` (the same counters: a guesser cannot switch between the web
form and the API to double the tries).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.auth import issue_login_token
from zvonok.api.deps import get_session, get_settings
from zvonok.api.login_guard import LoginGuard
from zvonok.config import Settings
from zvonok.netaddr import address_key
from zvonok.org import accounts
from zvonok.org.errors import ValidationError
from zvonok.web.auth import CurrentUser, MaybeUser, TenantUser
from zvonok.web.i18n import LOCALES
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import page_router
from zvonok.web.session import (
    CSRF_COOKIE,
    clear_session,
    new_csrf_seed,
    set_cookie,
    set_language,
    set_session,
)

router = page_router()
WS_TOKEN_TTL = 300  # seconds; the page fetches a fresh one whenever its websocket reconnects


def safe_next(target: str | None) -> str:
    """Only a path on this site (``//host`` or ``/\\host`` would leave it)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def _guard(request: Request) -> LoginGuard:
    guard: LoginGuard = request.app.state.login_guard
    return guard


def _address(request: Request) -> str:
    return address_key(request.client.host if request.client else "?")


@router.get("/login")
async def login_form(request: Request, user: MaybeUser, next: str = "/") -> Response:
    if user is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", {"next": safe_next(next), "email": "", "error": None})


@router.post("/login")
async def login(
    request: Request,
    session: Annotated[AsyncSession, Depends(get_session)],
    settings: Annotated[Settings, Depends(get_settings)],
    email: Annotated[str, Form(max_length=254)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    _ = gettext_for(request)
    guard, name, address = _guard(request), email.strip().lower(), _address(request)
    wait = guard.retry_after(name, address, time.monotonic())
    if wait is not None:
        return render(request, "login.html", {
            "next": safe_next(next), "email": email,
            "error": _("Too many failed attempts. Try again in %(seconds)s seconds.") % {"seconds": wait},
        }, status_code=429, headers={"Retry-After": str(wait)})
    account = await accounts.authenticate(session, email, password)
    if account is None:
        guard.failed(name, address, time.monotonic())
        return render(request, "login.html", {
            "next": safe_next(next), "email": email, "error": _("Wrong email or password."),
        }, status_code=401)
    guard.succeeded(name)
    await session.commit()
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session(response, request, settings, account.id, account.token_version)
    set_cookie(response, request, CSRF_COOKIE, new_csrf_seed(), max_age=None)  # no fixation across the login
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    clear_session(response, request)
    return response


@router.post("/lang")
async def switch_language(request: Request, lang: Annotated[str, Form(max_length=8)] = "",
                          next: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    response = RedirectResponse(safe_next(next), status_code=303)
    if lang in LOCALES:
        set_language(response, request, lang)
    return response


@router.get("/password")
async def password_form(request: Request, user: CurrentUser) -> Response:
    return render(request, "password.html", {"error": None, "done": False})


@router.post("/password")
async def change_password(
    request: Request,
    user: CurrentUser,
    session: Annotated[AsyncSession, Depends(get_session)],
    settings: Annotated[Settings, Depends(get_settings)],
    current: Annotated[str, Form(max_length=256)] = "",
    new: Annotated[str, Form(max_length=256)] = "",
    confirm: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    _ = gettext_for(request)
    guard, address = _guard(request), _address(request)
    wait = guard.retry_after(user.email, address, time.monotonic())
    error = None
    if wait is not None:
        error = _("Too many failed attempts. Try again in %(seconds)s seconds.") % {"seconds": wait}
    elif new != confirm:
        error = _("The new passwords do not match.")
    if error is not None:
        return render(request, "password.html", {"error": error, "done": False}, status_code=422)
    try:
        account = await accounts.change_password(session, user.account_id, current, new)
    except ValidationError:
        return render(request, "password.html", {"error": _("The new password needs at least 8 characters."),
                                                 "done": False}, status_code=422)
    if account is None:
        guard.failed(user.email, address, time.monotonic())
        return render(request, "password.html", {"error": _("The current password is wrong."), "done": False},
                      status_code=422)
    await session.commit()
    # every other session and login token of the account ended with the new token_version; this one goes on
    response = render(request, "password.html", {"error": None, "done": True})
    set_session(response, request, settings, account.id, account.token_version)
    return response


@router.get("/session/ws-token", response_class=JSONResponse)
async def websocket_token(user: TenantUser, settings: Annotated[Settings, Depends(get_settings)]) -> JSONResponse:
    """A short-lived login token for the tenant's event websocket (browsers cannot send the session
    cookie's rights there as a header); the socket closes when it expires and the page asks again."""
    token = issue_login_token(settings, user.account_id, user.token_version, ttl=WS_TOKEN_TTL)
    return JSONResponse({"url": f"/api/v1/tenants/{user.tenant}/events", "token": token},
                        headers={"Cache-Control": "no-store"})
