"""The operator's tariffs (platform admins): the list, a new tariff, and a rate deck imported from a CSV
upload with a progress bar.

An import runs as a background task on the server's loop, in its own database session: it calls
:func:`zvonok.pstn.service.replace_rates` (the API's import: the whole deck or nothing, parsed in a
thread) and follows its progress callback. The upload answers at once with a progress block that htmx
polls every second until the task ends; the result then lists every rejected row with its reason, or
the number of rates imported. Jobs live in memory on this process (``app.state.rate_imports``, the
last :data:`KEEP_JOBS`), named by an unguessable id.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_db, get_session
from zvonok.billing.rates_csv import RowError
from zvonok.org.errors import OrgError
from zvonok.pstn import schemas as s
from zvonok.pstn import service
from zvonok.storage.db import Database
from zvonok.web.auth import PlatformAdminUser
from zvonok.web.i18n import N_
from zvonok.web.pages._pstn import field_errors, service_error
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import OPERATOR, NavItem, page_router

log = logging.getLogger(__name__)
router = page_router()
NAV = [NavItem("/operator/tariffs", N_("Tariffs"), OPERATOR, order=80)]
Session = Annotated[AsyncSession, Depends(get_session)]
KEEP_JOBS = 20  # finished imports remembered for their result pages
SHOWN_ERRORS = 200  # rejected rows listed on the page (the total is always given)
RATES_SHOWN = 50


@dataclass
class RateImportJob:
    id: str
    tariff_id: int
    filename: str
    stage: str = "queued"  # queued | checking | writing | done | rejected | failed
    done: int = 0
    total: int = 0
    imported: int = 0
    errors: list[RowError] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.stage in ("done", "rejected", "failed")

    def progress(self, stage: str, done: int, total: int) -> None:
        # called from the parsing thread and from the loop: plain assignments only
        self.stage, self.done, self.total = stage, done, total


def _jobs(request: Request) -> dict[str, RateImportJob]:
    jobs: dict[str, RateImportJob] | None = getattr(request.app.state, "rate_imports", None)
    if jobs is None:
        jobs = request.app.state.rate_imports = {}
    return jobs


async def _run(db: Database, job: RateImportJob, data: bytes) -> None:
    try:
        async with db.session() as session:
            result = await service.replace_rates(session, job.tariff_id, data, on_progress=job.progress)
            if result.ok:
                await session.commit()
                job.imported, job.stage = len(result.rates), "done"
            else:
                job.errors = list(result.errors)
                job.stage = "rejected"
    except Exception:  # the job's page must say it ended, whatever ended it
        log.exception("rate import %s into tariff %s failed", job.id, job.tariff_id)
        job.stage = "failed"


def _import_context(request: Request, job: RateImportJob) -> dict[str, Any]:
    """The import block's context: the rejected rows' problems in the reader's language (the deck checker
    says them as templates: :class:`~zvonok.billing.rates_csv.RowError`)."""
    _ = gettext_for(request)
    shown = [(e.line, _(e.template).format(**dict(e.params))) for e in job.errors[:SHOWN_ERRORS]]
    return {"job": job, "shown": SHOWN_ERRORS, "row_errors": shown}


def _start(request: Request, tariff_id: int, filename: str, data: bytes) -> RateImportJob:
    jobs = _jobs(request)
    for old in [j for j in jobs.values() if j.finished][: max(0, len(jobs) - KEEP_JOBS + 1)]:
        del jobs[old.id]
    job = RateImportJob(id=secrets.token_urlsafe(12), tariff_id=tariff_id, filename=filename)
    jobs[job.id] = job
    job.task = asyncio.get_running_loop().create_task(_run(get_db(request), job, data))
    return job


# --- pages -----------------------------------------------------------------------------------------
async def _list_context(session: AsyncSession) -> dict[str, Any]:
    rows, total = await service.platform_list_tariffs(session, limit=500)
    return {"tariffs": rows, "total": total, "counts": await service.rate_counts(session, [t.id for t in rows])}


def _tariff_messages(request: Request) -> dict[str, str]:
    _ = gettext_for(request)
    return {"name": _("Required; no line breaks or control characters."),
            "currency": _("A three-letter currency code such as RUB or EUR."),
            "time_zone": _("A time zone such as Europe/Moscow.")}


_NEW_TARIFF = {"name": "", "currency": "RUB", "time_zone": "Europe/Moscow"}


@router.get("/operator/tariffs")
async def tariffs(request: Request, user: PlatformAdminUser, session: Session) -> Response:
    context = await _list_context(session)
    context.update(form=_NEW_TARIFF, errors={})
    return render(request, "pstn/tariffs.html", context)


@router.post("/operator/tariffs")
async def create_tariff(
    request: Request, user: PlatformAdminUser, session: Session,
    name: Annotated[str, Form(max_length=300)] = "",
    currency: Annotated[str, Form(max_length=8)] = "",
    time_zone: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    _ = gettext_for(request)
    form = {"name": name, "currency": currency, "time_zone": time_zone}
    try:
        data = s.TariffCreate(name=name, currency=currency.strip().upper(), time_zone=time_zone.strip())
        tariff = await service.platform_create_tariff(session, data)
        await session.commit()
    except PydanticValidationError as exc:
        errors, status = field_errors(exc, _tariff_messages(request), _("Invalid value.")), 422
    except OrgError as exc:
        await session.rollback()
        errors = service_error(exc, _tariff_messages(request), _("Invalid value."), _("Changed meanwhile: try again."))
        status = exc.status
    else:
        return RedirectResponse(f"/operator/tariffs/{tariff.id}", status_code=303)
    context = await _list_context(session)
    context.update(form=form, errors=errors)
    return render(request, "pstn/tariffs.html", context, status_code=status)


@router.get("/operator/tariffs/{tariff_id}")
async def tariff(request: Request, tariff_id: int, user: PlatformAdminUser, session: Session,
                 prefix: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    found = await service.platform_get_tariff(session, tariff_id)
    rates, total = await service.list_rates(session, tariff_id, prefix=prefix, limit=RATES_SHOWN)
    return render(request, "pstn/tariff.html", {"tariff": found, "rates": rates, "rate_total": total,
                                                "prefix": prefix or "", "job": None, "error": None})


@router.post("/operator/tariffs/{tariff_id}/rates")
async def import_rates(request: Request, tariff_id: int, user: PlatformAdminUser, session: Session,
                       file: Annotated[UploadFile | None, File()] = None) -> Response:
    found = await service.platform_get_tariff(session, tariff_id)  # a missing tariff: 404 before anything
    data = await file.read() if file is not None else b""
    if not data:
        rates, total = await service.list_rates(session, tariff_id, limit=RATES_SHOWN)
        return render(request, "pstn/tariff.html", {
            "tariff": found, "rates": rates, "rate_total": total, "prefix": "", "job": None,
            "error": gettext_for(request)("Choose a CSV file with the rates.")}, status_code=422)
    job = _start(request, tariff_id, (file.filename if file else None) or "rates.csv", data)
    if request.headers.get("hx-request"):
        return render(request, "pstn/_import.html", _import_context(request, job))
    return RedirectResponse(f"/operator/tariffs/imports/{job.id}", status_code=303)


@router.get("/operator/tariffs/imports/{job_id}")
async def import_progress(request: Request, job_id: str, user: PlatformAdminUser, session: Session) -> Response:
    """The import's progress block (htmx polls it until the job ends), or a whole page when opened."""
    job = _jobs(request).get(job_id)
    if job is None:
        raise HTTPException(404, "no such import")
    context = _import_context(request, job)
    if request.headers.get("hx-request"):
        return render(request, "pstn/_import.html", context)
    found = await service.platform_get_tariff(session, job.tariff_id)
    rates, total = await service.list_rates(session, job.tariff_id, limit=RATES_SHOWN)
    return render(request, "pstn/tariff.html", {**context, "tariff": found, "rates": rates, "rate_total": total,
                                                "prefix": "", "error": None})
