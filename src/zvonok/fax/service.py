"""Fax documents of one tenant (the tenant is the first argument after the session), their files, and
the port the call engine keeps received faxes through (:class:`FaxStore`, no SQL in telephony).

Files live under ``<data_dir>/fax/<tenant>/``: ``<id>.tif`` (TIFF-F as spandsp wrote or reads it) and
``<id>.pdf``; rows keep their paths relative to ``<data_dir>/fax``. Converting pages (PDF ↔ TIFF) is CPU
work: it runs in a thread.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.logs import get_logger
from zvonok.mail.outbox import enqueue
from zvonok.org import quotas
from zvonok.org.errors import NotFound, ValidationError
from zvonok.org.models import Employee, Extension
from zvonok.org.scope import get_in_tenant
from zvonok.pstn.destinations import to_e164
from zvonok.storage.db import Database, emit
from zvonok.telephony.fax_app import IncomingFax
from zvonok.telephony.fax_sender import OutgoingFax

from .documents import DocumentError, pdf_to_tiff, tiff_to_pdf
from .endpoint import FaxResult
from .events import FaxQueued
from .models import FaxDocument

log = get_logger(__name__)

# a busy or unanswered number is tried again, this many times in all, after RETRY_SECONDS × attempts
MAX_ATTEMPTS = 3
RETRY_SECONDS = 60.0
RETRY_STATUSES = frozenset({408, 480, 486, 487, 600})  # no answer, unavailable, busy (here and everywhere)
MAX_PDF_BYTES = 20 * 1024 * 1024
FAX_MAIL = "fax"  # the mail outbox's kind of letter for a received fax (zvonok.fax.mailer)


class FaxFiles:
    """Where faxes keep their pages (``<data_dir>/fax``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def tenant_dir(self, tenant_id: int) -> Path:
        return self.root / str(int(tenant_id))

    def tiff(self, tenant_id: int, fax_id: int) -> Path:
        return self.tenant_dir(tenant_id) / f"{int(fax_id)}.tif"

    def pdf(self, tenant_id: int, fax_id: int) -> Path:
        return self.tenant_dir(tenant_id) / f"{int(fax_id)}.pdf"

    def relative(self, path: Path) -> str:
        return str(path.resolve().relative_to(self.root.resolve()))

    def stored(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError("a fax path outside the fax directory")
        return path


async def list_faxes(
    session: AsyncSession, tenant_id: int, *, direction: str | None = None, limit: int = 100, offset: int = 0
) -> list[FaxDocument]:
    query = select(FaxDocument).where(FaxDocument.tenant_id == tenant_id)
    if direction is not None:
        query = query.where(FaxDocument.direction == direction)
    query = query.order_by(FaxDocument.id.desc()).limit(limit).offset(offset)
    return list((await session.execute(query)).scalars())


async def get_fax(session: AsyncSession, tenant_id: int, fax_id: int) -> FaxDocument:
    return await get_in_tenant(session, FaxDocument, tenant_id, fax_id, "fax")


def _render(data: bytes, tiff: Path, pdf: Path) -> int:
    tiff.parent.mkdir(parents=True, exist_ok=True)
    pages = pdf_to_tiff(data, tiff)
    pdf.write_bytes(data)
    return pages


async def queue_send(
    session: AsyncSession, files: FaxFiles, tenant_id: int, *, number: str, pdf: bytes
) -> FaxDocument:
    """A PDF to send to ``number`` (E.164): rendered to fax pages now (a bad PDF is refused here, not
    in a call), queued; :class:`~zvonok.fax.events.FaxQueued` after the commit starts the call."""
    try:
        e164 = to_e164(number)
    except ValueError as exc:
        raise ValidationError(f"number: {exc}") from None
    if not pdf.startswith(b"%PDF"):
        raise ValidationError("file: a PDF document is expected")
    if len(pdf) > MAX_PDF_BYTES:
        raise ValidationError(f"file: at most {MAX_PDF_BYTES // (1024 * 1024)} MiB")
    # a company's unsent documents are bounded: each holds rendered pages on disk and a call to place
    await quotas.check(session, tenant_id, "queued_faxes", FaxDocument, FaxDocument.direction == "out",
                       FaxDocument.status.in_(("queued", "sending")))
    row = FaxDocument(tenant_id=tenant_id, direction="out", status="queued", remote_number=e164)
    session.add(row)
    await session.flush()
    tiff, out = files.tiff(tenant_id, row.id), files.pdf(tenant_id, row.id)
    try:
        row.pages = await asyncio.to_thread(_render, pdf, tiff, out)
    except DocumentError as exc:
        await asyncio.to_thread(tiff.unlink, True)
        raise ValidationError(f"file: {exc}") from None
    row.tiff_path = files.relative(tiff)
    row.pdf_path = files.relative(out)
    emit(session, FaxQueued(tenant_id=tenant_id, fax_id=row.id))
    return row


async def employee_fax_addresses(session: AsyncSession, tenant_id: int, extension: str) -> tuple[str, ...]:
    """Where a fax to the employee of extension ``extension`` goes: their fax address, else their e-mail
    (none: an extension of nobody's, or an employee with neither, or no such extension any more)."""
    row = (
        await session.execute(
            select(Employee.fax_email, Employee.email)
            .join(Extension, Extension.employee_id == Employee.id)
            .where(Extension.tenant_id == tenant_id, Employee.tenant_id == tenant_id, Extension.number == extension)
        )
    ).first()
    if row is None or not (row[0] or row[1]):
        log.warning("fax: nobody to mail it to", tenant=tenant_id, extension=extension)
        return ()
    return (row[0] or row[1],)


def _write_pdf(tiff: Path, pdf: Path) -> int:
    data, pages = tiff_to_pdf(tiff)
    tmp = pdf.with_suffix(".pdf.tmp")
    tmp.write_bytes(data)
    tmp.replace(pdf)
    return pages


class FaxStore:
    """:class:`~zvonok.telephony.fax_app.FaxPort` on the database and the data directory."""

    def __init__(self, db: Database, files: FaxFiles) -> None:
        self.db = db
        self.files = files

    async def begin_receive(
        self, tenant_id: int, *, call_id: str, remote_number: str, local_number: str, emails: tuple[str, ...] = (),
        extension: str | None = None,
    ) -> IncomingFax:
        async with self.db.session() as session:
            if extension is not None:
                emails = (*emails, *await employee_fax_addresses(session, tenant_id, extension))
            row = FaxDocument(
                tenant_id=tenant_id,
                direction="in",
                status="receiving",
                remote_number=remote_number[:64],
                local_number=local_number[:64],
                call_id=call_id,
            )
            session.add(row)
            await session.flush()
            tiff = self.files.tiff(tenant_id, row.id)
            row.tiff_path = self.files.relative(tiff) if tiff.is_relative_to(self.files.root) else str(tiff)
            await session.commit()
            fax_id = row.id
        await asyncio.to_thread(tiff.parent.mkdir, parents=True, exist_ok=True)
        return IncomingFax(id=fax_id, tiff=tiff, emails=emails)

    async def finish_receive(
        self, tenant_id: int, fax: IncomingFax, result: FaxResult | None, reason: str
    ) -> int:
        pdf = self.files.pdf(tenant_id, fax.id)
        pages = 0
        if fax.tiff.exists():
            try:
                pages = await asyncio.to_thread(_write_pdf, fax.tiff, pdf)
            except DocumentError as exc:
                log.warning("fax: received pages unreadable", fax=fax.id, error=str(exc))
            except Exception:  # noqa: BLE001 - a damaged TIFF (a call cut mid-page) must not lose the row
                log.exception("fax: received pages unreadable", fax=fax.id)
        ok = result is not None and result.ok and pages > 0
        async with self.db.session() as session:
            row = await get_fax(session, tenant_id, fax.id)
            row.status = "received" if ok else "failed"
            row.pages = pages
            row.result = reason[:200]
            row.remote_ident = (result.remote_ident if result is not None else "")[:32]
            if result is not None:
                row.transport = result.transport
            row.pdf_path = self.files.relative(pdf) if pages else ""
            row.finished_at = datetime.now(UTC)
            if pages:  # the pages that arrived, even of a fax cut short, go to the destination's addresses
                enqueue(session, tenant_id, FAX_MAIL, row.id, fax.emails)
            await session.commit()
        return pages

    async def start_send(self, tenant_id: int, fax_id: int, call_id: str) -> None:
        async with self.db.session() as session:
            row = await get_fax(session, tenant_id, fax_id)
            row.status = "sending"
            row.call_id = call_id
            row.attempts += 1
            await session.commit()

    async def finish_send(
        self, tenant_id: int, fax_id: int, result: FaxResult | None, reason: str, *, status: int | None
    ) -> float | None:
        async with self.db.session() as session:
            row = await get_fax(session, tenant_id, fax_id)
            ok = result is not None and result.ok and status is None
            retry = not ok and status in RETRY_STATUSES and row.attempts < MAX_ATTEMPTS
            row.status = "sent" if ok else "queued" if retry else "failed"
            row.result = reason[:200]
            if result is not None:
                row.remote_ident = result.remote_ident[:32]
                row.transport = result.transport
            if ok:
                row.pages = result.pages_tx if result is not None else row.pages
            row.finished_at = None if retry else datetime.now(UTC)
            await session.commit()
            return RETRY_SECONDS * row.attempts if retry else None

    async def job(self, tenant_id: int, fax_id: int) -> OutgoingFax | None:
        """A queued document to send (None when it is not, or no longer, queued)."""
        async with self.db.session() as session:
            try:
                row = await get_fax(session, tenant_id, fax_id)
            except NotFound:
                return None
            if row.direction != "out" or row.status != "queued":
                return None
            return OutgoingFax(
                id=row.id,
                tenant_id=tenant_id,
                number=row.remote_number,
                tiff=self.files.stored(row.tiff_path),
            )

    async def recover(self) -> list[OutgoingFax]:
        """At start-up: faxes a stopped server left half done fail (a call does not survive it); the
        queued ones are returned, to be sent."""
        async with self.db.session() as session:
            rows = (
                (
                    await session.execute(
                        select(FaxDocument).where(FaxDocument.status.in_(("receiving", "sending", "queued")))
                    )
                )
                .scalars()
                .all()
            )  # platform path
            jobs: list[OutgoingFax] = []
            for row in rows:
                if row.status == "queued":
                    jobs.append(
                        OutgoingFax(
                            id=row.id,
                            tenant_id=row.tenant_id,
                            number=row.remote_number,
                            tiff=self.files.stored(row.tiff_path),
                        )
                    )
                else:
                    row.status = "failed"
                    row.result = "interrupted: the server stopped during the call"
                    row.finished_at = datetime.now(UTC)
            await session.commit()
            return jobs


__all__ = ["FaxFiles", "FaxStore", "NotFound", "employee_fax_addresses", "get_fax", "list_faxes", "queue_send"]
