"""The fax documents table: one row per fax received on a DID or sent through a trunk.

A document's pages are files under ``<data_dir>/fax/<tenant>/``: ``<id>.tif`` (TIFF-F, what spandsp
wrote or read) and ``<id>.pdf`` (for people); the row keeps their paths relative to ``<data_dir>/fax``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from zvonok.storage.base import Base, TenantScoped, Timestamped

DIRECTIONS = ("in", "out")
# in: receiving → received | failed;  out: queued → sending → sent | failed (queued again on busy)
STATUSES = ("receiving", "received", "queued", "sending", "sent", "failed")


class FaxDocument(TenantScoped, Timestamped, Base):
    __tablename__ = "fax_documents"
    __table_args__ = (
        CheckConstraint("direction IN ('in', 'out')", name="direction"),
        CheckConstraint(
            "status IN ('receiving', 'received', 'queued', 'sending', 'sent', 'failed')", name="status"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    direction: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(10))
    remote_number: Mapped[str] = mapped_column(String(64), default="")  # the caller's, or where it goes
    local_number: Mapped[str] = mapped_column(String(64), default="")  # our DID
    remote_ident: Mapped[str] = mapped_column(String(32), default="")  # the other machine's T.30 ident
    pages: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[str] = mapped_column(String(200), default="")  # T.30's completion text, or why not
    call_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tiff_path: Mapped[str] = mapped_column(String(255), default="")
    pdf_path: Mapped[str] = mapped_column(String(255), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    transport: Mapped[str] = mapped_column(String(8), default="audio", server_default="audio")  # audio | t38
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
