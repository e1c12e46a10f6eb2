"""``monitor_audit``: one row per start, mode change, stop or refusal of supervisor monitoring
(telephony/monitor.py) — who (the supervisor's extension, or the API account), whom (the extension),
which call, when, which mode, and how (feature code, key, API)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from zvonok.storage.base import Base, TenantScoped


class MonitorAudit(TenantScoped, Base):
    __tablename__ = "monitor_audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str | None] = mapped_column(String(32), index=True)
    call_id: Mapped[str | None] = mapped_column(String(64))
    supervisor: Mapped[str] = mapped_column(String(64))
    agent: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))  # start | mode | stop | refused
    mode: Mapped[str | None] = mapped_column(String(16))
    via: Mapped[str] = mapped_column(String(16))  # feature_code | dtmf | api | system
    detail: Mapped[str] = mapped_column(String(200), default="")
    at: Mapped[datetime] = mapped_column(index=True)
