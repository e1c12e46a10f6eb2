"""ring_groups: a tenant's ring groups (members, strategy, ring times, no-answer destination, round-robin
memory); cdrs.ring_group

Revision ID: 0012
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'ring_groups',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('number', sa.String(length=8), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('strategy', sa.String(length=16), nullable=False),
        sa.Column('ring_seconds', sa.Integer(), nullable=False),
        sa.Column('max_seconds', sa.Integer(), nullable=True),
        sa.Column('members', sa.JSON(), nullable=False),
        sa.Column('no_answer', sa.JSON(), nullable=True),
        sa.Column('last_answered', sa.String(length=32), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_ring_groups_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ring_groups')),
        sa.UniqueConstraint('tenant_id', 'number', name=op.f('uq_ring_groups_tenant_id_number')),
    )
    op.create_index(op.f('ix_ring_groups_tenant_id'), 'ring_groups', ['tenant_id'], unique=False)
    with op.batch_alter_table('cdrs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ring_group', sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('cdrs', schema=None) as batch_op:
        batch_op.drop_column('ring_group')
    op.drop_index(op.f('ix_ring_groups_tenant_id'), table_name='ring_groups')
    op.drop_table('ring_groups')
