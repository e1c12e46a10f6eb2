"""accounts and API tokens: the role 'supervisor' (the call center's supervisor) joins the role CHECK

Revision ID: 0029
Revises: 0022
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0022"
branch_labels = None
depends_on = None

_OLD = "role IN ('platform_admin', 'tenant_admin', 'employee')"
_NEW = "role IN ('platform_admin', 'tenant_admin', 'supervisor', 'employee')"


def _replace(check: str) -> None:
    # SQLite cannot alter a constraint: batch mode copies the table with the new CHECK (the named one is
    # dropped first so the copy does not carry the old one); PostgreSQL drops and adds it in place.
    # With foreign keys on (they are, and a PRAGMA cannot change inside the migration's transaction),
    # dropping the old ``accounts`` runs its ON DELETE actions: every API token would lose the account it
    # belongs to (``account_id`` SET NULL). The links are read first and put back after the copy.
    conn = op.get_bind()
    owners = conn.execute(sa.text("SELECT id, account_id FROM api_tokens WHERE account_id IS NOT NULL")).all()
    for table in ("accounts", "api_tokens"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_role"), type_="check")
            batch.create_check_constraint(op.f(f"ck_{table}_role"), check)
    for token_id, account_id in owners:
        conn.execute(sa.text("UPDATE api_tokens SET account_id = :a WHERE id = :t"), {"a": account_id, "t": token_id})


def upgrade() -> None:
    _replace(_NEW)


def downgrade() -> None:
    # Supervisors become employees first: the old CHECK would refuse their rows.
    op.execute("UPDATE accounts SET role = 'employee' WHERE role = 'supervisor'")
    op.execute("UPDATE api_tokens SET role = 'employee' WHERE role = 'supervisor'")
    _replace(_OLD)
