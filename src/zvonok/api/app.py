"""The ASGI application: org and auth routes, extra routers from other layers, health and metrics.

The app borrows ``db``; the composition root (``zvonok.server``) creates, upgrades and disposes it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

import zvonok
from zvonok.api import auth
from zvonok.api.limits import BodyLimit
from zvonok.config import Settings
from zvonok.metrics import ERRORS
from zvonok.org import http as org_http
from zvonok.org.errors import OrgError, ValidationError
from zvonok.pstn.billing_http import RATES_UPLOAD
from zvonok.storage.db import Database

log = logging.getLogger(__name__)


async def _org_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrgError)
    if isinstance(exc, ValidationError):
        # Same shape as FastAPI's own 422s, so clients parse one format.
        loc = ["body", exc.field] if exc.field else ["body"]
        return JSONResponse({"detail": [{"loc": loc, "msg": exc.message, "type": "value_error"}]}, status_code=422)
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


def create_app(settings: Settings, db: Database, *, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """Build the HTTP API. ``routers`` come from other layers (e.g. the registrar's registrations)
    and should protect themselves with :func:`zvonok.api.auth.tenant_access` / ``tenant_admin``."""
    app = FastAPI(
        title="Zvonok API",
        version=zvonok.__version__,
        description="Multi-tenant cloud PBX: companies, offices, departments, employees, extensions.",
        docs_url="/docs",
    )
    app.state.settings = settings
    app.state.db = db
    app.add_exception_handler(OrgError, _org_error)
    method, path = RATES_UPLOAD
    app.add_middleware(BodyLimit, default=settings.http_max_body, larger=[(method, path, settings.http_max_upload)])

    app.include_router(auth.router)
    app.include_router(org_http.router)
    for router in routers:
        app.include_router(router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        try:
            async with db.session() as session:
                await session.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:  # "not healthy", never a 500 traceback
            ERRORS.labels(where="healthz").inc()
            log.warning("health check failed: %s", exc)
            raise HTTPException(503, "database unavailable") from None
        return {"status": "ok"}

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
