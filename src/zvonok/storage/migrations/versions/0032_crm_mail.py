"""crm_messages: e-mails on a client's timeline (sent from the CRM, replies fetched by IMAP; the sending
job's queue); crm_imap: a company's IMAP mailbox for replies and how far it has been read

Revision ID: 0032
Revises: 0022
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0032'
down_revision = '0029'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'crm_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('client_id', sa.Integer(), nullable=False),
        sa.Column('direction', sa.String(length=3), nullable=False),
        sa.Column('from_addr', sa.String(length=254), nullable=False),
        sa.Column('to_addr', sa.String(length=254), nullable=False),
        sa.Column('subject', sa.String(length=500), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('message_id', sa.String(length=255), nullable=True),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('status', sa.String(length=8), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('author_employee_id', sa.Integer(), nullable=True),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.CheckConstraint("direction IN ('in', 'out')", name=op.f('ck_crm_messages_direction')),
        sa.CheckConstraint("status IN ('queued', 'sent', 'failed', 'received')", name=op.f('ck_crm_messages_status')),
        sa.ForeignKeyConstraint(['author_employee_id'], ['employees.id'],
                                name=op.f('fk_crm_messages_author_employee_id_employees'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['client_id'], ['crm_clients.id'], name=op.f('fk_crm_messages_client_id_crm_clients'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_crm_messages_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_crm_messages')),
        sa.UniqueConstraint('tenant_id', 'message_id', name=op.f('uq_crm_messages_tenant_id_message_id')),
    )
    op.create_index(op.f('ix_crm_messages_tenant_id'), 'crm_messages', ['tenant_id'], unique=False)
    op.create_index(op.f('ix_crm_messages_client_id'), 'crm_messages', ['client_id'], unique=False)
    op.create_index(op.f('ix_crm_messages_at'), 'crm_messages', ['at'], unique=False)
    op.create_index(op.f('ix_crm_messages_next_at'), 'crm_messages', ['next_at'], unique=False)
    op.create_table(
        'crm_imap',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('host', sa.String(length=253), nullable=False),
        sa.Column('port', sa.Integer(), nullable=False),
        sa.Column('security', sa.String(length=8), nullable=False),
        sa.Column('username', sa.String(length=254), nullable=False),
        sa.Column('password', sa.String(length=254), nullable=False),
        sa.Column('folder', sa.String(length=200), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('since', sa.DateTime(timezone=True), nullable=False),
        sa.Column('uidvalidity', sa.BigInteger(), nullable=True),
        sa.Column('last_uid', sa.BigInteger(), nullable=False),
        sa.Column('polled_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.CheckConstraint("security IN ('none', 'starttls', 'tls')", name=op.f('ck_crm_imap_security')),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_crm_imap_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_crm_imap')),
        sa.UniqueConstraint('tenant_id', name=op.f('uq_crm_imap_tenant_id')),
    )
    op.create_index(op.f('ix_crm_imap_tenant_id'), 'crm_imap', ['tenant_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_crm_imap_tenant_id'), table_name='crm_imap')
    op.drop_table('crm_imap')
    for ix in ('next_at', 'at', 'client_id', 'tenant_id'):
        op.drop_index(op.f(f'ix_crm_messages_{ix}'), table_name='crm_messages')
    op.drop_table('crm_messages')
