"""srtp: per-extension and per-trunk SRTP policy (required | optional | off; NULL: the server's default)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('extensions', 'trunks'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('srtp', sa.String(length=8), nullable=True))


def downgrade() -> None:
    for table in ('trunks', 'extensions'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('srtp')
