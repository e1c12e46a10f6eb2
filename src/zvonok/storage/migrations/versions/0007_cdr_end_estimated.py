"""cdr: end_estimated (an interrupted call's end is its last heartbeat)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cdrs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('end_estimated', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('cdrs', schema=None) as batch_op:
        batch_op.drop_column('end_estimated')
