"""conference_rooms: a tenant's numbered conference rooms (PIN hashes, wait-for-moderator, size limit)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'conference_rooms',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('number', sa.String(length=8), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('pin_hash', sa.String(length=255), nullable=True),
        sa.Column('moderator_pin_hash', sa.String(length=255), nullable=True),
        sa.Column('wait_for_moderator', sa.Boolean(), nullable=False),
        sa.Column('max_members', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_conference_rooms_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_conference_rooms')),
        sa.UniqueConstraint('tenant_id', 'number', name=op.f('uq_conference_rooms_tenant_id_number')),
    )
    op.create_index(op.f('ix_conference_rooms_tenant_id'), 'conference_rooms', ['tenant_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_conference_rooms_tenant_id'), table_name='conference_rooms')
    op.drop_table('conference_rooms')
