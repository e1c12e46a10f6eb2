"""Imports every table module so ``Base.metadata`` is complete (Alembic env, autogenerate, tests).

Add one import line per domain that defines tables (e.g. ``zvonok.telephony.models`` for registrations).
"""

from __future__ import annotations

import zvonok.cdr.models  # noqa: F401
import zvonok.conference.models  # noqa: F401
import zvonok.org.models  # noqa: F401
import zvonok.pstn.models  # noqa: F401
import zvonok.ringgroup.models  # noqa: F401
import zvonok.storage.changes  # noqa: F401
import zvonok.telephony.models  # noqa: F401
from zvonok.storage.base import Base

metadata = Base.metadata

__all__ = ["Base", "metadata"]
