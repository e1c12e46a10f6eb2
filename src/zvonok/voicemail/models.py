"""Voicemail tables: one mailbox per extension (optional: no row, no voicemail) and its messages.

A message's audio is a WAV file under ``<data_dir>/voicemail/<tenant>/<mailbox>/``; the row keeps its
path relative to ``<data_dir>/voicemail`` with the caller, time, duration, read flag and folder. The PIN
is an argon2 hash (:mod:`zvonok.org.pins`), never stored in clear. Greetings are files beside the
messages (``greeting-busy.wav`` / ``greeting-unavailable.wav``), flagged here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from zvonok.mail.models import TenantSmtp
from zvonok.storage.base import Base, TenantScoped, Timestamped, utcnow

FOLDERS = ("inbox", "saved")
ATTACH_FORMATS = ("wav", "mp3")
EMAIL_AUDIO = ("attach", "link")  # the e-mail carries the recording, or only a link to the web portal


class Mailbox(TenantScoped, Timestamped, Base):
    __tablename__ = "voicemail_boxes"
    __table_args__ = (UniqueConstraint("tenant_id", "extension_id"),
                      CheckConstraint("attach_format IN ('wav', 'mp3')", name="attach_format"),
                      CheckConstraint("email_audio IN ('attach', 'link')", name="email_audio"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    extension_id: Mapped[int] = mapped_column(ForeignKey("extensions.id", ondelete="CASCADE"), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    pin_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)  # NULL: no voicemail to e-mail
    attach_format: Mapped[str] = mapped_column(String(4), default="wav")  # the e-mail's attachment: wav | mp3
    email_audio: Mapped[str] = mapped_column(String(6), default="attach", server_default="attach")
    # the message is deleted once its e-mail went (the recording attached: the e-mail is the copy kept)
    delete_after_email: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    max_message_seconds: Mapped[int] = mapped_column(Integer, default=180)
    silence_seconds: Mapped[int] = mapped_column(Integer, default=5)  # 0: silence does not end a message
    greeting_busy: Mapped[bool] = mapped_column(Boolean, default=False)
    greeting_unavailable: Mapped[bool] = mapped_column(Boolean, default=False)


class VoicemailMessage(TenantScoped, Base):
    __tablename__ = "voicemail_messages"
    __table_args__ = (
        CheckConstraint("folder IN ('inbox', 'saved')", name="folder"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("voicemail_boxes.id", ondelete="CASCADE"), index=True)
    caller_number: Mapped[str] = mapped_column(String(64), default="")
    caller_name: Mapped[str] = mapped_column(String(200), default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    duration: Mapped[float] = mapped_column(Float, default=0.0)
    read: Mapped[bool] = mapped_column(Boolean, default=False)
    folder: Mapped[str] = mapped_column(String(8), default="inbox")
    path: Mapped[str] = mapped_column(String(255))
    call_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


__all__ = ["ATTACH_FORMATS", "EMAIL_AUDIO", "FOLDERS", "Mailbox", "TenantSmtp", "VoicemailMessage"]
