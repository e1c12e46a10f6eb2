"""ivr_menus: a tenant's voice menus (greeting text or upload, keys, direct dial, timeouts, retries)

Revision ID: 0015
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'ivr_menus',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('prompt_text', sa.Text(), nullable=True),
        sa.Column('voice', sa.String(length=8), nullable=False),
        sa.Column('has_upload', sa.Boolean(), nullable=False),
        sa.Column('keys', sa.JSON(), nullable=False),
        sa.Column('direct_dial', sa.Boolean(), nullable=False),
        sa.Column('timeout', sa.Integer(), nullable=False),
        sa.Column('digit_timeout', sa.Integer(), nullable=False),
        sa.Column('retries', sa.Integer(), nullable=False),
        sa.Column('repeat_key', sa.String(length=1), nullable=True),
        sa.Column('timeout_destination', sa.JSON(), nullable=True),
        sa.Column('invalid_destination', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_ivr_menus_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ivr_menus')),
    )
    op.create_index(op.f('ix_ivr_menus_tenant_id'), 'ivr_menus', ['tenant_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_ivr_menus_tenant_id'), table_name='ivr_menus')
    op.drop_table('ivr_menus')
