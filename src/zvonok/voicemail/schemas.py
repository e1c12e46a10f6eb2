"""Pydantic schemas of the voicemail API. The PIN is write-only: answers say ``has_pin``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from zvonok.org.schemas import Email

MailboxPin = Annotated[str, StringConstraints(pattern=r"^[0-9]{4,8}$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MailboxIn(_In):
    """PUT replaces the settings (a PIN left out is kept; null removes it)."""

    enabled: bool = True
    pin: MailboxPin | None = Field(default=None, description="Write-only: 4-8 digits asked by *97 / *98")
    email: Email | None = Field(default=None, description="New messages are sent here (the audio attached)")
    attach_format: Literal["wav", "mp3"] = Field(default="wav", description="The e-mail's attachment: WAV as "
                                                 "recorded, or MP3 (about a tenth of the size)")
    email_audio: Literal["attach", "link"] = Field(default="attach", description="attach: the recording is in "
                                                   "the e-mail; link: only a link to it in the web portal")
    delete_after_email: bool = Field(default=False, description="Delete the message once its e-mail went (the "
                                     "recording must be attached: the e-mail is then the only copy)")
    max_message_seconds: int = Field(default=180, ge=10, le=600)
    silence_seconds: int = Field(default=5, ge=0, le=60, description="0: silence does not end a message")

    @model_validator(mode="after")
    def _kept_somewhere(self) -> MailboxIn:
        if self.delete_after_email and not self.email:
            raise ValueError("delete_after_email: needs an e-mail address (the message would be lost)")
        if self.delete_after_email and self.email_audio == "link":
            raise ValueError("delete_after_email: the e-mail must carry the recording, not a link to a deleted one")
        return self


class MailboxOut(BaseModel):
    id: int
    tenant_id: int
    extension_id: int
    number: str
    enabled: bool
    has_pin: bool
    email: str | None
    attach_format: str
    email_audio: str
    delete_after_email: bool
    max_message_seconds: int
    silence_seconds: int
    greeting_busy: bool
    greeting_unavailable: bool
    new_messages: int
    old_messages: int


class MessageOut(BaseModel):
    id: int
    mailbox_id: int
    number: str  # the mailbox's extension number
    caller_number: str
    caller_name: str
    received_at: datetime
    duration: float
    read: bool
    folder: Literal["inbox", "saved"]


class MessagePatch(_In):
    read: bool | None = None
    folder: Literal["inbox", "saved"] | None = None


class SmtpIn(_In):
    """A company's own SMTP server for voicemail e-mails (PUT replaces it; a password left out is kept)."""

    host: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=253,
                                           pattern=r"^[A-Za-z0-9.:\[\]-]+$")]
    port: int = Field(default=25, ge=1, le=65535)
    username: Annotated[str, StringConstraints(max_length=254)] | None = None
    password: Annotated[str, StringConstraints(max_length=254)] | None = Field(default=None,
                                                                              description="Write-only")
    security: Literal["none", "starttls", "tls"] = "none"
    sender: Email


class SmtpOut(BaseModel):
    host: str
    port: int
    username: str | None
    has_password: bool
    security: str
    sender: str
