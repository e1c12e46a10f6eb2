"""The database side of the location service: load live bindings, apply batched changes."""

from __future__ import annotations

from sqlalchemy import and_, delete, or_, select

from zvonok.storage.db import Database

from .location import Binding
from .models import Registration

_FIELDS = ("aor", "expires_at", "registered_at", "q", "source", "user_agent", "call_id", "cseq", "instance",
           "reg_id")


class SqlBindingStore:
    """Implements :class:`zvonok.telephony.location.BindingStore` on the project's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, now: float) -> list[Binding]:
        async with self.db.session() as session:
            await session.execute(delete(Registration).where(Registration.expires_at <= now))
            rows = (await session.execute(select(Registration))).scalars().all()
            await session.commit()
        return [
            Binding(tenant_id=r.tenant_id, extension_id=r.extension_id, contact=r.contact,
                    **{f: getattr(r, f) for f in _FIELDS})
            for r in rows
        ]

    async def apply(self, upserts: list[Binding], deletes: list[tuple[int, int, str]]) -> None:
        if not upserts and not deletes:
            return
        async with self.db.session() as session:
            keys = [(b.extension_id, b.contact) for b in upserts] + [(e, c) for _, e, c in deletes]
            # delete-then-insert is portable (SQLite, PostgreSQL) and the batch is one transaction
            for start in range(0, len(keys), 400):
                chunk = keys[start:start + 400]
                await session.execute(delete(Registration).where(or_(*(
                    and_(Registration.extension_id == e, Registration.contact == c) for e, c in chunk
                ))))
            session.add_all(
                Registration(tenant_id=b.tenant_id, extension_id=b.extension_id, contact=b.contact,
                             **{f: getattr(b, f) for f in _FIELDS})
                for b in upserts
            )
            await session.commit()
