"""Alembic environment. At runtime :func:`zvonok.storage.db.run_migrations` passes an open connection
in ``config.attributes["connection"]``; developers can also run ``alembic`` with
``-x url=sqlite:///path`` (a sync URL) to autogenerate a new revision against ``Base.metadata``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from zvonok.storage.models import include_name, metadata

config = context.config


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=True,  # SQLite ALTER support through table copies
        compare_type=True,
        include_name=include_name,  # the CRM's native search tables are no model's
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("pass -x url=<sync SQLAlchemy URL> or run through zvonok.storage.db")
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)
