"""sip_registrations.path (RFC 3327 Path values) and client (the phone's address behind a trusted edge)

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sip_registrations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('path', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('client', sa.String(length=64), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('sip_registrations', schema=None) as batch_op:
        batch_op.drop_column('client')
        batch_op.drop_column('path')
