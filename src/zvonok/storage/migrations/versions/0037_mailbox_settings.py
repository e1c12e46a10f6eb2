"""voicemail_boxes.email_audio (attach | link) and delete_after_email; employees.fax_email (where faxes
to the employee's own fax destination are e-mailed; NULL: their e-mail)

Revision ID: 0037
Revises: 0035
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0037"
down_revision = "0035"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("voicemail_boxes") as batch:
        batch.add_column(
            sa.Column("email_audio", sa.String(length=6), nullable=False, server_default="attach")
        )
        batch.add_column(
            sa.Column("delete_after_email", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_check_constraint("email_audio", "email_audio IN ('attach', 'link')")
    with op.batch_alter_table("employees") as batch:
        batch.add_column(sa.Column("fax_email", sa.String(length=254), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("employees") as batch:
        batch.drop_column("fax_email")
    with op.batch_alter_table("voicemail_boxes") as batch:
        batch.drop_constraint(op.f("ck_voicemail_boxes_email_audio"), type_="check")
        batch.drop_column("delete_after_email")
        batch.drop_column("email_audio")
