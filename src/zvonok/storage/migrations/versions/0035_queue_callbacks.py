"""queue callbacks: a queue's callback key, attempts and delay between them; the queue a CDR's call was
placed for (a callback's call to the customer)

Revision ID: 0035
Revises: 0034
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queues") as batch:
        batch.add_column(sa.Column("callback_key", sa.String(1), nullable=True))
        batch.add_column(sa.Column("callback_attempts", sa.Integer(), nullable=False, server_default="3"))
        batch.add_column(sa.Column("callback_retry", sa.Integer(), nullable=False, server_default="60"))
    with op.batch_alter_table("cdrs") as batch:
        batch.add_column(sa.Column("queue", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cdrs") as batch:
        batch.drop_column("queue")
    with op.batch_alter_table("queues") as batch:
        batch.drop_column("callback_retry")
        batch.drop_column("callback_attempts")
        batch.drop_column("callback_key")
