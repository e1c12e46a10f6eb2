"""The mail outbox: one row per letter to send (voicemail messages, received faxes ...), and a company's
own SMTP server.

A row names what it carries by ``kind`` and ``ref_id`` (a voicemail message, a fax document, a CRM e-mail):
the job asks the kind's composer for subject, body and attachment when it sends, so nothing is copied
into the row but the recipients. ``state``: pending → sent | failed (attempts used up) | dropped (the
thing it carries was deleted before it went).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from zvonok.storage.base import Base, TenantScoped, Timestamped, utcnow

STATES = ("pending", "sent", "failed", "dropped")
MAX_RECIPIENTS = 10


class OutboxLetter(TenantScoped, Timestamped, Base):
    __tablename__ = "mail_outbox"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'sent', 'failed', 'dropped')", name="state"),
        Index("ix_mail_outbox_state_next_at", "state", "next_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # a composer's name: voicemail, fax, crm
    ref_id: Mapped[int] = mapped_column(Integer)
    recipients: Mapped[str] = mapped_column(String(2600))  # addresses, comma-separated (at most MAX_RECIPIENTS)
    state: Mapped[str] = mapped_column(String(8), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str] = mapped_column(String(200), default="")
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)


class TenantSmtp(TenantScoped, Timestamped, Base):
    """A company's own SMTP server for its e-mails (instead of the platform's ZVONOK_SMTP_*).

    The password is kept as given (the server must present it to the SMTP server): the database is as
    sensitive as the platform's environment for it. (The table keeps its first name, ``voicemail_smtp``.)
    """

    __tablename__ = "voicemail_smtp"
    __table_args__ = (UniqueConstraint("tenant_id"),
                      CheckConstraint("security IN ('none', 'starttls', 'tls')", name="security"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer, default=25)
    username: Mapped[str | None] = mapped_column(String(254), nullable=True)
    password: Mapped[str | None] = mapped_column(String(254), nullable=True)
    security: Mapped[str] = mapped_column(String(8), default="none")
    sender: Mapped[str] = mapped_column(String(254))
