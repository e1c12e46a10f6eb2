"""Mounting the web console on the API's FastAPI app (``zvonok.server`` calls :func:`mount_web`).

Errors on page paths become HTML pages (404, 403, 429...) and a missing session a redirect to the
login page; on API paths the app's JSON handlers answer as before.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from zvonok.org.errors import OrgError
from zvonok.telephony.location import Location
from zvonok.web.auth import LoginRequired
from zvonok.web.i18n import N_
from zvonok.web.render import render
from zvonok.web.routing import page_modules

STATIC = Path(__file__).parent / "static"
_API_PATHS = frozenset({"/healthz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
_TITLES = {
    400: N_("Bad request"), 403: N_("Access denied"), 404: N_("Page not found"), 405: N_("Not allowed"),
    409: N_("Conflict"), 413: N_("Too large"), 422: N_("Invalid input"), 429: N_("Too many attempts"),
}


def is_page_path(path: str) -> bool:
    return not path.startswith("/api/") and path not in _API_PATHS


def error_page(request: Request, status_code: int, headers: dict[str, str] | None = None) -> Response:
    title = _TITLES.get(status_code, N_("Something went wrong"))
    return render(request, "error.html", {"status_code": status_code, "title": title},
                  status_code=status_code, headers=headers)


def mount_web(app: FastAPI, *, location: Location | None = None) -> None:
    """Add the pages, the static files and the HTML error handling to ``app`` (built by ``create_app``)."""
    app.state.location = location if location is not None else Location()
    for module in page_modules():  # every module of zvonok.web.pages (see zvonok.web.routing)
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    api_org_error = app.exception_handlers[OrgError]
    api_validation_error = app.exception_handlers[RequestValidationError]

    async def on_login_required(request: Request, exc: Exception) -> Response:
        target = "/login?next=" + quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        if request.headers.get("hx-request"):  # htmx follows this header with a full page load
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not is_page_path(request.url.path):
            return await http_exception_handler(request, exc)
        return error_page(request, exc.status_code, dict(exc.headers or {}))

    async def on_org_error(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, OrgError)
        if not is_page_path(request.url.path):
            answer = api_org_error(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        return error_page(request, exc.status)

    async def on_validation_error(request: Request, exc: Exception) -> Any:
        # a malformed query or path (forms take strings and validate themselves)
        if not is_page_path(request.url.path):
            answer = api_validation_error(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        return error_page(request, 422)

    app.add_exception_handler(LoginRequired, on_login_required)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(OrgError, on_org_error)
