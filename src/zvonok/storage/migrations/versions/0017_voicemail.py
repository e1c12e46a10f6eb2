"""voicemail_boxes, voicemail_messages: per-extension mailboxes (PIN hash, limits, greetings, e-mail) and
their messages (caller, time, duration, read, folder, WAV path, e-mail delivery state); voicemail_smtp:
a company's own SMTP server

Revision ID: 0017
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'voicemail_boxes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('extension_id', sa.Integer(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('pin_hash', sa.String(length=255), nullable=True),
        sa.Column('email', sa.String(length=254), nullable=True),
        sa.Column('max_message_seconds', sa.Integer(), nullable=False),
        sa.Column('silence_seconds', sa.Integer(), nullable=False),
        sa.Column('greeting_busy', sa.Boolean(), nullable=False),
        sa.Column('greeting_unavailable', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['extension_id'], ['extensions.id'],
                                name=op.f('fk_voicemail_boxes_extension_id_extensions'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_voicemail_boxes_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_voicemail_boxes')),
        sa.UniqueConstraint('tenant_id', 'extension_id', name=op.f('uq_voicemail_boxes_tenant_id_extension_id')),
    )
    op.create_index(op.f('ix_voicemail_boxes_tenant_id'), 'voicemail_boxes', ['tenant_id'], unique=False)
    op.create_index(op.f('ix_voicemail_boxes_extension_id'), 'voicemail_boxes', ['extension_id'], unique=False)
    op.create_table(
        'voicemail_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('mailbox_id', sa.Integer(), nullable=False),
        sa.Column('caller_number', sa.String(length=64), nullable=False),
        sa.Column('caller_name', sa.String(length=200), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('duration', sa.Float(), nullable=False),
        sa.Column('read', sa.Boolean(), nullable=False),
        sa.Column('folder', sa.String(length=8), nullable=False),
        sa.Column('path', sa.String(length=255), nullable=False),
        sa.Column('call_id', sa.String(length=64), nullable=True),
        sa.Column('email_state', sa.String(length=8), nullable=False),
        sa.Column('email_attempts', sa.Integer(), nullable=False),
        sa.Column('email_next_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.CheckConstraint("folder IN ('inbox', 'saved')", name=op.f('ck_voicemail_messages_folder')),
        sa.CheckConstraint("email_state IN ('none', 'pending', 'sent', 'failed')",
                           name=op.f('ck_voicemail_messages_email_state')),
        sa.ForeignKeyConstraint(['mailbox_id'], ['voicemail_boxes.id'],
                                name=op.f('fk_voicemail_messages_mailbox_id_voicemail_boxes'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_voicemail_messages_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_voicemail_messages')),
    )
    op.create_index(op.f('ix_voicemail_messages_tenant_id'), 'voicemail_messages', ['tenant_id'], unique=False)
    op.create_index(op.f('ix_voicemail_messages_mailbox_id'), 'voicemail_messages', ['mailbox_id'], unique=False)
    op.create_table(
        'voicemail_smtp',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('host', sa.String(length=253), nullable=False),
        sa.Column('port', sa.Integer(), nullable=False),
        sa.Column('username', sa.String(length=254), nullable=True),
        sa.Column('password', sa.String(length=254), nullable=True),
        sa.Column('security', sa.String(length=8), nullable=False),
        sa.Column('sender', sa.String(length=254), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.CheckConstraint("security IN ('none', 'starttls', 'tls')", name=op.f('ck_voicemail_smtp_security')),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_voicemail_smtp_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_voicemail_smtp')),
        sa.UniqueConstraint('tenant_id', name=op.f('uq_voicemail_smtp_tenant_id')),
    )
    op.create_index(op.f('ix_voicemail_smtp_tenant_id'), 'voicemail_smtp', ['tenant_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_voicemail_smtp_tenant_id'), table_name='voicemail_smtp')
    op.drop_table('voicemail_smtp')
    op.drop_index(op.f('ix_voicemail_messages_mailbox_id'), table_name='voicemail_messages')
    op.drop_index(op.f('ix_voicemail_messages_tenant_id'), table_name='voicemail_messages')
    op.drop_table('voicemail_messages')
    op.drop_index(op.f('ix_voicemail_boxes_extension_id'), table_name='voicemail_boxes')
    op.drop_index(op.f('ix_voicemail_boxes_tenant_id'), table_name='voicemail_boxes')
    op.drop_table('voicemail_boxes')
