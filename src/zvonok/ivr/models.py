"""The IVR menu table: one row per menu of a tenant; a menu's keys and final targets are JSON
destinations (``{"kind": ..., <payload>}``, see :mod:`zvonok.ivr.destinations`). The greeting is an
uploaded file (``has_upload``, the file in the data directory) or text spoken by espeak-ng in ``voice``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zvonok.storage.base import Base, TenantScoped, Timestamped


class IvrMenu(TenantScoped, Timestamped, Base):
    __tablename__ = "ivr_menus"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    prompt_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    voice: Mapped[str] = mapped_column(String(8), default="ru")
    has_upload: Mapped[bool] = mapped_column(Boolean, default=False)
    keys: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    direct_dial: Mapped[bool] = mapped_column(Boolean, default=False)
    timeout: Mapped[int] = mapped_column(Integer, default=5)
    digit_timeout: Mapped[int] = mapped_column(Integer, default=3)
    retries: Mapped[int] = mapped_column(Integer, default=2)
    repeat_key: Mapped[str | None] = mapped_column(String(1), nullable=True)
    timeout_destination: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    invalid_destination: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
