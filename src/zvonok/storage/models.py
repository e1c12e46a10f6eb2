"""Imports every table module so ``Base.metadata`` is complete (Alembic env, autogenerate, tests).

Add one import line per domain that defines tables (e.g. ``zvonok.telephony.models`` for registrations).
"""

from __future__ import annotations

import zvonok.callcenter.models  # noqa: F401
import zvonok.cdr.models  # noqa: F401
import zvonok.conference.models  # noqa: F401
import zvonok.crm.models  # noqa: F401
import zvonok.fax.models  # noqa: F401
import zvonok.ivr.models  # noqa: F401
import zvonok.mail.models  # noqa: F401
import zvonok.monitoring.models  # noqa: F401
import zvonok.org.models  # noqa: F401
import zvonok.originates.models  # noqa: F401
import zvonok.pstn.models  # noqa: F401
import zvonok.ringgroup.models  # noqa: F401
import zvonok.storage.changes  # noqa: F401
import zvonok.storage.jobs  # noqa: F401
import zvonok.telephony.models  # noqa: F401
import zvonok.voicemail.models  # noqa: F401
import zvonok.webhooks.models  # noqa: F401
from zvonok.storage.base import Base

metadata = Base.metadata

# Tables a migration makes outside the metadata: each backend's native full-text index of the CRM (an
# FTS5 virtual table and its shadow tables on SQLite, a tsvector table on PostgreSQL; zvonok.crm.search).
NATIVE_TABLE_PREFIX = "crm_search"


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's ``include_name``: schema comparisons leave the native search tables and indexes alone."""
    return not (type_ in ("table", "index") and name is not None and name.startswith(NATIVE_TABLE_PREFIX))


__all__ = ["Base", "include_name", "metadata"]
