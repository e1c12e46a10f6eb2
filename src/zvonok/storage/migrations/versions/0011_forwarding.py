"""extensions: call forwarding (CFU, CFB, CFNA, unavailable) and DND; cdrs.forwarded_from

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('extensions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dnd', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('forward_unconditional', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('forward_busy', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('forward_no_answer', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('forward_no_answer_seconds', sa.Integer(), nullable=False,
                                      server_default='20'))
        batch_op.add_column(sa.Column('forward_unavailable', sa.String(length=32), nullable=True))
    with op.batch_alter_table('cdrs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('forwarded_from', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('cdrs', schema=None) as batch_op:
        batch_op.drop_column('forwarded_from')
    with op.batch_alter_table('extensions', schema=None) as batch_op:
        for name in ('forward_unavailable', 'forward_no_answer_seconds', 'forward_no_answer', 'forward_busy',
                     'forward_unconditional', 'dnd'):
            batch_op.drop_column(name)
