"""Reports → Analytics (tenant admins, as the REST routes of :mod:`zvonok.analytics.http`): the company's
analytics store — the last export (when, how long, file size, full or incremental, rows), whether one runs
or the last failed, a button to export now (its progress polled in place, no reload), the DuckDB file to
download (or, with the PostgreSQL target, where BI tools connect) and three ready queries computed from the
file (:mod:`zvonok.analytics.queries`).

The process's :class:`zvonok.analytics.runner.Exports` does the work, so the API's rules hold: one export
of a company at a time, none sooner than ``ZVONOK_ANALYTICS_MIN_INTERVAL`` after the last on-demand one
(the page says how long to wait).
"""

from __future__ import annotations

from typing import Annotated, Any

from babel.dates import format_date
from babel.numbers import format_decimal
from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy.engine import make_url

from zvonok.analytics import http as analytics_http
from zvonok.analytics.export import last_report
from zvonok.analytics.postgres import schema_of
from zvonok.analytics.queries import overview
from zvonok.analytics.runner import ExportRunning, Exports, TooSoon
from zvonok.api.deps import get_settings
from zvonok.config import Settings
from zvonok.web.auth import TenantAdminUser, WebUser
from zvonok.web.i18n import N_
from zvonok.web.render import gettext_for, locale_of, render
from zvonok.web.routing import page_router

router = page_router()
Runner = Annotated[Exports, Depends(analytics_http.get_exports)]
Config = Annotated[Settings, Depends(get_settings)]
MODES = {"full": N_("full rebuild"), "incremental": N_("incremental")}
FACTS = {"fact_calls": N_("Calls"), "fact_deals": N_("Deals"), "fact_payments": N_("Payments")}


def _size(value: int, locale: str) -> str:
    """Bytes as the reader reads them: 8.7 MB, 512 KB."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if value >= scale:
            return f"{format_decimal(round(value / scale, 1), locale=locale)} {unit}"
    return f"{value} B"


def _postgres(settings: Settings, tenant_id: int) -> dict[str, Any] | None:
    """Where a BI tool connects with the PostgreSQL target (never the PBX's own password)."""
    if settings.analytics_target != "postgres":
        return None
    url = make_url(settings.resolved_database_url())
    return {"host": url.host or "localhost", "port": url.port or 5432, "database": url.database or "",
            "schema": schema_of(tenant_id), "role": f"{schema_of(tenant_id)}_reader"}


async def _status_context(request: Request, user: WebUser, exports: Exports, settings: Settings) -> dict[str, Any]:
    locale = locale_of(request)
    report = await last_report(exports.directory, user.tenant)
    return {
        "running": exports.running(user.tenant), "report": report, "error": exports.errors.get(user.tenant),
        "size": _size(report.size, locale) if report else "", "modes": MODES, "facts": FACTS,
        "overview": await overview(exports.directory, user.tenant) if report else None,
        "postgres": _postgres(settings, user.tenant),
        "month": lambda day: format_date(day, "LLLL y", locale=locale),
        "day": lambda day: format_date(day, "EEE d MMM", locale=locale),
        "number": lambda value: format_decimal(value, locale=locale),
    }


@router.get("/reports/analytics")
async def analytics_page(request: Request, user: TenantAdminUser, exports: Runner, settings: Config) -> Response:
    return render(request, "reports/analytics.html", await _status_context(request, user, exports, settings))


@router.get("/reports/analytics/status")
async def analytics_status(request: Request, user: TenantAdminUser, exports: Runner, settings: Config) -> Response:
    """The status and the tables (the partial the page polls while an export runs)."""
    return render(request, "reports/_analytics.html", await _status_context(request, user, exports, settings))


@router.post("/reports/analytics/export")
async def analytics_export(request: Request, user: TenantAdminUser, exports: Runner, settings: Config,
                           full: Annotated[str, Form(max_length=5)] = "") -> Response:
    """Start an export; htmx gets the polled partial, a form without scripts the page again."""
    _ = gettext_for(request)
    notice, status_code = "", 200
    try:
        exports.start(user.tenant, full=full == "1")
    except ExportRunning:
        notice, status_code = _("An export of the company is running already."), 409
    except TooSoon as exc:
        minutes = max(1, (exc.retry_after + 59) // 60)
        notice, status_code = _("The last export started a moment ago: try again in %(num)s min.") % {
            "num": minutes}, 429
    if "hx-request" not in request.headers:
        if status_code == 200:
            return RedirectResponse("/reports/analytics", status_code=303)
        context = await _status_context(request, user, exports, settings)
        return render(request, "reports/analytics.html", {**context, "notice": notice}, status_code=status_code)
    context = await _status_context(request, user, exports, settings)
    # htmx swaps 2xx answers only: a refusal is shown in place with 200, its reason as the notice
    return render(request, "reports/_analytics.html", {**context, "notice": notice})


@router.get("/reports/analytics/file")
async def analytics_file(user: TenantAdminUser, exports: Runner) -> StreamingResponse:
    """The company's DuckDB file, as the API's download (the file opened first: an export finishing
    meanwhile leaves this download the old one)."""
    return analytics_http.file_response(exports, user.tenant)
