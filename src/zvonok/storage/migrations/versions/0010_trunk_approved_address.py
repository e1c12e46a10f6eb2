"""trunks.approved_address: the address the API approved for a tenant trunk known by a host name

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('trunks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('approved_address', sa.String(length=45), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('trunks', schema=None) as batch_op:
        batch_op.drop_column('approved_address')
