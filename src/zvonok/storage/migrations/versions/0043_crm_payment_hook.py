"""crm payment notifications: crm_settings.payment_hook_key (the public part of the company's payment
webhook URL) and payment_hook_secret (the HMAC key its notifications are signed with); None: off

Revision ID: 0043
Revises: 0040
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0043"
down_revision = "0040"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("crm_settings") as batch:
        batch.add_column(sa.Column("payment_hook_key", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("payment_hook_secret", sa.String(length=100), nullable=True))
        batch.create_index("ix_crm_settings_payment_hook_key", ["payment_hook_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("crm_settings") as batch:
        batch.drop_index("ix_crm_settings_payment_hook_key")
        batch.drop_column("payment_hook_secret")
        batch.drop_column("payment_hook_key")
