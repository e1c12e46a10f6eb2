"""The page pattern: every web router is a :func:`page_router`, every nav entry a :class:`NavItem`.

A new page family is a module in :mod:`zvonok.web.pages` with ``router = page_router()`` (found there
by :func:`page_modules`, nothing to register) and, when it has menu entries, ``NAV = [NavItem(...)]``;
the menu is every module's entries by ``order``. CSRF is checked on every POST, PUT, PATCH and DELETE
of a page router (403 without a valid token), so no form can forget it.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse

from zvonok.org.models import Role
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
    order: int = 100  # place in the menu, smallest first (ties: by href)
    agents_only: bool = False  # only for an employee who is a member of a call-center queue


ADMIN = frozenset({Role.TENANT_ADMIN})
SUPERVISE = frozenset({Role.TENANT_ADMIN, Role.SUPERVISOR})  # the call center's live pages
TENANT = frozenset({Role.TENANT_ADMIN, Role.SUPERVISOR, Role.EMPLOYEE})
EMPLOYEE = frozenset({Role.SUPERVISOR, Role.EMPLOYEE})  # "my phone": a supervisor has one too
OPERATOR = frozenset({Role.PLATFORM_ADMIN})


@lru_cache(maxsize=1)
def page_modules() -> tuple[ModuleType, ...]:
    """Every module of :mod:`zvonok.web.pages` that exports ``router``, by name."""
    import zvonok.web.pages as package

    found = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if hasattr(module, "router"):
            found.append(module)
    return tuple(found)


@lru_cache(maxsize=1)
def nav() -> tuple[NavItem, ...]:
    """The whole menu: each page module's ``NAV`` entries, by order."""
    items = [item for module in page_modules() for item in getattr(module, "NAV", ())]
    return tuple(sorted(items, key=lambda item: (item.order, item.href)))
