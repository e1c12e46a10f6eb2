"""change_log: committed domain events for the other processes (zvonok.storage.changes)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'change_log',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('origin', sa.String(length=32), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_change_log')),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f('ix_change_log_at'), 'change_log', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_change_log_at'), table_name='change_log')
    op.drop_table('change_log')
