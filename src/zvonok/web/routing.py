"""The page pattern: every web router is a :func:`page_router`, every nav entry a :class:`NavItem`.

A new page family is a module in :mod:`zvonok.web.pages` with ``router = page_router()``, listed in
``zvonok.web.app.PAGE_MODULES``; a nav entry goes in :data:`NAV`. CSRF is checked on every POST, PUT,
PATCH and DELETE of a page router (403 without a valid token), so no form can forget it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse

from zvonok.org.models import Role
from zvonok.web.i18n import N_
from zvonok.web.session import CSRF_COOKIE, CSRF_FIELD, CSRF_HEADER, csrf_valid

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def csrf_protect(request: Request) -> None:
    if request.method in _SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(_FORM_TYPES):
        value = (await request.form()).get(CSRF_FIELD)  # parsed once: the route's Form fields reuse it
        sent = value if isinstance(value, str) else None
    if not csrf_valid(request.app.state.settings, request.cookies.get(CSRF_COOKIE), sent):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form has expired or did not come from this site")


def page_router() -> APIRouter:
    """A router for pages: HTML answers, not in the OpenAPI schema, CSRF-checked."""
    return APIRouter(include_in_schema=False, default_response_class=HTMLResponse,
                     dependencies=[Depends(csrf_protect)])


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str  # a msgid marked with N_(); translated when the layout is rendered
    roles: frozenset[Role]


_ADMIN = frozenset({Role.TENANT_ADMIN})
_TENANT = frozenset({Role.TENANT_ADMIN, Role.EMPLOYEE})

NAV: list[NavItem] = [
    NavItem("/", N_("Home"), _TENANT | {Role.PLATFORM_ADMIN}),
    NavItem("/extensions", N_("Extensions"), _ADMIN),
]
