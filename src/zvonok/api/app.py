"""The ASGI application: org and auth routes, extra routers from other layers, health and metrics.

The app borrows ``db``; the composition root (``zvonok.server``) creates, upgrades and disposes it.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable, Sequence

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

import zvonok
from zvonok.api import auth
from zvonok.api.deps import ids_in_range, no_nul_characters
from zvonok.api.limits import BodyLimit
from zvonok.api.login_guard import LoginGuard
from zvonok.config import Settings
from zvonok.crm.http import CLIENTS_UPLOAD
from zvonok.fax.http import UPLOAD as FAX_UPLOAD
from zvonok.ivr.http import UPLOAD as IVR_UPLOAD
from zvonok.metrics import ERRORS
from zvonok.org import http as org_http
from zvonok.org import quotas
from zvonok.org.errors import OrgError, ValidationError
from zvonok.pstn.billing_http import RATES_UPLOAD
from zvonok.storage.db import Database
from zvonok.telephony.hold_music_http import UPLOAD as HOLD_MUSIC_UPLOAD
from zvonok.voicemail.http import UPLOAD as GREETING_UPLOAD

log = logging.getLogger(__name__)


async def _org_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrgError)
    if isinstance(exc, ValidationError):
        # Same shape as FastAPI's own 422s, so clients parse one format.
        loc = ["body", exc.field] if exc.field else ["body"]
        return JSONResponse({"detail": [{"loc": loc, "msg": exc.message, "type": "value_error"}]}, status_code=422)
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 without the ``input`` of each error: a rejected body may hold a password, a PIN or
    a token, and an answer must never echo a secret back (into logs, proxies, browser histories)."""
    assert isinstance(exc, RequestValidationError)
    errors = [{k: v for k, v in err.items() if k != "input"} for err in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def _metrics_guard(settings: Settings) -> Callable[[Request], None]:
    """/metrics for the allowed networks only (loopback by default) and, with a token set, its bearer."""
    networks = [ipaddress.ip_network(n, strict=False) for n in settings.metrics_allow]
    expected = f"Bearer {settings.metrics_token}".encode() if settings.metrics_token else None

    def check(request: Request) -> None:
        try:
            addr = ipaddress.ip_address(request.client.host) if request.client else None
        except ValueError:
            addr = None
        if addr is None or not any(addr in net for net in networks):
            raise HTTPException(403, "metrics are not served to this address")
        given = request.headers.get("authorization", "").encode()
        if expected is not None and not hmac.compare_digest(given, expected):
            raise HTTPException(401, "metrics need the metrics token", headers={"WWW-Authenticate": "Bearer"})

    return check


def create_app(settings: Settings, db: Database, *, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """Build the HTTP API. ``routers`` come from other layers (e.g. the registrar's registrations)
    and should protect themselves with :func:`zvonok.api.auth.tenant_access` / ``tenant_admin``."""
    app = FastAPI(
        title="Zvonok API",
        version=zvonok.__version__,
        description="Multi-tenant cloud PBX: companies, offices, departments, employees, extensions.",
        docs_url="/docs",
        dependencies=[Depends(ids_in_range), Depends(no_nul_characters)],
    )
    app.state.settings = settings
    app.state.db = db
    quotas.configure(settings.tenant_quotas)
    app.state.login_guard = LoginGuard(settings)
    app.add_exception_handler(OrgError, _org_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    web_upload = ("POST", "/operator/tariffs/[^/]+/rates")  # the same deck uploaded in the web console
    web_music = ("POST", "/settings/music")  # music on hold uploaded in the web console
    web_ivr = ("POST", "/ivr/[^/]+/greeting")  # an IVR greeting uploaded in the web console
    web_clients = ("POST", "/crm/import")  # clients' CSV uploaded in the web console
    web_greeting = ("POST", "/(me/)?extensions/[^/]+/mailbox/greetings/[^/]+")  # a mailbox greeting, ditto
    uploads = [(method, path, settings.http_max_upload)
               for method, path in (RATES_UPLOAD, HOLD_MUSIC_UPLOAD, GREETING_UPLOAD, IVR_UPLOAD, web_upload,
                                    web_music, web_ivr, FAX_UPLOAD, CLIENTS_UPLOAD, web_clients, web_greeting)]
    app.add_middleware(BodyLimit, default=settings.http_max_body, larger=uploads)

    app.include_router(auth.router)
    app.include_router(org_http.router)
    for router in routers:
        app.include_router(router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """200 while the database answers. With a bus between nodes (NATS) also ``bus``: ``up`` or
        ``down``, and ``status`` ``degraded`` while it is down: the node still takes calls and
        registrations (the call events for the other nodes wait), so it is not to be restarted or taken out
        of the edge for that."""
        try:
            async with db.session() as session:
                await session.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:  # "not healthy", never a 500 traceback
            ERRORS.labels(where="healthz").inc()
            log.warning("health check failed: %s", exc)
            raise HTTPException(503, "database unavailable") from None
        bus_connected = getattr(app.state, "bus_connected", None)
        if bus_connected is None:
            return {"status": "ok"}
        up = bool(bus_connected())
        return {"status": "ok" if up else "degraded", "bus": "up" if up else "down"}

    @app.get("/metrics", tags=["ops"], include_in_schema=False, dependencies=[Depends(_metrics_guard(settings))])
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
