"""Tables of the telephony layer: persisted SIP registrations (the location service's durable copy)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from zvonok.storage.base import Base, TenantScoped


class Registration(TenantScoped, Base):
    """One contact bound to an extension by REGISTER; expired rows are deleted by the server."""

    __tablename__ = "sip_registrations"
    __table_args__ = (UniqueConstraint("extension_id", "contact"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    extension_id: Mapped[int] = mapped_column(ForeignKey("extensions.id", ondelete="CASCADE"), index=True)
    aor: Mapped[str] = mapped_column(String(255))
    contact: Mapped[str] = mapped_column(String(1024))
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    registered_at: Mapped[float] = mapped_column(Float)
    q: Mapped[float | None] = mapped_column(Float, nullable=True)
    source: Mapped[str] = mapped_column(String(128))
    user_agent: Mapped[str] = mapped_column(String(255))
    call_id: Mapped[str] = mapped_column(String(255))
    cseq: Mapped[int] = mapped_column(BigInteger)  # CSeq numbers go up to 2**32 - 1
    instance: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reg_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # RFC 3327 Path values, one per line (a name-addr holds no line break); None: registered directly
    path: Mapped[str | None] = mapped_column(Text, nullable=True)
    client: Mapped[str] = mapped_column(String(64), default="", server_default="")  # behind a trusted edge
