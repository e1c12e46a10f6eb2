"""mail_outbox: one queue of e-mails for voicemail messages and received faxes (the voicemail messages'
own e-mail columns move into it); voicemail_boxes.attach_format (wav | mp3); cdrs.fax_pages and
cdrs.fax_result for fax calls

Revision ID: 0030
Revises: 0022
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = '0032'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref_id", sa.Integer(), nullable=False),
        sa.Column("recipients", sa.String(length=2600), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("state IN ('pending', 'sent', 'failed', 'dropped')", name=op.f("ck_mail_outbox_state")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_mail_outbox_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_outbox")),
    )
    op.create_index(op.f("ix_mail_outbox_tenant_id"), "mail_outbox", ["tenant_id"], unique=False)
    op.create_index("ix_mail_outbox_state_next_at", "mail_outbox", ["state", "next_at"], unique=False)
    # voicemail e-mails not yet sent move into the outbox, to the mailbox's address of today
    op.execute(
        "INSERT INTO mail_outbox (tenant_id, kind, ref_id, recipients, state, attempts, next_at, last_error,"
        " created_at, updated_at)"
        " SELECT m.tenant_id, 'voicemail', m.id, b.email, 'pending', m.email_attempts,"
        " COALESCE(m.email_next_at, m.received_at), '', m.received_at, m.received_at"
        " FROM voicemail_messages m JOIN voicemail_boxes b ON b.id = m.mailbox_id"
        " WHERE m.email_state = 'pending' AND b.email IS NOT NULL"
    )
    with op.batch_alter_table("voicemail_messages") as batch:
        batch.drop_constraint(op.f("ck_voicemail_messages_email_state"), type_="check")
        batch.drop_column("email_state")
        batch.drop_column("email_attempts")
        batch.drop_column("email_next_at")
    with op.batch_alter_table("voicemail_boxes") as batch:
        batch.add_column(sa.Column("attach_format", sa.String(length=4), nullable=False, server_default="wav"))
        batch.create_check_constraint("attach_format", "attach_format IN ('wav', 'mp3')")
    with op.batch_alter_table("cdrs") as batch:
        batch.add_column(sa.Column("fax_pages", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("fax_result", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cdrs") as batch:
        batch.drop_column("fax_result")
        batch.drop_column("fax_pages")
    with op.batch_alter_table("voicemail_boxes") as batch:
        batch.drop_constraint(op.f("ck_voicemail_boxes_attach_format"), type_="check")
        batch.drop_column("attach_format")
    with op.batch_alter_table("voicemail_messages") as batch:
        batch.add_column(sa.Column("email_state", sa.String(length=8), nullable=False, server_default="none"))
        batch.add_column(sa.Column("email_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("email_next_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_check_constraint("email_state", "email_state IN ('none', 'pending', 'sent', 'failed')")
    op.drop_index("ix_mail_outbox_state_next_at", table_name="mail_outbox")
    op.drop_index(op.f("ix_mail_outbox_tenant_id"), table_name="mail_outbox")
    op.drop_table("mail_outbox")
