"""Storage: SQLAlchemy 2 (async) engine, sessions and Alembic migrations."""
