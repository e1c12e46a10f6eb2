"""crm search at a million clients: prefix indexes for word fragments (SQLite FTS5 ``prefix``) and a
substring index of phone digits (SQLite: an FTS5 trigram table kept by triggers; PostgreSQL: a pg_trgm
GIN index, where the extension can be created)

Revision ID: 0027
Revises: 0018
"""

from __future__ import annotations

import logging

from alembic import op
from sqlalchemy.exc import DBAPIError

revision = '0027'
down_revision = '0018'
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)
_FTS = "fts5 (body, tenant_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 0'{prefix})"
_PHONE_ROW = "new.id, new.digits, new.tenant_id, new.client_id"
_PHONE_DROP = ("INSERT INTO crm_search_digits (crm_search_digits, rowid, digits, tenant_id, client_id) "
               "VALUES ('delete', old.id, old.digits, old.tenant_id, old.client_id);")
_PHONE_ADD = f"INSERT INTO crm_search_digits (rowid, digits, tenant_id, client_id) VALUES ({_PHONE_ROW});"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        try:
            with bind.begin_nested():  # a savepoint: a role that may not create extensions keeps LIKE scans
                op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                op.execute("CREATE INDEX crm_search_phone_digits ON crm_phones USING gin (digits gin_trgm_ops)")
        except DBAPIError as exc:
            log.warning("pg_trgm is not available (%s): number fragments are searched by a scan", exc.orig)
        return
    # FTS5 options are fixed at creation: a new table with prefix indexes of 2-5 characters, the rows copied
    prefixed = _FTS.format(prefix=", prefix = '2 3 4 5'")
    op.execute(f"CREATE VIRTUAL TABLE crm_search_new USING {prefixed}")
    op.execute("INSERT INTO crm_search_new (rowid, body, tenant_id) SELECT rowid, body, tenant_id FROM crm_search")
    op.execute("DROP TABLE crm_search")
    op.execute("ALTER TABLE crm_search_new RENAME TO crm_search")
    # phone digits by trigrams, an external-content index of crm_phones kept current by triggers
    op.execute("CREATE VIRTUAL TABLE crm_search_digits USING fts5 (digits, tenant_id UNINDEXED, client_id UNINDEXED, "
               "tokenize = 'trigram', content = 'crm_phones', content_rowid = 'id')")
    op.execute("INSERT INTO crm_search_digits (crm_search_digits) VALUES ('rebuild')")
    op.execute(f"CREATE TRIGGER crm_search_digits_ai AFTER INSERT ON crm_phones BEGIN {_PHONE_ADD} END")
    op.execute(f"CREATE TRIGGER crm_search_digits_ad AFTER DELETE ON crm_phones BEGIN {_PHONE_DROP} END")
    op.execute(f"CREATE TRIGGER crm_search_digits_au AFTER UPDATE ON crm_phones BEGIN {_PHONE_DROP} {_PHONE_ADD} END")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP INDEX IF EXISTS crm_search_phone_digits")
        return
    for trigger in ("ai", "ad", "au"):
        op.execute(f"DROP TRIGGER IF EXISTS crm_search_digits_{trigger}")
    op.execute("DROP TABLE IF EXISTS crm_search_digits")
    op.execute(f"CREATE VIRTUAL TABLE crm_search_old USING {_FTS.format(prefix='')}")
    op.execute("INSERT INTO crm_search_old (rowid, body, tenant_id) SELECT rowid, body, tenant_id FROM crm_search")
    op.execute("DROP TABLE crm_search")
    op.execute("ALTER TABLE crm_search_old RENAME TO crm_search")
