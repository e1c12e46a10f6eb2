"""crm_messages: the thread (the message a reply answers, and its References); crm_imap: the company's own
poll interval

Revision ID: 0036
Revises: 0037
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0036"
down_revision = "0037"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("crm_messages") as batch:
        batch.add_column(sa.Column("in_reply_to_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("thread_refs", sa.Text(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_crm_messages_in_reply_to_id_crm_messages"),
            "crm_messages",
            ["in_reply_to_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(op.f("ix_crm_messages_in_reply_to_id"), ["in_reply_to_id"], unique=False)
    with op.batch_alter_table("crm_imap") as batch:
        batch.add_column(sa.Column("poll_seconds", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("crm_imap") as batch:
        batch.drop_column("poll_seconds")
    with op.batch_alter_table("crm_messages") as batch:
        batch.drop_index(op.f("ix_crm_messages_in_reply_to_id"))
        batch.drop_constraint(op.f("fk_crm_messages_in_reply_to_id_crm_messages"), type_="foreignkey")
        batch.drop_column("thread_refs")
        batch.drop_column("in_reply_to_id")
