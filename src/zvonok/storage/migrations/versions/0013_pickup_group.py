"""extensions.pickup_group: the call pickup group (*8); NULL: the extension's department

Revision ID: 0013
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('extensions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pickup_group', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('extensions', schema=None) as batch_op:
        batch_op.drop_column('pickup_group')
